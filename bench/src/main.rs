//! `oneclick-bench`: how fast oneclick is, next to the limits of the same machine in the same run.
//!
//! It starts everything it measures (a private nats-server, a fresh PostgreSQL database or SQLite
//! file, the release `oneclick` binary with the demo merchant), seeds customers with saved cards,
//! then drives oneclick over NATS exactly as gateways and merchants do (JSON on the subjects of
//! `docs/protocol.md`) with closed-loop requesters, and measures the baselines: raw NATS
//! request-reply to an echo responder, and the database doing a payment's writes in one
//! transaction per payment. Results: a table, `results.json`, `plot.svg` and `report.txt` under
//! `results/<timestamp>/`; the ratios against issue 5's targets. `docs/performance.md` says how
//! to run each measurement and what the figures were.
//!
//! Layout: `args` (options), `stack` (processes and databases), `scenario` (requests, judging
//! replies), `seed`/`bulk_seed` (customers), `load` (the closed loop), `baseline` (echo and
//! database loops), `procfs` (CPU and RSS), `profile` (perf), `memory` (RSS per actor, growth),
//! `report`/`plot` (output), `rng` (key skew).

mod args;
mod baseline;
mod bulk_seed;
mod load;
mod memory;
mod plot;
mod procfs;
mod profile;
mod report;
mod rng;
mod scenario;
mod seed;
mod stack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser as _;

use args::{Args, SeedMode};
use load::Window;
use procfs::Probe;
use profile::Profiler;
use report::Record;
use rng::KeyPicker;
use scenario::{Builder, Customer, Request, Scenario};
use stack::{BackendKind, Database, NatsServer, OneClick, Tools};

