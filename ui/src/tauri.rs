//! The desktop shell's side of the cockpit: Tauri commands and events, through
//! `window.__TAURI_INTERNALS__` (what `@tauri-apps/api` uses underneath), so no JS bundle is needed.
//!
//! Command names and event names are `flightdeck_protocol::desktop`'s. The commands this app
//! calls (arguments camelCase, answers the protocol's types):
//! - `realtime_subscribe {topics: [String]}` -> `null`; the shell then emits, on the event
//!   [`REALTIME_EVENT`], one `ServerMessage` per frame (`snapshot` for each topic, then `event`s),
//!   exactly as the relay's `/api/realtime` would.
//! - `task_events {taskId, after}` -> `EventsResponse`
//! - `ack_alert {id}` -> `AlertResponse`
//! - `create_task {request: CreateTaskRequest}` -> `TaskResponse`
//! - `health {}` -> anything (only success matters)
//! - `decide_permission {request: DecideRequest}` -> `Task`; `reply_task {request: ReplyTaskRequest}` -> `Task`
//! - desktop only: `cancel_task {taskId}`, `get_settings {}`, `set_settings {update}`,
//!   `pick_repo {}`, `set_watching_paused {paused}`, `open_hud {repo?}`

use flightdeck_protocol::api::CreateTaskRequest;
use flightdeck_protocol::desktop::{CommandError, DecideRequest, ReplyTaskRequest, SettingsUpdate};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::js::js_message;

pub use flightdeck_protocol::desktop::{commands, CockpitFocus, FOCUS_EVENT, REALTIME_EVENT};

#[derive(Serialize)]
pub struct NoArgs {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEventsArgs {
    pub task_id: String,
    pub after: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIdArgs {
    pub task_id: String,
}

#[derive(Serialize)]
pub struct SettingsArgs {
    pub update: SettingsUpdate,
}

#[derive(Serialize)]
pub struct PausedArgs {
    pub paused: bool,
}

#[derive(Serialize)]
pub struct InstalledArgs {
    pub installed: bool,
}

#[derive(Serialize)]
pub struct RepoArgs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

#[derive(Serialize)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Serialize)]
pub struct CreateTaskArgs {
    pub request: CreateTaskRequest,
}

#[derive(Serialize)]
pub struct DecideArgs {
    pub request: DecideRequest,
}

#[derive(Serialize)]
pub struct ReplyArgs {
    pub request: ReplyTaskRequest,
}

#[derive(Serialize)]
pub struct SubscribeArgs {
    pub topics: Vec<String>,
}

fn internals() -> Result<JsValue, String> {
    let window = web_sys::window().ok_or("no window")?;
    js_sys::Reflect::get(&window, &JsValue::from_str("__TAURI_INTERNALS__")).map_err(|e| js_message(&e))
}

fn method(object: &JsValue, name: &str) -> Result<js_sys::Function, String> {
    js_sys::Reflect::get(object, &JsValue::from_str(name))
        .map_err(|e| js_message(&e))?
        .dyn_into::<js_sys::Function>()
        .map_err(|_| format!("__TAURI_INTERNALS__.{name} is not a function"))
}

/// Why a command did not answer.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeError {
    /// The shell refused it: its `CommandError`, whose code the views match on.
    Command(CommandError),
    /// Anything else: no shell, a JS exception, an answer that does not decode.
    Other(String),
}

impl InvokeError {
    /// A rejection, as JSON text when it has one: the shell's `CommandError`, or else `other`.
    pub fn from_rejection(json: Option<&str>, other: impl FnOnce() -> String) -> InvokeError {
        match json.and_then(|s| serde_json::from_str::<CommandError>(s).ok()) {
            Some(error) => InvokeError::Command(error),
            None => InvokeError::Other(other()),
        }
    }
}

impl From<String> for InvokeError {
    fn from(message: String) -> InvokeError {
        InvokeError::Other(message)
    }
}

impl std::fmt::Display for InvokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeError::Command(e) => f.write_str(&e.message),
            InvokeError::Other(message) => f.write_str(message),
        }
    }
}

