//! Scenario 14, `nats-node-loss`: the shipped 3-node NATS cluster (streams R3), two oneclick
//! replicas connected to all three nodes, the durable load plus the interactive load
//! ([`super::interactive`]). Repeatedly one node is killed with -9 — every other time the
//! leader of the command stream, else the next node in turn — and started again on its store.
//! Proves: durable commands lost / duplicated **0 / 0** (the checks of [`super::durable_load`]);
//! the interactive requests that got no answer are counted and shown with their send times (a
//! request in flight on a connection to the killed node is lost with it), and the time until
//! the service answers again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::report::History;
use crate::stack::Stack;

/// The node (0-based) leading the command stream, if the cluster names one.
pub async fn stream_leader(stack: &Stack) -> Option<usize> {
    let name = format!("{}_CMD", stack.prefix.to_uppercase());
    let mut stream = stack.js.get_stream(&name).await.ok()?;
    let info = stream.info().await.ok()?;
    let leader = info.cluster.as_ref()?.leader.clone()?;
    oneclick_testkit::nats_cluster::NatsCluster::index_of(&leader)
}

/// Kills node (leader when `n` is even, else `n % 3`), keeps it down for `down`, restarts it
/// and waits until it is healthy.
pub async fn kill_one(
    stack: &Arc<Stack>,
    history: &History,
    n: usize,
    down: Duration,
) -> anyhow::Result<&'static str> {
    let leader = stream_leader(stack).await;
    let (node, what) = match leader {
        Some(l) if n.is_multiple_of(2) => (l, "kill -9 NATS node (stream leader)"),
        _ => (n % 3, "kill -9 NATS node"),
    };
    history
        .record(json!({"fault": what, "node": node + 1, "leader": leader.map(|l| l + 1), "n": n}));
    let s = stack.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        s.nats
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .cluster()?
            .kill9(node);
        std::thread::sleep(down);
        s.nats
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .cluster()?
            .restart(node);
        Ok(())
    })
    .await??;
    history.record(json!({"restarted_node": node + 1, "n": n}));
    Ok(what)
}
