use std::rc::Rc;

use flightdeck_protocol::api::DashboardContext;
use flightdeck_protocol::AgentState;
use yew::prelude::*;

use super::{short_time, AlertList, ConnectionIndicator, PushPanel};
use crate::hooks::{use_app, use_needs_input_title};
use crate::state::{Action, DashboardRow};

/// Most tasks in the owner's "Recent tasks" list.
const RECENT_TASKS: usize = 15;

#[derive(Properties, PartialEq)]
pub struct DashboardPageProps {
    pub context: Rc<DashboardContext>,
}

/// A user's dashboard (`/hud/<user>`, SPEC 12), live: every repo with its status, agent, current
/// task and a `waiting` badge, each linking to its HUD. The owner also sees private repos,
/// agents, recent tasks across repos and unacknowledged alerts; anyone else the public repos.
#[function_component(DashboardPage)]
pub fn dashboard_page(props: &DashboardPageProps) -> Html {
    let app = use_app();
    let store = &app.store;
    let ctx = &props.context;
    let owner = ctx.is_owner;
    let rows = store.dashboard_rows(owner);
    let waiting = rows.iter().filter(|r| r.task.as_ref().is_some_and(|t| store.needs_input(t))).count();
    use_needs_input_title(waiting > 0);
    let loaded = store.dashboard.is_some();
    let on_ack = app.on_ack_alert();
    let on_dismiss = {
        let dispatch = store.dispatcher();
        Callback::from(move |_: MouseEvent| dispatch.dispatch(Action::Notice(None)))
    };
    let hud = |repo: &str| format!("/hud/{}/{}", ctx.username, repo);
    let card = |row: &DashboardRow| {
        let task_waiting = row.task.as_ref().is_some_and(|t| store.needs_input(t));
        html! {
            <li class={classes!("repo-card", task_waiting.then_some("waiting"))} data-testid="repo-card" data-repo={row.repo.clone()}>
                <h3>
                    <a href={hud(&row.repo)}>{ &row.repo }</a>
                    if let Some(s) = &row.status {
                        <span class={classes!("badge", format!("rs-{}", s.status.as_str()))}>{ s.status.as_str() }</span>
                    }
                    if let Some(public) = row.public {
                        <span class={classes!("badge", if public { "public" } else { "private" })}>
                            { if public { "Public" } else { "Private" } }
                        </span>
                    }
                    if task_waiting {
                        <span class="badge st-waiting" data-testid="waiting">{ "waiting" }</span>
                    }
                </h3>
                <p class="meta muted">
                    <span class={classes!("badge", if row.agent_online { "online" } else { "offline" })} data-testid="repo-agent">
                        { if row.agent_online { "Agent online" } else { "Agent offline" } }
                    </span>
                    if let Some(branch) = row.status.as_ref().and_then(|s| s.branch.clone()) {
                        { " " }<code>{ branch }</code>
                    }
                </p>
                if let Some(task) = &row.task {
                    <p class="task-line" data-testid="repo-task">
                        <span class={classes!("badge", format!("st-{}", task.status.as_str()))}>{ task.status.as_str() }</span>
                        <span class="title" title={task.title.clone()}>{ &task.title }</span>
                    </p>
                } else {
                    <p class="task-line muted">{ "No task yet" }</p>
                }
            </li>
        }
    };
    let online = store.agents.iter().filter(|a| a.status != AgentState::Offline).count();
    html! {
        <div class="app dashboard" data-mode="dashboard">
            <header class="topbar">
                <h1>{ &ctx.username }<span class="user">{ " · Flightdeck" }</span></h1>
                if owner {
                    <span class="badge">{ format!("{online} agent{} online", if online == 1 { "" } else { "s" }) }</span>
                }
                if waiting > 0 {
                    <span class="badge st-waiting" data-testid="needs-input">{ format!("{waiting} waiting for input") }</span>
                }
                <span class="spacer"></span>
                if !owner {
                    <a class="login-link" href={format!("/login?next=/hud/{}", ctx.username)}>{ "Log in" }</a>
                }
                <ConnectionIndicator connection={store.connection} />
            </header>
            if let Some(n) = store.notice.clone() {
                <div class="notice" role="alert">
                    <span>{ n }</span>
                    <button type="button" class="small" aria-label="Dismiss" onclick={on_dismiss}>{ "×" }</button>
                </div>
            }
            <main class="layout">
                <section class="dash-section" aria-label="Repositories">
                    <h2>{ if owner { "Repositories" } else { "Public repositories" } }</h2>
                    if !loaded {
                        <p class="muted">{ "Connecting…" }</p>
                    } else if rows.is_empty() {
                        <p class="muted" data-testid="no-repos">
                            { if owner { "No repositories yet: run flightdeck-agent (or the desktop app) with this relay." }
                              else { "Nothing public here yet." } }
                        </p>
                    }
                    <ul class="repo-cards">{ for rows.iter().map(card) }</ul>
                </section>
                if owner {
                    <aside class="side">
                        <AlertList alerts={Rc::new(store.alerts.clone())} on_ack={on_ack} />
                        <PushPanel />
                        <section class="panel agents" aria-label="Agents">
                            <h3>{ "Agents" }</h3>
                            if store.agents.is_empty() {
                                <p class="muted">{ "No agent has connected yet." }</p>
                            }
                            <ul class="agent-list">
                                { for store.agents.iter().map(|a| html! {
                                    <li key={a.agent_id.clone()} data-testid="agent">
                                        <span class={classes!("badge", if a.status == AgentState::Offline { "offline" } else { "online" })}>
                                            { match a.status {
                                                AgentState::Online => "online",
                                                AgentState::Offline => "offline",
                                                AgentState::Busy => "busy",
                                                AgentState::Idle => "idle",
                                            } }
                                        </span>
                                        <span>{ &a.agent_id }</span>
                                        <span class="muted">{ format!("{} repo{}", a.repos.len(), if a.repos.len() == 1 { "" } else { "s" }) }</span>
                                    </li>
                                }) }
                            </ul>
                        </section>
                        <section class="panel recent-tasks" aria-label="Recent tasks">
                            <h3>{ "Recent tasks" }</h3>
                            if store.tasks.is_empty() {
                                <p class="muted">{ "No tasks yet." }</p>
                            }
                            <ul>
                                { for store.tasks.iter().take(RECENT_TASKS).map(|t| html! {
                                    <li key={t.id.clone()} data-testid="recent-task">
                                        <span class={classes!("badge", format!("st-{}", t.status.as_str()))}>{ t.status.as_str() }</span>
                                        <a href={hud(&t.repo)} title={t.title.clone()}>{ &t.title }</a>
                                        <span class="muted">{ format!("{} · {}", t.repo, short_time(&t.created_at)) }</span>
                                    </li>
                                }) }
                            </ul>
                        </section>
                    </aside>
                }
            </main>
        </div>
    }
}
