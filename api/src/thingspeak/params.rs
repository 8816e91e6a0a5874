//! The query of a read: parsed leniently, as ThingSpeak does, into what a feeds request asks
//! for.

use chrono::{FixedOffset, Utc};
use chrono_tz::Tz;

use super::error::TsError;
use super::zone::Zone;
use crate::read::{Agg, Range};

/// The most entries one request returns.
pub(super) const MAX_RESULTS: usize = 8000;
/// Entries returned when no parameter narrows the request.
const DEFAULT_RESULTS: usize = 100;
/// The windows ThingSpeak aggregates over, in minutes.
pub(super) const WINDOWS: [u32; 8] = [10, 15, 20, 30, 60, 240, 720, 1440];

/// The query, parsed leniently as ThingSpeak does: repeated and unknown names are ignored.
#[derive(Debug, Default)]
pub(super) struct ReadQuery(Vec<(String, String)>);

impl ReadQuery {
    /// The query string's name-value pairs; an unparsable query is an empty one.
    pub(super) fn parse(q: &str) -> Self {
        Self(serde_urlencoded::from_str(q).unwrap_or_default())
    }

    /// The first value of `name`, unless it is empty.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Whether `name` is `true` (in any case).
    pub(super) fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The value of `name` as a number; `400` if it is not one.
    pub(super) fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, TsError> {
        self.get(name)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| TsError::bad(format!("{name}={v:?} is not a valid number")))
            })
            .transpose()
    }

    /// The zone of `timezone` (an IANA name), else of `offset` (hours), else UTC.
    pub(super) fn zone(&self) -> Result<Zone, TsError> {
        if let Some(tz) = self.get("timezone") {
            return tz.parse::<Tz>().map(Zone::Named).map_err(|_| {
                TsError::bad(format!(
                    "timezone={tz:?} is not an IANA time zone name such as America/New_York"
                ))
            });
        }
        match self.number::<f64>("offset")? {
            None => Ok(Zone::Named(Tz::UTC)),
            Some(h) if (-14.0..=14.0).contains(&h) => FixedOffset::east_opt((h * 3600.0) as i32)
                .map(Zone::Fixed)
                .ok_or_else(|| TsError::bad("offset must be -14 to 14 hours")),
            Some(_) => Err(TsError::bad("offset must be -14 to 14 hours")),
        }
    }
}

/// What a feeds request asked for.
#[derive(Debug)]
pub(super) struct FeedsRequest {
    /// The time range (`start`/`end`, `minutes` or `days`).
    pub(super) range: Range,
    /// The most entries to answer, the newest.
    pub(super) results: usize,
    /// The zone of the answer's times.
    pub(super) zone: Zone,
    /// Decimal places of numbers.
    pub(super) round: Option<usize>,
    /// Drops feeds with a smaller number.
    pub(super) min: Option<f64>,
    /// Drops feeds with a larger number.
    pub(super) max: Option<f64>,
    /// `status=true`: each feed has a null `status`.
    pub(super) status: bool,
    /// `location=true`: each feed has null `latitude`, `longitude` and `elevation`.
    pub(super) location: bool,
    /// The window's aggregate, whether it is divided per entry (`average`), and its length in
    /// microseconds.
    pub(super) window: Option<(Agg, bool, i64)>,
}

/// What the query of a feeds request asks for; `400` for a value that cannot be used.
pub(super) fn feeds_request(p: &ReadQuery) -> Result<FeedsRequest, TsError> {
    let zone = p.zone()?;
    let now = Utc::now().timestamp_micros();
    let end = match p.get("end") {
        // ThingSpeak's end is inclusive, to the second.
        Some(e) => zone.parse("end", e)? + 1_000_000,
        None => now + 1,
    };
    let start = if let Some(s) = p.get("start") {
        Some(zone.parse("start", s)?)
    } else if let Some(m) = p.number::<u32>("minutes")? {
        Some(now - i64::from(m) * 60_000_000)
    } else {
        p.number::<u32>("days")?
            .map(|d| now - i64::from(d).min(365 * 300) * 86_400_000_000)
    };
    // A range asks for what is in it, up to the most ThingSpeak answers: `minutes` narrows the
    // range as `days` does.
    let narrowed = ["results", "minutes", "days", "start", "end"]
        .iter()
        .any(|n| p.get(n).is_some());
    let results = match p.get("results") {
        None => {
            if narrowed {
                MAX_RESULTS
            } else {
                DEFAULT_RESULTS
            }
        }
        Some(r) => r
            .parse::<usize>()
            .map_err(|_| TsError::bad(format!("results={r:?}: give a whole number up to 8000")))?
            .min(MAX_RESULTS),
    };
    let mut window = None;
    for (name, agg, per_entry) in [
        ("timescale", Agg::First, false),
        ("sum", Agg::Sum, false),
        ("average", Agg::Sum, true),
        ("median", Agg::Median, false),
    ] {
        if let Some(v) = p.get(name) {
            let minutes = if v == "daily" {
                1440
            } else {
                v.parse::<u32>()
                    .ok()
                    .filter(|m| WINDOWS.contains(m))
                    .ok_or_else(|| {
                        TsError::bad(format!(
                            "{name}={v:?}: use 10, 15, 20, 30, 60, 240, 720, 1440 or daily"
                        ))
                    })?
            };
            window = Some((agg, per_entry, i64::from(minutes) * 60_000_000));
        }
    }
    let round = p.number::<usize>("round")?;
    if round.is_some_and(|r| r > 16) {
        return Err(TsError::bad("round must be 0 to 16"));
    }
    Ok(FeedsRequest {
        range: crate::read::params::range(start, end)?,
        results,
        zone,
        round,
        min: p.number("min")?,
        max: p.number("max")?,
        status: p.flag("status"),
        location: p.flag("location"),
        window,
    })
}

