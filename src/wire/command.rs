//! Durable commands on the JetStream work queue (`<p>.v1.cmd.<partition>.<kind>`) and the events
//! that report their results (`<p>.v1.evt.<merchant_id>.<kind>`, dead letters under `evt.dlq`).
//!
//! Invariants:
//! - **no card data, ever** (R8): no command has a PAN, CVC or password field, and unknown fields
//!   are ignored, so even a publisher that adds one cannot make it reach the engine;
//! - `command_id` is the JetStream `Nats-Msg-Id` (duplicate window) and the engine's R16
//!   idempotency key, so a re-publish or a redelivery applies nothing twice;
//! - the partition comes from [`CommandEnvelope::partition_key`]: the customer (R1-stripped
//!   customer number), or the agreement for recurring charges, so one customer's commands are
//!   consumed in order.

use oneclick_actors::engine::requests::{
    AuditActor, DeleteCardRequest, OrderInput, RecurringChargeRequest, SetStatusRequest,
    TokenPayRequest,
};
use oneclick_actors::fault::{Fault, Language};
use serde::{Deserialize, Serialize};

use super::customer::CustomerRef;
use super::fault::FaultBody;
use super::{check_merchant_id, de};
use crate::subjects::{self, Subjects};

/// What a durable command does; the last token of its subject and its `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    TokenPay,
    RecurringCharge,
    DeleteCard,
    SetStatus,
}

impl CommandKind {
    pub const ALL: &'static [CommandKind] = &[
        CommandKind::TokenPay,
        CommandKind::RecurringCharge,
        CommandKind::DeleteCard,
        CommandKind::SetStatus,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::TokenPay => "token_pay",
            CommandKind::RecurringCharge => "recurring_charge",
            CommandKind::DeleteCard => "delete_card",
            CommandKind::SetStatus => "set_status",
        }
    }

    pub fn parse(raw: &str) -> Option<CommandKind> {
        CommandKind::ALL.iter().copied().find(|k| k.as_str() == raw)
    }
}

/// Token Pay (R14) as a durable command: a saved card, no CVC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPayCommand {
    #[serde(alias = "orderNumber", deserialize_with = "de::text")]
    pub order_number: String,
    #[serde(alias = "amount", alias = "orderAmount", deserialize_with = "de::text")]
    pub order_amount: String,
    #[serde(alias = "currency", alias = "orderCurrency")]
    pub order_currency: String,
    #[serde(flatten)]
    pub customer: CustomerRef,
    pub token: String,
    /// R2 signature over the order, when the publisher has one.
    #[serde(default)]
    pub signature: Option<String>,
}

/// A merchant-initiated charge on the agreement of `initial_order_number` (R15).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecurringChargeCommand {
    #[serde(deserialize_with = "de::text")]
    pub initial_order_number: String,
    #[serde(alias = "orderNumber", deserialize_with = "de::text")]
    pub order_number: String,
    #[serde(alias = "amount", alias = "orderAmount", deserialize_with = "de::text")]
    pub order_amount: String,
    #[serde(alias = "currency", alias = "orderCurrency")]
    pub order_currency: String,
}

/// Deletes a saved card (R10).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteCardCommand {
    #[serde(flatten)]
    pub customer: CustomerRef,
    pub token: String,
}

/// Sets or clears a customer's flags (R6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetStatusCommand {
    #[serde(flatten)]
    pub customer: CustomerRef,
    /// `deny`, `fraud`, `active`, `clear_deny`, `clear_fraud`, `leave`.
    pub status: String,
}

/// The kind-specific part of a command, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    TokenPay(TokenPayCommand),
    RecurringCharge(RecurringChargeCommand),
    DeleteCard(DeleteCardCommand),
    SetStatus(SetStatusCommand),
}

/// A durable command: `{"command_id","kind","merchant_id",…kind-specific fields…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    /// Also the `Nats-Msg-Id` header; ≤ 64 printable ASCII characters (the engine checks).
    #[serde(alias = "commandId")]
    pub command_id: String,
    #[serde(alias = "merchantId", deserialize_with = "de::merchant_id")]
    pub merchant_id: i64,
    #[serde(flatten)]
    pub command: Command,
}

