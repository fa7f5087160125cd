//! `oneclick-bench`: how fast oneclick is, next to honest baselines measured in the same run.
//!
//! It starts everything it measures (a private nats-server, fresh PostgreSQL databases or SQLite
//! files, the release `oneclick` binary with the demo merchant, its turnover limits on and off),
//! seeds customers with saved cards, then drives oneclick over NATS exactly as gateways and
//! merchants do (JSON on the subjects of `docs/protocol.md`) with closed-loop requesters, and at
//! the same concurrency, minutes apart at most, the baselines: the engine's own statements one
//! transaction per payment (same merchant settings), pgbench running the plain one-transaction
//! payment a user would write instead, raw NATS request-reply to an echo responder, and the
//! peer vault (hyperswitch-card-vault) adding and retrieving cards on the same PostgreSQL.
//! Results under `results/<timestamp>/`: `report.txt` (the table and issue 14's targets, each a
//! ratio of two figures of this run with its verdict), `results.json`, `plot.svg` (throughput and
//! p99 against concurrency), `latency.svg` (a latency CDF per scenario from the HDR histograms)
//! and `latency/*.hgrm`. `docs/performance.md` says how to run each measurement and what the
//! figures were.
//!
//! Layout: `args` (options), `stack` (processes and databases), `scenario` (requests, judging
//! replies), `seed`/`bulk_seed` (customers), `load` (the closed loop), `baseline` (echo and
//! database loops), `pgbench` (the plain payment), `peer`/`http` (the peer vault), `procfs` (CPU
//! and RSS), `profile` (perf), `memory` (RSS per actor, growth), `report`/`plot`/`latency`
//! (output), `rng` (key skew).

