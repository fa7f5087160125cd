//! Money amounts (`order_amount`, limits, recurring bounds) as integer minor units.
//!
//! Invariants: an [`Amount`] is never negative and never above [`Amount::MAX`] (13 integer digits and
//! 2 decimals, the original's "up to 15 digits with 2 decimals"), so the textual form always
//! round-trips. The text form is `123`, `123.4` or `123.45` in input (no sign, no exponent, `.` only,
//! no whitespace) and always two decimals in output (`10.34`, `5.00`). Floats are never used for
//! arithmetic; a JSON number is parsed through its shortest textual form.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::DomainError;

/// Digits allowed before the decimal point.
pub const MAX_INTEGER_DIGITS: usize = 13;

/// A non-negative amount in minor units (kopecks, cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);
    /// `9999999999999.99`.
    pub const MAX: Amount = Amount(999_999_999_999_999);

    /// Parses `123`, `123.4` or `123.45`.
    pub fn parse(raw: &str) -> Result<Amount, DomainError> {
        let invalid = |reason| DomainError::InvalidAmount { reason };
        let (int_part, frac_part) = match raw.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (raw, None),
        };
        if int_part.is_empty() {
            return Err(invalid("no digits before the decimal point"));
        }
        if !int_part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("only digits and one '.' are allowed"));
        }
        if int_part.len() > MAX_INTEGER_DIGITS {
            return Err(invalid("more than 13 digits before the decimal point"));
        }
        let frac = frac_part.unwrap_or("");
        if frac_part.is_some() && frac.is_empty() {
            return Err(invalid("no digits after the decimal point"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("only digits and one '.' are allowed"));
        }
        if frac.len() > 2 {
            return Err(invalid("more than 2 decimals"));
        }
        let digits = |s: &str| {
            s.bytes()
                .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'))
        };
        let mut cents = digits(frac);
        if frac.len() == 1 {
            cents *= 10;
        }
        // At most 13 + 2 digits: cannot overflow i64.
        Ok(Amount(digits(int_part) * 100 + cents))
    }

    /// An amount of `minor` units; `None` when negative or above [`Amount::MAX`].
    pub fn from_minor(minor: i64) -> Option<Amount> {
        (0..=Amount::MAX.0)
            .contains(&minor)
            .then_some(Amount(minor))
    }

    pub fn minor(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `None` when the sum exceeds [`Amount::MAX`].
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).and_then(Amount::from_minor)
    }

    /// `None` when the result would be negative.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        Amount::from_minor(self.0 - other.0)
    }

    /// Subtracts, stopping at zero (for releasing reservations).
    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount((self.0 - other.0).max(0))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl std::str::FromStr for Amount {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Amount, DomainError> {
        Amount::parse(s)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Amount, D::Error> {
        deserializer.deserialize_any(AmountVisitor)
    }
}

struct AmountVisitor;

impl Visitor<'_> for AmountVisitor {
    type Value = Amount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an amount like \"10.34\" or 10.34")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
        Amount::parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
        // `Display` of f64 is the shortest text that reads back to the same float and never uses an
        // exponent, so `10.34` stays `10.34` and `10.345` is refused for its third decimal.
        if !v.is_finite() {
            return Err(E::custom(DomainError::InvalidAmount {
                reason: "not a finite number",
            }));
        }
        self.visit_str(&v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;
    use proptest::prelude::*;

    fn amount(raw: &str) -> Amount {
        Amount::parse(raw).expect("valid amount")
    }

    #[test]
    fn amount_accepts_zero_one_or_two_decimals() {
        assert_eq!(amount("123").minor(), 12_300);
        assert_eq!(amount("123.4").minor(), 12_340);
        assert_eq!(amount("123.45").minor(), 12_345);
        assert_eq!(amount("0.05").minor(), 5);
        assert_eq!(amount("007.10").minor(), 710);
    }

    #[test]
    fn amount_displays_two_decimals() {
        assert_eq!(amount("10.34").to_string(), "10.34");
        assert_eq!(amount("5").to_string(), "5.00");
        assert_eq!(amount("0.5").to_string(), "0.50");
        assert_eq!(Amount::ZERO.to_string(), "0.00");
        assert_eq!(Amount::MAX.to_string(), "9999999999999.99");
    }

    #[test]
    fn amount_refuses_malformed_text() {
        for raw in [
            "",
            ".",
            "1.",
            ".5",
            "1.234",
            "-1",
            "+1",
            "1e3",
            "1,5",
            " 1",
            "1 ",
            "1.2.3",
            "12a",
            "99999999999999",
            "NaN",
            "١٢",
        ] {
            let err = Amount::parse(raw).expect_err(raw);
            assert_eq!(err.fault(), Fault::InvalidAmount, "{raw}");
        }
    }

    #[test]
    fn amount_of_thirteen_integer_digits_is_the_maximum() {
        assert_eq!(amount("9999999999999.99"), Amount::MAX);
        assert!(Amount::parse("10000000000000").is_err());
    }

    #[test]
    fn amount_arithmetic_stays_in_range() {
        assert_eq!(Amount::from_minor(-1), None);
        assert_eq!(Amount::from_minor(Amount::MAX.minor() + 1), None);
        assert_eq!(
            amount("1.50").checked_add(amount("2.50")),
            Some(amount("4"))
        );
        assert_eq!(Amount::MAX.checked_add(amount("0.01")), None);
        assert_eq!(amount("1").checked_sub(amount("2")), None);
        assert_eq!(amount("1").saturating_sub(amount("2")), Amount::ZERO);
        assert!(Amount::ZERO.is_zero());
    }

    #[test]
    fn amount_serializes_as_string_and_reads_strings_and_numbers() {
        assert_eq!(
            serde_json::to_string(&amount("10.3")).expect("json"),
            "\"10.30\""
        );
        let read = |json: &str| serde_json::from_str::<Amount>(json);
        assert_eq!(read("\"10.34\"").expect("string"), amount("10.34"));
        assert_eq!(read("10.34").expect("float"), amount("10.34"));
        assert_eq!(read("10").expect("integer"), amount("10"));
        assert_eq!(read("0.1").expect("float"), amount("0.10"));
        assert!(read("10.345").is_err());
        assert!(read("-1").is_err());
        assert!(read("1e300").is_err());
        assert!(read("true").is_err());
    }

    proptest! {
        #[test]
        fn amount_display_and_parse_round_trip(minor in 0..=Amount::MAX.minor()) {
            let a = Amount::from_minor(minor).expect("in range");
            let text = a.to_string();
            prop_assert_eq!(Amount::parse(&text), Ok(a));
            prop_assert_eq!(a.minor(), minor);
            let json = serde_json::to_string(&a).expect("json");
            prop_assert_eq!(serde_json::from_str::<Amount>(&json).expect("json"), a);
        }

        #[test]
        fn amount_as_json_number_reads_back(minor in 0..=99_999_999_999i64) {
            let a = Amount::from_minor(minor).expect("in range");
            let read = serde_json::from_str::<Amount>(&a.to_string()).expect("number");
            prop_assert_eq!(read, a);
        }

        #[test]
        fn amount_parse_never_accepts_three_decimals(int in 0u64..1_000_000, frac in 0u32..1000) {
            let raw = format!("{int}.{frac:03}");
            prop_assert!(Amount::parse(&raw).is_err());
        }
    }
}
