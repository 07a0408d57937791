use flightdeck_protocol::api::PlacementRequest;
use web_sys::{HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct StartFormProps {
    pub can_start: bool,
    /// Why starting is not possible now (shown, and tied to the button for screen readers).
    pub reason: Option<AttrValue>,
    pub busy: bool,
    /// The prompt and where to run it.
    pub on_start: Callback<(String, PlacementRequest)>,
    #[prop_or_default]
    pub message: Option<AttrValue>,
    /// The relay can run the task in a container (SPEC 10): offer the choice.
    #[prop_or_default]
    pub runner_available: bool,
}

/// The owner's "start a task" form (seed 000). Disabled, with the reason, when no agent is online.
#[function_component(StartForm)]
pub fn start_form(props: &StartFormProps) -> Html {
    let prompt = use_state(String::new);
    let on_input = {
        let prompt = prompt.clone();
        Callback::from(move |e: InputEvent| prompt.set(e.target_unchecked_into::<HtmlTextAreaElement>().value()))
    };
    let placement = use_state(|| PlacementRequest::Auto);
    let on_placement = {
        let placement = placement.clone();
        Callback::from(move |e: Event| {
            let value = e.target_unchecked_into::<HtmlSelectElement>().value();
            placement.set(match value.as_str() {
                "agent" => PlacementRequest::Agent,
                "container" => PlacementRequest::Container,
                _ => PlacementRequest::Auto,
            });
        })
    };
    let disabled = !props.can_start || props.busy;
    let on_submit = {
        let prompt = prompt.clone();
        let placement = placement.clone();
        let on_start = props.on_start.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let text = prompt.trim().to_string();
            if !disabled && !text.is_empty() {
                on_start.emit((text, *placement));
                prompt.set(String::new());
            }
        })
    };
    let choice = props.runner_available.then(|| {
        html! {
            <select id="start-placement" aria-label="Where to run it" onchange={on_placement} disabled={disabled}>
                <option value="auto" selected={*placement == PlacementRequest::Auto}>{ "wherever possible" }</option>
                <option value="agent" selected={*placement == PlacementRequest::Agent}>{ "on my machine" }</option>
                <option value="container" selected={*placement == PlacementRequest::Container}>{ "in a container" }</option>
            </select>
        }
    });
    html! {
        <form class="panel start" onsubmit={on_submit} aria-label="Start a task">
            <h3><label for="start-prompt">{ "Start a task" }</label></h3>
            <textarea id="start-prompt" name="prompt" rows="3" placeholder="What should the agent do?"
                      value={(*prompt).clone()} oninput={on_input} disabled={!props.can_start}
                      aria-describedby="start-reason"></textarea>
            <div class="row">
                { for choice }
                <button type="submit" class="primary" id="start-button" disabled={disabled || prompt.trim().is_empty()}>
                    { if props.busy { "Starting…" } else { "Start" } }
                </button>
                <span id="start-reason" class="muted" aria-live="polite">
                    { if !props.can_start { props.reason.clone().unwrap_or_default() } else { props.message.clone().unwrap_or_default() } }
                </span>
            </div>
        </form>
    }
}
