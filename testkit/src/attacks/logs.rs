//! The log reader (security issue 12, finding 2): someone who can read the logs — the
//! service's stderr, nats-server's log, PostgreSQL's log — looks for card data and secrets after
//! the whole README story was played with every log turned up to `trace`
//! (`RUST_LOG=trace`, `ONECLICK__LOG__LEVEL=trace`, PostgreSQL `log_statement=all`,
//! `log_min_messages=debug1`). NATS runs the shipped `deploy/nats/nats.conf` and the service
//! connects as user `oneclick` with its password (`nats.user`, `nats.password`).
//!
//! Needles: the PANs and CVCs used, the merchant password, every NATS user's password and the
//! key material of the key file, each in the forms of [`card_scan::secret_needles`] /
//! [`card_scan::short_secret_needles`] (as is, JSON-escaped, hex, base64 at any alignment,
//! `Debug` byte arrays). The attack succeeds when any needle is found in any log. Control: every
//! needle planted into a copy of the real log's tail is found, else the probe is blind and the
//! outcome counts as a success (fail closed: absence was not shown).

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{json, Value};

use super::AttackOutcome;
use crate::card_scan::{self, Haystack, Needle};
use crate::nats::{
    fault_of, merchant_auth, merge, order, request, NatsServer, OneClick, DEMO_MERCHANT,
    DEMO_PASSWORD,
};
use crate::postgres::PrivatePostgres;

/// Which vault the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A private cluster logging every statement ([`PrivatePostgres::start_logging_everything`]).
    Postgres,
}

const VISA: &str = "4111111111111111";
const MASTERCARD: &str = "5555555555554444";
/// Unusual CVCs (not `123`) so a hit is a leak, not a coincidence.
const CVC_VISA: &str = "739";
const CVC_MASTERCARD: &str = "582";
/// The service's subject prefix: the shipped nats.conf grants `oneclick.v1.>` only.
const PREFIX: &str = "oneclick";

/// The secrets a log must never hold.
#[derive(Debug, Default, Clone)]
pub struct Secrets {
    pub pans: Vec<String>,
    pub cvcs: Vec<String>,
    /// `(whose, password)`: merchant logins, NATS users.
    pub passwords: Vec<(String, String)>,
    /// `(which, bytes)`: key file values, as text and decoded.
    pub key_material: Vec<(String, Vec<u8>)>,
}

impl Secrets {
    /// Every `name = BASE64` value of a key file, as its text and its decoded bytes.
    pub fn add_key_file(&mut self, text: &str) {
        use base64::Engine as _;
        for line in text.lines() {
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.starts_with('#') {
                continue;
            }
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(value) {
                if raw.len() >= 16 {
                    self.key_material
                        .push((format!("key file {name} (text)"), value.as_bytes().to_vec()));
                    self.key_material
                        .push((format!("key file {name} (bytes)"), raw));
                }
            }
        }
    }

    pub fn needles(&self) -> Vec<Needle> {
        let mut out = Vec::new();
        for pan in &self.pans {
            let label = format!("PAN {}…{}", &pan[..6], &pan[pan.len() - 4..]);
            out.extend(card_scan::secret_needles(&label, pan.as_bytes()));
        }
        for cvc in &self.cvcs {
            out.extend(card_scan::short_secret_needles(&format!("CVC {cvc}"), cvc));
        }
        for (whose, password) in &self.passwords {
            out.extend(card_scan::secret_needles(
                &format!("password of {whose}"),
                password.as_bytes(),
            ));
        }
        for (which, bytes) in &self.key_material {
            out.extend(card_scan::secret_needles(which, bytes));
        }
        out
    }
}

/// `(needle, log)` of every finding.
pub fn scan(logs: &[Haystack], needles: &[Needle]) -> Vec<(String, String)> {
    card_scan::sweep(logs, needles)
}

/// The control: each needle, planted between spaces into the tail of a real log, is found.
/// Returns the needles the probe could not see (empty: the probe works).
pub fn blind_spots(sample: &[u8], needles: &[Needle]) -> Vec<String> {
    let tail = &sample[sample.len().saturating_sub(16 * 1024)..];
    needles
        .iter()
        .filter(|n| {
            let parts: [&[u8]; 5] = [tail, b" ", &n.bytes[..], b" ", tail];
            let planted = parts.concat();
            !card_scan::contains(&planted, n)
        })
        .map(|n| n.what.clone())
        .collect()
}

