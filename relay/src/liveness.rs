//! Node liveness of a multi-node relay (SPEC 11): every sixth of `node_timeout_ms` each node
//! records in the shared store that it is alive until `node_timeout_ms` from now (its own
//! deadline, so nodes with different settings judge each other right), and marks offline the
//! agents whose connection is on a node past its deadline (one killed without a chance to say
//! so), unless they reconnected elsewhere meanwhile (their connection changed).

use std::collections::HashSet;
use std::time::Duration;

use crate::state::AppState;

/// The shortest period, so a tiny timeout in a test cannot spin.
const MIN_PERIOD: Duration = Duration::from_millis(20);

/// Records this node alive for `node_timeout_ms` from now.
pub async fn say_alive(state: &AppState) {
    let until = chrono::Utc::now().timestamp_millis() + state.settings.node_timeout_ms as i64;
    if let Err(e) = state.store().node_alive_until(&state.node_id, until).await {
        tracing::warn!(error = %e, "could not record this node alive");
    }
}

/// Until shutdown: says this node is alive and marks the agents of dead nodes offline.
pub async fn watch_nodes(state: AppState) {
    let timeout = Duration::from_millis(state.settings.node_timeout_ms);
    let mut ticker = tokio::time::interval((timeout / 6).max(MIN_PERIOD));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        say_alive(&state).await;
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "could not look for dead nodes");
        }
    }
}

/// Marks offline (and publishes) the agents whose node is past its deadline.
async fn sweep(state: &AppState) -> Result<(), crate::error::AppError> {
    let now = chrono::Utc::now().timestamp_millis();
    let live: HashSet<String> = state.store().live_nodes(now).await?.into_iter().collect();
    for (user, agent_id, conn) in state.store().online_agent_conns().await? {
        let node = conn.rsplit_once(':').map_or(conn.as_str(), |(node, _)| node);
        if node == state.node_id || live.contains(node) {
            continue;
        }
        tracing::info!(%user, agent = %agent_id, %node, "the agent's node is gone: marking it offline");
        // Only if it is still on that connection (not reconnected to a live node).
        if state.store().mark_agent_offline(&user, &agent_id, &conn).await?.is_some() {
            state.publish_agent(&user, &agent_id).await?;
            state.publish_agent_online(&user, &agent_id).await?;
        }
    }
    Ok(())
}
