use std::rc::Rc;

use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use flightdeck_protocol::api::CreateTaskRequest;

use super::{AlertList, ConnectionIndicator, DesktopSettings, NewTaskForm, RepoPanel, TaskList, ThreadView};
use crate::backend::Backend;
use crate::hooks::{use_app, use_conversation, use_needs_input_title};
use crate::state::Action;

/// The desktop window: every repo, every task, alerts, and the selected task's transcript.
#[function_component(CockpitPage)]
pub fn cockpit_page() -> Html {
    let app = use_app();
    let store = &app.store;
    let on_select = {
        let dispatch = store.dispatcher();
        let subscribe = app.subscribe.clone();
        Callback::from(move |id: String| {
            subscribe.emit(format!("task:{id}"));
            dispatch.dispatch(Action::SelectTask(Some(id)));
        })
    };
    let on_ack = app.on_ack_alert();
    let creating = use_state(|| false);
    let on_create = {
        let backend = app.backend.clone();
        let dispatch = store.dispatcher();
        let subscribe = app.subscribe.clone();
        let creating = creating.clone();
        Callback::from(move |request: CreateTaskRequest| {
            let (backend, dispatch, subscribe, creating) =
                (backend.clone(), dispatch.clone(), subscribe.clone(), creating.clone());
            creating.set(true);
            spawn_local(async move {
                match backend.create_task(&request).await {
                    Ok(answer) => {
                        let id = answer.task.id.clone();
                        dispatch.dispatch(Action::TaskUpdated(answer.task));
                        subscribe.emit(format!("task:{id}"));
                        dispatch.dispatch(Action::SelectTask(Some(id)));
                    }
                    Err(e) => dispatch.dispatch(Action::Notice(Some(format!("Could not start: {e}")))),
                }
                creating.set(false);
            });
        })
    };
    let on_cancel = app.on_cancel_task();
    let on_dismiss = {
        let dispatch = store.dispatcher();
        Callback::from(move |_: MouseEvent| dispatch.dispatch(Action::Notice(None)))
    };
    let selected = store.selected_task.clone();
    // On a relay the conversation is loaded over REST; the desktop's task list has every turn.
    let turns = use_conversation(selected.clone(), app.backend != Backend::Tauri);
    let waiting = store.tasks.iter().filter(|t| store.needs_input(t)).count();
    use_needs_input_title(waiting > 0);
    let online = store.agents.iter().filter(|a| a.status != flightdeck_protocol::AgentState::Offline).count();
    // The desktop's own agent reports its relay link (the relay-fed cockpit has no such field).
    let link = store.agents.iter().find_map(|a| {
        let status = a.metadata.get("link")?.as_str()?.to_string();
        let error = a.metadata.get("linkError").and_then(|e| e.as_str()).map(str::to_string);
        Some((status, error))
    });
    let link_badge = link.map(|(status, error)| {
        let (class, text) = match (status.as_str(), error) {
            ("connected", _) => ("badge online", "Relay: connected".to_string()),
            ("connecting", _) => ("badge", "Relay: connecting…".to_string()),
            ("disconnected", _) => ("badge offline", "Relay: offline, retrying".to_string()),
            ("stopped", Some(why)) => ("badge danger", format!("Relay stopped: {why}")),
            ("stopped", None) => ("badge danger", "Relay stopped this agent".to_string()),
            _ => ("badge", "Local only (no relay)".to_string()),
        };
        html! { <span class={class} data-testid="relay-link" data-state={status}>{ text }</span> }
    });
    html! {
        <div class="app cockpit" data-mode="cockpit">
            <header class="topbar">
                <h1>{ "Flightdeck" }</h1>
                <span class="badge">{ format!("{online} agent{} online", if online == 1 { "" } else { "s" }) }</span>
                { for link_badge }
                if waiting > 0 {
                    <span class="badge st-waiting" data-testid="needs-input">{ format!("{waiting} waiting for input") }</span>
                }
                <span class="spacer"></span>
                <ConnectionIndicator connection={store.connection} />
            </header>
            if let Some(n) = store.notice.clone() {
                <div class="notice" role="alert">
                    <span>{ n }</span>
                    <button type="button" class="small" aria-label="Dismiss" onclick={on_dismiss}>{ "×" }</button>
                </div>
            }
            <main class="layout">
                <div class="main-pane">
                    <ThreadView turns={turns} owner={true} on_cancel={Some(on_cancel)}
                                empty_text={Some(AttrValue::from("Choose a task to see its transcript."))} />
                </div>
                <aside class="side">
                    <NewTaskForm repos={Rc::new(store.repos.clone())} agents={Rc::new(store.agents.clone())} busy={*creating} on_create={on_create} />
                    <AlertList alerts={Rc::new(store.alerts.clone())} on_ack={on_ack} />
                    <TaskList tasks={Rc::new(store.tasks.clone())} selected={selected.map(AttrValue::from)} on_select={on_select} />
                    { for store.repos.iter().map(|r| html! { <RepoPanel key={r.id.clone()} repo={Some(r.clone())} /> }) }
                    if app.backend == Backend::Tauri {
                        <DesktopSettings />
                    }
                </aside>
            </main>
        </div>
    }
}