/// Scans `logs` for `secrets`, with the control; the outcome of a log-reader attack on them.
pub fn read_logs(name: &'static str, logs: &[Haystack], secrets: &Secrets) -> AttackOutcome {
    let needles = secrets.needles();
    let sample = logs
        .iter()
        .max_by_key(|h| h.bytes.len())
        .map(|h| h.bytes.clone())
        .unwrap_or_default();
    let blind = blind_spots(&sample, &needles);
    let found = scan(logs, &needles);
    let sizes: Vec<String> = logs
        .iter()
        .map(|h| format!("{} {} B", h.place, h.bytes.len()))
        .collect();
    let mut evidence = format!(
        "{} needles over {}; {} hits",
        needles.len(),
        sizes.join(", "),
        found.len()
    );
    for (needle, place) in found.iter().take(20) {
        evidence.push_str(&format!("; {needle} in {place}"));
    }
    if !blind.is_empty() {
        evidence.push_str(&format!("; PROBE BLIND to planted {blind:?}"));
    }
    AttackOutcome {
        name,
        succeeded: !found.is_empty()
            || !blind.is_empty()
            || logs.iter().all(|h| h.bytes.is_empty()),
        evidence,
    }
}

fn pay_body(order_no: &str, amount: &str, customer: &str, number: &str, cvc: &str) -> Value {
    merge(
        order(order_no, amount, customer),
        json!({"card": {"number": number, "expire_month": "12", "expire_year": "2030",
                        "holder": "ALICE SMITH", "cvc": cvc}}),
    )
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The README story over NATS as the gateway and the merchant would play it (shipped users and
/// inbox prefixes): offer, new-card payment with save, offer, saved-card payment with CVC, a
/// fault, token list, a registration, a Token Pay, a durable command with its event, token
/// removal. Panics when a step does not answer as the README says (a scan of a story that did
/// not happen would prove nothing).
async fn play_story(gw: &async_nats::Client, merchant: &async_nats::Client) {
    let customer = "alice";
    let s = |tail: &str| format!("{PREFIX}.v1.{tail}");
    let m = |tail: &str| format!("{PREFIX}.v1.merchant.{DEMO_MERCHANT}.{tail}");
    let as_merchant = |body: Value| merge(json!({"merchant": merchant_auth()}), body);

    let offer = request(gw, s("gw.offer"), &order("r-1", "10.34", customer)).await;
    assert_eq!(offer["status"], "new", "offer: {offer}");
    let paid = request(
        gw,
        s("gw.pay"),
        &pay_body("r-1", "10.34", customer, VISA, CVC_VISA),
    )
    .await;
    assert_eq!(paid["order_state"], "Approved", "pay: {paid}");
    assert_eq!(paid["card_saved"], true, "pay: {paid}");
    let token = paid["token"].as_str().expect("a saved token").to_string();
    let offer = request(gw, s("gw.offer"), &order("r-2", "25.00", customer)).await;
    assert_eq!(offer["status"], "member", "offer: {offer}");
    let saved = request(
        gw,
        s("gw.pay_saved"),
        &merge(
            order("r-2", "25.00", customer),
            json!({"token": token, "cvc": CVC_VISA}),
        ),
    )
    .await;
    assert_eq!(saved["order_state"], "Approved", "pay_saved: {saved}");
    let fault = request(
        gw,
        s("gw.pay_saved"),
        &merge(order("r-3", "5.00", customer), json!({"token": token})),
    )
    .await;
    assert_eq!(fault_of(&fault), Some((4, 10)), "fault: {fault}");
    let list = request(
        merchant,
        m("token.list"),
        &as_merchant(json!({"customernumber": customer})),
    )
    .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "token list: {list}");

    let registered = request(
        gw,
        s("gw.register"),
        &pay_body("r-4", "0", customer, MASTERCARD, CVC_MASTERCARD),
    )
    .await;
    assert_eq!(
        registered["order_state"], "Approved",
        "register: {registered}"
    );
    let mc_token = registered["token"].as_str().expect("token").to_string();
    let token_pay = request(
        merchant,
        m("token.pay"),
        &as_merchant(json!({"order_number": "tp-1", "order_amount": "15.00",
            "order_currency": "RUB", "token_type": 5,
            "payment_token": {"token": mc_token, "customer_number": customer}})),
    )
    .await;
    assert_eq!(
        token_pay["order_state"], "Approved",
        "token.pay: {token_pay}"
    );

    // A durable command through JetStream, its result as an event.
    let mut events = gw
        .subscribe(format!("{PREFIX}.v1.evt.>"))
        .await
        .expect("subscribe to events");
    let command = json!({"command_id": "cmd-logs-1", "kind": "token_pay",
        "merchant_id": DEMO_MERCHANT, "order_number": "tp-dur-1", "order_amount": "12.00",
        "order_currency": "RUB", "customer_number": customer, "token": mc_token});
    let partition = fnv1a32(customer.as_bytes()) % 8;
    let js = async_nats::jetstream::new(gw.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "cmd-logs-1");
    js.publish_with_headers(
        s(&format!("cmd.{partition}.token_pay")),
        headers,
        serde_json::to_vec(&command).expect("json").into(),
    )
    .await
    .expect("publish the command")
    .await
    .expect("the command stream stored it");
    let event = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("the command's event within 20 s")
        .expect("an event");
    let event: Value = serde_json::from_slice(&event.payload).expect("event json");
    assert_eq!(
        event["result"]["order_state"], "Approved",
        "durable token pay: {event}"
    );

    let removed = request(
        merchant,
        m("token.remove"),
        &as_merchant(json!({"customernumber": customer, "token": token})),
    )
    .await;
    assert_eq!(
        removed["message"],
        format!("Token {token} is removed"),
        "token.remove: {removed}"
    );
}

/// The attack: the whole story at `trace` everywhere on `backend`, then every log byte read.
pub async fn trace_logs_carry_secrets(backend: Backend) -> AttackOutcome {
    let name = match backend {
        Backend::Sqlite => "log reader: trace logs (SQLite)",
        Backend::Postgres => "log reader: trace logs (PostgreSQL)",
    };
    let nats = NatsServer::start_shipped();
    let users = nats.users.clone().expect("shipped users");
    let postgres = match backend {
        Backend::Postgres => Some(PrivatePostgres::start_logging_everything()),
        Backend::Sqlite => None,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut app = OneClick::prepare(
        dir.path(),
        &nats.url(),
        postgres.as_ref().map(PrivatePostgres::url),
    );
    app.set_env("RUST_LOG", "trace");
    app.set_env("ONECLICK__LOG__LEVEL", "trace");
    // The user/password options: async-nats 0.51 ignores credentials inside the URL (the URL
    // form of docker-compose.yml is refused with "authorization violation").
    users.serve_as_shipped(&mut app, PREFIX);

    // The harness probes health as the gateway (the shipped config lets it ask for health).
    let gw = users.gateway(&nats.url()).await;
    app.start(&gw).await;
    let merchant = users.merchant(&nats.url()).await;
    play_story(&gw, &merchant).await;
    let _ = gw.flush().await;
    let _ = merchant.flush().await;
    // A clean stop, so everything the service buffered reaches its log.
    app.terminate();

    let mut secrets = Secrets {
        pans: vec![VISA.into(), MASTERCARD.into()],
        cvcs: vec![CVC_VISA.into(), CVC_MASTERCARD.into()],
        passwords: vec![
            ("merchant demo".into(), DEMO_PASSWORD.into()),
            ("NATS user oneclick".into(), users.oneclick.clone()),
            ("NATS user gateway".into(), users.gateway.clone()),
            (
                "NATS user merchant_452739".into(),
                users.merchant_452739.clone(),
            ),
        ],
        key_material: Vec::new(),
    };
    secrets
        .add_key_file(&std::fs::read_to_string(dir.path().join("keys.txt")).expect("the key file"));
    let mut logs = vec![
        Haystack {
            place: "oneclick stderr".into(),
            bytes: std::fs::read(&app.log).unwrap_or_default(),
            numbers_only: false,
        },
        Haystack {
            place: "nats-server log".into(),
            bytes: std::fs::read(&nats.log).unwrap_or_default(),
            numbers_only: false,
        },
    ];
    if let Some(pg) = &postgres {
        logs.push(Haystack {
            place: "PostgreSQL log".into(),
            bytes: pg.log_bytes(),
            numbers_only: false,
        });
    }
    let mut outcome = read_logs(name, &logs, &secrets);
    // The logs really are at trace (else the scan proves little).
    let service_log = String::from_utf8_lossy(&logs[0].bytes);
    // src/telemetry.rs logs this line at trace only.
    if !service_log.contains("trace logging on") {
        outcome.succeeded = true;
        outcome
            .evidence
            .push_str("; the service did not log at trace: the attack's premise failed");
    }
    if postgres.is_some() {
        let pg_log = String::from_utf8_lossy(&logs[2].bytes);
        if !pg_log.contains("statement:") && !pg_log.contains("execute") {
            outcome.succeeded = true;
            outcome
                .evidence
                .push_str("; PostgreSQL logged no statement: log_statement=all did not apply");
        }
    }
    outcome
}
