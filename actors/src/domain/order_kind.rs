//! What an order does (R13, R14, R15): the closed set of order kinds.
//!
//! Invariants: the spelling of each kind is a stored and public contract, defined here once: it
//! is written to `orders.kind`, hashed into the request digest that recognises a repeat (R16,
//! so it must never change for an existing kind) and shown as `kind` in payment replies.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// A financial transaction with a new card (R13), saving it when agreed (R4).
    Purchase,
    /// A registration transaction (R13): the card is verified, no payment.
    Registration,
    /// A payment with a saved card on the payment page (R8).
    SavedCard,
    /// Token Pay (R14): customer-initiated card-on-file from the merchant's own UI.
    TokenPay,
    /// The initial payment of a recurring agreement (R15).
    RecurringInitial,
    /// A merchant-initiated charge on a recurring agreement (R15).
    RecurringCharge,
}

impl OrderKind {
    pub const ALL: &'static [OrderKind] = &[
        OrderKind::Purchase,
        OrderKind::Registration,
        OrderKind::SavedCard,
        OrderKind::TokenPay,
        OrderKind::RecurringInitial,
        OrderKind::RecurringCharge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderKind::Purchase => "purchase",
            OrderKind::Registration => "registration",
            OrderKind::SavedCard => "saved_card",
            OrderKind::TokenPay => "token_pay",
            OrderKind::RecurringInitial => "recurring_initial",
            OrderKind::RecurringCharge => "recurring_charge",
        }
    }

    /// Reads a stored kind; an unknown one is a corrupted row, never the client's fault.
    pub fn parse(raw: &str) -> Result<OrderKind, DomainError> {
        OrderKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == raw)
            .ok_or(DomainError::UnknownStoredValue { kind: "order kind" })
    }

    /// R12 with R13: whether the order moves money, so that its amount counts toward the
    /// customer's day and week turnover. A registration verifies the card without a payment
    /// ("card verification without a following payment") and never counts.
    pub fn moves_money(self) -> bool {
        !matches!(self, OrderKind::Registration)
    }
}

impl fmt::Display for OrderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets a reply's `kind` be compared with its spelling (`result.kind == "purchase"`).
impl PartialEq<&str> for OrderKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// R16: the commands that change a customer without an order, idempotent by the caller's
/// `command_id`. The spelling is stored in `processed_commands.kind` and hashed into the request
/// digest: defined here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommandKind {
    /// R10: a card deleted by the customer or the merchant.
    DeleteCard,
    /// R6: a customer's flags set or cleared.
    SetStatus,
}

impl CommandKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::DeleteCard => "delete_card",
            CommandKind::SetStatus => "set_status",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn kinds_round_trip_through_their_stored_spelling() {
        for &k in OrderKind::ALL {
            assert_eq!(OrderKind::parse(k.as_str()), Ok(k));
            let json = serde_json::to_string(&k).expect("json");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(
            OrderKind::parse("Purchase").expect_err("case").fault(),
            Fault::Internal
        );
    }

    #[test]
    fn command_kinds_keep_their_stored_spelling() {
        assert_eq!(CommandKind::DeleteCard.as_str(), "delete_card");
        assert_eq!(CommandKind::SetStatus.as_str(), "set_status");
    }

    #[test]
    fn r13_a_registration_moves_no_money_and_every_payment_does() {
        assert!(!OrderKind::Registration.moves_money());
        for &k in OrderKind::ALL {
            if k != OrderKind::Registration {
                assert!(k.moves_money(), "{k}");
            }
        }
    }
}
