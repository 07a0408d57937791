use yew::prelude::*;

use super::Shared;
use crate::transcript::Item;

/// Longest output rendered before "show all": a huge tool output must not bloat the DOM.
const OUTPUT_PREVIEW_CHARS: usize = 20_000;

#[derive(Properties, PartialEq)]
pub struct ToolCardProps {
    pub item: Shared<Item>,
}

/// A tool call: a header button (name, main parameter, spinner with elapsed time, "awaits
/// permission" while a request for it is undecided, or the result),
/// and, only once expanded, the parameters and output. Collapsed cards keep the DOM small.
#[function_component(ToolCard)]
pub fn tool_card(props: &ToolCardProps) -> Html {
    let expanded = use_state(|| false);
    let show_all = use_state(|| false);
    let Item::Tool(call) = &*props.item.0 else { return html! {} };
    let on_toggle = {
        let expanded = expanded.clone();
        Callback::from(move |_: MouseEvent| expanded.set(!*expanded))
    };
    let state = if call.awaiting_permission {
        "asking"
    } else if call.is_running() {
        "running"
    } else if call.is_error {
        "error"
    } else {
        "done"
    };
    let body_id = format!("tool-body-{}", call.tool_id);
    html! {
        <div class={classes!("tool", state)} data-tool-id={call.tool_id.clone()} data-state={state}>
            <button type="button" class="tool-head" aria-expanded={expanded.to_string()} aria-controls={body_id.clone()}
                    onclick={on_toggle}>
                <span class="chev" aria-hidden="true">{ if *expanded { "▾" } else { "▸" } }</span>
                <span class="tool-name">{ &call.tool_name }</span>
                <span class="tool-headline">{ call.headline() }</span>
                <span class="tool-state">
                    if call.awaiting_permission {
                        // Nothing runs until the request below is decided: no spinner.
                        <span class="tool-result" data-testid="awaiting-permission">{ "awaits permission" }</span>
                    } else if call.is_running() {
                        <span class="spinner" aria-hidden="true"></span>
                        <span class="elapsed">{ call.elapsed_secs.map_or("running".to_string(), |s| format!("{s:.0}s")) }</span>
                    } else if call.is_error {
                        <span class="tool-result">{ "✗ failed" }</span>
                    } else {
                        <span class="tool-result">{ "✓ done" }</span>
                    }
                </span>
            </button>
            if *expanded {
                <div class="tool-body" id={body_id}>
                    <div class="tool-section">{ "Parameters" }</div>
                    <pre class="code"><code>{ serde_json::to_string_pretty(&call.params).unwrap_or_default() }</code></pre>
                    if let Some(output) = &call.output {
                        <div class="tool-section">{ "Output" }</div>
                        if output.len() > OUTPUT_PREVIEW_CHARS && !*show_all {
                            <pre class="term">{ crate::ansi::strip(&output.chars().take(OUTPUT_PREVIEW_CHARS).collect::<String>()) }</pre>
                            <button type="button" class="link" onclick={
                                let show_all = show_all.clone();
                                Callback::from(move |_: MouseEvent| show_all.set(true))
                            }>{ format!("Show all {} characters", output.chars().count()) }</button>
                        } else {
                            <pre class={classes!("term", call.is_error.then_some("stderr"))}>{ crate::ansi::strip(output) }</pre>
                        }
                    }
                </div>
            }
        </div>
    }
}
