use std::rc::Rc;

use flightdeck_protocol::api::CreateTaskRequest;
use flightdeck_protocol::{Executor, RepoStatus, TaskPayload};
use web_sys::{HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct NewTaskFormProps {
    pub repos: Rc<Vec<RepoStatus>>,
    pub busy: bool,
    pub on_create: Callback<CreateTaskRequest>,
}

/// The cockpit's "new task" form: a repo, claude or shell, and the prompt or command.
#[function_component(NewTaskForm)]
pub fn new_task_form(props: &NewTaskFormProps) -> Html {
    let repo = use_state(String::new);
    let executor = use_state(|| Executor::Claude);
    let text = use_state(String::new);
    let chosen =
        if repo.is_empty() { props.repos.first().map(|r| r.name.clone()).unwrap_or_default() } else { (*repo).clone() };
    let on_repo = {
        let repo = repo.clone();
        Callback::from(move |e: Event| repo.set(e.target_unchecked_into::<HtmlSelectElement>().value()))
    };
    let on_executor = {
        let executor = executor.clone();
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            executor.set(if v == "shell" { Executor::Shell } else { Executor::Claude });
        })
    };
    let on_text = {
        let text = text.clone();
        Callback::from(move |e: InputEvent| text.set(e.target_unchecked_into::<HtmlTextAreaElement>().value()))
    };
    let disabled = props.busy || chosen.is_empty() || text.trim().is_empty();
    let on_submit = {
        let text = text.clone();
        let executor = *executor;
        let on_create = props.on_create.clone();
        let chosen = chosen.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if disabled {
                return;
            }
            let body = text.trim().to_string();
            let payload = match executor {
                Executor::Claude | Executor::Acp => TaskPayload { prompt: Some(body), ..TaskPayload::default() },
                Executor::Shell => TaskPayload { command: Some(body), ..TaskPayload::default() },
            };
            on_create.emit(CreateTaskRequest {
                title: None,
                executor,
                repo: chosen.clone(),
                payload,
                agent_id: None,
                placement: None,
                clone_url: None,
            });
            text.set(String::new());
        })
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
                        <option value="claude" selected={*executor == Executor::Claude}>{ "Claude Code" }</option>
                        <option value="shell" selected={*executor == Executor::Shell}>{ "Shell command" }</option>
                    </select>
                </span>
            </div>
            <label for="new-task-text" class="visually-hidden">
                { if *executor == Executor::Shell { "Command" } else { "Prompt" } }
            </label>
            <textarea id="new-task-text" rows="3" value={(*text).clone()} oninput={on_text}
                      placeholder={if *executor == Executor::Shell { "cargo test" } else { "What should Claude do?" }}></textarea>
            <div class="row">
                <button type="submit" class="primary" disabled={disabled}>{ if props.busy { "Starting…" } else { "Start" } }</button>
            </div>
        </form>
    }
}
