//! Parsing read parameters: times (RFC 3339 or relative), durations, limits. Every bad value is
//! a 400 that names the parameter.

use chrono::{DateTime, NaiveDate, Utc};
use thingtotal_common::problem::Problem;

/// The earliest and latest times a query may name: InfluxDB's nanosecond timestamps cover
/// 1677 to 2262, so both ends stay well inside.
pub(crate) const MIN_US: i64 = -5_364_662_400_000_000; // 1800-01-01
pub(crate) const MAX_US: i64 = 7_258_118_400_000_000; // 2200-01-01

/// Parses a duration: a positive integer and a unit, `s`, `m`, `h`, `d` or `w` (`90s`, `15m`).
/// In microseconds.
pub(crate) fn duration(name: &str, s: &str) -> Result<i64, Problem> {
    let bad = || {
        Problem::bad_request(format!(
            "{name}={s:?} is not a duration: use a positive number and s, m, h, d or w, such as 15m"
        ))
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_s: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let us = n
        .checked_mul(unit_s)
        .and_then(|s| s.checked_mul(1_000_000))
        .filter(|us| *us > 0 && *us <= MAX_US)
        .ok_or_else(bad)?;
    Ok(us)
}

/// Parses a time: RFC 3339 (`2026-01-02T03:04:05Z`), a date (`2026-01-02`, midnight UTC),
/// `now`, or relative to now (`-1h`, `-30m`, `-7d`). In microseconds since the epoch.
pub(crate) fn time(name: &str, s: &str, now: DateTime<Utc>) -> Result<i64, Problem> {
    let now_us = now.timestamp_micros();
    let us = if s == "now" {
        now_us
    } else if let Some(rel) = s.strip_prefix('-').or_else(|| s.strip_prefix("now-")) {
        now_us - duration(name, rel)?
    } else if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.timestamp_micros()
    } else if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_micros()
    } else {
        return Err(Problem::bad_request(format!(
            "{name}={s:?} is not a time: use RFC 3339 (2026-01-02T03:04:05Z), a date, now, or a \
             time relative to now such as -1h"
        )));
    };
    if !(MIN_US..=MAX_US).contains(&us) {
        return Err(Problem::bad_request(format!(
            "{name}={s:?} is out of range: times from 1800 to 2200 are accepted"
        )));
    }
    Ok(us)
}

/// Parses a limit of 1 to `max`.
pub(crate) fn limit(
    name: &str,
    s: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, Problem> {
    let Some(s) = s else { return Ok(default) };
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(Problem::bad_request(format!(
            "{name}={s:?}: give a whole number from 1 to {max}"
        ))),
    }
}

