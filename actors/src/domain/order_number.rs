//! The merchant's order number (`order_number`), unique per merchant (R16 keys orders by it).
//!
//! Invariants: at most 128 characters as received (longer is refused); the original's prohibited
//! characters for order numbers `< > ' " ;` and spaces are stripped; the stored value is never
//! empty. The R2 signature is computed over the value as received.

use std::fmt;

use serde::{Serialize, Serializer};

use super::DomainError;

/// At most this many characters as received (§7).
pub const MAX_LEN: usize = 128;

/// Characters the original strips from order numbers.
pub const PROHIBITED: &[char] = &['<', '>', '\'', '"', ';', ' '];

/// An order number, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderNumber(String);

impl OrderNumber {
    pub fn parse(raw: &str) -> Result<OrderNumber, DomainError> {
        let len = raw.chars().count();
        if len > MAX_LEN {
            return Err(DomainError::OrderNumberTooLong { len, max: MAX_LEN });
        }
        let stripped: String = raw.chars().filter(|c| !PROHIBITED.contains(c)).collect();
        if stripped.is_empty() {
            return Err(DomainError::OrderNumberEmpty);
        }
        Ok(OrderNumber(stripped))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for OrderNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn order_number_strips_quotes_semicolons_and_spaces() {
        let n = OrderNumber::parse(" <ord'er\"> 1;2 ").expect("valid");
        assert_eq!(n.as_str(), "order12");
    }

    #[test]
    fn order_number_keeps_other_punctuation() {
        let n = OrderNumber::parse("A/B=C(1)#2").expect("valid");
        assert_eq!(n.as_str(), "A/B=C(1)#2");
    }

    #[test]
    fn order_number_of_128_characters_is_accepted_and_129_refused() {
        assert!(OrderNumber::parse(&"1".repeat(128)).is_ok());
        let err = OrderNumber::parse(&"1".repeat(129)).expect_err("too long");
        assert_eq!(err.fault(), Fault::FieldTooLong);
    }

    #[test]
    fn order_number_empty_after_stripping_is_refused() {
        let err = OrderNumber::parse("  ;; ").expect_err("empty");
        assert_eq!(err, DomainError::OrderNumberEmpty);
        assert_eq!(err.fault(), Fault::InvalidOrderNumber);
    }
}
