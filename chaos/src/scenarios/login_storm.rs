//! Scenario: login storm (security issue 12, finding 3). Wrong merchant passwords at 200 in
//! flight against one oneclick process, measured from outside:
//!
//! 1. from one source (one NATS connection): the throttle and the lockout leave at most
//!    `login.max_failures` password checks, everything else is refused without argon2;
//! 2. from 200 sources (200 connections, each its own reply-inbox prefix, 5 guesses each, so
//!    neither throttle nor lockout stops them): every guess is checked with argon2, and the
//!    process's RSS (sampled every 20 ms from /proc) and the argon2-in-flight peak show the
//!    memory ceiling `login.argon2_concurrency` × 19 MiB;
//! 3. timing: one request at a time, wrong passwords for the known login `demo` and for a login
//!    that does not exist, each from fresh sources: p50 of both (equal: no enumeration);
//! 4. the right password still works from a source that did not guess.
//!
//! Before the fix (audit of 590047f): 51 MB → 2.2 GB RSS, 20.9 ms known vs 0.5 ms unknown.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{json, Value};

use crate::client::*;
use crate::procs::metric_sum;
use crate::report::{History, Report};
use crate::stack::{Stack, StackOptions};
use crate::Run;

const IN_FLIGHT: usize = 200;
const SOURCES: usize = 200;

fn body(login: &str, password: &str) -> Value {
    json!({"merchant": {"merchant_id": DEMO_MERCHANT.to_string(), "login": login, "password": password},
           "customernumber": "storm-1"})
}

/// VmRSS of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn connect_with_inbox(url: &str, prefix: String) -> anyhow::Result<async_nats::Client> {
    Ok(async_nats::ConnectOptions::new()
        .custom_inbox_prefix(prefix)
        .connect(url)
        .await?)
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Answers by fault (`"2/2"`, `"ok"`, `"no reply"`).
fn tally(replies: &[Option<Value>]) -> std::collections::BTreeMap<String, i64> {
    let mut t = std::collections::BTreeMap::new();
    for r in replies {
        let k = match r.as_ref().map(fault_of) {
            None => "no reply".to_string(),
            Some(None) => "ok".to_string(),
            Some(Some((c, s))) => format!("{c}/{s}"),
        };
        *t.entry(k).or_insert(0) += 1;
    }
    t
}

