//! Baseline: **the plain one-transaction payment service** a user would write instead of
//! oneclick, run by `pgbench` on the same PostgreSQL server, at the same concurrency, with the
//! same connection URL (so the same transport: TCP with TLS when the URL's `sslmode=prefer`
//! finds it on, or a Unix socket), against the baseline's scratch database (oneclick's schema,
//! as many customers with one card each, bulk seeded).
//!
//! One payment is one transaction ([`script`]): lock the customer and read its card, read the
//! turnover when the merchant has limits, insert the approved order, count the card's use,
//! commit. `-M prepared` (a service prepares its statements, as oneclick's engine does), `-n`
//! (no vacuum of pgbench's own tables, which do not exist here), `-j` as many threads as cores.
//! pgbench's binary is the server's (`/usr/lib/postgresql/<v>/bin/pgbench`, not Debian's
//! wrapper, which picks a version by cluster). Latencies come from pgbench's per-transaction
//! log (`-l`), filtered to the same kind of window as every other loop here (the warm-up counted
//! from its first transaction, so connecting does not eat into it; then the transactions that
//! started and ended inside the measured window) and recorded in an HDR histogram; its CPU is
//! read from `/proc` over a window of the same length once its clients are connected, and
//! counted with the bench's. Payment replies are stored as `repeat('r', 380)`, oneclick's size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::load::{self, Measured, Window};
use crate::procfs::Probe;
use crate::stack::MERCHANT_ID;

/// The size of a stored payment reply (`baseline::RESULT_JSON`, about oneclick's). The script
/// stores that many bytes built by `repeat`: JSON's `:452739` would read as a pgbench variable.
const RESULT_LEN: usize = 380;

/// pgbench: `explicit` (ONECLICK_BENCH_PGBENCH), else the newest server's
/// `/usr/lib/postgresql/<v>/bin/pgbench`, else `pgbench` on PATH.
pub fn find(explicit: Option<&str>) -> Option<PathBuf> {
    if let Some(p) = explicit.filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin/pgbench");
                    bin.is_file().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let on_path = Command::new("pgbench")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    on_path.then(|| PathBuf::from("pgbench"))
}

/// The plain payment, one transaction, as a pgbench script. Customers `:lo`..`:hi` (their ids
/// are contiguous in the freshly seeded scratch database); `:run` keeps order numbers distinct
/// across runs on one database. Written down in docs/performance.md.
pub fn script(limits: bool) -> String {
    // No `::` casts and no colons in literals: pgbench reads `:name` anywhere as a variable.
    let now = "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS bigint)";
    let mut s = String::new();
    s.push_str("\\set cid random(:lo, :hi)\n");
    s.push_str("\\set n random(1, 1000000000000)\n");
    s.push_str("BEGIN;\n");
    s.push_str(
        "SELECT k.id AS card_id FROM customers c JOIN cards k ON k.customer_id = c.id \
         WHERE c.id = :cid AND NOT c.fraud AND k.state = 'active' FOR UPDATE OF c, k \\gset\n",
    );
    if limits {
        s.push_str(&format!(
            "SELECT coalesce(sum(amount), 0) AS turnover FROM orders WHERE customer_id = :cid \
             AND currency = 'RUB' AND counts_for_limits AND created_at >= {now} - 604800000;\n"
        ));
    }
    s.push_str(&format!(
        "INSERT INTO orders (merchant_id, order_number, kind, customer_id, card_id, amount, \
         currency, state, response_code, counts_for_limits, request_digest, result_json, \
         created_at, updated_at) VALUES ({MERCHANT_ID}, 'pgb' || CAST(:run AS text) || '-' || CAST(:client_id AS text) || '-' || CAST(:n AS text), \
         'saved_card', :cid, :card_id, 100, 'RUB', 'Approved', 'AS000', true, \
         decode(repeat('07', 32), 'hex'), repeat('r', {RESULT_LEN}), {now}, {now}) \
         ON CONFLICT DO NOTHING;\n"
    ));
    s.push_str(&format!(
        "UPDATE cards SET success_count = success_count + 1, last_used_at = {now} WHERE id = :card_id;\n"
    ));
    s.push_str("END;\n");
    s
}

