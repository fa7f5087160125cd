//! Merchant settings and web-service credentials, cached so the hot path touches neither the
//! database nor argon2 (about 16 ms and 19 MiB a verification, docs/stack.md); and the defences of the
//! login in front of argon2 (security issue 12, finding 3; docs/security/login.md).
//!
//! - Settings are cached per merchant for `merchant_cache` (negative answers too), so an admin
//!   change reaches every process within that time.
//! - A credential is verified with argon2 once, on a blocking thread; then the keyed digest of
//!   (merchant, login, password, stored hash) is remembered per (merchant, login, source) for
//!   `credential_cache`. A later request is accepted without argon2 only if its digest matches,
//!   so a wrong password, a changed password or a changed hash always goes back to argon2. No
//!   password is kept.
//! - Everything that would run argon2 passes, in order: a token bucket per (merchant, source)
//!   ([`Throttle`], at most `throttle_max_sources` buckets), the lockout row of (merchant, login,
//!   source) in the vault (shared by replicas; a locked triple is refused without argon2), and a
//!   semaphore of `argon2_concurrency` permits, so argon2 memory never exceeds permits × 19 MiB
//!   however many requests arrive. A failure is counted in the vault and locks the triple at
//!   `max_failures`; a success clears it.
//! - Concurrent requests of one (merchant, login, source) take turns at the password check
//!   ([`Turn`]): a burst of correct requests costs one argon2 (the rest find it cached) and a
//!   burst of wrong ones meets the throttle and the lockout one by one.
//! - A login that does not exist is verified against a fixed dummy hash of the same parameters
//!   and counted and locked the same way, so neither the answer, its timing nor the lockout tell
//!   whether a login exists.
//! - A personal-account user with a TOTP second factor (issue 15) signs in with password and
//!   code ([`MerchantCache::check_sign_in`]) and confirms changes with a code
//!   ([`MerchantCache::confirm_code`]): the code is checked on every attempt, cached credential or
//!   not, after the throttle and the lockout, and a wrong or missing code is recorded by the same
//!   [`MerchantCache::record_failure`] as a wrong password, in the same lockout row.
//! - Invariant: no password, code, digest or hash is logged; the lockout warning names merchant,
//!   login and source only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use tokio::sync::Semaphore;

use super::requests::{Credentials, SecretString};
use super::{flatten, EngineError, EngineResult};
use crate::crypto::Keyring;
use crate::fault::Fault;
use crate::vault::accounts::{AcceptTotpCode, CodeCheck};
use crate::vault::merchants::{
    ClearLoginFailures, LoadLoginFailures, LoadMerchant, LoginFailures, LoginKey,
    RecordLoginFailure,
};
use crate::vault::records::MerchantRecord;
use crate::vault::{now_ms, Vault};

type Cached = (Instant, Option<Arc<MerchantRecord>>);
/// (merchant, login, source key) → (verified at, keyed digest of the verified credential).
type VerifiedCredentials = HashMap<(i64, String, String), (Instant, [u8; 32])>;

/// Longest source key stored (a reply subject is caller-chosen; its prefix is cut to this).
const MAX_SOURCE_CHARS: usize = 100;

pub use crate::settings::LoginSettings;

/// Where a login attempt comes from, as far as the service can know it. Failures are counted
/// and locked per (merchant, login, source), so a caller can lock only its own source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoginSource {
    /// Over NATS: the reply-inbox prefix, the first two tokens of the reply subject. A merchant's
    /// NATS user may receive only under `_INBOX.merchant_<id>.`, so for a merchant this is its
    /// NATS identity (`_INBOX.merchant_<id>`); `None`: the request named no reply subject.
    Nats(Option<String>),
    /// Over HTTP: the client address.
    Address(IpAddr),
    /// The personal account's sign-in page (issue 15): the client address, counted apart from
    /// the web services' (another kind of user, another page).
    Account(IpAddr),
}

impl LoginSource {
    /// The source of a NATS request with this reply subject.
    pub fn from_reply_subject(reply: Option<&str>) -> LoginSource {
        LoginSource::Nats(reply.map(|r| {
            let mut tokens = r.splitn(3, '.');
            let prefix = match (tokens.next(), tokens.next()) {
                (Some(a), Some(b)) => format!("{a}.{b}"),
                (Some(a), None) => a.to_string(),
                _ => String::new(),
            };
            prefix.chars().take(MAX_SOURCE_CHARS).collect()
        }))
    }

