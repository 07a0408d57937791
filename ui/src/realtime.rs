//! The live feed (seeds 001 and 003): one WebSocket to the relay's `/api/realtime`, or the
//! desktop shell's Tauri events, turned into [`Action`]s for the store.
//!
//! - Subscriptions are sent again after every reconnect; the relay answers with fresh
//!   snapshots, which replace the store's state.
//! - Reconnect backoff 1, 2, 4, 8 ... 30 s, reset when a socket opens.
//! - While the socket is down, the shown task's events are polled from the REST API
//!   (`/api/cockpit/tasks/{id}/events?after=N`); a 401/403/404 stops polling that task.
//! - `/healthz` is checked periodically (and at once when the socket opens or closes), for
//!   the connection indicator's "API reachable" half.
//! - The socket offers the `flightdeck-lines` subprotocol: the relay may put every message
//!   queued for it into one WebSocket message, a line each, so a burst costs the page a few
//!   message events instead of one per transcript line.
//! - Frames are queued and handed to the store once per animation frame, and at most every
//!   [`MIN_RENDER_INTERVAL_MS`], so a burst of chunks is one render, not hundreds, and a page
//!   watching 50,000 lines arrive renders 20 times a second, not 60.
//! - The relay's pages open the socket and subscribe to their main topic before the bundle has
//!   loaded (`window.FLIGHTDECK_EARLY_SOCKET`); the first connect adopts that socket and the
//!   frames it already received, so a big snapshot is not asked for only once the app runs.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::{Rc, Weak};

use flightdeck_protocol::realtime::{split_lines, LINES_SUBPROTOCOL};
use flightdeck_protocol::ClientMessage;
use gloo_timers::callback::Timeout;
use gloo_timers::future::sleep;
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::spawn_local;
use web_sys::{MessageEvent, WebSocket};
use yew::Callback;

use crate::backend::Backend;
use crate::connection::Backoff;
use crate::state::{decode_server_frame, Action};
use crate::tauri;

/// The task to poll while the socket is down: its id and the last seq the store holds.
pub type PollTarget = Rc<RefCell<Option<(String, u64)>>>;

/// A socket event handler, kept alive as long as its socket.
type Handler = Closure<dyn FnMut(JsValue)>;

const POLL_EVERY: Duration = Duration::from_secs(2);
const HEALTH_EVERY_OPEN: Duration = Duration::from_secs(15);
const HEALTH_EVERY_DOWN: Duration = Duration::from_secs(2);
const PING_EVERY_TICKS: u32 = 2;
/// The shortest time between two store updates (renders) while frames pour in.
const MIN_RENDER_INTERVAL_MS: f64 = 50.0;

/// What to connect to.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedConfig {
    pub backend: Backend,
    /// The relay's realtime endpoint; `None` with the Tauri backend.
    pub ws_url: Option<String>,
    pub topics: Vec<String>,
}

/// A running feed; dropping it closes the socket and stops every loop.
pub struct Feed {
    inner: Rc<Inner>,
}

struct Inner {
    config: FeedConfig,
    dispatch: Callback<Action>,
    poll_target: PollTarget,
    topics: RefCell<Vec<String>>,
    socket: RefCell<Option<WebSocket>>,
    handlers: RefCell<Vec<Handler>>,
    backoff: RefCell<Backoff>,
    reconnect: RefCell<Option<Timeout>>,
    queue: RefCell<Vec<Action>>,
    flush_scheduled: Cell<bool>,
    /// When the queue last went to the store (`performance.now()`).
    last_flush: Cell<f64>,
    /// Which scheduled flush is the current one.
    flush_generation: Cell<u64>,
    open: Cell<bool>,
    stopped: Cell<bool>,
    /// Tasks the REST API refused to poll.
    refused: RefCell<HashSet<String>>,
    tauri_listener: RefCell<Option<tauri::Listener>>,
    /// Clicks on a task in the tray menu: the window shows that task.
    tauri_focus_listener: RefCell<Option<tauri::Listener>>,
}