/// The engine call a command turns into.
#[derive(Debug, Clone)]
pub enum CommandRequest {
    TokenPay(TokenPayRequest),
    RecurringCharge(RecurringChargeRequest),
    DeleteCard(DeleteCardRequest),
    SetStatus(SetStatusRequest),
}

impl CommandEnvelope {
    pub fn kind(&self) -> CommandKind {
        match self.command {
            Command::TokenPay(_) => CommandKind::TokenPay,
            Command::RecurringCharge(_) => CommandKind::RecurringCharge,
            Command::DeleteCard(_) => CommandKind::DeleteCard,
            Command::SetStatus(_) => CommandKind::SetStatus,
        }
    }

    /// What decides the partition: the customer, or the agreement of a recurring charge.
    pub fn partition_key(&self) -> String {
        match &self.command {
            Command::TokenPay(c) => subjects::customer_partition_key(c.customer.as_str()),
            Command::DeleteCard(c) => subjects::customer_partition_key(c.customer.as_str()),
            Command::SetStatus(c) => subjects::customer_partition_key(c.customer.as_str()),
            Command::RecurringCharge(c) => {
                subjects::agreement_partition_key(self.merchant_id, &c.initial_order_number)
            }
        }
    }

    /// Checks that this command was published on its own subject: the subject's kind is the
    /// body's `kind` and its partition is the one [`Self::partition_key`] gives. A command on
    /// another partition would escape its customer's ordering (issue 12, finding 9), so a
    /// mismatch is fault 1/5 and the command is dead-lettered, nothing applied.
    pub fn check_subject(
        &self,
        subjects: &Subjects,
        partitions: u32,
        subject: &str,
    ) -> Result<(), Fault> {
        let expected = (
            subjects::partition(&self.partition_key(), partitions),
            self.kind(),
        );
        match subjects.parse_command(subject) {
            Some(found) if found == expected => Ok(()),
            _ => Err(Fault::CommandSubjectMismatch),
        }
    }

    /// The subject to publish this command to.
    pub fn subject(&self, subjects: &Subjects, partitions: u32) -> String {
        let partition = subjects::partition(&self.partition_key(), partitions);
        subjects.command(partition, self.kind())
    }

    pub fn into_request(self) -> Result<CommandRequest, Fault> {
        let merchant_id = check_merchant_id(self.merchant_id)?;
        let command_id = self.command_id;
        Ok(match self.command {
            Command::TokenPay(c) => CommandRequest::TokenPay(TokenPayRequest {
                order: OrderInput {
                    merchant_id,
                    order_number: c.order_number,
                    amount: c.order_amount,
                    currency: c.order_currency,
                    customer_number: Some(c.customer.into_string()),
                    signature: c.signature,
                },
                token_type: 5,
                token: c.token,
            }),
            Command::RecurringCharge(c) => {
                CommandRequest::RecurringCharge(RecurringChargeRequest {
                    merchant_id,
                    initial_order_number: c.initial_order_number,
                    order_number: c.order_number,
                    amount: c.order_amount,
                    currency: c.order_currency,
                })
            }
            Command::DeleteCard(c) => CommandRequest::DeleteCard(DeleteCardRequest {
                merchant_id,
                customer_number: c.customer.into_string(),
                token: c.token,
                command_id: Some(command_id),
                actor: AuditActor::gateway(),
            }),
            Command::SetStatus(c) => CommandRequest::SetStatus(SetStatusRequest {
                merchant_id,
                customer_number: c.customer.into_string(),
                status: c.status,
                command_id: Some(command_id),
                actor: AuditActor::gateway(),
            }),
        })
    }
}

/// The result of a durable command, published to `<p>.v1.evt.<merchant_id>.<kind>` with
/// `Nats-Msg-Id` = `command_id` (a redelivered command republishes the same event, deduplicated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEvent {
    pub command_id: String,
    pub kind: CommandKind,
    pub ok: bool,
    /// The reply JSON (`PaymentReply`, `TokenRemovedReply`, `StatusReply`) when `ok`.
    pub result: Option<serde_json::Value>,
    /// The fault (EN) when not `ok`.
    pub fault: Option<FaultBody>,
}

