//! The ingest routes' part of the OpenAPI document (the api part merges it into its own).

use thingtotal_common::openapi::RoutingResponses;
use utoipa::OpenApi;

/// The ingest routes, native and ThingSpeak-compatible.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(
        crate::native::post_entries,
        update_get,
        update_post,
        update_json_get,
        update_json_post,
        bulk_update
    ),
    components(schemas(
        crate::native::Accepted,
        crate::native::EntriesBody,
        thingtotal_common::thingspeak::ThingSpeakEntry,
        thingtotal_common::thingspeak::ThingSpeakUpdate,
        thingtotal_common::thingspeak::ThingSpeakBulkUpdate,
        thingtotal_common::thingspeak::ThingSpeakBulkEntry,
        thingtotal_common::thingspeak::ThingSpeakSuccess,
        thingtotal_common::thingspeak::ThingSpeakError,
    )),
    modifiers(&RoutingResponses),
    tags(
        (name = "entries", description = "Post entries to a stream"),
        (name = "thingspeak", description = "ThingSpeak-compatible writes: existing devices work by changing the host")
    )
)]
pub struct IngestDoc;

/// Write one entry, ThingSpeak style: `api_key` (or the `THINGSPEAKAPIKEY` header), `field1..8`,
/// `lat`, `long`, `elevation`, `status`, `created_at`, in the query or a form or JSON body.
/// Answers the entry's id (its `seq`) as text, or `0` on failure.
#[utoipa::path(get, path = "/update", tag = "thingspeak",
    params(("api_key" = Option<String>, Query, description = "The stream's write key"),
           ("THINGSPEAKAPIKEY" = Option<String>, Header, description = "The write key (wins over `api_key`)"),
           ("field1" = Option<String>, Query, description = "Value of the stream's first field (likewise field2..field8)"),
           ("created_at" = Option<String>, Query, description = "The reading's time (ISO 8601; UTC if no zone)")),
    responses((status = 200, description = "The new entry's id as text", body = String, content_type = "text/plain"),
              (status = 400, description = "`0`: missing or unknown write key, or an unreadable request", body = String, content_type = "text/plain"),
              (status = 413, description = "`0`: the body is larger than the limit", body = String, content_type = "text/plain"),
              (status = 503, description = "`0`: not stored; retry", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn update_get() {}

/// Write one entry, ThingSpeak style, with a form or JSON body.
#[utoipa::path(post, path = "/update", tag = "thingspeak",
    params(("THINGSPEAKAPIKEY" = Option<String>, Header, description = "The write key (wins over `api_key`)")),
    request_body(description = "The write as a form or a JSON object with the same members",
        content((Option<thingtotal_common::thingspeak::ThingSpeakUpdate> = "application/x-www-form-urlencoded"),
                (Option<thingtotal_common::thingspeak::ThingSpeakUpdate> = "application/json"))),
    responses((status = 200, description = "The new entry's id as text", body = String, content_type = "text/plain"),
              (status = 400, description = "`0`: missing or unknown write key, or an unreadable request", body = String, content_type = "text/plain"),
              (status = 413, description = "`0`: the body is larger than the limit", body = String, content_type = "text/plain"),
              (status = 503, description = "`0`: not stored; retry", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn update_post() {}

/// Write one entry, ThingSpeak style; answers ThingSpeak's entry object.
#[utoipa::path(get, path = "/update.json", tag = "thingspeak",
    params(("api_key" = Option<String>, Query, description = "The stream's write key"),
           ("THINGSPEAKAPIKEY" = Option<String>, Header, description = "The write key (wins over `api_key`)"),
           ("field1" = Option<String>, Query, description = "Value of the stream's first field (likewise field2..field8)")),
    responses((status = 200, description = "The entry, values as strings", body = thingtotal_common::thingspeak::ThingSpeakEntry),
              (status = 400, description = "`0`", body = String, content_type = "text/plain"),
              (status = 413, description = "`0`: the body is larger than the limit", body = String, content_type = "text/plain"),
              (status = 503, description = "`0`: not stored; retry", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn update_json_get() {}

/// Write one entry, ThingSpeak style, with a form or JSON body; answers the entry object.
#[utoipa::path(post, path = "/update.json", tag = "thingspeak",
    params(("THINGSPEAKAPIKEY" = Option<String>, Header, description = "The write key (wins over `api_key`)")),
    request_body(description = "The write as a form or a JSON object with the same members",
        content((Option<thingtotal_common::thingspeak::ThingSpeakUpdate> = "application/x-www-form-urlencoded"),
                (Option<thingtotal_common::thingspeak::ThingSpeakUpdate> = "application/json"))),
    responses((status = 200, description = "The entry object, values as strings", body = thingtotal_common::thingspeak::ThingSpeakEntry),
              (status = 400, description = "`0`", body = String, content_type = "text/plain"),
              (status = 413, description = "`0`: the body is larger than the limit", body = String, content_type = "text/plain"),
              (status = 503, description = "`0`: not stored; retry", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn update_json_post() {}

/// Write many entries: `{"write_api_key": …, "updates": [{"created_at" or "delta_t", "field1", …}]}`.
#[utoipa::path(post, path = "/channels/{id}/bulk_update.json", tag = "thingspeak",
    params(("id" = u64, Path, description = "Channel (stream) id")),
    request_body(content = thingtotal_common::thingspeak::ThingSpeakBulkUpdate, description = "write_api_key and updates"),
    responses((status = 202, description = "Stored", body = thingtotal_common::thingspeak::ThingSpeakSuccess),
              (status = 400, description = "ThingSpeak error object", body = thingtotal_common::thingspeak::ThingSpeakError),
              (status = 401, description = "ThingSpeak error object: error_auth_required", body = thingtotal_common::thingspeak::ThingSpeakError),
              (status = 404, description = "ThingSpeak error object: error_resource_not_found", body = thingtotal_common::thingspeak::ThingSpeakError),
              (status = 413, description = "ThingSpeak error object: error_request_too_large", body = thingtotal_common::thingspeak::ThingSpeakError),
              (status = 503, description = "Not stored; retry", body = thingtotal_common::thingspeak::ThingSpeakError)))]
#[allow(dead_code)]
fn bulk_update() {}