    /// The stable text stored in the vault and logged: `nats:<prefix>`, `nats:-`, `ip:<addr>`,
    /// `account:<addr>`.
    pub fn key(&self) -> String {
        match self {
            LoginSource::Nats(Some(prefix)) => format!("nats:{prefix}"),
            LoginSource::Nats(None) => "nats:-".into(),
            LoginSource::Address(addr) => format!("ip:{addr}"),
            LoginSource::Account(addr) => format!("account:{addr}"),
        }
    }
}

/// Counters of the login defences, read by `/metrics` (and by tests through the same numbers).
#[derive(Debug, Default)]
pub struct LoginStats {
    /// argon2 verifications started.
    pub argon2_runs: AtomicU64,
    /// argon2 verifications running now.
    pub argon2_in_flight: AtomicUsize,
    /// Most argon2 verifications ever running at once (never above `argon2_concurrency`).
    pub argon2_peak: AtomicUsize,
    /// Locks placed.
    pub lockouts: AtomicU64,
    /// Requests refused because their (merchant, login, source) was locked.
    pub locked_refusals: AtomicU64,
    /// Requests refused by the throttle.
    pub throttled: AtomicU64,
}

/// A copy of [`LoginStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoginCounters {
    pub argon2_runs: u64,
    pub argon2_in_flight: usize,
    pub argon2_peak: usize,
    pub lockouts: u64,
    pub locked_refusals: u64,
    pub throttled: u64,
}

impl LoginStats {
    pub fn snapshot(&self) -> LoginCounters {
        let r = Ordering::Relaxed;
        LoginCounters {
            argon2_runs: self.argon2_runs.load(r),
            argon2_in_flight: self.argon2_in_flight.load(r),
            argon2_peak: self.argon2_peak.load(r),
            lockouts: self.lockouts.load(r),
            locked_refusals: self.locked_refusals.load(r),
            throttled: self.throttled.load(r),
        }
    }
}

/// Token buckets per (merchant, source key), at most `max` of them.
struct Throttle {
    burst: f64,
    per_second: f64,
    max: usize,
    /// key → (tokens, last refill).
    buckets: Mutex<HashMap<(i64, String), (f64, Instant)>>,
}

impl Throttle {
    fn new(settings: &LoginSettings) -> Throttle {
        Throttle {
            burst: f64::from(settings.throttle_burst.max(1)),
            per_second: f64::from(settings.throttle_per_minute) / 60.0,
            max: settings.throttle_max_sources.max(1),
            buckets: Mutex::default(),
        }
    }

    /// Takes one token of `key`'s bucket; false when it is empty.
    fn admit(&self, key: (i64, String)) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&key) && buckets.len() >= self.max {
            // A bucket that has refilled is the same as none: drop those first, then the
            // least recently used one.
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= self.max {
                if let Some(oldest) = buckets
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
                {
                    buckets.remove(&oldest);
                }
            }
        }
        let (tokens, at) = buckets.entry(key).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What an unknown login is verified against: same algorithm and parameters as
/// [`hash_password`], so it costs the same as a known one.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("oneclick: no such login").unwrap_or_default());

#[derive(Clone)]
pub struct MerchantCache {
    vault: Addr<Vault>,
    ttl: Duration,
    credential_ttl: Duration,
    merchants: Arc<Mutex<HashMap<i64, Cached>>>,
    credentials: Arc<Mutex<VerifiedCredentials>>,
    login: LoginSettings,
    throttle: Arc<Throttle>,
    argon2: Arc<Semaphore>,
    stats: Arc<LoginStats>,
    /// One password check at a time per (merchant, login, source): concurrent requests of one
    /// caller wait, then find the credential cached (a correct one) or take their turn through
    /// throttle and lockout (a wrong one). Entries live only while requests wait.
    turns: Arc<Mutex<Turns>>,
}

type Turns = HashMap<(i64, String, String), Arc<tokio::sync::Mutex<()>>>;

/// A request's turn at the password check of its key; frees the entry when nobody else waits.
struct Turn {
    turns: Arc<Mutex<Turns>>,
    key: (i64, String, String),
    gate: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.guard.take();
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        // The map's copy and ours: nobody else holds or waits for this gate.
        if Arc::strong_count(&self.gate) <= 2 {
            turns.remove(&self.key);
        }
    }
}

