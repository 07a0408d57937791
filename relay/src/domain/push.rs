//! What is worth a push (SPEC 13) and what a notification's Allow or Deny does.
//!
//! Each event is enqueued once, whichever node sees it and however often: a permission
//! request and a decision when their event is stored (the conditional append stores each seq
//! once), a task's end when its state is stored; the store's `push_events` key (`needs_input:
//! <task>:<request>`, `completed:<task>`, ...) keeps a second enqueue from storing anything.
//! Enqueue failures are logged, never fail what the agent reported.

use chrono::Utc;
use flightdeck_protocol::event::{Behavior, DecidedBy};
use flightdeck_protocol::push::{ActRequest, PushKind, PushPayload, MAX_PUSH_PAYLOAD_BYTES};
use flightdeck_protocol::{Task, TaskStatus};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::db::{hash_secret, PendingDecision};
use crate::error::AppError;
use crate::push::sender::{decision_actions, origin_for};
use crate::state::AppState;
use crate::store::push::{Enqueued, NewActionToken, NewPushMessage, PushEvent, PushTarget, TargetKind};

/// Longest wait of a request (and life of its token): SPEC 13, 24 h.
const MAX_REQUEST_SECS: u64 = 24 * 3600;
/// TTL of the other messages.
const OTHER_TTL_SECS: u32 = 3600;
/// Retries stop after this long.
const RETRY_FOR_MS: i64 = 3600 * 1000;
/// Titles are cut to this many characters.
const MAX_TITLE_CHARS: usize = 120;

/// What one event sends (the payload before its per-target `url`).
struct Message {
    kind: PushKind,
    task_id: String,
    repo: String,
    title: String,
    body: String,
    request_id: Option<String>,
    token: Option<String>,
    topic: Option<String>,
    ttl_secs: u32,
}

/// `Topic`: at most 32 base64url characters; one per request, so repeats and the later
/// `resolved` replace a message the push service still holds.
fn topic_for(task_id: &str, request_id: &str) -> String {
    let digest = Sha256::digest(format!("{task_id}\n{request_id}").as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &digest[..24])
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The payload for `target`, its `body` shortened until the whole fits in 3 KB.
fn payload_for(st: &AppState, user: &str, target: &PushTarget, m: &Message) -> String {
    let mut payload = PushPayload {
        v: 1,
        kind: m.kind,
        task_id: m.task_id.clone(),
        repo: m.repo.clone(),
        user: user.to_string(),
        title: cut(&m.title, MAX_TITLE_CHARS),
        body: m.body.clone(),
        url: format!("{}/hud/{user}/{}?task={}", origin_for(st, target), m.repo, m.task_id),
        request_id: m.request_id.clone(),
        action_token: m.token.clone(),
        actions: m.token.as_ref().map(|_| decision_actions()),
    };
    loop {
        let json = serde_json::to_string(&payload).unwrap_or_default();
        if json.len() <= MAX_PUSH_PAYLOAD_BYTES || payload.body.is_empty() {
            return json;
        }
        // JSON escapes may make a character cost up to 6 bytes: cut by the excess, at least one.
        let excess = json.len() - MAX_PUSH_PAYLOAD_BYTES;
        let keep = payload.body.chars().count().saturating_sub(excess.div_ceil(6).max(1) + 1);
        payload.body = cut(&payload.body, keep);
        if keep == 0 {
            payload.body.clear();
        }
    }
}

/// Enqueues `m` for every target of `user` that wants its kind, once per `event_key`.
async fn enqueue(st: &AppState, user: &str, event_key: String, m: Message, token_hash: Option<NewActionToken>) {
    let result = async {
        let targets = st.store().push_targets(user).await?;
        let messages: Vec<NewPushMessage> = targets
            .iter()
            .filter(|t| t.wants(m.kind))
            // ntfy cannot take a notification back.
            .filter(|t| !(m.kind == PushKind::Resolved && t.kind == TargetKind::Ntfy))
            .map(|t| NewPushMessage {
                target_id: t.id.clone(),
                payload: payload_for(st, user, t, &m),
                topic: m.topic.clone(),
                ttl_secs: m.ttl_secs,
                urgency: if m.kind == PushKind::NeedsInput { "high" } else { "normal" }.to_string(),
            })
            .collect();
        if messages.is_empty() {
            return Ok(Enqueued::Queued(0));
        }
        let now_ms = st.push.clock.now_ms();
        let event = PushEvent {
            user: user.to_string(),
            event_key,
            token: token_hash,
            messages,
            now_ms,
            give_up_ms: now_ms + RETRY_FOR_MS,
        };
        st.store().enqueue_push(&event, st.settings.push_outbox_max).await
    }
    .await;
    match result {
        Ok(Enqueued::Queued(0)) | Ok(Enqueued::Duplicate) => {}
        Ok(Enqueued::Queued(_)) => st.push.wake(),
        Ok(Enqueued::Full) => {
            st.metrics.push_outbox_full.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%user, "the push outbox is full: a notification was dropped");
        }
        Err(e) => tracing::warn!(%user, error = %e, "cannot enqueue a push"),
    }
}

