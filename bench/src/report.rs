//! The results: one [`Record`] per measured window (oneclick scenarios, baselines, paced, growth),
//! printed as a table, written as `results.json`, and turned into the ratios of issue 5's targets
//! (each ratio measured in this run; shown, never asserted).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::load::{fmt_int, Measured};
use crate::procfs::CpuSeconds;

/// The open-source vault peer measured on this machine (docs/stack.md, closed-loop HTTP,
/// same PostgreSQL, 2 cores): (concurrency, add card/s, retrieve card/s).
pub const PEER: &[(usize, f64, f64)] = &[
    (1, 2_200.0, 10_800.0),
    (8, 5_200.0, 24_900.0),
    (32, 4_100.0, 25_100.0),
];

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// One measured window.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// `oneclick`, `nats-echo`, `db-baseline`, `db-grouped`, `oneclick-paced`, `growth`.
    pub group: String,
    pub backend: Option<String>,
    pub scenario: String,
    pub concurrency: usize,
    /// Paced runs: the offered rate.
    pub target_rate: Option<f64>,
    /// Customers in the vault (growth) or seeded.
    pub customers: usize,
    pub throughput: f64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub errors_anywhere: u64,
    /// Errors in the warm-up or answered after the window closed (not in `errors`).
    pub errors_outside_window: BTreeMap<String, u64>,
    pub latency_ms: Latency,
    pub cpu_seconds: CpuSeconds,
    /// CPU microseconds per request: oneclick, nats, database, and their total.
    pub cpu_us_per_request: BTreeMap<String, f64>,
    pub request_bytes: f64,
    pub reply_bytes: f64,
    pub window_secs: f64,
}

impl Record {
    pub fn new(
        group: &str,
        backend: Option<&str>,
        scenario: &str,
        concurrency: usize,
        customers: usize,
        m: &Measured,
    ) -> Record {
        let ms = |q: f64| m.hist.value_at_quantile(q) as f64 / 1000.0;
        let n = m.count().max(1) as f64;
        let mut per = BTreeMap::new();
        let mut total = 0.0;
        for (name, v) in [
            ("oneclick", m.cpu.oneclick),
            ("nats", m.cpu.nats),
            ("database", m.cpu.database),
        ] {
            if let Some(v) = v {
                per.insert(name.to_string(), v * 1e6 / n);
                total += v * 1e6 / n;
            }
        }
        per.insert("total".into(), total);
        Record {
            group: group.into(),
            backend: backend.map(str::to_string),
            scenario: scenario.into(),
            concurrency,
            target_rate: None,
            customers,
            throughput: m.throughput(),
            ok: m.ok,
            errors: m.errors.clone(),
            errors_anywhere: m.errors_anywhere,
            errors_outside_window: m.errors_outside.clone(),
            latency_ms: Latency {
                p50: ms(0.5),
                p90: ms(0.9),
                p99: ms(0.99),
                p999: ms(0.999),
                max: m.hist.max() as f64 / 1000.0,
                mean: m.hist.mean() / 1000.0,
            },
            cpu_seconds: m.cpu.clone(),
            cpu_us_per_request: per,
            request_bytes: m.request_bytes,
            reply_bytes: m.reply_bytes,
            window_secs: m.window_secs,
        }
    }

    pub fn key(&self) -> String {
        match &self.backend {
            Some(b) => format!("{} {} {}", self.group, b, self.scenario),
            None => format!("{} {}", self.group, self.scenario),
        }
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

/// The results table (plain text, fixed columns).
pub fn table(records: &[Record]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<15} {:<8} {:<22} {:>4} {:>9} {:>6} {:>7} {:>7} {:>7} {:>8} | {:>8} {:>5} {:>5} {:>5} {:>5} | {:>9}",
        "group", "backend", "scenario", "conc", "req/s", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "cpu s: 1click", "nats", "db", "bench", "other", "µs cpu/req"
    );
    for r in records {
        let errors: u64 = r.errors.values().sum();
        let _ = writeln!(
            s,
            "{:<15} {:<8} {:<22} {:>4} {:>9} {:>6} {:>7.2} {:>7.2} {:>7.2} {:>8.2} | {:>13} {:>5} {:>5} {:>5} {:>5} | {:>9.0}",
            r.group,
            r.backend.as_deref().unwrap_or("-"),
            truncate(&r.scenario, 22),
            r.concurrency,
            fmt_int(r.throughput),
            errors,
            r.latency_ms.p50,
            r.latency_ms.p90,
            r.latency_ms.p99,
            r.latency_ms.p999,
            opt(r.cpu_seconds.oneclick),
            opt(r.cpu_seconds.nats),
            opt(r.cpu_seconds.database),
            opt(r.cpu_seconds.bench),
            opt(r.cpu_seconds.other),
            r.cpu_us_per_request.get("total").copied().unwrap_or(0.0),
        );
    }
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for r in records {
        for (k, v) in &r.errors {
            *faults
                .entry(format!("{} c={} — {k}", r.key(), r.concurrency))
                .or_default() += v;
        }
        for (k, v) in &r.errors_outside_window {
            *faults
                .entry(format!(
                    "{} c={} — {k} (outside the window)",
                    r.key(),
                    r.concurrency
                ))
                .or_default() += v;
        }
    }
    if !faults.is_empty() {
        let _ = writeln!(s, "\nerrors by fault code:");
        for (k, v) in faults {
            let _ = writeln!(s, "  {v:>8}  {k}");
        }
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

/// A target of issue 5 and what this run measured for it.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub name: String,
    pub value: Option<f64>,
    pub unit: String,
    pub target: String,
    pub met: Option<bool>,
    pub detail: String,
}

fn find<'a>(
    records: &'a [Record],
    group: &str,
    backend: Option<&str>,
    scenario: &str,
    c: usize,
) -> Option<&'a Record> {
    records.iter().find(|r| {
        r.group == group
            && r.backend.as_deref() == backend
            && r.scenario == scenario
            && r.concurrency == c
    })
}

