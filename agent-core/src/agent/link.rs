//! The link supervisor: the one owner of the relay link and of the link status.
//!
//! One task holds the current [`LinkHandle`] and follows its state; everything else talks to it
//! through a closed [`LinkCommand`] enum and reads the status from a `watch`. Restarting the link
//! is a command answered once the old link is gone and the new status is set, so the status is
//! deterministic when `Agent::set_settings` returns, and a stopped link can never write a stale
//! status after it (its state is only read while it is the current one).

use std::sync::{Arc, Mutex};

use flightdeck_protocol::desktop::{AgentEvent, CommandError, LinkStatus};
use flightdeck_protocol::AgentState;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::link::{Inbound, LinkConfig, LinkHandle, LinkState, Outbound, OutboundSender, RelayLink};
use crate::redact::RepoRedactors;
use crate::store::Store;

/// The link as front ends see it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkView {
    pub status: LinkStatus,
    /// Why the link stopped, when `status` is `Stopped`.
    pub error: Option<CommandError>,
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkTarget {
    pub url: String,
    pub key: String,
    pub agent_id: String,
    /// What the agent tells the relay it can run (`agent-status`).
    pub capabilities: Vec<String>,
}

pub(crate) enum LinkCommand {
    /// Stop the current link and start one to `target` (none: stay off). Answered when done.
    Configure { target: Option<LinkTarget>, busy: bool, reply: oneshot::Sender<()> },
    /// Stop the link (closing the socket with 1001). Answered when done.
    Shutdown { reply: oneshot::Sender<()> },
}

/// The handle the agent keeps: commands in, status and the live queue out.
pub(crate) struct LinkControl {
    commands: mpsc::Sender<LinkCommand>,
    view: watch::Receiver<LinkView>,
    /// The current link's live queue; written only by the supervisor.
    /// A std Mutex: nothing awaits while holding it.
    outbound: Arc<Mutex<Option<OutboundSender>>>,
}

pub(crate) struct LinkParts {
    pub store: Store,
    pub template: Option<LinkConfig>,
    pub inbound: mpsc::Sender<Inbound>,
    pub redactors: Arc<RepoRedactors>,
    pub events: broadcast::Sender<AgentEvent>,
    pub stop: CancellationToken,
}

impl LinkControl {
    /// Starts the supervisor (with no link until the first `configure`).
    pub(crate) fn start(parts: LinkParts) -> LinkControl {
        let (commands, rx) = mpsc::channel(8);
        let (view_tx, view) = watch::channel(LinkView::default());
        let outbound = Arc::new(Mutex::new(None));
        let supervisor = Supervisor { parts, view: view_tx, outbound: outbound.clone(), current: None };
        tokio::spawn(supervisor.run(rx));
        LinkControl { commands, view, outbound }
    }

    pub(crate) async fn configure(&self, target: Option<LinkTarget>, busy: bool) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(LinkCommand::Configure { target, busy, reply }).await.is_ok() {
            let _ = done.await;
        }
    }

    pub(crate) async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(LinkCommand::Shutdown { reply }).await.is_ok() {
            let _ = done.await;
        }
    }

    pub(crate) fn view(&self) -> LinkView {
        self.view.borrow().clone()
    }

    /// Queues a live item for the relay when a link runs (it never blocks; see `OutboundSender`).
    pub(crate) fn publish(&self, item: Outbound) {
        if let Some(tx) = self.outbound.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            tx.send(item);
        }
    }
}

struct Supervisor {
    parts: LinkParts,
    view: watch::Sender<LinkView>,
    outbound: Arc<Mutex<Option<OutboundSender>>>,
    current: Option<(LinkHandle, watch::Receiver<LinkState>)>,
}

impl Supervisor {
    async fn run(mut self, mut commands: mpsc::Receiver<LinkCommand>) {
        loop {
            tokio::select! {
                _ = self.parts.stop.cancelled() => break,
                command = commands.recv() => match command {
                    Some(LinkCommand::Configure { target, busy, reply }) => {
                        self.stop_current().await;
                        if let Some(target) = target {
                            self.start_link(target, busy);
                        }
                        let _ = reply.send(());
                    }
                    Some(LinkCommand::Shutdown { reply }) => {
                        self.stop_current().await;
                        let _ = reply.send(());
                    }
                    None => break,
                },
                Some(state) = next_state(&mut self.current) => self.set(view_of(&state)),
            }
        }
        self.stop_current().await;
    }

    async fn stop_current(&mut self) {
        *self.outbound.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some((handle, _)) = self.current.take() {
            handle.shutdown().await;
        }
        self.set(LinkView::default());
    }

    fn start_link(&mut self, target: LinkTarget, busy: bool) {
        let mut config = match &self.parts.template {
            Some(template) => {
                LinkConfig { relay_url: target.url, key: target.key, agent_id: target.agent_id, ..template.clone() }
            }
            None => LinkConfig::new(target.url, target.key, target.agent_id),
        };
        config.capabilities = target.capabilities;
        config.metadata.insert("app".into(), "flightdeck".into());
        config.redactors = Some(self.parts.redactors.clone());
        let handle = RelayLink::start(config, self.parts.store.clone(), self.parts.inbound.clone());
        let outbound = handle.outbound();
        // Tell the relay at once whether tasks are running.
        outbound.send(Outbound::AgentStatus(if busy { AgentState::Busy } else { AgentState::Idle }));
        *self.outbound.lock().unwrap_or_else(|e| e.into_inner()) = Some(outbound);
        let mut state = handle.state();
        let first = view_of(&state.borrow_and_update());
        self.current = Some((handle, state));
        self.set(first);
    }

    fn set(&self, view: LinkView) {
        let changed = self.view.send_if_modified(|current| {
            let changed = *current != view;
            *current = view.clone();
            changed
        });
        if changed {
            let _ = self.parts.events.send(AgentEvent::Link { status: view.status, error: view.error });
        }
    }
}

/// The next state of the current link (pending for ever when there is none or it ended).
async fn next_state(current: &mut Option<(LinkHandle, watch::Receiver<LinkState>)>) -> Option<LinkState> {
    match current {
        Some((_, state)) => match state.changed().await {
            Ok(()) => Some(state.borrow_and_update().clone()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

fn view_of(state: &LinkState) -> LinkView {
    match state {
        LinkState::Connecting => LinkView { status: LinkStatus::Connecting, error: None },
        LinkState::Connected { .. } => LinkView { status: LinkStatus::Connected, error: None },
        LinkState::Disconnected { .. } => LinkView { status: LinkStatus::Disconnected, error: None },
        LinkState::Stopped { code, reason } => LinkView {
            status: LinkStatus::Stopped,
            error: Some(CommandError { code: code.code().to_string(), message: reason.clone() }),
        },
    }
}