async fn invoke_raw(command: &str, args: JsValue) -> Result<JsValue, InvokeError> {
    let internals = internals()?;
    let invoke = method(&internals, "invoke")?;
    let promise = invoke.call2(&internals, &JsValue::from_str(command), &args).map_err(|e| js_message(&e))?;
    JsFuture::from(promise.dyn_into::<js_sys::Promise>().map_err(|_| "invoke did not return a promise".to_string())?)
        .await
        .map_err(|e| command_error(&e))
}

/// A rejected command: the shell's `CommandError`, or whatever JS threw.
fn command_error(e: &JsValue) -> InvokeError {
    let json = js_sys::JSON::stringify(e).ok().and_then(|s| s.as_string());
    InvokeError::from_rejection(json.as_deref(), || js_message(e))
}

fn to_js<A: Serialize>(args: &A) -> Result<JsValue, String> {
    let text = serde_json::to_string(args).map_err(|e| e.to_string())?;
    js_sys::JSON::parse(&text).map_err(|e| js_message(&e))
}

/// Calls a command and decodes its answer with the protocol's types.
pub async fn invoke<A: Serialize, T: DeserializeOwned>(command: &str, args: &A) -> Result<T, InvokeError> {
    let value = invoke_raw(command, to_js(args)?).await?;
    let text = if value.is_undefined() {
        "null".to_string()
    } else {
        js_sys::JSON::stringify(&value).map_err(|e| js_message(&e))?.as_string().unwrap_or_default()
    };
    serde_json::from_str(&text).map_err(|e| InvokeError::Other(format!("{command}: {e}")))
}

/// A listener for a Tauri event; dropping it stops listening.
pub struct Listener {
    event: String,
    event_id: Option<u32>,
    _callback: Closure<dyn FnMut(JsValue)>,
}

/// Listens to `event`, calling `on_payload` with each payload as JSON text.
pub async fn listen(event: &str, mut on_payload: impl FnMut(String) + 'static) -> Result<Listener, InvokeError> {
    let internals = internals()?;
    let callback = Closure::<dyn FnMut(JsValue)>::new(move |message: JsValue| {
        let payload = js_sys::Reflect::get(&message, &JsValue::from_str("payload")).unwrap_or(JsValue::NULL);
        if let Some(text) = js_sys::JSON::stringify(&payload).ok().and_then(|s| s.as_string()) {
            on_payload(text);
        }
    });
    let transform = method(&internals, "transformCallback")?;
    let handler = transform.call1(&internals, callback.as_ref()).map_err(|e| js_message(&e))?;
    let args = js_sys::Object::new();
    let target = js_sys::Object::new();
    let set = |o: &js_sys::Object, k: &str, v: &JsValue| js_sys::Reflect::set(o, &JsValue::from_str(k), v).map(|_| ());
    set(&target, "kind", &JsValue::from_str("Any")).map_err(|e| js_message(&e))?;
    set(&args, "event", &JsValue::from_str(event)).map_err(|e| js_message(&e))?;
    set(&args, "target", &target).map_err(|e| js_message(&e))?;
    set(&args, "handler", &handler).map_err(|e| js_message(&e))?;
    let id = invoke_raw("plugin:event|listen", args.into()).await?;
    Ok(Listener { event: event.to_string(), event_id: id.as_f64().map(|f| f as u32), _callback: callback })
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(id) = self.event_id {
            let args = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&args, &JsValue::from_str("event"), &JsValue::from_str(&self.event));
            let _ = js_sys::Reflect::set(&args, &JsValue::from_str("eventId"), &JsValue::from_f64(id.into()));
            wasm_bindgen_futures::spawn_local(async move {
                let _ = invoke_raw("plugin:event|unlisten", args.into()).await;
            });
        }
    }
}
