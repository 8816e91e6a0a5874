//! The OpenAPI descriptions of the read routes, which are matched by hand.

/// The newest entries of a channel, oldest first: `{"channel": {…}, "feeds": [{"created_at",
/// "entry_id", "field1", …}]}`, values as strings. With `average`, `median`, `sum` or
/// `timescale`, one feed per window, without `entry_id`: at most the newest 8000 windows.
#[utoipa::path(get, path = "/channels/{id}/feeds.json", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id"),
           ("api_key" = Option<String>, Query, description = "Read key (private channels)"),
           ("results" = Option<u32>, Query, description = "Entries, at most 8000; default 100 (8000 with days, start or end)"),
           ("days" = Option<u32>, Query, description = "24-hour periods before now"),
           ("minutes" = Option<u32>, Query, description = "Minutes before now"),
           ("start" = Option<String>, Query, description = "YYYY-MM-DD HH:NN:SS in timezone"),
           ("end" = Option<String>, Query, description = "YYYY-MM-DD HH:NN:SS in timezone, inclusive"),
           ("timezone" = Option<String>, Query, description = "IANA name, such as America/New_York"),
           ("offset" = Option<f64>, Query, description = "Hours from UTC (timezone wins)"),
           ("round" = Option<u32>, Query, description = "Decimal places"),
           ("min" = Option<f64>, Query, description = "Drop entries with a smaller value"),
           ("max" = Option<f64>, Query, description = "Drop entries with a larger value"),
           ("average" = Option<String>, Query, description = "10, 15, 20, 30, 60, 240, 720, 1440 or daily (minutes)"),
           ("median" = Option<String>, Query, description = "Likewise"),
           ("sum" = Option<String>, Query, description = "Likewise"),
           ("timescale" = Option<String>, Query, description = "Likewise: the first value of each window")),
    responses((status = 200, description = "The channel and its feeds", body = thingtotal_common::thingspeak::ThingSpeakFeeds),
              (status = 400, description = "`-1` for a private channel without its key; ThingSpeak's error object for a bad parameter", body = thingtotal_common::thingspeak::ThingSpeakError),
              (status = 404, description = "No such channel", body = thingtotal_common::thingspeak::ThingSpeakError)))]
#[allow(dead_code)]
fn feeds_json() {}

/// The same as CSV: `created_at,entry_id,field1,…`, dates as `YYYY-MM-DD HH:MM:SS UTC`; text
/// that starts with `=`, `+`, `-`, `@`, a tab or a carriage return (and is not a number) gets a
/// leading `'`, so that spreadsheets do not run it.
#[utoipa::path(get, path = "/channels/{id}/feeds.csv", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id")),
    responses((status = 200, description = "CSV", body = String, content_type = "text/csv"),
              (status = 400, description = "`-1` or a bad parameter", body = String)))]
#[allow(dead_code)]
fn feeds_csv() {}

/// One field's feeds: each feed holds `created_at`, `entry_id` and `fieldN`.
#[utoipa::path(get, path = "/channels/{id}/fields/{n}.json", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id"),
           ("n" = u8, Path, description = "Field number, 1 to 8")),
    responses((status = 200, description = "The channel and the field's feeds", body = thingtotal_common::thingspeak::ThingSpeakFeeds),
              (status = 400, description = "`-1`, a bad parameter or a field the channel lacks", body = String)))]
#[allow(dead_code)]
fn field_json() {}

/// One field's feeds as CSV.
#[utoipa::path(get, path = "/channels/{id}/fields/{n}.csv", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id"),
           ("n" = u8, Path, description = "Field number, 1 to 8")),
    responses((status = 200, description = "CSV", body = String, content_type = "text/csv"),
              (status = 400, description = "`-1` or a bad parameter", body = String)))]
#[allow(dead_code)]
fn field_csv() {}

/// The newest entry as a bare feed object; `-1` when there is none.
#[utoipa::path(get, path = "/channels/{id}/feeds/last.json", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id")),
    responses((status = 200, description = "The feed, or -1", body = thingtotal_common::thingspeak::ThingSpeakFeed),
              (status = 400, description = "`-1`: a private channel without its key", body = String)))]
#[allow(dead_code)]
fn last_json() {}

/// The newest entry with a value in field `n`; `-1` when there is none.
#[utoipa::path(get, path = "/channels/{id}/fields/{n}/last.json", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id"),
           ("n" = u8, Path, description = "Field number, 1 to 8")),
    responses((status = 200, description = "`{created_at, entry_id, fieldN}`, or -1", body = thingtotal_common::thingspeak::ThingSpeakFeed),
              (status = 400, description = "`-1`", body = String)))]
#[allow(dead_code)]
fn field_last_json() {}

/// The newest value of field `n` as text (`prepend` and `append` wrap it).
#[utoipa::path(get, path = "/channels/{id}/fields/{n}/last.txt", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id"),
           ("n" = u8, Path, description = "Field number, 1 to 8")),
    responses((status = 200, description = "The value, or -1", body = String, content_type = "text/plain"),
              (status = 400, description = "`-1`", body = String)))]
#[allow(dead_code)]
fn field_last_txt() {}

/// Seconds since the newest entry: `{"last_data_age": "174", "last_data_age_units": "s"}`.
#[utoipa::path(get, path = "/channels/{id}/feeds/last_data_age.json", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id")),
    responses((status = 200, description = "The age, or -1", body = thingtotal_common::thingspeak::ThingSpeakDataAge),
              (status = 400, description = "`-1`", body = String)))]
#[allow(dead_code)]
fn last_data_age_json() {}

/// Seconds since the newest value of field `n`.
#[utoipa::path(get, path = "/channels/{id}/fields/{n}/last_data_age.json", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id"),
           ("n" = u8, Path, description = "Field number, 1 to 8")),
    responses((status = 200, description = "The age, or -1", body = thingtotal_common::thingspeak::ThingSpeakDataAge),
              (status = 400, description = "`-1`", body = String)))]
#[allow(dead_code)]
fn field_last_data_age_json() {}

/// The channel's description. A private channel needs the admin token (ThingSpeak's user
/// API key).
#[utoipa::path(get, path = "/channels/{id}.json", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id")),
    responses((status = 200, description = "id, name, description, created_at, last_entry_id, field labels…", body = thingtotal_common::thingspeak::ThingSpeakChannelSettings),
              (status = 400, description = "`-1`: private, and not the admin token", body = String),
              (status = 404, description = "No such channel", body = thingtotal_common::thingspeak::ThingSpeakError)))]
#[allow(dead_code)]
fn channel_json() {}
