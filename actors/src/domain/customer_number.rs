//! R1: the merchant's number for a customer (`customer_number`, the original's `customernumber`).
//!
//! Invariants: at most 32 characters as received (longer is refused, not truncated); the
//! character rules of [`super::identifier`] apply (control, bidi and invisible format characters
//! and compatibility look-alikes such as full-width `ａｌｉｃｅ` are refused, canonical
//! equivalents are stored in NFC); the original's prohibited characters `< > " = ' / \ ( ) ; #`
//! are stripped, not refused; the stored value is never empty, never only whitespace, at most 32
//! characters, and contains none of them. Nothing else is changed (no trimming, no case folding).
//! The R2 signature is computed over the value *as received*, so callers keep the raw string for it.
//! Customer numbers are not secret.

use std::fmt;

use serde::{Serialize, Serializer};

use super::{identifier, DomainError};

/// At most this many characters as received (§7).
pub const MAX_LEN: usize = 32;

/// Characters the original strips from most fields.
pub const PROHIBITED: &[char] = &['<', '>', '"', '=', '\'', '/', '\\', '(', ')', ';', '#'];

/// A customer number, valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerNumber(String);

impl CustomerNumber {
    /// Applies R1 to a raw value.
    pub fn parse(raw: &str) -> Result<CustomerNumber, DomainError> {
        let len = raw.chars().count();
        if len > MAX_LEN {
            return Err(DomainError::CustomerNumberTooLong { len, max: MAX_LEN });
        }
        let normalized = identifier::normalize(raw)
            .map_err(|p| DomainError::CustomerNumberCharacters { reason: p.reason() })?;
        let stripped: String = normalized
            .chars()
            .filter(|c| !PROHIBITED.contains(c))
            .collect();
        if stripped.is_empty() {
            return Err(DomainError::CustomerNumberEmpty);
        }
        if identifier::is_blank(&stripped) {
            return Err(DomainError::CustomerNumberCharacters {
                reason: "must not be only whitespace",
            });
        }
        // NFC may (rarely) lengthen a value: the stored one keeps the limit too.
        let len = stripped.chars().count();
        if len > MAX_LEN {
            return Err(DomainError::CustomerNumberTooLong { len, max: MAX_LEN });
        }
        Ok(CustomerNumber(stripped))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CustomerNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;
    use proptest::prelude::*;

    #[test]
    fn r1_plain_customer_number_is_kept_as_is() {
        let n = CustomerNumber::parse("Cust-0001 a").expect("valid");
        assert_eq!(n.as_str(), "Cust-0001 a");
        assert_eq!(n.to_string(), "Cust-0001 a");
    }

    #[test]
    fn r1_prohibited_characters_are_stripped() {
        let n = CustomerNumber::parse(r#"<a>"b"='c'/\(d);#"#).expect("valid");
        assert_eq!(n.as_str(), "abcd");
    }

    #[test]
    fn r1_thirty_two_characters_are_accepted_and_thirty_three_refused() {
        assert!(CustomerNumber::parse(&"x".repeat(32)).is_ok());
        let err = CustomerNumber::parse(&"x".repeat(33)).expect_err("too long");
        assert_eq!(err, DomainError::CustomerNumberTooLong { len: 33, max: 32 });
        assert_eq!(err.fault(), Fault::FieldTooLong);
    }

    #[test]
    fn r1_length_counts_characters_not_bytes() {
        assert!(CustomerNumber::parse(&"я".repeat(32)).is_ok());
        assert!(CustomerNumber::parse(&"я".repeat(33)).is_err());
    }

    #[test]
    fn r1_length_is_checked_before_stripping() {
        let raw = format!("{}{}", "a".repeat(20), "#".repeat(13));
        assert!(CustomerNumber::parse(&raw).is_err());
    }

    #[test]
    fn r1_empty_after_stripping_is_refused() {
        for raw in ["", "<>", "###;;"] {
            let err = CustomerNumber::parse(raw).expect_err("empty");
            assert_eq!(err.fault(), Fault::InvalidCustomerNumber);
        }
    }

    /// The hostile values of security issue 12, finding 8, each with its reason.
    #[test]
    fn nul_bidi_override_full_width_and_whitespace_only_are_refused_as_invalid_customer_numbers() {
        for raw in [
            "ali\0ce",
            "\u{202e}ecila",
            "ａｌｉｃｅ",
            "   ",
            "al\u{200b}ice",
            "a\u{2066}b\u{2069}",
            "\t",
        ] {
            let err = CustomerNumber::parse(raw).expect_err(raw);
            assert!(
                matches!(err, DomainError::CustomerNumberCharacters { .. }),
                "{raw:?}: {err:?}"
            );
            assert_eq!(err.fault(), Fault::InvalidCustomerNumber, "{raw:?}");
        }
    }

    #[test]
    fn whitespace_left_after_stripping_is_refused_too() {
        let err = CustomerNumber::parse(" # ").expect_err("blank");
        assert_eq!(err.fault(), Fault::InvalidCustomerNumber);
    }

    #[test]
    fn canonically_equivalent_customer_numbers_are_one_customer() {
        let composed = CustomerNumber::parse("José").expect("valid");
        let decomposed = CustomerNumber::parse("Jose\u{301}").expect("valid");
        assert_eq!(composed, decomposed);
    }

    #[test]
    fn surrounding_spaces_are_kept_not_trimmed() {
        assert_eq!(
            CustomerNumber::parse(" alice ").expect("valid").as_str(),
            " alice "
        );
    }

    proptest! {
        #[test]
        fn r1_parsed_customer_number_is_short_and_clean(raw in "\\PC{0,40}") {
            if let Ok(n) = CustomerNumber::parse(&raw) {
                prop_assert!(n.as_str().chars().count() <= MAX_LEN);
                prop_assert!(!n.as_str().is_empty());
                prop_assert!(!n.as_str().contains(PROHIBITED));
            } else {
                let stripped: String = raw.chars().filter(|c| !PROHIBITED.contains(c)).collect();
                prop_assert!(
                    raw.chars().count() > MAX_LEN
                        || identifier::is_blank(&stripped)
                        || identifier::normalize(&raw).is_err()
                );
            }
        }

        #[test]
        fn r1_values_with_prohibited_chars_parse_to_the_clean_rest(
            raw in "[a-z0-9<>\"='/\\\\();#]{1,32}"
        ) {
            let clean: String = raw.chars().filter(|c| !PROHIBITED.contains(c)).collect();
            match CustomerNumber::parse(&raw) {
                Ok(n) => prop_assert_eq!(n.as_str(), clean.as_str()),
                Err(e) => {
                    prop_assert!(clean.is_empty());
                    prop_assert_eq!(e, DomainError::CustomerNumberEmpty);
                }
            }
        }
    }
}
