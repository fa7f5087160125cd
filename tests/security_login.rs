//! Security issue 12, finding 3: merchant login brute force. Against the real engine on SQLite
//! and PostgreSQL (lockout state lives in the vault), then the attack itself over NATS against
//! the real binary (`oneclick_testkit::attacks::login`).
//!
//! - failures are counted and locked per (merchant, login, source); the right password is refused
//!   while locked, an operator unlock or the lock's expiry restores it;
//! - a lockout from one source does not lock another; an unknown login is locked the same way;
//! - the throttle refuses attempts beyond its burst without argon2;
//! - however many failures arrive at once, argon2 never runs more than `argon2_concurrency` at a
//!   time (observed through the engine's own counter that `/metrics` exports);
//! - a personal-account user with TOTP (issue 15): one code sent from many sources at once is
//!   accepted once (the vault's compare-and-set); a wrong or missing code is a failure of the
//!   same lockout as a wrong password; a cached credential does not spare the code.

use oneclick_testkit as support;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use oneclick_actors::crypto::totp::TotpSecret;
use oneclick_actors::engine::merchants::{hash_password, LoginSettings, LoginSource};
use oneclick_actors::engine::requests::{Credentials, SecretString};
use oneclick_actors::vault::accounts::{set_account_user_audited, set_account_user_totp_audited};
use oneclick_actors::vault::audit::AuditActor;
use oneclick_actors::vault::merchants::{unlock_login, UnlockLogin};
use oneclick_actors::vault::now_ms;
use oneclick_actors::{EngineSettings, Fault};
use support::engine::{test_settings, Backend, Harness, A, LOGIN, PASSWORD};

/// The harness with `login` as the login policy, on `backend`, in a fresh actix System.
fn run_with<F, Fut>(backend: Backend, login: LoginSettings, test: F)
where
    F: FnOnce(Harness) -> Fut,
    Fut: Future<Output = ()>,
{
    let settings = EngineSettings {
        login,
        ..test_settings()
    };
    support::engine::run_with(backend, settings, test)
}

/// `name(h)` on both backends with the login policy `policy()`.
macro_rules! both_backends_with {
    ($policy:ident => $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn on_sqlite() {
                    super::run_with(super::Backend::Sqlite, super::$policy(), super::$name);
                }

                #[test]
                fn on_postgres() {
                    super::run_with(super::Backend::Postgres, super::$policy(), super::$name);
                }
            }
        )+
    };
}

/// Default lockout (10 failures) with a throttle wide enough not to interfere.
fn lockout_policy() -> LoginSettings {
    LoginSettings {
        throttle_burst: 1_000,
        ..LoginSettings::default()
    }
}

/// A lock of two seconds.
fn short_lock_policy() -> LoginSettings {
    LoginSettings {
        lockout: Duration::from_secs(2),
        ..lockout_policy()
    }
}

/// A throttle of 3 attempts, refilling one a minute.
fn tight_throttle_policy() -> LoginSettings {
    LoginSettings {
        throttle_burst: 3,
        throttle_per_minute: 1,
        ..LoginSettings::default()
    }
}

/// Two argon2 permits, no lockout or throttle in the way of 40 different sources.
fn two_permits_policy() -> LoginSettings {
    LoginSettings {
        argon2_concurrency: 2,
        throttle_burst: 1_000,
        ..LoginSettings::default()
    }
}

fn ip(last: u8) -> LoginSource {
    LoginSource::Address(IpAddr::V4(Ipv4Addr::new(198, 51, 100, last)))
}

fn credentials(login: &str, password: &str) -> Credentials {
    Credentials {
        merchant_id: A,
        login: login.into(),
        password: SecretString::new(password),
    }
}

/// The fault of one attempt, or `None` when it was accepted.
async fn attempt(h: &Harness, login: &str, password: &str, source: &LoginSource) -> Option<Fault> {
    h.engine
        .authenticate(&credentials(login, password), source)
        .await
        .err()
        .map(|e| e.fault())
}

/// Ten wrong passwords from `source`: nine 2/2 and the tenth 2/5.
async fn lock_out(h: &Harness, login: &str, source: &LoginSource) -> Vec<Option<Fault>> {
    let mut faults = Vec::new();
    for i in 0..10 {
        faults.push(attempt(h, login, &format!("wrong-{i}"), source).await);
    }
    faults
}

fn ten_failures() -> Vec<Option<Fault>> {
    let mut expected = vec![Some(Fault::AuthenticationFailed); 9];
    expected.push(Some(Fault::LoginLocked));
    expected
}

