use flightdeck_protocol::api::DecisionRequest;
use flightdeck_protocol::desktop::error_codes;
use flightdeck_protocol::event::{Behavior, DecidedBy};
use flightdeck_protocol::TaskStatus;
use serde_json::Value;
use wasm_bindgen_futures::spawn_local;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::Shared;
use crate::backend::Failure;
use crate::hooks::use_app;
use crate::permission::{
    all_answered, answers_input, choose, extra_note, input_view, DiffLine, InputView, Question, MAX_DIFF_LINES,
};
use crate::state::Action;
use crate::transcript::{Decision, Item, PermissionCall};

/// What the card says when a decision was refused: by its code, whichever backend answered.
fn decide_notice(e: &Failure) -> String {
    if e.has_code(error_codes::NOT_PENDING) {
        format!("That request was already decided, or its task ended ({e}).")
    } else {
        format!("Could not send the decision: {e}")
    }
}

#[derive(Properties, PartialEq)]
pub struct PermissionCardProps {
    pub item: Shared<Item>,
    pub task_id: AttrValue,
    pub task_status: Option<TaskStatus>,
    /// The owner: Allow / Deny (or a question's Submit) while the request is pending.
    pub can_decide: bool,
}

/// Where the owner's decision stands before the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sending {
    Idle,
    InFlight,
    /// The relay (or the desktop agent) took it; the `permission_decision` event follows.
    Sent(Behavior),
}

