//! `oneclick client …`: call any oneclick subject over NATS as a gateway, a merchant or ops would,
//! and print the JSON reply (pretty) on stdout.
//!
//! Invariants:
//! - every body is built from the real wire types (`crate::wire`), serialized as the service
//!   parses them, so the CLI cannot drift from the protocol; subjects come from [`Subjects`];
//! - the card number, CVC and password sent are never printed: `--verbose` shows the subject and
//!   the body with those fields redacted, and replies only ever hold masked cards (R9);
//! - exit codes: 0 for a reply that is not a fault, 3 for a fault (`{"fault":…}`, a failed
//!   command event or a dead letter), 1 for transport errors (no responders, no reply in time,
//!   no NATS) and bad flags. Exit 3 is taken with `std::process::exit` after stdout is flushed,
//!   because `main` maps every `Err` to 1;
//! - durable commands (`command …`) carry no card data (R8): the subscription to the result
//!   event is made before the command is published, so the event cannot be missed.
//!
//! The demo merchant (`oneclick admin demo-seed`) is the default: `--merchant` defaults to
//! 452739, whose login/password and signature key the CLI knows, so
//! `oneclick client offer --customer c1` works against a fresh demo without further flags.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use async_nats::jetstream;
use base64::Engine as _;
use clap::{Args, Subcommand};
use futures::stream::{BoxStream, StreamExt};
use oneclick_actors::domain::signature;
use oneclick_actors::engine::requests::SecretString;
use serde::Serialize;
use serde_json::Value;

use super::admin::{DEMO_LOGIN, DEMO_MERCHANT_ID, DEMO_PASSWORD, DEMO_SIGNATURE_KEY};
use crate::config::{NatsSettings, Settings};
use crate::subjects::{GatewayEndpoint, MerchantEndpoint, Subjects};
use crate::wire::command::{
    Command, DeleteCardCommand, RecurringChargeCommand, SetStatusCommand, TokenPayCommand,
};
use crate::wire::gateway::{
    CardFields, DeleteCardBody, OfferBody, OrderFields, PayBody, PaySavedBody, RecurringFields,
    RegisterBody,
};
use crate::wire::merchant::{
    CustomerStatusBody, CustomersListBody, MerchantAuth, OrderStateBody, PaymentTokenFields,
    TokenListBody, TokenPayBody, TokenRemoveBody,
};
use crate::wire::{CommandEnvelope, CommandKind};

/// Exit code of a fault reply (1 is a transport error, 0 a normal reply).
pub const EXIT_FAULT: i32 = 3;

/// `oneclick client [GLOBAL FLAGS] <SUBCOMMAND> …`
#[derive(Debug, Args)]
#[command(after_help = "\
Defaults: --merchant is the demo merchant 452739 (`oneclick admin demo-seed`); for it the CLI \
signs orders with the demo signature key and logs in as demo / demo-password unless told \
otherwise. --order defaults to a fresh `cli-<12 hex>`, --amount to 10.00, --currency to RUB.