impl MerchantCache {
    pub fn new(
        vault: Addr<Vault>,
        ttl: Duration,
        credential_ttl: Duration,
        login: LoginSettings,
    ) -> MerchantCache {
        // Paid once here rather than by the first unknown login (which would then be slower).
        LazyLock::force(&DUMMY_HASH);
        MerchantCache {
            vault,
            ttl,
            credential_ttl,
            merchants: Default::default(),
            credentials: Default::default(),
            throttle: Arc::new(Throttle::new(&login)),
            argon2: Arc::new(Semaphore::new(login.argon2_concurrency.max(1))),
            login,
            stats: Default::default(),
            turns: Default::default(),
        }
    }

    pub fn login_counters(&self) -> LoginCounters {
        self.stats.snapshot()
    }

    pub async fn get(&self, merchant_id: i64) -> EngineResult<Arc<MerchantRecord>> {
        let cached = {
            let map = self.merchants.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&merchant_id)
                .filter(|(at, _)| at.elapsed() < self.ttl)
                .map(|(_, m)| m.clone())
        };
        let found = match cached {
            Some(found) => found,
            None => {
                let loaded =
                    flatten(self.vault.send(LoadMerchant { merchant_id }).await)?.map(Arc::new);
                let mut map = self.merchants.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(merchant_id, (Instant::now(), loaded.clone()));
                loaded
            }
        };
        found.ok_or(EngineError::Fault(Fault::UnknownMerchant))
    }

    pub fn invalidate(&self, merchant_id: i64) {
        self.merchants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&merchant_id);
    }

    /// Verifies a web-service user coming from `source`; see the module header for the cache,
    /// the throttle, the lockout and the argon2 bound.
    pub async fn authenticate_with(
        &self,
        keyring: &Keyring,
        credentials: &Credentials,
        source: &LoginSource,
    ) -> EngineResult<Arc<MerchantRecord>> {
        check_lengths(credentials)?;
        let merchant = self.get(credentials.merchant_id).await?;
        let stored = merchant.users.get(&credentials.login).cloned();
        self.check_password(keyring, credentials, stored, source)
            .await?;
        Ok(merchant)
    }

    /// The password check behind [`Self::authenticate_with`], for any kind of user: `stored` is
    /// the user's argon2 hash (`None`: no such user, verified against a dummy hash all the
    /// same). Cached, throttled, locked and bounded per (merchant, login, source) as the module
    /// header says; the personal account (issue 15) uses it with its own users and sources.
    pub async fn check_password(
        &self,
        keyring: &Keyring,
        credentials: &Credentials,
        stored: Option<String>,
        source: &LoginSource,
    ) -> EngineResult<()> {
        self.check_sign_in(keyring, credentials, stored, None, source)
            .await
    }

    /// [`Self::check_password`] with a second factor: `code` is the user's one-time code to
    /// check after a right password (`None`: the user has no second factor). For a user with
    /// one, the credential cache only spares argon2: every attempt passes the throttle and the
    /// lockout and has its code checked (accepted once, by the vault), and a wrong or missing
    /// code is a failed login of the same (merchant, login, source) as a wrong password. A wrong
    /// password never reaches the code (no time step is spent on it).
    pub async fn check_sign_in(
        &self,
        keyring: &Keyring,
        credentials: &Credentials,
        stored: Option<String>,
        code: Option<AcceptTotpCode>,
        source: &LoginSource,
    ) -> EngineResult<()> {
        let merchant_id = credentials.merchant_id;
        let hash = stored.clone().unwrap_or_else(|| DUMMY_HASH.clone());
        let digest = keyring.request_digest(&[
            b"credential",
            &merchant_id.to_be_bytes(),
            credentials.login.as_bytes(),
            credentials.password.expose().as_bytes(),
            hash.as_bytes(),
        ]);
        let source_key = source.key();
        let cache_key = (merchant_id, credentials.login.clone(), source_key.clone());
        let cached = || {
            let map = self.credentials.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&cache_key).is_some_and(|(at, known)| {
                at.elapsed() < self.credential_ttl && *known == digest && stored.is_some()
            })
        };
        if code.is_none() && cached() {
            return Ok(());
        }
        let _turn = self.turn(cache_key.clone()).await;
        if code.is_none() && cached() {
            return Ok(());
        }
        let (key, row) = self
            .admit(merchant_id, &credentials.login, source_key)
            .await?;
        let password_ok = (code.is_some() && cached())
            || self
                .verify_bounded(credentials.password.clone(), hash)
                .await?;
        let mut signed_in = password_ok && stored.is_some();
        if let (true, Some(code)) = (signed_in, code) {
            signed_in = self.second_factor(code).await?;
        }
        if signed_in {
            if row.is_some() {
                flatten(self.vault.send(ClearLoginFailures { key }).await)?;
            }
            self.credentials
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(cache_key, (Instant::now(), digest));
            return Ok(());
        }
        Err(self.record_failure(key, &cache_key).await?.into())
    }

    /// A fresh one-time code for a change by a signed-in personal-account user (issue 15): the
    /// same throttle and lockout as sign-in, and a wrong or missing code counted as a failed
    /// login of (merchant, login, source). A user without a second factor passes.
    pub async fn confirm_code(
        &self,
        code: AcceptTotpCode,
        source: &LoginSource,
    ) -> EngineResult<()> {
        let source_key = source.key();
        let cache_key = (code.merchant_id, code.login.clone(), source_key.clone());
        let _turn = self.turn(cache_key.clone()).await;
        let (key, row) = self
            .admit(code.merchant_id, &code.login, source_key)
            .await?;
        if self.second_factor(code).await? {
            if row.is_some() {
                flatten(self.vault.send(ClearLoginFailures { key }).await)?;
            }
            return Ok(());
        }
        Err(self.record_failure(key, &cache_key).await?.into())
    }

    /// The gates before a check of (merchant, login, source): its throttle bucket, then its
    /// lockout row (a locked key is refused before any check). Returns the key and its row.
    async fn admit(
        &self,
        merchant_id: i64,
        login: &str,
        source_key: String,
    ) -> EngineResult<(LoginKey, Option<LoginFailures>)> {
        if !self.throttle.admit((merchant_id, source_key.clone())) {
            self.stats.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(Fault::LoginThrottled.into());
        }
        let key = LoginKey {
            merchant_id,
            login: login.to_string(),
            source: source_key,
        };
        let row = flatten(
            self.vault
                .send(LoadLoginFailures { key: key.clone() })
                .await,
        )?;
        if row.is_some_and(|r| r.is_locked(now_ms())) {
            self.stats.locked_refusals.fetch_add(1, Ordering::Relaxed);
            return Err(Fault::LoginLocked.into());
        }
        Ok((key, row))
    }

    /// Checks a one-time code in the vault (which takes its time step once): true when accepted
    /// or when the user has no second factor.
    async fn second_factor(&self, code: AcceptTotpCode) -> EngineResult<bool> {
        let (merchant_id, login) = (code.merchant_id, code.login.clone());
        match flatten(self.vault.send(code).await)? {
            CodeCheck::Accepted | CodeCheck::NoTotp => Ok(true),
            CodeCheck::Wrong => Ok(false),
            CodeCheck::Replayed => {
                tracing::warn!(
                    merchant_id,
                    login = ?login,
                    "personal account: a one-time code already used was refused"
                );
                Ok(false)
            }
        }
    }

    /// Counts one failed login of `key` — a wrong password or a wrong one-time code alike — and
    /// locks it at `max_failures` (the warning, the metric and the audit row once); a lock also
    /// forgets the cached credential. Returns the fault to answer.
    async fn record_failure(
        &self,
        key: LoginKey,
        cache_key: &(i64, String, String),
    ) -> EngineResult<Fault> {
        let now = now_ms();
        let recorded = flatten(
            self.vault
                .send(RecordLoginFailure {
                    key: key.clone(),
                    now_ms: now,
                    max_failures: i32::try_from(self.login.max_failures).unwrap_or(i32::MAX),
                    lockout_ms: i64::try_from(self.login.lockout.as_millis()).unwrap_or(i64::MAX),
                })
                .await,
        )?;
        if recorded.newly_locked {
            self.stats.lockouts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                merchant_id = key.merchant_id,
                login = ?key.login,
                source = ?key.source,
                failures = recorded.failures.failures,
                lockout_secs = self.login.lockout.as_secs(),
                "merchant login locked after repeated failures"
            );
            self.credentials
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(cache_key);
        }
        if recorded.failures.is_locked(now) {
            return Ok(Fault::LoginLocked);
        }
        Ok(Fault::AuthenticationFailed)
    }

    async fn turn(&self, key: (i64, String, String)) -> Turn {
        let gate = self
            .turns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = gate.clone().lock_owned().await;
        Turn {
            turns: self.turns.clone(),
            key,
            gate,
            guard: Some(guard),
        }
    }

    /// argon2 on a blocking thread, at most `argon2_concurrency` at once in this process.
    async fn verify_bounded(&self, password: SecretString, phc: String) -> EngineResult<bool> {
        let permit = self
            .argon2
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Fault::ShuttingDown)?;
        let stats = self.stats.clone();
        let verified = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let running = stats.argon2_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            stats.argon2_peak.fetch_max(running, Ordering::SeqCst);
            stats.argon2_runs.fetch_add(1, Ordering::Relaxed);
            let verified = verify_password(password.expose(), &phc);
            stats.argon2_in_flight.fetch_sub(1, Ordering::SeqCst);
            verified
        })
        .await
        .unwrap_or(false);
        Ok(verified)
    }
}

