//! Secrets as received: a card number, a CVC, a password or a key from the configuration, before
//! (or instead of) being parsed into a domain type.
//!
//! Invariants: a [`SecretString`] redacts itself in `Debug` (there is no `Display`) and zeroizes its
//! memory on drop. It sits at the bottom of the crate (it imports nothing of it) so that every
//! layer, and the service's configuration, can hold a secret without importing the engine.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string as received (card number, CVC, password): redacted in Debug, zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}
