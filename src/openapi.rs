//! The whole product's OpenAPI document: the api's routes and ingest's, merged here where their
//! routes are served together, so that neither part depends on the other for its documentation.

use utoipa::OpenApi;

/// The document of every route `up` serves, as JSON. A tag both parts declare (`entries`: reading
/// and posting) is listed once, with both descriptions.
pub fn document() -> serde_json::Value {
    let mut doc = thingtotal_api::openapi::ApiDoc::openapi()
        .merge_from(thingtotal_ingest::openapi::IngestDoc::openapi());
    if let Some(tags) = doc.tags.take() {
        let mut merged: Vec<utoipa::openapi::tag::Tag> = Vec::with_capacity(tags.len());
        for tag in tags {
            match merged.iter_mut().find(|t| t.name == tag.name) {
                Some(first) => {
                    first.description = match (first.description.take(), tag.description) {
                        (Some(a), Some(b)) => Some(format!("{b}; {a}")),
                        (a, b) => a.or(b),
                    }
                }
                None => merged.push(tag),
            }
        }
        doc.tags = Some(merged);
    }
    serde_json::to_value(doc).expect("the OpenAPI document serialises")
}
