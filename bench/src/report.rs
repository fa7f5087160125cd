//! The results: one [`Record`] per measured window (oneclick scenarios, baselines, paced, growth),
//! printed as a table, written as `results.json`, and turned into the ratios of issue 14's targets
//! (each ratio measured in this run; shown, never asserted).
//!
//! A verdict agrees with the number printed beside it: [`Ratio::judged`] decides from the exact
//! value and [`shown`] prints that value with as many decimals as it takes for the printed
//! number to fall on the same side of the bound (1.498× against "≥ 1.5" prints `1.498×`, never
//! `1.50×`; see the tests).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::load::{fmt_int, Measured};
use crate::procfs::CpuSeconds;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
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
    /// The demo merchant's turnover limits in this window (on: the demo merchant as seeded,
    /// RUB 100,000/day and 500,000/week, so every payment reads its turnover; off: lifted);
    /// `None` where no merchant is involved (echo, peer, disk).
    pub limits: Option<bool>,
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
    /// Latencies measured in the window (the histogram's count).
    pub samples: u64,
    /// The latency CDF from the HDR histogram: (quantile, ms) at fixed quantiles up to the max.
    pub cdf: Vec<(f64, f64)>,
    pub cpu_seconds: CpuSeconds,
    /// CPU microseconds per request: oneclick, nats, database, and their total.
    pub cpu_us_per_request: BTreeMap<String, f64>,
    pub request_bytes: f64,
    pub reply_bytes: f64,
    pub window_secs: f64,
    /// oneclick's database round trips per request (`oneclick_vault_round_trips` over
    /// `oneclick_requests_total`, both read before and after the run, warm-up included);
    /// `None` for the baselines.
    pub db_round_trips_per_request: Option<f64>,
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
        // The service column holds the peer vault's CPU in its own windows.
        let service = if group == "peer" { "peer" } else { "oneclick" };
        for (name, v) in [
            (service, m.cpu.oneclick),
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
            limits: None,
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
                p9999: ms(0.9999),
                max: m.hist.max() as f64 / 1000.0,
                mean: m.hist.mean() / 1000.0,
            },
            samples: m.hist.len(),
            cdf: crate::latency::cdf(&m.hist),
            cpu_seconds: m.cpu.clone(),
            cpu_us_per_request: per,
            request_bytes: m.request_bytes,
            reply_bytes: m.reply_bytes,
            window_secs: m.window_secs,
            db_round_trips_per_request: None,
        }
    }

    /// With oneclick's database round trips per request in this run.
    pub fn with_round_trips(mut self, per_request: Option<f64>) -> Record {
        self.db_round_trips_per_request = per_request;
        self
    }

    /// With the merchant's limits setting (payment scenarios run both ways).
    pub fn with_limits(mut self, limits: bool) -> Record {
        self.limits = Some(limits);
        self
    }

    pub fn key(&self) -> String {
        let limits = match self.limits {
            Some(true) => " limits on",
            Some(false) => " limits off",
            None => "",
        };
        match &self.backend {
            Some(b) => format!("{} {} {}{limits}", self.group, b, self.scenario),
            None => format!("{} {}{limits}", self.group, self.scenario),
        }
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into())
}

fn limits_cell(l: Option<bool>) -> &'static str {
    match l {
        Some(true) => "on",
        Some(false) => "off",
        None => "-",
    }
}

