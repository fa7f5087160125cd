//! The closed-loop driver: `concurrency` requesters, each sending one request, awaiting its reply,
//! then sending the next, spread over a few NATS connections (as several gateway instances
//! would). A warm-up, then a measured window: only requests sent and answered inside the window
//! count; CPU is read from `/proc` at its two ends. A progress line goes to stderr each second.
//!
//! Paced mode (`rate`): the same requesters, but request k is due at `start + k / rate`; its
//! latency is measured from when it was *due*, not when it was sent, so a slow reply that delays
//! the following requests shows up in their latency (no coordinated omission).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::RequestErrorKind;
use futures::future::{BoxFuture, FutureExt as _};
use hdrhistogram::Histogram;

use crate::procfs::{CpuSeconds, Probe};
use crate::profile::Profiler;
use crate::scenario::{judge, Request};

/// Warm-up and measured durations.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub duration: Duration,
}

/// A latency histogram in microseconds (1 µs .. 10 min, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// What one measured window produced.
#[derive(Debug, Clone)]
pub struct Measured {
    pub hist: Histogram<u64>,
    pub ok: u64,
    /// Error class → count, inside the window.
    pub errors: BTreeMap<String, u64>,
    /// Errors over the whole run, warm-up and window edges included (the smoke test wants zero).
    pub errors_anywhere: u64,
    /// Error class → count for the errors outside the window (warm-up, the last replies).
    pub errors_outside: BTreeMap<String, u64>,
    pub window_secs: f64,
    pub cpu: CpuSeconds,
    pub request_bytes: f64,
    pub reply_bytes: f64,
}

impl Measured {
    pub fn count(&self) -> u64 {
        self.ok + self.errors.values().sum::<u64>()
    }

    pub fn throughput(&self) -> f64 {
        self.count() as f64 / self.window_secs.max(1e-9)
    }
}

/// Per-requester tally, merged at the end (no shared lock on the hot path).
struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    errors_outside: BTreeMap<String, u64>,
    request_bytes: u64,
    reply_bytes: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            errors_outside: BTreeMap::new(),
            request_bytes: 0,
            reply_bytes: 0,
        }
    }

    fn merge(&mut self, o: Tally) {
        let _ = self.hist.add(&o.hist);
        self.ok += o.ok;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.errors_outside {
            *self.errors_outside.entry(k).or_default() += v;
        }
        self.request_bytes += o.request_bytes;
        self.reply_bytes += o.reply_bytes;
    }
}

/// Counters the progress line reads.
#[derive(Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

/// Prints `label  12s  measure  5,432/s  errors 0` once a second until `end`.
pub fn spawn_progress(
    label: String,
    progress: Arc<Progress>,
    start: Instant,
    measure_start: Instant,
    end: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0u64;
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::from_std(start) + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        loop {
            tick.tick().await;
            let now = Instant::now();
            if now > end + Duration::from_millis(500) {
                break;
            }
            let done = progress.done.load(Ordering::Relaxed);
            let errors = progress.errors.load(Ordering::Relaxed);
            let phase = if now < measure_start {
                "warm-up"
            } else {
                "measure"
            };
            eprintln!(
                "  {label:<34} {:>4.0}s {phase:<7} {:>9}/s  errors {errors}",
                now.duration_since(start).as_secs_f64(),
                fmt_int((done - last) as f64)
            );
            last = done;
        }
    })
}

