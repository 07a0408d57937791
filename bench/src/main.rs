//! flightdeck-bench: benchmarks that print figures side by side. They are not tests: run them in
//! release mode on a quiet machine, e.g. `cargo run --release -p flightdeck-bench -- git`.
//!
//! One module per benchmark, each with its own arguments and a `run`:
//! - [`git`]: repo status on a generated big repo, against `git status` (issue 4).

use clap::{Parser, Subcommand};

mod git;

#[derive(Parser)]
#[command(name = "flightdeck-bench", about = "Flightdeck benchmarks (they print figures; not tests)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Repo status on a generated repo: git status, the agent's full and incremental status,
    /// and save-to-event latency of the live watcher.
    Git(git::GitArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Git(args) => git::run(&args),
    }
}
