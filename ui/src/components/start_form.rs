use std::rc::Rc;

use flightdeck_protocol::api::PlacementRequest;
use flightdeck_protocol::Executor;
use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

/// What the owner asked for: the page adds the repo and posts it (`POST /api/hud/start`).
#[derive(Debug, Clone, PartialEq)]
pub struct StartTask {
    /// The prompt, or the command of a shell task.
    pub prompt: String,
    pub executor: Executor,
    /// The ACP agent to run (executor `acp`, SPEC 14).
    pub agent: Option<String>,
    pub placement: PlacementRequest,
    /// For a container run of a repo without an `origin` remote.
    pub clone_url: Option<String>,
}

#[derive(Properties, PartialEq)]
pub struct StartFormProps {
    pub can_start: bool,
    /// Why starting is not possible now (shown, and tied to the button for screen readers).
    pub reason: Option<AttrValue>,
    pub busy: bool,
    pub on_start: Callback<StartTask>,
    #[prop_or_default]
    pub message: Option<AttrValue>,
    /// The relay can run the task in a container (SPEC 10): offer the choice.
    #[prop_or_default]
    pub runner_available: bool,
    /// The relay could run it in a container if it knew where to clone the repo from (it has
    /// no `origin` remote): offer the choice with a clone URL field, and say why.
    #[prop_or_default]
    pub runner_needs_clone_url: bool,
    /// An agent with the repo is online (a task placed `auto` runs there, no URL needed).
    #[prop_or_default]
    pub agent_online: bool,
    /// What runs tasks here, as the relay reports it (`claude`, `shell`, `acp:<name>`); empty
    /// means claude and shell.
    #[prop_or_default]
    pub executors: Rc<Vec<String>>,
}

/// One thing the start form can run: Claude, a shell command, or an ACP agent by name.
#[derive(Debug, Clone, PartialEq)]
pub enum StartChoice {
    Claude,
    Shell,
    Acp(String),
}

impl StartChoice {
    /// As the relay reports it (`claude`, `shell`, `acp:<name>`), and as the select's value.
    pub fn parse(value: &str) -> Option<StartChoice> {
        match value {
            "claude" => Some(StartChoice::Claude),
            "shell" => Some(StartChoice::Shell),
            other => other.strip_prefix("acp:").filter(|n| !n.is_empty()).map(|n| StartChoice::Acp(n.to_string())),
        }
    }

    pub fn value(&self) -> String {
        match self {
            StartChoice::Claude => "claude".into(),
            StartChoice::Shell => "shell".into(),
            StartChoice::Acp(name) => format!("acp:{name}"),
        }
    }

    pub fn label(&self) -> String {
        match self {
            StartChoice::Claude => "Claude Code".into(),
            StartChoice::Shell => "Shell command".into(),
            StartChoice::Acp(name) => format!("{name} (ACP)"),
        }
    }

    pub fn executor(&self) -> Executor {
        match self {
            StartChoice::Claude => Executor::Claude,
            StartChoice::Shell => Executor::Shell,
            StartChoice::Acp(_) => Executor::Acp,
        }
    }
}

/// What the form offers, from the relay's list (SPEC 12): claude, shell and each ACP agent the
/// repo's agent reports, in that order; claude and shell when it reports none of them.
pub fn offered_executors(reported: &[String]) -> Vec<StartChoice> {
    let mut offered: Vec<StartChoice> = reported.iter().filter_map(|e| StartChoice::parse(e)).collect();
    if offered.is_empty() {
        offered = vec![StartChoice::Claude, StartChoice::Shell];
    }
    offered.dedup();
    offered
}

