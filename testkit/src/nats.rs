//! End-to-end harness: a private `nats-server -js` per test (own port, own store, killed on
//! drop), the real `oneclick` binary as a child process (its stderr captured to a file so tests
//! can scan the logs), and NATS clients that talk to it as a gateway or merchant would: each with
//! the inbox prefix the service answers it on (`_INBOX.gateway`, `_INBOX.merchant_<id>`; see
//! [`crate::inbox`]).

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

pub const DEMO_MERCHANT: i64 = 452739;
pub const DEMO_LOGIN: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-password";
pub const DEMO_KEY_B64: &str = "ZGVtby1zaWduYXR1cmUta2V5LTAxMjM0NTY3ODlhYmM=";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The command line of a plain JetStream server on `port` with its store in `store`.
fn plain_args(port: u16, store: &Path) -> Vec<String> {
    vec![
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-js".into(),
        "-sd".into(),
        store.display().to_string(),
    ]
}

/// Runs `start` on a free port; when the server lost that port to another process between the
/// pick and its bind ("address already in use"), on another free port (five attempts in all).
fn on_a_free_port(mut start: impl FnMut(u16) -> Result<NatsServer, String>) -> NatsServer {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        match start(free_port()) {
            Ok(server) => return server,
            Err(why) if attempt < ATTEMPTS && why.contains("address already in use") => {
                eprintln!("nats-server: its port was taken meanwhile (attempt {attempt}); starting again on another");
            }
            Err(why) => panic!("{why}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// A private JetStream-enabled nats-server.
pub struct NatsServer {
    /// `None` after [`NatsServer::kill9`], until [`NatsServer::restart`].
    child: Option<Child>,
    /// The command line and environment it was started with (a restart reuses them).
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub port: u16,
    pub store: tempfile::TempDir,
    /// The server's own log (stderr), in `store`.
    pub log: PathBuf,
    /// The users of the shipped configuration, when started with it ([`NatsServer::start_shipped`]).
    pub users: Option<ShippedUsers>,
}

impl NatsServer {
    /// A plain JetStream server on a free port, with its own store.
    pub fn start() -> NatsServer {
        on_a_free_port(|port| {
            let store = tempfile::tempdir().expect("tempdir");
            let args = plain_args(port, store.path());
            Self::try_spawn(port, store, &args, &[], None)
        })
    }

    /// A server on a free port whose command line `args(port, store)` gives (it may write a
    /// configuration file into `store` first), with its own store; ready when its own log says
    /// so, started again on another free port when it lost its port meanwhile, as
    /// [`NatsServer::start`] is.
    pub fn start_with(mut args: impl FnMut(u16, &Path) -> Vec<String>) -> NatsServer {
        on_a_free_port(|port| {
            let store = tempfile::tempdir().expect("tempdir");
            let args = args(port, store.path());
            Self::try_spawn(port, store, &args, &[], None)
        })
    }

    /// Starts on a given port and store (used to restart a server with its data).
    pub fn start_on(port: u16, store: tempfile::TempDir) -> NatsServer {
        let args = plain_args(port, store.path());
        Self::spawn(port, store, &args, &[], None)
    }

    /// Starts the shipped `deploy/nats/nats.conf` (see [`shipped_nats_conf`] for the only
    /// rewrites) with fresh random passwords for its users, on a free port.
    pub fn start_shipped() -> NatsServer {
        let users = ShippedUsers::random();
        on_a_free_port(|port| {
            let store = tempfile::tempdir().expect("tempdir");
            let conf = write_shipped_nats_conf(store.path(), port, &users);
            let args = vec!["-c".to_string(), conf.display().to_string()];
            let env = users.server_env();
            Self::try_spawn(port, store, &args, &env, Some(users.clone()))
        })
    }

    /// [`NatsServer::start_shipped`] on a given port, store and users (a restart keeps all three).
    pub fn start_shipped_on(
        port: u16,
        store: tempfile::TempDir,
        users: ShippedUsers,
    ) -> NatsServer {
        let conf = write_shipped_nats_conf(store.path(), port, &users);
        let args = vec!["-c".to_string(), conf.display().to_string()];
        let env = users.server_env();
        Self::spawn(port, store, &args, &env, Some(users))
    }

    /// The generated users file (`merchants.conf`) beside the configuration of a server started
    /// with [`NatsServer::start_shipped`]: `oneclick admin merchant nats-identity --file` edits it.
    pub fn merchants_file(&self) -> PathBuf {
        self.store.path().join("merchants.conf")
    }

    /// Makes the server reread its configuration (SIGHUP, as `nats-server --signal reload` and
    /// `docker compose kill -s HUP nats` do) and waits until its log says it did.
    pub fn reload(&self) {
        let before = self
            .log_text()
            .matches("Reloaded server configuration")
            .count();
        let status = Command::new("kill")
            .args([
                "-HUP",
                &self
                    .child
                    .as_ref()
                    .expect("a running nats-server")
                    .id()
                    .to_string(),
            ])
            .status()
            .expect("kill -HUP");
        assert!(status.success(), "kill -HUP nats-server");
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_text();
            if log.matches("Reloaded server configuration").count() > before {
                return;
            }
            assert!(
                Instant::now() < until,
                "nats-server did not reload; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `nats-server` with `args` and `env` (its log in `store`) and waits until it is
    /// ready ([`NatsServer::restart`]); panics with its log when it is not.
    pub fn spawn(
        port: u16,
        store: tempfile::TempDir,
        args: &[String],
        env: &[(String, String)],
        users: Option<ShippedUsers>,
    ) -> NatsServer {
        Self::try_spawn(port, store, args, env, users).unwrap_or_else(|why| panic!("{why}"))
    }

    /// [`NatsServer::spawn`], returning why the server did not become ready instead of panicking.
    fn try_spawn(
        port: u16,
        store: tempfile::TempDir,
        args: &[String],
        env: &[(String, String)],
        users: Option<ShippedUsers>,
    ) -> Result<NatsServer, String> {
        let log = store.path().join("nats-server.log");
        let mut server = NatsServer {
            child: None,
            args: args.to_vec(),
            env: env.to_vec(),
            port,
            store,
            log,
            users,
        };
        server.try_restart()?;
        Ok(server)
    }

    /// (Re)starts the process with the same command line, environment, port and store, and
    /// waits until it is ready; a running one is killed first. Panics with the server's log
    /// when it exits first (its port taken, say) or is not ready within 10 s.
    pub fn restart(&mut self) {
        if let Err(why) = self.try_restart() {
            panic!("{why}");
        }
    }

    /// [`NatsServer::restart`], returning why instead of panicking. Ready means: the server's
    /// OWN log says "Server is ready" (printed once its listeners are bound) and its client port
    /// answers. The port answering is not enough: it may be another test's server that took the
    /// port between `free_port` and this bind, while this one exited with "address already in
    /// use".
    fn try_restart(&mut self) -> Result<(), String> {
        self.kill9();
        let bin =
            std::env::var("ONECLICK_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("nats-server log file");
        // Only what this run logs counts (a restart appends to the same file).
        let logged_before = self.log_text().len();
        let mut child = Command::new(&bin)
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin} ({e}); run the suite with scripts/test, which installs nats-server"));
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("nats-server status") {
                return Err(format!(
                    "nats-server on port {} exited ({status}) before it was ready; its log:\n{}",
                    self.port,
                    self.log_text()
                ));
            }
            let ready = self
                .log_text()
                .get(logged_before..)
                .is_some_and(|run| run.contains("Server is ready"));
            if ready && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= until {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "nats-server was not ready on port {} within 10 s; its log:\n{}",
                    self.port,
                    self.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9 (no flush, no goodbye to the clients or the cluster).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The repository's root (the test kit lives in `<root>/testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

/// The shipped NATS configuration, `deploy/nats/nats.conf`, as a test runs it. **The only
/// rewrites** (each a whole line of the shipped file, so a test fails loudly when the file
/// changes shape): the client listener `0.0.0.0:4222` → `127.0.0.1:<port>`, the monitoring port
/// `8222` → `<http_port>` (both so parallel tests do not collide), and the JetStream store
/// `/data/jetstream` → `<store>` (the container's volume). Everything else — limits, JetStream
/// settings, the `include "merchants.conf"` of the users ([`write_shipped_nats_conf`] puts the
/// shipped service-users.conf and a generated merchants.conf beside it) — is the file as shipped.
pub fn shipped_nats_conf(port: u16, http_port: u16, store: &Path) -> String {
    rewrite_shipped(
        "deploy/nats/nats.conf",
        &shipped_nats_conf_rewrites(port, http_port, store),
    )
}

/// The whole-line rewrites of [`shipped_nats_conf`].
pub fn shipped_nats_conf_rewrites(
    port: u16,
    http_port: u16,
    store: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("listen: 0.0.0.0:4222", format!("listen: 127.0.0.1:{port}")),
        ("http_port: 8222", format!("http_port: {http_port}")),
        (
            "store_dir: /data/jetstream",
            format!("store_dir: \"{}\"", store.display()),
        ),
    ]
}

/// The shipped file `path` (relative to the repository root) with each `(from, to)` applied to
/// the one whole line (trimmed) equal to `from`; panics when a `from` line is missing, so a test
/// fails loudly when the shipped file changes shape.
pub fn rewrite_shipped(path: &str, rewrites: &[(&str, String)]) -> String {
    let path = repo_root().join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = String::with_capacity(text.len());
    let mut seen = vec![false; rewrites.len()];
    for line in text.lines() {
        let trimmed = line.trim();
        match rewrites.iter().position(|(from, _)| trimmed == *from) {
            Some(i) => {
                seen[i] = true;
                out.push_str(&line.replace(rewrites[i].0, &rewrites[i].1));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for (i, found) in seen.iter().enumerate() {
        assert!(
            found,
            "{} no longer has the line `{}` the tests rewrite",
            path.display(),
            rewrites[i].0
        );
    }
    out
}

/// Writes the shipped configuration as a test runs it into `dir`: `nats.conf` ([`shipped_nats_conf`]),
/// `service-users.conf` as shipped, and — unless one is there already (a restart keeps it) — the
/// generated `merchants.conf` with the example merchant 452739, made by the real
/// `oneclick admin merchant nats-identity create` with the password of `users`. Returns the
/// path of nats.conf.
pub fn write_shipped_nats_conf(dir: &Path, port: u16, users: &ShippedUsers) -> PathBuf {
    let rewrites = shipped_nats_conf_rewrites(port, free_port(), &dir.join("data"));
    write_shipped_nats_files(dir, &rewrites, users)
}

/// [`write_shipped_nats_conf`] with the given whole-line `rewrites` of nats.conf (see
/// [`rewrite_shipped`]); a cluster node picks its own monitoring port.
pub fn write_shipped_nats_files(
    dir: &Path,
    rewrites: &[(&str, String)],
    users: &ShippedUsers,
) -> PathBuf {
    let conf = dir.join("nats.conf");
    let text = rewrite_shipped("deploy/nats/nats.conf", rewrites);
    std::fs::write(&conf, text).expect("write nats.conf");
    let service_users = repo_root().join("deploy/nats/service-users.conf");
    std::fs::copy(&service_users, dir.join("service-users.conf"))
        .unwrap_or_else(|e| panic!("{}: {e}", service_users.display()));
    let merchants = dir.join("merchants.conf");
    if !merchants.exists() {
        let (ok, out) = nats_identity(
            &merchants,
            &[
                "create",
                "--id",
                "452739",
                "--password-from-env",
                "MERCHANT_452739_NATS_PASSWORD",
            ],
            &[("MERCHANT_452739_NATS_PASSWORD", &users.merchant_452739)],
        );
        assert!(ok, "admin merchant nats-identity create: {out}");
    }
    conf
}

/// Runs `oneclick admin merchant nats-identity <args> --file <file>` with `env`; whether it
/// succeeded and what it printed (stdout, then stderr).
pub fn nats_identity(file: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(bin())
        .args(["admin", "merchant", "nats-identity"])
        .args(args)
        .arg("--file")
        .arg(file)
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .output()
        .expect("oneclick admin merchant nats-identity");
    status_and_output(&out)
}

/// Whether a finished command succeeded and what it printed (stdout, then stderr).
pub fn status_and_output(out: &std::process::Output) -> (bool, String) {
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Passwords of the users of the shipped configuration — the service and the gateway (from the
/// server's environment) and the example merchant (hashed into the generated merchants.conf) —,
/// fresh and random per test.
#[derive(Debug, Clone)]
pub struct ShippedUsers {
    pub oneclick: String,
    pub gateway: String,
    pub merchant_452739: String,
}

impl ShippedUsers {
    pub fn random() -> ShippedUsers {
        // nats-server parses an environment variable's value as a config value: hex that starts
        // with digits (`9e12…`) is taken for a number and the server refuses to start. A letter
        // first keeps it a string.
        let p = || format!("pw{}", uuid::Uuid::new_v4().simple());
        ShippedUsers {
            oneclick: p(),
            gateway: p(),
            merchant_452739: p(),
        }
    }

    /// The environment docker-compose.yml gives the nats service (merchants' passwords are not
    /// in it: their bcrypt hashes are in the generated merchants.conf).
    pub fn server_env(&self) -> Vec<(String, String)> {
        vec![
            ("ONECLICK_NATS_PASSWORD".into(), self.oneclick.clone()),
            ("GATEWAY_NATS_PASSWORD".into(), self.gateway.clone()),
        ]
    }
}

impl ShippedUsers {
    /// Connected as the shipped service user `oneclick` (any `_INBOX`, the streams' API).
    pub async fn service(&self, url: &str) -> async_nats::Client {
        connect_as(url, "oneclick", &self.oneclick, None)
            .await
            .expect("the service user connects")
    }

    /// Connected as the shipped `gateway` user, with its own inbox prefix.
    pub async fn gateway(&self, url: &str) -> async_nats::Client {
        connect_as(url, "gateway", &self.gateway, Some("_INBOX.gateway"))
            .await
            .expect("the gateway user connects")
    }

    /// Connected as the shipped example merchant `merchant_452739`, with its own inbox prefix.
    pub async fn merchant(&self, url: &str) -> async_nats::Client {
        connect_as(
            url,
            "merchant_452739",
            &self.merchant_452739,
            Some("_INBOX.merchant_452739"),
        )
        .await
        .expect("the example merchant connects")
    }

    /// Gives `app` the service's shipped identity (user `oneclick`) and the subject `prefix`.
    pub fn serve_as_shipped(&self, app: &mut OneClick, prefix: &str) {
        app.set_env("ONECLICK__NATS__PREFIX", prefix);
        app.prefix = prefix.to_string();
        app.set_env("ONECLICK__NATS__USER", "oneclick");
        app.set_env("ONECLICK__NATS__PASSWORD", &self.oneclick);
    }
}

/// A client connected as `user` with `password` and, when given, a custom inbox prefix (the
/// shipped config lets gateways and merchants subscribe only under their own prefix).
pub async fn connect_as(
    url: &str,
    user: &str,
    password: &str,
    inbox_prefix: Option<&str>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut options =
        async_nats::ConnectOptions::new().user_and_password(user.to_string(), password.to_string());
    if let Some(prefix) = inbox_prefix {
        options = options.custom_inbox_prefix(prefix);
    }
    options.connect(url).await
}

/// The oneclick binary with its own database, keys, prefix and captured log.
pub struct OneClick {
    child: Option<Child>,
    pub dir: PathBuf,
    pub log: PathBuf,
    pub env: Vec<(String, String)>,
    pub prefix: String,
    pub http_port: u16,
}

/// The `oneclick` binary under test: `ONECLICK_BIN` when set, else the one cargo built beside
/// the running binary (`target/<profile>/deps/<test>` or `target/<profile>/oneclick-chaos` →
/// `target/<profile>/oneclick`; cargo builds it for every integration test of the root package).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(b) = std::env::var("ONECLICK_BIN") {
            return b;
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        // A test binary lives in target/<profile>/deps, a binary such as oneclick-chaos in
        // target/<profile> itself.
        let mut dir = exe.parent().expect("the binary's folder");
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir = dir.parent().expect("target/<profile>");
        }
        dir.join(format!("oneclick{}", std::env::consts::EXE_SUFFIX))
            .to_string_lossy()
            .into_owned()
    })
}

impl OneClick {
    /// An instance with exactly the settings given (no keys generated, nothing seeded), its log
    /// in `dir`, its health and metrics on a free port — for a deployment the test made itself
    /// (e.g. one upgraded from an older version).
    pub fn configured(dir: &Path, mut env: Vec<(String, String)>, prefix: &str) -> OneClick {
        let http_port = free_port();
        env.retain(|(k, _)| k != "ONECLICK__HTTP__LISTEN" && k != "ONECLICK__NATS__PREFIX");
        env.push((
            "ONECLICK__HTTP__LISTEN".into(),
            format!("127.0.0.1:{http_port}"),
        ));
        env.push(("ONECLICK__NATS__PREFIX".into(), prefix.to_string()));
        OneClick {
            child: None,
            dir: dir.to_path_buf(),
            log: dir.join("oneclick.log"),
            env,
            prefix: prefix.to_string(),
            http_port,
        }
    }

    /// Runs `oneclick admin …` with this instance's settings; returns whether it succeeded and
    /// what it printed (stdout, then stderr).
    pub fn admin_status(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(bin())
            .arg("admin")
            .args(args)
            .envs(self.env.iter().cloned())
            .output()
            .expect("admin");
        status_and_output(&out)
    }

    /// Prepares keys and the demo merchant in `dir` for `database_url` (SQLite when `None`).
    pub fn prepare(dir: &Path, nats_url: &str, database_url: Option<String>) -> OneClick {
        // As deployed: a key file wrapped by a separate key-encryption key (docs/security/keys.md).
        let keys = dir.join("keys.txt");
        let kek = keys.with_extension("kek");
        if !keys.exists() {
            let out = Command::new(bin())
                .args(["admin", "keys", "generate", "--out"])
                .arg(&keys)
                .arg("--kek-file")
                .arg(&kek)
                .arg("--new-kek")
                .output()
                .expect("keys");
            assert!(
                out.status.success(),
                "keys generate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let http_port = free_port();
        let db = database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("oneclick.db").display()));
        let env = vec![
            ("ONECLICK__DATABASE__URL".to_string(), db),
            ("ONECLICK__KEYS__FILE".into(), keys.display().to_string()),
            ("ONECLICK__KEYS__KEK_FILE".into(), kek.display().to_string()),
            ("ONECLICK__NATS__URL".into(), nats_url.to_string()),
            ("ONECLICK__NATS__PREFIX".into(), prefix.clone()),
            (
                "ONECLICK__HTTP__LISTEN".into(),
                format!("127.0.0.1:{http_port}"),
            ),
            ("ONECLICK__LOG__LEVEL".into(), "debug".into()),
            ("ONECLICK__NATS__ACK_WAIT_SECS".into(), "3".into()),
            (
                "ONECLICK__NATS__BACKOFF_MS".into(),
                "[200, 500, 1000]".into(),
            ),
        ];
        let app = OneClick {
            child: None,
            dir: dir.to_path_buf(),
            log: dir.join("oneclick.log"),
            env,
            prefix,
            http_port,
        };
        app.admin(&["demo-seed"]);
        app
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Runs `oneclick admin …` with this instance's settings; panics on failure.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(bin())
            .arg("admin")
            .args(args)
            .envs(self.env.iter().cloned())
            .output()
            .expect("admin");
        assert!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Starts `oneclick serve` and waits until its health subject answers.
    pub async fn start(&mut self, client: &async_nats::Client) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(bin())
            .arg("serve")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn oneclick");
        self.child = Some(child);
        let subject = format!("{}.v1.health", self.prefix);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Ok(_)) = tokio::time::timeout(
                Duration::from_millis(500),
                client.request(subject.clone(), "{}".into()),
            )
            .await
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "oneclick exited early ({status}); log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < until,
                "oneclick did not become healthy; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > until {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit on its own (e.g. a test crash hook); returns whether it did.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return true;
                }
            } else {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn subject(&self, tail: &str) -> String {
        format!("{}.v1.{tail}", self.prefix)
    }

    pub fn metrics(&self) -> String {
        use std::io::Write as _;
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) else {
            return String::new();
        };
        let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Drop for OneClick {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a JSON request and returns the JSON reply. The reply comes back on an inbox of the
/// caller the subject names ([`crate::inbox::request_as_caller`]), whatever `client`'s own prefix.
pub async fn request(client: &async_nats::Client, subject: String, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).expect("json");
    request_raw(client, subject, bytes).await
}

pub async fn request_raw(client: &async_nats::Client, subject: String, bytes: Vec<u8>) -> Value {
    let reply = crate::inbox::request_as_caller(
        client,
        subject.clone(),
        bytes.into(),
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("request on {subject}: {e}"));
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|_| panic!("reply is not JSON: {:?}", reply.payload))
}

/// Sends a JSON request with `client`'s own inbox (a client connected with the right
/// `custom_inbox_prefix`) and returns the JSON reply.
pub async fn request_on(client: &async_nats::Client, subject: String, body: &Value) -> Value {
    let bytes = serde_json::to_vec(body).expect("json");
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.clone(), bytes.into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no reply on {subject}"))
    .unwrap_or_else(|e| panic!("request on {subject}: {e}"));
    serde_json::from_slice(&reply.payload)
        .unwrap_or_else(|_| panic!("reply is not JSON: {:?}", reply.payload))
}

/// A client of the private (no-auth) server with the inbox prefix `prefix`.
pub async fn connect_with_inbox(url: &str, prefix: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .custom_inbox_prefix(prefix)
        .connect(url)
        .await
        .expect("client connects")
}

/// R2 signature with the demo key.
pub fn sign(merchant: i64, order: &str, amount: &str, currency: &str, customer: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(DEMO_KEY_B64)
        .expect("demo key");
    let msg = oneclick_actors::domain::signature::message(
        &merchant.to_string(),
        order,
        amount,
        currency,
        customer,
    );
    oneclick_actors::domain::signature::sign(&key, &msg)
}

/// A signed order part for the demo merchant.
pub fn order(order: &str, amount: &str, customer: &str) -> Value {
    json!({
        "merchant_id": DEMO_MERCHANT.to_string(),
        "order_number": order,
        "order_amount": amount,
        "order_currency": "RUB",
        "customer_number": customer,
        "signature": sign(DEMO_MERCHANT, order, amount, "RUB", customer),
    })
}

pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

pub fn merchant_auth() -> Value {
    json!({"merchant_id": DEMO_MERCHANT.to_string(), "login": DEMO_LOGIN, "password": DEMO_PASSWORD})
}

pub fn card(number: &str, cvc: &str) -> Value {
    json!({"number": number, "expire_month": "12", "expire_year": "2030", "holder": "IVAN IVANOV", "cvc": cvc})
}

/// A running stack: NATS + oneclick (SQLite by default) + clients.
pub struct Stack {
    pub nats: NatsServer,
    pub app: OneClick,
    /// Default inbox (`_INBOX.…`): health, JetStream, `$SRV`. Gateway and merchant subjects
    /// sent from it go through [`request`], which picks the caller's inbox.
    pub client: async_nats::Client,
    /// The payment page: inbox prefix `_INBOX.gateway`.
    pub gateway: async_nats::Client,
    /// The demo merchant 452739: inbox prefix `_INBOX.merchant_452739`.
    pub merchant_client: async_nats::Client,
    pub dir: tempfile::TempDir,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(None, |_| {}).await
    }

    pub async fn start_with(
        database_url: Option<String>,
        configure: impl FnOnce(&mut OneClick),
    ) -> Stack {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut app = OneClick::prepare(dir.path(), &nats.url(), database_url);
        configure(&mut app);
        let client = async_nats::connect(nats.url())
            .await
            .expect("client connects");
        app.start(&client).await;
        let gateway = connect_with_inbox(&nats.url(), "_INBOX.gateway").await;
        let merchant_client =
            connect_with_inbox(&nats.url(), &format!("_INBOX.merchant_{DEMO_MERCHANT}")).await;
        Stack {
            nats,
            app,
            client,
            gateway,
            merchant_client,
            dir,
        }
    }

    /// A client of merchant `merchant_id` (inbox prefix `_INBOX.merchant_<id>`).
    pub async fn merchant_client_for(&self, merchant_id: i64) -> async_nats::Client {
        connect_with_inbox(&self.nats.url(), &format!("_INBOX.merchant_{merchant_id}")).await
    }

    pub async fn gw(&self, endpoint: &str, body: Value) -> Value {
        request_on(
            &self.gateway,
            self.app.subject(&format!("gw.{endpoint}")),
            &body,
        )
        .await
    }

    pub async fn merchant(&self, endpoint: &str, body: Value) -> Value {
        let body = merge(json!({"merchant": merchant_auth()}), body);
        request_on(
            &self.merchant_client,
            self.app
                .subject(&format!("merchant.{DEMO_MERCHANT}.{endpoint}")),
            &body,
        )
        .await
    }
}

/// `(faultcode, faultstring)` of a fault reply, if it is one.
pub fn fault_of(reply: &Value) -> Option<(i64, i64)> {
    let f = reply.get("fault")?;
    Some((
        f.get("faultcode")?.as_i64()?,
        f.get("faultstring")?.as_i64()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port that answers is not enough: when another program holds the port, the server this
    /// test started exits with "address already in use", and starting it says so instead of
    /// handing out a server that is someone else's.
    #[test]
    fn a_server_whose_port_is_taken_is_not_taken_for_ready() {
        let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = holder.local_addr().expect("addr").port();
        let store = tempfile::tempdir().expect("tempdir");
        let args = plain_args(port, store.path());
        let why = match NatsServer::try_spawn(port, store, &args, &[], None) {
            Ok(_) => panic!("a server was handed out on port {port}, which another program holds"),
            Err(why) => why,
        };
        assert!(why.contains("address already in use"), "{why}");
        // On a free port it starts, and answers as a NATS server.
        let server = NatsServer::start();
        let mut info = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(
                std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect"),
            ),
            &mut info,
        )
        .expect("INFO line");
        assert!(info.starts_with("INFO "), "{info}");
    }
}