impl CommandEvent {
    /// A success carrying `reply`. Infallible: a reply that does not serialize (never expected)
    /// becomes an `Internal` fault event.
    pub fn succeeded<T: Serialize>(
        command_id: impl Into<String>,
        kind: CommandKind,
        reply: &T,
    ) -> CommandEvent {
        let command_id = command_id.into();
        match serde_json::to_value(reply) {
            Ok(result) => CommandEvent {
                command_id,
                kind,
                ok: true,
                result: Some(result),
                fault: None,
            },
            Err(_) => CommandEvent::failed(command_id, kind, Fault::Internal),
        }
    }

    pub fn failed(command_id: impl Into<String>, kind: CommandKind, fault: Fault) -> CommandEvent {
        CommandEvent {
            command_id: command_id.into(),
            kind,
            ok: false,
            result: None,
            fault: Some(FaultBody::new(fault, Language::En)),
        }
    }
}

/// A command given up on (delivered `max_deliver` times, or unparsable), published to
/// `<p>.v1.evt.dlq.<kind>` and then terminated on the work queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Known when the command parsed.
    pub command_id: Option<String>,
    /// The last token of the command's subject.
    pub kind: String,
    pub merchant_id: Option<i64>,
    /// Deliveries so far (JetStream's count).
    pub deliveries: u64,
    /// The command stream's sequence number, for ops.
    pub stream_sequence: u64,
    /// Why: the last fault.
    pub fault: FaultBody,
    /// The parsed command, for replay; never the raw bytes (an unparsable message is unknown
    /// content and is not copied).
    pub command: Option<CommandEnvelope>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_request;

    fn token_pay(customer: &str) -> CommandEnvelope {
        CommandEnvelope {
            command_id: "c-9".into(),
            merchant_id: 452739,
            command: Command::TokenPay(TokenPayCommand {
                order_number: "o-9".into(),
                order_amount: "1.00".into(),
                order_currency: "RUB".into(),
                customer: customer.into(),
                token: "T".into(),
                signature: None,
            }),
        }
    }

    #[test]
    fn a_command_on_its_own_subject_passes_the_subject_check() {
        let s = Subjects::default();
        let cmd = token_pay("cust-1");
        assert_eq!(cmd.check_subject(&s, 8, &cmd.subject(&s, 8)), Ok(()));
    }

    #[test]
    fn a_command_on_another_partition_or_kind_is_fault_1_5() {
        let s = Subjects::default();
        let cmd = token_pay("cust-1");
        let own = subjects::partition(&cmd.partition_key(), 8);
        let other = (own + 1) % 8;
        for subject in [
            s.command(other, CommandKind::TokenPay),
            s.command(own, CommandKind::DeleteCard),
            "oneclick.v1.cmd.x.token_pay".to_string(),
            "oneclick.v1.cmd.99.token_pay".to_string(),
            "other.v1.cmd.0.token_pay".to_string(),
        ] {
            assert_eq!(
                cmd.check_subject(&s, 8, &subject),
                Err(Fault::CommandSubjectMismatch),
                "{subject}"
            );
        }
        assert_eq!(Fault::CommandSubjectMismatch.codes(), (1, 5));
    }

    #[test]
    fn envelope_is_tagged_by_kind_and_flat() -> Result<(), serde_json::Error> {
        let env = CommandEnvelope {
            command_id: "c-1".into(),
            merchant_id: 452739,
            command: Command::SetStatus(SetStatusCommand {
                customer: "1234".into(),
                status: "deny".into(),
            }),
        };
        let json = serde_json::to_value(&env)?;
        assert_eq!(
            json,
            serde_json::json!({"command_id":"c-1","merchant_id":452739,"kind":"set_status",
                               "customer_number":"1234","status":"deny"})
        );
        let back: CommandEnvelope = serde_json::from_value(json)?;
        assert_eq!(back, env);
        Ok(())
    }

    #[test]
    fn token_pay_command_maps_to_the_engine_without_cvc() -> Result<(), Fault> {
        let json = br#"{"command_id":"c-2","kind":"token_pay","merchant_id":"452739",
            "order_number":"o-1","order_amount":"10.00","order_currency":"RUB",
            "customer_number":"1234","token":"T","cvc":"123","number":"4111111111111111"}"#;
        let env: CommandEnvelope = parse_request(json, 4096)?;
        assert!(
            !format!("{env:?}").contains("4111"),
            "unknown card fields are dropped"
        );
        assert_eq!(env.kind(), CommandKind::TokenPay);
        match env.into_request()? {
            CommandRequest::TokenPay(r) => {
                assert_eq!(r.token_type, 5);
                assert_eq!(r.token, "T");
                assert_eq!(r.order.merchant_id, 452739);
                assert_eq!(r.order.customer_number.as_deref(), Some("1234"));
            }
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn commands_without_an_order_carry_their_command_id_to_the_engine() -> Result<(), Fault> {
        let json = br#"{"command_id":"c-3","kind":"delete_card","merchant_id":1,"customer_number":"c","token":"T"}"#;
        match parse_request::<CommandEnvelope>(json, 4096)?.into_request()? {
            CommandRequest::DeleteCard(r) => assert_eq!(r.command_id.as_deref(), Some("c-3")),
            other => panic!("{other:?}"),
        }
        let json = br#"{"command_id":"c-4","kind":"recurring_charge","merchant_id":1,
            "initial_order_number":"i","order_number":"o","order_amount":"1.00","order_currency":"RUB"}"#;
        match parse_request::<CommandEnvelope>(json, 4096)?.into_request()? {
            CommandRequest::RecurringCharge(r) => assert_eq!(r.initial_order_number, "i"),
            other => panic!("{other:?}"),
        }
        Ok(())
    }

    #[test]
    fn unknown_kind_is_malformed_and_missing_kind_is_missing() {
        let json = br#"{"command_id":"c","kind":"refund","merchant_id":1}"#;
        assert_eq!(
            parse_request::<CommandEnvelope>(json, 4096).err(),
            Some(Fault::MalformedRequest)
        );
        let json = br#"{"command_id":"c","merchant_id":1}"#;
        assert_eq!(
            parse_request::<CommandEnvelope>(json, 4096).err(),
            Some(Fault::MissingField)
        );
    }

    #[test]
    fn one_customer_one_partition_agreements_by_their_key() {
        let s = Subjects::default();
        let status = CommandEnvelope {
            command_id: "a".into(),
            merchant_id: 1,
            command: Command::SetStatus(SetStatusCommand {
                customer: "12<3".into(),
                status: "deny".into(),
            }),
        };
        let delete = CommandEnvelope {
            command_id: "b".into(),
            merchant_id: 2,
            command: Command::DeleteCard(DeleteCardCommand {
                customer: "123".into(),
                token: "T".into(),
            }),
        };
        let p = subjects::partition("123", 8);
        assert_eq!(status.subject(&s, 8), s.command(p, CommandKind::SetStatus));
        assert_eq!(delete.subject(&s, 8), s.command(p, CommandKind::DeleteCard));
        let charge = CommandEnvelope {
            command_id: "c".into(),
            merchant_id: 452739,
            command: Command::RecurringCharge(RecurringChargeCommand {
                initial_order_number: "init".into(),
                ..Default::default()
            }),
        };
        assert_eq!(charge.partition_key(), "452739:init");
    }

    #[test]
    fn events_carry_the_reply_or_the_fault() -> Result<(), serde_json::Error> {
        let reply = crate::wire::gateway::TokenRemovedReply {
            message: "Token T is removed".into(),
        };
        let ok = CommandEvent::succeeded("c", CommandKind::DeleteCard, &reply);
        assert_eq!(
            serde_json::to_string(&ok)?,
            r#"{"command_id":"c","kind":"delete_card","ok":true,"result":{"message":"Token T is removed"},"fault":null}"#
        );
        let failed = CommandEvent::failed("c", CommandKind::DeleteCard, Fault::TokenNotFound);
        assert_eq!(
            serde_json::to_string(&failed)?,
            r#"{"command_id":"c","kind":"delete_card","ok":false,"result":null,"fault":{"detail":"Token not found","faultcode":4,"faultstring":1}}"#
        );
        Ok(())
    }
}
