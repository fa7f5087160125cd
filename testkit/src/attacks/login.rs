//! Brute force of a merchant's web-service password (security issue 12, finding 3).
//!
//! The attacker holds the merchant's NATS identity (a leaked NATS credential; after the reply
//! check of finding 1 it is the only identity that can reach the merchant's subjects) and
//! guesses passwords for the login `demo`, then for a login that does not exist. The attack
//! succeeds when it gets more than `login.max_failures` (10) password verdicts from one source,
//! when the right password is accepted from that source after the guesses, when an unknown login
//! is treated differently from a known one, or when a guessed password reaches the log. Controls:
//! the right password is accepted before the attack and again after `oneclick admin merchant
//! unlock`, so the probe does see an accepted login.

use std::time::Duration;

use serde_json::{json, Value};

use super::AttackOutcome;
use crate::nats::{connect_as, fault_of, request, NatsServer, OneClick};

const MERCHANT: &str = "452739";
const LOGIN: &str = "demo";
const PASSWORD: &str = "demo-password";
/// Most guesses tried per login (throttled ones included).
const GUESSES: usize = 40;

fn body(login: &str, password: &str) -> Value {
    json!({"merchant": {"merchant_id": MERCHANT, "login": login, "password": password},
           "customernumber": "brute-force-1"})
}

/// `None`: accepted (any non-2/x answer: the customer simply has no cards).
fn verdict(reply: &Value) -> Option<(i64, i64)> {
    fault_of(reply).filter(|(code, _)| *code == 2)
}

/// Guesses passwords for `login` until locked out or `GUESSES` tries; returns the verdicts.
async fn guess(client: &async_nats::Client, subject: &str, login: &str) -> Vec<Option<(i64, i64)>> {
    let mut seen = Vec::new();
    for i in 0..GUESSES {
        let reply = request(
            client,
            subject.to_string(),
            &body(login, &format!("bf-guess-{i:03}")),
        )
        .await;
        let v = verdict(&reply);
        seen.push(v);
        match v {
            Some((2, 5)) => break,
            // Throttled: wait for the bucket, as a patient attacker would.
            Some((2, 6)) => tokio::time::sleep(Duration::from_millis(1_100)).await,
            _ => {}
        }
    }
    seen
}

/// One request, repeated after a pause while the throttle refuses it (2/6).
async fn patiently(client: &async_nats::Client, subject: &str, body: &Value) -> Option<(i64, i64)> {
    let mut v = None;
    for _ in 0..4 {
        v = verdict(&request(client, subject.to_string(), body).await);
        if v != Some((2, 6)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    v
}

fn count(seen: &[Option<(i64, i64)>], fault: (i64, i64)) -> usize {
    seen.iter().filter(|v| **v == Some(fault)).count()
}

pub async fn brute_force_merchant_login() -> AttackOutcome {
    let name = "merchant login brute force";
    let nats = NatsServer::start_shipped();
    let users = nats.users.clone().expect("shipped users");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = OneClick::prepare(dir.path(), &nats.url(), None);
    users.serve_as_shipped(&mut app, "oneclick");
    // Health is asked as the gateway (the shipped config lets it; the service user may not).
    let gateway = users.gateway(&nats.url()).await;
    app.start(&gateway).await;
    let attacker = connect_as(
        &nats.url(),
        &format!("merchant_{MERCHANT}"),
        &users.merchant_452739,
        Some(&format!("_INBOX.merchant_{MERCHANT}")),
    )
    .await
    .expect("merchant user connects");
    let subject = app.subject(&format!("merchant.{MERCHANT}.token.list"));
    let right = || body(LOGIN, PASSWORD);

    let control_before = patiently(&attacker, &subject, &right()).await;
    let known = guess(&attacker, &subject, LOGIN).await;
    let after_guesses = patiently(&attacker, &subject, &right()).await;
    let unknown = guess(&attacker, &subject, "no-such-user").await;
    let unlocked = app.admin(&["merchant", "unlock", "--id", MERCHANT, "--login", LOGIN]);
    let control_after_unlock = patiently(&attacker, &subject, &right()).await;
    let metrics = app.metrics();
    let lockouts = crate::chaos::metric_sum(&metrics, "oneclick_login_lockouts_total");
    let log = app.log_text();
    let guessed_in_log = log.contains("bf-guess-");
    let warned = log.contains("merchant login locked");

    let verdicts_known = count(&known, (2, 2));
    let verdicts_unknown = count(&unknown, (2, 2));
    let locked_known = known.last() == Some(&Some((2, 5)));
    let locked_unknown = unknown.last() == Some(&Some((2, 5)));
    let succeeded = verdicts_known > 9
        || !locked_known
        || after_guesses != Some((2, 5))
        || verdicts_unknown != verdicts_known
        || !locked_unknown
        || guessed_in_log
        || lockouts < 2.0
        || !warned;
    let controls_ok = control_before.is_none() && control_after_unlock.is_none();
    AttackOutcome {
        name,
        // A control that fails means the probe could not see success: count it as a success.
        succeeded: succeeded || !controls_ok,
        evidence: format!(
            "right password before: {control_before:?}; {} guesses at `demo`: {verdicts_known} wrong-password verdicts, \
             {} throttled, ended locked: {locked_known}; right password after them: {after_guesses:?}; \
             {} guesses at an unknown login: {verdicts_unknown} verdicts, ended locked: {locked_unknown}; \
             admin unlock said {:?}; right password after unlock: {control_after_unlock:?}; \
             lockouts metric {lockouts}; lockout warning logged: {warned}; a guessed password in the log: {guessed_in_log}",
            known.len(),
            count(&known, (2, 6)),
            unknown.len(),
            unlocked.trim(),
        ),
    }
}