async fn ten_failures_lock_the_login_and_the_right_password_is_refused_while_locked(h: Harness) {
    let source = ip(1);
    assert_eq!(attempt(&h, LOGIN, PASSWORD, &source).await, None, "control");
    assert_eq!(lock_out(&h, LOGIN, &source).await, ten_failures());
    let runs = h.engine.login_counters().argon2_runs;
    assert_eq!(
        attempt(&h, LOGIN, PASSWORD, &source).await,
        Some(Fault::LoginLocked),
        "the right password while locked"
    );
    let counters = h.engine.login_counters();
    assert_eq!(counters.lockouts, 1);
    assert_eq!(counters.locked_refusals, 1);
    assert_eq!(counters.argon2_runs, runs, "a locked login costs no argon2");
    assert_eq!(
        h.number("SELECT COUNT(*) AS n FROM login_lockouts WHERE locked_until IS NOT NULL"),
        1
    );
    // PCI DSS 10.2.1.4: the lockout is in the audit trail, once, without the password.
    assert_eq!(
        h.number(
            "SELECT COUNT(*) AS n FROM audit_log WHERE action = 'login.locked_out' \
             AND actor = 'system' AND merchant_id IS NOT NULL"
        ),
        1
    );
    let details = h.texts("SELECT detail AS v FROM audit_log WHERE action = 'login.locked_out'");
    assert!(
        details
            .iter()
            .flatten()
            .all(|d| d.contains(LOGIN) && !d.contains(PASSWORD)),
        "the row names the login, never the password: {details:?}"
    );
}

async fn operator_unlock_restores_the_right_password(h: Harness) {
    let source = ip(2);
    assert_eq!(lock_out(&h, LOGIN, &source).await, ten_failures());
    let unlocked = unlock_login(
        &mut h.pool.get().expect("connection"),
        &h.keyring,
        UnlockLogin {
            merchant_id: A,
            login: LOGIN.into(),
            source: None,
            now_ms: now_ms(),
        },
    )
    .expect("unlock");
    assert_eq!(unlocked, 1);
    assert_eq!(attempt(&h, LOGIN, PASSWORD, &source).await, None);
    assert_eq!(h.count_rows("login_lockouts"), 0);
}

