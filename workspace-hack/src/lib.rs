//! Nothing but dependencies: see `scripts/workspace-hack.py`. Every member (but the wasm UI)
//! depends on this crate so that each cargo command builds shared dependencies with the same
//! features, and one command's build is reused by the next.
