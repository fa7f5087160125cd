//! Settings: code defaults (identical to `config/base.toml`), then `config/base.toml` (or the file
//! given with `--config PATH`), then `<same dir>/<ONECLICK_ENV>.toml` when `ONECLICK_ENV` is set,
//! then environment variables `ONECLICK__SECTION__KEY` (`__` nests: `ONECLICK__DATABASE__URL`).
//!
//! Invariants:
//! - every key has a default, so the service starts with no file at all (one node, SQLite,
//!   simulator acquirer) and `config/base.toml` documents every key;
//! - key material never comes from `base.toml`: `keys.*` and passwords come from the environment
//!   or a key file, and every secret is a [`SecretString`] that redacts in `Debug`;
//! - every error names its key (`nats.partitions: must be 1..=1024`); figment's own errors do too
//!   (`… for key "nats.partitions" in ONECLICK__NATS__PARTITIONS environment variable`);
//!   validation messages never echo a secret value.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use oneclick_actors::crypto::{Keyring, MasterKey};
use oneclick_actors::secret::SecretString;
use oneclick_actors::vault::SqliteSync;
use serde::{Deserialize, Serialize};

/// The default settings file, relative to the working directory.
pub const DEFAULT_FILE: &str = "config/base.toml";
/// Names the per-environment file next to the base file (`production` → `production.toml`).
pub const ENV_VAR: &str = "ONECLICK_ENV";
/// Prefix of overriding environment variables; `__` separates section and key.
pub const ENV_PREFIX: &str = "ONECLICK__";

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Parse or type error, named by key and where the value came from.
    #[error("{}", describe(.0))]
    Load(Box<figment::Error>),
    #[error("{0}: file not found")]
    FileMissing(PathBuf),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Load(Box::new(e))
    }
}

/// `nats.partitions: invalid type: found string "many", expected u32 (from `ONECLICK__`
/// environment variable(s))`, one line per error. Figment's own text shows the environment's
/// upper-case spelling of the key; ours is the key as written in `base.toml`.
fn describe(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                "settings".to_string()
            } else {
                e.path.join(".").to_ascii_lowercase()
            };
            match &e.metadata {
                Some(m) => match &m.source {
                    Some(source) => format!("{key}: {} (from {} {source})", e.kind, m.name),
                    None => format!("{key}: {} (from {})", e.kind, m.name),
                },
                None => format!("{key}: {}", e.kind),
            }
        })
        .map(|line| redact_url(&line))
        .collect::<Vec<_>>()
        .join("; ")
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// All settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub service: ServiceSettings,
    pub nats: NatsSettings,
    pub database: DatabaseSettings,
    pub keys: KeysSettings,
    pub engine: EngineSection,
    pub acquirer: AcquirerSettings,
    pub log: LogSettings,
    pub http: HttpSettings,
    pub login: LoginSection,
    pub web: WebSettings,
    /// The demonstration payment page (`oneclick demo-page`; src/web/demo.rs).
    pub demo: crate::web::demo::DemoSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceSettings {
    /// Instance name in logs and the micro-service API.
    pub name: String,
    /// After a stop signal: stop taking work, finish in-flight work for at most this long.
    pub shutdown_grace_secs: u64,
    /// Deadline of one request-reply request inside oneclick.
    pub request_timeout_ms: u64,
    /// Larger request bodies get `RequestTooLarge` without being parsed.
    pub max_request_bytes: usize,
    /// On shutdown each endpoint asks the server to stop routing to it after as many more
    /// requests as it received in this many ms (its "tail", at least 2): an exact fence (see
    /// `surfaces::serve`), so the endpoint keeps serving for about this long under steady load.
    /// 0: no fence, a plain drain at once (the behaviour before issue 16; for comparison only).
    pub drain_tail_ms: u64,
    /// An endpoint whose tail has not arrived within this many ms (little traffic) stops with a
    /// plain drain instead, as does one that received nothing in the last `drain_tail_ms`.
    pub drain_window_ms: u64,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            name: "oneclick".into(),
            shutdown_grace_secs: 30,
            request_timeout_ms: 5000,
            max_request_bytes: 65536,
            drain_tail_ms: 500,
            drain_window_ms: 3000,
        }
    }
}

/// `Debug` is written out below: the URL may carry `user:password@` or a token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// One URL or a comma-separated list (`nats://`, `tls://`, `ws://`, `wss://`).
    pub url: String,
    /// First token of every subject; also names the streams (`ONECLICK_CMD`).
    pub prefix: String,
    /// Queue group of the request-reply subscriptions (replicas share work).
    pub queue_group: String,
    /// Command partitions = ordered consumers. Changing it re-routes customers: drain first.
    pub partitions: u32,
    /// Credentials: at most one of user+password, token, nkey_seed_file, creds_file (never in
    /// the URL: `validate` rejects a URL with user info, async-nats would ignore it).
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub token: Option<SecretString>,
    /// A file holding an NKey seed (`SU…`); read at connect, never logged.
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (user JWT + NKey seed) as `nsc` writes it.
    pub creds_file: Option<PathBuf>,
    /// PEM root certificate(s) the server's certificate must chain to; implies TLS required.
    pub tls_ca_file: Option<PathBuf>,
    /// Refuse a server that does not speak TLS (verified against the system roots unless
    /// `tls_ca_file` is set).
    pub tls_required: bool,
    /// JetStream: redeliver an unacknowledged command after this long.
    pub ack_wait_secs: u64,
    /// JetStream: deliveries before a command goes to the dead-letter subject.
    pub max_deliver: i64,
    /// JetStream: redelivery delays; NATS requires fewer entries than `max_deliver`.
    pub backoff_ms: Vec<u64>,
    /// JetStream: `Nats-Msg-Id` duplicates within this window are dropped.
    pub duplicate_window_secs: u64,
    /// JetStream: replicas of both streams (1 single server, 3 in a cluster).
    pub stream_replicas: usize,
    /// JetStream: events are kept this long.
    pub events_max_age_days: u64,
    /// Replies to gateway subjects go only to reply subjects under this prefix (the inbox prefix
    /// the gateway's NATS user may subscribe to); anything else is dropped and counted.
    pub gateway_inbox_prefix: String,
    /// Replies to `<p>.v1.merchant.<id>.…` go only under this prefix followed by `<id>.`
    /// (`_INBOX.merchant_452739.`); anything else is dropped and counted.
    pub merchant_inbox_prefix: String,
    /// Replies to the health subject and `$SRV` discovery go only under this prefix.
    pub health_inbox_prefix: String,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "oneclick".into(),
            queue_group: "oneclick".into(),
            partitions: 8,
            user: None,
            password: None,
            token: None,
            nkey_seed_file: None,
            creds_file: None,
            tls_ca_file: None,
            tls_required: false,
            ack_wait_secs: 30,
            max_deliver: 5,
            backoff_ms: vec![1000, 5000, 15000],
            duplicate_window_secs: 120,
            stream_replicas: 1,
            events_max_age_days: 7,
            gateway_inbox_prefix: "_INBOX.gateway.".into(),
            merchant_inbox_prefix: "_INBOX.merchant_".into(),
            health_inbox_prefix: "_INBOX.".into(),
        }
    }
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSettings")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("queue_group", &self.queue_group)
            .field("partitions", &self.partitions)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("token", &self.token)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("creds_file", &self.creds_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_required", &self.tls_required)
            .finish_non_exhaustive()
    }
}

