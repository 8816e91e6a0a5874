//! Parsing the times that devices and clients send.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Parses a time as devices send it: RFC 3339 (`2026-01-02T03:04:05.678Z`), ISO 8601 or MySQL
/// style without a zone (`2026-01-02 03:04:05`, UTC assumed, as ThingSpeak does), with a short
/// offset (`2026-01-02 03:04:05-05`, `…+0530`, `… UTC`, or `… -0500` as ThingSpeak's CSV writes
/// it), or epoch seconds (`1767323045`).
pub fn parse_device_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|secs| Utc.timestamp_opt(secs, 0).single());
    }
    let s = s
        .strip_suffix(" UTC")
        .or_else(|| s.strip_suffix('Z'))
        .unwrap_or(s);
    let normalized = s.replacen('T', " ", 1);
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(&normalized, fmt) {
            return Some(t.and_utc());
        }
    }
    // A trailing offset: -05, -0500, -05:00.
    let split = normalized.rfind(['+', '-']).filter(|&i| i > 10)?;
    let (local, offset) = normalized.split_at(split);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let digits: String = offset[1..].chars().filter(char::is_ascii_digit).collect();
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    let offset = FixedOffset::east_opt(sign * (h * 3600 + m * 60))?;
    let local = NaiveDateTime::parse_from_str(local.trim_end(), "%Y-%m-%d %H:%M:%S%.f").ok()?;
    offset
        .from_local_datetime(&local)
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// An entry's point time in InfluxDB, in nanoseconds: its `ts` (microseconds) plus `seq mod 1000`
/// nanoseconds. Entries of one request share their receive time, and points with the same series
/// and time overwrite each other, so the nanoseconds keep such entries apart; `seq` makes it the
/// same on every replay. Reads order and page entries by it too. `None` outside what InfluxDB can
/// store (years 1677 to 2262).
pub fn point_time(ts_us: i64, seq: u64) -> Option<i64> {
    ts_us.checked_mul(1000)?.checked_add((seq % 1000) as i64)
}

