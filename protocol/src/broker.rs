//! Node-to-node messages of a multi-node relay sharing fan-out through a Redis broker
//! (SPEC section 7). Agents and viewers never see these; they carry frames that were already
//! encoded with the other modules' types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One message on the broker channel. `node` names the sender, which ignores its own messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", rename_all_fields = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum BrokerMessage {
    /// An encoded `event` frame of `topic` (as a viewer names it) of `user`, for the viewers of
    /// other nodes; `position` places it in its data (a transcript event: its task and seq) so a
    /// viewer whose snapshot already held it drops it.
    Event {
        node: String,
        user: String,
        topic: String,
        frame: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<BrokerPosition>,
    },
    /// An encoded relay-to-agent frame for an agent connected to another node. `taskId` is set for
    /// `task` messages, which one connection gets once.
    ToAgent {
        node: String,
        user: String,
        agent_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task_id: Option<String>,
        frame: String,
    },
    /// An agent connected to `node`: the other nodes close their socket of it (4000 replaced).
    AgentConnected { node: String, user: String, agent_id: String },
    /// A HUD turned private: the other nodes drop its viewers that may no longer see it.
    HudPrivate { node: String, user: String, repo: String },
    /// A key was revoked (by `flightdeck-relay key revoke` with a broker configured): every node
    /// closes its sockets of that key with 4401 at once, without waiting for its next look at
    /// the store.
    KeyRevoked { node: String, key_id: String },
    /// `node` could not send some messages (its broker queue overflowed): every other node
    /// closes its viewers and agents with 1012, so they reconnect and read fresh state from the
    /// shared database, where everything was stored before it was published.
    Resync { node: String },
}

/// Where an event stands in its data, so a viewer can drop what its snapshot held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub enum BrokerPosition {
    /// A transcript event: `transcript/<task id>` and its seq.
    Seq { stream: String, seq: u64 },
    /// A change of latest state: what it shows and the user's change number.
    Change { stream: String, change: u64 },
}

impl BrokerMessage {
    pub fn node(&self) -> &str {
        match self {
            BrokerMessage::Event { node, .. }
            | BrokerMessage::ToAgent { node, .. }
            | BrokerMessage::AgentConnected { node, .. }
            | BrokerMessage::HudPrivate { node, .. }
            | BrokerMessage::KeyRevoked { node, .. }
            | BrokerMessage::Resync { node } => node,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("wire types always serialize")
    }

    pub fn parse(text: &str) -> Result<BrokerMessage, crate::InvalidMessage> {
        crate::validate::parse_strict(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let m = BrokerMessage::ToAgent {
            node: "n1".into(),
            user: "alice".into(),
            agent_id: "mac".into(),
            task_id: Some("t1".into()),
            frame: r#"{"type":"cancel","taskId":"t1"}"#.into(),
        };
        assert_eq!(BrokerMessage::parse(&m.to_json()).unwrap(), m);
        assert!(m.to_json().contains(r#""type":"to-agent""#));
        let event = BrokerMessage::Event {
            node: "n1".into(),
            user: "alice".into(),
            topic: "task:t1".into(),
            frame: "{}".into(),
            position: Some(BrokerPosition::Seq { stream: "transcript/t1".into(), seq: 7 }),
        };
        assert_eq!(BrokerMessage::parse(&event.to_json()).unwrap(), event);
        let without = r#"{"type":"event","node":"n1","user":"alice","topic":"tasks","frame":"{}"}"#;
        assert!(matches!(BrokerMessage::parse(without).unwrap(), BrokerMessage::Event { position: None, .. }));
        let change = r#"{"type":"event","node":"n1","user":"alice","topic":"repos","frame":"{}","position":{"change":{"stream":"repo/web","change":3}}}"#;
        assert!(matches!(
            BrokerMessage::parse(change).unwrap(),
            BrokerMessage::Event { position: Some(BrokerPosition::Change { change: 3, .. }), .. }
        ));
    }
}