/// What the HUD shows of a request: the question, the description, or the tool's input.
fn request_text(tool_name: &str, input: &Value, description: Option<&str>) -> String {
    if tool_name == "AskUserQuestion" {
        let questions: Vec<&str> = input
            .get("questions")
            .and_then(Value::as_array)
            .map(|qs| qs.iter().filter_map(|q| q.get("question").and_then(Value::as_str)).collect())
            .unwrap_or_default();
        if !questions.is_empty() {
            return questions.join("\n");
        }
    }
    // What would run comes first (that is what the owner allows), then Claude's words for it.
    let what = ["command", "file_path", "url", "pattern", "path"]
        .iter()
        .find_map(|field| input.get(*field).and_then(Value::as_str))
        .map(|v| format!("{tool_name}: {v}"))
        .unwrap_or_else(|| match input {
            Value::Null => tool_name.to_string(),
            Value::Object(o) if o.is_empty() => tool_name.to_string(),
            other => format!("{tool_name}: {other}"),
        });
    match description.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => format!("{what}\n{d}"),
        None => what,
    }
}

/// A task turned `waiting` on `request_id`: `needs_input` with Allow/Deny and a token.
pub async fn on_request(
    st: &AppState,
    user: &str,
    task_id: &str,
    request_id: &str,
    tool_name: &str,
    input: &Value,
    description: Option<&str>,
) {
    let task = match st.store().task(user, task_id).await {
        Ok(Some(task)) => task,
        _ => return,
    };
    // Until the request can no longer be decided: its decision timeout, at most 24 h.
    let ttl = task.payload.decision_timeout_secs.unwrap_or(MAX_REQUEST_SECS).clamp(1, MAX_REQUEST_SECS);
    let token = format!("fdp_{}", crate::db::random_hex(32));
    let stored_token = NewActionToken {
        hash: hash_secret(&token),
        task_id: task_id.to_string(),
        request_id: request_id.to_string(),
        expires_ms: st.push.clock.now_ms() + (ttl * 1000) as i64,
    };
    let question = tool_name == "AskUserQuestion";
    let m = Message {
        kind: PushKind::NeedsInput,
        task_id: task_id.to_string(),
        repo: task.repo.clone(),
        title: if question {
            format!("{}: a question for you", task.repo)
        } else {
            format!("{}: allow {tool_name}?", task.repo)
        },
        body: request_text(tool_name, input, description),
        request_id: Some(request_id.to_string()),
        // A question is answered in the HUD: no buttons, no token.
        token: (!question).then(|| token.clone()),
        topic: Some(topic_for(task_id, request_id)),
        ttl_secs: ttl as u32,
    };
    let stored_token = (!question).then_some(stored_token);
    enqueue(st, user, format!("needs_input:{task_id}:{request_id}"), m, stored_token).await;
}

/// A request was decided (anywhere): its tokens die and devices close its notification.
pub async fn on_decided(st: &AppState, user: &str, task_id: &str, request_id: &str, behavior: Behavior, by: DecidedBy) {
    if let Err(e) = st.store().delete_push_tokens(task_id, request_id).await {
        tracing::warn!(error = %e, "cannot retire push tokens");
    }
    let repo = match st.store().task(user, task_id).await {
        Ok(Some(task)) => task.repo,
        _ => return,
    };
    let by = match by {
        DecidedBy::Owner => "by the owner",
        DecidedBy::Push => "from a notification",
        DecidedBy::Local => "on the agent's machine",
        DecidedBy::Policy => "by a rule",
        DecidedBy::Timeout => "automatically (timeout)",
        DecidedBy::Terminal => "in the terminal",
    };
    let verb = if behavior == Behavior::Allow { "Allowed" } else { "Denied" };
    let m = Message {
        kind: PushKind::Resolved,
        task_id: task_id.to_string(),
        repo: repo.clone(),
        title: format!("{repo}: decided"),
        body: format!("{verb} {by}"),
        request_id: Some(request_id.to_string()),
        token: None,
        topic: Some(topic_for(task_id, request_id)),
        ttl_secs: OTHER_TTL_SECS,
    };
    enqueue(st, user, format!("resolved:{task_id}:{request_id}"), m, None).await;
}