pub async fn run(run: &Run, report: &mut Report) -> anyhow::Result<()> {
    let guesses = if run.short { 1_000 } else { 5_000 };
    let history = History::create(&run.out.join("history.jsonl"))?;
    let stack = Stack::start(&run.out, StackOptions::default(), |_| Ok(())).await?;
    let pid = stack
        .apps
        .lock()
        .map_err(|_| anyhow::anyhow!("apps lock"))?
        .first()
        .and_then(|a| a.pid())
        .ok_or_else(|| anyhow::anyhow!("no oneclick process"))?;
    let url = stack
        .nats
        .lock()
        .map_err(|_| anyhow::anyhow!("nats lock"))?
        .url();
    let subject = stack.subject(&format!("merchant.{DEMO_MERCHANT}.token.list"));
    let metrics = || {
        stack
            .apps
            .lock()
            .map(|a| a.first().map(|a| a.metrics()).unwrap_or_default())
            .unwrap_or_default()
    };

    // Warm: one right password (loads the merchant, starts the blocking pool).
    let warm = request(
        &stack.client,
        &subject,
        &body(DEMO_LOGIN, DEMO_PASSWORD),
        Duration::from_secs(10),
    )
    .await;
    report.expect(
        "the right password works before the storm",
        matches!(&warm, Ok(r) if !is_fault(r)),
        "accepted",
        format!("{warm:?}"),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kb(pid);

    // RSS sampler.
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // 1. One source.
    let one = connect_with_inbox(&url, "_INBOX.storm_one".into()).await?;
    let started = Instant::now();
    let replies: Vec<Option<Value>> = futures::stream::iter(0..guesses)
        .map(|i| {
            let (one, subject) = (&one, &subject);
            async move {
                request(
                    one,
                    subject,
                    &body(DEMO_LOGIN, &format!("storm-{i}")),
                    Duration::from_secs(30),
                )
                .await
                .ok()
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let one_source = tally(&replies);
    history.record(json!({"phase": "one source", "guesses": guesses, "answers": one_source, "secs": started.elapsed().as_secs_f64()}));
    let checked = one_source.get("2/2").copied().unwrap_or(0);
    report.figure("one source: guesses", guesses as i64);
    for (k, v) in &one_source {
        report.figure(&format!("one source: answers {k}"), *v);
    }
    report.expect(
        "one source: wrong-password verdicts (≤ max_failures − 1 = 9)",
        checked <= 9,
        "<= 9",
        checked,
    );

    // 2. Many sources.
    let mut clients = Vec::new();
    for k in 0..SOURCES {
        clients.push(connect_with_inbox(&url, format!("_INBOX.storm_{k}")).await?);
    }
    let per_source = guesses / SOURCES;
    let started = Instant::now();
    let replies: Vec<Option<Value>> = futures::stream::iter(0..per_source * SOURCES)
        .map(|i| {
            let (client, subject) = (&clients[i % SOURCES], &subject);
            async move {
                request(
                    client,
                    subject,
                    &body(DEMO_LOGIN, &format!("spread-{i}")),
                    Duration::from_secs(60),
                )
                .await
                .ok()
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let spread_secs = started.elapsed().as_secs_f64();
    let many = tally(&replies);
    history.record(json!({"phase": "many sources", "guesses": per_source * SOURCES, "answers": many, "secs": spread_secs}));
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let rss_peak = peak.load(Ordering::Relaxed);
    let text = metrics();
    let argon2_peak = metric_sum(&text, "oneclick_login_argon2_in_flight_peak");
    let argon2_runs = metric_sum(&text, "oneclick_login_argon2_verifications_total");
    for (k, v) in &many {
        report.figure(&format!("{SOURCES} sources: answers {k}"), *v);
    }
    report.figure(
        &format!(
            "{SOURCES} sources: seconds for {} guesses",
            per_source * SOURCES
        ),
        format!("{spread_secs:.1}"),
    );
    report.figure("argon2 verifications", argon2_runs as i64);
    report.expect(
        "argon2 in flight at most login.argon2_concurrency (2)",
        argon2_peak <= 2.0,
        "<= 2",
        argon2_peak,
    );
    report.figure("RSS before (MB)", (rss_before / 1024) as i64);
    report.figure("RSS peak (MB)", (rss_peak / 1024) as i64);
    report.expect(
        "RSS peak − before below 150 MB (2 × 19 MiB argon2 + buffers; 2.2 GB before the fix)",
        rss_peak.saturating_sub(rss_before) < 150 * 1024,
        "< 150 MB",
        format!("{} MB", rss_peak.saturating_sub(rss_before) / 1024),
    );

    // 3. Timing, one at a time, fresh sources (5 guesses each: below throttle and lockout).
    let samples: usize = if run.short { 50 } else { 200 };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let mut timing_clients = Vec::new();
    for k in 0..(2 * samples).div_ceil(5) {
        timing_clients.push(connect_with_inbox(&url, format!("_INBOX.timing_{k}")).await?);
    }
    for i in 0..2 * samples {
        let login = if i % 2 == 0 {
            DEMO_LOGIN
        } else {
            "no-such-login"
        };
        let client = &timing_clients[i / 5];
        let t = Instant::now();
        let reply = request(
            client,
            &subject,
            &body(login, &format!("timing-{i}")),
            Duration::from_secs(10),
        )
        .await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if matches!(&reply, Ok(r) if fault_of(r) == Some((2, 2))) {
            if i % 2 == 0 {
                known.push(ms)
            } else {
                unknown.push(ms)
            }
        }
    }
    let (known_p50, unknown_p50) = (p50(known.clone()), p50(unknown.clone()));
    report.figure(
        "p50 wrong password, known login (ms)",
        format!("{known_p50:.1}"),
    );
    report.figure(
        "p50 wrong password, unknown login (ms)",
        format!("{unknown_p50:.1}"),
    );
    report.expect_eq(
        "timing samples answered 2/2 (known)",
        known.len() as i64,
        samples as i64,
    );
    report.expect_eq(
        "timing samples answered 2/2 (unknown)",
        unknown.len() as i64,
        samples as i64,
    );

    // 4. The merchant from a source that did not guess.
    let fresh = connect_with_inbox(&url, "_INBOX.merchant_fresh".into()).await?;
    let right = request(
        &fresh,
        &subject,
        &body(DEMO_LOGIN, DEMO_PASSWORD),
        Duration::from_secs(10),
    )
    .await;
    report.expect(
        "the right password works from another source after the storm",
        matches!(&right, Ok(r) if !is_fault(r)),
        "accepted",
        format!("{right:?}"),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    report.figure("RSS after, 2 s idle (MB)", (rss_kb(pid) / 1024) as i64);
    let text = metrics();
    report.figure(
        "lockouts (metric)",
        metric_sum(&text, "oneclick_login_lockouts_total") as i64,
    );
    report.figure(
        "throttled (metric)",
        metric_sum(&text, "oneclick_login_throttled_total") as i64,
    );
    report.figure(
        "locked refusals (metric)",
        metric_sum(&text, "oneclick_login_locked_refusals_total") as i64,
    );
    history.flush();
    Ok(())
}
