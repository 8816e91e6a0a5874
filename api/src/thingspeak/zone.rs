//! Time zones: the one times are shown in, and `start` and `end` are read in.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::error::TsError;
use crate::read::params;

/// The zone times are shown in, and `start` and `end` are read in.
#[derive(Debug, Clone, Copy)]
pub(super) enum Zone {
    /// An IANA zone (`timezone`), or UTC.
    Named(Tz),
    /// A fixed offset from UTC (`offset`).
    Fixed(FixedOffset),
}

impl Zone {
    /// The offset from UTC at `t`, in whole minutes: the local mean times of old dates have
    /// seconds (Berlin's was +00:53:28), which neither `+00:53` nor `-0500` can write, and a
    /// time shown with an offset other than the one it was computed at names another instant.
    fn offset_at(&self, t: DateTime<Utc>) -> FixedOffset {
        let o = match self {
            Zone::Named(tz) => tz.offset_from_utc_datetime(&t.naive_utc()).fix(),
            Zone::Fixed(o) => *o,
        };
        let secs = o.local_minus_utc();
        FixedOffset::east_opt(secs - secs % 60).unwrap_or(o)
    }

    /// The time that `naive` is in this zone (the earlier, where it is ambiguous).
    fn local(&self, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            Zone::Named(tz) => tz
                .from_local_datetime(&naive)
                .earliest()
                .map(|t| t.to_utc()),
            Zone::Fixed(o) => o.from_local_datetime(&naive).earliest().map(|t| t.to_utc()),
        }
    }

    /// `2026-01-02T03:04:05Z`, or `…-05:00` away from UTC.
    pub(super) fn iso(&self, us: i64) -> String {
        let Some(t) = DateTime::from_timestamp_micros(us) else {
            return String::new();
        };
        let o = self.offset_at(t);
        if o.local_minus_utc() == 0 {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            t.with_timezone(&o)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        }
    }

    /// `2026-01-02 03:04:05 UTC`, or `… -0500` away from UTC, as ThingSpeak's CSV has it.
    pub(super) fn csv(&self, us: i64) -> String {
        let Some(t) = DateTime::from_timestamp_micros(us) else {
            return String::new();
        };
        let o = self.offset_at(t);
        if o.local_minus_utc() == 0 {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        } else {
            t.with_timezone(&o)
                .format("%Y-%m-%d %H:%M:%S %z")
                .to_string()
        }
    }

    /// `start`/`end`: `YYYY-MM-DD HH:NN:SS` in this zone (or a date, or with its own offset).
    pub(super) fn parse(&self, name: &str, s: &str) -> Result<i64, TsError> {
        let bad = || {
            TsError::bad(format!(
                "{name}={s:?} is not a date: use YYYY-MM-DD HH:NN:SS"
            ))
        };
        let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s.trim(), f).ok())
            .or_else(|| {
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
            });
        let t = match naive {
            Some(n) => self.local(n),
            None if s.len() > 10 => thingtotal_common::time::parse_device_time(s),
            None => None,
        }
        .ok_or_else(bad)?;
        // Checked against the same bounds as the native API's times.
        params::time(name, &t.to_rfc3339(), Utc::now()).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_thingspeak_writes_them() {
        let us = 1_767_323_045_678_000; // 2026-01-02T03:04:05.678Z
        let utc = Zone::Named(Tz::UTC);
        assert_eq!(utc.iso(us), "2026-01-02T03:04:05Z");
        assert_eq!(utc.csv(us), "2026-01-02 03:04:05 UTC");
        let ny = Zone::Named("America/New_York".parse().unwrap());
        assert_eq!(ny.iso(us), "2026-01-01T22:04:05-05:00");
        assert_eq!(ny.csv(us), "2026-01-01 22:04:05 -0500");
        // Before 1893 Berlin kept local mean time, +00:53:28: shown at +00:53, consistently.
        let berlin = Zone::Named("Europe/Berlin".parse().unwrap());
        let lmt = -2_422_054_408_000_001; // 1893-03-31T23:06:31.999999Z
        assert_eq!(berlin.iso(lmt), "1893-03-31T23:59:31+00:53");
        assert_eq!(
            berlin.parse("start", &berlin.iso(lmt)).ok(),
            Some(-2_422_054_409_000_000)
        );
        assert_eq!(
            ny.parse("start", "2026-01-01 22:04:05").unwrap(),
            1_767_323_045_000_000
        );
        assert!(utc.parse("start", "2026-01-01'; DROP").is_err());
        // What the CSV answer writes reads back as `start`, offset and all.
        assert_eq!(
            utc.parse("start", &ny.csv(us)).unwrap(),
            1_767_323_045_000_000
        );
        let one_minute_west = Zone::Fixed(FixedOffset::west_opt(60).unwrap());
        assert_eq!(
            one_minute_west
                .parse("start", "1969-12-31 23:59:00 -0001")
                .ok(),
            Some(0)
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use crate::read::params::{MAX_US, MIN_US};
    use proptest::prelude::*;

    /// UTC, a fixed offset, or an IANA zone with and without daylight saving time.
    fn any_zone() -> impl Strategy<Value = Zone> {
        prop_oneof![
            (-14 * 60..=14 * 60i32)
                .prop_map(|m| Zone::Fixed(FixedOffset::east_opt(m * 60).unwrap())),
            prop::sample::select(vec![
                "UTC",
                "America/New_York",
                "Europe/Berlin",
                "Asia/Kolkata",
                "Australia/Lord_Howe",
                "Pacific/Chatham",
            ])
            .prop_map(|n| Zone::Named(n.parse().unwrap())),
        ]
    }

    proptest! {
        #[test]
        fn a_time_as_the_read_api_writes_it_reads_back_as_start_to_the_second(
            us in MIN_US..MAX_US,
            zone in any_zone(),
            csv in any::<bool>(),
        ) {
            let text = if csv { zone.csv(us) } else { zone.iso(us) };
            let second = us.div_euclid(1_000_000) * 1_000_000;
            prop_assert_eq!(zone.parse("start", &text).ok(), Some(second), "{}", text);
        }

        #[test]
        fn a_local_time_in_a_fixed_offset_reads_back_as_that_time(
            us in MIN_US..MAX_US,
            minutes in -14 * 60..=14 * 60i32,
            form in prop::sample::select(vec!["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]),
        ) {
            let offset = FixedOffset::east_opt(minutes * 60).unwrap();
            let t = DateTime::from_timestamp_micros(us).unwrap().with_timezone(&offset);
            let text = t.format(form).to_string();
            let second = us.div_euclid(1_000_000) * 1_000_000;
            prop_assert_eq!(Zone::Fixed(offset).parse("end", &text).ok(), Some(second), "{}", text);
        }

        #[test]
        fn any_start_is_a_time_in_range_or_a_bad_request(
            zone in any_zone(),
            s in prop_oneof![
                any::<String>(),
                "[+-]?[0-9]{1,6}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2})?)?( ?[+-][0-9]{2,4}| UTC|Z)?",
            ],
        ) {
            match zone.parse("start", &s) {
                Ok(us) => prop_assert!((MIN_US..=MAX_US).contains(&us), "{} gave {}", s, us),
                Err(e) => prop_assert!(
                    matches!(&e, TsError::Error { code, details, .. }
                        if code.status == 400 && details.contains("start=")),
                    "{:?}", e
                ),
            }
        }
    }
}
