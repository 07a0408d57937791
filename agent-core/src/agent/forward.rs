//! The agent's background tasks: what the watcher and the runner publish goes to the front ends
//! (and repo statuses and the agent's state to the relay link's live queue); what the relay asks
//! becomes runner calls.

use std::collections::HashSet;
use std::sync::Arc;

use flightdeck_protocol::desktop::AgentEvent;
use flightdeck_protocol::{AgentState, TaskPayload};
use tokio::sync::{broadcast, mpsc};

use super::{active_tasks, blocking, Inner};
use crate::executor::Decision;
use crate::link::{Inbound, Outbound};
use crate::runner::{NewTask, RunnerEvent};
use crate::watch::WatchEvent;
use flightdeck_protocol::event::DecidedBy;

pub(super) async fn forward_watcher(inner: Arc<Inner>, mut events: broadcast::Receiver<WatchEvent>) {
    loop {
        let event = tokio::select! {
            _ = inner.stop.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(WatchEvent::Status(status)) => {
                inner.publish(AgentEvent::RepoStatus { repo: status.clone() }, Some(Outbound::RepoStatus(status)))
            }
            Ok(WatchEvent::Removed { id }) => {
                inner.publish(AgentEvent::RepoRemoved { id: id.clone() }, Some(Outbound::RepoRemoved(id)))
            }
            // The watcher stored it, which queued it for the relay.
            Ok(WatchEvent::Alert(alert)) => inner.publish(AgentEvent::Alert { alert }, None),
            Ok(WatchEvent::Notice { id, message }) => tracing::info!(repo = %id, "{message}"),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Resynchronise: the relay gets the whole set, the front ends every status again.
                tracing::warn!(missed = n, "repo events lagged; resending every status");
                let statuses = inner.watcher.statuses();
                for status in &statuses {
                    inner.publish(AgentEvent::RepoStatus { repo: status.clone() }, None);
                }
                inner.publish_outbound(Outbound::FullRepos(statuses));
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

impl Inner {
    fn publish_outbound(&self, item: Outbound) {
        self.link.publish(item);
    }
}

pub(super) async fn forward_runner(inner: Arc<Inner>, mut events: broadcast::Receiver<RunnerEvent>) {
    let mut active: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            _ = inner.stop.cancelled() => return,
            event = events.recv() => event,
        };
        match event {
            Ok(RunnerEvent::Task(task)) => {
                let was_busy = !active.is_empty();
                if task.status.is_terminal() {
                    active.remove(&task.id);
                } else {
                    active.insert(task.id.clone());
                }
                // Tasks, events and alerts reach the relay through the store's outbox; the
                // front ends get them here.
                inner.publish(AgentEvent::TaskUpdate { task }, None);
                if was_busy == active.is_empty() {
                    let state = if active.is_empty() { AgentState::Idle } else { AgentState::Busy };
                    inner.publish_outbound(Outbound::AgentStatus(state));
                }
            }
            Ok(RunnerEvent::Event(record)) => inner.publish(AgentEvent::TaskEvent { record }, None),
            Ok(RunnerEvent::Alert(alert)) => inner.publish(AgentEvent::Alert { alert }, None),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // Only the front ends follow this broadcast (they reload when they see a gap in
                // `seq`); the relay link reads the store's outbox and misses nothing.
                tracing::debug!(missed = n, "task events lagged");
                let store = inner.store.clone();
                if let Ok(tasks) = blocking(move || active_tasks(&store)).await {
                    let was_busy = !active.is_empty();
                    active = tasks.iter().map(|t| t.id.clone()).collect();
                    for task in tasks {
                        inner.publish(AgentEvent::TaskUpdate { task }, None);
                    }
                    if was_busy == active.is_empty() {
                        let state = if active.is_empty() { AgentState::Idle } else { AgentState::Busy };
                        inner.publish_outbound(Outbound::AgentStatus(state));
                    }
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Turns what the relay asks into runner calls.
pub(super) async fn serve_inbound(inner: Arc<Inner>, mut inbound: mpsc::Receiver<Inbound>) {
    loop {
        let message = tokio::select! {
            _ = inner.stop.cancelled() => return,
            message = inbound.recv() => message,
        };
        match message {
            Some(Inbound::RunTask { task_id, executor, payload, title, conversation_id, parent_task_id }) => {
                // The runner fails a task whose repo is unknown or whose payload is incomplete,
                // with an `error` event the relay sees: better than dropping it silently.
                let repo = payload.repo.clone().unwrap_or_default();
                let repo = inner.find_repo(&repo).map(|r| r.name).unwrap_or(repo);
                let payload = TaskPayload { repo: Some(repo.clone()), ..payload };
                let new = NewTask {
                    title,
                    conversation_id,
                    parent_task_id,
                    ..NewTask::remote(task_id.clone(), repo, executor, payload)
                };
                if let Err(e) = inner.runner.create(new).await {
                    tracing::warn!(task = %task_id, error = %e, "cannot create a remote task");
                }
            }
            Some(Inbound::Cancel { task_id }) => {
                if let Err(e) = inner.runner.cancel(&task_id).await {
                    tracing::warn!(task = %task_id, error = %e, "cannot cancel a remote task");
                }
            }
            Some(Inbound::Decide { task_id, request_id, behavior, updated_input, message, decided_by }) => {
                let decision = Decision {
                    request_id: request_id.clone(),
                    behavior,
                    updated_input,
                    message,
                    decided_by: decided_by.unwrap_or(DecidedBy::Owner),
                };
                match inner.runner.decide(&task_id, decision).await {
                    Ok(true) => {}
                    // The relay keeps a decision until it sees it in the transcript: tell it
                    // this one has nothing to answer any more.
                    Ok(false) => inner.publish_outbound(Outbound::Error {
                        message: format!("no pending permission request {request_id} on task {task_id}"),
                        task_id: Some(task_id),
                        request_id: Some(request_id),
                    }),
                    Err(e) => tracing::warn!(task = %task_id, error = %e, "cannot deliver a decision"),
                }
            }
            Some(Inbound::StatusRequest) => {}
            None => return,
        }
    }
}