/// The index of `fieldN` among the channel's fields; `None` for all fields.
pub(super) fn field_index(
    field: Option<u8>,
    names: &[(String, String)],
) -> Result<Option<usize>, TsError> {
    match field {
        None => Ok(None),
        Some(n) if (1..=names.len()).contains(&(n as usize)) => Ok(Some(n as usize - 1)),
        Some(n) => Err(TsError::bad(format!(
            "field {n} is not a field of this channel: it has field1 to field{}",
            names.len()
        ))),
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// A name the feeds request reads, or another.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "start",
                "end",
                "minutes",
                "days",
                "results",
                "timezone",
                "offset",
                "round",
                "min",
                "max",
                "status",
                "location",
                "timescale",
                "sum",
                "average",
                "median",
            ])
            .prop_map(str::to_owned),
            "[a-z_]{1,8}",
        ]
    }

    #[test]
    fn a_range_lifts_the_default_of_100_entries() {
        for q in [
            "minutes=60",
            "days=1",
            "start=2026-01-01",
            "end=2026-01-01 00:00:00",
        ] {
            let r = feeds_request(&ReadQuery::parse(q)).unwrap();
            assert_eq!(r.results, MAX_RESULTS, "{q}");
        }
        let r = feeds_request(&ReadQuery::parse("minutes=60&results=7")).unwrap();
        assert_eq!(r.results, 7);
        assert_eq!(
            feeds_request(&ReadQuery::parse("")).unwrap().results,
            DEFAULT_RESULTS
        );
    }

    /// A value such as clients send, or any text.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[+-]?[0-9]{0,22}(\\.[0-9]{0,4})?(e[0-9]{1,3})?",
            "(NaN|inf|-inf|true|TRUE|daily|America/New_York|Mars/Olympus)",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}:[0-9]{2})?",
        ]
    }

    proptest! {
        #[test]
        fn any_query_is_a_usable_request_or_a_bad_request(
            pairs in prop::collection::vec((name(), value()), 0..6),
            raw in any::<String>(),
        ) {
            let encoded = serde_urlencoded::to_string(&pairs).unwrap();
            for q in [encoded.as_str(), raw.as_str()] {
                match feeds_request(&ReadQuery::parse(q)) {
                    Ok(r) => {
                        prop_assert!(r.results <= MAX_RESULTS);
                        prop_assert!(r.range.start_us < r.range.end_us);
                        prop_assert!(r.round.is_none_or(|d| d <= 16));
                    }
                    Err(e) => prop_assert!(
                        matches!(&e, TsError::Error { code, .. } if code.status == 400),
                        "{:?}", e
                    ),
                }
            }
        }

        #[test]
        fn a_query_reads_back_the_values_it_was_written_with(
            pairs in prop::collection::vec((name(), value()), 0..6),
        ) {
            let q = ReadQuery::parse(&serde_urlencoded::to_string(&pairs).unwrap());
            for (k, _) in &pairs {
                let first = pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                prop_assert_eq!(q.get(k), first.filter(|v| !v.is_empty()));
            }
        }

        #[test]
        fn results_is_the_number_asked_for_up_to_8000(n in any::<u32>()) {
            let r = feeds_request(&ReadQuery::parse(&format!("results={n}"))).unwrap();
            prop_assert_eq!(r.results, (n as usize).min(MAX_RESULTS));
        }
    }
}
