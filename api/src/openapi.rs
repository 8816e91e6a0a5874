//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::thingspeak::doc::{self as ts, Reads};
use crate::{entries, streams};
use thingtotal_common::openapi::RoutingResponses;
use thingtotal_common::problem::{Problem, Violation};

/// The document served at `GET /api/openapi.json`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "ThingTotal",
        description = "Define streams of IoT readings with a JSON Schema, post entries, read them back. \
                       Errors are application/problem+json (RFC 9457)."
    ),
    paths(
        streams::create,
        streams::list,
        streams::get,
        streams::update,
        streams::delete,
        streams::rotate,
        streams::versions,
        streams::version,
        entries::list,
        entries::latest,
        entries::rejected,
        ts::feeds_json,
        ts::feeds_csv,
        ts::field_json,
        ts::field_csv,
        ts::last_json,
        ts::field_last_json,
        ts::field_last_txt,
        ts::last_data_age_json,
        ts::field_last_data_age_json,
        ts::channel_json,
        health,
        metrics,
        openapi_json,
    ),
    components(schemas(
        Problem,
        Violation,
        streams::StreamDefinition,
        streams::Stream,
        streams::StreamWithKeys,
        streams::StreamPage,
        streams::StreamVersion,
        streams::StreamVersions,
        streams::RotateRequest,
        streams::Rotate,
        entries::Entry,
        entries::EntriesPage,
        entries::Window,
        entries::WindowsPage,
        entries::Rejected,
        entries::RejectedPage,
        thingtotal_common::thingspeak::ThingSpeakFeed,
        thingtotal_common::thingspeak::ThingSpeakDataAge,
        thingtotal_common::thingspeak::ThingSpeakError,
    )),
    modifiers(&Security, &Reads, &RoutingResponses),
    tags((name = "streams", description = "Define, change and secure streams"),
         (name = "entries", description = "Read entries back: ranges, windows, the rejected ones"),
         (name = "operations", description = "Health, metrics and this document"))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// Liveness and a round-trip to the log (a Kafka metadata request).
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Healthy"), (status = 503, description = "The log does not answer")))]
#[allow(dead_code)]
fn health() {}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
#[allow(dead_code)]
fn openapi_json() {}
