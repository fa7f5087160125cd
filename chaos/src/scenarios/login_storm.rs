//! Scenario: login storm (security issue 12, finding 3). Wrong merchant passwords at 200 in
//! flight against one oneclick process, measured from outside.
//!
//! Over NATS a merchant's requests are answered only on its own inbox (`_INBOX.merchant_<id>.`,
//! the confused-deputy fix), so a source is a merchant's NATS identity: the "sources" below are
//! merchants, each with its own subject, inbox and user `demo`.
//!
//! 1. from one source (the demo merchant): the throttle and the lockout leave at most
//!    `login.max_failures` password checks, everything else is refused without argon2;
//! 2. from 40 sources (40 merchants, 25 guesses each at 200 in flight): every guess the
//!    throttle lets through is checked with argon2, far more than the bound at once, and the
//!    process's RSS (sampled every 20 ms from /proc) and the argon2-in-flight peak show the
//!    memory ceiling `login.argon2_concurrency` × 19 MiB;
//! 3. timing: one request at a time, wrong passwords for the known login `demo` and for a login
//!    that does not exist, 5 of each per fresh merchant (below throttle and lockout): p50 of both
//!    (equal: no enumeration);
//! 4. after the operator's `admin merchant unlock`, the demo merchant's right password works.
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
/// Merchants (sources) of phase 2.
const SOURCES: usize = 40;
/// The first id of the merchants this scenario creates.
const FIRST_MERCHANT: i64 = 700_000;

/// `token.list` of merchant `id` (its own inbox is chosen by `request` from the subject).
fn token_list(stack: &Stack, id: i64) -> String {
    stack.subject(&format!("merchant.{id}.token.list"))
}

fn body(login: &str, password: &str) -> Value {
    body_of(DEMO_MERCHANT, login, password)
}

/// A token list request of merchant `id` (its id in the body must match its subject).
fn body_of(id: i64, login: &str, password: &str) -> Value {
    json!({"merchant": {"merchant_id": id.to_string(), "login": login, "password": password},
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
    let samples: usize = if run.short { 50 } else { 200 };
    // 5 known + 5 unknown per timing merchant: the throttle's burst (10) is never exceeded.
    let timing_merchants = (2 * samples).div_ceil(10);
    let merchants = SOURCES + timing_merchants;
    let stack = Stack::start(&run.out, StackOptions::default(), |app| {
        for k in 0..merchants as i64 {
            let id = (FIRST_MERCHANT + k).to_string();
            app.admin(&["merchant", "--id", &id, "--name", &format!("storm {id}")])?;
            app.admin(&[
                "user",
                "--merchant",
                &id,
                "--login",
                DEMO_LOGIN,
                "--password",
                DEMO_PASSWORD,
            ])?;
        }
        Ok(())
    })
    .await?;
    let pid = stack
        .apps
        .lock()
        .map_err(|_| anyhow::anyhow!("apps lock"))?
        .first()
        .and_then(|a| a.pid())
        .ok_or_else(|| anyhow::anyhow!("no oneclick process"))?;
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
    let one = &stack.client;
    let started = Instant::now();
    let replies: Vec<Option<Value>> = futures::stream::iter(0..guesses)
        .map(|i| {
            let subject = &subject;
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

    // 2. Many sources: merchants, each its own NATS identity.
    let per_source = guesses / SOURCES;
    let started = Instant::now();
    let replies: Vec<Option<Value>> = futures::stream::iter(0..per_source * SOURCES)
        .map(|i| {
            let id = FIRST_MERCHANT + (i % SOURCES) as i64;
            let (client, subject) = (&stack.client, token_list(&stack, id));
            async move {
                request(
                    client,
                    &subject,
                    &body_of(id, DEMO_LOGIN, &format!("spread-{i}")),
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

    // 3. Timing, one at a time, fresh merchants (5 + 5 guesses each: below throttle and lockout).
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..2 * samples {
        let login = if i % 2 == 0 {
            DEMO_LOGIN
        } else {
            "no-such-login"
        };
        let id = FIRST_MERCHANT + (SOURCES + i / 10) as i64;
        let timing_subject = token_list(&stack, id);
        let t = Instant::now();
        let reply = request(
            &stack.client,
            &timing_subject,
            &body_of(id, login, &format!("timing-{i}")),
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

    // 4. The operator lifts the lock; the throttle refills (60 a minute); the right password works.
    let unlocked = stack
        .apps
        .lock()
        .map_err(|_| anyhow::anyhow!("apps lock"))?
        .first()
        .map(|a| {
            a.admin(&[
                "merchant",
                "unlock",
                "--id",
                &DEMO_MERCHANT.to_string(),
                "--login",
                DEMO_LOGIN,
            ])
        })
        .transpose()?;
    history.record(json!({"phase": "unlock", "said": unlocked}));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let right = request(
        &stack.client,
        &subject,
        &body(DEMO_LOGIN, DEMO_PASSWORD),
        Duration::from_secs(10),
    )
    .await;
    report.expect(
        "the right password works after the operator's unlock",
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