Exit codes: 0 reply, 3 fault reply (or failed command event / dead letter), 1 transport error \
(no service listening, no reply in time, NATS unreachable) or a value the CLI cannot build the \
body without (e.g. no signature key for another merchant), 2 usage error.")]
pub struct ClientArgs {
    /// NATS server URL(s) [default: nats.url of the settings].
    #[arg(long, global = true)]
    pub nats_url: Option<String>,
    /// Subject prefix [default: nats.prefix of the settings].
    #[arg(long, global = true)]
    pub prefix: Option<String>,
    /// NATS user (with --nats-password) [default: nats.user/password of the settings].
    #[arg(long, global = true, env = "NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    /// NATS password of --nats-user; prefer the environment variable (argv is visible in `ps`).
    #[arg(
        long,
        global = true,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user",
        value_parser = parse_secret
    )]
    pub nats_password: Option<SecretString>,
    /// Inbox prefix for replies (`_INBOX.gateway`, `_INBOX.merchant_<id>`): restricted NATS users
    /// may only subscribe under their own [default: `_INBOX`].
    #[arg(long, global = true, env = "NATS_INBOX_PREFIX")]
    pub inbox_prefix: Option<String>,
    /// How long to wait for a reply (or for a command's event).
    #[arg(long, global = true, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Language of fault details (`language` of the body): RU or EN.
    #[arg(long, global = true, value_parser = ["RU", "EN"], ignore_case = true)]
    pub language: Option<String>,
    /// Print the subject and the body sent (card number, CVC and password redacted) on stderr.
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Boxed: the subcommands' flags are large, and `Cli` holds `ClientArgs` by value.
    #[command(subcommand)]
    pub command: Box<ClientCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Gateway: what the payment page offers this customer (R4, read-only).
    Offer {
        #[command(flatten)]
        merchant: MerchantArg,
        /// Customer number (signed as given, R2).
        #[arg(long)]
        customer: String,
        #[command(flatten)]
        order: OrderArgs,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Gateway: pay with a new card; saved unless --save false (R4), or start a recurring
    /// agreement (R15, without --customer).
    Pay {
        #[command(flatten)]
        merchant: MerchantArg,
        /// Customer number (One Click); omit for a plain or recurring payment.
        #[arg(long)]
        customer: Option<String>,
        #[command(flatten)]
        order: OrderArgs,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        card: CardArgs,
        /// The customer's answer to the save offer: true|false (yes|no); absent means yes.
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        save: Option<bool>,
        #[command(flatten)]
        recurring: RecurringArgs,
    },
    /// Gateway: pay with a saved card (+ CVC when the merchant needs it, R8).
    PaySaved {
        #[command(flatten)]
        merchant: MerchantArg,
        #[arg(long)]
        customer: String,
        #[command(flatten)]
        order: OrderArgs,
        #[command(flatten)]
        sign: SignArgs,
        /// Token of the saved card (from `offer` or `token-list`).
        #[arg(long)]
        token: String,
        /// CVC2 of the saved card (never printed).
        #[arg(long)]
        cvc: Option<String>,
    },
    /// Gateway: registration transaction, verify and save a card without payment (R13).
    Register {
        #[command(flatten)]
        merchant: MerchantArg,
        #[arg(long)]
        customer: Option<String>,
        #[command(flatten)]
        order: OrderArgs,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        card: CardArgs,
    },
    /// Gateway: the customer deletes a saved card on the payment page (R10).
    DeleteCard {
        #[command(flatten)]
        merchant: MerchantArg,
        #[arg(long)]
        customer: String,
        #[arg(long)]
        token: String,
        /// Idempotency key (R16): a repeat with the same id returns the first result.
        #[arg(long)]
        command_id: Option<String>,
    },
    /// Merchant: the customer's saved cards (original token.cfm).
    TokenList {
        #[command(flatten)]
        merchant: MerchantArg,
        #[command(flatten)]
        auth: AuthArgs,
        #[arg(long)]
        customer: String,
    },
    /// Merchant: remove a saved card (original rem_token.cfm).
    TokenRemove {
        #[command(flatten)]
        merchant: MerchantArg,
        #[command(flatten)]
        auth: AuthArgs,
        #[arg(long)]
        customer: String,
        #[arg(long)]
        token: String,
        /// Idempotency key (R16).
        #[arg(long)]
        command_id: Option<String>,
    },
    /// Merchant: Token Pay, pay with a saved card from the merchant's own UI (R14, no CVC).
    TokenPay {
        #[command(flatten)]
        merchant: MerchantArg,
        #[command(flatten)]
        auth: AuthArgs,
        #[arg(long)]
        customer: String,
        #[arg(long)]
        token: String,
        #[command(flatten)]
        order: OrderArgs,
        #[command(flatten)]
        sign: SignArgs,
    },
    /// Merchant: the state of one order.
    OrderState {
        #[command(flatten)]
        merchant: MerchantArg,
        #[command(flatten)]
        auth: AuthArgs,
        #[arg(long)]
        order: String,
    },
    /// Merchant: customers and their cards (personal-account view), paged.
    Customers {
        #[command(flatten)]
        merchant: MerchantArg,
        #[command(flatten)]
        auth: AuthArgs,
        /// A customer number to look for.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        offset: Option<i64>,
        #[arg(long)]
        limit: Option<i64>,
    },
    /// Merchant: set or clear a customer's flags (R6).
    Status {
        #[command(flatten)]
        merchant: MerchantArg,
        #[command(flatten)]
        auth: AuthArgs,
        #[arg(long)]
        customer: String,
        #[arg(long, value_parser = STATUSES)]
        status: String,
        /// Idempotency key (R16).
        #[arg(long)]
        command_id: Option<String>,
    },
    /// Durable command on the JetStream work queue (no card data), then wait for its event.
    Command(CommandArgs),
    /// The service's health (`<prefix>.v1.health`).
    Health,
    /// Any request: send BODY to SUBJECT as is and print the reply.
    Raw {
        /// The full subject, e.g. oneclick.v1.gw.offer.
        #[arg(long)]
        subject: String,
        /// The body, sent unchanged (`-` reads stdin).
        #[arg(long, default_value = "{}")]
        json: String,
    },
}

const STATUSES: [&str; 6] = [
    "deny",
    "fraud",
    "active",
    "clear_deny",
    "clear_fraud",
    "leave",
];

#[derive(Debug, Clone, Args)]
pub struct MerchantArg {
    /// Merchant id [default: the demo merchant].
    #[arg(long, env = "ONECLICK_CLIENT_MERCHANT", default_value_t = DEMO_MERCHANT_ID)]
    pub merchant: i64,
}