/// A login (≤ 20 characters) and password (≤ 30) of the original's lengths, both present.
pub fn check_lengths(credentials: &Credentials) -> EngineResult<()> {
    if credentials.login.chars().count() > 20 || credentials.password.expose().chars().count() > 30
    {
        return Err(Fault::FieldTooLong.into());
    }
    if credentials.login.is_empty() || credentials.password.expose().is_empty() {
        return Err(Fault::MissingField.into());
    }
    Ok(())
}

/// argon2 verification of a PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// argon2id PHC string of a new password (admin CLI).
pub fn hash_password(password: &str) -> Result<String, EngineError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| EngineError::Fault(Fault::Internal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nats_source_is_the_reply_inbox_prefix() {
        let merchant = LoginSource::from_reply_subject(Some("_INBOX.merchant_452739.Xy12.7"));
        assert_eq!(merchant.key(), "nats:_INBOX.merchant_452739");
        let default_client = LoginSource::from_reply_subject(Some("_INBOX.abcDEF123"));
        assert_eq!(default_client.key(), "nats:_INBOX.abcDEF123");
        assert_eq!(LoginSource::from_reply_subject(None).key(), "nats:-");
        let long = format!("_INBOX.{}", "x".repeat(500));
        assert_eq!(
            LoginSource::from_reply_subject(Some(&long))
                .key()
                .chars()
                .count(),
            "nats:".len() + MAX_SOURCE_CHARS
        );
        let ip = LoginSource::Address("2001:db8::1".parse().unwrap());
        assert_eq!(ip.key(), "ip:2001:db8::1");
    }

    #[test]
    fn the_dummy_hash_has_the_parameters_of_a_real_one() {
        let real = hash_password("some password").unwrap();
        let params = |phc: &str| {
            let parsed = PasswordHash::new(phc).unwrap();
            (
                parsed.algorithm.to_string(),
                parsed.version,
                parsed.params.to_string(),
            )
        };
        assert_eq!(params(&DUMMY_HASH), params(&real));
        assert!(!verify_password("", &DUMMY_HASH));
    }

    fn throttle(burst: u32, per_minute: u32, max: usize) -> Throttle {
        Throttle::new(&LoginSettings {
            throttle_burst: burst,
            throttle_per_minute: per_minute,
            throttle_max_sources: max,
            ..LoginSettings::default()
        })
    }

    #[test]
    fn the_throttle_admits_its_burst_then_refuses() {
        let t = throttle(3, 1, 10);
        let key = || (1, "ip:1".to_string());
        assert!(t.admit(key()) && t.admit(key()) && t.admit(key()));
        assert!(!t.admit(key()));
        assert!(
            t.admit((1, "ip:2".into())),
            "another source has its own bucket"
        );
        assert!(t.admit((2, "ip:1".into())), "another merchant too");
    }

    #[test]
    fn the_throttle_tracks_at_most_its_maximum_of_sources() {
        let t = throttle(2, 1, 100);
        for i in 0..1_000 {
            t.admit((1, format!("ip:{i}")));
            let tracked = t.buckets.lock().unwrap().len();
            assert!(tracked <= 100, "{tracked} buckets");
        }
    }
}
