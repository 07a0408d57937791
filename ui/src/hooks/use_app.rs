use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use crate::backend::Backend;
use crate::state::{Action, Store};

/// What every view may use: the store, where requests go, and a way to subscribe to more
/// topics (e.g. `task:<id>` when a task is selected).
#[derive(Clone, PartialEq)]
pub struct AppContext {
    pub store: UseReducerHandle<Store>,
    pub backend: Backend,
    pub subscribe: Callback<String>,
}

/// The app context; the provider is the `App` component.
#[hook]
pub fn use_app() -> AppContext {
    use_context::<AppContext>().expect("views render inside App's context provider")
}

impl AppContext {
    /// Acknowledges an alert by id; the answer (or the failure) goes to the store.
    pub fn on_ack_alert(&self) -> Callback<String> {
        let backend = self.backend.clone();
        let dispatch = self.store.dispatcher();
        Callback::from(move |id: String| {
            let (backend, dispatch) = (backend.clone(), dispatch.clone());
            spawn_local(async move {
                match backend.ack_alert(&id).await {
                    Ok(answer) => dispatch.dispatch(Action::AlertUpdated(answer.alert)),
                    Err(e) => dispatch.dispatch(Action::Notice(Some(format!("Could not acknowledge: {e}")))),
                }
            });
        })
    }

    /// Cancels a task by id; the updated task (or the failure) goes to the store.
    pub fn on_cancel_task(&self) -> Callback<String> {
        let backend = self.backend.clone();
        let dispatch = self.store.dispatcher();
        Callback::from(move |id: String| {
            let (backend, dispatch) = (backend.clone(), dispatch.clone());
            spawn_local(async move {
                match backend.cancel_task(&id).await {
                    Ok(task) => dispatch.dispatch(Action::TaskUpdated(task)),
                    Err(e) => dispatch.dispatch(Action::Notice(Some(format!("Could not cancel: {e}")))),
                }
            });
        })
    }
}
