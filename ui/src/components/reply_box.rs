use flightdeck_protocol::api::ReplyRequest;
use flightdeck_protocol::desktop::error_codes;
use flightdeck_protocol::TaskStatus;
use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use crate::backend::Failure;
use crate::hooks::use_app;
use crate::state::Action;

/// What the box says when a reply was refused: by its code, whichever backend answered.
fn reply_notice(e: &Failure) -> String {
    if e.has_code(error_codes::TURN_IN_PROGRESS) {
        "A turn of this conversation is still running; reply once it has ended.".to_string()
    } else if e.has_code(error_codes::NOT_RESUMABLE) {
        format!("This conversation cannot be continued: {e}")
    } else {
        format!("Could not send the reply: {e}")
    }
}

#[derive(Properties, PartialEq)]
pub struct ReplyBoxProps {
    /// The last turn of the conversation: the reply answers it.
    pub task_id: AttrValue,
    pub status: TaskStatus,
}

/// The owner's follow-up under the last turn (SPEC 8). Disabled while that turn has not ended
/// (queued, running, or waiting for a decision); the new turn then shows up under it, live.
#[function_component(ReplyBox)]
pub fn reply_box(props: &ReplyBoxProps) -> Html {
    let app = use_app();
    let text = use_state(String::new);
    let sending = use_state(|| false);
    let busy = !props.status.is_terminal();
    let disabled = busy || *sending;
    let on_input = {
        let text = text.clone();
        Callback::from(move |e: InputEvent| text.set(e.target_unchecked_into::<HtmlTextAreaElement>().value()))
    };
    let on_submit = {
        let backend = app.backend.clone();
        let dispatch = app.store.dispatcher();
        let subscribe = app.subscribe.clone();
        let task_id = props.task_id.to_string();
        let (text, sending) = (text.clone(), sending.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let prompt = text.trim().to_string();
            if disabled || prompt.is_empty() {
                return;
            }
            let request = ReplyRequest { prompt, permission_mode: None, allowed_tools: None };
            let (backend, dispatch, subscribe) = (backend.clone(), dispatch.clone(), subscribe.clone());
            let (task_id, text, sending) = (task_id.clone(), text.clone(), sending.clone());
            sending.set(true);
            spawn_local(async move {
                match backend.reply(&task_id, &request).await {
                    Ok(turn) => {
                        // The new turn joins the conversation shown; its events follow live.
                        subscribe.emit(format!("task:{}", turn.id));
                        dispatch.dispatch(Action::TaskUpdated(turn));
                        text.set(String::new());
                    }
                    Err(e) => {
                        dispatch.dispatch(Action::Notice(Some(reply_notice(&e))));
                    }
                }
                sending.set(false);
            });
        })
    };
    let hint = match props.status {
        TaskStatus::Waiting => "Claude is waiting for a decision above.",
        TaskStatus::Queued | TaskStatus::Running => "You can reply once this turn has ended.",
        _ if *sending => "Sending…",
        _ => "",
    };
    html! {
        <form class="reply" onsubmit={on_submit} aria-label="Reply">
            <label for="reply-prompt" class="visually-hidden">{ "Reply to Claude" }</label>
            <textarea id="reply-prompt" rows="2" placeholder="Reply to Claude…" value={(*text).clone()}
                      oninput={on_input} disabled={busy} aria-describedby="reply-hint"></textarea>
            <div class="row">
                <button type="submit" class="primary" data-testid="reply-send" disabled={disabled || text.trim().is_empty()}>
                    { if *sending { "Sending…" } else { "Reply" } }
                </button>
                <span id="reply-hint" class="muted" aria-live="polite">{ hint }</span>
            </div>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tauri::InvokeError;

    #[test]
    fn a_refused_reply_says_why_from_either_backend() {
        let relay = |code: &str, message: &str| {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
            Failure::from_http(409, &body)
        };
        let desktop = |code: &str, message: &str| {
            let json = format!(r#"{{"code":"{code}","message":"{message}"}}"#);
            Failure::from(InvokeError::from_rejection(Some(&json), || unreachable!("a CommandError")))
        };
        for failure in [relay, desktop] {
            assert_eq!(
                reply_notice(&failure("turn_in_progress", "another turn was just added")),
                "A turn of this conversation is still running; reply once it has ended."
            );
            assert_eq!(
                reply_notice(&failure("not_resumable", "the task has no session to resume")),
                "This conversation cannot be continued: the task has no session to resume"
            );
            assert_eq!(reply_notice(&failure("internal", "disk full")), "Could not send the reply: disk full");
        }
    }
}
