//! The pure domain layer of oneclick: validated newtypes for every field the rules talk about and
//! the rule functions of docs/rules.md (R1–R18) that need no I/O, no actors and no clock of their own.
//!
//! Invariants kept here:
//! - a value of a domain type is always valid (construction goes through `parse`/`from_*`);
//! - secrets ([`Pan`], [`Cvc`]) redact themselves in `Debug`/`Display` and zeroize on drop;
//! - every problem is one [`DomainError`] variant that maps to exactly one public
//!   [`Fault`](crate::fault::Fault), and no error message ever contains a card number or a CVC,
//!   not even a part of one.

pub mod amount;
pub mod card_number;
pub mod cardholder;
pub mod currency;
pub mod customer_number;
pub mod cvc;
pub mod expiry;
pub mod identifier;
pub mod limits;
pub mod mode;
pub mod order_kind;
pub mod order_number;
pub mod payment_result;
pub mod recurring;
pub mod response;
pub mod signature;
pub mod status;
pub mod token;

pub use amount::Amount;
pub use card_number::{CardBrand, Pan};
pub use cardholder::CardholderName;
pub use currency::Currency;
pub use customer_number::CustomerNumber;
pub use cvc::Cvc;
pub use expiry::Expiry;
pub use limits::{LimitExceeded, LimitWindow, Limits};
pub use mode::MerchantMode;
pub use order_kind::{CommandKind, OrderKind};
pub use order_number::OrderNumber;
pub use payment_result::{MaskedCard, PaymentResult};
pub use recurring::RecurringParams;
pub use response::{OrderState, ResponseCode};
pub use status::{CardState, CustomerStatus};
pub use token::Token;

use crate::fault::Fault;

/// Everything that can be wrong with a domain value or a rule check.
///
/// Messages name the field and the problem, never the offending value when it could be card data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// R1: more than 32 characters as received.
    #[error("customer_number has {len} characters, at most {max} are allowed")]
    CustomerNumberTooLong { len: usize, max: usize },
    /// R1: nothing left after stripping the prohibited characters.
    #[error("customer_number is empty after stripping prohibited characters")]
    CustomerNumberEmpty,
    /// Refused characters, or only whitespace (`domain::identifier`; security issue 12).
    #[error("customer_number: {reason}")]
    CustomerNumberCharacters { reason: &'static str },
    /// More than 128 characters as received.
    #[error("order_number has {len} characters, at most {max} are allowed")]
    OrderNumberTooLong { len: usize, max: usize },
    /// Nothing left after stripping the prohibited characters.
    #[error("order_number is empty after stripping prohibited characters")]
    OrderNumberEmpty,
    /// Refused characters, or only whitespace (`domain::identifier`; security issue 12).
    #[error("order_number: {reason}")]
    OrderNumberCharacters { reason: &'static str },
    #[error("invalid amount: {reason}")]
    InvalidAmount { reason: &'static str },
    #[error("invalid currency: {reason}")]
    InvalidCurrency { reason: &'static str },
    /// The reason never quotes the number.
    #[error("invalid card number: {reason}")]
    InvalidCardNumber { reason: &'static str },
    #[error("invalid card expiry: {reason}")]
    InvalidExpiry { reason: &'static str },
    #[error("invalid cardholder name: {reason}")]
    InvalidCardholder { reason: &'static str },
    /// The reason never quotes the value.
    #[error("invalid CVC2: {reason}")]
    InvalidCvc { reason: &'static str },
    #[error("invalid token format")]
    InvalidToken,
    /// R2: missing, undecodable or wrong signature (one error for all, on purpose).
    #[error("missing or wrong signature")]
    InvalidSignature,
    /// R3.
    #[error("customer_number cannot be combined with recurring parameters")]
    RecurringWithCustomerNumber,
    /// R15: the parameters of a new agreement are malformed or inconsistent.
    #[error("invalid recurring parameters: {reason}")]
    InvalidRecurring { reason: &'static str },
    /// R15: a later charge is outside its agreement.
    #[error("charge outside the recurring agreement: {reason}")]
    RecurringOutOfTerms { reason: &'static str },
    /// R12: not an IANA time zone name.
    #[error("unknown time zone")]
    InvalidTimeZone,
    /// R18: not one of `standard`, `saved_cards_only`, `save_only`.
    #[error("unknown One Click mode")]
    InvalidMode,
    /// R6: not one of the customer statuses.
    #[error("unknown customer status")]
    InvalidStatus,
    /// A stored or internal code (brand, card state, order state, response code) we do not know:
    /// a bug or a corrupted row, never the client's fault.
    #[error("unknown stored {kind}")]
    UnknownStoredValue { kind: &'static str },
}

impl DomainError {
    /// The public fault this error is reported as.
    pub fn fault(&self) -> Fault {
        match self {
            DomainError::CustomerNumberTooLong { .. } | DomainError::OrderNumberTooLong { .. } => {
                Fault::FieldTooLong
            }
            DomainError::CustomerNumberEmpty | DomainError::CustomerNumberCharacters { .. } => {
                Fault::InvalidCustomerNumber
            }
            DomainError::OrderNumberEmpty | DomainError::OrderNumberCharacters { .. } => {
                Fault::InvalidOrderNumber
            }
            DomainError::InvalidAmount { .. } => Fault::InvalidAmount,
            DomainError::InvalidCurrency { .. } => Fault::InvalidCurrency,
            DomainError::InvalidCardNumber { .. } => Fault::InvalidCardNumber,
            DomainError::InvalidExpiry { .. } => Fault::InvalidExpiry,
            DomainError::InvalidCardholder { .. } => Fault::InvalidCardholder,
            DomainError::InvalidCvc { .. } => Fault::InvalidCvc,
            DomainError::InvalidToken => Fault::InvalidToken,
            DomainError::InvalidSignature => Fault::InvalidSignature,
            DomainError::RecurringWithCustomerNumber => Fault::RecurringWithCustomerNumber,
            DomainError::InvalidRecurring { .. } => Fault::InvalidRecurringParameters,
            DomainError::RecurringOutOfTerms { .. } => Fault::RecurringOutOfTerms,
            DomainError::InvalidTimeZone | DomainError::InvalidMode => Fault::InvalidSettings,
            DomainError::InvalidStatus => Fault::InvalidStatus,
            DomainError::UnknownStoredValue { .. } => Fault::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_fault() {
        let cases = [
            (
                DomainError::CustomerNumberTooLong { len: 33, max: 32 },
                Fault::FieldTooLong,
            ),
            (
                DomainError::CustomerNumberEmpty,
                Fault::InvalidCustomerNumber,
            ),
            (DomainError::OrderNumberEmpty, Fault::InvalidOrderNumber),
            (
                DomainError::CustomerNumberCharacters { reason: "x" },
                Fault::InvalidCustomerNumber,
            ),
            (
                DomainError::OrderNumberCharacters { reason: "x" },
                Fault::InvalidOrderNumber,
            ),
            (DomainError::InvalidSignature, Fault::InvalidSignature),
            (
                DomainError::RecurringWithCustomerNumber,
                Fault::RecurringWithCustomerNumber,
            ),
            (DomainError::InvalidTimeZone, Fault::InvalidSettings),
            (
                DomainError::UnknownStoredValue { kind: "brand" },
                Fault::Internal,
            ),
        ];
        for (error, fault) in cases {
            assert_eq!(error.fault(), fault, "{error}");
        }
    }
}
