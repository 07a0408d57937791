use yew::prelude::*;

/// What the tab title starts with while something waits for the person looking at it.
const NEEDS_INPUT: &str = "(needs input) ";

/// Puts "(needs input)" in front of the tab title while `needs_input` holds, so a tab in the
/// background says that Claude waits; the title the page had is kept otherwise.
#[hook]
pub fn use_needs_input_title(needs_input: bool) {
    use_effect_with(needs_input, |needs_input| {
        if let Some(document) = web_sys::window().and_then(|w| w.document()) {
            let title = document.title();
            let base = title.strip_prefix(NEEDS_INPUT).unwrap_or(&title);
            let next = if *needs_input { format!("{NEEDS_INPUT}{base}") } else { base.to_string() };
            if next != title {
                document.set_title(&next);
            }
        }
    });
}
