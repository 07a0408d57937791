//! `flightdeck-bench cluster`: what crossing relay nodes costs (issue 17).
//!
//! Two figures in one run, with the same load (the [`fanout`](crate::fanout) generator: one
//! agent publishing chunks of one task, 1,000 viewers of `task:<id>`, the same message count,
//! size and window):
//! - one node: one relay process on SQLite, the agent and every viewer on it;
//! - cross-node: three relay processes, each with its own empty data dir, on one PostgreSQL
//!   database and one Redis server; the agent on node A, the viewers split over nodes B and C,
//!   so every delivery crosses from A through Redis to B or C.
//!
//! Both setups are started once and run in alternating rounds (a new task each round), so both
//! see the same background load; the figure of each is its round with the median p99.
//! PostgreSQL (`initdb`/`pg_ctl` in a temp dir) and Redis are started by the bench on free
//! ports and stopped at the end. Every delivery is counted: a run with one missing, or with a
//! viewer closed or stalled, fails the benchmark. On a machine with few cores the nodes,
//! PostgreSQL, Redis and the load generator share them: the cross-node figure is the cost of
//! crossing nodes there, not a measure of how far more hosts scale.

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::fanout::{self, LoadConfig, LoadFigures, Watch};
use crate::servers;

#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Viewers of the task, on the one node, or split over nodes B and C.
    #[arg(long, default_value_t = 1000)]
    pub viewers: usize,
    /// Messages published in each run.
    #[arg(long, default_value_t = 10_000)]
    pub messages: usize,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 200)]
    pub payload_bytes: usize,
    /// Messages not yet delivered to every viewer that the agent may have out (see `fanout`).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Rounds of both setups, alternating; each figure is its round with the median p99.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

impl ClusterArgs {
    pub fn full() -> ClusterArgs {
        ClusterArgs { viewers: 1000, messages: 10_000, payload_bytes: 200, window: 64, rounds: 3 }
    }

    pub fn quick() -> ClusterArgs {
        ClusterArgs { messages: 2_000, rounds: 2, ..ClusterArgs::full() }
    }

    fn load(&self) -> LoadConfig {
        LoadConfig {
            viewers: self.viewers,
            messages: self.messages,
            payload_bytes: self.payload_bytes,
            window: self.window.max(1),
            interval: None,
        }
    }
}

/// The two figures of one run.
#[derive(Debug, Clone, Default)]
pub struct ClusterFigures {
    pub one_node: LoadFigures,
    pub cross_node: LoadFigures,
}

impl ClusterFigures {
    /// Cross-node p99 minus one-node p99.
    pub fn added_p99_ms(&self) -> f64 {
        self.cross_node.p99_ms - self.one_node.p99_ms
    }

    /// Cross-node deliveries/s over one-node deliveries/s.
    pub fn throughput_ratio(&self) -> f64 {
        self.cross_node.deliveries_per_s / self.one_node.deliveries_per_s
    }
}

