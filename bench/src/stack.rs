//! The system under test, started for the run and stopped on drop: a private `nats-server -js`
//! (own port, own store), a fresh database (PostgreSQL: a new database created from the admin URL
//! and dropped afterwards; SQLite: a file in the run's scratch directory), a key file, the demo
//! merchant with its turnover limits on (as `demo-seed` creates it: RUB 100,000.00 a day,
//! 500,000.00 a week, far above what a run pays per customer, so every payment reads its
//! turnover and none is declined) or lifted (no turnover read), and the release `oneclick`
//! binary as a child process, configured only through `ONECLICK__SECTION__KEY` variables.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use diesel::{Connection as _, PgConnection, RunQueryDsl as _};

/// The demo merchant `oneclick admin demo-seed` creates (see `src/cli/admin.rs`).
pub const MERCHANT_ID: i64 = 452739;

/// The inbox prefix of every load connection: merchant MERCHANT_ID's own (see `OneClick` env).
pub const BENCH_INBOX_PREFIX: &str = "_INBOX.merchant_452739";
pub const LOGIN: &str = "demo";
pub const PASSWORD: &str = "demo-password";
/// Base64 of the demo merchant's R2 signature key.
pub const SIGNATURE_KEY_B64: &str = "ZGVtby1zaWduYXR1cmUta2V5LTAxMjM0NTY3ODlhYmM=";
/// Subject prefix of the benchmarked instance.
pub const PREFIX: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Postgres,
    Sqlite,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Postgres => "postgres",
            BackendKind::Sqlite => "sqlite",
        }
    }
}