impl NatsSettings {
    pub fn subjects(&self) -> crate::subjects::Subjects {
        crate::subjects::Subjects::new(self.prefix.clone())
    }

    /// The server URLs of `url` (one, or several comma-separated: every node of a cluster), in
    /// order; the client connects to one and fails over to the others.
    pub fn server_urls(&self) -> Vec<String> {
        server_urls(&self.url)
    }

    /// Which credentials the service will present, without any secret.
    pub fn identity(&self) -> NatsIdentity {
        match (
            &self.user,
            &self.token,
            &self.nkey_seed_file,
            &self.creds_file,
        ) {
            (Some(user), _, _, _) => NatsIdentity::UserPassword(user.clone()),
            (_, Some(_), _, _) => NatsIdentity::Token,
            (_, _, Some(file), _) => NatsIdentity::NkeySeedFile(file.clone()),
            (_, _, _, Some(file)) => NatsIdentity::CredsFile(file.clone()),
            _ => NatsIdentity::Anonymous,
        }
    }

    /// Whether and how the server's certificate is verified, for `admin config check`.
    pub fn tls_description(&self) -> String {
        match (
            &self.tls_ca_file,
            self.tls_required || self.url.contains("tls://"),
        ) {
            (Some(ca), _) => format!(
                "required, server certificate verified against {}",
                ca.display()
            ),
            (None, true) => "required, server certificate verified against the system roots".into(),
            (None, false) => "only if the server asks for it (system roots)".into(),
        }
    }
}

/// The identity a NATS connection presents (`admin config check` prints it; no secret inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsIdentity {
    Anonymous,
    UserPassword(String),
    Token,
    NkeySeedFile(PathBuf),
    CredsFile(PathBuf),
}

impl std::fmt::Display for NatsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsIdentity::Anonymous => f.write_str("anonymous (no credentials)"),
            NatsIdentity::UserPassword(user) => write!(f, "user {user:?} with a password"),
            NatsIdentity::Token => f.write_str("a token"),
            NatsIdentity::NkeySeedFile(p) => write!(f, "the NKey whose seed is in {}", p.display()),
            NatsIdentity::CredsFile(p) => write!(f, "the credentials file {}", p.display()),
        }
    }
}

/// True if a URL carries user info (`nats://user:password@host`, `nats://token@host`).
/// The URLs of a comma-separated list, trimmed, empty entries left out.
pub fn server_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@')
}

/// `Debug` is written out below: the URL may carry a password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://PATH`. May hold a password: set it from the environment.
    pub url: String,
    /// Connections = vault worker threads.
    pub pool_size: u32,
    /// `full` (durable through power loss) or `normal` (faster; the last commits may be lost
    /// on power loss).
    pub sqlite_synchronous: SqliteSync,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: "sqlite://.local/oneclick.db".into(),
            pool_size: 8,
            sqlite_synchronous: SqliteSync::Full,
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .finish()
    }
}

/// Card-encryption keys. Never in `base.toml`: environment or a key file only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysSettings {
    /// A key file (versioned master keys and the fingerprint key).
    pub file: Option<PathBuf>,
    /// `VERSION:BASE64[,VERSION:BASE64…]` (32-byte AES-256 keys).
    pub master_keys: Option<SecretString>,
    /// The version new ciphertexts use; default the highest.
    pub current: Option<u32>,
    /// Base64 HMAC key of card fingerprints (R11).
    pub fingerprint_key: Option<SecretString>,
    /// The key-encryption key (KEK) that unwraps a wrapped key file: a file holding one base64
    /// line of 32 bytes, mode 0600, kept apart from the key file (`ONECLICK__KEYS__KEK_FILE`).
    pub kek_file: Option<PathBuf>,
    /// The KEK itself, base64 of 32 bytes, from the environment only (`ONECLICK__KEYS__KEK`).
    pub kek: Option<SecretString>,
    /// Accept plaintext key material (a key file without `format = wrapped-v1`, or
    /// `keys.master_keys`): for development only; a deployment wraps its key file.
    pub allow_plaintext: bool,
}