#[derive(Debug, Clone, Args)]
pub struct OrderArgs {
    /// Order number [default: a fresh cli-<12 hex>].
    #[arg(long)]
    pub order: Option<String>,
    /// Amount, e.g. 10.34 (sent and signed as typed).
    #[arg(long, default_value = "10.00")]
    pub amount: String,
    #[arg(long, default_value = "RUB")]
    pub currency: String,
}

/// R2: the signature of an order carrying a customer number. Precedence: --no-signature, then
/// --signature, then --signature-key, then the demo key when the merchant is the demo one.
#[derive(Debug, Clone, Args)]
pub struct SignArgs {
    /// The Base64 signature to send as is.
    #[arg(long)]
    pub signature: Option<String>,
    /// The merchant's Base64 signature key: the CLI computes the R2 signature
    /// (HMAC-SHA256 over merchant_id;order_number;order_amount;order_currency;customer_number)
    /// [default: the demo key for the demo merchant].
    #[arg(long, env = "ONECLICK_CLIENT_SIGNATURE_KEY", hide_env_values = true)]
    pub signature_key: Option<String>,
    /// Send no signature at all (to see the R2 fault).
    #[arg(long)]
    pub no_signature: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CardArgs {
    /// Card number (never printed); see the simulator's test cards in docs/protocol.md.
    #[arg(long)]
    pub card_number: String,
    #[arg(long, default_value = "12")]
    pub expire_month: String,
    #[arg(long, default_value = "2030")]
    pub expire_year: String,
    #[arg(long, default_value = "IVAN IVANOV")]
    pub holder: String,
    /// CVC2 (never printed).
    #[arg(long)]
    pub cvc: Option<String>,
}

/// R15: a recurring agreement (only without --customer, R3). Any of these flags without
/// --recurring-indicator sends `recurring_indicator = 1`.
#[derive(Debug, Clone, Args)]
pub struct RecurringArgs {
    /// `1` starts an agreement [default: 1 when another --recurring-* flag is given].
    #[arg(long)]
    pub recurring_indicator: Option<String>,
    /// Minimum amount of a later charge.
    #[arg(long)]
    pub recurring_min: Option<String>,
    /// Maximum amount of a later charge.
    #[arg(long)]
    pub recurring_max: Option<String>,
    /// Days between charges.
    #[arg(long)]
    pub recurring_period: Option<String>,
    /// Last date of the agreement, DD.MM.YYYY.
    #[arg(long)]
    pub recurring_max_date: Option<String>,
}

/// Web-service credentials [default: demo / demo-password for the demo merchant].
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    #[arg(long, env = "ONECLICK_CLIENT_LOGIN")]
    pub login: Option<String>,
    #[arg(long, env = "ONECLICK_CLIENT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CommandArgs {
    #[arg(long, value_parser = ["token_pay", "recurring_charge", "delete_card", "set_status"])]
    pub kind: String,
    #[command(flatten)]
    pub merchant: MerchantArg,
    /// Customer number (token_pay, delete_card, set_status).
    #[arg(long)]
    pub customer: Option<String>,
    /// Saved card token (token_pay, delete_card).
    #[arg(long)]
    pub token: Option<String>,
    /// New status (set_status).
    #[arg(long, value_parser = STATUSES)]
    pub status: Option<String>,
    /// The initial order of the agreement (recurring_charge).
    #[arg(long)]
    pub initial_order: Option<String>,
    #[command(flatten)]
    pub order: OrderArgs,
    #[command(flatten)]
    pub sign: SignArgs,
    /// Command id = Nats-Msg-Id = idempotency key [default: a fresh cli-<uuid>]; repeat it to
    /// see the first result again.
    #[arg(long)]
    pub command_id: Option<String>,
    /// Command partitions [default: nats.partitions of the settings]; must match the service.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Print the publish acknowledgement and return without waiting for the event.
    #[arg(long)]
    pub no_wait: bool,
}

/// What one invocation sends.
#[derive(Debug, Clone)]
pub enum Plan {
    /// A request-reply call.
    Request { subject: String, body: Vec<u8> },
    /// A durable command published to JetStream, then (unless `wait` is false) its event.
    Command {
        subject: String,
        envelope: CommandEnvelope,
        wait: bool,
    },
}