/// The results table (plain text, fixed columns). `lim` is the merchant's turnover limits;
/// p99.99 needs at least 10,000 samples in the window to mean more than the maximum.
pub fn table(records: &[Record]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<14} {:<8} {:<22} {:>3} {:>4} {:>9} {:>6} {:>7} {:>7} {:>7} {:>8} {:>9} | {:>10} {:>5} {:>5} {:>5} {:>5} | {:>9} {:>9}",
        "group", "backend", "scenario", "lim", "conc", "req/s", "errors", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "p99.99 ms", "cpu s: svc", "nats", "db", "bench", "other", "µs cpu/req", "db rt/req"
    );
    for r in records {
        let errors: u64 = r.errors.values().sum();
        let _ = writeln!(
            s,
            "{:<14} {:<8} {:<22} {:>3} {:>4} {:>9} {:>6} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>9} | {:>10} {:>5} {:>5} {:>5} {:>5} | {:>9.0} {:>9}",
            truncate(&r.group, 14),
            r.backend.as_deref().unwrap_or("-"),
            truncate(&r.scenario, 22),
            limits_cell(r.limits),
            r.concurrency,
            fmt_int(r.throughput),
            errors,
            r.latency_ms.p50,
            r.latency_ms.p90,
            r.latency_ms.p99,
            r.latency_ms.p999,
            if r.samples >= 10_000 {
                format!("{:.2}", r.latency_ms.p9999)
            } else {
                "-".to_string()
            },
            opt(r.cpu_seconds.oneclick),
            opt(r.cpu_seconds.nats),
            opt(r.cpu_seconds.database),
            opt(r.cpu_seconds.bench),
            opt(r.cpu_seconds.other),
            r.cpu_us_per_request.get("total").copied().unwrap_or(0.0),
            r.db_round_trips_per_request
                .map_or_else(|| "-".to_string(), |v| format!("{v:.2}")),
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

/// The bound of a target: the value must be at least, or at most, this.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

impl Bound {
    pub fn met(self, v: f64) -> bool {
        match self {
            Bound::AtLeast(b) => v >= b,
            Bound::AtMost(b) => v <= b,
        }
    }

    fn text(self, unit: &str) -> String {
        let (sign, b) = match self {
            Bound::AtLeast(b) => ("≥", b),
            Bound::AtMost(b) => ("≤", b),
        };
        let num = format!("{b}");
        match unit {
            "×" => format!("{sign} {num}×"),
            "%" => format!("{sign} {num} %"),
            u => format!("{sign} {num} {u}"),
        }
    }
}

fn with_unit(num: &str, unit: &str) -> String {
    match unit {
        "×" => format!("{num}×"),
        "%" => format!("{num} %"),
        u => format!("{num} {u}"),
    }
}

/// `v` as printed: two decimals (one for %), more when rounding would carry the printed number
/// across `bound` (so the printed number always gets the verdict the exact one got); at the
/// last precision it is truncated toward its own side of the bound.
pub fn shown(v: f64, unit: &str, bound: Option<Bound>) -> String {
    let first = if unit == "%" { 1 } else { 2 };
    let Some(bound) = bound else {
        return with_unit(&format!("{v:.first$}"), unit);
    };
    let met = bound.met(v);
    const LAST: usize = 6;
    for d in first..LAST {
        let text = format!("{v:.d$}");
        if text.parse::<f64>().map(|r| bound.met(r)) == Ok(met) {
            return with_unit(&text, unit);
        }
    }
    // Directed rounding at the last precision: toward the bound's side the value is on.
    let scale = 10f64.powi(LAST as i32);
    let (b, _) = match bound {
        Bound::AtLeast(b) | Bound::AtMost(b) => (b, ()),
    };
    let r = if v < b {
        (v * scale).floor() / scale
    } else if v > b {
        (v * scale).ceil() / scale
    } else {
        v
    };
    with_unit(&format!("{r:.LAST$}"), unit)
}

/// A target of issue 14 (or a figure shown beside them) and what this run measured for it.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub name: String,
    /// The exact value (`None`: not measured in this run; `detail` says why).
    pub value: Option<f64>,
    pub unit: String,
    /// The target as text ("≥ 1.5×"), or what the figure is for when it has no target.
    pub target: String,
    pub bound: Option<Bound>,
    /// The verdict, from the exact value; `None` for figures without a target or not measured.
    pub met: Option<bool>,
    /// The value as printed (see [`shown`]).
    pub shown: String,
    pub detail: String,
}

impl Ratio {
    /// A figure with a target.
    pub fn judged(
        name: impl Into<String>,
        value: Option<f64>,
        unit: &str,
        bound: Bound,
        detail: impl Into<String>,
    ) -> Ratio {
        Ratio {
            name: name.into(),
            value,
            unit: unit.into(),
            target: bound.text(unit),
            bound: Some(bound),
            met: value.map(|v| bound.met(v)),
            shown: value
                .map(|v| shown(v, unit, Some(bound)))
                .unwrap_or_else(|| "-".into()),
            detail: detail.into(),
        }
    }

    /// A figure shown for comparison, without a target.
    pub fn info(
        name: impl Into<String>,
        value: Option<f64>,
        unit: &str,
        note: &str,
        detail: impl Into<String>,
    ) -> Ratio {
        Ratio {
            name: name.into(),
            value,
            unit: unit.into(),
            target: format!("({note})"),
            bound: None,
            met: None,
            shown: value
                .map(|v| shown(v, unit, None))
                .unwrap_or_else(|| "-".into()),
            detail: detail.into(),
        }
    }

    /// A figure whose target is set for PostgreSQL: judged there, shown for comparison on the
    /// other backend.
    pub fn postgres_target(
        postgres: bool,
        name: String,
        value: Option<f64>,
        unit: &str,
        bound: Bound,
        detail: String,
    ) -> Ratio {
        if postgres {
            Ratio::judged(name, value, unit, bound, detail)
        } else {
            Ratio::info(name, value, unit, "target is PostgreSQL's", detail)
        }
    }

    pub fn verdict(&self) -> &'static str {
        match (self.bound, self.met) {
            (_, Some(true)) => "MET",
            (_, Some(false)) => "NOT MET",
            (Some(_), None) => "NOT MEASURED",
            (None, None) => "",
        }
    }
}