/// The `[engine]` section (see [`oneclick_actors::engine::EngineSettings`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    pub actor_idle_secs: u64,
    /// Most cached customer actors; the least recently used are evicted past it.
    pub max_actors: usize,
    pub registry_shards: usize,
    pub state_ttl_ms: u64,
    pub credential_cache_secs: u64,
    pub merchant_cache_ms: u64,
    pub group_commit_writers: usize,
    pub group_commit_max_batch: usize,
    pub in_doubt_after_secs: u64,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            actor_idle_secs: 300,
            max_actors: 100_000,
            registry_shards: 64,
            state_ttl_ms: 5000,
            credential_cache_secs: 60,
            merchant_cache_ms: 1000,
            group_commit_writers: 2,
            group_commit_max_batch: 64,
            in_doubt_after_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcquirerKind {
    /// The deterministic simulator (docs: test cards).
    #[default]
    Simulator,
    /// Request-reply to an external acquiring host on `acquirer.nats_subject`.
    Nats,
}

impl AcquirerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AcquirerKind::Simulator => "simulator",
            AcquirerKind::Nats => "nats",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcquirerSettings {
    pub kind: AcquirerKind,
    pub simulator_latency_ms: u64,
    pub nats_subject: String,
    /// After this long an authorization is in doubt (`Timeout`, amount kept reserved, R12).
    pub timeout_ms: u64,
}

impl Default for AcquirerSettings {
    fn default() -> Self {
        AcquirerSettings {
            kind: AcquirerKind::Simulator,
            simulator_latency_ms: 0,
            nats_subject: crate::subjects::ACQUIRER_AUTHORIZE.into(),
            timeout_ms: 10000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Human => "human",
            LogFormat::Json => "json",
        }
    }
}

impl PartialEq<&str> for LogFormat {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A level (`info`) or an `EnvFilter` directive list (`info,oneclick=debug`).
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// The `[login]` section: merchant-login defences (see
/// [`oneclick_actors::engine::merchants::LoginSettings`] and docs/security/login.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginSection {
    pub max_failures: u32,
    pub lockout_secs: u64,
    pub argon2_concurrency: usize,
    pub throttle_burst: u32,
    pub throttle_per_minute: u32,
    pub throttle_max_sources: usize,
}

impl Default for LoginSection {
    fn default() -> Self {
        let d = oneclick_actors::engine::merchants::LoginSettings::default();
        LoginSection {
            max_failures: d.max_failures,
            lockout_secs: d.lockout.as_secs(),
            argon2_concurrency: d.argon2_concurrency,
            throttle_burst: d.throttle_burst,
            throttle_per_minute: d.throttle_per_minute,
            throttle_max_sources: d.throttle_max_sources,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// `/metrics` and `/health`.
    pub listen: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:9090".into(),
        }
    }
}

/// The `[web]` section: the original HTTP web services over HTTPS (docs/http.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSettings {
    /// HOST:PORT of the HTTPS listener; empty: no web services.
    pub listen: String,
    /// PEM certificate chain of the listener (required with `listen`).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the listener (required with `listen`).
    pub tls_key_file: Option<PathBuf>,
    /// TLS handshake and request head must arrive within this long.
    pub header_timeout_ms: u64,
    /// The request body must arrive within this long.
    pub body_timeout_ms: u64,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Peers (reverse proxies) whose `X-Forwarded-For` names the client; nobody else's is read.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Serve the merchant's personal account under `/account/` on the same listener.
    pub account: bool,
    /// A personal-account session ends after this long without a request.
    pub session_idle_secs: u64,
    /// Personal-account sessions kept at once (least recently used dropped beyond).
    pub max_sessions: usize,
}

impl Default for WebSettings {
    fn default() -> Self {
        WebSettings {
            listen: String::new(),
            tls_cert_file: None,
            tls_key_file: None,
            header_timeout_ms: 5000,
            body_timeout_ms: 10_000,
            max_connections: 256,
            trusted_proxies: Vec::new(),
            account: true,
            session_idle_secs: 900,
            max_sessions: 10_000,
        }
    }
}