/// One pgbench window at `concurrency` clients.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    bin: &Path,
    url: &str,
    (lo, hi): (i64, i64),
    concurrency: usize,
    limits: bool,
    run_tag: u64,
    dir: &Path,
    window: Window,
    probe: &Probe,
    label: &str,
) -> anyhow::Result<Measured> {
    let script_path = dir.join(format!(
        "pgbench-limits-{}.sql",
        if limits { "on" } else { "off" }
    ));
    std::fs::write(&script_path, script(limits))?;
    let prefix = dir.join(format!("pgbench-{run_tag}"));
    let err_path = dir.join(format!("stderr-of-pgbench-{run_tag}.txt"));
    let threads = concurrency
        .min(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    // Connecting (TLS handshakes) takes a while at high concurrency on a busy machine: the
    // window is placed after pgbench's first transaction (from its log), and pgbench runs long
    // enough for it.
    let total = (window.warmup + window.duration).as_secs_f64().ceil() as u64 + 3;
    let spawned_at = Instant::now();
    let mut child = Command::new(bin)
        .args(["-n", "-M", "prepared", "-l"])
        .arg(format!("--log-prefix={}", prefix.display()))
        .args(["-c", &concurrency.to_string(), "-j", &threads.to_string()])
        .args(["-T", &total.to_string()])
        .args(["-D", &format!("lo={lo}"), "-D", &format!("hi={hi}")])
        .args(["-D", &format!("run={run_tag}")])
        .arg("-f")
        .arg(&script_path)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    eprintln!(
        "  {label:<34} pgbench -c {concurrency} -j {threads} -T {total} (warm-up {:.1} s after its first transaction)",
        window.warmup.as_secs_f64()
    );
    let mut probe = probe.clone();
    probe.client = Some(child.id());
    // CPU: the same length of window, once the clients are surely connected.
    let measure_start = spawned_at + window.warmup + std::time::Duration::from_millis(1000);
    let measure_end = measure_start + window.duration;
    let cpu = load::observe_window(&probe, measure_start, measure_end, None, label).await;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let logs = logs_of(&prefix)?;
    let mut txs = Vec::new();
    for log in &logs {
        let text = std::fs::read_to_string(log)?;
        txs.extend(text.lines().filter_map(parse_line));
        let _ = std::fs::remove_file(log);
    }
    let Some(first) = txs.iter().map(Tx::began).min() else {
        bail!("pgbench logged no transaction; stderr: {}", tail(&err));
    };
    // The window in pgbench's clock (epoch microseconds).
    let start_us = first + window.warmup.as_micros() as i128;
    let end_us = start_us + window.duration.as_micros() as i128;
    let mut hist = load::histogram();
    let mut ok = 0u64;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for tx in txs {
        match tx {
            Tx::Done {
                latency_us,
                end_us: end,
            } => {
                if end - latency_us as i128 >= start_us && end <= end_us {
                    hist.saturating_record(latency_us);
                    ok += 1;
                }
            }
            Tx::Failed { end_us: end } => {
                if end >= start_us && end <= end_us {
                    *errors
                        .entry("pgbench: failed transaction".into())
                        .or_default() += 1;
                }
            }
        }
    }
    if !status.success() {
        *errors
            .entry(format!("pgbench exited with {status}: {}", tail(&err)))
            .or_default() += 1;
    }
    Ok(load::measured_from(hist, ok, errors, window, cpu))
}

fn tail(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .last()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

/// pgbench's log files for `prefix`: `<prefix>.<pid>` and `<prefix>.<pid>.<thread>`.
fn logs_of(prefix: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = prefix.parent().context("log prefix without a folder")?;
    let stem = prefix
        .file_name()
        .and_then(|s| s.to_str())
        .context("log prefix")?
        .to_string();
    Ok(std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|s| s.to_str())
                .is_some_and(|n| n.starts_with(&format!("{stem}.")))
        })
        .collect())
}

#[derive(Debug, PartialEq)]
enum Tx {
    Done { latency_us: u64, end_us: i128 },
    Failed { end_us: i128 },
}

impl Tx {
    fn began(&self) -> i128 {
        match self {
            Tx::Done { latency_us, end_us } => end_us - *latency_us as i128,
            Tx::Failed { end_us } => *end_us,
        }
    }
}

/// A line of pgbench's per-transaction log:
/// `client_id transaction_no time script_no time_epoch time_us [...]`, where `time` is the
/// transaction's latency in µs (or `failed` / `skipped`) and `time_epoch.time_us` its end.
fn parse_line(line: &str) -> Option<Tx> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (time, epoch, us) = (f.get(2)?, f.get(4)?, f.get(5)?);
    let end_us = epoch.parse::<i128>().ok()? * 1_000_000 + us.parse::<i128>().ok()?;
    match time.parse::<u64>() {
        Ok(latency_us) => Some(Tx::Done { latency_us, end_us }),
        Err(_) if *time == "failed" => Some(Tx::Failed { end_us }),
        Err(_) => None,
    }
}

/// Customer id range of a freshly seeded database: (lowest, highest); the ids must be
/// contiguous for the script's `random(:lo, :hi)`.
pub fn id_range(ids: &[(i64, i64)]) -> anyhow::Result<(i64, i64)> {
    let lo = ids.iter().map(|i| i.0).min().context("no customers")?;
    let hi = ids.iter().map(|i| i.0).max().context("no customers")?;
    if (hi - lo + 1) as usize != ids.len() {
        bail!(
            "customer ids {lo}..{hi} are not contiguous ({} customers)",
            ids.len()
        );
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_give_latency_and_end_time() {
        assert_eq!(
            parse_line("3 17 2481 0 1765073000 123456"),
            Some(Tx::Done {
                latency_us: 2481,
                end_us: 1_765_073_000_123_456
            })
        );
        assert_eq!(
            parse_line("0 5 failed 0 1765073000 5"),
            Some(Tx::Failed {
                end_us: 1_765_073_000_000_005
            })
        );
        assert_eq!(parse_line("0 5 skipped 0 1765073000 5"), None);
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn the_script_reads_the_turnover_only_with_limits() {
        let on = script(true);
        let off = script(false);
        assert!(on.contains("sum(amount)") && !off.contains("sum(amount)"));
        for s in [&on, &off] {
            assert!(
                !s.contains("::"),
                "pgbench would read `:name` in a cast as a variable"
            );
            assert!(s.contains("FOR UPDATE OF c, k \\gset"));
            assert!(s.contains("INSERT INTO orders") && s.contains("UPDATE cards"));
            assert!(s.starts_with("\\set cid random(:lo, :hi)"));
            assert_eq!(s.matches(";\n").count(), if s == &on { 5 } else { 4 });
        }
        assert_eq!(id_range(&[(3, 9), (4, 10), (5, 11)]).ok(), Some((3, 5)));
        assert!(id_range(&[(3, 9), (5, 11)]).is_err());
    }
}
