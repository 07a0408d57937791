use std::rc::Rc;

use wasm_bindgen_futures::spawn_local;
use yew::prelude::*;

use super::use_app;
use crate::components::{Shared, Turn};
use crate::state::Action;

/// The turns of the conversation `task_id` belongs to, oldest first, kept filled: with
/// `fetch` (the owner on a relay), the whole conversation is loaded over REST once per
/// conversation; every turn without a transcript yet is subscribed to (`task:<id>`). Without
/// `fetch` (the desktop, whose task list already has every turn, or a viewer), only the
/// subscriptions.
#[hook]
pub fn use_conversation(task_id: Option<String>, fetch: bool) -> Rc<Vec<Turn>> {
    let app = use_app();
    let store = &app.store;
    let tasks = task_id.as_deref().map(|id| store.conversation_turns(id)).unwrap_or_default();
    let conversation = tasks.first().map(|t| t.conversation().to_string());
    {
        let backend = app.backend.clone();
        let dispatch = store.dispatcher();
        use_effect_with((conversation, fetch), move |(conversation, fetch)| {
            if let (Some(conversation), true) = (conversation.clone(), *fetch) {
                spawn_local(async move {
                    // A relay without conversations (or a refusal) leaves the one turn shown.
                    if let Ok(tasks) = backend.conversation(&conversation).await {
                        if !tasks.is_empty() {
                            dispatch.dispatch(Action::Conversation(tasks));
                        }
                    }
                });
            }
        });
    }
    let missing: Vec<String> =
        tasks.iter().filter(|t| store.transcript(&t.id).is_none()).map(|t| t.id.clone()).collect();
    {
        let subscribe = app.subscribe.clone();
        use_effect_with(missing, move |missing| {
            for id in missing {
                subscribe.emit(format!("task:{id}"));
            }
        });
    }
    Rc::new(
        tasks
            .into_iter()
            .map(|task| {
                let transcript = store.transcript(&task.id).map(|t| Shared(t.clone()));
                Turn { task, transcript }
            })
            .collect(),
    )
}