pub async fn run(args: &ClusterArgs) -> Result<ClusterFigures> {
    servers::check_cluster_tools()?;
    let nofile = servers::raise_nofile_limit()?;
    let needed = (2 * args.viewers + 200) as u64;
    if nofile < needed {
        bail!("RLIMIT_NOFILE is {nofile}; {needed} descriptors are needed (raise the hard limit: ulimit -Hn)");
    }
    let load = args.load();
    println!(
        "cluster: 1 agent, {} viewers, {} messages of {} bytes, window {}; cores: {}",
        load.viewers,
        load.messages,
        load.payload_bytes,
        load.window,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    let one = servers::start_relay().await.context("one node (SQLite)")?;
    let mut cluster = servers::start_cluster(3).await.context("three nodes on PostgreSQL + Redis")?;
    let one_watch = Watch::one(one.server.pid());
    let postgres = cluster.postgres.pids_finder();
    let redis = cluster.redis.server.pid();
    let cross_watch = Watch {
        server: cluster.nodes.iter().map(|n| n.server.pid()).collect(),
        beside: vec![("PostgreSQL", Box::new(postgres)), ("Redis", Box::new(move || vec![redis]))],
    };
    let (mut one_runs, mut cross_runs) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds.max(1) {
        let f = fanout::relay_load_across(&one, &[&one], &one_watch, &load).await.context("one node (SQLite)")?;
        println!("  round {round}, one node (SQLite):                  {}", f.describe());
        complete("one node", &f)?;
        one_runs.push(f);
        let [a, b, c] = [&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]];
        let f = fanout::relay_load_across(a, &[b, c], &cross_watch, &load)
            .await
            .context("cross-node (PostgreSQL + Redis)")?;
        println!("  round {round}, cross-node (A -> B, C; PG + Redis): {}", f.describe());
        complete("cross-node", &f)?;
        cross_runs.push(f);
    }
    let mut one_server = one.server;
    one_server.check_alive("flightdeck-relay")?;
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        node.server.check_alive(&format!("relay node {i}"))?;
    }
    cluster.redis.server.check_alive("redis-server")?;
    drop(cluster);

    let figures = ClusterFigures { one_node: median_p99(one_runs), cross_node: median_p99(cross_runs) };
    println!("  the round with the median p99 of each:");
    println!("    one node:   {}", figures.one_node.describe());
    println!("    cross-node: {}", figures.cross_node.describe());
    println!(
        "  cross-node against one node: p99 {:+.2} ms, deliveries/s x{:.2} (the nodes, PostgreSQL, Redis and the \
         viewers share this machine's cores: the cost of crossing nodes, not a scaling figure)",
        figures.added_p99_ms(),
        figures.throughput_ratio()
    );
    Ok(figures)
}

/// The run with the median p99 (the lower middle one of an even count).
fn median_p99(mut runs: Vec<LoadFigures>) -> LoadFigures {
    runs.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
    let middle = runs.len().saturating_sub(1) / 2;
    runs.into_iter().nth(middle).unwrap_or_default()
}

/// Fails loudly unless every viewer got every message.
fn complete(what: &str, figures: &LoadFigures) -> Result<()> {
    if figures.missing() > 0 || figures.lost_subscribers > 0 || figures.delivered != figures.expected {
        bail!(
            "{what}: {} of {} deliveries arrived ({} missing, {} viewers lost)",
            figures.delivered,
            figures.expected,
            figures.missing(),
            figures.lost_subscribers
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(delivered: u64, expected: u64, lost: u64) -> LoadFigures {
        LoadFigures { delivered, expected, lost_subscribers: lost, ..LoadFigures::default() }
    }

    #[test]
    fn a_run_is_complete_only_with_every_delivery() {
        assert!(complete("x", &figures(10, 10, 0)).is_ok());
        assert!(complete("x", &figures(9, 10, 0)).is_err());
        assert!(complete("x", &figures(10, 10, 1)).is_err());
        // More than expected is a duplicate: not complete either.
        assert!(complete("x", &figures(11, 10, 0)).is_err());
    }

    #[test]
    fn the_figure_is_the_round_with_the_median_p99() {
        let run = |window, p99_ms| LoadFigures { window, p99_ms, ..LoadFigures::default() };
        assert_eq!(median_p99(vec![run(1, 90.0), run(2, 30.0), run(3, 50.0)]).window, 3);
        assert_eq!(median_p99(vec![run(1, 90.0), run(2, 30.0)]).window, 2);
        assert_eq!(median_p99(vec![run(1, 90.0)]).window, 1);
    }

    #[test]
    fn added_p99_and_ratio_compare_cross_node_with_one_node() {
        let one = LoadFigures { p99_ms: 40.0, deliveries_per_s: 2e6, ..LoadFigures::default() };
        let cross = LoadFigures { p99_ms: 55.0, deliveries_per_s: 1e6, ..LoadFigures::default() };
        let f = ClusterFigures { one_node: one, cross_node: cross };
        assert_eq!(f.added_p99_ms(), 15.0);
        assert_eq!(f.throughput_ratio(), 0.5);
    }
}
