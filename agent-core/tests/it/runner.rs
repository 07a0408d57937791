//! Task runner, executors and store tests.
