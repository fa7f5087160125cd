//! What the processes cost, read from `/proc`: CPU time (utime + stime of `/proc/<pid>/stat`,
//! all threads included), resident memory (`VmRSS` of `/proc/<pid>/status`), and the machine's
//! busy time (`/proc/stat`) so CPU taken by other work on the shared machine shows up too.
//!
//! PostgreSQL is best effort: its CPU is the sum over the postmaster and those of its children
//! that work for the measured database: client backends whose process title names it, and the
//! shared auxiliary processes (WAL writer, checkpointer, background writer, launchers), present
//! at the end of the window, minus what the same pids had at its start. Backends of other
//! databases on the same cluster (other test suites) are left out, so their CPU lands in the
//! "other" column (machine busy minus everything attributed); a backend that exits inside the
//! window loses its share; the auxiliary processes also serve other databases a little.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux when it cannot be asked).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// Numeric fields of `/proc/<pid>/stat` after the command name (whose parentheses may hold
/// spaces) and the state letter: index 0 is field 4 (ppid), utime (field 14) is 10, stime 11.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .collect(),
    )
}

/// CPU ticks (user + system) a process has used so far.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(10)? + f.get(11)?)
}

fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.first().map(|p| *p as u32)
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Busy ticks of the whole machine (all CPUs: everything but idle and iowait).
pub fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let total: u64 = v.iter().take(8).sum();
    Some(total - v.get(3)? - v.get(4)?)
}

/// Whether a PostgreSQL child process (by its title, `postgres: 15/main: user db host(port) …`)
/// works for `database`: its client backends and autovacuum workers name it; auxiliary
/// processes (`walwriter`, `checkpointer`…) name no database and serve all.
pub fn serves_database(title: &str, database: &str) -> bool {
    let names_it = title.split_whitespace().any(|w| w == database);
    let per_database =
        title.contains('(') || title.contains("[local]") || title.contains("autovacuum worker");
    names_it || !per_database
}

/// CPU ticks of the postmaster and its children serving `database`, by pid.
fn postgres_ticks(postmaster: u32, database: &str) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    if let Some(t) = cpu_ticks(postmaster) {
        out.insert(postmaster, t);
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if ppid(pid) != Some(postmaster) {
                continue;
            }
            let title = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            if serves_database(&title, database) {
                if let Some(t) = cpu_ticks(pid) {
                    out.insert(pid, t);
                }
            }
        }
    }
    out
}

/// The pid of the PostgreSQL postmaster: first line of `<data_directory>/postmaster.pid` when
/// readable, else the oldest process named `postgres`.
pub fn postmaster_pid(data_directory: Option<&str>) -> Option<u32> {
    if let Some(dir) = data_directory {
        if let Ok(text) = std::fs::read_to_string(Path::new(dir).join("postmaster.pid")) {
            if let Some(pid) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                return Some(pid);
            }
        }
    }
    let out = std::process::Command::new("pgrep")
        .args(["-o", "-x", "postgres"])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// The processes whose CPU a run reports.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub oneclick: Option<u32>,
    pub nats: Option<u32>,
    /// The PostgreSQL postmaster and the database whose backends are summed.
    pub postgres: Option<(u32, String)>,
    /// A load-generating child process (pgbench), counted with the bench's own CPU.
    pub client: Option<u32>,
}

/// A reading of every source, in ticks.
#[derive(Debug, Clone)]
pub struct Reading {
    oneclick: Option<u64>,
    nats: Option<u64>,
    postgres: Option<HashMap<u32, u64>>,
    bench: Option<u64>,
    client: Option<u64>,
    machine: Option<u64>,
}

/// CPU seconds used in a window, per process group.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CpuSeconds {
    pub oneclick: Option<f64>,
    pub nats: Option<f64>,
    /// PostgreSQL cluster (best effort; None for SQLite, which runs inside oneclick).
    pub database: Option<f64>,
    /// This load generator (and, for the NATS baseline, its echo responder; for the pgbench
    /// baseline, pgbench).
    pub bench: Option<f64>,
    /// The whole machine's busy CPU time.
    pub machine: Option<f64>,
    /// Machine busy time not attributed to any of the above (other work on the machine).
    pub other: Option<f64>,
}

impl Probe {
    pub fn read(&self) -> Reading {
        Reading {
            oneclick: self.oneclick.and_then(cpu_ticks),
            nats: self.nats.and_then(cpu_ticks),
            postgres: self
                .postgres
                .as_ref()
                .map(|(pid, db)| postgres_ticks(*pid, db)),
            bench: cpu_ticks(std::process::id()),
            client: self.client.and_then(cpu_ticks),
            machine: machine_busy_ticks(),
        }
    }

    pub fn between(&self, a: &Reading, b: &Reading) -> CpuSeconds {
        let tck = clk_tck();
        let d = |x: Option<u64>, y: Option<u64>| match (x, y) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x) as f64 / tck),
            _ => None,
        };
        let database = match (&a.postgres, &b.postgres) {
            (Some(x), Some(y)) => {
                let ticks: u64 = y
                    .iter()
                    .map(|(pid, t)| t.saturating_sub(*x.get(pid).unwrap_or(&0)))
                    .sum();
                Some(ticks as f64 / tck)
            }
            _ => None,
        };
        let mut out = CpuSeconds {
            oneclick: d(a.oneclick, b.oneclick),
            nats: d(a.nats, b.nats),
            database,
            bench: d(a.bench, b.bench).map(|own| own + d(a.client, b.client).unwrap_or(0.0)),
            machine: d(a.machine, b.machine),
            other: None,
        };
        out.other = out.machine.map(|m| {
            let ours: f64 = [out.oneclick, out.nats, out.database, out.bench]
                .iter()
                .flatten()
                .sum();
            (m - ours).max(0.0)
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_processes_are_attributed_to_their_database() {
        let db = "oneclick_bench_1_postgres_main";
        assert!(serves_database(
            &format!("postgres: 15/main: postgres {db} 127.0.0.1(5000) idle"),
            db
        ));
        assert!(!serves_database(
            "postgres: 15/main: postgres other_test 127.0.0.1(5001) idle",
            db
        ));
        assert!(serves_database("postgres: 15/main: walwriter", db));
        assert!(serves_database("postgres: 15/main: checkpointer", db));
        assert!(!serves_database(
            "postgres: 15/main: autovacuum worker other_test",
            db
        ));
        assert!(serves_database(
            &format!("postgres: 15/main: autovacuum worker {db}"),
            db
        ));
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(rss_kib(me).unwrap_or(0) > 0);
        assert!(machine_busy_ticks().is_some());
    }
}
