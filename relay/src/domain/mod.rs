//! The domain layer: what the relay does, between the transports (agent link, viewer bus,
//! REST and HUD handlers, the broker's receive side, the container runner) and storage and
//! fan-out (`db`, `hub`, `broker`).
//!
//! - [`agents`]: what an agent reports about itself and its repos (git status, alerts).
//! - [`tasks`]: create, store and dispatch tasks; record the events agents send.
//! - [`publish`]: publish a change to every topic that shows it; send to agents here or on
//!   other nodes.
//! - [`views`]: what each audience sees (public task and repo views, snapshots).
//! - [`push`]: what is worth a push (enqueued once per event), the owner's decisions
//!   (REST and a notification's action token).
//! - [`remote`]: what a message from another node does here.
//!
//! Transports call into this module; this module never imports a transport.

pub mod agents;
pub mod publish;
pub mod push;
pub mod remote;
pub mod tasks;
pub mod views;
