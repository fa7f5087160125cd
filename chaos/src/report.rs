//! What every run leaves behind in its `--out` folder:
//!
//! - `history.jsonl`: one line per thing the load generator attempted and per acknowledgement it
//!   received (and per fault injected), with a monotonic timestamp in ms;
//! - `summary.json` and the table printed at the end: the figures (counts, faults injected,
//!   redeliveries, duplicates, reconnects, retries, timings) and the checks (lost, unexpected,
//!   duplicated, … with what was expected), in the vocabulary of docs/reliability.md.

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

pub struct History {
    out: Mutex<BufWriter<std::fs::File>>,
    began: Instant,
}

impl History {
    pub fn create(path: &Path) -> anyhow::Result<History> {
        Ok(History {
            out: Mutex::new(BufWriter::new(std::fs::File::create(path)?)),
            began: Instant::now(),
        })
    }

    /// Milliseconds since the history began (the `t_ms` clock).
    pub fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    /// Appends `{"t_ms": …, …event}`.
    pub fn record(&self, mut event: Value) {
        if let Some(o) = event.as_object_mut() {
            o.insert(
                "t_ms".into(),
                json!(self.began.elapsed().as_millis() as u64),
            );
        }
        if let Ok(mut w) = self.out.lock() {
            let _ = serde_json::to_writer(&mut *w, &event);
            let _ = w.write_all(b"\n");
        }
    }

    pub fn flush(&self) {
        if let Ok(mut w) = self.out.lock() {
            let _ = w.flush();
        }
    }
}

pub struct Check {
    pub name: String,
    pub expected: String,
    pub actual: String,
    pub pass: bool,
}

pub struct Report {
    pub scenario: String,
    pub short: bool,
    pub out: PathBuf,
    pub started: chrono::DateTime<chrono::Utc>,
    began: Instant,
    pub figures: Vec<(String, Value)>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, short: bool, out: &Path) -> Report {
        Report {
            scenario: scenario.to_string(),
            short,
            out: out.to_path_buf(),
            started: chrono::Utc::now(),
            began: Instant::now(),
            figures: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn figure(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.figures.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value,
            None => self.figures.push((name.to_string(), value)),
        }
    }

    /// A check that a count is exactly `expected`.
    pub fn expect_eq(&mut self, name: &str, actual: i64, expected: i64) {
        self.checks.push(Check {
            name: name.into(),
            expected: format!("= {expected}"),
            actual: actual.to_string(),
            pass: actual == expected,
        });
    }

    /// A check that a count is at least `min`.
    pub fn expect_at_least(&mut self, name: &str, actual: i64, min: i64) {
        self.checks.push(Check {
            name: name.into(),
            expected: format!("≥ {min}"),
            actual: actual.to_string(),
            pass: actual >= min,
        });
    }

    pub fn expect(&mut self, name: &str, pass: bool, expected: &str, actual: impl ToString) {
        self.checks.push(Check {
            name: name.into(),
            expected: expected.into(),
            actual: actual.to_string(),
            pass,
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("note: {text}");
        self.notes.push(text);
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }

    /// Prints the summary table and writes `summary.json`; returns whether every check passed.
    pub fn finish(&mut self) -> anyhow::Result<bool> {
        self.figure(
            "duration_s",
            (self.began.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        );
        let machine = machine();
        let summary = json!({
            "scenario": self.scenario,
            "short": self.short,
            "started": self.started.to_rfc3339(),
            "machine": machine,
            "passed": self.passed(),
            "figures": self.figures.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<serde_json::Map<_, _>>(),
            "checks": self.checks.iter().map(|c| json!({"name": c.name, "expected": c.expected, "actual": c.actual, "pass": c.pass})).collect::<Vec<_>>(),
            "notes": self.notes,
        });
        std::fs::write(
            self.out.join("summary.json"),
            serde_json::to_vec_pretty(&summary)?,
        )?;
        let width = self
            .figures
            .iter()
            .map(|(k, _)| k.len())
            .chain(self.checks.iter().map(|c| c.name.len()))
            .max()
            .unwrap_or(10)
            .max(10);
        println!();
        println!(
            "== {} {} — {} — {} ==",
            self.scenario,
            if self.short { "(short)" } else { "(full)" },
            self.started.format("%Y-%m-%d %H:%M UTC"),
            machine["summary"].as_str().unwrap_or("")
        );
        println!("{:<width$}  value", "figure");
        for (k, v) in &self.figures {
            println!(
                "{k:<width$}  {}",
                match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            );
        }
        println!();
        println!(
            "{:<width$}  {:<12}  {:<12}  result",
            "check", "expected", "actual"
        );
        for c in &self.checks {
            println!(
                "{:<width$}  {:<12}  {:<12}  {}",
                c.name,
                c.expected,
                c.actual,
                if c.pass { "ok" } else { "FAILED" }
            );
        }
        for n in &self.notes {
            println!("note: {n}");
        }
        println!(
            "{}: {} (details: {})",
            self.scenario,
            if self.passed() { "PASSED" } else { "FAILED" },
            self.out.display()
        );
        Ok(self.passed())
    }
}

/// Host, CPU model and count, memory, the oneclick git revision, NATS and PostgreSQL versions.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0).round())
        .unwrap_or(0.0);
    let host = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let git = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({
        "host": host, "cpu": model, "cpus": cpus, "memory_gb": mem_gb, "git": git,
        "nats_server": crate::procs::Nats::version(),
        "summary": format!("{cpus} × {model}, {mem_gb} GB"),
    })
}
