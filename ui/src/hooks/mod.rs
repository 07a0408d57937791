//! Hooks: the app context (store + backend + subscribe) and the feed that fills the store.

mod use_app;
mod use_feed;

pub use use_app::{use_app, AppContext};
pub use use_feed::use_feed;
