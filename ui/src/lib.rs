//! flightdeck-ui: the yew app. One app, two modes: the HUD in a browser (served by the relay,
//! reading `window.HUD_CONTEXT`) and the cockpit in the desktop window (Tauri commands and events).
//!
//! - [`state`]: the store and its reducer (pure; tested on the host).
//! - [`transcript`]: a task's transcript from its events: order, dedup, chunk coalescing (pure).
//! - [`permission`]: a permission request's input made readable; a question's answers (pure).
//! - [`patch`]: a `diff` event's patch split by file, lines classified for colour (pure).
//! - [`markdown`]: prose / fenced code splitting for assistant text (pure).
//! - [`connection`]: the connection indicator's rules and the reconnect backoff (pure).
//! - [`realtime`]: the live feed: WebSocket with backoff and resubscribe, polling fallback,
//!   health checks, one store update per animation frame; or the Tauri event stream.
//! - [`backend`]: REST calls to the relay, or Tauri commands, behind one enum.
//! - [`tauri`]: `window.__TAURI_INTERNALS__` invoke and event listening.
//! - [`env`]: which mode the page is in.
//! - [`js`]: helpers over `wasm_bindgen` shared by the modules that call JavaScript.
//! - [`hooks`], [`components`]: the views (yew function components, one per file).
//!
//! The UI never builds JSON by hand: everything on the wire is a `flightdeck-protocol` type.

pub mod ansi;
pub mod backend;
pub mod components;
pub mod connection;
pub mod env;
pub mod hooks;
pub mod js;
pub mod markdown;
pub mod patch;
pub mod permission;
pub mod push;
pub mod realtime;
pub mod state;
pub mod tauri;
pub mod transcript;

use wasm_bindgen::prelude::*;

/// Mounts the app into `#app`. Runs when the module is initialised (`init()` in the page).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&info.to_string()));
    }));
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return };
    let Some(root) = document.get_element_by_id("app") else {
        web_sys::console::error_1(&JsValue::from_str("flightdeck-ui: no #app element"));
        return;
    };
    match env::detect() {
        Ok(mode) => {
            yew::Renderer::<components::App>::with_root_and_props(root, components::AppProps { mode }).render();
        }
        Err(e) => root.set_text_content(Some(&format!("Flightdeck could not start: {e}"))),
    }
}