mod args;
mod baseline;
mod batching;
mod bulk_seed;
mod http;
mod latency;
mod load;
mod memory;
mod peer;
mod pgbench;
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
use stack::{BackendKind, Database, NatsServer, OneClick, Tools, VaultCounters};

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
            client: None,
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

    /// A fresh database and a prepared (not started) oneclick on it, the merchant's limits lifted.
    pub fn prepare(&self, backend: BackendKind, tag: &str) -> anyhow::Result<(Database, OneClick)> {
        self.prepare_with(backend, tag, false)
    }

    /// Writes a window's latency distribution to `latency/<label>.hgrm`.
    pub fn save_histogram(&self, label: &str, m: &load::Measured) {
        let dir = self.out.join("latency");
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            std::fs::write(
                dir.join(format!("{}.hgrm", latency::file_stem(label))),
                latency::hgrm(&m.hist),
            )
        });
        if let Err(e) = written {
            eprintln!("warning: cannot write the latency histogram of {label}: {e}");
        }
    }

    /// A fresh database and a prepared (not started) oneclick on it; `limits`: the demo
    /// merchant's turnover limits stay on.
    pub fn prepare_with(
        &self,
        backend: BackendKind,
        tag: &str,
        limits: bool,
    ) -> anyhow::Result<(Database, OneClick)> {
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
            limits,
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
    let mut batching_summary = None;
    if !env.args.batching.is_empty() {
        let (recs, summary) = batching::prototype(&mut env).await?;
        records.extend(recs);
        batching_summary = Some(summary);
    }
    if !env.args.memory
        && env.args.growth.is_empty()
        && env.args.actor_sweep == 0
        && env.args.batching.is_empty()
    {
        let mut notes = SweepNotes::default();
        records.extend(sweep(&mut env, &mut notes).await?);
        let backends: Vec<String> = env
            .args
            .backend
            .iter()
            .map(|b| b.as_str().to_string())
            .collect();
        let ctx = report::Context {
            peer_missing: notes.peer_missing.as_deref(),
            pgbench_missing: notes.pgbench_missing.as_deref(),
        };
        ratios.splice(0..0, report::ratios(&records, &backends, &ctx));
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
    if let Some(summary) = &batching_summary {
        text.push_str("\nbatching prototype (issue 14): one batch of saved-card payments sent as rows, pipelined, set-based:\n");
        text.push_str(summary);
    }
    if !ratios.is_empty() {
        text.push_str(
            "\nissue 14 targets and baselines (ratios of figures measured in this run):\n",
        );
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
    // The smoke test is about oneclick (and the batching prototype, whose every batch must
    // reserve and claim all its payments): a baseline's error (SQLite's "database is locked" when
    // its writers pile up) is reported but does not fail the run.
    let errors: u64 = records
        .iter()
        .filter(|r| r.group.starts_with("oneclick") || r.group == "growth" || r.group == "batching")
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
    if let Some(svg) = plot::cdf_svg(&records) {
        std::fs::write(out.join("latency.svg"), svg)?;
    }
    if !env.args.keep {
        drop(env.nats);
        let _ = std::fs::remove_dir_all(&scratch);
    }
    println!(
        "results in {}/ (report.txt, results.json, plot.svg, latency.svg, latency/*.hgrm)",
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

/// One oneclick under test: the demo merchant with its limits on or off.
struct Side {
    limits: bool,
    _db: Database,
    app: OneClick,
    customers: Arc<Vec<Customer>>,
    probe: Probe,
    profiler: Option<Profiler>,
}

/// The baselines' scratch database (oneclick's schema, as many customers, bulk seeded).
struct Scratch {
    db: Database,
    ids: Arc<Vec<(i64, i64)>>,
    picker: Arc<KeyPicker>,
    probe: Probe,
}

/// What the sweep learnt besides its records (for the report).
#[derive(Default)]
pub struct SweepNotes {
    pub peer_missing: Option<String>,
    pub pgbench_missing: Option<String>,
}

fn is_payment(s: Scenario) -> bool {
    matches!(
        s,
        Scenario::PayToken | Scenario::PayNew | Scenario::Register
    )
}

/// The main measurement, per backend: one oneclick per limits setting (seeded), then for each
/// concurrency, every scenario (the payment ones under each limits setting) and right after
/// them the baselines at the same concurrency (the engine's statements one transaction per
/// payment, and grouped; pgbench's plain payment; NATS echo with the token list's sizes; the
/// peer vault's add and retrieve), so that a change of background load on the shared machine
/// hits both sides of a ratio alike; then the paced half-peak runs. The disk's fsync latency is
/// measured at the start and the end.
async fn sweep(env: &mut Env, notes: &mut SweepNotes) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    let window = env.window();
    let backends = env.args.backend.clone();
    let scenarios = env.args.scenario.clone();
    let conc = env.args.concurrency.clone();
    let limits: Vec<bool> = env.args.limits.iter().map(|l| l.on()).collect();
    let baselines = !env.args.no_baselines;
    if baselines {
        records.push(fsync_probe(env, "start").await?);
    }
    let echo = if baselines {
        Some(baseline::Echo::start(&env.nats.url()).await?)
    } else {
        None
    };
    let pgbench_bin = if baselines && backends.contains(&BackendKind::Postgres) {
        let found = pgbench::find(env.args.pgbench.as_deref());
        if found.is_none() {
            notes.pgbench_missing = Some(
                "pgbench not found (ONECLICK_BENCH_PGBENCH; Debian: apt-get install postgresql)"
                    .into(),
            );
        }
        found
    } else {
        notes.pgbench_missing = Some(if baselines {
            "pgbench needs PostgreSQL; this run has none".into()
        } else {
            "baselines off (--no-baselines)".into()
        });
        None
    };
    // The peer vault: on the PostgreSQL server of the run, when scripts/bench built it.
    let mut peer = None;
    if !baselines {
        notes.peer_missing = Some("baselines off (--no-baselines)".into());
    } else if !backends.contains(&BackendKind::Postgres) {
        notes.peer_missing = Some("the peer needs PostgreSQL; this run has none".into());
    } else if let Some(why) = &env.args.peer_skipped {
        notes.peer_missing = Some(why.clone());
    } else if let Some(bin) = env.args.peer_bin.clone() {
        eprintln!(
            "== peer vault: starting {} on the run's PostgreSQL",
            bin.display()
        );
        match peer::Peer::start(
            &env.args.peer_dir,
            &bin,
            &env.tools.pg_admin_url,
            &env.scratch.join("peer"),
        ) {
            Ok(p) => match p.seed(env.args.customers, 32).await {
                Ok(cards) => peer = Some((p, Arc::new(cards))),
                Err(e) => {
                    eprintln!("warning: the peer vault did not take its cards: {e:#}");
                    notes.peer_missing = Some(format!(
                        "adding its {} cards failed: {e:#} (log: {})",
                        env.args.customers,
                        p.log.display()
                    ));
                }
            },
            Err(e) => {
                eprintln!("warning: the peer vault did not start: {e:#}");
                notes.peer_missing = Some(format!("the peer vault did not start: {e:#}"));
            }
        }
    } else {
        notes.peer_missing =
            Some("no --peer-bin (scripts/bench builds the peer in its full run)".into());
    }
    if let Some(why) = &notes.peer_missing {
        env.notes.push(format!("peer vault not measured: {why}"));
    }
    if let Some(why) = &notes.pgbench_missing {
        env.notes.push(format!("pgbench baseline not run: {why}"));
    }
    for backend in backends {
        let b = backend.as_str();
        let mut sides = Vec::new();
        for &l in &limits {
            let lim = if l { "on" } else { "off" };
            eprintln!(
                "== {b}, limits {lim}: preparing the database, keys, demo merchant and oneclick"
            );
            let (db, mut app) = env.prepare_with(backend, &format!("{b}-lim{lim}"), l)?;
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
            // Started again when measured: only one side runs at a time ([`only_running`]).
            app.stop();
            if sides.is_empty() {
                let t = db.transport();
                env.notes.push(format!(
                    "{b}: oneclick reaches its database over: {t} (the engine baseline and pgbench use the same URL{})",
                    if backend == BackendKind::Postgres {
                        "; the peer vault connects over TCP without TLS, its diesel-async uses NoTls"
                    } else {
                        ""
                    }
                ));
            }
            sides.push(Side {
                limits: l,
                _db: db,
                app,
                customers: Arc::new(customers),
                probe: Probe::default(),
                profiler: None,
            });
        }
        let scratch = if baselines {
            eprintln!("== {b}: scratch database for the baselines (one transaction per payment)");
            let (sdb, base_app) = env.prepare(backend, &format!("{b}-baseline"))?;
            let seeded = bulk_seed(&sdb.url, &base_app.keys_file, env.args.customers).await?;
            let picker = Arc::new(KeyPicker::new(seeded.ids.len(), env.args.skew));
            let probe = env.probe(None, &sdb);
            Some(Scratch {
                db: sdb,
                ids: Arc::new(seeded.ids),
                picker,
                probe,
            })
        } else {
            None
        };
        for &c in &conc {
            let mut sizes: BTreeMap<Scenario, (f64, f64)> = BTreeMap::new();
            for i in 0..sides.len() {
                only_running(env, &mut sides, i).await?;
                let side = &sides[i];
                let lim = if side.limits { "on" } else { "off" };
                for &scenario in &scenarios {
                    if i > 0 && !is_payment(scenario) {
                        continue;
                    }
                    let label = format!("{b} {} lim-{lim} c={c}", scenario.as_str());
                    let makers = env.makers(scenario, &side.customers, c);
                    let before = side.app.vault_counters();
                    let m = load::run_nats(
                        &label,
                        env.clients_for(c),
                        makers,
                        window,
                        None,
                        &side.probe,
                        side.profiler.as_ref(),
                    )
                    .await?;
                    let after = side.app.vault_counters();
                    env.notes.extend(group_commit_note(&label, before, after));
                    sizes.insert(scenario, (m.request_bytes, m.reply_bytes));
                    records.push(
                        Record::new(
                            "oneclick",
                            Some(b),
                            scenario.as_str(),
                            c,
                            side.customers.len(),
                            &m,
                        )
                        .with_limits(side.limits)
                        .with_round_trips(round_trips(before, after)),
                    );
                    env.save_histogram(&label, &m);
                }
                if let Some(s) = &scratch {
                    records.extend(
                        db_baselines(env, backend, s, c, side.limits, pgbench_bin.as_deref())
                            .await?,
                    );
                }
            }
            if let Some(echo) = &echo {
                let kind = if sizes.contains_key(&Scenario::TokenList) {
                    Some(Scenario::TokenList)
                } else {
                    sizes.keys().next().copied()
                };
                if let Some(&(req_len, reply_len)) = kind.and_then(|k| sizes.get(&k)) {
                    let kind = kind.map(Scenario::as_str).unwrap_or("");
                    echo.set_reply(baseline::filler(reply_len.round() as usize));
                    let probe = Probe {
                        nats: Some(env.nats.pid()),
                        ..Probe::default()
                    };
                    let body = baseline::filler(req_len.round() as usize);
                    let label = format!("nats echo ({kind} size) c={c}");
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
                        &format!("echo {kind} size"),
                        c,
                        0,
                        &m,
                    ));
                    env.save_histogram(&label, &m);
                }
            }
            if backend == BackendKind::Postgres {
                if let Some((p, cards)) = &peer {
                    let postmaster = sides
                        .first()
                        .and_then(|s| s.probe.postgres.as_ref().map(|(pid, _)| *pid));
                    records.extend(peer_windows(env, p, cards, c, postmaster).await?);
                }
            }
        }
        if scenarios.contains(&Scenario::PayToken) && !env.args.no_half_peak {
            for i in 0..sides.len() {
                only_running(env, &mut sides, i).await?;
                let paced = half_peak(env, b, &sides[i], &records).await?;
                records.extend(paced);
            }
        }
        for mut side in sides {
            side.app.stop();
        }
    }
    drop(peer);
    if baselines {
        records.push(fsync_probe(env, "end").await?);
    }
    Ok(records)
}

/// Makes `sides[i]` the only running oneclick, starting it (and pointing its CPU probe and
/// profiler at the new process) if it is not running. Every side answers the same subjects on the
/// bench's one NATS server: two running at once would share the requests between their
/// databases (a saved card of one is "4/1 not found" in the other), and each side's figures
/// would be half another's.
async fn only_running(env: &Env, sides: &mut [Side], i: usize) -> anyhow::Result<()> {
    for (j, other) in sides.iter_mut().enumerate() {
        if j != i {
            other.app.stop();
        }
    }
    let side = &mut sides[i];
    if side.app.pid().is_none() {
        side.app.start(&env.clients[0]).await?;
        side.probe = env.probe(Some(&side.app), &side._db);
        side.profiler = env.profiler(&side.app);
    }
    Ok(())
}

/// The database baselines at concurrency `c` with the merchant's `limits`: the engine's
/// statements one transaction per payment, pgbench's plain payment (PostgreSQL), and (limits
/// on, or the only setting) the engine's statements grouped.
async fn db_baselines(
    env: &mut Env,
    backend: BackendKind,
    s: &Scratch,
    c: usize,
    limits: bool,
    pgbench_bin: Option<&Path>,
) -> anyhow::Result<Vec<Record>> {
    let b = backend.as_str();
    let lim = if limits { "on" } else { "off" };
    let window = env.window();
    let mut out = Vec::new();
    let url = s.db.url.clone();
    let tag = env.next_tag();
    let label = format!("{b} engine one-tx lim-{lim} c={c}");
    let mut m = load::run_threads(&label, c, window, &s.probe, |w| {
        baseline::db_worker(&url, s.ids.clone(), s.picker.clone(), &tag, w, limits)
    })
    .await?;
    if backend == BackendKind::Sqlite {
        // SQLite runs inside the baseline's own threads.
        m.cpu.database = m.cpu.bench;
    }
    out.push(
        Record::new("db-baseline", Some(b), "payment-tx", c, s.ids.len(), &m).with_limits(limits),
    );
    env.save_histogram(&label, &m);
    if let (Some(bin), BackendKind::Postgres) = (pgbench_bin, backend) {
        let label = format!("{b} pgbench plain payment lim-{lim} c={c}");
        let range = pgbench::id_range(&s.ids)?;
        env.points += 1;
        let run_tag = env.points as u64;
        match pgbench::run(
            bin,
            &url,
            range,
            c,
            limits,
            run_tag,
            &env.scratch,
            window,
            &s.probe,
            &label,
        )
        .await
        {
            Ok(m) => {
                out.push(
                    Record::new("pgbench", Some(b), "plain payment", c, s.ids.len(), &m)
                        .with_limits(limits),
                );
                env.save_histogram(&label, &m);
            }
            Err(e) => {
                eprintln!("warning: {label}: {e:#}");
                env.notes.push(format!("{label} failed: {e:#}"));
            }
        }
    }
    let grouped_here = limits || !env.args.limits.iter().any(|l| l.on());
    if c > 1 && grouped_here {
        // The database's own group-commit ceiling with as many payments in flight:
        // groups of up to 16 (SQLite: one writer, one group of c).
        let workers = if backend == BackendKind::Sqlite {
            1
        } else {
            (c / 16).max(1)
        };
        let group = (c / workers).max(1);
        let tag = env.next_tag();
        let label = format!("{b} engine {group} per tx ×{workers} lim-{lim} c={c}");
        let mut m = load::run_threads(&label, workers, window, &s.probe, |w| {
            baseline::db_group_worker(&url, s.ids.clone(), workers, group, &tag, w, limits)
        })
        .await?;
        if backend == BackendKind::Sqlite {
            m.cpu.database = m.cpu.bench;
        }
        // One call is one transaction of `group` payments.
        m.ok *= group as u64;
        out.push(
            Record::new(
                "db-grouped",
                Some(b),
                "payment-tx grouped",
                c,
                s.ids.len(),
                &m,
            )
            .with_limits(limits),
        );
    }
    Ok(out)
}

/// The peer vault's add card and retrieve card at concurrency `c`.
async fn peer_windows(
    env: &mut Env,
    p: &peer::Peer,
    cards: &Arc<Vec<(String, String)>>,
    c: usize,
    postmaster: Option<u32>,
) -> anyhow::Result<Vec<Record>> {
    let window = env.window();
    let probe = Probe {
        oneclick: Some(p.pid()),
        postgres: postmaster.map(|pid| (pid, p.db_name.clone())),
        ..Probe::default()
    };
    let mut out = Vec::new();
    let tag = env.next_tag();
    let label = format!("peer add card c={c}");
    let m = load::run_calls(&label, p.add_calls(c, &tag), window, None, &probe, None).await?;
    out.push(Record::new(
        "peer",
        Some("postgres"),
        "add card",
        c,
        cards.len(),
        &m,
    ));
    env.save_histogram(&label, &m);
    let picker = Arc::new(KeyPicker::new(cards.len(), env.args.skew));
    let label = format!("peer retrieve card c={c}");
    let m = load::run_calls(
        &label,
        p.retrieve_calls(c, cards, &picker),
        window,
        None,
        &probe,
        None,
    )
    .await?;
    out.push(Record::new(
        "peer",
        Some("postgres"),
        "retrieve card",
        c,
        cards.len(),
        &m,
    ));
    env.save_histogram(&label, &m);
    Ok(out)
}

/// pay-token paced at half of this side's best closed-loop throughput.
async fn half_peak(
    env: &mut Env,
    b: &str,
    side: &Side,
    records: &[Record],
) -> anyhow::Result<Option<Record>> {
    let peak = records
        .iter()
        .filter(|r| {
            r.group == "oneclick"
                && r.backend.as_deref() == Some(b)
                && r.scenario == "pay-token"
                && r.limits == Some(side.limits)
        })
        .map(|r| r.throughput)
        .fold(0.0, f64::max);
    if peak <= 0.0 {
        return Ok(None);
    }
    let c = env.args.max_concurrency();
    let rate = peak / 2.0;
    let lim = if side.limits { "on" } else { "off" };
    let label = format!("{b} pay-token lim-{lim} paced {rate:.0}/s");
    let makers = env.makers(Scenario::PayToken, &side.customers, c);
    let before = side.app.vault_counters();
    let m = load::run_nats(
        &label,
        env.clients_for(c),
        makers,
        env.window(),
        Some(rate),
        &side.probe,
        None,
    )
    .await?;
    let after = side.app.vault_counters();
    env.notes.extend(group_commit_note(&label, before, after));
    env.save_histogram(&label, &m);
    let mut r = Record::new(
        "oneclick-paced",
        Some(b),
        "pay-token at half peak",
        c,
        side.customers.len(),
        &m,
    )
    .with_limits(side.limits)
    .with_round_trips(round_trips(before, after));
    r.target_rate = Some(rate);
    Ok(Some(r))
}

/// How many payment steps shared a transaction during a run (from oneclick's counters before
/// and after it, warm-up included: a ratio, not a rate). `None` for runs that wrote nothing.
/// Database round trips per request between two readings of the service's counters.
fn round_trips(before: Option<VaultCounters>, after: Option<VaultCounters>) -> Option<f64> {
    before?.round_trips_per_request(&after?)
}

fn group_commit_note(
    label: &str,
    before: Option<VaultCounters>,
    after: Option<VaultCounters>,
) -> Option<String> {
    let (a, b) = (before?, after?);
    (b.transactions > a.transactions).then(|| {
        format!(
            "group commit, {label}: {:.1} payment steps per transaction ({:.0} transactions)",
            (b.steps - a.steps) / (b.transactions - a.transactions),
            b.transactions - a.transactions
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