impl Plan {
    /// The bytes to send.
    pub fn body(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            Plan::Request { body, .. } => Ok(body.clone()),
            Plan::Command { envelope, .. } => Ok(serde_json::to_vec(envelope)?),
        }
    }

    pub fn subject(&self) -> &str {
        match self {
            Plan::Request { subject, .. } | Plan::Command { subject, .. } => subject,
        }
    }

    /// The inbox prefix to connect with: the service answers a merchant subject only under
    /// `nats.merchant_inbox_prefix` + `<id>`, a gateway subject (and a durable command's
    /// JetStream ack, which a gateway receives) only under `nats.gateway_inbox_prefix`; `None`
    /// (the library's `_INBOX`) for anything else. Without the trailing dot, as async-nats takes it.
    pub fn inbox_prefix(&self, nats: &NatsSettings, subjects: &Subjects) -> Option<String> {
        let trim = |p: &str| p.trim_end_matches('.').to_string();
        match self {
            Plan::Command { .. } => Some(trim(&nats.gateway_inbox_prefix)),
            Plan::Request { subject, .. } => {
                if let Some(m) = subjects.parse_merchant(subject) {
                    Some(format!("{}{}", nats.merchant_inbox_prefix, m.merchant_id))
                } else if subject.starts_with(&format!("{}.v1.gw.", subjects.prefix)) {
                    Some(trim(&nats.gateway_inbox_prefix))
                } else {
                    None
                }
            }
        }
    }

    /// The body for `--verbose`: secrets redacted; a body that is not JSON is not echoed.
    pub fn redacted_body(&self) -> String {
        let Ok(body) = self.body() else {
            return "<unprintable>".into();
        };
        match serde_json::from_slice::<Value>(&body) {
            Ok(mut v) => {
                redact(&mut v);
                v.to_string()
            }
            Err(_) => format!("<{} bytes, not JSON>", body.len()),
        }
    }
}

