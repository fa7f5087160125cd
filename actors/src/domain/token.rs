//! Card tokens: the opaque 36-character identifier of a saved card (§1, the token list's `token`).
//!
//! Invariants: UUID layout (8-4-4-4-12 hex digits), upper-case as the original shows it
//! (`49D902C6-1CCF-4605-9228-11D0E8115C77`). Input is accepted in any case. New tokens are random
//! (UUID v4) and carry no card data.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::DomainError;

pub const LEN: usize = 36;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(String);

impl Token {
    /// A fresh random token.
    pub fn generate() -> Token {
        let mut buf = uuid::Uuid::encode_buffer();
        Token(
            uuid::Uuid::new_v4()
                .hyphenated()
                .encode_upper(&mut buf)
                .to_string(),
        )
    }

    pub fn parse(raw: &str) -> Result<Token, DomainError> {
        let well_formed = raw.len() == LEN
            && raw.bytes().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => b == b'-',
                _ => b.is_ascii_hexdigit(),
            });
        if !well_formed {
            return Err(DomainError::InvalidToken);
        }
        Ok(Token(raw.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Token, D::Error> {
        struct TokenVisitor;
        impl Visitor<'_> for TokenVisitor {
            type Value = Token;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 36-character card token")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Token, E> {
                Token::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TokenVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn generated_tokens_are_upper_case_uuids_and_unique() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), LEN);
        assert_eq!(Token::parse(a.as_str()), Ok(a.clone()));
        assert!(!a.as_str().chars().any(|c| c.is_ascii_lowercase()));
    }

    #[test]
    fn token_is_parsed_case_insensitively_and_normalised() {
        let t = Token::parse("49d902c6-1ccf-4605-9228-11d0e8115c77").expect("valid");
        assert_eq!(t.as_str(), "49D902C6-1CCF-4605-9228-11D0E8115C77");
        assert_eq!(
            serde_json::to_string(&t).expect("json"),
            "\"49D902C6-1CCF-4605-9228-11D0E8115C77\""
        );
    }

    #[test]
    fn token_refuses_other_layouts() {
        for raw in [
            "",
            "49D902C61CCF46059228011D0E8115C77AB",
            "49D902C6-1CCF-4605-9228-11D0E8115C7",
            "49D902C6-1CCF-4605-9228-11D0E8115C77A",
            "49D902C6-1CCF-4605-9228-11D0E8115C7G",
            "49D902C6_1CCF-4605-9228-11D0E8115C77",
            "{9D902C6-1CCF-4605-9228-11D0E8115C77}",
        ] {
            let err = Token::parse(raw).expect_err(raw);
            assert_eq!(err.fault(), Fault::InvalidToken);
        }
    }
}
