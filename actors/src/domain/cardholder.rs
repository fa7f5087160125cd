//! The cardholder name as embossed on the card (R9 shows it with the masked card).
//!
//! Invariants: trimmed, 2–64 characters, only Latin letters, spaces, `-`, `.` and `'`, at least one
//! letter; stored upper-case. Not secret, but personal data: keep it out of logs anyway.

use std::fmt;

use super::DomainError;

pub const MIN_LEN: usize = 2;
pub const MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CardholderName(String);

impl CardholderName {
    pub fn parse(raw: &str) -> Result<CardholderName, DomainError> {
        let name = raw.trim();
        if name.len() < MIN_LEN || name.len() > MAX_LEN {
            // Checked on bytes, but anything non-ASCII is refused below anyway.
            return Err(DomainError::InvalidCardholder {
                reason: "must be 2-64 characters",
            });
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphabetic() || matches!(c, ' ' | '-' | '.' | '\''))
        {
            return Err(DomainError::InvalidCardholder {
                reason: "only Latin letters, spaces, '-', '.' and apostrophes are allowed",
            });
        }
        if !name.chars().any(|c| c.is_ascii_alphabetic()) {
            return Err(DomainError::InvalidCardholder {
                reason: "no letters",
            });
        }
        Ok(CardholderName(name.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CardholderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn cardholder_is_trimmed_and_upper_cased() {
        let n = CardholderName::parse("  Ivan O'Neil-Smith Jr. ").expect("valid");
        assert_eq!(n.as_str(), "IVAN O'NEIL-SMITH JR.");
    }

    #[test]
    fn cardholder_length_is_two_to_sixty_four() {
        assert!(CardholderName::parse("Al").is_ok());
        assert!(CardholderName::parse("A").is_err());
        assert!(CardholderName::parse(&"A".repeat(64)).is_ok());
        assert!(CardholderName::parse(&"A".repeat(65)).is_err());
    }

    #[test]
    fn cardholder_refuses_other_scripts_digits_and_symbols() {
        for raw in ["Иван Петров", "JOHN 2ND", "JOHN<SCRIPT>", "--", "", "   "] {
            let err = CardholderName::parse(raw).expect_err(raw);
            assert_eq!(err.fault(), Fault::InvalidCardholder);
        }
    }
}
