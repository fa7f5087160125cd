//! The command line of `oneclick-bench`. Every option has a default that makes a meaningful run;
//! `--short` shrinks everything for the CI smoke test (under two minutes, zero errors or exit 1).
//! A later occurrence of an option replaces an earlier one (`scripts/bench --concurrency 8`
//! overrides the script's `1,8,32`).

use std::path::PathBuf;

use clap::Parser;

use crate::rng::Skew;
use crate::scenario::Scenario;
use crate::stack::BackendKind;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "oneclick-bench",
    args_override_self = true,
    about = "Load generator for oneclick over NATS, side by side with the machine's own limits",
    after_help = "Examples:\n  \
        oneclick-bench --scenario pay-token --concurrency 8 --duration 5\n  \
        oneclick-bench --backend postgres,sqlite --scenario pay-token,token-list --concurrency 1,8,32\n  \
        oneclick-bench --memory --memory-customers 100000\n  \
        oneclick-bench --actor-sweep 1000000 --backend sqlite   (peak RSS under the actor cap)\n  \
        oneclick-bench --growth 1000,1000000\n  \
        oneclick-bench --batching 1,2,4,16    (how a batch should reach PostgreSQL)\n  \
        oneclick-bench --short    (CI smoke: < 2 min, exit 1 on any error)"
)]
pub struct Args {
    /// Scenarios, comma-separated: pay-token, pay-new, register, offer, token-list, mixed.
    #[arg(long, value_enum, value_delimiter = ',', action = clap::ArgAction::Set, default_value = "pay-token")]
    pub scenario: Vec<Scenario>,
    /// Requesters in flight; a list sweeps (1,8,32).
    #[arg(long, value_delimiter = ',', action = clap::ArgAction::Set, default_value = "8")]
    pub concurrency: Vec<usize>,
    /// Customers with a saved card, seeded before the run.
    #[arg(long, default_value_t = 1000)]
    pub customers: usize,
    /// How requests pick customers: uniform, or zipf:<s> (a few hot customers), e.g. zipf:1.1.
    #[arg(long, default_value = "uniform")]
    pub skew: Skew,
    /// Measured seconds per point.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up seconds before each measured window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Backends, comma-separated: postgres, sqlite.
    #[arg(long, value_enum, value_delimiter = ',', action = clap::ArgAction::Set, default_value = "postgres")]
    pub backend: Vec<BackendKind>,
    /// Latency the acquirer simulator adds to each authorization.
    #[arg(long, default_value_t = 0)]
    pub simulator_latency_ms: u64,
    /// CI smoke: tiny customers and windows, every backend and scenario given, < 2 minutes.
    #[arg(long)]
    pub short: bool,
    /// Results folder (default results/<timestamp>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// How customers are seeded: commands (gw.pay with save, the real path) or bulk (rows
    /// written with the engine's keyring, see bulk_seed.rs).
    #[arg(long, value_enum, default_value = "commands")]
    pub seed: SeedMode,
    /// The demo merchant's turnover limits, comma-separated: off (lifted), on (as seeded: RUB
    /// 100,000/day, 500,000/week, so every payment reads its turnover). The payment scenarios
    /// (pay-token, pay-new, register) and their database baselines run under each setting;
    /// offer, token-list and mixed run under the first only.
    #[arg(long, value_enum, value_delimiter = ',', action = clap::ArgAction::Set, default_value = "off,on")]
    pub limits: Vec<Limits>,
    /// Skip the baselines (NATS echo, database transaction loops, pgbench, the peer vault).
    #[arg(long)]
    pub no_baselines: bool,
    /// pgbench for the plain one-transaction payment (default: the newest
    /// /usr/lib/postgresql/<v>/bin/pgbench, else pgbench on PATH); PostgreSQL runs only.
    #[arg(long, env = "ONECLICK_BENCH_PGBENCH")]
    pub pgbench: Option<String>,
    /// The peer vault's `locker` binary (scripts/bench builds it; `--short` never does): its
    /// add card and retrieve are measured beside oneclick on PostgreSQL. Absent: not measured,
    /// and the report says so.
    #[arg(long, env = "ONECLICK_BENCH_PEER_BIN")]
    pub peer_bin: Option<PathBuf>,
    /// The peer's folder (its `run` script).
    #[arg(
        long,
        env = "ONECLICK_BENCH_PEER_DIR",
        default_value = "../shared/peer/hyperswitch-card-vault"
    )]
    pub peer_dir: PathBuf,
    /// Why the peer is not measured (scripts/bench --short says so here).
    #[arg(long, hide = true)]
    pub peer_skipped: Option<String>,
    /// Skip the paced pay-token run at half of the peak throughput (interactive p99 target).
    #[arg(long)]
    pub no_half_peak: bool,
    /// NATS connections the load generator spreads its requesters over (at most one per requester).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Profile oneclick with `perf record -e cpu-clock -g` during each measured window.
    #[arg(long)]
    pub profile: bool,
    /// Memory mode: cache --memory-customers customer actors (one offer each) and report
    /// oneclick's RSS per cached actor.
    #[arg(long)]
    pub memory: bool,
    #[arg(long, default_value_t = 100_000)]
    pub memory_customers: usize,
    /// Actor-cap sweep: one offer each to this many distinct, never-seen customers (every one a
    /// new customer actor), the service at its default `engine.max_actors`; reports the peak
    /// RSS and the peak number of cached actors (0: off).
    #[arg(long, default_value_t = 0)]
    pub actor_sweep: usize,
    /// Growth mode: vault sizes to compare, e.g. 1000,1000000 (bulk seeded); offer, token-list
    /// and pay-token at the highest --concurrency over --active customers spread over the vault.
    #[arg(long, value_delimiter = ',', action = clap::ArgAction::Set)]
    pub growth: Vec<usize>,
    /// Batching prototype (issue 14): PostgreSQL only, the engine's saved-card payment
    /// statements sent three ways (rows, pipelined, set-based; see batching.rs) in batches of
    /// these sizes, e.g. 1,2,4,16 (empty: off).
    #[arg(long, value_delimiter = ',', action = clap::ArgAction::Set)]
    pub batching: Vec<usize>,
    /// Batching prototype: writers (connections), as the engine's `group_commit_writers`.
    #[arg(long, default_value_t = 2)]
    pub batching_writers: usize,
    /// Growth mode: customers the requests go to.
    #[arg(long, default_value_t = 1000)]
    pub active: usize,
    /// The oneclick binary (scripts/bench builds it in release mode).
    #[arg(
        long,
        env = "ONECLICK_BENCH_ONECLICK",
        default_value = "target/release/oneclick"
    )]
    pub oneclick_bin: PathBuf,
    /// nats-server binary.
    #[arg(
        long,
        env = "ONECLICK_BENCH_NATS_SERVER",
        default_value = "nats-server"
    )]
    pub nats_server: String,
    /// PostgreSQL admin URL; the bench creates (and drops) its own databases there.
    #[arg(
        long,
        env = "ONECLICK_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Extra environment for oneclick, KEY=VALUE, repeatable (ONECLICK__DATABASE__POOL_SIZE=16).
    #[arg(long = "oneclick-env", value_parser = parse_env)]
    pub oneclick_env: Vec<(String, String)>,
    /// Keep the PostgreSQL databases and SQLite files after the run.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Limits {
    Off,
    On,
}

