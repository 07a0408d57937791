//! Small helpers over `wasm_bindgen` shared by the modules that call JavaScript (the REST
//! backend, the Tauri glue, push), so none of them imports another for them.

use wasm_bindgen::{JsCast, JsValue};

/// What a JS exception or rejection says: its text, an `Error`'s message, or its debug form.
pub fn js_message(e: &JsValue) -> String {
    e.as_string()
        .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
        .unwrap_or_else(|| format!("{e:?}"))
}
