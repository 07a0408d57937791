use yew::prelude::*;

use crate::backend::Backend;
use crate::state::Store;

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