/// The owner's "start a task" form (seed 000): Claude or a shell command, where to run it, and
/// a clone URL when a container needs one. Disabled, with the reason, when nothing can run it.
#[function_component(StartForm)]
pub fn start_form(props: &StartFormProps) -> Html {
    let prompt = use_state(String::new);
    let on_input = {
        let prompt = prompt.clone();
        Callback::from(move |e: InputEvent| prompt.set(e.target_unchecked_into::<HtmlTextAreaElement>().value()))
    };
    let offered = offered_executors(&props.executors);
    let executor = use_state(|| StartChoice::Claude);
    // A choice the agent stopped offering falls back to the first one it offers.
    let chosen = if offered.contains(&executor) { (*executor).clone() } else { offered[0].clone() };
    let on_executor = {
        let executor = executor.clone();
        Callback::from(move |e: Event| {
            let value = e.target_unchecked_into::<HtmlSelectElement>().value();
            executor.set(StartChoice::parse(&value).unwrap_or(StartChoice::Claude));
        })
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
    let clone_url = use_state(String::new);
    let on_clone_url = {
        let clone_url = clone_url.clone();
        Callback::from(move |e: InputEvent| clone_url.set(e.target_unchecked_into::<HtmlInputElement>().value()))
    };
    let ask_clone_url = props.runner_needs_clone_url && *placement != PlacementRequest::Agent;
    // A container is certain to be used (chosen, or `auto` with no agent): it cannot start without.
    let container_certain =
        *placement == PlacementRequest::Container || (*placement == PlacementRequest::Auto && !props.agent_online);
    let missing_url = ask_clone_url && container_certain && clone_url.trim().is_empty();
    let disabled = !props.can_start || props.busy;
    let on_submit = {
        let prompt = prompt.clone();
        let placement = *placement;
        let clone_url = clone_url.clone();
        let on_start = props.on_start.clone();
        let chosen = chosen.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let text = prompt.trim().to_string();
            if !disabled && !missing_url && !text.is_empty() {
                let url = clone_url.trim().to_string();
                on_start.emit(StartTask {
                    prompt: text,
                    executor: chosen.executor(),
                    agent: match &chosen {
                        StartChoice::Acp(name) => Some(name.clone()),
                        _ => None,
                    },
                    placement,
                    clone_url: (ask_clone_url && !url.is_empty()).then_some(url),
                });
                prompt.set(String::new());
            }
        })
    };
    let executor_choice = (offered.len() > 1).then(|| {
        html! {
            <span class="pair">
                <label for="start-executor">{ "Run" }</label>
                <select id="start-executor" onchange={on_executor} disabled={disabled}>
                    { for offered.iter().map(|e| html! {
                        <option value={e.value()} selected={*e == chosen}>{ e.label() }</option>
                    }) }
                </select>
            </span>
        }
    });
    let placement_choice = (props.runner_available || props.runner_needs_clone_url).then(|| {
        html! {
            <select id="start-placement" aria-label="Where to run it" onchange={on_placement} disabled={disabled}>
                <option value="auto" selected={*placement == PlacementRequest::Auto}>{ "wherever possible" }</option>
                <option value="agent" selected={*placement == PlacementRequest::Agent}>{ "on my machine" }</option>
                <option value="container" selected={*placement == PlacementRequest::Container}>{ "in a container" }</option>
            </select>
        }
    });
    let shell = chosen == StartChoice::Shell;
    html! {
        <form class="panel start" onsubmit={on_submit} aria-label="Start a task">
            <h3><label for="start-prompt">{ if shell { "Run a command" } else { "Start a task" } }</label></h3>
            <textarea id="start-prompt" name="prompt" rows="3"
                      placeholder={if shell { "cargo test" } else { "What should the agent do?" }}
                      value={(*prompt).clone()} oninput={on_input} disabled={!props.can_start}
                      aria-describedby="start-reason"></textarea>
            if props.runner_needs_clone_url {
                <p class="muted start-hint" id="start-clone-hint" data-testid="clone-url-hint">
                    { "This repo has no " }<code>{ "origin" }</code>
                    { " remote, so a container cannot clone it on its own: give a clone URL to run it in one." }
                </p>
            }
            if ask_clone_url {
                <span class="pair wide">
                    <label for="start-clone-url">{ "Clone URL" }</label>
                    <input id="start-clone-url" type="url" placeholder="https://github.com/you/repo.git"
                           value={(*clone_url).clone()} oninput={on_clone_url} disabled={disabled}
                           aria-describedby="start-clone-hint" />
                </span>
            }
            <div class="row">
                { for executor_choice }
                { for placement_choice }
                <button type="submit" class="primary" id="start-button"
                        disabled={disabled || missing_url || prompt.trim().is_empty()}>
                    { if props.busy { "Starting…" } else { "Start" } }
                </button>
                <span id="start-reason" class="muted" aria-live="polite">
                    { if !props.can_start { props.reason.clone().unwrap_or_default() } else { props.message.clone().unwrap_or_default() } }
                </span>
            </div>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_offers_what_the_relay_reports() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(offered_executors(&s(&["claude", "shell"])), [StartChoice::Claude, StartChoice::Shell]);
        assert_eq!(offered_executors(&s(&["shell"])), [StartChoice::Shell]);
        // ACP agents cannot be started through this protocol yet; nothing known means both.
        assert_eq!(
            offered_executors(&s(&["claude", "acp:codex", "acp:"])),
            [StartChoice::Claude, StartChoice::Acp("codex".into())]
        );
        assert_eq!(offered_executors(&[]), [StartChoice::Claude, StartChoice::Shell]);
        assert_eq!(StartChoice::Acp("codex".into()).executor(), Executor::Acp);
    }
}
