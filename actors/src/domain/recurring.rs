//! R3 and R15: recurring (merchant-initiated) agreements.
//!
//! Invariants: [`RecurringParams`] always has `min <= max`, `max > 0`, a period of 1–999 days and an
//! end date; it exists only for `recurring_indicator = 1`. A charge is within its agreement when its
//! amount is in `[min, max]`, it is not after the end date, and at least `period_days` have passed
//! since the previous charge. Empty strings count as absent fields. Recurring parameters never go
//! together with a `customer_number` (R3): an agreement is not a One Click customer.

use chrono::{Duration, NaiveDate};

use super::{Amount, DomainError};

/// The period is "Number, 3 digits".
pub const MAX_PERIOD_DAYS: u16 = 999;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecurringParams {
    pub min: Amount,
    pub max: Amount,
    pub period_days: u16,
    /// Last day on which a charge is allowed.
    pub max_date: NaiveDate,
}

fn present(field: Option<&str>) -> Option<&str> {
    field.filter(|v| !v.trim().is_empty())
}

/// True when any of the five recurring fields is present (non-empty), for R3.
pub fn any_field_present(
    indicator: Option<&str>,
    min: Option<&str>,
    max: Option<&str>,
    period: Option<&str>,
    max_date: Option<&str>,
) -> bool {
    [indicator, min, max, period, max_date]
        .into_iter()
        .any(|f| present(f).is_some())
}

impl RecurringParams {
    /// Reads the five request fields. `Ok(None)`: not a recurring order.
    pub fn parse(
        indicator: Option<&str>,
        min: Option<&str>,
        max: Option<&str>,
        period: Option<&str>,
        max_date: Option<&str>,
    ) -> Result<Option<RecurringParams>, DomainError> {
        let invalid = |reason| DomainError::InvalidRecurring { reason };
        let (min, max, period, max_date) = (
            present(min),
            present(max),
            present(period),
            present(max_date),
        );
        match present(indicator).map(str::trim) {
            None | Some("0") => {
                if min.is_some() || max.is_some() || period.is_some() || max_date.is_some() {
                    Err(invalid("recurring fields without recurring_indicator = 1"))
                } else {
                    Ok(None)
                }
            }
            Some("1") => {
                let (Some(min), Some(max), Some(period), Some(max_date)) =
                    (min, max, period, max_date)
                else {
                    return Err(invalid(
                        "recurring_indicator = 1 needs min and max amount, period and max date",
                    ));
                };
                let min = Amount::parse(min).map_err(|_| invalid("bad recurring_min_amount"))?;
                let max = Amount::parse(max).map_err(|_| invalid("bad recurring_max_amount"))?;
                if max.is_zero() {
                    return Err(invalid("recurring_max_amount must be positive"));
                }
                if min > max {
                    return Err(invalid("recurring_min_amount exceeds recurring_max_amount"));
                }
                let period_days = parse_period(period).ok_or(invalid(
                    "recurring_period must be a number of days from 1 to 999",
                ))?;
                let max_date = parse_date(max_date)
                    .ok_or(invalid("recurring_max_date must be a date DD.MM.YYYY"))?;
                Ok(Some(RecurringParams {
                    min,
                    max,
                    period_days,
                    max_date,
                }))
            }
            Some(_) => Err(invalid("recurring_indicator must be 0 or 1")),
        }
    }
}

fn parse_period(raw: &str) -> Option<u16> {
    if raw.is_empty() || raw.len() > 3 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<u16>()
        .ok()
        .filter(|p| (1..=MAX_PERIOD_DAYS).contains(p))
}

/// Parses `DD.MM.YYYY` strictly (two, two and four digits).
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let bytes = raw.as_bytes();
    let layout_ok = bytes.len() == 10
        && bytes[2] == b'.'
        && bytes[5] == b'.'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 2 || i == 5 || b.is_ascii_digit());
    if !layout_ok {
        return None;
    }
    let day = raw.get(0..2)?.parse().ok()?;
    let month = raw.get(3..5)?.parse().ok()?;
    let year = raw.get(6..10)?.parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// R3: a `customer_number` and any recurring field never go together.
pub fn check_exclusive(
    has_customer_number: bool,
    any_recurring_field_present: bool,
) -> Result<(), DomainError> {
    if has_customer_number && any_recurring_field_present {
        Err(DomainError::RecurringWithCustomerNumber)
    } else {
        Ok(())
    }
}