impl Settings {
    /// Loads and validates. `path` replaces `config/base.toml` (and must exist).
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let settings: Settings = Settings::figment(path)?.extract()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The layered providers, before extraction.
    pub fn figment(path: Option<&Path>) -> Result<Figment, ConfigError> {
        let base = match path {
            Some(p) if !p.is_file() => return Err(ConfigError::FileMissing(p.to_path_buf())),
            Some(p) => p.to_path_buf(),
            None => PathBuf::from(DEFAULT_FILE),
        };
        let mut figment = Figment::new();
        // Without an explicit path a missing base file means "defaults only".
        if base.is_file() {
            figment = figment.merge(Toml::file_exact(&base));
        }
        if let Some(env) = std::env::var(ENV_VAR).ok().filter(|e| !e.is_empty()) {
            if !env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(ENV_VAR, "expected letters, digits, '_' or '-'"));
            }
            let file = base.with_file_name(format!("{env}.toml"));
            if !file.is_file() {
                // A typo in ONECLICK_ENV must not silently run on defaults.
                return Err(ConfigError::FileMissing(file));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        Ok(figment.merge(Env::prefixed(ENV_PREFIX).split("__")))
    }

    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_service()?;
        self.validate_nats()?;
        self.validate_database()?;
        self.validate_keys()?;
        self.validate_engine()?;
        self.validate_login()?;
        self.validate_acquirer()?;
        self.validate_log_and_http()?;
        self.validate_web()?;
        self.demo
            .validate()
            .map_err(|(key, message)| invalid(key, message))
    }

    fn validate_web(&self) -> Result<(), ConfigError> {
        let w = &self.web;
        if !(100..=600_000).contains(&w.header_timeout_ms) {
            return Err(invalid("web.header_timeout_ms", "must be 100..=600000"));
        }
        if !(100..=600_000).contains(&w.body_timeout_ms) {
            return Err(invalid("web.body_timeout_ms", "must be 100..=600000"));
        }
        if !(1..=65_536).contains(&w.max_connections) {
            return Err(invalid("web.max_connections", "must be 1..=65536"));
        }
        if !(60..=86_400).contains(&w.session_idle_secs) {
            return Err(invalid("web.session_idle_secs", "must be 60..=86400"));
        }
        if !(1..=1_000_000).contains(&w.max_sessions) {
            return Err(invalid("web.max_sessions", "must be 1..=1000000"));
        }
        if w.listen.is_empty() {
            return Ok(());
        }
        if w.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "web.listen",
                "expected HOST:PORT with an IP address",
            ));
        }
        // HTTPS only: the services carry passwords (and Token Pay orders).
        if w.tls_cert_file.is_none() {
            return Err(invalid(
                "web.tls_cert_file",
                "required when web.listen is set",
            ));
        }
        if w.tls_key_file.is_none() {
            return Err(invalid(
                "web.tls_key_file",
                "required when web.listen is set",
            ));
        }
        Ok(())
    }

    fn validate_service(&self) -> Result<(), ConfigError> {
        let s = &self.service;
        if s.name.trim().is_empty() {
            return Err(invalid("service.name", "must not be empty"));
        }
        if s.shutdown_grace_secs > 3600 {
            return Err(invalid("service.shutdown_grace_secs", "must be 0..=3600"));
        }
        if s.drain_tail_ms > 60_000 {
            return Err(invalid("service.drain_tail_ms", "must be 0..=60000"));
        }
        if s.drain_window_ms < s.drain_tail_ms || s.drain_window_ms > 600_000 {
            return Err(invalid(
                "service.drain_window_ms",
                "must be at least service.drain_tail_ms and at most 600000",
            ));
        }
        if !(1..=600_000).contains(&s.request_timeout_ms) {
            return Err(invalid("service.request_timeout_ms", "must be 1..=600000"));
        }
        // NATS' default max_payload is 1 MiB: a larger limit could never be reached.
        if !(256..=1_048_576).contains(&s.max_request_bytes) {
            return Err(invalid(
                "service.max_request_bytes",
                "must be 256..=1048576",
            ));
        }
        Ok(())
    }

    fn validate_nats(&self) -> Result<(), ConfigError> {
        let n = &self.nats;
        let urls: Vec<&str> = n.url.split(',').map(str::trim).collect();
        if urls.iter().any(|u| {
            !["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|scheme| u.starts_with(scheme) && u.len() > scheme.len())
        }) {
            return Err(invalid(
                "nats.url",
                "must start with nats://, tls://, ws:// or wss:// (comma-separated for several)",
            ));
        }
        if n.prefix.is_empty()
            || !n
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "nats.prefix",
                "must be one subject token of letters, digits, '_' or '-'",
            ));
        }
        if n.queue_group.is_empty()
            || n.queue_group
                .contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
        {
            return Err(invalid(
                "nats.queue_group",
                "must be non-empty, without spaces or wildcards",
            ));
        }
        if !(1..=1024).contains(&n.partitions) {
            return Err(invalid("nats.partitions", "must be 1..=1024"));
        }
        // async-nats ignores user info in a URL: the CONNECT would carry no credentials and the
        // server would answer "authorization violation" forever. Refuse it instead (the message
        // never echoes the URL, which holds the secret).
        if urls.iter().any(|u| url_has_credentials(u)) {
            return Err(invalid(
                "nats.url",
                "credentials inside the URL are not supported; set nats.user and nats.password \
                 (ONECLICK__NATS__USER / ONECLICK__NATS__PASSWORD), nats.token, \
                 nats.nkey_seed_file or nats.creds_file instead",
            ));
        }
        if n.user.is_some() != n.password.is_some() {
            return Err(invalid(
                "nats.password",
                "nats.user and nats.password must be set together",
            ));
        }
        let methods = [
            n.user.is_some(),
            n.token.is_some(),
            n.nkey_seed_file.is_some(),
            n.creds_file.is_some(),
        ];
        if methods.iter().filter(|set| **set).count() > 1 {
            return Err(invalid(
                "nats.token",
                "set only one of nats.user+password, nats.token, nats.nkey_seed_file, nats.creds_file",
            ));
        }
        if n.token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err(invalid("nats.token", "must not be empty"));
        }
        for (key, file) in [
            ("nats.nkey_seed_file", &n.nkey_seed_file),
            ("nats.creds_file", &n.creds_file),
            ("nats.tls_ca_file", &n.tls_ca_file),
        ] {
            if let Some(file) = file {
                if !file.is_file() {
                    return Err(invalid(key, format!("{}: file not found", file.display())));
                }
            }
        }
        if n.ack_wait_secs == 0 {
            return Err(invalid("nats.ack_wait_secs", "must be at least 1"));
        }
        if n.max_deliver < 1 {
            return Err(invalid("nats.max_deliver", "must be at least 1"));
        }
        if n.backoff_ms.contains(&0) {
            return Err(invalid("nats.backoff_ms", "every delay must be at least 1"));
        }
        if !n.backoff_ms.is_empty() && n.backoff_ms.len() as i64 >= n.max_deliver {
            return Err(invalid(
                "nats.backoff_ms",
                "must have fewer entries than nats.max_deliver (a NATS rule)",
            ));
        }
        if n.duplicate_window_secs == 0 {
            return Err(invalid("nats.duplicate_window_secs", "must be at least 1"));
        }
        if !(1..=5).contains(&n.stream_replicas) {
            return Err(invalid("nats.stream_replicas", "must be 1..=5"));
        }
        if n.events_max_age_days == 0 {
            return Err(invalid("nats.events_max_age_days", "must be at least 1"));
        }
        for (name, prefix) in [
            ("nats.gateway_inbox_prefix", &n.gateway_inbox_prefix),
            ("nats.merchant_inbox_prefix", &n.merchant_inbox_prefix),
            ("nats.health_inbox_prefix", &n.health_inbox_prefix),
        ] {
            // A reply prefix must be a literal subject start: no wildcards, no spaces, and never
            // `$` (the JetStream and micro-service APIs live there).
            if prefix.is_empty()
                || prefix.starts_with('$')
                || prefix.starts_with('.')
                || prefix.contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
            {
                return Err(invalid(
                    name,
                    "must be a literal subject start (no spaces, wildcards or leading '$')",
                ));
            }
        }
        Ok(())
    }

    fn validate_database(&self) -> Result<(), ConfigError> {
        let d = &self.database;
        let ok = ["postgres://", "postgresql://", "sqlite://"]
            .iter()
            .any(|scheme| d.url.starts_with(scheme) && d.url.len() > scheme.len());
        if !ok {
            return Err(invalid(
                "database.url",
                "must start with postgres:// or sqlite://",
            ));
        }
        if !(1..=1024).contains(&d.pool_size) {
            return Err(invalid("database.pool_size", "must be 1..=1024"));
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), ConfigError> {
        let k = &self.keys;
        // The keyring's own parser, so config and startup agree; its messages never hold a key.
        let versions: Vec<u32> = match &k.master_keys {
            Some(spec) => Keyring::parse_spec(spec.expose())
                .map_err(|e| {
                    invalid(
                        "keys.master_keys",
                        format!(
                            "expected VERSION:BASE64[,VERSION:BASE64...] of 32-byte keys ({e})"
                        ),
                    )
                })?
                .into_iter()
                .map(|(version, _)| version)
                .collect(),
            None => Vec::new(),
        };
        if k.master_keys.is_some() && versions.is_empty() {
            return Err(invalid("keys.master_keys", "no key given"));
        }
        if let Some(current) = k.current {
            if k.master_keys.is_some() && !versions.contains(&current) {
                return Err(invalid(
                    "keys.current",
                    "must be one of the versions in keys.master_keys",
                ));
            }
            if k.master_keys.is_none() && k.file.is_none() {
                return Err(invalid(
                    "keys.current",
                    "needs keys.master_keys or keys.file",
                ));
            }
        }
        if let Some(fp) = &k.fingerprint_key {
            if MasterKey::from_base64(fp.expose()).is_err() {
                return Err(invalid(
                    "keys.fingerprint_key",
                    "expected base64 of 32 bytes",
                ));
            }
        }
        if k.kek.is_some() && k.kek_file.is_some() {
            return Err(invalid(
                "keys.kek",
                "give keys.kek or keys.kek_file, not both",
            ));
        }
        if let Some(kek) = &k.kek {
            if MasterKey::from_base64(kek.expose()).is_err() {
                return Err(invalid("keys.kek", "expected base64 of 32 bytes"));
            }
        }
        Ok(())
    }

    fn validate_engine(&self) -> Result<(), ConfigError> {
        let e = &self.engine;
        if e.actor_idle_secs == 0 {
            return Err(invalid("engine.actor_idle_secs", "must be at least 1"));
        }
        if !(16..=100_000_000).contains(&e.max_actors) {
            return Err(invalid("engine.max_actors", "must be 16..=100000000"));
        }
        if !(1..=4096).contains(&e.registry_shards) {
            return Err(invalid("engine.registry_shards", "must be 1..=4096"));
        }
        if e.group_commit_writers == 0 || e.group_commit_writers >= self.database.pool_size as usize
        {
            return Err(invalid(
                "engine.group_commit_writers",
                "must be at least 1 and below database.pool_size",
            ));
        }
        if e.in_doubt_after_secs == 0 {
            return Err(invalid("engine.in_doubt_after_secs", "must be at least 1"));
        }
        if !(1..=1024).contains(&e.group_commit_max_batch) {
            return Err(invalid("engine.group_commit_max_batch", "must be 1..=1024"));
        }
        Ok(())
    }

    fn validate_login(&self) -> Result<(), ConfigError> {
        let l = &self.login;
        if !(1..=10).contains(&l.max_failures) {
            return Err(invalid(
                "login.max_failures",
                "must be 1..=10 (PCI DSS 8.3.4: at most 10 attempts)",
            ));
        }
        if l.lockout_secs == 0 {
            return Err(invalid("login.lockout_secs", "must be at least 1"));
        }
        if !(1..=64).contains(&l.argon2_concurrency) {
            return Err(invalid("login.argon2_concurrency", "must be 1..=64"));
        }
        if l.throttle_burst == 0 || l.throttle_per_minute == 0 {
            return Err(invalid(
                "login.throttle_burst",
                "throttle_burst and throttle_per_minute must be at least 1",
            ));
        }
        if l.throttle_max_sources == 0 {
            return Err(invalid("login.throttle_max_sources", "must be at least 1"));
        }
        Ok(())
    }

    /// The login policy from `[login]`.
    pub fn login_settings(&self) -> oneclick_actors::engine::merchants::LoginSettings {
        let l = &self.login;
        oneclick_actors::engine::merchants::LoginSettings {
            max_failures: l.max_failures,
            lockout: Duration::from_secs(l.lockout_secs),
            argon2_concurrency: l.argon2_concurrency,
            throttle_burst: l.throttle_burst,
            throttle_per_minute: l.throttle_per_minute,
            throttle_max_sources: l.throttle_max_sources,
        }
    }

    fn validate_acquirer(&self) -> Result<(), ConfigError> {
        let a = &self.acquirer;
        let subject_ok = !a.nats_subject.is_empty()
            && !a
                .nats_subject
                .contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
            && a.nats_subject.split('.').all(|t| !t.is_empty());
        if !subject_ok {
            return Err(invalid(
                "acquirer.nats_subject",
                "must be a concrete NATS subject (no spaces, wildcards or empty tokens)",
            ));
        }
        if a.timeout_ms == 0 {
            return Err(invalid("acquirer.timeout_ms", "must be at least 1"));
        }
        Ok(())
    }

    fn validate_log_and_http(&self) -> Result<(), ConfigError> {
        let level = self.log.level.trim();
        let plain = ["trace", "debug", "info", "warn", "error", "off"]
            .contains(&level.to_ascii_lowercase().as_str());
        // Directive lists (`info,oneclick=debug`) go through EnvFilter's own parser.
        if !plain
            && (!level.contains('=') || tracing_subscriber::EnvFilter::try_new(level).is_err())
        {
            return Err(invalid(
                "log.level",
                "expected trace, debug, info, warn, error, off or an EnvFilter directive list",
            ));
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                "expected HOST:PORT with an IP address",
            ));
        }
        Ok(())
    }

    /// The engine's tuning from `[engine]` (and `database.pool_size` vault workers).
    pub fn engine_settings(&self) -> oneclick_actors::engine::EngineSettings {
        let e = &self.engine;
        oneclick_actors::engine::EngineSettings {
            actor_idle: Duration::from_secs(e.actor_idle_secs),
            max_actors: e.max_actors,
            registry_shards: e.registry_shards,
            state_ttl: Duration::from_millis(e.state_ttl_ms),
            credential_cache: Duration::from_secs(e.credential_cache_secs),
            merchant_cache: Duration::from_millis(e.merchant_cache_ms),
            vault_workers: self.database.pool_size as usize - e.group_commit_writers,
            group_commit_writers: e.group_commit_writers,
            group_commit_max_batch: e.group_commit_max_batch,
            in_doubt_after: Duration::from_secs(e.in_doubt_after_secs),
            login: self.login_settings(),
            ..oneclick_actors::engine::EngineSettings::default()
        }
    }
}