/// A permission request in the transcript (SPEC 8): the tool, its input for people (a command,
/// an edit as a diff, a question's options), and Allow / Deny for the owner while it is
/// pending; "Allowed" / "Denied" and by whom once decided. Everyone else sees that the owner
/// has to decide, never the buttons.
#[function_component(PermissionCard)]
pub fn permission_card(props: &PermissionCardProps) -> Html {
    let app = use_app();
    let sending = use_state(|| Sending::Idle);
    let deny_message = use_state(String::new);
    let chosen = use_state(Vec::<Vec<usize>>::new);
    let Item::Permission(call) = &*props.item.0 else { return html! {} };
    let view = input_view(&call.tool_name, &call.input);
    let pending = call.is_pending(props.task_status);
    let can_act = props.can_decide && pending && *sending == Sending::Idle;

    let decide = {
        let backend = app.backend.clone();
        let dispatch = app.store.dispatcher();
        let sending = sending.clone();
        let task_id = props.task_id.to_string();
        let request_id = call.request_id.clone();
        Callback::from(move |decision: DecisionRequest| {
            let (backend, dispatch, sending) = (backend.clone(), dispatch.clone(), sending.clone());
            let (task_id, request_id) = (task_id.clone(), request_id.clone());
            sending.set(Sending::InFlight);
            spawn_local(async move {
                match backend.decide(&task_id, &request_id, &decision).await {
                    Ok(task) => {
                        sending.set(Sending::Sent(decision.behavior));
                        dispatch.dispatch(Action::TaskUpdated(task));
                    }
                    Err(e) => {
                        sending.set(Sending::Idle);
                        dispatch.dispatch(Action::Notice(Some(decide_notice(&e))));
                    }
                }
            });
        })
    };
    let on_allow = {
        let decide = decide.clone();
        Callback::from(move |_: MouseEvent| {
            decide.emit(DecisionRequest { behavior: Behavior::Allow, updated_input: None, message: None })
        })
    };
    let on_deny = {
        let decide = decide.clone();
        let deny_message = deny_message.clone();
        Callback::from(move |_: MouseEvent| {
            let message = deny_message.trim().to_string();
            decide.emit(DecisionRequest {
                behavior: Behavior::Deny,
                updated_input: None,
                message: (!message.is_empty()).then_some(message),
            })
        })
    };
    let on_deny_message = {
        let deny_message = deny_message.clone();
        Callback::from(move |e: InputEvent| deny_message.set(e.target_unchecked_into::<HtmlInputElement>().value()))
    };

    let state = match (&call.decision, pending) {
        (Some(d), _) => d.behavior.as_str(),
        (None, true) => "pending",
        (None, false) => "expired",
    };
    let question = matches!(view, InputView::Questions(_));
    let body = match &view {
        InputView::Command { command, description } => html! {
            <>
                <pre class="code"><code data-testid="perm-command">{ command }</code></pre>
                if let Some(d) = extra_note(description.as_deref(), call.description.as_deref()) {
                    <p class="muted perm-note">{ d }</p>
                }
            </>
        },
        InputView::Diff { path, lines } => html! {
            <>
                <p class="perm-path"><code data-testid="perm-path">{ path }</code></p>
                { diff_view(lines) }
            </>
        },
        InputView::Json(json) => html! { <pre class="code"><code>{ json }</code></pre> },
        InputView::Questions(questions) => {
            questions_view(questions, &call.request_id, &chosen, can_act, call.decision.as_ref())
        }
    };
    let submit = match &view {
        InputView::Questions(questions) => {
            let answered = all_answered(questions, &chosen);
            let on_submit = {
                let decide = decide.clone();
                let input = call.input.clone();
                let questions = questions.clone();
                let chosen = chosen.clone();
                Callback::from(move |_: MouseEvent| {
                    decide.emit(DecisionRequest {
                        behavior: Behavior::Allow,
                        updated_input: Some(answers_input(&input, &questions, &chosen)),
                        message: None,
                    })
                })
            };
            html! {
                <button type="button" class="primary" data-testid="submit-answers" disabled={!can_act || !answered}
                        onclick={on_submit}>{ "Submit" }</button>
            }
        }
        _ => html! {
            <button type="button" class="primary" data-testid="allow" disabled={!can_act} onclick={on_allow}>
                { "Allow" }
            </button>
        },
    };
    let footer = if let Some(decision) = &call.decision {
        outcome(decision)
    } else if !pending {
        html! { <p class="perm-outcome muted">{ "Not decided: the task ended." }</p> }
    } else if props.can_decide {
        let deny_id = format!("deny-message-{}", call.request_id);
        html! {
            <div class="perm-actions">
                { submit }
                <label class="visually-hidden" for={deny_id.clone()}>{ "Reason for denying (optional)" }</label>
                <input id={deny_id} type="text" data-testid="deny-message" placeholder="Reason (optional; Claude sees it)"
                       value={(*deny_message).clone()} oninput={on_deny_message} disabled={!can_act} />
                <button type="button" class="small deny" data-testid="deny" disabled={!can_act} onclick={on_deny}>
                    { if question { "Decline" } else { "Deny" } }
                </button>
                <span class="muted" aria-live="polite">
                    { match *sending {
                        Sending::Idle => "",
                        Sending::InFlight => "Sending…",
                        Sending::Sent(Behavior::Allow) => "Allowed; waiting for the agent…",
                        Sending::Sent(Behavior::Deny) => "Denied; waiting for the agent…",
                    } }
                </span>
            </div>
        }
    } else {
        html! { <p class="perm-waiting" data-testid="waiting-owner">{ "Waiting for the owner" }</p> }
    };
    html! {
        <div class={classes!("perm", state)} data-testid="permission-card" data-request-id={call.request_id.clone()}
             data-state={state} role="group" aria-label={heading_text(call, question)}>
            <div class="perm-head">
                <span class="badge st-waiting">{ if question { "Question" } else { "Permission" } }</span>
                <span class="perm-title">
                    { if question { "Claude asks".to_string() } else { "Claude wants to use ".to_string() } }
                    if !question { <code class="tool-name">{ &call.tool_name }</code> }
                </span>
            </div>
            if let Some(d) = &call.description {
                <p class="perm-desc">{ d }</p>
            }
            { body }
            { footer }
        </div>
    }
}

fn heading_text(call: &PermissionCall, question: bool) -> String {
    if question {
        "Claude asks a question".into()
    } else {
        format!("Claude wants to use {}", call.tool_name)
    }
}

fn diff_view(lines: &[DiffLine]) -> Html {
    let more = lines.len().saturating_sub(MAX_DIFF_LINES);
    html! {
        <>
            <pre class="diff" data-testid="perm-diff">
                { for lines.iter().take(MAX_DIFF_LINES).map(|l| match l {
                    DiffLine::Removed(t) => html! { <span class="del">{ format!("- {t}\n") }</span> },
                    DiffLine::Added(t) => html! { <span class="add">{ format!("+ {t}\n") }</span> },
                    DiffLine::Separator => html! { <span class="sep">{ "…\n" }</span> },
                }) }
            </pre>
            if more > 0 { <p class="muted">{ format!("and {more} more lines") }</p> }
        </>
    }
}

