//! What a message from another node (through the broker) does on this one.

use flightdeck_protocol::broker::BrokerMessage;
use flightdeck_protocol::{close, Topic};

use crate::hub::{Frame, Position, TopicKey};
use crate::state::AppState;

/// Applies one message another node sent: an event for this node's viewers, a message for an
/// agent connected here, an agent that connected there, a HUD made private, a resync.
pub fn on_message(state: &AppState, message: BrokerMessage) {
    match message {
        BrokerMessage::Event { user, topic, frame, position, .. } => match topic.parse::<Topic>() {
            Ok(topic) => {
                let position = position.map(Position::from_broker);
                state.hub.deliver(&TopicKey::new(&user, topic), Frame::from(frame), position)
            }
            Err(e) => tracing::warn!(error = %e, "broker event for a bad topic"),
        },
        BrokerMessage::ToAgent { user, agent_id, task_id, frame, .. } => {
            let frame = Frame::from(frame);
            match task_id {
                Some(task_id) => state.agents.send_task(&user, &agent_id, &task_id, frame),
                None => state.agents.send(&user, &agent_id, frame),
            };
        }
        BrokerMessage::AgentConnected { user, agent_id, .. } => {
            state.agents.close_local(&user, &agent_id, close::REPLACED);
        }
        BrokerMessage::KeyRevoked { key_id, .. } => {
            let closed = state.conns.close_key(&key_id, close::KEY_REVOKED);
            if closed > 0 {
                tracing::info!(key = %key_id, sockets = closed, "closed sockets of a key revoked elsewhere");
            }
        }
        BrokerMessage::HudPrivate { user, repo, .. } => crate::domain::publish::evict_unprivileged(state, &user, &repo),
        BrokerMessage::Resync { node } => {
            tracing::warn!(%node, "a node lost broker messages; closing sockets so they resync");
            state.conns.close_all(close::SERVICE_RESTART);
        }
    }
}
