//! The merchant's order number (`order_number`), unique per merchant (R16 keys orders by it).
//!
//! Invariants: at most 128 characters as received (longer is refused); the character rules of
//! [`super::identifier`] apply (control, bidi and invisible format characters and compatibility
//! look-alikes are refused, canonical equivalents stored in NFC); the original's prohibited
//! characters for order numbers `< > ' " ;` and spaces are stripped; the stored value is never
//! empty, never only whitespace and at most 128 characters. The R2 signature is computed over the
//! value as received.

use std::fmt;

use serde::{Serialize, Serializer};

use super::{identifier, DomainError};

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
        let normalized = identifier::normalize(raw)
            .map_err(|p| DomainError::OrderNumberCharacters { reason: p.reason() })?;
        let stripped: String = normalized
            .chars()
            .filter(|c| !PROHIBITED.contains(c))
            .collect();
        if stripped.is_empty() {
            return Err(DomainError::OrderNumberEmpty);
        }
        if identifier::is_blank(&stripped) {
            return Err(DomainError::OrderNumberCharacters {
                reason: "must not be only whitespace",
            });
        }
        let len = stripped.chars().count();
        if len > MAX_LEN {
            return Err(DomainError::OrderNumberTooLong { len, max: MAX_LEN });
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

    #[test]
    fn nul_bidi_override_full_width_and_invisible_characters_are_refused_as_invalid_order_numbers()
    {
        for raw in [
            "r-\01",
            "\u{202e}1-r",
            "ｒ－１",
            "r\u{200b}1",
            "r\n1",
            "\u{feff}r-1",
        ] {
            let err = OrderNumber::parse(raw).expect_err(raw);
            assert!(
                matches!(err, DomainError::OrderNumberCharacters { .. }),
                "{raw:?}: {err:?}"
            );
            assert_eq!(err.fault(), Fault::InvalidOrderNumber, "{raw:?}");
        }
    }

    #[test]
    fn whitespace_only_order_numbers_are_refused() {
        let err = OrderNumber::parse("   ").expect_err("blank");
        assert_eq!(err.fault(), Fault::InvalidOrderNumber);
    }
}
