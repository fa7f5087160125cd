//! ISO 4217 currencies (`order_currency`): limits (R12) and recurring bounds are per currency.
//!
//! Invariants: a [`Currency`] is always one of the active codes of [`KNOWN`] (three upper-case ASCII
//! letters); input is accepted in any case and upper-cased.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::DomainError;

/// Active ISO 4217 codes we accept (alphabetical, so a binary search finds them).
pub const KNOWN: &[&str] = &[
    "AED", "AMD", "ARS", "AUD", "AZN", "BGN", "BHD", "BRL", "BYN", "CAD", "CHF", "CLP", "CNY",
    "COP", "CZK", "DKK", "EGP", "EUR", "GBP", "GEL", "HKD", "HUF", "IDR", "ILS", "INR", "ISK",
    "JPY", "KGS", "KRW", "KWD", "KZT", "MDL", "MNT", "MXN", "MYR", "NOK", "NZD", "PEN", "PHP",
    "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SEK", "SGD", "THB", "TJS", "TMT", "TRY", "TWD",
    "UAH", "USD", "UZS", "VND", "ZAR",
];

/// A known currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(&'static str);

impl Currency {
    /// Parses a three-letter code, case-insensitively.
    pub fn parse(raw: &str) -> Result<Currency, DomainError> {
        if raw.len() != 3 || !raw.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(DomainError::InvalidCurrency {
                reason: "not three letters",
            });
        }
        let upper = raw.to_ascii_uppercase();
        KNOWN
            .binary_search(&upper.as_str())
            .map(|i| Currency(KNOWN[i]))
            .map_err(|_| DomainError::InvalidCurrency {
                reason: "not a known ISO 4217 code",
            })
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::str::FromStr for Currency {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Currency, DomainError> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Currency, D::Error> {
        struct CurrencyVisitor;
        impl Visitor<'_> for CurrencyVisitor {
            type Value = Currency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a three-letter ISO 4217 code")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Currency, E> {
                Currency::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(CurrencyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    #[test]
    fn known_list_is_sorted_unique_and_upper_case() {
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]));
        assert!(KNOWN
            .iter()
            .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())));
        assert!(KNOWN.len() >= 40);
    }

    #[test]
    fn currency_is_parsed_case_insensitively() {
        assert_eq!(Currency::parse("rub").expect("RUB").as_str(), "RUB");
        assert_eq!(Currency::parse("Usd").expect("USD").to_string(), "USD");
        for code in ["EUR", "KZT", "BYN", "GEL", "AMD", "CNY"] {
            assert_eq!(Currency::parse(code).expect(code).as_str(), code);
        }
    }

    #[test]
    fn currency_refuses_unknown_or_malformed_codes() {
        for raw in ["", "RU", "RUBL", "R1B", "XXX", "RUR", "ЕВР", " RUB"] {
            let err = Currency::parse(raw).expect_err(raw);
            assert_eq!(err.fault(), Fault::InvalidCurrency);
        }
    }

    #[test]
    fn currency_serializes_as_its_code() {
        let c = Currency::parse("eur").expect("EUR");
        assert_eq!(serde_json::to_string(&c).expect("json"), "\"EUR\"");
        let back: Currency = serde_json::from_str("\"eur\"").expect("json");
        assert_eq!(back, c);
    }
}
