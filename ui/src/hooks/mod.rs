//! Hooks: the app context (store + backend + subscribe), the feed that fills the store, a
//! conversation's turns, and the tab title.

mod use_app;
mod use_conversation;
mod use_feed;
mod use_title;

pub use use_app::{use_app, AppContext};
pub use use_conversation::use_conversation;
pub use use_feed::use_feed;
pub use use_title::use_needs_input_title;