fn main() -> ExitCode {
    let args = Args::parse().normalized();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oneclick-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("oneclick-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What every mode shares.
pub struct Env {
    pub args: Args,
    pub tools: Tools,
    pub out: PathBuf,
    pub scratch: PathBuf,
    pub nats: NatsServer,
    pub clients: Vec<async_nats::Client>,
    /// Short random id that keeps order numbers unique across the run's points.
    pub run_id: String,
    pub profiler_ok: bool,
    pub notes: Vec<String>,
    points: usize,
}

impl Env {
    pub fn window(&self) -> Window {
        Window {
            warmup: Duration::from_secs_f64(self.args.warmup),
            duration: Duration::from_secs_f64(self.args.duration),
        }
    }

    /// A fresh order-number tag for the next measured point.
    pub fn next_tag(&mut self) -> String {
        self.points += 1;
        format!("{}{}", self.run_id, self.points)
    }

    pub fn clients_for(&self, concurrency: usize) -> &[async_nats::Client] {
        &self.clients[..self.clients.len().min(concurrency).max(1)]
    }

    pub fn probe(&self, app: Option<&OneClick>, db: &Database) -> Probe {
        Probe {
            oneclick: app.and_then(|a| a.pid()),
            nats: Some(self.nats.pid()),
            postgres: db.pg_name().and_then(|name| {
                procfs::postmaster_pid(db.data_directory.as_deref())
                    .map(|pid| (pid, name.to_string()))
            }),
        }
    }

    pub fn profiler(&self, app: &OneClick) -> Option<Profiler> {
        (self.profiler_ok)
            .then(|| {
                app.pid().map(|pid| Profiler {
                    pid,
                    dir: self.out.join("profile"),
                })
            })
            .flatten()
    }

    /// A fresh database and a prepared (not started) oneclick on it.
    pub fn prepare(&self, backend: BackendKind, tag: &str) -> anyhow::Result<(Database, OneClick)> {
        let mut db = Database::create(backend, &self.tools, &self.scratch, tag)?;
        db.keep = self.args.keep;
        let app = OneClick::prepare(
            &self.tools,
            &self.scratch,
            &self.out,
            tag,
            &self.nats.url(),
            &db,
            self.args.simulator_latency_ms,
        )?;
        Ok((db, app))
    }

    /// Requester factories of a scenario over `customers`.
    pub fn makers(
        &mut self,
        scenario: Scenario,
        customers: &Arc<Vec<Customer>>,
        concurrency: usize,
    ) -> Vec<Box<dyn FnMut() -> Request + Send>> {
        let picker = Arc::new(KeyPicker::new(customers.len(), self.args.skew));
        let key = scenario::signature_key();
        let tag = self.next_tag();
        (0..concurrency)
            .map(|w| {
                let mut b = Builder::new(
                    scenario,
                    customers.clone(),
                    picker.clone(),
                    key.clone(),
                    &tag,
                    w,
                );
                Box::new(move || b.next()) as Box<dyn FnMut() -> Request + Send>
            })
            .collect()
    }
}

pub async fn bulk_seed(
    database_url: &str,
    keys_file: &Path,
    n: usize,
) -> anyhow::Result<bulk_seed::Seeded> {
    let (url, keys) = (database_url.to_string(), keys_file.to_path_buf());
    tokio::task::spawn_blocking(move || bulk_seed::bulk(&url, &keys, 0, n)).await?
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(chrono::Local::now().format("%Y%m%d-%H%M%S").to_string())
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // Databases and stores live under the results folder (the repository's disk, not a tmpfs).
    let scratch = out.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let tools = Tools {
        oneclick_bin: args.oneclick_bin.clone(),
        nats_server_bin: args.nats_server.clone(),
        pg_admin_url: args.database_url.clone(),
        oneclick_env: args.oneclick_env.clone(),
    };
    if !tools.oneclick_bin.is_file() {
        bail!("{} not found: build it first (cargo build --release -p oneclick, or use scripts/bench)", tools.oneclick_bin.display());
    }
    let nats = NatsServer::start(&tools.nats_server_bin, &scratch)?;
    let mut clients = Vec::new();
    for _ in 0..args.connections.clamp(1, args.max_concurrency().max(1)) {
        clients.push(
            async_nats::ConnectOptions::new()
                .request_timeout(Some(Duration::from_secs(10)))
                .custom_inbox_prefix(stack::BENCH_INBOX_PREFIX)
                .connect(nats.url())
                .await
                .context("connecting to the private nats-server")?,
        );
    }
    let mut notes = Vec::new();
    let profiler_ok = args.profile && Profiler::available();
    if args.profile && !profiler_ok {
        notes.push(
            "--profile: `perf record -e cpu-clock` does not work here; no profile".to_string(),
        );
    }
    let run_id: String = {
        let mut r = rng::Rng::new(
            std::process::id() as u64
                ^ chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64,
        );
        (0..4).map(|_| (b'a' + r.below(26) as u8) as char).collect()
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    // Other work on the machine lowers every figure: say so when there was some.
    let busy = {
        let a = procfs::machine_busy_ticks();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = procfs::machine_busy_ticks();
        a.zip(b)
            .map(|(a, b)| (b.saturating_sub(a)) as f64 / procfs::clk_tck())
    };
    if let Some(cores) = busy.filter(|c| *c > 0.25) {
        let msg = format!("before the run, other work kept {cores:.2} of {} cores busy: figures are lower than on an idle machine", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0));
        eprintln!("warning: {msg}");
        notes.push(msg);
    }
    let mut env = Env {
        args,
        tools,
        out: out.clone(),
        scratch: scratch.clone(),
        nats,
        clients,
        run_id,
        profiler_ok,
        notes,
        points: 0,
    };

    let mut records = Vec::new();
    let mut ratios = Vec::new();
    let mut memory_results = Vec::new();
    if env.args.memory {
        let (value, ratio) = memory::memory(&mut env).await?;
        memory_results.push(value);
        ratios.push(ratio);
    }
    if env.args.actor_sweep > 0 {
        let (value, ratio) = memory::actor_sweep(&mut env).await?;
        memory_results.push(value);
        ratios.push(ratio);
    }
    if !env.args.growth.is_empty() {
        let (recs, rats) = memory::growth(&mut env).await?;
        records.extend(recs);
        ratios.extend(rats);
    }
    if !env.args.memory && env.args.growth.is_empty() && env.args.actor_sweep == 0 {
        records.extend(sweep(&mut env).await?);
        let backends: Vec<String> = env
            .args
            .backend
            .iter()
            .map(|b| b.as_str().to_string())
            .collect();
        ratios.splice(0..0, report::ratios(&records, &backends));
    }

    // Report.
    let mut text = String::new();
    text.push_str(&format!(
        "oneclick-bench — {}\n",
        chrono::Local::now().format("%Y-%m-%d %H:%M")
    ));
    if !records.is_empty() {
        text.push_str(&format!(
            "{} customers ({} seeded), skew {}, {} s windows after {} s warm-up, simulator latency {} ms, {} NATS connection(s)\n\n",
            env.args.customers,
            match env.args.seed {
                SeedMode::Commands => "gw.pay-",
                SeedMode::Bulk => "bulk-",
            },
            env.args.skew,
            env.args.duration,
            env.args.warmup,
            env.args.simulator_latency_ms,
            env.clients.len()
        ));
    }
    if !records.is_empty() {
        text.push_str(&report::table(&records));
    }
    if !ratios.is_empty() {
        text.push_str("\nissue 5 targets (ratios measured in this run):\n");
        text.push_str(&report::ratio_table(&ratios));
    }
    for v in &memory_results {
        text.push_str(&format!("\nmemory: {}\n", serde_json::to_string_pretty(v)?));
    }
    if env.profiler_ok {
        let md = profile_summaries(&env.out.join("profile"));
        if !md.is_empty() {
            std::fs::write(env.out.join("profile.md"), &md)?;
            text.push_str(
                "\nwhere oneclick's CPU goes (perf, see profile.md and profile/*.txt):\n",
            );
            text.push_str(&md);
        }
    }
    // The smoke test is about oneclick: a baseline's error (SQLite's "database is locked" when
    // its writers pile up) is reported but does not fail the run.
    let errors: u64 = records
        .iter()
        .filter(|r| r.group.starts_with("oneclick") || r.group == "growth")
        .map(|r| r.errors_anywhere)
        .sum();
    let (other, secs) = records.iter().fold((0.0, 0.0), |(o, s), r| {
        (o + r.cpu_seconds.other.unwrap_or(0.0), s + r.window_secs)
    });
    if secs > 0.0 {
        env.notes.push(format!(
            "during the measured windows, work outside this benchmark (builds, other tests) used {:.2} cores on average (column `other`)",
            other / secs
        ));
    }
    env.notes.push(format!(
        "total wall time {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    for n in &env.notes {
        text.push_str(&format!("note: {n}\n"));
    }
    println!("\n{text}");
    std::fs::write(out.join("report.txt"), &text)?;
    let results = report::Results {
        date: chrono::Local::now().to_rfc3339(),
        machine: report::machine_info(&env.tools.nats_server_bin, &env.tools.oneclick_bin),
        command,
        records: records.clone(),
        ratios,
        memory: memory_results,
        notes: env.notes.clone(),
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&results)?,
    )?;
    if let Some(svg) = plot::svg(
        &records,
        "oneclick vs the machine's limits: throughput and p99 against concurrency",
    ) {
        std::fs::write(out.join("plot.svg"), svg)?;
    }
    if !env.args.keep {
        drop(env.nats);
        let _ = std::fs::remove_dir_all(&scratch);
    }
    println!(
        "results in {}/ (report.txt, results.json, plot.svg)",
        out.display()
    );
    if errors > 0 {
        eprintln!(
            "{errors} request(s) to oneclick failed (warm-up included); see the table's error list"
        );
        if env.args.short {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn profile_summaries(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "data"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut md = String::new();
    for f in files {
        if let Some(summary) = profile::summarize(&f) {
            md.push_str(&format!(
                "\n### {}\n\n{summary}",
                f.file_stem().and_then(|s| s.to_str()).unwrap_or("")
            ));
        }
    }
    md
}

/// The main measurement, per backend: oneclick seeded; then for each concurrency, every scenario
/// and right after them the baselines at the same concurrency (database transaction loop, NATS
/// echo with the scenarios' payload sizes), so that a change of background load on the shared
/// machine hits both sides of a ratio alike; then the paced half-peak run. The disk's fsync
/// latency is measured at the start and the end.
async fn sweep(env: &mut Env) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    let window = env.window();
    let backends = env.args.backend.clone();
    let scenarios = env.args.scenario.clone();
    let conc = env.args.concurrency.clone();
    let baselines = !env.args.no_baselines;
    if baselines {
        records.push(fsync_probe(env, "start").await?);
    }
    let echo = if baselines {
        Some(baseline::Echo::start(&env.nats.url()).await?)
    } else {
        None
    };
    for backend in backends {
        let b = backend.as_str();
        eprintln!("== {b}: preparing the database, keys, demo merchant and oneclick");
        let (db, mut app) = env.prepare(backend, &format!("{b}-main"))?;
        let customers = match env.args.seed {
            SeedMode::Bulk => {
                let seeded = bulk_seed(&db.url, &app.keys_file, env.args.customers).await?;
                app.start(&env.clients[0]).await?;
                seeded.customers
            }
            SeedMode::Commands => {
                app.start(&env.clients[0]).await?;
                seed::by_commands(&env.clients, env.args.customers, 32).await?
            }
        };
        let customers = Arc::new(customers);
        let probe = env.probe(Some(&app), &db);
        let profiler = env.profiler(&app);
        // The database baseline's scratch database: same schema, same number of customers.
        let base = if baselines {
            eprintln!("== {b}: scratch database for the baseline (one transaction per payment)");
            let (sdb, base_app) = env.prepare(backend, &format!("{b}-baseline"))?;
            let seeded = bulk_seed(&sdb.url, &base_app.keys_file, customers.len()).await?;
            let picker = Arc::new(KeyPicker::new(seeded.ids.len(), env.args.skew));
            let probe = env.probe(None, &sdb);
            Some((sdb, Arc::new(seeded.ids), picker, probe))
        } else {
            None
        };
        for &c in &conc {
            let mut sizes: BTreeMap<Scenario, (f64, f64)> = BTreeMap::new();
            for &scenario in &scenarios {
                let label = format!("{b} {} c={c}", scenario.as_str());
                let makers = env.makers(scenario, &customers, c);
                let before = app.group_commit();
                let m = load::run_nats(
                    &label,
                    env.clients_for(c),
                    makers,
                    window,
                    None,
                    &probe,
                    profiler.as_ref(),
                )
                .await?;
                env.notes
                    .extend(group_commit_note(&label, before, app.group_commit()));
                sizes.insert(scenario, (m.request_bytes, m.reply_bytes));
                records.push(Record::new(
                    "oneclick",
                    Some(b),
                    scenario.as_str(),
                    c,
                    customers.len(),
                    &m,
                ));
            }
            if let Some((sdb, ids, picker, probe)) = &base {
                let tag = env.next_tag();
                let label = format!("{b} database payment-tx c={c}");
                let url = sdb.url.clone();
                let mut m = load::run_threads(&label, c, window, probe, |w| {
                    baseline::db_worker(&url, ids.clone(), picker.clone(), &tag, w)
                })
                .await?;
                if backend == BackendKind::Sqlite {
                    // SQLite runs inside the baseline's own threads.
                    m.cpu.database = m.cpu.bench;
                }
                records.push(Record::new(
                    "db-baseline",
                    Some(b),
                    "payment-tx",
                    c,
                    ids.len(),
                    &m,
                ));
                if c > 1 {
                    // The database's own group-commit ceiling with as many payments in flight:
                    // groups of up to 16 (SQLite: one writer, one group of c).
                    let workers = if backend == BackendKind::Sqlite {
                        1
                    } else {
                        (c / 16).max(1)
                    };
                    let group = (c / workers).max(1);
                    let tag = env.next_tag();
                    let label = format!("{b} database {group} per tx ×{workers} c={c}");
                    let mut m = load::run_threads(&label, workers, window, probe, |w| {
                        baseline::db_group_worker(&url, ids.clone(), workers, group, &tag, w)
                    })
                    .await?;
                    if backend == BackendKind::Sqlite {
                        m.cpu.database = m.cpu.bench;
                    }
                    // One call is one transaction of `group` payments.
                    m.ok *= group as u64;
                    records.push(Record::new(
                        "db-grouped",
                        Some(b),
                        "payment-tx grouped",
                        c,
                        ids.len(),
                        &m,
                    ));
                }
            }
            if let Some(echo) = &echo {
                let mut kinds: Vec<Scenario> = [Scenario::TokenList, Scenario::PayToken]
                    .into_iter()
                    .filter(|s| sizes.contains_key(s))
                    .collect();
                if kinds.is_empty() {
                    kinds.extend(sizes.keys().next().copied());
                }
                for kind in kinds {
                    let Some(&(req_len, reply_len)) = sizes.get(&kind) else {
                        continue;
                    };
                    echo.set_reply(baseline::filler(reply_len.round() as usize));
                    let probe = Probe {
                        oneclick: None,
                        nats: Some(env.nats.pid()),
                        postgres: None,
                    };
                    let body = baseline::filler(req_len.round() as usize);
                    let label = format!("nats echo ({} size) c={c}", kind.as_str());
                    let makers = (0..c)
                        .map(|_| {
                            let body = body.clone();
                            Box::new(move || baseline::echo_request(body.clone()))
                                as Box<dyn FnMut() -> Request + Send>
                        })
                        .collect();
                    let m = load::run_nats(
                        &label,
                        env.clients_for(c),
                        makers,
                        window,
                        None,
                        &probe,
                        None,
                    )
                    .await?;
                    records.push(Record::new(
                        "nats-echo",
                        Some(b),
                        &format!("echo {} size", kind.as_str()),
                        c,
                        0,
                        &m,
                    ));
                }
            }
        }
        if scenarios.contains(&Scenario::PayToken) && !env.args.no_half_peak {
            let peak = records
                .iter()
                .filter(|r| {
                    r.group == "oneclick"
                        && r.backend.as_deref() == Some(b)
                        && r.scenario == "pay-token"
                })
                .map(|r| r.throughput)
                .fold(0.0, f64::max);
            if peak > 0.0 {
                let c = env.args.max_concurrency();
                let rate = peak / 2.0;
                let label = format!("{b} pay-token paced {:.0}/s", rate);
                let makers = env.makers(Scenario::PayToken, &customers, c);
                let before = app.group_commit();
                let m = load::run_nats(
                    &label,
                    env.clients_for(c),
                    makers,
                    window,
                    Some(rate),
                    &probe,
                    None,
                )
                .await?;
                env.notes
                    .extend(group_commit_note(&label, before, app.group_commit()));
                let mut r = Record::new(
                    "oneclick-paced",
                    Some(b),
                    "pay-token at half peak",
                    c,
                    customers.len(),
                    &m,
                );
                r.target_rate = Some(rate);
                records.push(r);
            }
        }
        app.stop();
    }
    if baselines {
        records.push(fsync_probe(env, "end").await?);
    }
    Ok(records)
}

/// How many payment steps shared a transaction during a run (from oneclick's counters before
/// and after it, warm-up included: a ratio, not a rate). `None` for runs that wrote nothing.
fn group_commit_note(
    label: &str,
    before: Option<(f64, f64)>,
    after: Option<(f64, f64)>,
) -> Option<String> {
    let ((t0, s0), (t1, s1)) = (before?, after?);
    (t1 > t0).then(|| {
        format!(
            "group commit, {label}: {:.1} payment steps per transaction ({:.0} transactions)",
            (s1 - s0) / (t1 - t0),
            t1 - t0
        )
    })
}

/// One writer rewriting 8 KiB and fdatasync-ing it, on the disk the databases use.
async fn fsync_probe(env: &Env, when: &str) -> anyhow::Result<Record> {
    eprintln!(
        "== disk: 8 KiB write + fdatasync loop in {} ({when})",
        env.scratch.display()
    );
    let w = Window {
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs_f64(env.args.duration.min(3.0)),
    };
    let dir = env.scratch.clone();
    let m = load::run_threads(
        &format!("disk fsync ({when})"),
        1,
        w,
        &Probe::default(),
        |_| baseline::fsync_worker(&dir),
    )
    .await?;
    Ok(Record::new(
        "disk-fsync",
        None,
        &format!("8K write+fdatasync, {when}"),
        1,
        0,
        &m,
    ))
}
