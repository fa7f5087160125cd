//! The demonstration page's side of NATS: it calls oneclick exactly as a payment gateway does —
//! the `<p>.v1.gw.*` request-reply subjects, the gateway's NATS identity (`nats.user`/… of the
//! demo process's own settings) and the gateway's inbox prefix (`nats.gateway_inbox_prefix`) —
//! and signs One Click orders with the demo merchant's key (R2) as that merchant's shop would.
//!
//! Invariants:
//! - every body is built from the wire types of `crate::wire::gateway` and every reply parsed into
//!   them, so the page cannot drift from the protocol; a reply `{"fault":…}` becomes
//!   [`GatewayError::Fault`] with the service's own fault (codes and text), never a guess;
//! - the card number and CVC stay [`SecretString`]s until serialized into the request body; the
//!   body is never logged;
//! - the signature key is read once at start from `demo.signature_key_file` (a file only its
//!   owner may read), held zeroized, and never printed.

use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use oneclick_actors::domain::signature;
use oneclick_actors::engine::requests::SecretString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use super::DemoSettings;
use crate::config::Settings;
use crate::subjects::{GatewayEndpoint, Subjects};
use crate::wire::gateway::{
    CardFields, DeleteCardBody, OfferBody, OfferReply, OrderFields, PayBody, PaySavedBody,
    PaymentReply, RecurringFields, TokenRemovedReply,
};
use crate::wire::{FaultBody, FaultReply, OptionalCustomerRef};

/// Why a gateway call has no normal reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// oneclick answered with a fault (its detail is shown to the customer as is).
    #[error("fault {}/{}", .0.faultcode, .0.faultstring)]
    Fault(FaultBody),
    /// No answer: no responders, no reply in time, NATS down, or a reply that is not JSON.
    #[error("oneclick did not answer ({0})")]
    Transport(&'static str),
}

impl GatewayError {
    /// A short name for the log line.
    pub fn outcome(&self) -> String {
        match self {
            GatewayError::Fault(f) => format!("fault_{}_{}", f.faultcode, f.faultstring),
            GatewayError::Transport(why) => format!("transport_{why}"),
        }
    }
}

/// A new card as typed on the page.
#[derive(Debug, Clone)]
pub struct NewCard {
    pub number: SecretString,
    pub expire_month: String,
    pub expire_year: String,
    pub holder: String,
    pub cvc: Option<SecretString>,
}

/// One order of the demo shop: who pays what (signed at each call).
#[derive(Debug, Clone)]
pub struct Order {
    pub order_number: String,
    pub amount: String,
    pub customer_number: String,
}

/// oneclick as seen by a gateway.
pub struct Gateway {
    client: async_nats::Client,
    subjects: Subjects,
    timeout: Duration,
    merchant_id: i64,
    currency: String,
    key: Zeroizing<Vec<u8>>,
}

/// Reads the Base64 signature key of `demo.signature_key_file` (owner-only file).
pub fn read_signature_key(demo: &DemoSettings) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let file = demo
        .signature_key_file
        .as_ref()
        .context("demo.signature_key_file is required with demo.listen")?;
    oneclick_actors::crypto::check_private_file(file)
        .map_err(|e| anyhow::anyhow!("demo.signature_key_file: {e}"))?;
    let text = Zeroizing::new(
        std::fs::read_to_string(file)
            .with_context(|| format!("demo.signature_key_file: reading {}", file.display()))?,
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("demo.signature_key_file: not a Base64 key"))?;
    if key.is_empty() {
        anyhow::bail!("demo.signature_key_file: the key is empty");
    }
    Ok(Zeroizing::new(key))
}

