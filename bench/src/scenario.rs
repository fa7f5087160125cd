//! What the load generator sends: the JSON requests of `docs/protocol.md`, built as a gateway or
//! merchant builds them (signed with the demo merchant's R2 key), and how each reply is judged.
//!
//! Scenarios:
//! - `pay-token`: `gw.pay_saved` with a seeded customer's token and CVC (the merchant needs CVC);
//! - `pay-new`: `gw.pay` with a new card and save consent, each request a *new* customer (a first
//!   payment that saves the card: encryption, fingerprint, idempotency, limits);
//! - `register`: `gw.register` (verification that saves the card), also a new customer each time:
//!   "saving a card" as the vault peer's add-card measures it;
//! - `offer`: `gw.offer` (read-only) for a seeded customer;
//! - `token-list`: `merchant.<id>.token.list` (read-only, merchant credentials) for a seeded customer;
//! - `mixed`: a payment page's mix: 40 % offer, 35 % pay-token, 15 % token-list, 10 % pay-new.
//!
//! Judging replies is cheap on purpose (byte searches, no JSON parsing on success) so the
//! generator spends its CPU sending, not parsing: a fault reply is `{"fault":…}` and is parsed
//! for its code; a payment must say `"order_state":"Approved"`; a token list must be an array.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;

use crate::rng::{KeyPicker, Rng};
use crate::stack::{LOGIN, MERCHANT_ID, PASSWORD, PREFIX, SIGNATURE_KEY_B64};

/// The approving Visa test card of the simulator.
pub const CARD: &str = "4111111111111111";
pub const AMOUNT: &str = "1.00";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    PayToken,
    PayNew,
    Register,
    Offer,
    TokenList,
    Mixed,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::PayToken => "pay-token",
            Scenario::PayNew => "pay-new",
            Scenario::Register => "register",
            Scenario::Offer => "offer",
            Scenario::TokenList => "token-list",
            Scenario::Mixed => "mixed",
        }
    }
}

/// The kind of one request (a scenario is one kind, or a mix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PaySaved,
    PayNew,
    Register,
    Offer,
    TokenList,
    /// The NATS baseline's echo: any reply is right.
    Echo,
}

/// A seeded customer: its number and its saved card's token.
#[derive(Debug, Clone)]
pub struct Customer {
    pub number: String,
    pub token: String,
}

/// One request ready to send.
pub struct Request {
    pub kind: Kind,
    pub subject: String,
    pub body: Bytes,
}

/// Builds requests for one requester (each requester has its own builder and random stream).
pub struct Builder {
    scenario: Scenario,
    customers: Arc<Vec<Customer>>,
    picker: Arc<KeyPicker>,
    rng: Rng,
    key: Arc<Vec<u8>>,
    /// Makes order numbers and new customer numbers unique across runs on one database.
    tag: String,
    worker: usize,
    seq: u64,
}

/// The demo merchant's signature key.
pub fn signature_key() -> Arc<Vec<u8>> {
    Arc::new(
        base64::engine::general_purpose::STANDARD
            .decode(SIGNATURE_KEY_B64)
            .unwrap_or_default(),
    )
}

pub fn sign(key: &[u8], order: &str, amount: &str, customer: &str) -> String {
    let msg = oneclick_actors::domain::signature::message(
        &MERCHANT_ID.to_string(),
        order,
        amount,
        "RUB",
        customer,
    );
    oneclick_actors::domain::signature::sign(key, &msg)
}

fn order_fields(key: &[u8], order: &str, customer: &str) -> String {
    format!(
        r#""merchant_id":"{MERCHANT_ID}","order_number":"{order}","order_amount":"{AMOUNT}","order_currency":"RUB","customer_number":"{customer}","signature":"{}""#,
        sign(key, order, AMOUNT, customer)
    )
}

const CARD_JSON: &str = r#"{"number":"4111111111111111","expire_month":"12","expire_year":"2030","holder":"IVAN IVANOV","cvc":"123"}"#;

/// `gw.pay` with save consent for `customer` (also what seeding through the commands sends).
pub fn pay_new(key: &[u8], order: &str, customer: &str) -> Request {
    Request {
        kind: Kind::PayNew,
        subject: format!("{PREFIX}.v1.gw.pay"),
        body: format!(
            r#"{{{},"card":{CARD_JSON},"save_card":true,"language":"EN"}}"#,
            order_fields(key, order, customer)
        )
        .into(),
    }
}

pub fn register(key: &[u8], order: &str, customer: &str) -> Request {
    Request {
        kind: Kind::Register,
        subject: format!("{PREFIX}.v1.gw.register"),
        body: format!(
            r#"{{{},"card":{CARD_JSON},"language":"EN"}}"#,
            order_fields(key, order, customer)
        )
        .into(),
    }
}

pub fn pay_saved(key: &[u8], order: &str, c: &Customer) -> Request {
    Request {
        kind: Kind::PaySaved,
        subject: format!("{PREFIX}.v1.gw.pay_saved"),
        body: format!(
            r#"{{{},"token":"{}","cvc":"123","language":"EN"}}"#,
            order_fields(key, order, &c.number),
            c.token
        )
        .into(),
    }
}

