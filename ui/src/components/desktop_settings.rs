use flightdeck_protocol::desktop::{ClaudeHooks, SettingsUpdate, SettingsView};
use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::hooks::use_app;
use crate::state::Action;

/// The desktop agent's settings: relay URL, user, key (write-only), agent id, watched repos,
/// pause watching, custom ACP agents, Claude Code sessions started in a terminal. Only in the desktop window (Tauri
/// commands `get_settings`, `set_settings`, `pick_repo`, `set_watching_paused`, `open_hud`,
/// `claude_hooks`, `set_claude_hooks`).
#[function_component(DesktopSettings)]
pub fn desktop_settings() -> Html {
    let app = use_app();
    let view = use_state(|| None::<SettingsView>);
    let relay_url = use_node_ref();
    let relay_user = use_node_ref();
    let key = use_node_ref();
    let agent_id = use_node_ref();
    let acp_agents = use_node_ref();
    let saved = use_state(|| None::<AttrValue>);
    // Turning the relay on asks first whether the earlier local tasks go too.
    let asking = use_state(|| None::<SettingsUpdate>);
    let hooks = use_state(|| None::<ClaudeHooks>);
    {
        let backend = app.backend.clone();
        let hooks = hooks.clone();
        use_effect_with((), move |_| {
            spawn_local(async move {
                // A missing HOME or a broken settings file: the switch stays hidden.
                if let Ok(h) = backend.claude_hooks().await {
                    hooks.set(Some(h));
                }
            });
        });
    }
    {
        let backend = app.backend.clone();
        let view = view.clone();
        let dispatch = app.store.dispatcher();
        use_effect_with((), move |_| {
            spawn_local(async move {
                match backend.desktop_settings().await {
                    Ok(v) => view.set(Some(v)),
                    Err(e) => dispatch.dispatch(Action::Notice(Some(format!("settings: {e}")))),
                }
            });
        });
    }
    let Some(current) = (*view).clone() else {
        return html! { <section class="panel settings"><h3>{ "Settings" }</h3><p class="muted">{ "Loading…" }</p></section> };
    };
    let value = |r: &NodeRef| r.cast::<HtmlInputElement>().map(|i| i.value());
    let save = {
        let backend = app.backend.clone();
        let view = view.clone();
        let saved = saved.clone();
        let asking = asking.clone();
        let dispatch = app.store.dispatcher();
        Callback::from(move |update: SettingsUpdate| {
            asking.set(None);
            let (backend, view, saved, dispatch) = (backend.clone(), view.clone(), saved.clone(), dispatch.clone());
            spawn_local(async move {
                match backend.set_desktop_settings(update).await {
                    Ok(v) => {
                        view.set(Some(v));
                        saved.set(Some("Saved.".into()));
                    }
                    Err(e) => dispatch.dispatch(Action::Notice(Some(format!("Could not save settings: {e}")))),
                }
            });
        })
    };
    let on_save = {
        let save = save.clone();
        let asking = asking.clone();
        let relay_was_on = current.relay_url.is_some();
        let (relay_url, relay_user, key, agent_id) =
            (relay_url.clone(), relay_user.clone(), key.clone(), agent_id.clone());
        let acp_agents = acp_agents.clone();
        let saved_agents = current.acp_agents.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let update = SettingsUpdate {
                relay_url: value(&relay_url),
                relay_user: value(&relay_user),
                // An empty key field means "keep the stored key".
                key: value(&key).filter(|k| !k.is_empty()),
                agent_id: value(&agent_id).filter(|a| !a.is_empty()),
                upload_history: None,
                // Sent only when changed (the agent checks the whole set before saving it).
                acp_agents: acp_agents
                    .cast::<web_sys::HtmlTextAreaElement>()
                    .map(|t| t.value().lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
                    .filter(|agents: &Vec<String>| *agents != saved_agents),
            };
            let turns_relay_on = !relay_was_on && update.relay_url.as_deref().is_some_and(|u| !u.trim().is_empty());
            if turns_relay_on {
                asking.set(Some(update));
            } else {
                save.emit(update);
            }
        })
    };
    let question = (*asking).clone().map(|update| {
        let answer = |upload: bool| {
            let (save, update) = (save.clone(), update.clone());
            Callback::from(move |_: MouseEvent| {
                save.emit(SettingsUpdate { upload_history: Some(upload), ..update.clone() })
            })
        };
        let cancel = {
            let asking = asking.clone();
            Callback::from(move |_: MouseEvent| asking.set(None))
        };
        html! {
            <div class="ask" role="dialog" aria-label="Upload earlier tasks?">
                <p><strong>{ "Upload your earlier tasks too?" }</strong></p>
                <p class="muted">{ "Tasks already recorded on this machine stay here unless you upload them. \
                    Whatever you upload, the relay keeps, and a public HUD shows." }</p>
                <div class="row">
                    <button type="button" class="primary" onclick={answer(false)}>{ "Only new tasks" }</button>
                    <button type="button" onclick={answer(true)}>{ "Upload earlier tasks too" }</button>
                    <button type="button" class="small" onclick={cancel}>{ "Cancel" }</button>
                </div>
            </div>
        }
    });
    // The fields are controlled: while the question is open they show what is being saved.
    let pending = (*asking).clone();
    let shown = |field: fn(&SettingsUpdate) -> Option<String>, saved: Option<String>| {
        pending.as_ref().and_then(field).or(saved).unwrap_or_default()
    };
    let on_remove_repo = {
        let backend = app.backend.clone();
        let view = view.clone();
        let dispatch = app.store.dispatcher();
        Callback::from(move |path: String| {
            let (backend, view, dispatch) = (backend.clone(), view.clone(), dispatch.clone());
            spawn_local(async move {
                match backend.remove_repo(path).await {
                    Ok(()) => {
                        if let Ok(v) = backend.desktop_settings().await {
                            view.set(Some(v));
                        }
                    }
                    Err(e) => dispatch.dispatch(Action::Notice(Some(format!("Could not remove the repository: {e}")))),
                }
            });
        })
    };
    let on_add_repo = {
        let backend = app.backend.clone();
        let view = view.clone();
        let dispatch = app.store.dispatcher();
        Callback::from(move |_: MouseEvent| {
            let (backend, view, dispatch) = (backend.clone(), view.clone(), dispatch.clone());
            spawn_local(async move {
                match backend.pick_repo().await {
                    Ok(_) => {
                        if let Ok(v) = backend.desktop_settings().await {
                            view.set(Some(v));
                        }
                    }
                    Err(e) => dispatch.dispatch(Action::Notice(Some(format!("Could not add the repository: {e}")))),
                }
            });
        })
    };
    let on_pause = {
        let backend = app.backend.clone();
        let view = view.clone();
        let current = current.clone();
        Callback::from(move |e: Event| {
            let paused = e.target_unchecked_into::<HtmlInputElement>().checked();
            let (backend, view) = (backend.clone(), view.clone());
            view.set(Some(SettingsView { watching_paused: paused, ..current.clone() }));
            spawn_local(async move {
                let _ = backend.set_watching_paused(paused).await;
            });
        })
    };
    let on_hooks = {
        let backend = app.backend.clone();
        let hooks = hooks.clone();
        let dispatch = app.store.dispatcher();
        Callback::from(move |e: Event| {
            let installed = e.target_unchecked_into::<HtmlInputElement>().checked();
            let (backend, hooks, dispatch) = (backend.clone(), hooks.clone(), dispatch.clone());
            spawn_local(async move {
                match backend.set_claude_hooks(installed).await {
                    Ok(h) => hooks.set(Some(h)),
                    Err(e) => {
                        dispatch.dispatch(Action::Notice(Some(format!("Could not change Claude Code's hooks: {e}"))));
                        if let Ok(h) = backend.claude_hooks().await {
                            hooks.set(Some(h));
                        }
                    }
                }
            });
        })
    };
    // Which of them this agent found (on PATH, or as a path given).
    let found: Vec<&str> = current
        .acp_agents
        .iter()
        .filter_map(|spec| spec.split_once('=').map(|(name, _)| name))
        .filter(|name| {
            app.store.agents.iter().any(|a| a.capabilities.iter().any(|c| c.strip_prefix("acp:") == Some(name)))
        })
        .collect();
    let on_open_hud = {
        let backend = app.backend.clone();
        let dispatch = app.store.dispatcher();
        Callback::from(move |_: MouseEvent| {
            let (backend, dispatch) = (backend.clone(), dispatch.clone());
            spawn_local(async move {
                if let Err(e) = backend.open_hud(None).await {
                    dispatch.dispatch(Action::Notice(Some(format!("Could not open the HUD: {e}"))));
                }
            });
        })
    };
    html! {
        <section class="panel settings desktop" aria-label="Settings">
            <h3>{ "Settings" }</h3>
            <form onsubmit={on_save}>
                <div class="field">
                    <label for="set-relay-url">{ "Relay URL" }</label>
                    <input id="set-relay-url" ref={relay_url} type="url" placeholder="https://relay.example (empty: local only)"
                           value={shown(|u| u.relay_url.clone(), current.relay_url.clone())} />
                </div>
                <div class="field">
                    <label for="set-relay-user">{ "Relay user" }</label>
                    <input id="set-relay-user" ref={relay_user} value={shown(|u| u.relay_user.clone(), current.relay_user.clone())} />
                </div>
                <div class="field">
                    <label for="set-key">{ "Agent key" }</label>
                    <input id="set-key" ref={key} type="password" autocomplete="off"
                           placeholder={current.key_hint.clone().unwrap_or_else(|| "not set".into())} />
                </div>
                <div class="field">
                    <label for="set-agent-id">{ "Agent id" }</label>
                    <input id="set-agent-id" ref={agent_id} value={shown(|u| u.agent_id.clone(), Some(current.agent_id.clone()))} />
                </div>
                <div class="field">
                    <label for="set-acp-agents">{ "ACP agents" }</label>
                    <textarea id="set-acp-agents" ref={acp_agents} rows="2" placeholder="mine=my-agent --acp"
                              value={current.acp_agents.join("\n")}></textarea>
                    <span class="muted hint">{ "One per line, NAME=COMMAND (the command starts the agent on stdio). Found: " }
                        { if found.is_empty() { "none".to_string() } else { found.join(", ") } }</span>
                </div>
                <div class="row">
                    <button type="submit" class="primary">{ "Save" }</button>
                    <span class="muted" aria-live="polite">{ (*saved).clone().unwrap_or_default() }</span>
                </div>
            </form>
            // Always there, so that the question appears right below the form.
            <div class="ask-slot" aria-live="polite">{ for question }</div>
            <h3>{ "Watched repositories" }</h3>
            <ul class="paths">
                { for current.repos.iter().map(|p| {
                    let remove = { let (cb, p) = (on_remove_repo.clone(), p.clone()); Callback::from(move |_: MouseEvent| cb.emit(p.clone())) };
                    html! {
                        <li>
                            <code>{ p }</code>
                            <button type="button" class="small remove" aria-label={format!("Stop watching {p}")} onclick={remove}>{ "Remove" }</button>
                        </li>
                    }
                }) }
            </ul>
            <div class="row">
                <button type="button" class="small" onclick={on_add_repo}>{ "Add repository…" }</button>
                <button type="button" class="small" onclick={on_open_hud} disabled={current.relay_url.is_none()}>{ "Open HUD in browser" }</button>
            </div>
            <div class="switch">
                <input type="checkbox" id="set-paused" role="switch" checked={current.watching_paused} onchange={on_pause} />
                <label for="set-paused">{ "Pause watching" }</label>
            </div>
            if let Some(h) = (*hooks).clone() {
                <div class="switch">
                    <input type="checkbox" id="set-claude-hooks" role="switch" checked={h.installed} onchange={on_hooks} />
                    <label for="set-claude-hooks" title={format!("Adds Flightdeck's hooks to {}", h.settings_path)}>
                        { "Show terminal sessions" }
                    </label>
                </div>
                <p class="muted hint">{ "Claude Code sessions you start in a terminal, in a watched repo, appear here and on the HUD." }</p>
            }
        </section>
    }
}