impl Gateway {
    /// Connects to NATS with the settings' identity and the gateway's inbox prefix.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Gateway> {
        let key = read_signature_key(&settings.demo)?;
        let inbox = settings
            .nats
            .gateway_inbox_prefix
            .trim_end_matches('.')
            .to_string();
        let options = async_nats::ConnectOptions::new()
            .name(format!("{}-demo-page", settings.service.name))
            .connection_timeout(Duration::from_secs(5))
            .custom_inbox_prefix(inbox);
        let options = crate::app::nats_security(options, &settings.nats).await?;
        let client = options
            .connect(settings.nats.server_urls())
            .await
            .context("connecting to NATS")?;
        tracing::info!(identity = %settings.nats.identity(), "demo page connected to NATS as a gateway");
        Ok(Gateway {
            client,
            subjects: Subjects::new(&settings.nats.prefix),
            timeout: Duration::from_millis(settings.service.request_timeout_ms),
            merchant_id: settings.demo.merchant_id,
            currency: settings.demo.currency.clone(),
            key,
        })
    }

    pub fn merchant_id(&self) -> i64 {
        self.merchant_id
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The order part of a request, signed as the merchant's shop signs it (R2).
    fn order_fields(&self, order: &Order) -> OrderFields {
        let message = signature::message(
            &self.merchant_id.to_string(),
            &order.order_number,
            &order.amount,
            &self.currency,
            &order.customer_number,
        );
        OrderFields {
            merchant_id: self.merchant_id,
            order_number: order.order_number.clone(),
            order_amount: order.amount.clone(),
            order_currency: self.currency.clone(),
            customer: OptionalCustomerRef::some(order.customer_number.clone()),
            signature: Some(signature::sign(&self.key, &message)),
        }
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        endpoint: GatewayEndpoint,
        body: &B,
    ) -> Result<R, GatewayError> {
        let bytes = Zeroizing::new(
            serde_json::to_vec(body).map_err(|_| GatewayError::Transport("encode"))?,
        );
        let subject = self.subjects.gateway(endpoint);
        let reply = tokio::time::timeout(
            self.timeout,
            self.client.request(subject, bytes.to_vec().into()),
        )
        .await
        .map_err(|_| GatewayError::Transport("timeout"))?
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => GatewayError::Transport("no_responders"),
            async_nats::RequestErrorKind::TimedOut => GatewayError::Transport("timeout"),
            _ => GatewayError::Transport("nats"),
        })?;
        if let Ok(fault) = serde_json::from_slice::<FaultReply>(&reply.payload) {
            return Err(GatewayError::Fault(fault.fault));
        }
        serde_json::from_slice(&reply.payload).map_err(|_| GatewayError::Transport("reply"))
    }

    /// `gw.offer`: what to offer this customer (R4).
    pub async fn offer(&self, order: &Order) -> Result<OfferReply, GatewayError> {
        let body = OfferBody {
            order: self.order_fields(order),
            language: Some("EN".into()),
        };
        self.call(GatewayEndpoint::Offer, &body).await
    }

    /// `gw.pay`: pay with a new card; `save` is the customer's answer to the offer (None: not
    /// asked).
    pub async fn pay(
        &self,
        order: &Order,
        card: NewCard,
        save: Option<bool>,
    ) -> Result<PaymentReply, GatewayError> {
        let body = PayBody {
            order: self.order_fields(order),
            card: CardFields {
                number: card.number,
                expire_month: card.expire_month,
                expire_year: card.expire_year,
                holder: card.holder,
                cvc: card.cvc,
            },
            save_card: save,
            recurring: RecurringFields::default(),
            language: Some("EN".into()),
        };
        self.call(GatewayEndpoint::Pay, &body).await
    }

    /// `gw.pay_saved`: pay with a saved card (+ CVC2 when asked for).
    pub async fn pay_saved(
        &self,
        order: &Order,
        token: &str,
        cvc: Option<SecretString>,
    ) -> Result<PaymentReply, GatewayError> {
        let body = PaySavedBody {
            order: self.order_fields(order),
            token: token.to_string(),
            cvc,
            language: Some("EN".into()),
        };
        self.call(GatewayEndpoint::PaySaved, &body).await
    }

    /// `gw.delete_card`: the customer deletes a card (R10); `command_id` makes a repeat one
    /// deletion (R16).
    pub async fn delete_card(
        &self,
        customer_number: &str,
        token: &str,
        command_id: &str,
    ) -> Result<TokenRemovedReply, GatewayError> {
        let body = DeleteCardBody {
            merchant_id: self.merchant_id,
            customer: customer_number.into(),
            token: token.to_string(),
            command_id: Some(command_id.to_string()),
            language: Some("EN".into()),
        };
        self.call(GatewayEndpoint::DeleteCard, &body).await
    }
}
