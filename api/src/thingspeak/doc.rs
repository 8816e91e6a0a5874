//! The OpenAPI descriptions of the read routes, which are matched by hand.

use thingtotal_common::openapi::{may_answer, one_of};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, OneOf, OneOfBuilder, Schema, Type};
use utoipa::openapi::{OpenApi, Ref, RefOr};
use utoipa::{IntoParams, Modify};

/// What every read says the same way, as ThingSpeak reads: an empty query parameter counts as
/// absent; a bad parameter is a 400 with its error object, and a private channel without its
/// key a 400 with `-1`; no such channel is a 404, and a backend that did not answer a 503.
#[derive(Debug)]
pub(crate) struct Reads;

impl Modify for Reads {
    fn modify(&self, doc: &mut OpenApi) {
        let reads = doc
            .paths
            .paths
            .iter_mut()
            .filter(|(p, _)| p.starts_with("/channels/"));
        for op in reads.filter_map(|(_, item)| item.get.as_mut()) {
            let parameters = op.parameters.iter_mut().flatten();
            for p in parameters.filter(|p| p.parameter_in == ParameterIn::Query) {
                if let Some(schema) = p.schema.take() {
                    let empty = ObjectBuilder::new()
                        .schema_type(Type::String)
                        .max_length(Some(0));
                    p.schema = Some(AnyOfBuilder::new().item(schema).item(empty).into());
                }
            }
            failure(
                op,
                "400",
                "A bad parameter (ThingSpeak's error object), a field the channel lacks, or `-1`: a private channel without its key",
                Schema::OneOf(or_minus_one("ThingSpeakError")),
            );
            failure(
                op,
                "404",
                "No such channel",
                Ref::from_schema_name("ThingSpeakError"),
            );
            failure(
                op,
                "503",
                "The backend did not answer",
                Ref::from_schema_name("ThingSpeakError"),
            );
        }
    }
}

/// Says that `op` may answer `status` with JSON of `schema`.
fn failure(op: &mut Operation, status: &str, description: &str, schema: impl Into<RefOr<Schema>>) {
    may_answer(op, status, description, "application/json", schema);
}

/// The schema `name`, or `-1`.
fn or_minus_one(name: &str) -> OneOf {
    OneOfBuilder::new()
        .item(Ref::from_schema_name(name))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .enum_values(Some([-1])),
        )
        .build()
}

thingtotal_common::schema_type!(
    /// A feed, or `-1` where there is none.
    FeedOrNone = or_minus_one("ThingSpeakFeed")
);
thingtotal_common::schema_type!(
    /// The age of the newest entry, or `-1` where there is none.
    AgeOrNone = or_minus_one("ThingSpeakDataAge")
);

/// The channel of a request.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct ChannelPath {
    /// Channel (stream) id.
    id: u64,
}

/// The channel and field of a request.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct FieldPath {
    /// Channel (stream) id.
    id: u64,
    /// Field number, 1 to 8: one of the channel's fields (400 otherwise).
    #[param(minimum = 1, maximum = 8)]
    n: u8,
}

/// The read key, for a private channel (or the admin token, as a bearer token).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct KeyParams {
    /// Read key (private channels).
    api_key: Option<String>,
}

/// How the newest entry is shown. As ThingSpeak does, an empty parameter counts as absent and
/// unknown ones are ignored.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct LastParams {
    /// Read key (private channels).
    api_key: Option<String>,
    /// IANA name of the zone times are shown in, such as America/New_York.
    #[param(value_type = Option<TimeZone>, inline)]
    timezone: Option<String>,
    /// Hours from UTC, -14 to 14 (timezone wins).
    #[param(minimum = -14, maximum = 14)]
    offset: Option<f64>,
    /// Decimal places of numbers; more than 16 is ignored.
    #[param(minimum = 0, maximum = 18446744073709551615u64)]
    round: Option<u64>,
    /// `true`: the feed has a `status`.
    status: Option<String>,
    /// `true`: the feed has `latitude`, `longitude` and `elevation`.
    location: Option<String>,
    /// Text before the value (`last.txt`).
    prepend: Option<String>,
    /// Text after the value (`last.txt`).
    append: Option<String>,
}

/// Which feeds, and how they are shown. As ThingSpeak does, an empty parameter counts as absent
/// and unknown ones are ignored.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct FeedsParams {
    /// Read key (private channels).
    api_key: Option<String>,
    /// Entries, at most 8000 (more is 8000); default 100 (8000 with days, start or end).
    #[param(minimum = 0, maximum = 18446744073709551615u64)]
    results: Option<u64>,
    /// 24-hour periods before now.
    #[param(minimum = 0, maximum = 4294967295u64)]
    days: Option<u64>,
    /// Minutes before now.
    #[param(minimum = 0, maximum = 4294967295u64)]
    minutes: Option<u64>,
    /// `YYYY-MM-DD HH:NN:SS` in the zone, before `end`.
    #[param(value_type = Option<TsTime>, inline)]
    start: Option<String>,
    /// `YYYY-MM-DD HH:NN:SS` in the zone, inclusive.
    #[param(value_type = Option<TsTime>, inline)]
    end: Option<String>,
    /// IANA name of the zone, such as America/New_York.
    #[param(value_type = Option<TimeZone>, inline)]
    timezone: Option<String>,
    /// Hours from UTC, -14 to 14 (timezone wins).
    #[param(minimum = -14, maximum = 14)]
    offset: Option<f64>,
    /// Decimal places, 0 to 16.
    #[param(minimum = 0, maximum = 16)]
    round: Option<u8>,
    /// Drop entries with a smaller value.
    min: Option<f64>,
    /// Drop entries with a larger value.
    max: Option<f64>,
    /// One feed per window of this many minutes, the average of each field.
    #[param(value_type = Option<Window>, inline)]
    average: Option<String>,
    /// Likewise, the median.
    #[param(value_type = Option<Window>, inline)]
    median: Option<String>,
    /// Likewise, the sum.
    #[param(value_type = Option<Window>, inline)]
    sum: Option<String>,
    /// Likewise, the first value of each window.
    #[param(value_type = Option<Window>, inline)]
    timescale: Option<String>,
    /// `true`: each feed has a `status`.
    status: Option<String>,
    /// `true`: each feed has `latitude`, `longitude` and `elevation`.
    location: Option<String>,
    /// `true`: the channel has `metadata`.
    metadata: Option<String>,
}

