//! The production acquirer path: a NATS request-reply connector to an external acquiring host.
//!
//! Request on `acquirer.nats_subject` (default `acquirer.v1.authorize`), JSON:
//! `{"merchant_id":452739,"order_number":"A-1","amount_minor":1034,"currency":"RUB",
//!   "pan":"4111111111111111","expiry_month":12,"expiry_year":2030,"cvc":"123",
//!   "kind":"purchase|verify|card_on_file|recurring_initial|merchant_initiated",
//!   "network_tx_id":null}`
//! Reply: `{"state":"approved|declined|timeout","response_code":"AS000",
//!   "network_tx_id":"…","approval_code":"…"}`.
//!
//! This subject carries card data to the acquirer over core NATS request-reply only (never a
//! stream); deployments restrict it to the service user and the acquirer host. No answer within
//! `acquirer.timeout_ms`, no responders, or a reply that does not parse → `Timeout` (in doubt,
//! R12 keeps the reservation), never a decline.

use std::time::Duration;

use futures::future::BoxFuture;
use oneclick_actors::acquirer::{Acquirer, AuthKind, AuthOutcome, AuthRequest, AuthState};
use serde::{Deserialize, Serialize};

pub struct NatsAcquirer {
    client: async_nats::Client,
    subject: String,
    timeout: Duration,
}

impl NatsAcquirer {
    pub fn new(client: async_nats::Client, subject: String, timeout: Duration) -> NatsAcquirer {
        NatsAcquirer {
            client,
            subject,
            timeout,
        }
    }
}

/// The wire request (documented above). Its `Debug` is not derived: it holds card data.
#[derive(Serialize, Deserialize)]
pub struct AcquirerRequest {
    pub merchant_id: i64,
    pub order_number: String,
    pub amount_minor: i64,
    pub currency: String,
    pub pan: String,
    pub expiry_month: u8,
    pub expiry_year: u16,
    pub cvc: Option<String>,
    pub kind: String,
    pub network_tx_id: Option<String>,
}

impl Drop for AcquirerRequest {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.pan.zeroize();
        self.cvc.zeroize();
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AcquirerReply {
    pub state: String,
    pub response_code: String,
    #[serde(default)]
    pub network_tx_id: Option<String>,
    #[serde(default)]
    pub approval_code: Option<String>,
}

fn timeout_outcome() -> AuthOutcome {
    AuthOutcome {
        state: AuthState::Timeout,
        response_code: "AS998".into(),
        network_tx_id: None,
        approval_code: None,
    }
}

impl Acquirer for NatsAcquirer {
    fn authorize(&self, req: AuthRequest) -> BoxFuture<'static, AuthOutcome> {
        let (kind, network_tx_id) = match &req.kind {
            AuthKind::Purchase => ("purchase", None),
            AuthKind::Verify => ("verify", None),
            AuthKind::CardOnFile => ("card_on_file", None),
            AuthKind::RecurringInitial => ("recurring_initial", None),
            AuthKind::MerchantInitiated { network_tx_id } => {
                ("merchant_initiated", network_tx_id.clone())
            }
        };
        let wire = AcquirerRequest {
            merchant_id: req.merchant_id,
            order_number: req.order_number.clone(),
            amount_minor: req.amount_minor,
            currency: req.currency.clone(),
            pan: req.pan.expose().to_string(),
            expiry_month: req.expiry_month,
            expiry_year: req.expiry_year,
            cvc: req.cvc.as_ref().map(|c| c.expose().to_string()),
            kind: kind.to_string(),
            network_tx_id,
        };
        let body = serde_json::to_vec(&wire).unwrap_or_default();
        drop(wire);
        let (client, subject, timeout) = (self.client.clone(), self.subject.clone(), self.timeout);
        let (merchant_id, order_number) = (req.merchant_id, req.order_number.clone());
        Box::pin(async move {
            let answer = tokio::time::timeout(timeout, client.request(subject, body.into())).await;
            let message = match answer {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(merchant_id, %order_number, error = %e, "acquirer request failed: in doubt");
                    return timeout_outcome();
                }
                Err(_) => {
                    tracing::warn!(merchant_id, %order_number, "acquirer did not answer in time: in doubt");
                    return timeout_outcome();
                }
            };
            match serde_json::from_slice::<AcquirerReply>(&message.payload) {
                Ok(reply) => AuthOutcome {
                    state: match reply.state.as_str() {
                        "approved" => AuthState::Approved,
                        "declined" => AuthState::Declined,
                        _ => AuthState::Timeout,
                    },
                    response_code: reply.response_code,
                    network_tx_id: reply.network_tx_id,
                    approval_code: reply.approval_code,
                },
                Err(_) => {
                    tracing::warn!(merchant_id, %order_number, "acquirer reply did not parse: in doubt");
                    timeout_outcome()
                }
            }
        })
    }

    fn name(&self) -> &'static str {
        "nats"
    }
}