/// Replaces every card number, CVC and password in a request body with `[REDACTED]`.
pub fn redact(value: &mut Value) {
    const SECRET_KEYS: [&str; 9] = [
        "number",
        "pan",
        "cardNumber",
        "card_number",
        "cvc",
        "cvc2",
        "cvv",
        "password",
        "signature_key",
    ];
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&k.as_str()) && !v.is_null() {
                    *v = Value::String("[REDACTED]".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A fresh order number: `cli-` and 12 hex digits.
pub fn fresh_order_number() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("cli-{}", &id[..12])
}

fn fresh_command_id() -> String {
    format!("cli-{}", uuid::Uuid::new_v4().simple())
}

impl OrderArgs {
    fn order_number(&self) -> String {
        self.order.clone().unwrap_or_else(fresh_order_number)
    }
}

impl SignArgs {
    /// The signature to send for this order.
    fn signature_for(
        &self,
        merchant_id: i64,
        order_number: &str,
        amount: &str,
        currency: &str,
        customer: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        if self.no_signature {
            return Ok(None);
        }
        if let Some(s) = &self.signature {
            return Ok(Some(s.clone()));
        }
        let Some(customer) = customer else {
            return Ok(None); // only One Click orders are signed (R2)
        };
        let key_b64 = match (&self.signature_key, merchant_id) {
            (Some(k), _) => k.as_str(),
            (None, DEMO_MERCHANT_ID) => DEMO_SIGNATURE_KEY,
            (None, _) => bail!(
                "merchant {merchant_id}: an order with a customer number needs --signature or \
                 --signature-key (or --no-signature)"
            ),
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(key_b64.trim())
            .map_err(|_| anyhow!("--signature-key: not Base64"))?;
        let msg = signature::message(
            &merchant_id.to_string(),
            order_number,
            amount,
            currency,
            customer,
        );
        Ok(Some(signature::sign(&key, &msg)))
    }

    /// `OrderFields` with the signature filled in.
    fn order_fields(
        &self,
        merchant_id: i64,
        order: &OrderArgs,
        customer: Option<&str>,
    ) -> anyhow::Result<OrderFields> {
        let order_number = order.order_number();
        let signature = self.signature_for(
            merchant_id,
            &order_number,
            &order.amount,
            &order.currency,
            customer,
        )?;
        Ok(OrderFields {
            merchant_id,
            order_number,
            order_amount: order.amount.clone(),
            order_currency: order.currency.clone(),
            customer: customer.map(str::to_owned).into(),
            signature,
        })
    }
}

impl AuthArgs {
    fn merchant_auth(&self, merchant_id: i64) -> anyhow::Result<MerchantAuth> {
        let demo = merchant_id == DEMO_MERCHANT_ID;
        let login = match (&self.login, demo) {
            (Some(l), _) => l.clone(),
            (None, true) => DEMO_LOGIN.to_owned(),
            (None, false) => {
                bail!("merchant {merchant_id}: --login (or ONECLICK_CLIENT_LOGIN) is required")
            }
        };
        let password = match (&self.password, demo) {
            (Some(p), _) => p.clone(),
            (None, true) => DEMO_PASSWORD.to_owned(),
            (None, false) => bail!(
                "merchant {merchant_id}: --password (or ONECLICK_CLIENT_PASSWORD) is required"
            ),
        };
        Ok(MerchantAuth {
            merchant_id,
            login,
            password: SecretString::new(password),
        })
    }
}

impl CardArgs {
    fn fields(&self) -> CardFields {
        CardFields {
            number: SecretString::new(self.card_number.clone()),
            expire_month: self.expire_month.clone(),
            expire_year: self.expire_year.clone(),
            holder: self.holder.clone(),
            cvc: self.cvc.clone().map(SecretString::new),
        }
    }
}

impl RecurringArgs {
    fn fields(&self) -> RecurringFields {
        let any = self.recurring_min.is_some()
            || self.recurring_max.is_some()
            || self.recurring_period.is_some()
            || self.recurring_max_date.is_some();
        RecurringFields {
            recurring_indicator: self
                .recurring_indicator
                .clone()
                .or_else(|| any.then(|| "1".to_owned())),
            recurring_min_amount: self.recurring_min.clone(),
            recurring_max_amount: self.recurring_max.clone(),
            recurring_period: self.recurring_period.clone(),
            recurring_max_date: self.recurring_max_date.clone(),
        }
    }
}

fn request<T: Serialize>(subject: String, body: &T) -> anyhow::Result<Plan> {
    Ok(Plan::Request {
        subject,
        body: serde_json::to_vec(body)?,
    })
}

/// Builds what `args` sends: the subject and the body (or the command envelope). No network
/// I/O (only `raw --json -` reads stdin).
pub fn plan(args: &ClientArgs, subjects: &Subjects, partitions: u32) -> anyhow::Result<Plan> {
    let language = args.language.as_ref().map(|l| l.to_ascii_uppercase());
    let gw = |e| subjects.gateway(e);
    let mc = |m: &MerchantArg, e| subjects.merchant(m.merchant, e);
    match args.command.as_ref() {
        ClientCommand::Offer {
            merchant,
            customer,
            order,
            sign,
        } => {
            let body = OfferBody {
                order: sign.order_fields(merchant.merchant, order, Some(customer))?,
                language,
            };
            request(gw(GatewayEndpoint::Offer), &body)
        }
        ClientCommand::Pay {
            merchant,
            customer,
            order,
            sign,
            card,
            save,
            recurring,
        } => {
            let body = PayBody {
                order: sign.order_fields(merchant.merchant, order, customer.as_deref())?,
                card: card.fields(),
                save_card: *save,
                recurring: recurring.fields(),
                language,
            };
            request(gw(GatewayEndpoint::Pay), &body)
        }
        ClientCommand::PaySaved {
            merchant,
            customer,
            order,
            sign,
            token,
            cvc,
        } => {
            let body = PaySavedBody {
                order: sign.order_fields(merchant.merchant, order, Some(customer))?,
                token: token.clone(),
                cvc: cvc.clone().map(SecretString::new),
                language,
            };
            request(gw(GatewayEndpoint::PaySaved), &body)
        }
        ClientCommand::Register {
            merchant,
            customer,
            order,
            sign,
            card,
        } => {
            let body = RegisterBody {
                order: sign.order_fields(merchant.merchant, order, customer.as_deref())?,
                card: card.fields(),
                language,
            };
            request(gw(GatewayEndpoint::Register), &body)
        }
        ClientCommand::DeleteCard {
            merchant,
            customer,
            token,
            command_id,
        } => {
            let body = DeleteCardBody {
                merchant_id: merchant.merchant,
                customer: customer.as_str().into(),
                token: token.clone(),
                command_id: command_id.clone(),
                language,
            };
            request(gw(GatewayEndpoint::DeleteCard), &body)
        }
        ClientCommand::TokenList {
            merchant,
            auth,
            customer,
        } => {
            let body = TokenListBody {
                merchant: auth.merchant_auth(merchant.merchant)?,
                customer: customer.as_str().into(),
                language,
            };
            request(mc(merchant, MerchantEndpoint::TokenList), &body)
        }
        ClientCommand::TokenRemove {
            merchant,
            auth,
            customer,
            token,
            command_id,
        } => {
            let body = TokenRemoveBody {
                merchant: auth.merchant_auth(merchant.merchant)?,
                customer: customer.as_str().into(),
                token: token.clone(),
                command_id: command_id.clone(),
                language,
            };
            request(mc(merchant, MerchantEndpoint::TokenRemove), &body)
        }
        ClientCommand::TokenPay {
            merchant,
            auth,
            customer,
            token,
            order,
            sign,
        } => {
            let fields = sign.order_fields(merchant.merchant, order, Some(customer))?;
            let body = TokenPayBody {
                merchant: auth.merchant_auth(merchant.merchant)?,
                order_number: fields.order_number,
                order_amount: fields.order_amount,
                order_currency: fields.order_currency,
                token_type: 5,
                payment_token: PaymentTokenFields {
                    token: token.clone(),
                    customer: customer.as_str().into(),
                },
                signature: fields.signature,
                language,
            };
            request(mc(merchant, MerchantEndpoint::TokenPay), &body)
        }
        ClientCommand::OrderState {
            merchant,
            auth,
            order,
        } => {
            let body = OrderStateBody {
                merchant: auth.merchant_auth(merchant.merchant)?,
                order_number: order.clone(),
                language,
            };
            request(mc(merchant, MerchantEndpoint::OrderState), &body)
        }
        ClientCommand::Customers {
            merchant,
            auth,
            search,
            offset,
            limit,
        } => {
            let body = CustomersListBody {
                merchant: auth.merchant_auth(merchant.merchant)?,
                search: search.clone(),
                offset: *offset,
                limit: *limit,
                language,
            };
            request(mc(merchant, MerchantEndpoint::CustomersList), &body)
        }
        ClientCommand::Status {
            merchant,
            auth,
            customer,
            status,
            command_id,
        } => {
            let body = CustomerStatusBody {
                merchant: auth.merchant_auth(merchant.merchant)?,
                customer: customer.as_str().into(),
                status: status.clone(),
                command_id: command_id.clone(),
                language,
            };
            request(mc(merchant, MerchantEndpoint::CustomersStatus), &body)
        }
        ClientCommand::Command(c) => {
            let envelope = c.envelope()?;
            let partitions = c.partitions.unwrap_or(partitions);
            Ok(Plan::Command {
                subject: envelope.subject(subjects, partitions),
                envelope,
                wait: !c.no_wait,
            })
        }
        ClientCommand::Health => Ok(Plan::Request {
            subject: subjects.health(),
            body: b"{}".to_vec(),
        }),
        ClientCommand::Raw { subject, json } => {
            let body = if json == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                    .context("reading the body from stdin")?;
                buf
            } else {
                json.as_bytes().to_vec()
            };
            Ok(Plan::Request {
                subject: subject.clone(),
                body,
            })
        }
    }
}

impl CommandArgs {
    /// The durable command envelope; each kind checks that its fields were given.
    pub fn envelope(&self) -> anyhow::Result<CommandEnvelope> {
        let kind = CommandKind::parse(&self.kind)
            .ok_or_else(|| anyhow!("--kind: unknown kind {}", self.kind))?;
        let need = |v: &Option<String>, flag: &str| {
            v.clone()
                .ok_or_else(|| anyhow!("command --kind {}: {flag} is required", self.kind))
        };
        let merchant_id = self.merchant.merchant;
        let command = match kind {
            CommandKind::TokenPay => {
                let customer = need(&self.customer, "--customer")?;
                let fields = self
                    .sign
                    .order_fields(merchant_id, &self.order, Some(&customer))?;
                Command::TokenPay(TokenPayCommand {
                    order_number: fields.order_number,
                    order_amount: fields.order_amount,
                    order_currency: fields.order_currency,
                    customer: customer.into(),
                    token: need(&self.token, "--token")?,
                    signature: fields.signature,
                })
            }
            CommandKind::RecurringCharge => Command::RecurringCharge(RecurringChargeCommand {
                initial_order_number: need(&self.initial_order, "--initial-order")?,
                order_number: self.order.order_number(),
                order_amount: self.order.amount.clone(),
                order_currency: self.order.currency.clone(),
            }),
            CommandKind::DeleteCard => Command::DeleteCard(DeleteCardCommand {
                customer: need(&self.customer, "--customer")?.into(),
                token: need(&self.token, "--token")?,
            }),
            CommandKind::SetStatus => Command::SetStatus(SetStatusCommand {
                customer: need(&self.customer, "--customer")?.into(),
                status: need(&self.status, "--status")?,
            }),
        };
        Ok(CommandEnvelope {
            command_id: self.command_id.clone().unwrap_or_else(fresh_command_id),
            merchant_id,
            command,
        })
    }
}

/// How a call ended, once its reply or event is printed.
enum Outcome {
    Reply,
    Fault,
}

pub fn run(settings: &Settings, args: ClientArgs) -> anyhow::Result<()> {
    let subjects = Subjects::new(
        args.prefix
            .clone()
            .unwrap_or_else(|| settings.nats.prefix.clone()),
    );
    let plan = plan(&args, &subjects, settings.nats.partitions)?;
    if args.verbose {
        eprintln!("→ {}", plan.subject());
        eprintln!("  {}", plan.redacted_body());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let outcome = runtime.block_on(call(settings, &args, &subjects, plan))?;
    drop(runtime);
    match outcome {
        Outcome::Reply => Ok(()),
        Outcome::Fault => {
            let _ = std::io::stdout().flush();
            std::process::exit(EXIT_FAULT)
        }
    }
}

async fn call(
    settings: &Settings,
    args: &ClientArgs,
    subjects: &Subjects,
    plan: Plan,
) -> anyhow::Result<Outcome> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let url = args
        .nats_url
        .clone()
        .unwrap_or_else(|| settings.nats.url.clone());
    if url.split(',').any(crate::config::url_has_credentials) {
        bail!("--nats-url: credentials inside the URL are not supported; use --nats-user/--nats-password (or NATS_USER/NATS_PASSWORD)");
    }
    // --inbox-prefix wins; otherwise the inbox of the caller the subject names.
    let inbox = args
        .inbox_prefix
        .clone()
        .or_else(|| plan.inbox_prefix(&settings.nats, subjects));
    let client = connect(settings, args, &url, timeout, inbox).await?;
    let outcome = match plan {
        Plan::Request { subject, body } => {
            request_reply(&client, &subject, body, args.timeout_ms).await?
        }
        Plan::Command {
            subject,
            envelope,
            wait,
        } => {
            let ctx = CommandCall {
                client: &client,
                subjects,
                subject,
                envelope,
                wait,
                timeout_ms: args.timeout_ms,
                verbose: args.verbose,
            };
            ctx.run().await?
        }
    };
    // Best effort: nothing is left unsent after a reply, but let the client say goodbye.
    let _ = client.drain().await;
    Ok(outcome)
}

/// A secret from the command line or environment, redacted in `Debug` and zeroized.
fn parse_secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::new(raw))
}