pub fn fmt_int(x: f64) -> String {
    let s = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Reads CPU at the window's two ends (and profiles oneclick inside it when asked).
pub async fn observe_window(
    probe: &Probe,
    measure_start: Instant,
    measure_end: Instant,
    profiler: Option<&Profiler>,
    label: &str,
) -> CpuSeconds {
    tokio::time::sleep_until(measure_start.into()).await;
    let recording = profiler
        .and_then(|p| p.start(label, measure_end.saturating_duration_since(Instant::now())));
    let a = probe.read();
    tokio::time::sleep_until(measure_end.into()).await;
    let b = probe.read();
    if let Some(r) = recording {
        r.finish();
    }
    probe.between(&a, &b)
}

/// What one request produced: `verdict` is `None` when the reply is right, else its error class.
pub struct Outcome {
    pub verdict: Option<String>,
    pub request_bytes: u64,
    pub reply_bytes: u64,
}

/// One requester: each call builds its next request and returns the future that sends it and
/// judges the reply (NATS to oneclick or the echo, HTTP to the peer vault).
pub type Call = Box<dyn FnMut() -> BoxFuture<'static, Outcome> + Send>;

/// Runs the closed loop over NATS: `makers[i]` builds requester i's requests.
#[allow(clippy::too_many_arguments)]
pub async fn run_nats(
    label: &str,
    clients: &[async_nats::Client],
    makers: Vec<Box<dyn FnMut() -> Request + Send>>,
    window: Window,
    rate: Option<f64>,
    probe: &Probe,
    profiler: Option<&Profiler>,
) -> anyhow::Result<Measured> {
    let calls = makers
        .into_iter()
        .enumerate()
        .map(|(i, mut make)| {
            let client = clients[i % clients.len()].clone();
            Box::new(move || {
                let req = make();
                let client = client.clone();
                async move {
                    let request_bytes = req.body.len() as u64;
                    match client.request(req.subject, req.body).await {
                        Ok(msg) => Outcome {
                            verdict: judge(req.kind, &msg.payload),
                            request_bytes,
                            reply_bytes: msg.payload.len() as u64,
                        },
                        Err(e) => Outcome {
                            verdict: Some(match e.kind() {
                                RequestErrorKind::TimedOut => "nats timeout".to_string(),
                                RequestErrorKind::NoResponders => "nats no responders".to_string(),
                                _ => "nats error".to_string(),
                            }),
                            request_bytes,
                            reply_bytes: 0,
                        },
                    }
                }
                .boxed()
            }) as Call
        })
        .collect();
    run_calls(label, calls, window, rate, probe, profiler).await
}

/// The closed (or, with `rate`, paced) loop over any requesters.
pub async fn run_calls(
    label: &str,
    calls: Vec<Call>,
    window: Window,
    rate: Option<f64>,
    probe: &Probe,
    profiler: Option<&Profiler>,
) -> anyhow::Result<Measured> {
    let start = Instant::now() + Duration::from_millis(50);
    let measure_start = start + window.warmup;
    let measure_end = measure_start + window.duration;
    let progress = Arc::new(Progress::default());
    let due = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut call in calls {
        let (progress, due) = (progress.clone(), due.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            tokio::time::sleep_until(start.into()).await;
            loop {
                let request = call();
                let sent = match rate {
                    Some(rate) => {
                        let k = due.fetch_add(1, Ordering::Relaxed);
                        let slot = start + Duration::from_secs_f64(k as f64 / rate);
                        tokio::time::sleep_until(slot.into()).await;
                        slot
                    }
                    None => Instant::now(),
                };
                if sent >= measure_end {
                    break;
                }
                let outcome = request.await;
                let done = Instant::now();
                progress.done.fetch_add(1, Ordering::Relaxed);
                if outcome.verdict.is_some() {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                }
                if sent >= measure_start && done <= measure_end {
                    tally
                        .hist
                        .saturating_record(done.duration_since(sent).as_micros() as u64);
                    tally.request_bytes += outcome.request_bytes;
                    tally.reply_bytes += outcome.reply_bytes;
                    match outcome.verdict {
                        None => tally.ok += 1,
                        Some(v) => *tally.errors.entry(v).or_default() += 1,
                    }
                } else if let Some(v) = outcome.verdict {
                    *tally.errors_outside.entry(v).or_default() += 1;
                }
            }
            tally
        }));
    }
    let printer = spawn_progress(
        label.to_string(),
        progress.clone(),
        start,
        measure_start,
        measure_end,
    );
    let cpu = observe_window(probe, measure_start, measure_end, profiler, label).await;
    let mut total = Tally::new();
    for t in tasks {
        total.merge(t.await?);
    }
    printer.abort();
    Ok(finish(
        total,
        window,
        cpu,
        progress.errors.load(Ordering::Relaxed),
    ))
}

/// A window measured elsewhere (pgbench's own log): its histogram and counts, the CPU read here.
pub fn measured_from(
    hist: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    window: Window,
    cpu: CpuSeconds,
) -> Measured {
    let errors_anywhere = errors.values().sum();
    Measured {
        hist,
        ok,
        errors,
        errors_anywhere,
        errors_outside: BTreeMap::new(),
        window_secs: window.duration.as_secs_f64(),
        cpu,
        request_bytes: 0.0,
        reply_bytes: 0.0,
    }
}

fn finish(total: Tally, window: Window, cpu: CpuSeconds, errors_anywhere: u64) -> Measured {
    let n = (total.ok + total.errors.values().sum::<u64>()).max(1) as f64;
    Measured {
        request_bytes: total.request_bytes as f64 / n,
        reply_bytes: total.reply_bytes as f64 / n,
        hist: total.hist,
        ok: total.ok,
        errors: total.errors,
        errors_outside: total.errors_outside,
        errors_anywhere,
        window_secs: window.duration.as_secs_f64(),
        cpu,
    }
}

/// A closed loop on OS threads, for the database baseline: `work(i)` runs one unit (one
/// payment transaction) on requester i's own connection and returns its error, if any.
pub async fn run_threads<F>(
    label: &str,
    concurrency: usize,
    window: Window,
    probe: &Probe,
    make_worker: F,
) -> anyhow::Result<Measured>
where
    F: Fn(usize) -> anyhow::Result<Box<dyn FnMut() -> Option<String> + Send>>,
{
    let start = Instant::now() + Duration::from_millis(200);
    let measure_start = start + window.warmup;
    let measure_end = measure_start + window.duration;
    let progress = Arc::new(Progress::default());
    let mut threads = Vec::new();
    for i in 0..concurrency {
        let mut work = make_worker(i)?;
        let progress = progress.clone();
        threads.push(std::thread::spawn(move || {
            let mut tally = Tally::new();
            std::thread::sleep(start.saturating_duration_since(Instant::now()));
            loop {
                let sent = Instant::now();
                if sent >= measure_end {
                    break;
                }
                let verdict = work();
                let done = Instant::now();
                progress.done.fetch_add(1, Ordering::Relaxed);
                if verdict.is_some() {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                }
                if sent >= measure_start && done <= measure_end {
                    tally
                        .hist
                        .saturating_record(done.duration_since(sent).as_micros() as u64);
                    match verdict {
                        None => tally.ok += 1,
                        Some(v) => *tally.errors.entry(v).or_default() += 1,
                    }
                } else if let Some(v) = verdict {
                    *tally.errors_outside.entry(v).or_default() += 1;
                }
            }
            tally
        }));
    }
    let printer = spawn_progress(
        label.to_string(),
        progress.clone(),
        start,
        measure_start,
        measure_end,
    );
    let cpu = observe_window(probe, measure_start, measure_end, None, label).await;
    let mut total = Tally::new();
    for t in threads {
        let tally = tokio::task::spawn_blocking(move || t.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a baseline thread panicked"))?;
        total.merge(tally);
    }
    printer.abort();
    Ok(finish(
        total,
        window,
        cpu,
        progress.errors.load(Ordering::Relaxed),
    ))
}
