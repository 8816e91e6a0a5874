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