async fn connect(
    settings: &Settings,
    args: &ClientArgs,
    url: &str,
    timeout: Duration,
    inbox_prefix: Option<String>,
) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name("oneclick-client")
        .connection_timeout(timeout);
    if let Some(prefix) = inbox_prefix {
        options = options.custom_inbox_prefix(prefix);
    }
    // --nats-user/--nats-password replace whatever credentials the settings name.
    let mut nats = settings.nats.clone();
    if let (Some(user), Some(password)) = (&args.nats_user, &args.nats_password) {
        nats.user = Some(user.clone());
        nats.password = Some(password.clone());
        nats.token = None;
        nats.nkey_seed_file = None;
        nats.creds_file = None;
    }
    let options = crate::app::nats_security(options, &nats).await?;
    let shown = crate::config::redact_url(url);
    let urls = crate::config::server_urls(url);
    match tokio::time::timeout(timeout, options.connect(urls)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(anyhow!("cannot connect to NATS at {shown}: {e}")),
        Err(_) => Err(anyhow!(
            "cannot connect to NATS at {shown} within {} ms",
            timeout.as_millis()
        )),
    }
}

async fn request_reply(
    client: &async_nats::Client,
    subject: &str,
    body: Vec<u8>,
    timeout_ms: u64,
) -> anyhow::Result<Outcome> {
    use async_nats::client::RequestErrorKind;
    let request = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(Duration::from_millis(timeout_ms)));
    let reply = client
        .send_request(subject.to_owned(), request)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => {
                anyhow!("no oneclick service is listening on {subject}")
            }
            RequestErrorKind::TimedOut => anyhow!("no reply within {timeout_ms} ms on {subject}"),
            _ => anyhow!("request on {subject} failed: {e}"),
        })?;
    let service_error = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error"))
        .map(|v| v.to_string());
    let fault = match serde_json::from_slice::<Value>(&reply.payload) {
        Ok(value) => {
            // Printed from the bytes, so fields keep the service's order (the token list's is
            // the original's, docs/rules.md §4).
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", pretty_in_order(&reply.payload))?;
            out.flush()?;
            is_fault(&value)
        }
        Err(_) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&reply.payload)?;
            writeln!(out)?;
            false
        }
    };
    if let Some(e) = &service_error {
        eprintln!("service error: {e}");
    }
    Ok(if fault || service_error.is_some() {
        Outcome::Fault
    } else {
        Outcome::Reply
    })
}