/// R15: is a later charge of `amount` on `today` within the agreement?
pub fn check_charge(
    params: &RecurringParams,
    amount: Amount,
    today: NaiveDate,
    last_charge_on: Option<NaiveDate>,
) -> Result<(), DomainError> {
    let out = |reason| DomainError::RecurringOutOfTerms { reason };
    if amount < params.min || amount > params.max {
        return Err(out("amount outside the agreed minimum and maximum"));
    }
    if today > params.max_date {
        return Err(out("the agreement has ended"));
    }
    if let Some(last) = last_charge_on {
        let next_allowed = last.checked_add_signed(Duration::days(i64::from(params.period_days)));
        if next_allowed.is_none_or(|next| today < next) {
            return Err(out("the period since the previous charge has not passed"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    fn amount(raw: &str) -> Amount {
        Amount::parse(raw).expect("valid amount")
    }

    fn params() -> RecurringParams {
        RecurringParams::parse(
            Some("1"),
            Some("10"),
            Some("100.50"),
            Some("30"),
            Some("31.12.2026"),
        )
        .expect("valid")
        .expect("recurring")
    }

    #[test]
    fn r15_indicator_one_with_all_fields_makes_an_agreement() {
        assert_eq!(
            params(),
            RecurringParams {
                min: amount("10"),
                max: amount("100.50"),
                period_days: 30,
                max_date: date(2026, 12, 31),
            }
        );
    }

    #[test]
    fn r15_no_indicator_and_no_fields_is_not_recurring() {
        assert_eq!(
            RecurringParams::parse(None, None, None, None, None),
            Ok(None)
        );
        assert_eq!(
            RecurringParams::parse(Some("0"), None, Some(""), None, None),
            Ok(None)
        );
    }

    #[test]
    fn r15_missing_or_malformed_fields_are_refused() {
        let cases = [
            (Some("1"), None, Some("100"), Some("30"), Some("31.12.2026")),
            (Some("1"), Some("10"), Some("100"), Some("30"), None),
            (None, Some("10"), None, None, None),
            (Some("0"), None, None, Some("30"), None),
            (Some("2"), None, None, None, None),
            (
                Some("1"),
                Some("200"),
                Some("100"),
                Some("30"),
                Some("31.12.2026"),
            ),
            (
                Some("1"),
                Some("0"),
                Some("0"),
                Some("30"),
                Some("31.12.2026"),
            ),
            (
                Some("1"),
                Some("10"),
                Some("100"),
                Some("0"),
                Some("31.12.2026"),
            ),
            (
                Some("1"),
                Some("10"),
                Some("100"),
                Some("1000"),
                Some("31.12.2026"),
            ),
            (
                Some("1"),
                Some("10"),
                Some("100"),
                Some("-1"),
                Some("31.12.2026"),
            ),
            (
                Some("1"),
                Some("10"),
                Some("100"),
                Some("30"),
                Some("2026-12-31"),
            ),
            (
                Some("1"),
                Some("10"),
                Some("100"),
                Some("30"),
                Some("31.02.2026"),
            ),
            (
                Some("1"),
                Some("10"),
                Some("100"),
                Some("30"),
                Some("1.1.2026"),
            ),
            (
                Some("1"),
                Some("1.234"),
                Some("100"),
                Some("30"),
                Some("31.12.2026"),
            ),
        ];
        for (i, min, max, period, end) in cases {
            let err = RecurringParams::parse(i, min, max, period, end)
                .expect_err(&format!("{i:?} {min:?} {max:?} {period:?} {end:?}"));
            assert_eq!(err.fault(), Fault::InvalidRecurringParameters);
        }
    }

    #[test]
    fn r15_period_accepts_one_to_three_digits() {
        for (raw, days) in [("1", 1), ("007", 7), ("999", 999)] {
            let p = RecurringParams::parse(
                Some("1"),
                Some("1"),
                Some("1"),
                Some(raw),
                Some("01.01.2030"),
            )
            .expect("valid")
            .expect("recurring");
            assert_eq!(p.period_days, days);
        }
    }

    #[test]
    fn r3_customer_number_with_recurring_fields_is_refused() {
        let err = check_exclusive(true, true).expect_err("R3");
        assert_eq!(err.fault(), Fault::RecurringWithCustomerNumber);
        assert!(check_exclusive(true, false).is_ok());
        assert!(check_exclusive(false, true).is_ok());
    }

    #[test]
    fn r3_any_non_empty_recurring_field_counts_as_present() {
        assert!(!any_field_present(None, None, Some(""), None, None));
        assert!(any_field_present(Some("0"), None, None, None, None));
        assert!(any_field_present(
            None,
            None,
            None,
            None,
            Some("01.01.2030")
        ));
    }

    #[test]
    fn r15_charge_within_bounds_and_period_is_allowed() {
        let p = params();
        assert_eq!(
            check_charge(&p, amount("10"), date(2026, 1, 1), None),
            Ok(())
        );
        assert_eq!(
            check_charge(
                &p,
                amount("100.50"),
                date(2026, 1, 31),
                Some(date(2026, 1, 1))
            ),
            Ok(())
        );
        assert_eq!(
            check_charge(&p, amount("50"), date(2026, 12, 31), None),
            Ok(())
        );
    }

    #[test]
    fn r15_charge_out_of_bounds_early_or_late_is_refused() {
        let p = params();
        let refused = [
            check_charge(&p, amount("9.99"), date(2026, 1, 1), None),
            check_charge(&p, amount("100.51"), date(2026, 1, 1), None),
            check_charge(&p, amount("50"), date(2027, 1, 1), None),
            check_charge(&p, amount("50"), date(2026, 1, 30), Some(date(2026, 1, 1))),
        ];
        for result in refused {
            assert_eq!(
                result.expect_err("out of terms").fault(),
                Fault::RecurringOutOfTerms
            );
        }
    }
}