async fn a_lock_expires_after_the_configured_duration(h: Harness) {
    let source = ip(3);
    assert_eq!(lock_out(&h, LOGIN, &source).await, ten_failures());
    assert_eq!(
        attempt(&h, LOGIN, PASSWORD, &source).await,
        Some(Fault::LoginLocked)
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    // After expiry the streak starts over: one failure is an ordinary 2/2 again.
    assert_eq!(
        attempt(&h, LOGIN, "wrong-again", &source).await,
        Some(Fault::AuthenticationFailed)
    );
    assert_eq!(attempt(&h, LOGIN, PASSWORD, &source).await, None);
    assert_eq!(
        h.count_rows("login_lockouts"),
        0,
        "a success clears the row"
    );
}

async fn a_lockout_from_one_source_does_not_lock_another_source(h: Harness) {
    let attacker = ip(4);
    assert_eq!(lock_out(&h, LOGIN, &attacker).await, ten_failures());
    assert_eq!(
        attempt(&h, LOGIN, PASSWORD, &attacker).await,
        Some(Fault::LoginLocked)
    );
    let merchant_nats =
        LoginSource::from_reply_subject(Some(&format!("_INBOX.merchant_{A}.abc123.7")));
    assert_eq!(attempt(&h, LOGIN, PASSWORD, &merchant_nats).await, None);
    assert_eq!(attempt(&h, LOGIN, PASSWORD, &ip(5)).await, None);
}

async fn an_unknown_login_is_locked_the_same_way_as_a_known_one(h: Harness) {
    let before = h.engine.login_counters().argon2_runs;
    let known = lock_out(&h, LOGIN, &ip(6)).await;
    let known_runs = h.engine.login_counters().argon2_runs - before;
    let unknown = lock_out(&h, "no-such-login", &ip(7)).await;
    let unknown_runs = h.engine.login_counters().argon2_runs - before - known_runs;
    assert_eq!(known, ten_failures());
    assert_eq!(unknown, known, "the same answers");
    assert_eq!(unknown_runs, known_runs, "the same argon2 work");
    assert_eq!(
        attempt(&h, "no-such-login", "anything", &ip(7)).await,
        Some(Fault::LoginLocked)
    );
    assert_eq!(h.engine.login_counters().lockouts, 2);
}

async fn a_success_clears_the_streak_of_failures(h: Harness) {
    let source = ip(8);
    for i in 0..9 {
        assert_eq!(
            attempt(&h, LOGIN, &format!("w{i}"), &source).await,
            Some(Fault::AuthenticationFailed)
        );
    }
    assert_eq!(attempt(&h, LOGIN, PASSWORD, &source).await, None);
    for i in 0..9 {
        assert_eq!(
            attempt(&h, LOGIN, &format!("v{i}"), &source).await,
            Some(Fault::AuthenticationFailed)
        );
    }
    assert_eq!(h.engine.login_counters().lockouts, 0);
}

async fn the_throttle_refuses_attempts_beyond_its_burst_without_argon2(h: Harness) {
    let source = ip(9);
    for i in 0..3 {
        assert_eq!(
            attempt(&h, LOGIN, &format!("w{i}"), &source).await,
            Some(Fault::AuthenticationFailed)
        );
    }
    let runs = h.engine.login_counters().argon2_runs;
    assert_eq!(
        attempt(&h, LOGIN, "w3", &source).await,
        Some(Fault::LoginThrottled)
    );
    assert_eq!(h.engine.login_counters().argon2_runs, runs);
    assert_eq!(h.engine.login_counters().throttled, 1);
    // Another source has its own bucket.
    assert_eq!(attempt(&h, LOGIN, PASSWORD, &ip(10)).await, None);
    // A verified (cached) credential needs no argon2 and is not throttled.
    for _ in 0..5 {
        assert_eq!(attempt(&h, LOGIN, PASSWORD, &ip(10)).await, None);
    }
}

async fn a_burst_of_right_passwords_from_one_source_costs_one_argon2_and_is_not_throttled(
    h: Harness,
) {
    let source = ip(11);
    let attempts = (0..30).map(|_| attempt(&h, LOGIN, PASSWORD, &source));
    let faults = futures::future::join_all(attempts).await;
    assert!(faults.iter().all(Option::is_none), "{faults:?}");
    let counters = h.engine.login_counters();
    assert_eq!(counters.argon2_runs, 1, "{counters:?}");
    assert_eq!(counters.throttled, 0);
}

async fn concurrent_failures_never_run_more_argon2_than_the_bound(h: Harness) {
    let attempts = (0..40u8).map(|i| {
        let h = &h;
        async move { attempt(h, LOGIN, &format!("wrong-{i}"), &ip(100 + i)).await }
    });
    let faults = futures::future::join_all(attempts).await;
    assert!(faults
        .iter()
        .all(|f| *f == Some(Fault::AuthenticationFailed)));
    let counters = h.engine.login_counters();
    assert_eq!(counters.argon2_runs, 40);
    assert_eq!(counters.argon2_in_flight, 0);
    assert!(
        counters.argon2_peak <= 2,
        "argon2 ran {} at once with 2 permits",
        counters.argon2_peak
    );
    // Control: the counter does see concurrency (40 requests at once filled both permits).
    assert_eq!(counters.argon2_peak, 2, "{counters:?}");
}

/// Personal-account user `login` of merchant A (password [`PASSWORD`]) enrolled in TOTP.
fn enrol_totp(h: &Harness, login: &str) -> TotpSecret {
    let mut conn = h.pool.get().expect("a connection");
    let hash = hash_password(PASSWORD).expect("hash");
    set_account_user_audited(&mut conn, A, login, &hash, AuditActor::system()).expect("user");
    let secret = TotpSecret::generate().expect("secret");
    set_account_user_totp_audited(
        &mut conn,
        &h.keyring,
        A,
        login,
        Some(&secret),
        AuditActor::system(),
    )
    .expect("enrol");
    secret
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A personal-account sign-in of `login` with `code`: its fault, or `None` when accepted.
async fn sign_in(
    h: &Harness,
    login: &str,
    password: &str,
    code: Option<&str>,
    source: &LoginSource,
) -> Option<Fault> {
    let code = code.map(SecretString::new);
    h.engine
        .authenticate_account(&credentials(login, password), code.as_ref(), source)
        .await
        .err()
        .map(|e| e.fault())
}

fn account_source(last: u8) -> LoginSource {
    LoginSource::Account(IpAddr::V4(Ipv4Addr::new(203, 0, 113, last)))
}

async fn one_code_sent_from_many_sources_at_once_is_accepted_once(h: Harness) {
    let secret = enrol_totp(&h, "anna");
    let code = secret.code_at(unix_now()).expect("code");
    // Different sources: no per-source turn serializes them, only the vault's compare-and-set.
    let sources: Vec<LoginSource> = (1..=8).map(account_source).collect();
    let results = futures::future::join_all(
        sources
            .iter()
            .map(|source| sign_in(&h, "anna", PASSWORD, Some(code.as_str()), source)),
    )
    .await;
    let accepted = results.iter().filter(|r| r.is_none()).count();
    assert_eq!(accepted, 1, "{results:?}");
    assert!(results
        .iter()
        .flatten()
        .all(|f| *f == Fault::AuthenticationFailed));
    // Replayed later, from a source that has not used it: refused too.
    assert_eq!(
        sign_in(
            &h,
            "anna",
            PASSWORD,
            Some(code.as_str()),
            &account_source(9)
        )
        .await,
        Some(Fault::AuthenticationFailed)
    );
    // The next step's code (within the ±1 window) is fresh: accepted once.
    let next = secret.code_at(unix_now() + 30).expect("code");
    assert_eq!(
        sign_in(
            &h,
            "anna",
            PASSWORD,
            Some(next.as_str()),
            &account_source(9)
        )
        .await,
        None
    );
}

async fn a_wrong_code_counts_in_the_lockout_of_a_wrong_password_and_the_cache_does_not_spare_it(
    h: Harness,
) {
    let secret = enrol_totp(&h, "anna");
    let source = account_source(20);
    let code = secret.code_at(unix_now()).expect("code");
    assert_eq!(
        sign_in(&h, "anna", PASSWORD, Some(code.as_str()), &source).await,
        None
    );
    let runs = h.engine.login_counters().argon2_runs;
    // The right password is cached now; without a code, or with a wrong one, it is refused
    // all the same (and without argon2: the cache spares only that).
    assert_eq!(
        sign_in(&h, "anna", PASSWORD, None, &source).await,
        Some(Fault::AuthenticationFailed)
    );
    let wrong = ["000000", "111111", "222222"]
        .into_iter()
        .find(|c| {
            (0..=2).all(|i| secret.code_at(unix_now() + i * 30).expect("code").as_str() != *c)
        })
        .expect("a wrong code");
    let mut faults = Vec::new();
    for i in 0..9 {
        // Wrong codes and wrong passwords alternate: one streak, one lock.
        faults.push(if i % 2 == 0 {
            sign_in(&h, "anna", PASSWORD, Some(wrong), &source).await
        } else {
            sign_in(&h, "anna", &format!("wrong-{i}"), Some(wrong), &source).await
        });
    }
    assert_eq!(
        std::iter::once(Some(Fault::AuthenticationFailed))
            .chain(faults)
            .collect::<Vec<_>>(),
        ten_failures()
    );
    assert_eq!(h.engine.login_counters().lockouts, 1);
    assert!(
        h.engine.login_counters().argon2_runs > runs,
        "wrong passwords ran argon2"
    );
    // Locked: the right password with a fresh code is refused as well.
    let fresh = secret.code_at(unix_now() + 30).expect("code");
    assert_eq!(
        sign_in(&h, "anna", PASSWORD, Some(fresh.as_str()), &source).await,
        Some(Fault::LoginLocked)
    );
    // A change needs a code too, refused while locked; another source is not locked.
    let change = h
        .engine
        .confirm_account_change(A, "anna", Some(&SecretString::new(fresh.as_str())), &source)
        .await;
    assert_eq!(change.err().map(|e| e.fault()), Some(Fault::LoginLocked));
    let other = account_source(21);
    let missing = h
        .engine
        .confirm_account_change(A, "anna", None, &other)
        .await;
    assert_eq!(
        missing.err().map(|e| e.fault()),
        Some(Fault::AuthenticationFailed)
    );
    let confirmed = h
        .engine
        .confirm_account_change(A, "anna", Some(&SecretString::new(fresh.as_str())), &other)
        .await;
    assert!(confirmed.is_ok(), "{confirmed:?}");
}

both_backends_with!(lockout_policy =>
    one_code_sent_from_many_sources_at_once_is_accepted_once,
    a_wrong_code_counts_in_the_lockout_of_a_wrong_password_and_the_cache_does_not_spare_it,
    ten_failures_lock_the_login_and_the_right_password_is_refused_while_locked,
    operator_unlock_restores_the_right_password,
    a_lockout_from_one_source_does_not_lock_another_source,
    an_unknown_login_is_locked_the_same_way_as_a_known_one,
    a_success_clears_the_streak_of_failures,
);
both_backends_with!(short_lock_policy => a_lock_expires_after_the_configured_duration);
both_backends_with!(tight_throttle_policy =>
    the_throttle_refuses_attempts_beyond_its_burst_without_argon2,
    a_burst_of_right_passwords_from_one_source_costs_one_argon2_and_is_not_throttled,
);
both_backends_with!(two_permits_policy => concurrent_failures_never_run_more_argon2_than_the_bound);

// ---- the attack over NATS against the real binary ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brute_force_over_nats_is_locked_out_and_the_operator_unlock_restores_the_merchant() {
    let outcome = support::attacks::login::brute_force_merchant_login().await;
    eprintln!("{}: {}", outcome.name, outcome.evidence);
    assert!(!outcome.succeeded, "{}: {}", outcome.name, outcome.evidence);
}