/// Query parameters that hold a secret (`postgres://h/db?password=…`, `nats://h?token=…`).
const SECRET_QUERY_KEYS: &[&str] = &[
    "password",
    "sslpassword",
    "pass",
    "token",
    "auth_token",
    "secret",
    "nkey",
    "jwt",
];

/// The one redaction of credentials in URLs, for everything that prints or logs a URL (settings
/// `Debug`, configuration errors, connection errors, the client CLI). Works on any text: every
/// `scheme://` in it has its userinfo replaced (`user:password@` → `user:***@`, a bare
/// `token@` → `***@`) and its secret query parameters (`password=`, `token=`, …) masked.
/// Comma-separated server lists are handled URL by URL. When in doubt it masks more (everything
/// up to the last `@` of a URL counts as userinfo, since a password may hold `/` or `@`).
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let token_end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(tail.len());
        let token = &tail[..token_end];
        // A list `a://…,b://…`: this URL ends at the comma before the next scheme.
        let end = match token.find("://") {
            Some(next) => token[..next].rfind(',').unwrap_or(next),
            None => token.len(),
        };
        out.push_str(&redact_one_url(&token[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `user:password@host/path?query` (what follows `scheme://`) with its secrets masked.
fn redact_one_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let after = match url.rfind('@') {
        Some(at) => {
            match url[..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str("***"),
            }
            &url[at..]
        }
        None => url,
    };
    match after.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _))
                        if SECRET_QUERY_KEYS.contains(&key.to_ascii_lowercase().as_str()) =>
                    {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&masked.join("&"));
        }
        None => out.push_str(after),
    }
    out
}

