//! Repo watcher tests.