pub fn offer(key: &[u8], order: &str, c: &Customer) -> Request {
    Request {
        kind: Kind::Offer,
        subject: format!("{PREFIX}.v1.gw.offer"),
        body: format!(
            r#"{{{},"language":"EN"}}"#,
            order_fields(key, order, &c.number)
        )
        .into(),
    }
}

pub fn token_list(c: &Customer) -> Request {
    Request {
        kind: Kind::TokenList,
        subject: format!("{PREFIX}.v1.merchant.{MERCHANT_ID}.token.list"),
        body: format!(
            r#"{{"merchant":{{"merchant_id":"{MERCHANT_ID}","login":"{LOGIN}","password":"{PASSWORD}"}},"customernumber":"{}","language":"EN"}}"#,
            c.number
        )
        .into(),
    }
}

impl Builder {
    pub fn new(
        scenario: Scenario,
        customers: Arc<Vec<Customer>>,
        picker: Arc<KeyPicker>,
        key: Arc<Vec<u8>>,
        tag: &str,
        worker: usize,
    ) -> Builder {
        Builder {
            scenario,
            customers,
            picker,
            rng: Rng::new(worker as u64 * 7919 + 17),
            key,
            tag: tag.to_string(),
            worker,
            seq: 0,
        }
    }

    pub fn next(&mut self) -> Request {
        self.seq += 1;
        let kind = match self.scenario {
            Scenario::PayToken => Kind::PaySaved,
            Scenario::PayNew => Kind::PayNew,
            Scenario::Register => Kind::Register,
            Scenario::Offer => Kind::Offer,
            Scenario::TokenList => Kind::TokenList,
            Scenario::Mixed => match self.rng.below(100) {
                0..=39 => Kind::Offer,
                40..=74 => Kind::PaySaved,
                75..=89 => Kind::TokenList,
                _ => Kind::PayNew,
            },
        };
        // ≤ 32 characters (R1) and ≤ 128 (order numbers).
        let order = format!("{}-{}-{}", self.tag, self.worker, self.seq);
        match kind {
            Kind::PayNew => pay_new(&self.key, &order, &format!("n{order}")),
            Kind::Register => register(&self.key, &order, &format!("n{order}")),
            _ => {
                let c =
                    &self.customers[self.picker.pick(&mut self.rng) % self.customers.len().max(1)];
                match kind {
                    Kind::PaySaved => pay_saved(&self.key, &order, c),
                    Kind::Offer => offer(&self.key, &order, c),
                    _ => token_list(c),
                }
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `None` when the reply is what the request should get; else the error class for the report:
/// `fault <code>/<string> <name-ish detail>` or `declined <response code>` or `bad reply`.
pub fn judge(kind: Kind, reply: &[u8]) -> Option<String> {
    if reply.starts_with(br#"{"fault""#) {
        let v: serde_json::Value = serde_json::from_slice(reply).unwrap_or_default();
        let f = &v["fault"];
        return Some(format!(
            "fault {}/{} {}",
            f["faultcode"].as_i64().unwrap_or(-1),
            f["faultstring"].as_i64().unwrap_or(-1),
            f["detail"].as_str().unwrap_or("")
        ));
    }
    match kind {
        Kind::PaySaved | Kind::PayNew | Kind::Register => {
            if contains(reply, br#""order_state":"Approved""#) {
                None
            } else {
                let v: serde_json::Value = serde_json::from_slice(reply).unwrap_or_default();
                Some(format!(
                    "declined {}",
                    v["response_code"].as_str().unwrap_or("?")
                ))
            }
        }
        Kind::TokenList => (!reply.starts_with(b"[")).then(|| "bad reply".to_string()),
        Kind::Offer => (!contains(reply, br#""status":"#)).then(|| "bad reply".to_string()),
        Kind::Echo => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_valid_json_with_the_documented_fields() {
        let key = signature_key();
        let c = Customer {
            number: "c1".into(),
            token: "49D902C6-1CCF-4605-9228-11D0E8115C77".into(),
        };
        for r in [
            pay_new(&key, "o1", "c1"),
            register(&key, "o1", "c1"),
            pay_saved(&key, "o1", &c),
            offer(&key, "o1", &c),
            token_list(&c),
        ] {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
            assert!(v.is_object(), "{}", r.subject);
        }
        let v: serde_json::Value =
            serde_json::from_slice(&pay_saved(&key, "o1", &c).body).expect("json");
        assert_eq!(v["token"], c.token);
        assert_eq!(v["signature"].as_str().map(str::len), Some(44));
    }

    #[test]
    fn replies_are_judged() {
        assert_eq!(
            judge(
                Kind::PaySaved,
                br#"{"order_state":"Approved","response_code":"AS000"}"#
            ),
            None
        );
        assert_eq!(
            judge(
                Kind::PaySaved,
                br#"{"order_state":"Declined","response_code":"AS105"}"#
            )
            .as_deref(),
            Some("declined AS105")
        );
        assert_eq!(
            judge(
                Kind::Offer,
                br#"{"fault":{"detail":"Token not found","faultcode":4,"faultstring":1}}"#
            )
            .as_deref(),
            Some("fault 4/1 Token not found")
        );
        assert_eq!(judge(Kind::TokenList, b"[]"), None);
    }
}