/// The range `[start, end)`, checked to be non-empty.
pub(crate) fn range(start: Option<i64>, end: i64) -> Result<super::Range, Problem> {
    let start_us = start.unwrap_or(MIN_US);
    if start_us >= end {
        return Err(Problem::bad_request("start must be before end"));
    }
    Ok(super::Range {
        start_us,
        end_us: end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn times_absolute_and_relative() {
        let n = now().timestamp_micros();
        assert_eq!(time("start", "now", now()).unwrap(), n);
        assert_eq!(time("start", "-1h", now()).unwrap(), n - 3_600_000_000);
        assert_eq!(
            time("start", "now-2d", now()).unwrap(),
            n - 2 * 86_400_000_000
        );
        assert_eq!(
            time("start", "2026-11-25T11:00:00Z", now()).unwrap(),
            n - 3_600_000_000
        );
        assert_eq!(
            time("start", "2026-11-25T13:00:00+01:00", now()).unwrap(),
            n
        );
        assert_eq!(
            time("start", "2026-11-25", now()).unwrap(),
            n - 12 * 3_600_000_000
        );
        for bad in [
            "",
            "yesterday",
            "-1y",
            "-0h",
            "2026-13-01",
            "9999-01-01T00:00:00Z",
            "-99999999999d",
            "1' OR '1'='1",
        ] {
            let e = time("start", bad, now()).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.detail.contains("start="), "{}", e.detail);
        }
    }

    #[test]
    fn durations_and_limits() {
        assert_eq!(duration("window", "15m").unwrap(), 900_000_000);
        assert_eq!(duration("window", "1d").unwrap(), 86_400_000_000);
        for bad in ["", "0m", "m", "15", "1.5h", "-1h", "1 h", "99999999999999w"] {
            assert!(duration("window", bad).is_err(), "{bad}");
        }
        assert_eq!(limit("limit", None, 100, 10_000).unwrap(), 100);
        assert_eq!(limit("limit", Some("10000"), 100, 10_000).unwrap(), 10_000);
        for bad in ["0", "-1", "10001", "x", ""] {
            assert!(limit("limit", Some(bad), 100, 10_000).is_err(), "{bad}");
        }
        assert!(range(Some(5), 5).is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use chrono::{FixedOffset, SecondsFormat};
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    const UNITS: [(&str, i64); 5] = [
        ("s", 1),
        ("m", 60),
        ("h", 3600),
        ("d", 86_400),
        ("w", 7 * 86_400),
    ];

    proptest! {
        #[test]
        fn a_time_in_rfc_3339_reads_back_to_the_microsecond(
            us in MIN_US..=MAX_US,
            offset_min in -(23 * 60 + 59)..=(23 * 60 + 59i32),
            z in any::<bool>(),
        ) {
            let t = DateTime::from_timestamp_micros(us).unwrap();
            let text = t
                .with_timezone(&FixedOffset::east_opt(offset_min * 60).unwrap())
                .to_rfc3339_opts(SecondsFormat::AutoSi, z);
            prop_assert_eq!(time("start", &text, now()).ok(), Some(us), "{}", text);
        }

        #[test]
        fn a_date_is_its_midnight_in_utc(
            days in MIN_US / 86_400_000_000..=MAX_US / 86_400_000_000,
        ) {
            let day = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::TimeDelta::days(days);
            let text = day.format("%Y-%m-%d").to_string();
            prop_assert_eq!(
                time("end", &text, now()).ok(),
                Some(days * 86_400_000_000),
                "{}", text
            );
        }

        #[test]
        fn a_duration_is_its_number_of_units_or_a_bad_request(
            n in prop_oneof![0..1_000i64, any::<i64>().prop_map(i64::abs)],
            unit in 0..UNITS.len(),
        ) {
            let (u, secs) = UNITS[unit];
            let text = format!("{n}{u}");
            let expected = n
                .checked_mul(secs * 1_000_000)
                .filter(|us| (1..=MAX_US).contains(us));
            prop_assert_eq!(duration("window", &text).ok(), expected, "{}", text);
            // Relative to now: now less the duration, when that is still in range.
            let back = expected
                .map(|us| now().timestamp_micros() - us)
                .filter(|us| *us >= MIN_US);
            prop_assert_eq!(time("start", &format!("-{text}"), now()).ok(), back, "{}", text);
            prop_assert_eq!(time("start", &format!("now-{text}"), now()).ok(), back, "{}", text);
        }

        #[test]
        fn any_text_is_a_time_in_range_or_a_bad_request_that_names_the_parameter(
            s in prop_oneof![
                any::<String>(),
                "(now)?-?[0-9]{0,22}[smhdwy]?",
                "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2}))?",
            ],
        ) {
            match time("start", &s, now()) {
                Ok(us) => prop_assert!((MIN_US..=MAX_US).contains(&us), "{} gave {}", s, us),
                Err(p) => {
                    prop_assert_eq!(p.status, 400);
                    prop_assert!(p.detail.contains("start="), "{}", p.detail);
                }
            }
            if let Ok(us) = duration("window", &s) {
                prop_assert!((1..=MAX_US).contains(&us), "{} gave {}", s, us);
            }
        }

        #[test]
        fn a_limit_is_the_number_given_or_a_bad_request(
            s in prop_oneof![any::<String>(), "[+-]?[0-9]{0,25}"],
            n in 1..=10_000usize,
        ) {
            prop_assert_eq!(limit("limit", Some(&n.to_string()), 100, 10_000).ok(), Some(n));
            match limit("limit", Some(&s), 100, 10_000) {
                Ok(got) => prop_assert_eq!(Some(got), s.parse::<usize>().ok()),
                Err(p) => prop_assert_eq!(p.status, 400),
            }
        }
    }
}
