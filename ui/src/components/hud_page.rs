use std::rc::Rc;

use flightdeck_protocol::api::{HudContext, HudSettings, HudStartRequest};
use flightdeck_protocol::{Executor, Task};
use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::{AlertList, ConnectionIndicator, RepoPanel, SettingsToggles, StartForm, StartTask, TaskList, ThreadView};
use crate::hooks::{use_app, use_conversation, use_needs_input_title};
use crate::state::Action;

#[derive(Properties, PartialEq)]
pub struct HudPageProps {
    pub context: Rc<HudContext>,
}

/// The HUD of one repo (`/hud/:user/:repo`), or its chrome-less embed (`/embed/...`).
#[function_component(HudPage)]
pub fn hud_page(props: &HudPageProps) -> Html {
    let app = use_app();
    let ctx = &props.context;
    let store = &app.store;
    let full_repo = format!("{}/{}", ctx.username, ctx.repo);
    let starting = use_state(|| false);
    // The task the start form sent: "Task sent to the agent." shows until it ends.
    let sent_task = use_state(|| None::<String>);

    // The owner's REST state: whether a task may be started (and why not), and the settings.
    {
        let backend = app.backend.clone();
        let dispatch = store.dispatcher();
        let repo = full_repo.clone();
        use_effect_with((ctx.is_owner, repo), move |(is_owner, repo)| {
            if *is_owner {
                let repo = repo.clone();
                spawn_local(async move {
                    if let Ok(session) = backend.hud_session(&repo).await {
                        dispatch.dispatch(Action::Session(session));
                    }
                    match backend.hud_settings(&repo).await {
                        Ok(settings) => dispatch.dispatch(Action::Settings(settings)),
                        Err(e) => dispatch.dispatch(Action::Notice(Some(format!("settings: {e}")))),
                    }
                });
            }
        });
    }

    let on_start = {
        let backend = app.backend.clone();
        let dispatch = store.dispatcher();
        let repo = full_repo.clone();
        let starting = starting.clone();
        let sent_task = sent_task.clone();
        Callback::from(move |start: StartTask| {
            let backend = backend.clone();
            let dispatch = dispatch.clone();
            let request = HudStartRequest {
                repo: repo.clone(),
                prompt: start.prompt,
                // Claude is the relay's default: sent only when it is something else.
                executor: (start.executor != Executor::Claude).then_some(start.executor),
                agent: start.agent,
                placement: Some(start.placement),
                clone_url: start.clone_url,
            };
            let starting = starting.clone();
            let sent_task = sent_task.clone();
            starting.set(true);
            spawn_local(async move {
                match backend.hud_start(&request).await {
                    Ok(answer) => {
                        sent_task.set(Some(answer.session_id));
                        dispatch.dispatch(Action::SelectTask(None));
                    }
                    Err(e) => dispatch.dispatch(Action::Notice(Some(format!("Could not start: {e}")))),
                }
                starting.set(false);
            });
        })
    };
    let on_ack = app.on_ack_alert();
    let on_settings = {
        let backend = app.backend.clone();
        let dispatch = store.dispatcher();
        let repo = full_repo.clone();
        Callback::from(move |settings: HudSettings| {
            let backend = backend.clone();
            let dispatch = dispatch.clone();
            let repo = repo.clone();
            dispatch.dispatch(Action::Settings(settings));
            spawn_local(async move {
                match backend.put_hud_settings(&repo, &settings).await {
                    Ok(saved) => dispatch.dispatch(Action::Settings(saved)),
                    Err(e) => dispatch.dispatch(Action::Notice(Some(format!("Could not save settings: {e}")))),
                }
            });
        })
    };
    let on_select = {
        let dispatch = store.dispatcher();
        let subscribe = app.subscribe.clone();
        let current = store.hud.as_ref().and_then(|h| h.task.as_ref()).map(|t| t.id.clone());
        Callback::from(move |id: String| {
            if current.as_deref() == Some(id.as_str()) {
                dispatch.dispatch(Action::SelectTask(None));
            } else {
                subscribe.emit(format!("task:{id}"));
                dispatch.dispatch(Action::SelectTask(Some(id)));
            }
        })
    };
    // A notification opens `/hud/<user>/<repo>?task=<id>` (SPEC 13): show that task.
    {
        let subscribe = app.subscribe.clone();
        let dispatch = store.dispatcher();
        use_effect_with((), move |_| {
            if let Some(id) = crate::env::query_param("task") {
                subscribe.emit(format!("task:{id}"));
                dispatch.dispatch(Action::SelectTask(Some(id)));
            }
        });
    }
    let on_cancel = app.on_cancel_task();
    let on_dismiss = {
        let dispatch = store.dispatcher();
        Callback::from(move |_: MouseEvent| dispatch.dispatch(Action::Notice(None)))
    };

    let topic = format!("hud:{full_repo}");
    let forbidden = store.forbidden.contains(&topic);
    let hud = store.hud.as_ref();
    let shown_id = store.shown_task_id().map(str::to_string);
    // The owner loads the whole conversation; a viewer sees the turns the HUD showed.
    let turns = use_conversation(shown_id.clone(), ctx.is_owner && !ctx.embed_mode);
    let needs_input = hud.and_then(|h| h.task.as_ref()).is_some_and(|t| store.needs_input(t))
        || turns.last().is_some_and(|t| store.needs_input(&t.task));
    use_needs_input_title(needs_input && !forbidden);
    let agent_online =
        hud.map(|h| h.agent_online).or_else(|| store.session.as_ref().map(|s| s.can_start)).unwrap_or(false);
    // A relay with a runner starts the task in a container when no agent is online (SPEC 10).
    let runner_available = store.session.as_ref().is_some_and(|s| s.runner_available);
    // A container could run it with a clone URL from the owner (the repo has no `origin`).
    let runner_needs_clone_url = store.session.as_ref().is_some_and(|s| s.runner_needs_clone_url);
    let executors = Rc::new(store.session.as_ref().map(|s| s.executors.clone()).unwrap_or_default());
    let can_start = ctx.is_owner && (agent_online || runner_available || runner_needs_clone_url);
    let reason: Option<AttrValue> = (!can_start).then(|| {
        store
            .session
            .as_ref()
            .and_then(|s| s.reason.clone())
            .filter(|_| !agent_online || !ctx.is_owner)
            .unwrap_or_else(|| "No agent with this repo is online.".into())
            .into()
    });
    let start_message = sent_task
        .as_deref()
        .filter(|id| store.task(id).is_none_or(|t| !t.status.is_terminal()))
        .map(|_| AttrValue::from("Task sent to the agent."));
    let public = store.settings.map(|s| s.public).or(hud.map(|h| h.public)).unwrap_or(ctx.is_public);
    let repo_tasks: Rc<Vec<Task>> =
        Rc::new(store.tasks.iter().filter(|t| t.repo == ctx.repo).take(30).cloned().collect());
    let repo_alerts = Rc::new(
        store.alerts.iter().filter(|a| a.repo.as_deref().is_none_or(|r| r == ctx.repo)).cloned().collect::<Vec<_>>(),
    );

    let notice = store.notice.clone().map(|n| {
        html! {
            <div class="notice" role="alert">
                <span>{ n }</span>
                <button type="button" class="small" aria-label="Dismiss" onclick={on_dismiss}>{ "×" }</button>
            </div>
        }
    });

    if ctx.embed_mode {
        return html! {
            <div class="app hud embed" data-mode="embed">
                if forbidden {
                    <p class="muted center">{ "This HUD is not available." }</p>
                } else {
                    <ThreadView turns={turns} connection={Some(store.connection)} />
                }
            </div>
        };
    }

    html! {
        <div class="app hud" data-mode="hud">
            <a class="skip" href="#transcript">{ "Skip to transcript" }</a>
            <header class="topbar">
                // The user's part leads back to their dashboard (every repo, `/hud/<user>`).
                <h1>
                    <a class="user" href={format!("/hud/{}", ctx.username)} data-testid="dashboard-link"
                       title="Back to the dashboard">{ &ctx.username }</a>
                    { " / " }<span class="repo">{ &ctx.repo }</span>
                </h1>
                <span class={classes!("badge", if public { "public" } else { "private" })}>{ if public { "Public" } else { "Private" } }</span>
                <span class={classes!("badge", if agent_online { "online" } else { "offline" })} data-testid="agent-online">
                    { if agent_online { "Agent online" } else { "Agent offline" } }
                </span>
                if needs_input {
                    <span class="badge st-waiting" data-testid="needs-input">{ "Waiting for input" }</span>
                }
                <span class="spacer"></span>
                <ConnectionIndicator connection={store.connection} />
            </header>
            { for notice }
            if forbidden {
                <main class="layout single"><p class="muted center">{ "This HUD is private." }</p></main>
            } else {
                <main class="layout">
                    <div class="main-pane">
                        if store.selected_task.is_some() {
                            <button type="button" class="link back" onclick={
                                let dispatch = store.dispatcher();
                                Callback::from(move |_: MouseEvent| dispatch.dispatch(Action::SelectTask(None)))
                            }>{ "← Back to the current task" }</button>
                        }
                        <ThreadView turns={turns} owner={ctx.is_owner}
                                    on_cancel={ctx.is_owner.then_some(on_cancel)}
                                    empty_text={Some(AttrValue::from(match (hud, &store.shown_task_id()) {
                                        (None, _) => "Connecting…",
                                        (Some(_), None) => "Nothing has run in this repo yet.",
                                        (Some(_), Some(_)) => "Waiting for output…",
                                    }))} />
                    </div>
                    <aside class="side">
                        <RepoPanel repo={hud.and_then(|h| h.repo_status.clone())} title={AttrValue::from("Repository")} />
                        if ctx.is_owner {
                            <StartForm can_start={can_start} reason={reason} busy={*starting} on_start={on_start} runner_available={runner_available}
                                       runner_needs_clone_url={runner_needs_clone_url} agent_online={agent_online}
                                       executors={executors} message={start_message} />
                            <SettingsToggles settings={store.settings} on_change={on_settings} />
                            <AlertList alerts={repo_alerts} on_ack={on_ack} />
                            <TaskList tasks={repo_tasks} selected={shown_id.map(AttrValue::from)} on_select={on_select} />
                        }
                    </aside>
                </main>
            }
        </div>
    }
}