/// The concurrency the targets name (32), or the highest measured.
fn target_concurrency(records: &[Record]) -> Option<usize> {
    let cs: Vec<usize> = records
        .iter()
        .filter(|r| r.group == "oneclick")
        .map(|r| r.concurrency)
        .collect();
    if cs.contains(&32) {
        Some(32)
    } else {
        cs.into_iter().max()
    }
}

fn peer_at(c: usize) -> (usize, f64, f64) {
    *PEER
        .iter()
        .min_by_key(|(pc, _, _)| pc.abs_diff(c))
        .unwrap_or(&(32, 4_100.0, 25_100.0))
}

/// The ratios of issue 5 computable from `records` (memory and growth ones come separately).
pub fn ratios(records: &[Record], backends: &[String]) -> Vec<Ratio> {
    let mut out = Vec::new();
    let Some(c) = target_concurrency(records) else {
        return out;
    };
    let note = if c == 32 {
        String::new()
    } else {
        format!(" (32 not measured: at {c})")
    };
    for bname in backends {
        let bname = bname.as_str();
        let b = Some(bname);
        if let (Some(p), Some(db)) = (
            find(records, "oneclick", b, "pay-token", c),
            find(records, "db-baseline", b, "payment-tx", c),
        ) {
            let v = p.throughput / db.throughput.max(1e-9);
            let primary = bname == "postgres";
            out.push(Ratio {
                name: format!("pay-token / database one-tx-per-payment, {bname}, c={c}{note}"),
                value: Some(v),
                unit: "×".into(),
                target: if primary {
                    "≥ 1.5".into()
                } else {
                    "(no target on SQLite)".into()
                },
                met: primary.then_some(v >= 1.5),
                detail: format!(
                    "{} vs {} payments/s",
                    fmt_int(p.throughput),
                    fmt_int(db.throughput)
                ),
            });
        }
        // The database's own group-commit ceiling: what grouping alone gains over one
        // transaction per payment on this machine, and how close oneclick comes to it.
        if let (Some(g), Some(db)) = (
            records.iter().find(|r| {
                r.group == "db-grouped" && r.backend.as_deref() == b && r.concurrency == c
            }),
            find(records, "db-baseline", b, "payment-tx", c),
        ) {
            let v = g.throughput / db.throughput.max(1e-9);
            out.push(Ratio {
                name: format!(
                    "database grouped (savepoint per payment) / one-tx-per-payment, {bname}, c={c}{note}"
                ),
                value: Some(v),
                unit: "×".into(),
                target: "(the ceiling of grouping)".into(),
                met: None,
                detail: format!(
                    "{} vs {} payments/s",
                    fmt_int(g.throughput),
                    fmt_int(db.throughput)
                ),
            });
            if let Some(p) = find(records, "oneclick", b, "pay-token", c) {
                let v = p.throughput / g.throughput.max(1e-9);
                out.push(Ratio {
                    name: format!("pay-token / database grouped, {bname}, c={c}{note}"),
                    value: Some(v),
                    unit: "×".into(),
                    target: "(informative)".into(),
                    met: None,
                    detail: format!(
                        "{} vs {} payments/s",
                        fmt_int(p.throughput),
                        fmt_int(g.throughput)
                    ),
                });
            }
        }
        if let Some(t) = find(records, "oneclick", b, "token-list", c) {
            if let Some(e) = find(records, "nats-echo", b, "echo token-list size", c) {
                let v = t.throughput / e.throughput.max(1e-9);
                out.push(Ratio {
                    name: format!("token-list / raw NATS request-reply, {bname}, c={c}{note}"),
                    value: Some(v),
                    unit: "×".into(),
                    target: "≥ 0.5".into(),
                    met: Some(v >= 0.5),
                    detail: format!(
                        "{} vs {} requests/s",
                        fmt_int(t.throughput),
                        fmt_int(e.throughput)
                    ),
                });
            }
            let (pc, _, retrieve) = peer_at(c);
            let v = t.throughput / retrieve;
            out.push(Ratio {
                name: format!(
                    "token-list / vault peer retrieve ({}/s at c={pc}), {bname}, c={c}",
                    fmt_int(retrieve)
                ),
                value: Some(v),
                unit: "×".into(),
                target: "≥ 3".into(),
                met: Some(v >= 3.0),
                detail: format!("{} requests/s", fmt_int(t.throughput)),
            });
        }
        if let Some(r) = find(records, "oneclick", b, "register", c) {
            let (pc, add, _) = peer_at(c);
            let v = r.throughput / add;
            out.push(Ratio {
                name: format!(
                    "register (save a card) / vault peer add card ({}/s at c={pc}), {bname}, c={c}",
                    fmt_int(add)
                ),
                value: Some(v),
                unit: "×".into(),
                target: "≥ 2".into(),
                met: Some(v >= 2.0),
                detail: format!("{} cards saved/s", fmt_int(r.throughput)),
            });
        }
        if let Some(p) = records
            .iter()
            .find(|r| r.group == "oneclick-paced" && r.backend.as_deref() == b)
        {
            out.push(Ratio {
                name: format!(
                    "pay-token p99 at half of peak ({} payments/s offered), {bname}",
                    fmt_int(p.target_rate.unwrap_or(0.0))
                ),
                value: Some(p.latency_ms.p99),
                unit: "ms".into(),
                target: "≤ 5 ms".into(),
                met: Some(p.latency_ms.p99 <= 5.0),
                detail: format!(
                    "achieved {}/s, p50 {:.2} ms, p99.9 {:.2} ms",
                    fmt_int(p.throughput),
                    p.latency_ms.p50,
                    p.latency_ms.p999
                ),
            });
        }
    }
    out
}