/// A task's state was stored: `completed` or `failed` once when it got there.
pub async fn on_task_stored(st: &AppState, user: &str, task: &Task) {
    let (kind, body) = match task.status {
        TaskStatus::Completed => (PushKind::Completed, task.summary.clone().unwrap_or_else(|| task.title.clone())),
        TaskStatus::Failed => (PushKind::Failed, task.error.clone().unwrap_or_else(|| task.title.clone())),
        _ => return,
    };
    let m = Message {
        kind,
        task_id: task.id.clone(),
        repo: task.repo.clone(),
        title: format!(
            "{}: {} {}",
            task.repo,
            task.title,
            if kind == PushKind::Completed { "completed" } else { "failed" }
        ),
        body,
        request_id: None,
        token: None,
        topic: None,
        ttl_secs: OTHER_TTL_SECS,
    };
    enqueue(st, user, format!("{}:{}", kind.as_str(), task.id), m, None).await;
}

/// `POST /api/push/test`: one message to each of the user's targets; how many.
pub async fn send_test(st: &AppState, user: &str) -> Result<u32, AppError> {
    let count = st.store().push_targets(user).await?.iter().filter(|t| t.wants(PushKind::Test)).count() as u32;
    let m = Message {
        kind: PushKind::Test,
        task_id: String::new(),
        repo: String::new(),
        title: "Flightdeck".into(),
        body: "Notifications from your relay reach this device.".into(),
        request_id: None,
        token: None,
        topic: None,
        ttl_secs: OTHER_TTL_SECS,
    };
    enqueue(st, user, format!("test:{user}:{}", uuid::Uuid::now_v7()), m, None).await;
    Ok(count)
}

/// The owner's decision of a pending request (REST or a notification), kept until the agent
/// records it and sent to the agent now if it is online. 409 `not_pending` when the task
/// ended, the request is not open, or a decision for it already waits.
pub async fn decide(st: &AppState, user: &str, decision: PendingDecision) -> Result<Task, AppError> {
    use flightdeck_protocol::desktop::error_codes::NOT_PENDING;
    let store = st.store();
    let task = store.task(user, &decision.task_id).await?.ok_or_else(AppError::not_found)?;
    if task.status.is_terminal() {
        return Err(AppError::conflict(NOT_PENDING, format!("the task is {}", task.status.as_str())));
    }
    if !store.request_open(&decision.task_id, &decision.request_id).await? {
        return Err(AppError::conflict(NOT_PENDING, format!("no pending request {:?}", decision.request_id)));
    }
    // One decision per request: the store refuses a second while the first is pending.
    if !store.insert_pending_decision(user, &decision).await? {
        return Err(AppError::conflict(NOT_PENDING, "already decided: the agent has not applied it yet"));
    }
    if let Some(agent) = &task.agent_id {
        // Not reachable: kept, and sent when the agent connects.
        let frame = crate::hub::Frame::from(decision.to_message().to_json());
        st.send_to_agent(user, agent, None, frame).await?;
    }
    let by = decision.decided_by.unwrap_or(DecidedBy::Owner);
    on_decided(st, user, &decision.task_id, &decision.request_id, decision.behavior, by).await;
    Ok(task)
}

/// `POST /api/push/act`: the token decides its request once, as the owner would with
/// `decidedBy: push`. A wrong, used or expired token, or a request no longer pending, is 403
/// and changes nothing (the token is spent either way).
pub async fn act(st: &AppState, request: ActRequest) -> Result<(), AppError> {
    let refused = || AppError::Forbidden("this action is no longer valid".into());
    let now = st.push.clock.now_ms();
    let token = st.store().use_push_token(&hash_secret(&request.token), now).await?.ok_or_else(refused)?;
    let decision = PendingDecision {
        task_id: token.task_id,
        request_id: token.request_id,
        behavior: request.behavior,
        updated_input: None,
        message: request.message,
        decided_by: Some(DecidedBy::Push),
        created_at: Utc::now(),
    };
    match decide(st, &token.user, decision).await {
        Ok(_) => Ok(()),
        Err(AppError::ConflictCode { .. } | AppError::NotFound(_)) => Err(refused()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_at_most_32_url_safe_characters_and_one_per_request() {
        let a = topic_for("0190-task", "toolu_01");
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{a}");
        assert_eq!(a, topic_for("0190-task", "toolu_01"));
        assert_ne!(a, topic_for("0190-task", "toolu_02"));
    }

    #[test]
    fn the_request_text_is_what_the_hud_shows() {
        assert_eq!(request_text("Bash", &serde_json::json!({"command": "ls"}), None), "Bash: ls");
        assert_eq!(request_text("Bash", &serde_json::json!({"command": "ls"}), Some("List")), "Bash: ls\nList");
        let question = serde_json::json!({"questions": [{"question": "Which one?"}]});
        assert_eq!(request_text("AskUserQuestion", &question, None), "Which one?");
    }
}
