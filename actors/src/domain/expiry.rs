//! Card expiry dates, shown as the original shows them: `MM.YYYY` (R9, the token list's `expire`).
//!
//! Invariants: month is 1–12 and year 2000–2099 (two-digit years mean 20YY). A card is valid through
//! the last day of its expiry month. Parsing never refuses a past date: whether an expired card is
//! refused, shown inactive or kept is the engine's decision (R6, R7).

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::DomainError;

pub const MIN_YEAR: u32 = 2000;
pub const MAX_YEAR: u32 = 2099;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Expiry {
    // Field order matters for the derived ordering: year first.
    pub year: u16,
    pub month: u8,
}

impl Expiry {
    /// `month` 1–12; `year` either four digits (2000–2099) or two (`25` → 2025).
    pub fn from_parts(month: u32, year: u32) -> Result<Expiry, DomainError> {
        if !(1..=12).contains(&month) {
            return Err(DomainError::InvalidExpiry {
                reason: "month must be 01-12",
            });
        }
        let year = if year < 100 { 2000 + year } else { year };
        if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
            return Err(DomainError::InvalidExpiry {
                reason: "year must be 2000-2099",
            });
        }
        // Both bounds checked above, so the casts are lossless.
        Ok(Expiry {
            year: year as u16,
            month: month as u8,
        })
    }

    /// Parses `MM.YYYY` (`M.YYYY` is tolerated).
    pub fn parse(raw: &str) -> Result<Expiry, DomainError> {
        let malformed = DomainError::InvalidExpiry {
            reason: "expected MM.YYYY",
        };
        let Some((month, year)) = raw.split_once('.') else {
            return Err(malformed);
        };
        let digits = |s: &str, lens: std::ops::RangeInclusive<usize>| {
            (lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u32>().ok())
                .flatten()
        };
        match (digits(month, 1..=2), digits(year, 4..=4)) {
            (Some(m), Some(y)) => Expiry::from_parts(m, y),
            _ => Err(malformed),
        }
    }

    /// `MM.YYYY`.
    pub fn display(&self) -> String {
        self.to_string()
    }

    /// True when `date` is after the last day of the expiry month.
    pub fn is_expired_on(&self, date: NaiveDate) -> bool {
        let today = (date.year(), date.month());
        today > (i32::from(self.year), u32::from(self.month))
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}.{:04}", self.month, self.year)
    }
}

/// Serialized as `"MM.YYYY"`.
impl Serialize for Expiry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Expiry, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Expiry::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    #[test]
    fn expiry_parses_and_displays_mm_dot_yyyy() {
        let e = Expiry::parse("12.2025").expect("valid");
        assert_eq!((e.month, e.year), (12, 2025));
        assert_eq!(e.display(), "12.2025");
        assert_eq!(
            Expiry::parse("3.2030").expect("valid").to_string(),
            "03.2030"
        );
    }

    #[test]
    fn expiry_from_parts_reads_two_digit_years_as_20yy() {
        assert_eq!(Expiry::from_parts(1, 27), Expiry::parse("01.2027"));
        assert_eq!(Expiry::from_parts(1, 2027), Expiry::parse("01.2027"));
    }

    #[test]
    fn expiry_refuses_bad_months_years_and_layouts() {
        for raw in [
            "13.2025", "00.2025", "12.25", "12/2025", "122025", "12.20250", "ab.2025", "",
        ] {
            let err = Expiry::parse(raw).expect_err(raw);
            assert_eq!(err.fault(), Fault::InvalidExpiry);
        }
        assert!(Expiry::from_parts(5, 1999).is_err());
        assert!(Expiry::from_parts(5, 2100).is_err());
    }

    #[test]
    fn expiry_serializes_as_mm_dot_yyyy() {
        let e = Expiry::parse("7.2031").expect("valid");
        assert_eq!(serde_json::to_string(&e).expect("json"), "\"07.2031\"");
        assert_eq!(
            serde_json::from_str::<Expiry>("\"07.2031\"").expect("json"),
            e
        );
    }

    #[test]
    fn expiry_does_not_refuse_past_dates() {
        assert!(Expiry::parse("01.2001").is_ok());
    }

    #[test]
    fn card_is_valid_through_the_last_day_of_its_month() {
        let e = Expiry::parse("02.2024").expect("valid");
        assert!(!e.is_expired_on(date(2023, 12, 31)));
        assert!(!e.is_expired_on(date(2024, 2, 1)));
        assert!(!e.is_expired_on(date(2024, 2, 29)));
        assert!(e.is_expired_on(date(2024, 3, 1)));
        assert!(e.is_expired_on(date(2025, 1, 1)));
    }

    #[test]
    fn expiries_order_by_year_then_month() {
        let a = Expiry::parse("12.2024").expect("valid");
        let b = Expiry::parse("01.2025").expect("valid");
        assert!(a < b);
    }
}
