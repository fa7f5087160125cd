//! Where the CPU goes, with `perf` (`--profile`): during each measured window of a oneclick
//! scenario, `perf record -a -e cpu-clock -g` samples the whole machine (the software clock event
//! works in VMs where hardware counters such as `instructions` do not). After the run, for each
//! recording: the share of samples per process name (oneclick's threads, postgres, nats-server,
//! the bench, anything else), oneclick's samples per component (NATS client, tokio, actix,
//! Diesel/libpq, SQLite, JSON, crypto, allocator, kernel…, matched on symbol and library) and
//! per thread, and PostgreSQL's top symbols; the full `perf report` texts go next to them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Records oneclick's windows into `dir`.
pub struct Profiler {
    pub pid: u32,
    pub dir: PathBuf,
}

/// One recording in progress.
pub struct Recording {
    child: Child,
    pub data: PathBuf,
}

impl Profiler {
    /// Whether `perf record` works here (installed, allowed by perf_event_paranoid).
    pub fn available() -> bool {
        Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    pub fn start(&self, label: &str, length: Duration) -> Option<Recording> {
        std::fs::create_dir_all(&self.dir).ok()?;
        let data = self.dir.join(format!("perf-{}.data", slug(label)));
        // oneclick's thread ids, to pick its samples out of the machine-wide recording.
        let tids: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        std::fs::write(data.with_extension("tids"), tids.join(",")).ok()?;
        let child = Command::new("perf")
            .args([
                "record",
                "-q",
                "-a",
                "-e",
                "cpu-clock",
                "-F",
                "499",
                "-g",
                "-o",
            ])
            .arg(&data)
            .args(["--", "sleep", &format!("{:.2}", length.as_secs_f64())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Recording { child, data })
    }
}

impl Recording {
    pub fn finish(mut self) {
        let _ = self.child.wait();
    }
}

pub fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string()
}

/// Component of a symbol (or of its library when unsymbolised), for the summary.
fn component(dso: &str, symbol: &str) -> &'static str {
    let s = symbol;
    let has = |needles: &[&str]| needles.iter().any(|n| s.contains(n));
    if dso.contains("kernel") {
        return "kernel (syscalls, network, scheduling)";
    }
    if dso.contains("libpq") || has(&["pq_sys", "PQ", "pqsecure", "pqPut", "pqGet"]) {
        return "libpq (PostgreSQL client)";
    }
    if has(&["sqlite3", "libsqlite3_sys"]) {
        return "SQLite engine";
    }
    if has(&["diesel"]) {
        return "Diesel (query building, rows)";
    }
    if has(&["r2d2"]) {
        return "r2d2 pool";
    }
    if has(&["async_nats", "nats"]) {
        return "async-nats client";
    }
    if has(&["serde_json", "serde::", "oneclick::wire"]) {
        return "JSON (serde)";
    }
    if has(&[
        "aes", "ghash", "polyval", "gcm", "sha2", "hmac", "argon2", "blake2", "digest",
    ]) {
        return "crypto (AES-GCM, HMAC, argon2)";
    }
    if has(&["actix"]) {
        return "actix (actors, mailboxes)";
    }
    if has(&["tokio", "mio::"]) {
        return "tokio runtime";
    }
    if has(&[
        "malloc", "free", "realloc", "calloc", "_int_", "alloc::", "cfree", "memcpy", "memmove",
        "memset",
    ]) {
        return "allocator and memcpy";
    }
    if has(&["tracing", "prometheus", "metrics"]) {
        return "tracing and metrics";
    }
    if has(&["chrono"]) {
        return "time zones (chrono)";
    }
    if has(&["oneclick_actors", "oneclick::"]) {
        return "oneclick code";
    }
    if dso.contains("libc") {
        return "libc (other)";
    }
    "other"
}

fn report(data: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("perf")
        .arg("report")
        .arg("-i")
        .arg(data)
        .args(["--stdio", "--no-children", "-g", "none"])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()
}

/// `(percent, rest of the line)` of each sample line of a `perf report --stdio` text.
fn rows(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let l = l.trim();
            let (pct, rest) = l.split_once(char::is_whitespace)?;
            Some((
                pct.trim_end_matches('%').parse().ok()?,
                rest.trim().trim_end_matches(" -").trim_end().to_string(),
            ))
        })
        .collect()
}

