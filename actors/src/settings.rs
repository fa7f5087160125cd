//! The engine's tuning: the `[engine]` and `[login]` config sections as the engine takes them. A
//! module of its own, below the customer actors and the engine facade, so that both read their
//! settings without importing each other; every bound here is documented with its default in
//! `config/base.toml`.

use std::time::Duration;

/// Engine tuning (the `[engine]` config section).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// An actor idle this long stops (memory bound).
    pub actor_idle: Duration,
    /// Most cached customer actors; past it the least recently used are evicted (memory bound
    /// under a flood of distinct customers).
    pub max_actors: usize,
    pub registry_shards: usize,
    /// Cached customer state older than this is reloaded before use.
    pub state_ttl: Duration,
    /// A verified web-service credential is trusted this long without argon2.
    pub credential_cache: Duration,
    /// Merchant settings are re-read after this long.
    pub merchant_cache: Duration,
    /// Threads running customer actors.
    pub arbiters: usize,
    /// Vault worker threads for reads and non-payment writes.
    pub vault_workers: usize,
    /// Group-commit writer threads for payment steps (each holds one pool connection).
    pub group_commit_writers: usize,
    /// Most payment steps in one group-commit transaction.
    pub group_commit_max_batch: usize,
    /// An order still `In Process` this long after its reservation was left by a process that
    /// died at the acquirer step; a repeat records it as `Timeout` (in doubt).
    pub in_doubt_after: Duration,
    /// Merchant-login defences: lockout, throttle, argon2 bound ([`merchants::LoginSettings`]).
    pub login: LoginSettings,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            actor_idle: Duration::from_secs(300),
            max_actors: 100_000,
            registry_shards: 64,
            state_ttl: Duration::from_millis(5000),
            credential_cache: Duration::from_secs(60),
            merchant_cache: Duration::from_millis(1000),
            arbiters: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            vault_workers: 6,
            group_commit_writers: 2,
            group_commit_max_batch: 64,
            in_doubt_after: Duration::from_secs(30),
            login: LoginSettings::default(),
        }
    }
}

/// The login policy (the `[login]` config section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    /// Failures in a row of one (merchant, login, source) that lock it (PCI DSS 8.3.4: ≤ 10).
    pub max_failures: u32,
    /// How long a lock lasts (PCI DSS 8.3.4: ≥ 30 min) unless an operator unlocks it; also the
    /// window after which an unlocked streak of failures is forgotten.
    pub lockout: Duration,
    /// argon2 verifications running at once in this process (memory: this × 19 MiB).
    pub argon2_concurrency: usize,
    /// Attempts needing argon2 a (merchant, source) may make at once before the bucket refills.
    pub throttle_burst: u32,
    /// Refill of that bucket, attempts per minute.
    pub throttle_per_minute: u32,
    /// Most (merchant, source) buckets tracked; beyond, idle or oldest buckets are evicted.
    pub throttle_max_sources: usize,
}

impl Default for LoginSettings {
    fn default() -> Self {
        LoginSettings {
            max_failures: 10,
            lockout: Duration::from_secs(30 * 60),
            argon2_concurrency: 2,
            throttle_burst: 10,
            throttle_per_minute: 60,
            throttle_max_sources: 10_000,
        }
    }
}
