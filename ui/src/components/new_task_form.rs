use std::rc::Rc;

use flightdeck_protocol::api::CreateTaskRequest;
use flightdeck_protocol::{AgentInfo, AgentState, RepoStatus, TaskPayload};
use web_sys::{HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

use super::start_form::{offered_executors, StartChoice};

#[derive(Properties, PartialEq)]
pub struct NewTaskFormProps {
    pub repos: Rc<Vec<RepoStatus>>,
    /// The agents, for what each can run (`claude`, `shell`, `acp:<name>`).
    #[prop_or_default]
    pub agents: Rc<Vec<AgentInfo>>,
    pub busy: bool,
    pub on_create: Callback<CreateTaskRequest>,
}

/// What an agent online with `repo` can run (the union, when several have it); claude and shell
/// when none says.
pub fn executors_for(agents: &[AgentInfo], repo: &str) -> Vec<StartChoice> {
    let reported: Vec<String> = agents
        .iter()
        .filter(|a| a.status != AgentState::Offline && (a.repos.is_empty() || a.repos.iter().any(|r| r == repo)))
        .flat_map(|a| a.capabilities.iter().cloned())
        .collect();
    let mut offered = Vec::new();
    for choice in offered_executors(&reported) {
        if !offered.contains(&choice) {
            offered.push(choice);
        }
    }
    offered
}

/// The cockpit's "new task" form: a repo, what runs it (Claude, a shell command, or an ACP
/// agent the repo's agent can run), and the prompt or command.
#[function_component(NewTaskForm)]
pub fn new_task_form(props: &NewTaskFormProps) -> Html {
    let repo = use_state(String::new);
    let choice = use_state(|| StartChoice::Claude);
    let text = use_state(String::new);
    let chosen =
        if repo.is_empty() { props.repos.first().map(|r| r.name.clone()).unwrap_or_default() } else { (*repo).clone() };
    let offered = executors_for(&props.agents, &chosen);
    // A choice the repo's agent does not offer falls back to the first one it offers.
    let run = if offered.contains(&choice) { (*choice).clone() } else { offered[0].clone() };
    let on_repo = {
        let repo = repo.clone();
        Callback::from(move |e: Event| repo.set(e.target_unchecked_into::<HtmlSelectElement>().value()))
    };
    let on_executor = {
        let choice = choice.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            choice.set(StartChoice::parse(&v).unwrap_or(StartChoice::Claude));
        })
    };
    let on_text = {
        let text = text.clone();
        Callback::from(move |e: InputEvent| text.set(e.target_unchecked_into::<HtmlTextAreaElement>().value()))
    };
    let disabled = props.busy || chosen.is_empty() || text.trim().is_empty();
    let shell = run == StartChoice::Shell;
    let on_submit = {
        let text = text.clone();
        let run = run.clone();
        let on_create = props.on_create.clone();
        let chosen = chosen.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if disabled {
                return;
            }
            let body = text.trim().to_string();
            let payload = match &run {
                StartChoice::Claude => TaskPayload { prompt: Some(body), ..TaskPayload::default() },
                StartChoice::Acp(name) => {
                    TaskPayload { prompt: Some(body), agent: Some(name.clone()), ..TaskPayload::default() }
                }
                StartChoice::Shell => TaskPayload { command: Some(body), ..TaskPayload::default() },
            };
            on_create.emit(CreateTaskRequest {
                title: None,
                executor: run.executor(),
                repo: chosen.clone(),
                payload,
                agent_id: None,
                placement: None,
                clone_url: None,
            });
            text.set(String::new());
        })
    };
    let placeholder = match &run {
        StartChoice::Shell => "cargo test".to_string(),
        StartChoice::Claude => "What should Claude do?".to_string(),
        StartChoice::Acp(name) => format!("What should {name} do?"),
    };
    html! {
        <form class="panel start new-task" onsubmit={on_submit} aria-label="New task">
            <h3>{ "New task" }</h3>
            if props.repos.is_empty() {
                <p class="muted">{ "No repositories are watched yet." }</p>
            }
            <div class="row">
                // A label and its control wrap together, never apart.
                <span class="pair">
                    <label for="new-task-repo">{ "Repository" }</label>
                    <select id="new-task-repo" onchange={on_repo}>
                        { for props.repos.iter().map(|r| html! {
                            <option value={r.name.clone()} selected={r.name == chosen}>{ &r.name }</option>
                        }) }
                    </select>
                </span>
                <span class="pair">
                    <label for="new-task-executor">{ "Run" }</label>
                    <select id="new-task-executor" onchange={on_executor}>
                        { for offered.iter().map(|c| html! {
                            <option value={c.value()} selected={*c == run}>{ c.label() }</option>
                        }) }
                    </select>
                </span>
            </div>
            <label for="new-task-text" class="visually-hidden">
                { if shell { "Command" } else { "Prompt" } }
            </label>
            <textarea id="new-task-text" rows="3" value={(*text).clone()} oninput={on_text}
                      placeholder={placeholder}></textarea>
            <div class="row">
                <button type="submit" class="primary" disabled={disabled}>{ if props.busy { "Starting…" } else { "Start" } }</button>
            </div>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(status: AgentState, repos: &[&str], capabilities: &[&str]) -> AgentInfo {
        serde_json::from_value(serde_json::json!({
            "agentId": "a", "status": status, "capabilities": capabilities, "repos": repos,
            "connectedAt": "2026-01-01T00:00:00Z", "lastPingAt": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn the_form_offers_what_an_online_agent_with_the_repo_can_run() {
        let agents = vec![
            agent(AgentState::Idle, &["web"], &["git", "claude", "shell", "acp:codex"]),
            agent(AgentState::Busy, &["web"], &["claude", "acp:mine"]),
            agent(AgentState::Offline, &["web"], &["acp:gone"]),
            agent(AgentState::Idle, &["other"], &["acp:elsewhere"]),
        ];
        let want = [
            StartChoice::Claude,
            StartChoice::Shell,
            StartChoice::Acp("codex".into()),
            StartChoice::Acp("mine".into()),
        ];
        assert_eq!(executors_for(&agents, "web"), want);
        // Nobody says: claude and shell.
        assert_eq!(executors_for(&[], "web"), [StartChoice::Claude, StartChoice::Shell]);
    }
}