fn trimmed(text: &str) -> String {
    text.lines()
        .map(|l| l.trim_end().trim_end_matches(" -").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `perf report` texts and returns a markdown summary of one recording.
pub fn summarize(data: &Path) -> Option<String> {
    let tids = std::fs::read_to_string(data.with_extension("tids")).unwrap_or_default();
    let base = data.with_extension("");
    let mut md = String::new();

    // The whole machine, by process name (oneclick's threads carry their own names).
    let by_comm = report(data, &["--sort", "comm"])?;
    let _ = std::fs::write(base.with_extension("machine.txt"), trimmed(&by_comm));
    let top: Vec<String> = rows(&by_comm)
        .into_iter()
        .take(10)
        .map(|(p, c)| format!("{c} {p:.1} %"))
        .collect();
    md.push_str(&format!(
        "machine-wide samples by thread name: {}\n\n",
        top.join(", ")
    ));

    // oneclick alone: components and threads.
    if !tids.is_empty() {
        let flat = report(
            data,
            &[
                "--tid",
                &tids,
                "--sort",
                "dso,symbol",
                "--percent-limit",
                "0",
            ],
        )?;
        let _ = std::fs::write(
            base.with_extension("oneclick-symbols.txt"),
            trimmed(&report(
                data,
                &[
                    "--tid",
                    &tids,
                    "--percentage",
                    "relative",
                    "--sort",
                    "dso,symbol",
                    "--percent-limit",
                    "0.2",
                ],
            )?),
        );
        let mut groups: std::collections::BTreeMap<&'static str, f64> = Default::default();
        let mut total = 0.0;
        for (pct, rest) in rows(&flat) {
            let mut parts = rest.split_whitespace();
            let dso = parts.next().unwrap_or("");
            let symbol: String = parts.collect::<Vec<_>>().join(" ");
            *groups.entry(component(dso, &symbol)).or_default() += pct;
            total += pct;
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by(|a, b| b.1.total_cmp(&a.1));
        md.push_str("| oneclick component | share of oneclick's samples |\n|---|---|\n");
        for (g, pct) in groups.iter().filter(|(_, p)| *p / total.max(1e-9) >= 0.005) {
            md.push_str(&format!(
                "| {g} | {:.1} % |\n",
                pct / total.max(1e-9) * 100.0
            ));
        }
        let threads = report(data, &["--tid", &tids, "--sort", "comm"])?;
        let t: Vec<String> = rows(&threads)
            .into_iter()
            .map(|(p, c)| format!("{c} {p:.1} %"))
            .collect();
        md.push_str(&format!("\noneclick's threads: {}\n", t.join(", ")));
    }

    // PostgreSQL's processes: their top symbols.
    let pg = report(
        data,
        &[
            "--comms",
            "postgres",
            "--percentage",
            "relative",
            "--sort",
            "dso,symbol",
            "--percent-limit",
            "0.2",
        ],
    )?;
    let _ = std::fs::write(base.with_extension("postgres-symbols.txt"), trimmed(&pg));
    let pg_rows = rows(&pg);
    if !pg_rows.is_empty() {
        let total: f64 = rows(&report(
            data,
            &[
                "--comms",
                "postgres",
                "--sort",
                "dso",
                "--percent-limit",
                "0",
            ],
        )?)
        .iter()
        .map(|r| r.0)
        .sum();
        let by_dso: Vec<String> = rows(&report(data, &["--comms", "postgres", "--sort", "dso"])?)
            .into_iter()
            .take(5)
            .map(|(p, d)| format!("{d} {:.0} %", p / total.max(1e-9) * 100.0))
            .collect();
        md.push_str(&format!(
            "\npostgres processes, by library: {}\n",
            by_dso.join(", ")
        ));
        let syms: Vec<String> = pg_rows
            .into_iter()
            .take(8)
            .map(|(p, s)| {
                format!(
                    "{} {p:.1} %",
                    s.split_whitespace().skip(2).collect::<Vec<_>>().join(" ")
                )
            })
            .collect();
        md.push_str(&format!("postgres top symbols: {}\n", syms.join("; ")));
    }
    Some(md)
}
