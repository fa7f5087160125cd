//! R12: per-customer turnover limits over the calendar day and the ISO week (Monday 00:00) in the
//! paying merchant's time zone.
//!
//! Invariants: a window starts at the first instant of its local day (local midnight, or the end of
//! the DST gap where midnight does not exist, or the earlier of two midnights where it repeats), so
//! `week_start <= day_start <= now` always holds. A payment is within a limit when
//! `used + amount <= limit` (reaching the limit exactly is allowed); an absent limit is no limit.
//! Amounts here are the caller's per-currency sums; summing and reserving is the engine's job.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::response::ResponseCode;
use super::{Amount, DomainError};

/// A merchant's limits for one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub day: Option<Amount>,
    pub week: Option<Amount>,
}

impl Limits {
    /// Limits from stored minor units (`None` = no limit); a negative or too large value is refused.
    pub fn from_minor(day: Option<i64>, week: Option<i64>) -> Result<Limits, DomainError> {
        let read = |minor: Option<i64>| match minor {
            None => Ok(None),
            Some(m) => Amount::from_minor(m)
                .map(Some)
                .ok_or(DomainError::InvalidAmount {
                    reason: "limit out of range",
                }),
        };
        Ok(Limits {
            day: read(day)?,
            week: read(week)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitWindow {
    Day,
    Week,
}

impl LimitWindow {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitWindow::Day => "day",
            LimitWindow::Week => "week",
        }
    }
}

impl std::fmt::Display for LimitWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payment that would exceed a limit: declined with `AS105` without asking the acquirer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{window} limit {limit} exceeded: {used} already used, {requested} requested")]
pub struct LimitExceeded {
    pub window: LimitWindow,
    pub limit: Amount,
    pub used: Amount,
    pub requested: Amount,
}

impl LimitExceeded {
    /// The answer to a payment over a limit (§4: "AS105 limit exceeded").
    pub const RESPONSE_CODE: ResponseCode = ResponseCode::AS105;

    pub fn response_code(&self) -> ResponseCode {
        Self::RESPONSE_CODE
    }
}

/// Reads an IANA time zone name (`Europe/Moscow`).
pub fn parse_time_zone(raw: &str) -> Result<Tz, DomainError> {
    raw.parse::<Tz>().map_err(|_| DomainError::InvalidTimeZone)
}

/// The first instant of the local `date` in `tz`.
pub fn start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    if let Some(t) = tz.from_local_datetime(&midnight).earliest() {
        return t.with_timezone(&Utc);
    }
    // Midnight falls in a DST gap: the day starts where the gap ends, the first local minute that
    // exists (gaps in the tz database are whole minutes and shorter than a day).
    (1..=24 * 60)
        .find_map(|m| {
            tz.from_local_datetime(&(midnight + Duration::minutes(m)))
                .earliest()
        })
        .map_or_else(
            || Utc.from_utc_datetime(&midnight),
            |t| t.with_timezone(&Utc),
        )
}

/// `(day_start, week_start)`: the starts of the calendar day and the ISO week containing `now` in
/// `tz`, as UTC instants.
pub fn window_starts(now: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let today = now.with_timezone(&tz).date_naive();
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    (start_of_day(today, tz), start_of_day(monday, tz))
}

/// R12: may a payment of `amount` go ahead with `day_used` and `week_used` already counted?
pub fn check(
    limits: &Limits,
    day_used: Amount,
    week_used: Amount,
    amount: Amount,
) -> Result<(), LimitExceeded> {
    let windows = [
        (LimitWindow::Day, limits.day, day_used),
        (LimitWindow::Week, limits.week, week_used),
    ];
    for (window, limit, used) in windows {
        if let Some(limit) = limit {
            // Each is at most Amount::MAX (< 10^15): the sum cannot overflow i64.
            if used.minor() + amount.minor() > limit.minor() {
                return Err(LimitExceeded {
                    window,
                    limit,
                    used,
                    requested: amount,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;
    use chrono::{NaiveDateTime, Timelike, Weekday};
    use proptest::prelude::*;

    fn utc(raw: &str) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M")
            .expect("valid datetime")
            .and_utc()
    }

    fn amount(raw: &str) -> Amount {
        Amount::parse(raw).expect("valid amount")
    }

    fn tz(name: &str) -> Tz {
        parse_time_zone(name).expect("known zone")
    }

    #[test]
    fn r12_windows_in_moscow_have_no_dst() {
        // Wednesday 2024-06-05 13:00 MSK.
        let (day, week) = window_starts(utc("2024-06-05 10:00"), tz("Europe/Moscow"));
        assert_eq!(day, utc("2024-06-04 21:00"));
        assert_eq!(week, utc("2024-06-02 21:00"));
    }

    #[test]
    fn r12_berlin_week_spanning_spring_forward_starts_in_winter_time() {
        // Sunday 2024-03-31 14:00 CEST; the clocks went forward at 02:00 that morning.
        let (day, week) = window_starts(utc("2024-03-31 12:00"), tz("Europe/Berlin"));
        assert_eq!(day, utc("2024-03-30 23:00"));
        assert_eq!(week, utc("2024-03-24 23:00"));
        // Monday after: both windows start at 00:00 CEST.
        let (day, week) = window_starts(utc("2024-04-01 08:00"), tz("Europe/Berlin"));
        assert_eq!(day, utc("2024-03-31 22:00"));
        assert_eq!(week, day);
    }

    #[test]
    fn r12_new_york_day_of_fall_back_starts_at_daylight_midnight() {
        // Sunday 2024-11-03 13:00 EST; 02:00 EDT became 01:00 EST that morning.
        let (day, week) = window_starts(utc("2024-11-03 18:00"), tz("America/New_York"));
        assert_eq!(day, utc("2024-11-03 04:00"));
        assert_eq!(week, utc("2024-10-28 04:00"));
    }

    #[test]
    fn r12_day_without_midnight_starts_when_the_gap_ends() {
        // São Paulo, 2018-11-04: 00:00 -03 jumped to 01:00 -02, so the day began at 03:00 UTC.
        let (day, _) = window_starts(utc("2018-11-04 15:00"), tz("America/Sao_Paulo"));
        assert_eq!(day, utc("2018-11-04 03:00"));
    }

    #[test]
    fn r12_window_just_after_local_midnight_is_the_new_day() {
        // 00:00:30 MSK on Monday 2024-06-10.
        let now = utc("2024-06-09 21:00") + Duration::seconds(30);
        let (day, week) = window_starts(now, tz("Europe/Moscow"));
        assert_eq!(day, utc("2024-06-09 21:00"));
        assert_eq!(week, day);
    }

    #[test]
    fn r12_payment_reaching_the_limit_exactly_is_allowed() {
        let limits = Limits {
            day: Some(amount("100")),
            week: Some(amount("500")),
        };
        assert_eq!(
            check(&limits, amount("60"), amount("60"), amount("40")),
            Ok(())
        );
    }

    #[test]
    fn second_payment_over_daily_limit_is_declined_with_as105() {
        let limits = Limits {
            day: Some(amount("100")),
            week: None,
        };
        let err = check(&limits, amount("60"), amount("60"), amount("40.01")).expect_err("over");
        assert_eq!(err.window, LimitWindow::Day);
        assert_eq!(err.response_code(), ResponseCode::AS105);
        assert_eq!(
            err.to_string(),
            "day limit 100.00 exceeded: 60.00 already used, 40.01 requested"
        );
    }

    #[test]
    fn r12_week_limit_applies_when_the_day_is_fine() {
        let limits = Limits {
            day: Some(amount("100")),
            week: Some(amount("300")),
        };
        let err = check(&limits, amount("0"), amount("250"), amount("60")).expect_err("over");
        assert_eq!(err.window, LimitWindow::Week);
    }

    #[test]
    fn r12_no_limits_allow_anything() {
        let none = Limits::default();
        assert_eq!(check(&none, Amount::MAX, Amount::MAX, Amount::MAX), Ok(()));
    }

    #[test]
    fn limits_are_read_from_stored_minor_units() {
        let l = Limits::from_minor(Some(10_000), None).expect("valid");
        assert_eq!(l.day, Some(amount("100")));
        assert_eq!(l.week, None);
        assert!(Limits::from_minor(None, Some(-1)).is_err());
    }

    #[test]
    fn unknown_time_zone_is_invalid_settings() {
        assert_eq!(tz("America/New_York"), chrono_tz::America::New_York);
        let err = parse_time_zone("Mars/Olympus").expect_err("unknown");
        assert_eq!(err.fault(), Fault::InvalidSettings);
    }

    const ZONES: &[&str] = &[
        "Europe/Berlin",
        "America/New_York",
        "Europe/Moscow",
        "America/Sao_Paulo",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Asia/Kolkata",
        "UTC",
    ];

    /// Seconds around the 2018–2026 DST transitions.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (1_514_764_800i64..1_798_761_600)
            .prop_map(|s| DateTime::from_timestamp(s, 0).expect("in range"))
    }

    /// Instants within two days of a Berlin or New York transition.
    fn near_transition() -> impl Strategy<Value = (DateTime<Utc>, &'static str)> {
        let transitions = [
            ("2024-03-31 01:00", "Europe/Berlin"),
            ("2024-10-27 01:00", "Europe/Berlin"),
            ("2025-03-30 01:00", "Europe/Berlin"),
            ("2025-10-26 01:00", "Europe/Berlin"),
            ("2024-03-10 07:00", "America/New_York"),
            ("2024-11-03 06:00", "America/New_York"),
            ("2025-03-09 07:00", "America/New_York"),
            ("2025-11-02 06:00", "America/New_York"),
            ("2018-11-04 03:00", "America/Sao_Paulo"),
        ];
        (0..transitions.len(), -172_800i64..172_800).prop_map(move |(i, offset)| {
            let (at, zone) = transitions[i];
            (utc(at) + Duration::seconds(offset), zone)
        })
    }

    fn check_windows(now: DateTime<Utc>, zone: Tz) -> Result<(), TestCaseError> {
        let (day, week) = window_starts(now, zone);
        prop_assert!(week <= day && day <= now);
        prop_assert!(now - day < Duration::hours(25));
        prop_assert!(day - week < Duration::days(7));

        let local_now = now.with_timezone(&zone);
        let local_day = day.with_timezone(&zone);
        let local_week = week.with_timezone(&zone);
        prop_assert_eq!(local_day.date_naive(), local_now.date_naive());
        prop_assert_eq!(local_week.weekday(), Weekday::Mon);
        // Each start is the first instant of its local date.
        let second = Duration::seconds(1);
        prop_assert!((day - second).with_timezone(&zone).date_naive() < local_day.date_naive());
        prop_assert!((week - second).with_timezone(&zone).date_naive() < local_week.date_naive());
        // ... which is midnight unless midnight does not exist that day.
        for start in [local_day, local_week] {
            let midnight = start.date_naive().and_time(NaiveTime::MIN);
            if zone.from_local_datetime(&midnight).earliest().is_some() {
                prop_assert_eq!((start.hour(), start.minute(), start.second()), (0, 0, 0));
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn r12_window_starts_are_ordered_and_local_midnights(
            now in instant(),
            zone in 0..ZONES.len(),
        ) {
            check_windows(now, tz(ZONES[zone]))?;
        }

        #[test]
        fn r12_window_starts_hold_across_dst_transitions((now, zone) in near_transition()) {
            check_windows(now, tz(zone))?;
        }

        #[test]
        fn r12_limit_is_exceeded_exactly_when_the_sum_passes_it(
            limit in 0..=1_000_000i64,
            used in 0..=1_000_000i64,
            requested in 0..=1_000_000i64,
        ) {
            let a = |m| Amount::from_minor(m).expect("in range");
            let day = Limits { day: Some(a(limit)), week: None };
            let week = Limits { day: None, week: Some(a(limit)) };
            let over = used + requested > limit;
            prop_assert_eq!(check(&day, a(used), Amount::ZERO, a(requested)).is_err(), over);
            prop_assert_eq!(check(&week, Amount::ZERO, a(used), a(requested)).is_err(), over);
        }
    }
}