impl Feed {
    pub fn start(config: FeedConfig, dispatch: Callback<Action>, poll_target: PollTarget) -> Feed {
        let inner = Rc::new(Inner {
            topics: RefCell::new(config.topics.clone()),
            config,
            dispatch,
            poll_target,
            socket: RefCell::new(None),
            handlers: RefCell::new(Vec::new()),
            backoff: RefCell::new(Backoff::new()),
            reconnect: RefCell::new(None),
            queue: RefCell::new(Vec::new()),
            flush_scheduled: Cell::new(false),
            last_flush: Cell::new(f64::NEG_INFINITY),
            flush_generation: Cell::new(0),
            open: Cell::new(false),
            stopped: Cell::new(false),
            refused: RefCell::new(HashSet::new()),
            tauri_listener: RefCell::new(None),
            tauri_focus_listener: RefCell::new(None),
        });
        match inner.config.ws_url {
            Some(_) => Inner::connect(&inner),
            None => Inner::start_tauri(&inner),
        }
        spawn_local(Inner::health_loop(Rc::downgrade(&inner)));
        spawn_local(Inner::poll_loop(Rc::downgrade(&inner)));
        Feed { inner }
    }

    /// Adds topics; sent now if the socket is open, and after every reconnect.
    pub fn subscribe(&self, topics: Vec<String>) {
        let new: Vec<String> = {
            let mut current = self.inner.topics.borrow_mut();
            let new: Vec<String> = topics.into_iter().filter(|t| !current.contains(t)).collect();
            current.extend(new.iter().cloned());
            new
        };
        if !new.is_empty() {
            self.inner.send_subscribe(new);
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.inner.stopped.set(true);
        self.inner.reconnect.borrow_mut().take();
        if let Some(ws) = self.inner.socket.borrow_mut().take() {
            ws.set_onopen(None);
            ws.set_onmessage(None);
            ws.set_onclose(None);
            let _ = ws.close();
        }
        self.inner.handlers.borrow_mut().clear();
        self.inner.tauri_listener.borrow_mut().take();
        self.inner.tauri_focus_listener.borrow_mut().take();
    }
}

/// `performance.now()`, in ms (0 without a window).
fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

/// The socket a relay page opened before the bundle loaded (see the module docs).
struct EarlySocket {
    socket: WebSocket,
    /// The topics its `onopen` subscribes to.
    topics: Vec<String>,
    /// Text frames received so far.
    frames: Vec<String>,
}

/// Takes the page's early socket (once: the global is removed) when it is for `url` and still
/// open or opening. Its handlers are replaced by the caller before anything else can arrive.
fn take_early_socket(url: &str) -> Option<EarlySocket> {
    let window = web_sys::window()?;
    let key = JsValue::from_str("FLIGHTDECK_EARLY_SOCKET");
    let early = js_sys::Reflect::get(&window, &key).ok().filter(JsValue::is_object)?;
    let _ = js_sys::Reflect::delete_property(window.unchecked_ref::<js_sys::Object>(), &key);
    let get = |name: &str| js_sys::Reflect::get(&early, &JsValue::from_str(name)).ok();
    let strings = |value: Option<JsValue>| -> Vec<String> {
        value.map(|v| js_sys::Array::from(&v).iter().filter_map(|x| x.as_string()).collect()).unwrap_or_default()
    };
    if get("url")?.as_string()? != url {
        return None;
    }
    let socket: WebSocket = get("socket")?.dyn_into().ok()?;
    if socket.ready_state() > WebSocket::OPEN {
        return None;
    }
    Some(EarlySocket { socket, topics: strings(get("topics")), frames: strings(get("frames")) })
}

impl Inner {
    fn connect(this: &Rc<Inner>) {
        if this.stopped.get() {
            return;
        }
        let url = this.config.ws_url.clone().unwrap_or_default();
        let early = take_early_socket(&url);
        let ws = match &early {
            Some(early) => early.socket.clone(),
            None => match WebSocket::new_with_str(&url, LINES_SUBPROTOCOL) {
                Ok(ws) => ws,
                Err(e) => {
                    web_sys::console::warn_1(&e);
                    Inner::schedule_reconnect(this);
                    return;
                }
            },
        };
        let weak = Rc::downgrade(this);
        let on_open = Closure::<dyn FnMut(JsValue)>::new({
            let weak = weak.clone();
            move |_| {
                if let Some(inner) = weak.upgrade() {
                    inner.open.set(true);
                    inner.backoff.borrow_mut().reset();
                    let topics = inner.topics.borrow().clone();
                    inner.send_subscribe(topics);
                    inner.push(Action::SocketOpen(true));
                    spawn_local(Inner::check_health(Rc::downgrade(&inner)));
                }
            }
        });
        let on_message = Closure::<dyn FnMut(JsValue)>::new({
            let weak = weak.clone();
            move |event: JsValue| {
                let Some(inner) = weak.upgrade() else { return };
                let Some(text) = event.dyn_ref::<MessageEvent>().and_then(|m| m.data().as_string()) else { return };
                inner.push_message(&text);
            }
        });
        let on_close = Closure::<dyn FnMut(JsValue)>::new({
            let weak = weak.clone();
            move |_| {
                let Some(inner) = weak.upgrade() else { return };
                inner.open.set(false);
                inner.socket.borrow_mut().take();
                inner.push(Action::SocketOpen(false));
                spawn_local(Inner::check_health(Rc::downgrade(&inner)));
                Inner::schedule_reconnect(&inner);
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        *this.handlers.borrow_mut() = vec![on_open, on_message, on_close];
        *this.socket.borrow_mut() = Some(ws.clone());
        let Some(early) = early else { return };
        // What arrived before the app ran, in order; then, if the page's own `onopen` already
        // subscribed (the socket is open), only the topics it did not ask for.
        for text in early.frames {
            this.push_message(&text);
        }
        if ws.ready_state() == WebSocket::OPEN {
            this.open.set(true);
            this.backoff.borrow_mut().reset();
            let rest: Vec<String> =
                this.topics.borrow().iter().filter(|t| !early.topics.contains(t)).cloned().collect();
            this.send_subscribe(rest);
            this.push(Action::SocketOpen(true));
            spawn_local(Inner::check_health(Rc::downgrade(this)));
        }
    }

    fn schedule_reconnect(this: &Rc<Inner>) {
        if this.stopped.get() {
            return;
        }
        let delay = this.backoff.borrow_mut().next_delay_ms();
        let weak = Rc::downgrade(this);
        *this.reconnect.borrow_mut() = Some(Timeout::new(delay, move || {
            if let Some(inner) = weak.upgrade() {
                Inner::connect(&inner);
            }
        }));
    }

    fn send_subscribe(&self, topics: Vec<String>) {
        if topics.is_empty() {
            return;
        }
        if self.config.ws_url.is_none() {
            spawn_local(async move {
                let r: Result<serde_json::Value, tauri::InvokeError> =
                    tauri::invoke(tauri::commands::REALTIME_SUBSCRIBE, &tauri::SubscribeArgs { topics }).await;
                if let Err(e) = r {
                    web_sys::console::warn_1(&JsValue::from_str(&e.to_string()));
                }
            });
            return;
        }
        if !self.open.get() {
            return;
        }
        if let Some(ws) = self.socket.borrow().as_ref() {
            let _ = ws.send_with_str(&ClientMessage::Subscribe { topics }.to_json());
        }
    }

    fn start_tauri(this: &Rc<Inner>) {
        let weak = Rc::downgrade(this);
        spawn_local(async move {
            let on_frame = {
                let weak = weak.clone();
                move |text: String| {
                    let Some(inner) = weak.upgrade() else { return };
                    match decode_server_frame(&text) {
                        Ok(Some(action)) => inner.push(action),
                        Ok(None) => {}
                        Err(e) => web_sys::console::warn_1(&JsValue::from_str(&format!("dropped frame: {e}"))),
                    }
                }
            };
            let listener = tauri::listen(tauri::REALTIME_EVENT, on_frame).await;
            let Some(inner) = weak.upgrade() else { return };
            match listener {
                Ok(listener) => {
                    *inner.tauri_listener.borrow_mut() = Some(listener);
                    inner.open.set(true);
                    inner.push(Action::SocketOpen(true));
                    let topics = inner.topics.borrow().clone();
                    inner.send_subscribe(topics);
                }
                Err(e) => inner.push(Action::Notice(Some(format!("desktop events unavailable: {e}")))),
            }
            let on_focus = {
                let weak = weak.clone();
                move |text: String| {
                    let Some(inner) = weak.upgrade() else { return };
                    match serde_json::from_str::<tauri::CockpitFocus>(&text) {
                        Ok(tauri::CockpitFocus { task_id: Some(id), .. }) => inner.push(Action::SelectTask(Some(id))),
                        Ok(_) => {}
                        Err(e) => web_sys::console::warn_1(&JsValue::from_str(&format!("bad focus event: {e}"))),
                    }
                }
            };
            if let Ok(listener) = tauri::listen(tauri::FOCUS_EVENT, on_focus).await {
                if let Some(inner) = weak.upgrade() {
                    *inner.tauri_focus_listener.borrow_mut() = Some(listener);
                }
            }
        });
    }

    /// Queues the server messages of one WebSocket message (one, or one per line with the
    /// `flightdeck-lines` subprotocol).
    fn push_message(self: &Rc<Inner>, text: &str) {
        for line in split_lines(text) {
            match decode_server_frame(line) {
                Ok(Some(action)) => self.push(action),
                Ok(None) => {}
                Err(e) => web_sys::console::warn_1(&JsValue::from_str(&format!("dropped frame: {e}"))),
            }
        }
    }

    /// Queues an action; the queue goes to the store on the next animation frame at least
    /// [`MIN_RENDER_INTERVAL_MS`] after the last time.
    fn push(self: &Rc<Inner>, action: Action) {
        self.queue.borrow_mut().push(action);
        if self.flush_scheduled.replace(true) {
            return;
        }
        // The frame and the fallback timer race; whichever comes second finds nothing to do.
        let generation = self.flush_generation.get() + 1;
        self.flush_generation.set(generation);
        let weak = Rc::downgrade(self);
        let flush = move || {
            if let Some(inner) = weak.upgrade() {
                if inner.flush_scheduled.get() && inner.flush_generation.get() == generation {
                    inner.flush();
                }
            }
        };
        let wait = (self.last_flush.get() + MIN_RENDER_INTERVAL_MS - now_ms()).max(0.0);
        let on_frame = {
            let flush = flush.clone();
            move || {
                let on_frame = Closure::once_into_js(flush);
                if let Some(window) = web_sys::window() {
                    let _ = window.request_animation_frame(on_frame.unchecked_ref());
                }
            }
        };
        if wait < 1.0 {
            on_frame();
        } else {
            Timeout::new(wait as u32, on_frame).forget();
        }
        // Animation frames pause in hidden tabs; a timer makes sure the queue still drains.
        Timeout::new(250 + wait as u32, flush).forget();
    }

    fn flush(&self) {
        self.flush_scheduled.set(false);
        self.last_flush.set(now_ms());
        let actions = std::mem::take(&mut *self.queue.borrow_mut());
        if !actions.is_empty() && !self.stopped.get() {
            self.dispatch.emit(Action::Batch(actions));
        }
    }

    async fn check_health(weak: Weak<Inner>) {
        let Some(backend) = weak.upgrade().map(|i| i.config.backend.clone()) else { return };
        let ok = backend.health().await;
        if let Some(inner) = weak.upgrade() {
            if !inner.stopped.get() {
                inner.push(Action::ApiReachable(ok));
            }
        }
    }

    async fn health_loop(weak: Weak<Inner>) {
        let mut ticks = 0u32;
        loop {
            Inner::check_health(weak.clone()).await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.stopped.get() {
                return;
            }
            let open = inner.open.get();
            ticks += 1;
            if open && ticks.is_multiple_of(PING_EVERY_TICKS) {
                if let Some(ws) = inner.socket.borrow().as_ref() {
                    let _ = ws.send_with_str(&ClientMessage::Ping {}.to_json());
                }
            }
            drop(inner);
            sleep(if open { HEALTH_EVERY_OPEN } else { HEALTH_EVERY_DOWN }).await;
        }
    }

    async fn poll_loop(weak: Weak<Inner>) {
        loop {
            sleep(POLL_EVERY).await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.stopped.get() {
                return;
            }
            if inner.open.get() {
                continue;
            }
            let Some((task_id, after)) = inner.poll_target.borrow().clone() else { continue };
            if inner.refused.borrow().contains(&task_id) {
                continue;
            }
            let backend = inner.config.backend.clone();
            drop(inner);
            let result = backend.task_events(&task_id, after).await;
            let Some(inner) = weak.upgrade() else { return };
            match result {
                Ok(answer) => {
                    inner.push(Action::ApiReachable(true));
                    if !answer.events.is_empty() {
                        inner.push(Action::Polled { task_id, events: answer.events });
                    }
                }
                Err(e) if e.is_refusal() => {
                    inner.refused.borrow_mut().insert(task_id);
                }
                Err(_) => {}
            }
        }
    }
}