/// `{"fault":{…}}` at the top level.
pub fn is_fault(reply: &Value) -> bool {
    reply.get("fault").is_some_and(Value::is_object)
}

/// Pretty-prints valid JSON text as `serde_json::to_string_pretty` would, but keeping the
/// fields in the order they were sent (`serde_json::Value` sorts them).
pub fn pretty_in_order(json: &[u8]) -> String {
    let text = String::from_utf8_lossy(json);
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
    out.flush()?;
    Ok(())
}

/// One durable command: subscribe to its result, publish it, wait for the result.
struct CommandCall<'a> {
    client: &'a async_nats::Client,
    subjects: &'a Subjects,
    subject: String,
    envelope: CommandEnvelope,
    wait: bool,
    timeout_ms: u64,
    verbose: bool,
}

impl CommandCall<'_> {
    async fn run(self) -> anyhow::Result<Outcome> {
        let kind = self.envelope.kind();
        let command_id = self.envelope.command_id.clone();
        let event_subject = self.subjects.event(self.envelope.merchant_id, kind);
        let dlq_subject = self.subjects.dead_letter(kind.as_str());
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.timeout_ms);

        // Subscribe first (and make sure the server has the subscriptions) so a fast event is
        // not missed.
        let mut sources: Vec<BoxStream<'static, Vec<u8>>> = Vec::new();
        if self.wait {
            for s in [&event_subject, &dlq_subject] {
                let sub = self
                    .client
                    .subscribe(s.clone())
                    .await
                    .with_context(|| format!("subscribing to {s}"))?;
                sources.push(sub.map(|m| m.payload.to_vec()).boxed());
            }
            self.client.flush().await.context("flushing to NATS")?;
        }

        let js = jetstream::new(self.client.clone());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", command_id.as_str());
        let payload = serde_json::to_vec(&self.envelope)?;
        let ack = async {
            js.publish_with_headers(self.subject.clone(), headers, payload.into())
                .await?
                .await
        };
        let ack = match tokio::time::timeout_at(deadline, ack).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(e)) => {
                use async_nats::jetstream::context::PublishErrorKind;
                return Err(match e.kind() {
                    PublishErrorKind::StreamNotFound => anyhow!(
                        "no command stream takes {} (is oneclick running with this prefix?)",
                        self.subject
                    ),
                    PublishErrorKind::TimedOut => anyhow!(
                        "no publish acknowledgement within {} ms on {}",
                        self.timeout_ms,
                        self.subject
                    ),
                    _ => anyhow!("publishing to {} failed: {e}", self.subject),
                });
            }
            Err(_) => bail!(
                "no publish acknowledgement within {} ms on {}",
                self.timeout_ms,
                self.subject
            ),
        };
        let published = serde_json::json!({
            "command_id": command_id,
            "subject": self.subject,
            "stream": ack.stream,
            "sequence": ack.sequence,
            "duplicate": ack.duplicate,
        });
        if !self.wait {
            print_json(&published)?;
            return Ok(Outcome::Reply);
        }
        if self.verbose {
            eprintln!("  published: {published}");
            eprintln!("  waiting for {event_subject} (or {dlq_subject})");
        }

        // A duplicate was applied (or is being applied) under the first publish: its event may
        // already be in the event stream, so read that stream too.
        if ack.duplicate {
            match self.replay_events(&js, &event_subject).await {
                Ok(stream) => sources.push(stream),
                Err(e) => eprintln!("cannot read past events ({e:#}); waiting for new ones"),
            }
        }

        let mut merged = futures::stream::select_all(sources);
        loop {
            let payload = match tokio::time::timeout_at(deadline, merged.next()).await {
                Ok(Some(p)) => p,
                Ok(None) => bail!("the event subscription closed"),
                Err(_) => bail!(
                    "no event for command {command_id} within {} ms on {event_subject} (the \
                     command is stored and will still be applied)",
                    self.timeout_ms
                ),
            };
            let Ok(value) = serde_json::from_slice::<Value>(&payload) else {
                continue;
            };
            if value.get("command_id").and_then(Value::as_str) != Some(command_id.as_str()) {
                continue;
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", pretty_in_order(&payload))?;
            out.flush()?;
            // An event says `ok`; a dead letter has no `ok` and is always a failure.
            let ok = value.get("ok").and_then(Value::as_bool).unwrap_or(false);
            return Ok(if ok { Outcome::Reply } else { Outcome::Fault });
        }
    }

    /// Every event on `event_subject` from the start of the event stream, and new ones.
    async fn replay_events(
        &self,
        js: &jetstream::Context,
        event_subject: &str,
    ) -> anyhow::Result<BoxStream<'static, Vec<u8>>> {
        let stream = js
            .get_stream(self.subjects.event_stream())
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: event_subject.to_owned(),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let messages = consumer.messages().await.map_err(|e| anyhow!("{e}"))?;
        Ok(messages
            .filter_map(|m| async move { m.ok().map(|m| m.payload.to_vec()) })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plan_connects_with_the_inbox_prefix_its_caller_is_answered_on() {
        let nats = NatsSettings::default();
        let s = Subjects::new("oneclick");
        let request = |subject: String| Plan::Request {
            subject,
            body: Vec::new(),
        };
        assert_eq!(
            request(s.merchant(452740, MerchantEndpoint::TokenList)).inbox_prefix(&nats, &s),
            Some("_INBOX.merchant_452740".to_string())
        );
        assert_eq!(
            request(s.gateway(GatewayEndpoint::Pay)).inbox_prefix(&nats, &s),
            Some("_INBOX.gateway".to_string())
        );
        assert_eq!(request(s.health()).inbox_prefix(&nats, &s), None);
    }
}