impl Limits {
    pub fn on(self) -> bool {
        self == Limits::On
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeedMode {
    Commands,
    Bulk,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s}: expected KEY=VALUE"))
}

impl Args {
    /// Applies `--short`: a smoke run of every requested backend and scenario in < 2 minutes.
    pub fn normalized(mut self) -> Args {
        if self.short {
            self.customers = self.customers.min(50);
            self.duration = self.duration.min(2.0);
            self.warmup = self.warmup.min(0.5);
            self.concurrency = vec![*self.concurrency.iter().max().unwrap_or(&8)]
                .into_iter()
                .map(|c| c.min(8))
                .collect();
            self.memory_customers = self.memory_customers.min(2000);
            self.actor_sweep = self.actor_sweep.min(5000);
            self.growth = self.growth.iter().map(|g| (*g).min(2000)).collect();
            self.batching = self.batching.iter().map(|b| (*b).min(4)).collect();
            self.active = self.active.min(100);
        }
        self.concurrency.retain(|c| *c > 0);
        if self.concurrency.is_empty() {
            self.concurrency = vec![8];
        }
        self.concurrency.sort_unstable();
        self.concurrency.dedup();
        self.backend.dedup();
        self.limits.dedup();
        if self.limits.is_empty() {
            self.limits = vec![Limits::Off];
        }
        self.customers = self.customers.max(1);
        self
    }

    pub fn max_concurrency(&self) -> usize {
        self.concurrency.iter().copied().max().unwrap_or(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_option_overrides_the_script_default() {
        let a = Args::try_parse_from([
            "b",
            "--duration",
            "10",
            "--concurrency",
            "1,8,32",
            "--duration",
            "3",
            "--concurrency",
            "4",
        ])
        .expect("parses");
        assert_eq!(a.duration, 3.0);
        assert_eq!(a.concurrency, vec![4]);
    }
}
