//! The servers a scenario starts and owns — never one it did not start:
//!
//! - [`Nats`]: a private `nats-server -js` (`ONECLICK_TEST_NATS_SERVER` or `nats-server`) on its
//!   own port and store directory; kill -9, clean stop and restart on the same port and store.
//! - [`PgCluster`]: a private PostgreSQL cluster (`initdb` in a temporary folder, run as the OS
//!   user `postgres` when we are root, because initdb refuses root) on its own port; immediate
//!   stop and start. [`FreshDb`]: a fresh database on the machine's server
//!   (`ONECLICK_TEST_DATABASE_URL`), dropped at the end, for scenarios that do not restart it.
//! - [`OneClick`]: the release `oneclick` binary with its own key file, log and HTTP port; kill -9,
//!   SIGTERM, restart, `/metrics` scraping, `oneclick admin …`.
//!
//! Every child is killed on drop, so an aborted scenario leaves nothing running.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

pub fn wait_port(port: u16, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if port_open(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Waits for a child to exit; SIGKILL after `within`.
fn reap(child: &mut Child, within: Duration) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---- NATS --------------------------------------------------------------------------------------

pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    pub store: PathBuf,
    log: PathBuf,
}

impl Nats {
    pub fn start(dir: &Path) -> anyhow::Result<Nats> {
        let store = dir.join("jetstream");
        std::fs::create_dir_all(&store)?;
        let mut nats = Nats {
            child: None,
            port: free_port()?,
            store,
            log: dir.join("nats-server.log"),
        };
        nats.spawn()?;
        Ok(nats)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn bin() -> String {
        std::env::var("ONECLICK_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
    }

    pub fn version() -> String {
        Command::new(Self::bin())
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// (Re)starts on the same port and store; waits for the port.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(Self::bin())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", Self::bin()))?;
        self.child = Some(child);
        if !wait_port(self.port, Duration::from_secs(20)) {
            bail!("nats-server did not open port {}", self.port);
        }
        Ok(())
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM: nats-server flushes and exits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "-TERM");
            reap(&mut c, Duration::from_secs(30));
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---- PostgreSQL --------------------------------------------------------------------------------

/// The newest PostgreSQL server binaries (Debian keeps them off PATH).
pub fn pg_bindir() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("/usr/lib/postgresql: PostgreSQL server binaries not found")?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().context("no /usr/lib/postgresql/*/bin/initdb")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool as the cluster owner.
fn pg_tool(bin: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

/// A private cluster: `initdb --auth=trust` in a temporary folder, on its own port.
pub struct PgCluster {
    bindir: PathBuf,
    pub data: PathBuf,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
    running: bool,
}

impl PgCluster {
    pub fn create() -> anyhow::Result<PgCluster> {
        let bindir = pg_bindir()?;
        // Under /tmp so the postgres user can reach it whatever the work tree's permissions.
        let dir = tempfile::Builder::new()
            .prefix("oneclick-chaos-pg")
            .tempdir_in("/tmp")?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?
                .success();
            if !ok {
                bail!("chown postgres {}", dir.path().display());
            }
        }
        let data = dir.path().join("data");
        let out = pg_tool(
            &bindir.join("initdb"),
            &[
                "-D",
                &data.display().to_string(),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
            ],
        )
        .output()
        .context("initdb")?;
        if !out.status.success() {
            bail!("initdb: {}", String::from_utf8_lossy(&out.stderr));
        }
        let log = dir.path().join("postgres.log");
        let mut pg = PgCluster {
            bindir,
            data,
            port: free_port()?,
            log,
            _dir: dir,
            running: false,
        };
        pg.start()?;
        Ok(pg)
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.data.parent().unwrap_or(&self.data).display()
        );
        let out = pg_tool(
            &self.bindir.join("pg_ctl"),
            &[
                "-D",
                &self.data.display().to_string(),
                "-l",
                &self.log.display().to_string(),
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl start: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.running = true;
        Ok(())
    }

    /// `pg_ctl stop -m immediate`: no checkpoint, clients cut off, crash recovery on the next start.
    pub fn stop_immediate(&mut self) -> anyhow::Result<()> {
        let out = pg_tool(
            &self.bindir.join("pg_ctl"),
            &[
                "-D",
                &self.data.display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .output()?;
        self.running = false;
        if !out.status.success() {
            bail!("pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    pub fn version(&self) -> String {
        Command::new(self.bindir.join("postgres"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_immediate();
        }
    }
}

/// A fresh database `oneclick_chaos_<uuid>` under `admin_url`, dropped (WITH FORCE) on drop.
pub struct FreshDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl FreshDb {
    pub fn create(admin_url: &str) -> anyhow::Result<FreshDb> {
        use diesel::{Connection as _, RunQueryDsl as _};
        let name = format!("oneclick_chaos_{}", uuid::Uuid::new_v4().simple());
        let mut admin = diesel::PgConnection::establish(admin_url)
            .with_context(|| format!("PostgreSQL at {admin_url} (set ONECLICK_TEST_DATABASE_URL; scripts/ensure-postgres starts one)"))?;
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin)?;
        Ok(FreshDb {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name),
            name,
        })
    }

    /// The machine's server: `ONECLICK_TEST_DATABASE_URL` or the local default.
    pub fn machine_admin_url() -> String {
        std::env::var("ONECLICK_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        use diesel::{Connection as _, RunQueryDsl as _};
        if let Ok(mut admin) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

// ---- oneclick ----------------------------------------------------------------------------------

/// The oneclick binary the scenarios run: `ONECLICK_CHAOS_BIN`, else `target/release/oneclick`.
pub fn oneclick_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ONECLICK_CHAOS_BIN") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/oneclick")
}

pub struct OneClick {
    child: Option<Child>,
    pub name: String,
    pub log: PathBuf,
    pub keys: PathBuf,
    pub env: Vec<(String, String)>,
    pub http_port: u16,
    /// Highest counter values seen from the current process, summed into `totals` when it ends.
    scraped: Vec<(String, f64)>,
    totals: Vec<(String, f64)>,
    pub starts: u32,
}

/// The counters scraped from `/metrics` and kept across restarts.
pub const SCRAPED: &[&str] = &[
    "oneclick_jetstream_redeliveries_total",
    "oneclick_dead_letters_total",
    "oneclick_commands_total",
    "oneclick_requests_total",
];

impl OneClick {
    /// Settings for an instance named `name` in `dir`, on `database_url` and `nats_url`, with the
    /// key file `keys` (generated when missing).
    pub fn prepare(
        name: &str,
        dir: &Path,
        nats_url: &str,
        database_url: &str,
        prefix: &str,
        keys: &Path,
    ) -> anyhow::Result<OneClick> {
        std::fs::create_dir_all(dir)?;
        if !keys.exists() {
            let out = Command::new(oneclick_bin())
                .args(["admin", "keys", "generate", "--out"])
                .arg(keys)
                .arg("--kek-file")
                .arg(keys.with_extension("kek"))
                .arg("--new-kek")
                .output()
                .with_context(|| {
                    format!(
                        "running {} (build it: cargo build --release --bin oneclick)",
                        oneclick_bin().display()
                    )
                })?;
            if !out.status.success() {
                bail!("keys generate: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let http_port = free_port()?;
        let env = vec![
            (
                "ONECLICK__DATABASE__URL".to_string(),
                database_url.to_string(),
            ),
            ("ONECLICK__KEYS__FILE".into(), keys.display().to_string()),
            (
                "ONECLICK__KEYS__KEK_FILE".into(),
                keys.with_extension("kek").display().to_string(),
            ),
            ("ONECLICK__NATS__URL".into(), nats_url.to_string()),
            ("ONECLICK__NATS__PREFIX".into(), prefix.to_string()),
            (
                "ONECLICK__HTTP__LISTEN".into(),
                format!("127.0.0.1:{http_port}"),
            ),
            ("ONECLICK__SERVICE__NAME".into(), name.to_string()),
            ("ONECLICK__LOG__FORMAT".into(), "json".into()),
            (
                "ONECLICK__LOG__LEVEL".into(),
                std::env::var("ONECLICK_CHAOS_LOG_LEVEL").unwrap_or_else(|_| "info".into()),
            ),
        ];
        Ok(OneClick {
            child: None,
            name: name.to_string(),
            log: dir.join(format!("{name}.log")),
            keys: keys.to_path_buf(),
            env,
            http_port,
            scraped: Vec::new(),
            totals: Vec::new(),
            starts: 0,
        })
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// `oneclick admin …` with this instance's settings.
    pub fn admin(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(oneclick_bin())
            .arg("admin")
            .args(args)
            .envs(self.env.iter().cloned())
            .output()?;
        if !out.status.success() {
            bail!("admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Starts `oneclick serve` and waits until its own HTTP `/health` answers (the HTTP server
    /// starts after the NATS surfaces and the consumers).
    pub fn start(&mut self) -> anyhow::Result<Duration> {
        let began = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(oneclick_bin())
            .arg("serve")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", oneclick_bin().display()))?;
        self.child = Some(child);
        self.starts += 1;
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if self
                .http_get("/health")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
            {
                return Ok(began.elapsed());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{} exited early ({status}); see {}",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > until {
                bail!(
                    "{} did not become healthy; see {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// kill -9 (the counters of this process since the last scrape are lost with it).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.close_counters();
    }

    /// SIGTERM and wait for the graceful shutdown.
    pub fn terminate(&mut self) {
        self.scrape();
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "-TERM");
            reap(&mut c, Duration::from_secs(40));
        }
        self.close_counters();
    }

    fn close_counters(&mut self) {
        for (k, v) in self.scraped.drain(..) {
            match self.totals.iter_mut().find(|(n, _)| *n == k) {
                Some((_, t)) => *t += v,
                None => self.totals.push((k, v)),
            }
        }
    }

    fn http_get(&self, path: &str) -> Option<String> {
        oneclick_testkit::nats_cluster::http_get(self.http_port, path)
    }

    pub fn metrics(&self) -> String {
        self.http_get("/metrics").unwrap_or_default()
    }

    /// Reads the current process's counters; call it often so a kill -9 loses little.
    pub fn scrape(&mut self) {
        if self.child.is_none() {
            return;
        }
        let text = self.metrics();
        if text.is_empty() {
            return;
        }
        for name in SCRAPED {
            let v = metric_sum(&text, name);
            match self.scraped.iter_mut().find(|(n, _)| n == name) {
                Some((_, old)) => *old = old.max(v),
                None => self.scraped.push((name.to_string(), v)),
            }
        }
    }

    /// A counter summed over every process this instance ran (as far as scraped).
    pub fn counter(&self, name: &str) -> f64 {
        let t: f64 = self
            .totals
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .sum();
        let s: f64 = self
            .scraped
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .sum();
        t + s
    }
}

impl Drop for OneClick {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub use oneclick_testkit::chaos::metric_sum;
pub use oneclick_testkit::engine::with_database;
