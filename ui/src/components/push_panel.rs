use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::push::{self, Device, DeviceState, KINDS};

/// What the panel is doing or last did.
#[derive(Debug, Clone, PartialEq)]
enum Note {
    None,
    Busy(&'static str),
    Done(String),
    Failed(String),
}

/// "Notify me on this device" on the owner's dashboard (SPEC 13): the kinds of notification
/// and a device name, a button that asks the browser for permission and subscribes, a test
/// button, and every device of this user with a Remove button. Pages without the browser glue
/// (the desktop window) do not show it.
#[function_component(PushPanel)]
pub fn push_panel() -> Html {
    let device_state = use_state(DeviceState::default);
    let devices = use_state(Vec::<Device>::new);
    let kinds = use_state(|| KINDS.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>());
    let name = use_state(push::default_device_name);
    let note = use_state(|| Note::None);

    let refresh = {
        let device_state = device_state.clone();
        let devices = devices.clone();
        let note = note.clone();
        Callback::from(move |()| {
            let device_state = device_state.clone();
            let devices = devices.clone();
            let note = note.clone();
            spawn_local(async move {
                match push::state().await {
                    Ok(s) => device_state.set(s),
                    Err(e) => note.set(Note::Failed(e)),
                }
                match push::devices().await {
                    Ok(list) => devices.set(list),
                    Err(e) => note.set(Note::Failed(e)),
                }
            });
        })
    };
    {
        let refresh = refresh.clone();
        use_effect_with((), move |_| {
            if push::available() {
                refresh.emit(());
            }
        });
    }
    if !push::available() {
        return html! {};
    }

    let on_kind = |kind: &'static str| {
        let kinds = kinds.clone();
        Callback::from(move |e: Event| {
            let checked = e.target_unchecked_into::<HtmlInputElement>().checked();
            let mut next: Vec<String> = (*kinds).iter().filter(|k| k.as_str() != kind).cloned().collect();
            if checked {
                next.push(kind.to_string());
            }
            kinds.set(next);
        })
    };
    let on_name = {
        let name = name.clone();
        Callback::from(move |e: InputEvent| name.set(e.target_unchecked_into::<HtmlInputElement>().value()))
    };
    let on_enable = {
        let kinds = kinds.clone();
        let name = name.clone();
        let note = note.clone();
        let refresh = refresh.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let kinds = (*kinds).clone();
            let name = name.trim().to_string();
            let note = note.clone();
            let refresh = refresh.clone();
            if kinds.is_empty() {
                note.set(Note::Failed("Pick at least one kind of notification.".into()));
                return;
            }
            note.set(Note::Busy("Asking the browser…"));
            spawn_local(async move {
                let device = (!name.is_empty()).then_some(name.as_str());
                match push::enable(&kinds, device).await {
                    Ok(d) => note.set(Note::Done(format!(
                        "This device ({}) gets notifications: {}.",
                        d.device.unwrap_or_else(|| "unnamed".into()),
                        push::kinds_label(&d.kinds)
                    ))),
                    Err(e) => note.set(Note::Failed(e)),
                }
                refresh.emit(());
            });
        })
    };
    let on_test = {
        let note = note.clone();
        Callback::from(move |_: MouseEvent| {
            let note = note.clone();
            note.set(Note::Busy("Sending a test notification…"));
            spawn_local(async move {
                match push::test().await {
                    Ok(()) => note.set(Note::Done("A test notification is on its way to every device.".into())),
                    Err(e) => note.set(Note::Failed(e)),
                }
            });
        })
    };
    let on_remove = |id: String| {
        let note = note.clone();
        let refresh = refresh.clone();
        Callback::from(move |_: MouseEvent| {
            let id = id.clone();
            let note = note.clone();
            let refresh = refresh.clone();
            spawn_local(async move {
                match push::remove(&id).await {
                    Ok(()) => note.set(Note::Done("Removed.".into())),
                    Err(e) => note.set(Note::Failed(e)),
                }
                refresh.emit(());
            });
        })
    };

    let this = device_state.id.clone();
    let busy = matches!(*note, Note::Busy(_));
    html! {
        <section class="panel push" aria-label="Notifications" data-testid="push-panel">
            <h3>{ "Notifications" }</h3>
            if !device_state.supported {
                <p class="muted" data-testid="push-unsupported">
                    { "This browser cannot show notifications from a web page. On an iPhone or iPad, add this page to the home screen and open it from there." }
                </p>
            } else {
                <form class="push-form" onsubmit={on_enable}>
                    <fieldset>
                        <legend>{ "Notify me on this device when a task…" }</legend>
                        { for KINDS.iter().map(|(kind, label)| html! {
                            <label class="check">
                                <input type="checkbox" name="kind" value={*kind} data-testid={format!("push-kind-{kind}")}
                                       checked={kinds.iter().any(|k| k == kind)} onchange={on_kind(kind)} />
                                { *label }
                            </label>
                        }) }
                    </fieldset>
                    <label class="field">
                        <span>{ "Device name" }</span>
                        <input type="text" maxlength="64" value={(*name).clone()} oninput={on_name} data-testid="push-device-name" />
                    </label>
                    <div class="row">
                        <button type="submit" disabled={busy} data-testid="push-enable">
                            { if device_state.subscribed { "Update this device" } else { "Notify me on this device" } }
                        </button>
                        <button type="button" class="secondary" disabled={busy || devices.is_empty()} onclick={on_test} data-testid="push-test">
                            { "Send a test" }
                        </button>
                    </div>
                    if device_state.permission == "denied" {
                        <p class="muted">{ "Notifications are blocked for this site: allow them in the browser's site settings." }</p>
                    }
                </form>
            }
            { match &*note {
                Note::None => html! {},
                Note::Busy(text) => html! { <p class="muted" role="status">{ *text }</p> },
                Note::Done(text) => html! { <p class="ok" role="status" data-testid="push-note">{ text }</p> },
                Note::Failed(text) => html! { <p class="error" role="alert" data-testid="push-error">{ text }</p> },
            } }
            <h4>{ "Your devices" }</h4>
            if devices.is_empty() {
                <p class="muted" data-testid="push-no-devices">{ "No device gets notifications yet." }</p>
            }
            <ul class="device-list">
                { for devices.iter().map(|d| html! {
                    <li key={d.id.clone()} data-testid="push-device">
                        <span class="device-name">{ d.device.clone().unwrap_or_else(|| "Unnamed device".into()) }</span>
                        if this.as_deref() == Some(d.id.as_str()) {
                            <span class="badge">{ "this device" }</span>
                        }
                        <span class="muted">{ push::kinds_label(&d.kinds) }</span>
                        <button type="button" class="small" aria-label={format!("Remove {}", d.device.clone().unwrap_or_default())}
                                onclick={on_remove(d.id.clone())}>{ "Remove" }</button>
                    </li>
                }) }
            </ul>
        </section>
    }
}