pub fn ratio_table(ratios: &[Ratio]) -> String {
    let mut s = String::new();
    for r in ratios {
        let value = match (r.value, r.unit.as_str()) {
            (Some(v), "ms") => format!("{v:.2} ms"),
            (Some(v), "KiB") => format!("{v:.2} KiB"),
            (Some(v), "%") => format!("{v:+.1} %"),
            (Some(v), _) => format!("{v:.2}×"),
            (None, _) => "-".into(),
        };
        let verdict = match r.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "",
        };
        let _ = writeln!(
            s,
            "  {:<96} {:>10}  target {:<22} {:<7}  {}",
            r.name, value, r.target, verdict, r.detail
        );
    }
    s
}

/// Everything `results.json` holds.
#[derive(Debug, Serialize)]
pub struct Results {
    pub date: String,
    pub machine: BTreeMap<String, String>,
    pub command: String,
    pub records: Vec<Record>,
    pub ratios: Vec<Ratio>,
    pub memory: Vec<serde_json::Value>,
    pub notes: Vec<String>,
}

/// CPU model, cores, kernel, nats-server and PostgreSQL versions: what the figures are relative to.
pub fn machine_info(nats_server: &str, oneclick_bin: &std::path::Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if let Some(model) = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
    {
        m.insert("cpu".into(), model);
    }
    m.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_default(),
    );
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(if o.stdout.is_empty() {
                    &o.stderr
                } else {
                    &o.stdout
                })
                .trim()
                .to_string()
            })
            .unwrap_or_default()
    };
    m.insert("kernel".into(), run("uname", &["-r"]));
    // The repository at run time, and when the measured binary was built (it may be older).
    let head = run("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !run("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    m.insert(
        "repository HEAD at run time".into(),
        if dirty {
            format!("{head} + uncommitted changes")
        } else {
            head
        },
    );
    if let Ok(modified) = std::fs::metadata(oneclick_bin).and_then(|m| m.modified()) {
        let built: chrono::DateTime<chrono::Local> = modified.into();
        m.insert("oneclick binary built".into(), built.to_rfc3339());
    }
    m.insert("nats-server".into(), run(nats_server, &["--version"]));
    m.insert(
        "memory".into(),
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
    );
    m
}
