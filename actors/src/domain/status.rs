//! R6: customer statuses and card states.
//!
//! Invariants: `new`, `member` and `not_active` are never stored as flags, they are derived from
//! the customer's cards by [`derive`]; `deny` and `fraud` are flags the merchant sets and clears,
//! and `fraud` wins over `deny`, which wins over anything derived. A card's own state is one of
//! [`CardState`]; the personal account shows it with the original's labels.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A customer's status as the merchant and the payment page see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStatus {
    /// No saved card.
    New,
    /// At least one usable saved card.
    Member,
    /// Saved cards exist but none is usable (expired or blocked).
    NotActive,
    /// No more save offers; payments otherwise standard.
    Deny,
    /// Payments refused.
    Fraud,
}

impl CustomerStatus {
    pub const ALL: &'static [CustomerStatus] = &[
        CustomerStatus::New,
        CustomerStatus::Member,
        CustomerStatus::NotActive,
        CustomerStatus::Deny,
        CustomerStatus::Fraud,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CustomerStatus::New => "new",
            CustomerStatus::Member => "member",
            CustomerStatus::NotActive => "not_active",
            CustomerStatus::Deny => "deny",
            CustomerStatus::Fraud => "fraud",
        }
    }

    pub fn parse(raw: &str) -> Result<CustomerStatus, DomainError> {
        CustomerStatus::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == raw)
            .ok_or(DomainError::InvalidStatus)
    }

    /// Whether this status is one a merchant sets (a flag) rather than one derived from cards.
    pub fn is_flag(self) -> bool {
        matches!(self, CustomerStatus::Deny | CustomerStatus::Fraud)
    }
}

impl fmt::Display for CustomerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// R6: what a merchant asks to change on a customer (`customers.status`, durable `set_status`).
/// The spelling is the request's and is hashed into the command's digest (R16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusChange {
    /// No more save offers; payments otherwise standard.
    Deny,
    /// Payments refused.
    Fraud,
    ClearDeny,
    ClearFraud,
    /// Clears both flags.
    Active,
    /// The customer leaves the service: `deny`, and every card deleted.
    Leave,
}

/// What a [`StatusChange`] does: each flag set, cleared or left (`None`), and whether every card
/// of the customer is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusEffect {
    pub deny: Option<bool>,
    pub fraud: Option<bool>,
    pub delete_cards: bool,
}

impl StatusChange {
    pub const ALL: &'static [StatusChange] = &[
        StatusChange::Deny,
        StatusChange::Fraud,
        StatusChange::ClearDeny,
        StatusChange::ClearFraud,
        StatusChange::Active,
        StatusChange::Leave,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusChange::Deny => "deny",
            StatusChange::Fraud => "fraud",
            StatusChange::ClearDeny => "clear_deny",
            StatusChange::ClearFraud => "clear_fraud",
            StatusChange::Active => "active",
            StatusChange::Leave => "leave",
        }
    }

    pub fn parse(raw: &str) -> Result<StatusChange, DomainError> {
        StatusChange::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == raw)
            .ok_or(DomainError::InvalidStatus)
    }

    pub fn effect(self) -> StatusEffect {
        let (deny, fraud, delete_cards) = match self {
            StatusChange::Deny => (Some(true), None, false),
            StatusChange::Fraud => (None, Some(true), false),
            StatusChange::ClearDeny => (Some(false), None, false),
            StatusChange::ClearFraud => (None, Some(false), false),
            StatusChange::Active => (Some(false), Some(false), false),
            StatusChange::Leave => (Some(true), None, true),
        };
        StatusEffect {
            deny,
            fraud,
            delete_cards,
        }
    }
}

/// R6: a customer flagged `fraud` is refused payments. Checked on the customer's snapshot before
/// anything is stored, and again by the vault under the customer's lock, as committed (another
/// process may have set the flag since the snapshot was read).
pub fn refuses_payments(fraud: bool) -> bool {
    fraud
}

/// R6 with R4: a customer flagged `deny` (or `fraud`) is offered no save, and no new card of theirs
/// is saved. Checked on the snapshot for the offer and the plan, and again by the vault under the
/// customer's lock when the card would be saved.
pub fn accepts_save_offers(deny: bool, fraud: bool) -> bool {
    !deny && !fraud
}

