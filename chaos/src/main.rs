//! `oneclick-chaos <scenario> [--short] [--out results/chaos/<ts>]`: breaks oneclick on purpose
//! and reports figures (docs/reliability.md).
//!
//! Every scenario starts its own servers (a private nats-server, a private PostgreSQL cluster or a
//! fresh database, the release oneclick binary) and never touches one it did not start. Each run
//! writes `history.jsonl` (what was attempted and acknowledged, and the faults injected) and
//! `summary.json` to `--out`, prints a summary table, and exits non-zero when a check failed.

mod client;
mod procs;
mod report;
mod scenarios;
mod stack;

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "oneclick-chaos",
    about = "Breaks oneclick on purpose and reports figures"
)]
struct Cli {
    /// kill-oneclick | restart-nats | restart-postgres | two-instances | slow-handler |
    /// merchant-retries | card-sweep | key-rotation | tenant-isolation | fuzz | red-team |
    /// login-storm | nats-node-loss | rolling-restart
    scenario: String,
    /// The short version (minutes instead of tens of minutes).
    #[arg(long)]
    short: bool,
    /// Against the shipped 3-node NATS cluster (deploy/nats/cluster/, streams R3) instead of one
    /// nats-server: restart-postgres, rolling-restart (nats-node-loss always uses it).
    #[arg(long)]
    cluster: bool,
    /// rolling-restart, nats-node-loss: interactive requests per second (default: the plan's,
    /// 1,000 full / 300 short); the 16 workers send at most this many, fewer when saturated.
    #[arg(long)]
    interactive_rate: Option<f64>,
    /// Where history.jsonl, summary.json and the logs go (default results/chaos/<timestamp>-<scenario>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the load generator's choices (customers, amounts, kill times).
    #[arg(long, default_value_t = 20_261_122)]
    seed: u64,
    /// fuzz: how long to run, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

pub struct Run {
    pub short: bool,
    pub cluster: bool,
    pub interactive_rate: Option<f64>,
    pub out: PathBuf,
    pub seed: u64,
    pub seconds: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = cli.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "results/chaos/{}-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
            cli.scenario
        ))
    });
    std::fs::create_dir_all(&out)?;
    let run = Run {
        short: cli.short,
        cluster: cli.cluster,
        interactive_rate: cli.interactive_rate,
        out: out.clone(),
        seed: cli.seed,
        seconds: cli.seconds,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut report = report::Report::new(&cli.scenario, cli.short, &out);
    let result = runtime.block_on(scenarios::run(&cli.scenario, &run, &mut report));
    if let Err(e) = &result {
        report.expect(
            "scenario ran to the end",
            false,
            "no error",
            format!("{e:#}"),
        );
    }
    let passed = report.finish()?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}