/// Where the binaries and the PostgreSQL admin URL come from.
#[derive(Debug, Clone)]
pub struct Tools {
    pub oneclick_bin: PathBuf,
    pub nats_server_bin: String,
    pub pg_admin_url: String,
    /// Extra `KEY=VALUE` environment for `oneclick` (e.g. `ONECLICK__DATABASE__POOL_SIZE=16`).
    pub oneclick_env: Vec<(String, String)>,
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_port(port: u16, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// SIGTERM (through `kill`, the workspace forbids `unsafe`), then SIGKILL after `grace`.
fn terminate(child: &mut Child, grace: Duration) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private JetStream-enabled nats-server.
pub struct NatsServer {
    child: Child,
    pub port: u16,
}

impl NatsServer {
    pub fn start(bin: &str, dir: &Path) -> anyhow::Result<NatsServer> {
        let port = free_port()?;
        let store = dir.join("nats-store");
        std::fs::create_dir_all(&store)?;
        let log = std::fs::File::create(dir.join("nats-server.log"))?;
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {bin}: set ONECLICK_BENCH_NATS_SERVER or put nats-server on PATH"
                )
            })?;
        let server = NatsServer { child, port };
        if !wait_port(port, Duration::from_secs(10)) {
            bail!("nats-server did not open port {port}");
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// A database made for this run.
pub struct Database {
    pub kind: BackendKind,
    /// What oneclick's `database.url` gets.
    pub url: String,
    /// PostgreSQL: (admin URL, database name) to drop it afterwards.
    pg: Option<(String, String)>,
    /// PostgreSQL: the cluster's data directory (to find the postmaster for CPU accounting).
    pub data_directory: Option<String>,
    pub keep: bool,
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    setting: String,
}

/// `postgres://u@h:p/db?x` with the database replaced by `name`.
pub fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Database {
    /// A fresh, empty database; `tag` makes its name unique and readable (`oneclick_bench_<tag>`).
    pub fn create(
        kind: BackendKind,
        tools: &Tools,
        dir: &Path,
        tag: &str,
    ) -> anyhow::Result<Database> {
        match kind {
            BackendKind::Sqlite => {
                let path = dir.join(format!("{tag}.db"));
                Ok(Database {
                    kind,
                    url: format!("sqlite://{}", path.display()),
                    pg: None,
                    data_directory: None,
                    keep: false,
                })
            }
            BackendKind::Postgres => {
                let name = format!(
                    "oneclick_bench_{}_{}",
                    std::process::id(),
                    tag.replace('-', "_")
                );
                let mut admin = PgConnection::establish(&tools.pg_admin_url).with_context(|| {
                    "cannot reach PostgreSQL at ONECLICK_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres); \
                     scripts/ensure-postgres starts one"
                        .to_string()
                })?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}")).execute(&mut admin)?;
                diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
                let data_directory = diesel::sql_query(
                    "SELECT setting FROM pg_settings WHERE name = 'data_directory'",
                )
                .get_result::<Setting>(&mut admin)
                .ok()
                .map(|s| s.setting);
                Ok(Database {
                    kind,
                    url: with_database(&tools.pg_admin_url, &name),
                    pg: Some((tools.pg_admin_url.clone(), name)),
                    data_directory,
                    keep: false,
                })
            }
        }
    }

    /// A connection with the engine's own per-connection settings (SQLite pragmas).
    /// The PostgreSQL database name, if any.
    pub fn pg_name(&self) -> Option<&str> {
        self.pg.as_ref().map(|(_, name)| name.as_str())
    }

    pub fn connect(&self) -> anyhow::Result<oneclick_actors::vault::AnyConnection> {
        Ok(oneclick_actors::vault::DatabaseUrl::parse(&self.url)?.connect()?)
    }

    /// How a client reaches this database with its URL: "TCP to 127.0.0.1 with TLS
    /// (TLSv1.3)", "TCP … without TLS", "Unix socket …" (what PostgreSQL says of the session).
    pub fn transport(&self) -> String {
        match self.kind {
            BackendKind::Sqlite => "SQLite file (in process)".into(),
            BackendKind::Postgres => {
                transport_of(&self.url).unwrap_or_else(|e| format!("unknown ({e})"))
            }
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Transport {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    client: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    tls: Option<String>,
}

fn transport_of(url: &str) -> anyhow::Result<String> {
    let mut conn = PgConnection::establish(url)?;
    let t = diesel::sql_query(
        "SELECT host(inet_client_addr()) AS client,          (SELECT CASE WHEN ssl THEN version END FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls",
    )
    .get_result::<Transport>(&mut conn)?;
    Ok(match (t.client, t.tls) {
        (None, _) => "Unix socket".into(),
        (Some(c), Some(v)) => format!("TCP from {c} with TLS ({v})"),
        (Some(c), None) => format!("TCP from {c} without TLS"),
    })
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Some((admin_url, name)) = &self.pg {
            if let Ok(mut admin) = PgConnection::establish(admin_url) {
                if let Err(e) =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                {
                    eprintln!("could not drop database {name}: {e}");
                }
            }
        }
    }
}

/// The oneclick service under test.
pub struct OneClick {
    child: Option<Child>,
    bin: PathBuf,
    env: Vec<(String, String)>,
    pub keys_file: PathBuf,
    pub log: PathBuf,
}

impl OneClick {
    /// Writes a key file (in `dir`), migrates, seeds the demo merchant and, unless `limits`,
    /// lifts its turnover limits. The service's log goes to `log_dir`.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare(
        tools: &Tools,
        dir: &Path,
        log_dir: &Path,
        tag: &str,
        nats_url: &str,
        db: &Database,
        simulator_latency_ms: u64,
        limits: bool,
    ) -> anyhow::Result<OneClick> {
        let keys_file = dir.join(format!("{tag}-keys.txt"));
        let _ = std::fs::remove_file(&keys_file);
        let _ = std::fs::remove_file(keys_file.with_extension("kek"));
        let mut env = vec![
            ("ONECLICK__DATABASE__URL".to_string(), db.url.clone()),
            (
                "ONECLICK__KEYS__FILE".into(),
                keys_file.display().to_string(),
            ),
            (
                "ONECLICK__KEYS__KEK_FILE".into(),
                keys_file.with_extension("kek").display().to_string(),
            ),
            ("ONECLICK__NATS__URL".into(), nats_url.to_string()),
            ("ONECLICK__NATS__PREFIX".into(), PREFIX.into()),
            // Each load connection plays both the payment page and merchant MERCHANT_ID, with
            // one inbox prefix (BENCH_INBOX_PREFIX): the service is told that this is the
            // gateway's prefix too, so every reply still passes the reply-subject check (and
            // its cost is measured) without a second connection per worker.
            (
                "ONECLICK__NATS__GATEWAY_INBOX_PREFIX".into(),
                format!("{BENCH_INBOX_PREFIX}."),
            ),
            (
                "ONECLICK__HTTP__LISTEN".into(),
                format!("127.0.0.1:{}", free_port()?),
            ),
            // Per-request logs would measure the log writer; warnings and errors still show.
            ("ONECLICK__LOG__LEVEL".into(), "warn".into()),
            (
                "ONECLICK__ACQUIRER__SIMULATOR_LATENCY_MS".into(),
                simulator_latency_ms.to_string(),
            ),
        ];
        for (k, v) in &tools.oneclick_env {
            env.retain(|(key, _)| key != k);
            env.push((k.clone(), v.clone()));
        }
        let app = OneClick {
            child: None,
            bin: tools.oneclick_bin.clone(),
            env,
            keys_file,
            log: log_dir.join(format!("{tag}-oneclick.log")),
        };
        app.admin(&[
            "keys",
            "generate",
            "--out",
            &app.keys_file.display().to_string(),
            "--kek-file",
            &app.keys_file.with_extension("kek").display().to_string(),
            "--new-kek",
        ])?;
        app.admin(&["migrate"])?;
        app.admin(&["demo-seed"])?;
        let mut merchant = vec![
            "merchant".to_string(),
            "--id".into(),
            MERCHANT_ID.to_string(),
            "--mit-cof".into(),
            "true".into(),
        ];
        if !limits {
            // No turnover limits: the engine's reservation skips the turnover read.
            merchant.extend(["--limit".to_string(), "RUB:-:-".to_string()]);
        }
        app.admin(&merchant.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(app)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        // Only our settings: no stray ONECLICK_* of the caller's shell reaches the service.
        for (k, _) in std::env::vars() {
            if k.starts_with("ONECLICK_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().cloned());
        cmd
    }

    /// Runs `oneclick admin …`; fails with its stderr.
    pub fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .command()
            .arg("admin")
            .args(args)
            .output()
            .with_context(|| {
                format!(
                    "cannot run {}: build it first (cargo build --release -p oneclick)",
                    self.bin.display()
                )
            })?;
        if !out.status.success() {
            bail!(
                "oneclick admin {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Starts `oneclick serve` and waits until its health subject answers.
    pub async fn start(&mut self, client: &async_nats::Client) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = self
            .command()
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if self.health(client).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "oneclick exited early ({status}); see {}",
                    self.log.display()
                );
            }
            if Instant::now() > until {
                bail!(
                    "oneclick did not become healthy within 30 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The health reply (`active_customers` counts the cached customer actors).
    pub async fn health(&self, client: &async_nats::Client) -> anyhow::Result<serde_json::Value> {
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(format!("{PREFIX}.v1.health"), "{}".into()),
        )
        .await
        .context("health: no reply")??;
        Ok(serde_json::from_slice(&reply.payload)?)
    }

    /// The vault counters of the service's `/metrics` since it started. `None` if they cannot
    /// be read.
    pub fn vault_counters(&self) -> Option<VaultCounters> {
        use std::io::{Read as _, Write as _};
        let addr = &self
            .env
            .iter()
            .find(|(k, _)| k == "ONECLICK__HTTP__LISTEN")?
            .1;
        let mut stream = std::net::TcpStream::connect(addr).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        };
        Some(VaultCounters {
            transactions: value("oneclick_group_commit_transactions")?,
            steps: value("oneclick_group_commit_steps")?,
            round_trips: value("oneclick_vault_round_trips")?,
            // Summed over its labels (endpoint, outcome).
            requests: text
                .lines()
                .filter_map(|l| l.strip_prefix("oneclick_requests_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(30));
        }
    }
}

/// Counters of the service read at one instant (`OneClick::vault_counters`).
#[derive(Debug, Clone, Copy)]
pub struct VaultCounters {
    /// Group-commit transactions and the payment steps in them.
    pub transactions: f64,
    pub steps: f64,
    /// Database round trips of the vault's connections (`oneclick_vault_round_trips`).
    pub round_trips: f64,
    /// Requests answered (`oneclick_requests_total`, every endpoint and outcome).
    pub requests: f64,
}

impl VaultCounters {
    /// Database round trips per request answered between `self` and `later`, warm-up included
    /// (both counters are read at the same two instants).
    pub fn round_trips_per_request(&self, later: &VaultCounters) -> Option<f64> {
        let requests = later.requests - self.requests;
        (requests > 0.0).then(|| (later.round_trips - self.round_trips) / requests)
    }
}

impl Drop for OneClick {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_url_gets_the_new_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