fn find<'a>(
    records: &'a [Record],
    group: &str,
    backend: Option<&str>,
    scenario: &str,
    limits: Option<bool>,
    c: usize,
) -> Option<&'a Record> {
    records.iter().find(|r| {
        r.group == group
            && r.backend.as_deref() == backend
            && r.scenario == scenario
            && (limits.is_none() || r.limits == limits)
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

fn rate_pair(a: &Record, b: &Record, what: &str) -> String {
    format!(
        "{} vs {} {what}/s",
        fmt_int(a.throughput),
        fmt_int(b.throughput)
    )
}

fn ratio_of(a: Option<&Record>, b: Option<&Record>) -> Option<f64> {
    Some(a?.throughput / b?.throughput.max(1e-9))
}

fn pair_detail(a: Option<&Record>, b: Option<&Record>, what: &str, missing: &str) -> String {
    match (a, b) {
        (Some(a), Some(b)) => rate_pair(a, b, what),
        _ => missing.to_string(),
    }
}

/// Why the peer's figures are missing, for the report (set by the sweep).
pub struct Context<'a> {
    pub peer_missing: Option<&'a str>,
    pub pgbench_missing: Option<&'a str>,
}

/// Issue 14's targets (and the like-for-like baselines beside them) computable from `records`.
/// The targets are PostgreSQL's (synchronous commit, c=32), plus SQLite's p99.9; the same
/// ratios on SQLite are shown without a verdict.
pub fn ratios(records: &[Record], backends: &[String], ctx: &Context) -> Vec<Ratio> {
    let mut out = Vec::new();
    let Some(c) = target_concurrency(records) else {
        return out;
    };
    let at = if c == 32 {
        format!("c={c}")
    } else {
        format!("c={c} (32 not measured)")
    };
    let peer_missing = ctx.peer_missing.unwrap_or("peer not measured in this run");
    let pgbench_missing = ctx.pgbench_missing.unwrap_or("pgbench not run");
    for bname in backends {
        let bname = bname.as_str();
        let b = Some(bname);
        let pg = bname == "postgres";
        for limits in [true, false] {
            let l = Some(limits);
            let Some(pay) = find(records, "oneclick", b, "pay-token", l, c) else {
                continue;
            };
            let lim = if limits { "limits on" } else { "limits off" };
            if pg {
                let base = find(records, "pgbench", b, "plain payment", l, c);
                let name =
                    format!("pay-token / pgbench plain one-tx payment, {lim}, {bname}, {at}");
                let detail = pair_detail(Some(pay), base, "payments", pgbench_missing);
                out.push(if limits {
                    Ratio::judged(
                        name,
                        ratio_of(Some(pay), base),
                        "×",
                        Bound::AtLeast(1.5),
                        detail,
                    )
                } else {
                    Ratio::info(
                        name,
                        ratio_of(Some(pay), base),
                        "×",
                        "target is with limits on",
                        detail,
                    )
                });
            }
            let eng = find(records, "db-baseline", b, "payment-tx", l, c);
            if eng.is_some() {
                out.push(Ratio::info(
                    format!(
                        "pay-token / engine's statements one tx per payment, {lim}, {bname}, {at}"
                    ),
                    ratio_of(Some(pay), eng),
                    "×",
                    "like for like, no target",
                    pair_detail(Some(pay), eng, "payments", ""),
                ));
            }
            if let Some(g) = find(records, "db-grouped", b, "payment-tx grouped", l, c) {
                out.push(Ratio::info(
                    format!("pay-token / engine's statements grouped (savepoint each), {lim}, {bname}, {at}"),
                    ratio_of(Some(pay), Some(g)),
                    "×",
                    "the database's group-commit ceiling",
                    rate_pair(pay, g, "payments"),
                ));
            }
            if let Some(p) = records
                .iter()
                .find(|r| r.group == "oneclick-paced" && r.backend.as_deref() == b && r.limits == l)
            {
                let name = format!(
                    "pay-token p99 at half of peak ({} payments/s offered), {lim}, {bname}",
                    fmt_int(p.target_rate.unwrap_or(0.0))
                );
                let detail = format!(
                    "achieved {}/s, p50 {:.2} ms, p99.9 {:.2} ms",
                    fmt_int(p.throughput),
                    p.latency_ms.p50,
                    p.latency_ms.p999
                );
                out.push(Ratio::postgres_target(
                    pg,
                    name,
                    Some(p.latency_ms.p99),
                    "ms",
                    Bound::AtMost(5.0),
                    detail,
                ));
            }
            if bname == "sqlite" {
                out.push(Ratio::judged(
                    format!("pay-token p99.9 on SQLite, {lim}, {at}"),
                    Some(pay.latency_ms.p999),
                    "ms",
                    Bound::AtMost(20.0),
                    format!(
                        "{}/s, p50 {:.2} ms, p99 {:.2} ms",
                        fmt_int(pay.throughput),
                        pay.latency_ms.p50,
                        pay.latency_ms.p99
                    ),
                ));
            }
        }
        // Reads run under the first limits setting only (they read no turnover).
        if let Some(t) = find(records, "oneclick", b, "token-list", None, c) {
            let echo = find(records, "nats-echo", b, "echo token-list size", None, c);
            let name = format!("token-list / raw NATS request-reply (same sizes), {bname}, {at}");
            let detail = pair_detail(Some(t), echo, "requests", "echo not run");
            out.push(Ratio::postgres_target(
                pg,
                name,
                ratio_of(Some(t), echo),
                "×",
                Bound::AtLeast(0.8),
                detail,
            ));
            let retrieve = find(records, "peer", Some("postgres"), "retrieve card", None, c);
            let name = format!("token-list / peer vault's retrieve card, {bname}, {at}");
            let detail = pair_detail(Some(t), retrieve, "requests", peer_missing);
            out.push(Ratio::postgres_target(
                pg,
                name,
                ratio_of(Some(t), retrieve),
                "×",
                Bound::AtLeast(4.0),
                detail,
            ));
        }
        for limits in [true, false] {
            let lim = if limits { "limits on" } else { "limits off" };
            if let Some(r) = find(records, "oneclick", b, "register", Some(limits), c) {
                let add = find(records, "peer", Some("postgres"), "add card", None, c);
                let name =
                    format!("register (save a card) / peer vault's add card, {lim}, {bname}, {at}");
                let detail = pair_detail(Some(r), add, "cards saved", peer_missing);
                out.push(Ratio::postgres_target(
                    pg,
                    name,
                    ratio_of(Some(r), add),
                    "×",
                    Bound::AtLeast(2.0),
                    detail,
                ));
            }
        }
    }
    out
}

pub fn ratio_line(r: &Ratio) -> String {
    format!(
        "  {:<92} {:>12}  target {:<26} {:<12}  {}",
        r.name,
        r.shown,
        r.target,
        r.verdict(),
        r.detail
    )
}

pub fn ratio_table(ratios: &[Ratio]) -> String {
    let mut s = String::new();
    for r in ratios {
        let _ = writeln!(s, "{}", ratio_line(r));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The number a report line prints, read back as a reader would.
    fn printed_number(line: &str, r: &Ratio) -> f64 {
        assert!(line.contains(&r.shown), "{line}");
        r.shown
            .trim_end_matches(['×', '%', ' '])
            .trim_end_matches("ms")
            .trim_end_matches("KiB")
            .trim_end_matches("MiB")
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", r.shown))
    }

    #[test]
    fn a_verdict_agrees_with_the_number_printed_beside_it() {
        let cases = [
            (Bound::AtLeast(1.5), "×"),
            (Bound::AtLeast(0.8), "×"),
            (Bound::AtMost(5.0), "ms"),
            (Bound::AtMost(20.0), "ms"),
            (Bound::AtLeast(-20.0), "%"),
            (Bound::AtMost(2.0), "KiB"),
        ];
        for (bound, unit) in cases {
            let b = match bound {
                Bound::AtLeast(b) | Bound::AtMost(b) => b,
            };
            for delta in [
                -0.5, -0.01, -0.006, -0.005, -0.004, -0.001, -0.0004, -1e-7, -1e-12, 0.0, 1e-12,
                1e-7, 0.0004, 0.001, 0.004, 0.005, 0.006, 0.01, 0.5,
            ] {
                let v = b + delta;
                let r = Ratio::judged("x", Some(v), unit, bound, "");
                let line = ratio_line(&r);
                let printed = printed_number(&line, &r);
                assert_eq!(
                    bound.met(printed),
                    r.met.unwrap_or(!bound.met(printed)),
                    "{v} printed as {} with verdict {}",
                    r.shown,
                    r.verdict()
                );
                assert_eq!(r.met, Some(bound.met(v)));
                let verdict = if bound.met(v) { "MET" } else { "NOT MET" };
                assert!(line.contains(&format!(" {verdict} ")), "{line}");
            }
        }
    }

    #[test]
    fn a_value_just_under_the_bound_is_printed_with_the_digits_that_show_it() {
        let r = Ratio::judged("x", Some(1.498), "×", Bound::AtLeast(1.5), "");
        assert_eq!((r.shown.as_str(), r.verdict()), ("1.498×", "NOT MET"));
        let r = Ratio::judged("x", Some(1.5), "×", Bound::AtLeast(1.5), "");
        assert_eq!((r.shown.as_str(), r.verdict()), ("1.50×", "MET"));
        let r = Ratio::judged("x", Some(5.004), "ms", Bound::AtMost(5.0), "");
        assert_eq!((r.shown.as_str(), r.verdict()), ("5.004 ms", "NOT MET"));
        let r = Ratio::judged("x", Some(1.4999999), "×", Bound::AtLeast(1.5), "");
        assert_eq!((r.shown.as_str(), r.verdict()), ("1.499999×", "NOT MET"));
        let r = Ratio::judged("x", Some(0.63), "×", Bound::AtLeast(0.8), "");
        assert_eq!((r.shown.as_str(), r.verdict()), ("0.63×", "NOT MET"));
        let r = Ratio::judged("x", None, "×", Bound::AtLeast(2.0), "peer skipped");
        assert_eq!((r.shown.as_str(), r.verdict()), ("-", "NOT MEASURED"));
        let r = Ratio::info("x", Some(1.234), "×", "no target", "");
        assert_eq!((r.shown.as_str(), r.verdict()), ("1.23×", ""));
    }

    fn rec(group: &str, backend: &str, scenario: &str, limits: Option<bool>, rate: f64) -> Record {
        let window = crate::load::Window {
            warmup: std::time::Duration::from_secs(0),
            duration: std::time::Duration::from_secs(10),
        };
        let mut hist = crate::load::histogram();
        hist.record(1000).expect("in range");
        let m = crate::load::measured_from(
            hist,
            (rate * 10.0) as u64,
            BTreeMap::new(),
            window,
            CpuSeconds::default(),
        );
        let r = Record::new(group, Some(backend), scenario, 32, 1000, &m);
        match limits {
            Some(l) => r.with_limits(l),
            None => r,
        }
    }

    #[test]
    fn the_targets_compare_like_for_like_and_say_what_was_not_measured() {
        let records = vec![
            rec("oneclick", "postgres", "pay-token", Some(true), 2996.0),
            rec("pgbench", "postgres", "plain payment", Some(true), 2000.0),
            rec("oneclick", "postgres", "pay-token", Some(false), 4000.0),
            rec("pgbench", "postgres", "plain payment", Some(false), 1000.0),
            rec("db-baseline", "postgres", "payment-tx", Some(true), 1500.0),
            rec("oneclick", "postgres", "token-list", Some(false), 40_000.0),
            rec(
                "nats-echo",
                "postgres",
                "echo token-list size",
                None,
                50_000.0,
            ),
            rec("oneclick", "postgres", "register", Some(true), 1000.0),
        ];
        let ctx = Context {
            peer_missing: Some("skipped by --short"),
            pgbench_missing: None,
        };
        let ratios = ratios(&records, &["postgres".to_string()], &ctx);
        let get = |prefix: &str| {
            ratios
                .iter()
                .find(|r| r.name.starts_with(prefix))
                .unwrap_or_else(|| panic!("{prefix}: {ratios:#?}"))
        };
        // 2,996 / 2,000 = 1.498: not met, and printed so it reads as not met.
        let r = get("pay-token / pgbench plain one-tx payment, limits on");
        assert_eq!((r.shown.as_str(), r.verdict()), ("1.498×", "NOT MET"));
        // Without limits the pgbench ratio is shown, never judged (the target is limits on).
        let r = get("pay-token / pgbench plain one-tx payment, limits off");
        assert_eq!((r.shown.as_str(), r.verdict()), ("4.00×", ""));
        let r = get("pay-token / engine's statements one tx per payment, limits on");
        assert_eq!((r.shown.as_str(), r.verdict()), ("2.00×", ""));
        let r = get("token-list / raw NATS");
        assert_eq!((r.shown.as_str(), r.verdict()), ("0.80×", "MET"));
        let r = get("token-list / peer vault's retrieve");
        assert_eq!(r.verdict(), "NOT MEASURED");
        assert!(r.detail.contains("skipped by --short"), "{}", r.detail);
        let r = get("register (save a card) / peer vault's add card, limits on");
        assert_eq!((r.shown.as_str(), r.verdict()), ("-", "NOT MEASURED"));
    }
}
