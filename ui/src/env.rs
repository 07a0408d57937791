//! Which mode the app runs in, read from the page it was loaded into.
//!
//! - `hud`: the relay's `/hud/...` and `/embed/...` pages set `window.HUD_CONTEXT`.
//! - `dashboard`: the relay's `/hud/<user>` page sets `window.DASHBOARD_CONTEXT`.
//! - `cockpit` in the desktop window: `window.__TAURI_INTERNALS__` exists; data comes from
//!   Tauri commands and events.
//! - `cockpit` in a browser (`/assets/index.html` on a relay, or any page with
//!   `?relay=http://host:port`): the same views fed by the relay's realtime bus, as the owner
//!   (session cookie). Handy for trying the cockpit views without the desktop app.

use flightdeck_protocol::api::{DashboardContext, HudContext};
use wasm_bindgen::JsValue;

use crate::backend::Backend;

/// The mode and where its data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Hud { context: HudContext, backend: Backend },
    Dashboard { context: DashboardContext, backend: Backend },
    Cockpit { backend: Backend, ws_url: Option<String> },
}

/// A global of `window`, if set.
fn global(name: &str) -> Option<JsValue> {
    let window = web_sys::window()?;
    let value = js_sys::Reflect::get(&window, &JsValue::from_str(name)).ok()?;
    (!value.is_undefined() && !value.is_null()).then_some(value)
}

/// `window.HUD_CONTEXT`, decoded with the protocol's type.
pub fn hud_context() -> Option<Result<HudContext, String>> {
    page_context("HUD_CONTEXT")
}

/// A page's context global (`HUD_CONTEXT`, `DASHBOARD_CONTEXT`), decoded with the protocol's type.
fn page_context<T: serde::de::DeserializeOwned>(name: &str) -> Option<Result<T, String>> {
    let value = global(name)?;
    let text = js_sys::JSON::stringify(&value).ok()?.as_string()?;
    Some(serde_json::from_str(&text).map_err(|e| format!("{name}: {e}")))
}

/// `ws://` or `wss://` for an `http(s)://` base.
pub fn ws_url_for(http_base: &str) -> String {
    let rest = http_base.trim_end_matches('/');
    let ws = if let Some(r) = rest.strip_prefix("https://") {
        format!("wss://{r}")
    } else if let Some(r) = rest.strip_prefix("http://") {
        format!("ws://{r}")
    } else {
        rest.to_string()
    };
    format!("{ws}/api/realtime")
}

/// A parameter of the page's query string, decoded (`?task=<id>` from a notification).
pub fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    search.trim_start_matches('?').split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name && !v.is_empty())
            .then(|| js_sys::decode_uri_component(v).ok().and_then(|s| s.as_string()).unwrap_or_else(|| v.to_string()))
    })
}

pub fn detect() -> Result<Mode, String> {
    if let Some(context) = hud_context() {
        return Ok(Mode::Hud { context: context?, backend: Backend::Relay { base: String::new() } });
    }
    if let Some(context) = page_context::<DashboardContext>("DASHBOARD_CONTEXT") {
        return Ok(Mode::Dashboard { context: context?, backend: Backend::Relay { base: String::new() } });
    }
    if global("__TAURI_INTERNALS__").is_some() {
        return Ok(Mode::Cockpit { backend: Backend::Tauri, ws_url: None });
    }
    let location = web_sys::window().ok_or("no window")?.location();
    let search = location.search().unwrap_or_default();
    let relay = search
        .trim_start_matches('?')
        .split('&')
        .find_map(|kv| kv.strip_prefix("relay="))
        .map(|v| js_sys::decode_uri_component(v).ok().and_then(|s| s.as_string()).unwrap_or_else(|| v.to_string()));
    let (base, origin) = match relay {
        Some(base) => (base.clone(), base),
        None => (String::new(), location.origin().unwrap_or_default()),
    };
    Ok(Mode::Cockpit { backend: Backend::Relay { base }, ws_url: Some(ws_url_for(&origin)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls() {
        assert_eq!(ws_url_for("http://127.0.0.1:8787"), "ws://127.0.0.1:8787/api/realtime");
        assert_eq!(ws_url_for("https://relay.example/"), "wss://relay.example/api/realtime");
    }
}
