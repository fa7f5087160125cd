//! Wire types: every JSON message that crosses NATS, separate from the engine's request and reply
//! types, with explicit, tested conversions between them.
//!
//! - [`gateway`]: the payment page's request-reply subjects (offer, pay, pay_saved, register,
//!   delete_card) and their replies;
//! - [`merchant`]: the merchant web services (token list/removal byte-exact with the original,
//!   Token Pay, order state, customers);
//! - [`command`]: the durable JetStream command envelope (never card data) and its events;
//! - [`customer`]: the customer reference those bodies share, with the original's spellings;
//! - [`fault`]: the original's fault shape.
//!
//! Invariants:
//! - our own fields are snake_case; the original's spellings are serde aliases; unknown fields are
//!   ignored (they can never set anything);
//! - no `Debug` of a wire type prints a PAN, a CVC or a password ([`SecretString`] fields);
//! - serde error texts may quote input, so [`parse_request`] turns them into a [`Fault`] and drops
//!   the text: never log a serde error of a request body.
//!
//! [`SecretString`]: oneclick_actors::engine::requests::SecretString

pub mod command;
pub mod customer;
pub mod de;
pub mod fault;
pub mod gateway;
pub mod merchant;

use oneclick_actors::fault::{Fault, Language};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use command::{CommandEnvelope, CommandEvent, CommandKind, DeadLetter};
pub use customer::{CustomerRef, MerchantCustomerRef, OptionalCustomerRef};
pub use fault::{FaultBody, FaultReply};

/// Parses a request body: oversize → `RequestTooLarge`, a missing mandatory field →
/// `MissingField`, anything else that does not fit (syntax, types) → `MalformedRequest`.
pub fn parse_request<T: DeserializeOwned>(bytes: &[u8], max_len: usize) -> Result<T, Fault> {
    if bytes.len() > max_len {
        return Err(Fault::RequestTooLarge);
    }
    serde_json::from_slice(bytes).map_err(|e| classify(&e))
}

/// Maps a serde error onto a fault without keeping its text.
fn classify(e: &serde_json::Error) -> Fault {
    match e.classify() {
        serde_json::error::Category::Data if e.to_string().starts_with("missing field") => {
            Fault::MissingField
        }
        _ => Fault::MalformedRequest,
    }
}

/// Serializes a reply; a failure (never expected for our types) becomes `Internal`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Fault> {
    serde_json::to_vec(value).map_err(|_| Fault::Internal)
}

/// The request's `language`, strictly: absent or empty → `EN`; `RU`/`EN` in any case; anything
/// else → `InvalidLanguage`.
pub fn parse_language(raw: Option<&str>) -> Result<Language, Fault> {
    match raw.map(str::trim) {
        None | Some("") => Ok(Language::default()),
        Some(s) => Language::parse(s).ok_or(Fault::InvalidLanguage),
    }
}

/// Best effort: the `language` of any body, even one that does not parse as its request type,
/// so that even a fault for a malformed request speaks the caller's language. Defaults to `EN`.
pub fn sniff_language(bytes: &[u8]) -> Language {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        language: Option<serde_json::Value>,
    }
    if let Ok(Probe { language }) = serde_json::from_slice::<Probe>(bytes) {
        return language
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .and_then(Language::parse)
            .unwrap_or_default();
    }
    sniff_language_bytes(bytes).unwrap_or_default()
}

/// Finds `"language"` `:` `"xx"` in bytes that are not valid JSON.
fn sniff_language_bytes(bytes: &[u8]) -> Option<Language> {
    const KEY: &[u8] = b"\"language\"";
    let at = bytes
        .windows(KEY.len())
        .position(|w| w.eq_ignore_ascii_case(KEY))?;
    let rest = &bytes[at + KEY.len()..];
    let rest = trim_start(rest).strip_prefix(b":")?;
    let rest = trim_start(rest).strip_prefix(b"\"")?;
    let value = rest.get(..2)?;
    if rest.get(2) != Some(&b'"') {
        return None;
    }
    Language::parse(std::str::from_utf8(value).ok()?)
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &bytes[skip..]
}

/// Requests that name the language their faults should speak.
pub trait Localized {
    /// The requested language, leniently (an invalid one falls back to `EN`; `into_request`
    /// refuses it with `InvalidLanguage`).
    fn language(&self) -> Language;
}

/// A merchant id must be a positive integer; anything else names no merchant.
pub(crate) fn check_merchant_id(merchant_id: i64) -> Result<i64, Fault> {
    if merchant_id > 0 {
        Ok(merchant_id)
    } else {
        Err(Fault::UnknownMerchant)
    }
}

/// `<p>.v1.health` reply (also `GET /health`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReply {
    /// `ok` when the vault answers, else `degraded`.
    pub status: String,
    /// The vault (database) answered.
    pub vault: bool,
    /// The NATS connection is up.
    pub nats: bool,
    /// Customer actors alive in this instance.
    pub active_customers: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::gateway::OfferBody;

    #[test]
    fn oversize_body_is_request_too_large() {
        let body = vec![b' '; 101];
        assert_eq!(
            parse_request::<OfferBody>(&body, 100).err(),
            Some(Fault::RequestTooLarge)
        );
    }

    #[test]
    fn bad_json_and_wrong_types_are_malformed_missing_field_is_missing() {
        assert_eq!(
            parse_request::<OfferBody>(b"{not json", 1000).err(),
            Some(Fault::MalformedRequest)
        );
        assert_eq!(
            parse_request::<OfferBody>(br#"{"merchant_id":true}"#, 1000).err(),
            Some(Fault::MalformedRequest)
        );
        assert_eq!(
            parse_request::<OfferBody>(br#"{"merchant_id":"1","order_number":"1"}"#, 1000).err(),
            Some(Fault::MissingField)
        );
    }

    #[test]
    fn language_is_strict_in_requests_and_lenient_for_faults() {
        assert_eq!(parse_language(None), Ok(Language::En));
        assert_eq!(parse_language(Some("ru")), Ok(Language::Ru));
        assert_eq!(parse_language(Some("DE")), Err(Fault::InvalidLanguage));
        assert_eq!(sniff_language(br#"{"language":"RU","x":[}"#), Language::Ru);
        assert_eq!(
            sniff_language(br#"{"language" : "ru", "merchant_id": {"#),
            Language::Ru
        );
        assert_eq!(
            sniff_language(br#"{"language":"RU","merchant_id":true}"#),
            Language::Ru
        );
        assert_eq!(sniff_language(br#"{"language":"DE"}"#), Language::En);
        assert_eq!(sniff_language(b"garbage"), Language::En);
        assert_eq!(sniff_language(br#"{"language":42}"#), Language::En);
    }

    #[test]
    fn merchant_id_must_be_positive() {
        assert_eq!(check_merchant_id(1), Ok(1));
        assert_eq!(check_merchant_id(0), Err(Fault::UnknownMerchant));
        assert_eq!(check_merchant_id(-5), Err(Fault::UnknownMerchant));
    }
}
