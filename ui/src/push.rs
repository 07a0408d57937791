//! "Notify me on this device" (SPEC 13): the ui's side of the browser glue in
//! `ui/static/push.js` (`window.FlightdeckPush`), which the relay's pages load. The service
//! worker, the permission prompt and the push subscription are the browser's; this module only
//! calls them and reads their answers, so a page without the glue (the desktop window) simply
//! has no push.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::js::js_message;

/// What a notification can be about (SPEC 13 `kinds`), with the words the panel shows.
pub const KINDS: [(&str, &str); 3] =
    [("needs_input", "Needs a decision"), ("completed", "Completed"), ("failed", "Failed")];

/// This device's state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceState {
    pub supported: bool,
    /// `default`, `granted`, `denied` (or `unsupported`).
    pub permission: String,
    /// This browser has a subscription the relay knows.
    pub subscribed: bool,
    /// That subscription's id at the relay.
    pub id: Option<String>,
}

/// One of the user's devices, as the relay lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    pub id: String,
    pub device: Option<String>,
    pub kinds: Vec<String>,
}

// The answers are read field by field with `Reflect` rather than through serde: this module
// runs in the browser bundle, whose size has a budget, and these few objects do not need more.
fn field(object: &JsValue, name: &str) -> JsValue {
    js_sys::Reflect::get(object, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn text(object: &JsValue, name: &str) -> Option<String> {
    field(object, name).as_string()
}

fn device(object: &JsValue) -> Result<Device, String> {
    let kinds = field(object, "kinds");
    let kinds = if js_sys::Array::is_array(&kinds) {
        js_sys::Array::from(&kinds).iter().filter_map(|k| k.as_string()).collect()
    } else {
        Vec::new()
    };
    Ok(Device { id: text(object, "id").ok_or("a device without an id")?, device: text(object, "device"), kinds })
}

/// `window.FlightdeckPush`, when the page has it.
fn glue() -> Option<JsValue> {
    let window = web_sys::window()?;
    js_sys::Reflect::get(&window, &JsValue::from_str("FlightdeckPush")).ok().filter(|v| v.is_object())
}

/// Whether this page can offer push at all (the relay's pages can; the desktop window cannot).
pub fn available() -> bool {
    glue().is_some()
}

/// Calls `FlightdeckPush[method](arg)` and awaits its promise.
async fn call(method: &str, arg: Option<JsValue>) -> Result<JsValue, String> {
    let glue = glue().ok_or("this page cannot subscribe to notifications")?;
    let function: js_sys::Function =
        field(&glue, method).dyn_into().map_err(|_| format!("FlightdeckPush.{method} is missing"))?;
    let promise = match arg {
        Some(arg) => function.call1(&glue, &arg),
        None => function.call0(&glue),
    }
    .map_err(|e| js_message(&e))?;
    JsFuture::from(js_sys::Promise::resolve(&promise)).await.map_err(|e| js_message(&e))
}

pub async fn state() -> Result<DeviceState, String> {
    let s = call("state", None).await?;
    Ok(DeviceState {
        supported: field(&s, "supported").is_truthy(),
        permission: text(&s, "permission").unwrap_or_default(),
        subscribed: field(&s, "subscribed").is_truthy(),
        id: text(&s, "id"),
    })
}

/// Asks for permission, subscribes and registers this device for `kinds`.
pub async fn enable(kinds: &[String], name: Option<&str>) -> Result<Device, String> {
    let options = js_sys::Object::new();
    let list: js_sys::Array = kinds.iter().map(|k| JsValue::from_str(k)).collect();
    let set = |key: &str, value: &JsValue| js_sys::Reflect::set(&options, &JsValue::from_str(key), value);
    set("kinds", &list).map_err(|e| js_message(&e))?;
    if let Some(name) = name {
        set("device", &JsValue::from_str(name)).map_err(|e| js_message(&e))?;
    }
    device(&field(&call("enable", Some(options.into())).await?, "subscription"))
}

pub async fn devices() -> Result<Vec<Device>, String> {
    let list = field(&call("list", None).await?, "subscriptions");
    if !js_sys::Array::is_array(&list) {
        return Err("the relay listed no devices".into());
    }
    js_sys::Array::from(&list).iter().map(|d| device(&d)).collect()
}

pub async fn remove(id: &str) -> Result<(), String> {
    call("remove", Some(JsValue::from_str(id))).await.map(|_| ())
}

pub async fn test() -> Result<(), String> {
    call("test", None).await.map(|_| ())
}

/// The device name offered by default: the platform the browser says it runs on.
pub fn default_device_name() -> String {
    let platform = web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &JsValue::from_str("navigator")).ok())
        .and_then(|n| js_sys::Reflect::get(&n, &JsValue::from_str("platform")).ok())
        .and_then(|p| p.as_string())
        .unwrap_or_default();
    if platform.is_empty() {
        "This browser".to_string()
    } else {
        format!("Browser on {platform}")
    }
}

/// The words for a list of kinds.
pub fn kinds_label(kinds: &[String]) -> String {
    let words: Vec<&str> =
        KINDS.iter().filter(|(k, _)| kinds.iter().any(|x| x == k)).map(|(_, label)| *label).collect();
    if words.is_empty() {
        "nothing".to_string()
    } else {
        words.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_in_the_panels_order() {
        let kinds = vec!["failed".to_string(), "needs_input".to_string()];
        assert_eq!(kinds_label(&kinds), "Needs a decision, Failed");
        assert_eq!(kinds_label(&[]), "nothing");
    }
}