fn questions_view(
    questions: &[Question],
    request_id: &str,
    chosen: &UseStateHandle<Vec<Vec<usize>>>,
    can_act: bool,
    decision: Option<&Decision>,
) -> Html {
    let answers = decision.and_then(|d| d.updated_input.as_ref()).and_then(|v| v.get("answers"));
    html! {
        <div class="questions">
            { for questions.iter().enumerate().map(|(qi, q)| {
                let picked = chosen.get(qi).cloned().unwrap_or_default();
                let answer = answers.and_then(|a| a.get(&q.question)).and_then(Value::as_str);
                html! {
                    <fieldset class="question" data-testid="question">
                        <legend>
                            if let Some(h) = &q.header { <span class="badge">{ h }</span>{ " " } }
                            { &q.question }
                        </legend>
                        { for q.options.iter().enumerate().map(|(oi, o)| {
                            let id = format!("q-{request_id}-{qi}-{oi}");
                            let onchange = {
                                let chosen = chosen.clone();
                                let multi = q.multi_select;
                                Callback::from(move |_: Event| {
                                    let mut next = (*chosen).clone();
                                    if next.len() <= qi {
                                        next.resize(qi + 1, Vec::new());
                                    }
                                    choose(&mut next[qi], oi, multi);
                                    chosen.set(next);
                                })
                            };
                            html! {
                                <div class="option">
                                    <input type={if q.multi_select { "checkbox" } else { "radio" }} id={id.clone()}
                                           name={format!("q-{request_id}-{qi}")} checked={picked.contains(&oi)}
                                           disabled={!can_act} onchange={onchange} />
                                    <label for={id}>
                                        <span class="label">{ &o.label }</span>
                                        if let Some(d) = &o.description { <span class="muted">{ format!(" — {d}") }</span> }
                                    </label>
                                </div>
                            }
                        }) }
                        if let Some(answer) = answer {
                            <p class="answer" data-testid="answer"><strong>{ "Answer: " }</strong>{ answer }</p>
                        }
                    </fieldset>
                }
            }) }
        </div>
    }
}

fn outcome(decision: &Decision) -> Html {
    let (class, verb) = match decision.behavior {
        Behavior::Allow => ("allowed", "Allowed"),
        Behavior::Deny => ("denied", "Denied"),
    };
    let by = match decision.decided_by {
        DecidedBy::Owner => " by the owner",
        DecidedBy::Local => " on the agent's machine",
        DecidedBy::Policy => " by a rule",
        DecidedBy::Timeout => " automatically: nobody decided in time",
        DecidedBy::Terminal => " in the terminal",
        DecidedBy::Push => " from a notification",
    };
    html! {
        <p class={classes!("perm-outcome", class)} data-testid="decision" data-behavior={decision.behavior.as_str()}>
            <strong>{ verb }</strong>{ by }
            if let Some(m) = &decision.message { { ": " }<span class="perm-message">{ m }</span> }
        </p>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tauri::InvokeError;
    use flightdeck_protocol::desktop::CommandError;

    #[test]
    fn a_decision_too_late_says_so_from_either_backend() {
        // The relay's 409 body, and the desktop's command error (no HTTP status): one notice.
        let relay = Failure::from_http(409, r#"{"error":{"code":"not_pending","message":"the task is completed"}}"#);
        assert_eq!(
            decide_notice(&relay),
            "That request was already decided, or its task ended (the task is completed)."
        );
        let desktop = Failure::from(InvokeError::Command(CommandError {
            code: "not_pending".into(),
            message: "no permission request r1 is pending on task t1".into(),
        }));
        assert_eq!(desktop.status, None);
        assert_eq!(
            decide_notice(&desktop),
            "That request was already decided, or its task ended (no permission request r1 is pending on task t1)."
        );
        // Any other failure says what went wrong, from either backend.
        assert_eq!(decide_notice(&Failure::from_http(502, "bad gateway")), "Could not send the decision: HTTP 502");
        let thrown = Failure::from(InvokeError::from_rejection(Some("\"boom\""), || "boom".into()));
        assert_eq!(decide_notice(&thrown), "Could not send the decision: boom");
    }
}