/// [`accepts_save_offers`] as a SQL condition over a row's `deny` and `fraud` columns, for the
/// vault's one-statement completion that saves a card as it claims the order (its statement
/// holds this text, and a test there checks that the two agree for every pair of flags).
pub const ACCEPTS_SAVE_OFFERS_SQL: &str = "NOT deny AND NOT fraud";

/// R6: the status from the merchant's flags and the customer's cards. `saved_cards` counts cards
/// not deleted; `usable_cards` those of them that are active and unexpired.
pub fn derive(deny: bool, fraud: bool, usable_cards: usize, saved_cards: usize) -> CustomerStatus {
    if fraud {
        CustomerStatus::Fraud
    } else if deny {
        CustomerStatus::Deny
    } else if usable_cards > 0 {
        CustomerStatus::Member
    } else if saved_cards > 0 {
        CustomerStatus::NotActive
    } else {
        CustomerStatus::New
    }
}

/// The stored state of one saved card (R7, R10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardState {
    Active,
    Expired,
    Blocked,
    /// R10: ciphertext and fingerprint wiped, masked row kept for the personal account.
    Deleted,
}

impl CardState {
    pub const ALL: &'static [CardState] = &[
        CardState::Active,
        CardState::Expired,
        CardState::Blocked,
        CardState::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CardState::Active => "active",
            CardState::Expired => "expired",
            CardState::Blocked => "blocked",
            CardState::Deleted => "deleted",
        }
    }

    /// Reads a stored state written by [`CardState::as_str`].
    pub fn parse(raw: &str) -> Result<CardState, DomainError> {
        CardState::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == raw)
            .ok_or(DomainError::UnknownStoredValue { kind: "card state" })
    }

    /// The original's personal-account card states: member, fraud, expired, deleted.
    pub fn personal_account_label(self) -> &'static str {
        match self {
            CardState::Active => "member",
            CardState::Blocked => "fraud",
            CardState::Expired => "expired",
            CardState::Deleted => "deleted",
        }
    }
}

impl fmt::Display for CardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn r6_a_customer_who_leaves_is_denied_and_loses_every_card() {
        let leave = StatusChange::parse("leave").expect("known");
        assert_eq!(
            leave.effect(),
            StatusEffect {
                deny: Some(true),
                fraud: None,
                delete_cards: true
            }
        );
        assert_eq!(
            StatusChange::parse("active").expect("known").effect().fraud,
            Some(false)
        );
        for &c in StatusChange::ALL {
            assert_eq!(StatusChange::parse(c.as_str()), Ok(c));
        }
        assert_eq!(
            StatusChange::parse("Deny").expect_err("case").fault(),
            crate::fault::Fault::InvalidStatus
        );
    }

    #[test]
    fn r6_customer_without_cards_is_new() {
        assert_eq!(derive(false, false, 0, 0), CustomerStatus::New);
    }

    #[test]
    fn r6_customer_with_a_usable_card_is_member() {
        assert_eq!(derive(false, false, 1, 3), CustomerStatus::Member);
    }

    #[test]
    fn r6_customer_whose_cards_are_all_unusable_is_not_active() {
        assert_eq!(derive(false, false, 0, 2), CustomerStatus::NotActive);
    }

    #[test]
    fn r6_fraud_wins_over_deny_and_deny_over_cards() {
        assert_eq!(derive(true, true, 1, 1), CustomerStatus::Fraud);
        assert_eq!(derive(false, true, 0, 0), CustomerStatus::Fraud);
        assert_eq!(derive(true, false, 1, 1), CustomerStatus::Deny);
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for &s in CustomerStatus::ALL {
            assert_eq!(CustomerStatus::parse(s.as_str()), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).expect("json"),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(
            CustomerStatus::parse("Member").expect_err("case").fault(),
            Fault::InvalidStatus
        );
        assert!(CustomerStatus::Fraud.is_flag());
        assert!(!CustomerStatus::NotActive.is_flag());
    }

    #[test]
    fn card_states_round_trip_and_have_personal_account_labels() {
        for &s in CardState::ALL {
            assert_eq!(CardState::parse(s.as_str()), Ok(s));
        }
        assert_eq!(CardState::Active.personal_account_label(), "member");
        assert_eq!(CardState::Blocked.personal_account_label(), "fraud");
        assert_eq!(CardState::Expired.personal_account_label(), "expired");
        assert_eq!(CardState::Deleted.personal_account_label(), "deleted");
        assert_eq!(
            CardState::parse("gone").expect_err("unknown").fault(),
            Fault::Internal
        );
    }
}