thingtotal_common::schema_type!(
    /// A time as ThingSpeak reads it.
    TsTime = thingtotal_common::openapi::thingspeak_time()
);
thingtotal_common::schema_type!(
    /// An IANA time zone name.
    TimeZone = one_of(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()))
);
thingtotal_common::schema_type!(
    /// A window of ThingSpeak's aggregates: minutes, or `daily`.
    Window = one_of(
        super::params::WINDOWS
            .iter()
            .map(u32::to_string)
            .chain(["daily".to_owned()])
    )
);

/// The newest entries of a channel, oldest first: `{"channel": {…}, "feeds": [{"created_at",
/// "entry_id", "field1", …}]}`, values as strings. With `average`, `median`, `sum` or
/// `timescale`, one feed per window, without `entry_id`: at most the newest 8000 windows.
#[utoipa::path(get, path = "/channels/{id}/feeds.json", tag = "thingspeak",
    params(ChannelPath, FeedsParams),
    responses((status = 200, description = "The channel and its feeds", body = thingtotal_common::thingspeak::ThingSpeakFeeds)))]
#[allow(dead_code)]
fn feeds_json() {}

/// The same as CSV: `created_at,entry_id,field1,…`, dates as `YYYY-MM-DD HH:MM:SS UTC`; text
/// that starts with `=`, `+`, `-`, `@`, a tab or a carriage return (and is not a number) gets a
/// leading `'`, so that spreadsheets do not run it.
#[utoipa::path(get, path = "/channels/{id}/feeds.csv", tag = "thingspeak",
    params(ChannelPath, FeedsParams),
    responses((status = 200, description = "CSV", body = String, content_type = "text/csv")))]
#[allow(dead_code)]
fn feeds_csv() {}

/// One field's feeds: each feed holds `created_at`, `entry_id` and `fieldN`.
#[utoipa::path(get, path = "/channels/{id}/fields/{n}.json", tag = "thingspeak",
    params(FieldPath, FeedsParams),
    responses((status = 200, description = "The channel and the field's feeds", body = thingtotal_common::thingspeak::ThingSpeakFeeds)))]
#[allow(dead_code)]
fn field_json() {}

/// One field's feeds as CSV.
#[utoipa::path(get, path = "/channels/{id}/fields/{n}.csv", tag = "thingspeak",
    params(FieldPath, FeedsParams),
    responses((status = 200, description = "CSV", body = String, content_type = "text/csv")))]
#[allow(dead_code)]
fn field_csv() {}

/// The newest entry as a bare feed object; `-1` when there is none.
#[utoipa::path(get, path = "/channels/{id}/feeds/last.json", tag = "thingspeak",
    params(ChannelPath, LastParams),
    responses((status = 200, description = "The feed, or -1", body = FeedOrNone)))]
#[allow(dead_code)]
fn last_json() {}

/// The newest entry with a value in field `n`; `-1` when there is none.
#[utoipa::path(get, path = "/channels/{id}/fields/{n}/last.json", tag = "thingspeak",
    params(FieldPath, LastParams),
    responses((status = 200, description = "`{created_at, entry_id, fieldN}`, or -1", body = FeedOrNone)))]
#[allow(dead_code)]
fn field_last_json() {}

/// The newest value of field `n` as text (`prepend` and `append` wrap it).
#[utoipa::path(get, path = "/channels/{id}/fields/{n}/last.txt", tag = "thingspeak",
    params(FieldPath, LastParams),
    responses((status = 200, description = "The value, or -1", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn field_last_txt() {}

/// Seconds since the newest entry: `{"last_data_age": "174", "last_data_age_units": "s"}`.
#[utoipa::path(get, path = "/channels/{id}/feeds/last_data_age.json", tag = "thingspeak",
    params(ChannelPath, KeyParams),
    responses((status = 200, description = "The age, or -1", body = AgeOrNone)))]
#[allow(dead_code)]
fn last_data_age_json() {}

/// Seconds since the newest value of field `n`.
#[utoipa::path(get, path = "/channels/{id}/fields/{n}/last_data_age.json", tag = "thingspeak",
    params(FieldPath, KeyParams),
    responses((status = 200, description = "The age, or -1", body = AgeOrNone)))]
#[allow(dead_code)]
fn field_last_data_age_json() {}

/// The channel's description. A private channel needs the admin token (ThingSpeak's user
/// API key).
#[utoipa::path(get, path = "/channels/{id}.json", tag = "thingspeak",
    params(ChannelPath, KeyParams),
    responses((status = 200, description = "id, name, description, created_at, last_entry_id, field labels…", body = thingtotal_common::thingspeak::ThingSpeakChannelSettings)))]
#[allow(dead_code)]
fn channel_json() {}