/// Microseconds since the epoch of a time as the envelopes carry it
/// (`2026-01-02T03:04:05.123456Z`, see [`crate::envelope::format_time`]), read without a general
/// parser; any other RFC 3339 form goes through chrono's.
pub fn envelope_micros(s: &str) -> Option<i64> {
    fn digits(b: &[u8]) -> Option<u32> {
        b.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    }
    let b = s.as_bytes();
    let fixed = b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z';
    if fixed {
        let date = NaiveDate::from_ymd_opt(
            digits(&b[0..4])? as i32,
            digits(&b[5..7])?,
            digits(&b[8..10])?,
        );
        let time = date.and_then(|d| {
            d.and_hms_micro_opt(
                digits(&b[11..13])?,
                digits(&b[14..16])?,
                digits(&b[17..19])?,
                digits(&b[20..26])?,
            )
        });
        if let Some(t) = time {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn device_times_in_every_documented_form() {
        let t = utc("2014-12-31T23:59:59Z");
        for s in [
            "2014-12-31T23:59:59Z",
            "2014-12-31T23:59:59+00:00",
            "2014-12-31 23:59:59",
            "2014-12-31T23:59:59",
            "2014-12-31 23:59:59 UTC",
            "2015-01-01 00:59:59+01",
            "2014-12-31 18:59:59-05",
            "2014-12-31 18:59:59-0500",
            "2014-12-31 18:59:59-05:00",
            "2014-12-31 18:59:59 -0500",
            "1420070399",
        ] {
            assert_eq!(parse_device_time(s), Some(t), "{s}");
        }
        assert_eq!(
            parse_device_time("2014-12-31 23:59:59.250"),
            Some(utc("2014-12-31T23:59:59.250Z"))
        );
        for bad in [
            "",
            "yesterday",
            "2014-13-01 00:00:00",
            "2014-12-31 23:59:59+7",
            "12:00",
        ] {
            assert_eq!(parse_device_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn envelope_times_read_fast_and_match_chrono() {
        for s in [
            "2026-01-02T03:04:05.123456Z",
            "1970-01-01T00:00:00.000000Z",
            "1969-12-31T23:59:59.999999Z",
            "2024-02-29T12:00:00.000001Z",
            "2026-01-02T03:04:05Z",
            "2026-01-02T04:04:05.5+01:00",
        ] {
            assert_eq!(envelope_micros(s), Some(utc(s).timestamp_micros()), "{s}");
        }
        for bad in [
            "2026-02-30T00:00:00.000000Z",
            "2026-01-02T24:00:00.000000Z",
            "2026-01-02T03:04:05.12345xZ",
            "",
        ] {
            assert_eq!(envelope_micros(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use chrono::{SecondsFormat, Timelike};
    use proptest::prelude::*;

    /// A time in years 1 to 9999, the range every form here can print, to the nanosecond.
    fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
        (-62_135_596_800i64..=253_402_300_799, 0u32..1_000_000_000)
            .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in range"))
    }

    /// An offset a device may send, whole minutes, under a day either way.
    fn any_offset() -> impl Strategy<Value = FixedOffset> {
        (-(23 * 60 + 59)..=(23 * 60 + 59))
            .prop_map(|m: i32| FixedOffset::east_opt(m * 60).expect("under a day"))
    }

    /// Text shaped like a time, so that the parser gets past its first checks.
    fn time_like() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[0-9 :.TZUC+-]{0,40}",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,12})?)?\
             ( ?[+-][0-9]{1,5}(:[0-9]{2})?| UTC|Z)?",
        ]
    }

    proptest! {
        #[test]
        fn a_device_time_in_rfc_3339_parses_back_to_itself(
            t in any_time(),
            offset in any_offset(),
            z in any::<bool>(),
        ) {
            let text = t.with_timezone(&offset).to_rfc3339_opts(SecondsFormat::AutoSi, z);
            prop_assert_eq!(parse_device_time(&text), Some(t), "{}", text);
        }

        #[test]
        fn a_device_time_without_a_zone_is_utc_to_the_nanosecond(
            t in any_time(),
            sep in prop::sample::select(vec![" ", "T"]),
            suffix in prop::sample::select(vec!["", " UTC", "Z"]),
        ) {
            let text = format!("{}{suffix}", t.format(&format!("%Y-%m-%d{sep}%H:%M:%S%.f")));
            prop_assert_eq!(parse_device_time(&text), Some(t), "{}", text);
        }

        #[test]
        fn a_device_time_with_a_short_offset_is_that_far_from_utc(
            t in any_time(),
            offset in any_offset(),
            form in 0..3usize,
        ) {
            let t = t.with_nanosecond(0).expect("whole second");
            let secs = offset.local_minus_utc();
            let (sign, abs) = if secs < 0 { ('-', -secs) } else { ('+', secs) };
            let (h, m) = (abs / 3600, abs % 3600 / 60);
            let zone = match form {
                0 if m == 0 => format!("{sign}{h:02}"),
                1 => format!("{sign}{h:02}{m:02}"),
                _ => format!("{sign}{h:02}:{m:02}"),
            };
            let text = format!("{}{zone}", t.with_timezone(&offset).format("%Y-%m-%d %H:%M:%S"));
            prop_assert_eq!(parse_device_time(&text), Some(t), "{}", text);
        }

        #[test]
        fn epoch_seconds_are_that_many_seconds_after_1970(secs in 0..=253_402_300_799i64) {
            prop_assert_eq!(
                parse_device_time(&secs.to_string()),
                DateTime::from_timestamp(secs, 0)
            );
        }

        #[test]
        fn any_text_gives_a_time_or_none_and_surrounding_space_changes_nothing(s in time_like()) {
            let t = parse_device_time(&s);
            prop_assert_eq!(parse_device_time(&format!(" \t{s}\n")), t);
        }

        #[test]
        fn an_envelope_time_reads_back_to_the_microsecond(t in any_time()) {
            let text = crate::envelope::format_time(t);
            prop_assert_eq!(envelope_micros(&text), Some(t.timestamp_micros()), "{}", text);
        }

        #[test]
        fn the_fast_envelope_reader_agrees_with_chrono_on_any_text(
            t in any_time(),
            edits in prop::collection::vec((0..27usize, "[0-9:TZ.+ -]"), 0..3),
            other in any::<String>(),
            use_other in prop::bool::weighted(0.2),
        ) {
            let mut text = if use_other {
                other
            } else {
                crate::envelope::format_time(t)
            };
            for (at, with) in edits {
                if text.is_char_boundary(at) && text.is_char_boundary(at + 1) && at < text.len() {
                    text.replace_range(at..at + 1, &with);
                }
            }
            prop_assert_eq!(
                envelope_micros(&text),
                DateTime::parse_from_rfc3339(&text).ok().map(|t| t.timestamp_micros()),
                "{}", text
            );
        }
    }
}
