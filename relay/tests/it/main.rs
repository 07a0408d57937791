//! The integration tests of flightdeck-relay: real server on 127.0.0.1:0, real WebSocket clients.

mod admin;
mod agent;
mod auth;
mod broker;
mod conversations;
mod dashboard;
mod frames;
mod http;
mod many_hosts;
mod postgres;
mod push;
mod readme;
mod realtime;
mod runs;
mod store;
mod support;
mod three_nodes;
