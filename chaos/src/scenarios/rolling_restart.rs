//! Scenario 13, `rolling-restart`: two oneclick replicas under the durable load plus a steady
//! interactive load ([`super::interactive`]: Token Pay over request-reply, never retried); each
//! replica in turn gets SIGTERM, exits after its graceful drain and is started again, for several
//! rounds — with one nats-server, or with `--cluster` against the shipped 3-node cluster.
//! Proves: **0 requests without an answer** and 0 durable commands lost or duplicated (the
//! checks of [`super::durable_load`]). Evidence: the SIGTERMs, each drain's duration and how each
//! endpoint stopped (from the replicas' logs).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::report::History;
use crate::stack::Stack;

/// SIGTERM replica `n % 2`, wait for its exit, start it again (until healthy). Returns what was
/// done and how long the stop (drain) and the start took.
pub async fn restart_one(
    stack: &Arc<Stack>,
    history: &History,
    n: usize,
) -> anyhow::Result<&'static str> {
    let s = stack.clone();
    let i = n % 2;
    history.record(json!({"fault": "SIGTERM", "instance": i, "n": n}));
    let (stopped_ms, started_ms) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
            let mut apps = s.apps.lock().map_err(|_| anyhow::anyhow!("lock"))?;
            let t = Instant::now();
            apps[i].terminate();
            let stopped = t.elapsed().as_millis() as u64;
            let started = apps[i].start()?.as_millis() as u64;
            Ok((stopped, started))
        })
        .await??;
    history.record(json!({"restarted": i, "n": n, "drain_ms": stopped_ms, "start_ms": started_ms}));
    Ok(if i == 0 {
        "SIGTERM + restart oneclick-0"
    } else {
        "SIGTERM + restart oneclick-1"
    })
}

/// How the replicas' endpoints stopped, counted from their logs (`endpoint stopped`, field
/// `how`), and the drains' durations.
pub fn stop_evidence(out: &std::path::Path) -> Vec<(String, i64)> {
    let mut how: std::collections::BTreeMap<String, i64> = Default::default();
    for name in ["oneclick-0.log", "oneclick-1.log"] {
        let text = std::fs::read_to_string(out.join(name)).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains("endpoint stopped")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let f = &v["fields"];
            let key = match f["why"].as_str() {
                Some(why) => format!("{} ({why})", f["how"].as_str().unwrap_or("?")),
                None => f["how"].as_str().unwrap_or("?").to_string(),
            };
            *how.entry(key).or_default() += 1;
        }
    }
    how.into_iter()
        .map(|(k, v)| (format!("  endpoints stopped: {k}"), v))
        .collect()
}