#[cfg(test)]
// figment::Jail closures must return figment's (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    const BASE: &str = include_str!("../config/base.toml");

    fn load_in(jail: &Jail) -> Result<Settings, ConfigError> {
        Settings::load(Some(&jail.directory().join("config/base.toml")))
    }

    #[test]
    fn base_toml_equals_the_code_defaults_and_holds_no_key_material() -> Result<(), ConfigError> {
        let from_file: Settings = Figment::new().merge(Toml::string(BASE)).extract()?;
        assert_eq!(from_file, Settings::default());
        Settings::default().validate()?;
        for line in BASE.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            for secret in [
                "master_keys",
                "fingerprint_key",
                "password",
                "token",
                "kek ",
                "kek=",
            ] {
                assert!(!line.starts_with(secret), "base.toml sets {secret}");
            }
        }
        Ok(())
    }

    #[test]
    fn every_key_is_documented_in_base_toml() -> Result<(), serde_json::Error> {
        let json = serde_json::to_value(Settings::default())?;
        for (section, keys) in json.as_object().into_iter().flatten() {
            assert!(
                BASE.contains(&format!("[{section}]")),
                "[{section}] missing"
            );
            for key in keys.as_object().into_iter().flatten().map(|(k, _)| k) {
                assert!(
                    BASE.lines().any(|l| {
                        let l = l.trim_start_matches(['#', ' ']);
                        l.starts_with(&format!("{key} =")) || l.starts_with(&format!("{key}:"))
                    }),
                    "{section}.{key} is not documented in config/base.toml"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn defaults_load_from_base_toml() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_dir("config")?;
            jail.create_file("config/base.toml", BASE)?;
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings, Settings::default());
            assert_eq!(settings.nats.backoff_ms, vec![1000, 5000, 15000]);
            Ok(())
        });
    }

    #[test]
    fn no_file_at_all_still_loads_the_defaults() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings, Settings::default());
            Ok(())
        });
    }

    #[test]
    fn env_file_then_env_vars_override_in_order() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_dir("config")?;
            jail.create_file("config/base.toml", BASE)?;
            jail.create_file(
                "config/production.toml",
                "[database]\nurl = \"postgres://db/oneclick\"\npool_size = 16\n[log]\nformat = \"json\"\n",
            )?;
            jail.set_env("ONECLICK_ENV", "production");
            jail.set_env("ONECLICK__DATABASE__POOL_SIZE", "32");
            jail.set_env("ONECLICK__NATS__BACKOFF_MS", "[500, 2000]");
            jail.set_env("ONECLICK__KEYS__MASTER_KEYS", "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,2:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=");
            jail.set_env("ONECLICK__KEYS__CURRENT", "2");
            jail.set_env("ONECLICK__ACQUIRER__KIND", "nats");
            let s = load_in(jail).map_err(|e| e.to_string())?;
            assert_eq!(s.database.url, "postgres://db/oneclick");
            assert_eq!(s.database.pool_size, 32);
            assert_eq!(s.log.format, LogFormat::Json);
            assert_eq!(s.nats.backoff_ms, vec![500, 2000]);
            assert_eq!(s.keys.current, Some(2));
            assert_eq!(s.acquirer.kind, AcquirerKind::Nats);
            // Group-commit writers hold connections of the same pool.
            assert_eq!(
                s.engine_settings().vault_workers,
                32 - s.engine.group_commit_writers
            );
            let debug = format!("{s:?}");
            assert!(
                !debug.contains("AAAAAAAA") && !debug.contains("BBBBBBBB"),
                "{debug}"
            );
            Ok(())
        });
    }

    #[test]
    fn explicit_path_and_env_file_must_exist() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let missing = Settings::load(Some(Path::new("nope.toml")));
            assert!(matches!(missing, Err(ConfigError::FileMissing(_))));
            jail.create_file("custom.toml", "[nats]\npartitions = 4\n")?;
            let s = Settings::load(Some(Path::new("custom.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.nats.partitions, 4);
            jail.set_env("ONECLICK_ENV", "staging");
            let err = Settings::load(Some(Path::new("custom.toml")))
                .err()
                .map(|e| e.to_string());
            assert!(err.unwrap_or_default().contains("staging.toml"));
            Ok(())
        });
    }

    fn error_with(vars: &[(&str, &str)]) -> String {
        let mut message = String::new();
        Jail::expect_with(|jail| {
            jail.clear_env();
            for (k, v) in vars {
                jail.set_env(k, v);
            }
            message = Settings::load(None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            Ok(())
        });
        message
    }

    #[test]
    fn reply_inbox_prefixes_must_be_literal_and_never_an_api_subject() {
        for (var, value, key) in [
            (
                "ONECLICK__NATS__GATEWAY_INBOX_PREFIX",
                "$JS.API.",
                "nats.gateway_inbox_prefix",
            ),
            (
                "ONECLICK__NATS__MERCHANT_INBOX_PREFIX",
                "_INBOX.*.",
                "nats.merchant_inbox_prefix",
            ),
            (
                "ONECLICK__NATS__HEALTH_INBOX_PREFIX",
                "",
                "nats.health_inbox_prefix",
            ),
        ] {
            let got = error_with(&[(var, value)]);
            assert!(got.contains(key), "{var}={value:?}: {got}");
        }
    }

    #[test]
    fn drain_settings_are_bounded_and_the_window_covers_the_tail() {
        let got = error_with(&[("ONECLICK__SERVICE__DRAIN_TAIL_MS", "60001")]);
        assert!(
            got.contains("service.drain_tail_ms: must be 0..=60000"),
            "{got}"
        );
        let got = error_with(&[
            ("ONECLICK__SERVICE__DRAIN_TAIL_MS", "800"),
            ("ONECLICK__SERVICE__DRAIN_WINDOW_MS", "700"),
        ]);
        assert!(got.contains("service.drain_window_ms"), "{got}");
        // 0 is accepted: no fence (for comparison runs).
        assert_eq!(error_with(&[("ONECLICK__SERVICE__DRAIN_TAIL_MS", "0")]), "");
    }

    #[test]
    fn a_comma_separated_nats_url_is_every_node_in_order() {
        let nats = NatsSettings {
            url: "tls://nats-1:4222, tls://nats-2:4222,tls://nats-3:4222".into(),
            ..NatsSettings::default()
        };
        assert_eq!(
            nats.server_urls(),
            [
                "tls://nats-1:4222",
                "tls://nats-2:4222",
                "tls://nats-3:4222"
            ]
        );
        assert_eq!(
            NatsSettings::default().server_urls(),
            ["nats://127.0.0.1:4222"]
        );
        let got = error_with(&[("ONECLICK__NATS__URL", "nats://a:4222,,nats://b:4222")]);
        assert!(got.contains("nats.url"), "an empty entry is refused: {got}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("ONECLICK__DATABASE__URL", "mysql://x")],
                "database.url: must start with postgres:// or sqlite://",
            ),
            (
                &[("ONECLICK__NATS__PARTITIONS", "0")],
                "nats.partitions: must be 1..=1024",
            ),
            (&[("ONECLICK__NATS__PARTITIONS", "many")], "nats.partitions"),
            (&[("ONECLICK__LOG__FORMAT", "xml")], "log.format"),
            (&[("ONECLICK__LOG__LEVEL", "loud")], "log.level"),
            (
                &[("ONECLICK__DATABASE__SQLITE_SYNCHRONOUS", "off")],
                "database.sqlite_synchronous",
            ),
            (&[("ONECLICK__NATS__URL", "http://x")], "nats.url"),
            (&[("ONECLICK__NATS__PREFIX", "a.b")], "nats.prefix"),
            (
                &[("ONECLICK__NATS__BACKOFF_MS", "[1,2,3,4,5]")],
                "nats.backoff_ms",
            ),
            (&[("ONECLICK__NATS__USER", "u")], "nats.password"),
            (&[("ONECLICK__HTTP__LISTEN", "localhost")], "http.listen"),
            (
                &[("ONECLICK__ACQUIRER__NATS_SUBJECT", "acq.*")],
                "acquirer.nats_subject",
            ),
            (
                &[("ONECLICK__KEYS__MASTER_KEYS", "secretvalue")],
                "keys.master_keys",
            ),
            (
                &[
                    (
                        "ONECLICK__KEYS__MASTER_KEYS",
                        "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                    ),
                    ("ONECLICK__KEYS__CURRENT", "2"),
                ],
                "keys.current",
            ),
            (
                &[("ONECLICK__SERVICE__MAX_REQUEST_BYTES", "0")],
                "service.max_request_bytes",
            ),
            (
                &[("ONECLICK__ENGINE__REGISTRY_SHARDS", "0")],
                "engine.registry_shards",
            ),
        ];
        for (vars, want) in cases {
            let got = error_with(vars);
            assert!(got.contains(want), "{vars:?}: expected {want:?} in {got:?}");
            assert!(!got.contains("secretvalue"), "secret echoed: {got}");
        }
    }

    #[test]
    fn a_nats_url_with_credentials_is_refused_without_echoing_them() {
        for url in [
            "nats://oneclick:secretvalue@nats:4222",
            "tls://secretvalue@nats:4222",
            "nats://a:4222,nats://u:secretvalue@b:4222",
        ] {
            let got = error_with(&[("ONECLICK__NATS__URL", url)]);
            assert!(
                got.contains("nats.url: credentials inside the URL are not supported"),
                "{url}: {got}"
            );
            assert!(!got.contains("secretvalue"), "secret echoed: {got}");
        }
        // Control: the same URLs without user info load.
        assert_eq!(
            error_with(&[("ONECLICK__NATS__URL", "tls://nats:4222")]),
            ""
        );
        assert_eq!(
            error_with(&[
                ("ONECLICK__NATS__URL", "tls://nats:4222"),
                ("ONECLICK__NATS__USER", "oneclick"),
                ("ONECLICK__NATS__PASSWORD", "secretvalue"),
            ]),
            ""
        );
    }

    #[test]
    fn only_one_nats_credential_kind_may_be_set() {
        let got = error_with(&[
            ("ONECLICK__NATS__USER", "oneclick"),
            ("ONECLICK__NATS__PASSWORD", "secretvalue"),
            ("ONECLICK__NATS__TOKEN", "secretvalue"),
        ]);
        assert!(got.contains("set only one of"), "{got}");
        assert!(!got.contains("secretvalue"), "{got}");
        let got = error_with(&[("ONECLICK__NATS__CREDS_FILE", "/nonexistent/x.creds")]);
        assert!(
            got.contains("nats.creds_file: /nonexistent/x.creds: file not found"),
            "{got}"
        );
        let got = error_with(&[("ONECLICK__NATS__TLS_CA_FILE", "/nonexistent/ca.crt")]);
        assert!(got.contains("nats.tls_ca_file"), "{got}");
    }

    #[test]
    fn the_nats_identity_names_the_user_or_the_file_but_never_the_secret() {
        let mut nats = NatsSettings::default();
        assert_eq!(nats.identity().to_string(), "anonymous (no credentials)");
        nats.token = Some(SecretString::new("secretvalue"));
        assert_eq!(nats.identity().to_string(), "a token");
        nats.token = None;
        nats.user = Some("gateway".into());
        nats.password = Some(SecretString::new("secretvalue"));
        assert_eq!(
            nats.identity().to_string(),
            r#"user "gateway" with a password"#
        );
        assert!(!format!("{nats:?}").contains("secretvalue"));
        nats.user = None;
        nats.password = None;
        nats.creds_file = Some(PathBuf::from("/run/secrets/oneclick.creds"));
        assert_eq!(
            nats.identity().to_string(),
            "the credentials file /run/secrets/oneclick.creds"
        );
        nats.url = "tls://nats:4222".into();
        assert!(nats.tls_description().starts_with("required"));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("x.toml", "[nats]\npartitons = 4\n")?;
            let err = Settings::load(Some(Path::new("x.toml")))
                .err()
                .map(|e| e.to_string());
            assert!(err.unwrap_or_default().contains("partitons"));
            Ok(())
        });
    }

    #[test]
    fn redact_url_masks_passwords_tokens_and_secret_parameters_and_keeps_the_rest() {
        let cases = [
            (
                "postgres://oneclick:pg-s3cret@db:5432/oneclick",
                "postgres://oneclick:***@db:5432/oneclick",
            ),
            (
                "nats://oneclick:n4ts-s3cret@127.0.0.1:4222",
                "nats://oneclick:***@127.0.0.1:4222",
            ),
            (
                "nats://tok3n-s3cret@127.0.0.1:4222",
                "nats://***@127.0.0.1:4222",
            ),
            (
                "postgres://db/oneclick?sslmode=require&password=pg-s3cret",
                "postgres://db/oneclick?sslmode=require&password=***",
            ),
            (
                "nats://h1:4222?token=tok3n-s3cret",
                "nats://h1:4222?token=***",
            ),
            (
                "nats://a:p1-s3cret@h1:4222,nats://b:p2-s3cret@h2:4222",
                "nats://a:***@h1:4222,nats://b:***@h2:4222",
            ),
            // A password holding `/` and `@` is still masked whole.
            ("postgres://u:p/a@ss-s3cret@db/x", "postgres://u:***@db/x"),
            (
                "cannot connect to NATS at nats://u:p-s3cret@h:1: timed out",
                "cannot connect to NATS at nats://u:***@h:1: timed out",
            ),
            ("sqlite://.local/oneclick.db", "sqlite://.local/oneclick.db"),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("no url here", "no url here"),
        ];
        for (input, want) in cases {
            let got = redact_url(input);
            assert_eq!(got, want, "{input}");
            assert!(!got.contains("s3cret"), "{got}");
        }
    }

    #[test]
    fn settings_debug_never_shows_a_url_password() {
        let settings = Settings {
            nats: NatsSettings {
                url: "nats://oneclick:n4ts-s3cret@127.0.0.1:4222".into(),
                ..NatsSettings::default()
            },
            database: DatabaseSettings {
                url: "postgres://oneclick:pg-s3cret@db/oneclick".into(),
                ..DatabaseSettings::default()
            },
            ..Settings::default()
        };
        let shown = format!("{settings:?} {settings:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://oneclick:***@db/oneclick"),
            "{shown}"
        );
        assert!(
            shown.contains("nats://oneclick:***@127.0.0.1:4222"),
            "{shown}"
        );
    }
}
