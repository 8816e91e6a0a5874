//! What every part's OpenAPI document says the same way: the answers that come from the routing
//! layer rather than from a handler, so that no operation's list of statuses leaves them out.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::Modify;

/// The media type of [`crate::problem::Problem`].
const PROBLEM: &str = "application/problem+json";

/// Adds to every operation the problems the routing layer answers before its handler runs: 404
/// where a path parameter is not of its type (no route matches), and, for an operation with a
/// body, 400 for a body that could not be read and 413 for one over the limit. A status the
/// operation already lists keeps its description and content, and gains the problem's.
#[derive(Debug)]
pub struct RoutingResponses;

impl Modify for RoutingResponses {
    fn modify(&self, doc: &mut OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                if path.contains('{') {
                    problem(
                        op,
                        "404",
                        "No route: a path parameter that is not of its type",
                    );
                }
                if op.request_body.is_some() {
                    problem(op, "400", "The body could not be read");
                    if !op.responses.responses.contains_key("413") {
                        problem(op, "413", "The body is larger than the limit");
                    }
                }
            }
        }
    }
}

/// Says that `op` may answer `status` with a problem; `description` is for a status it did not
/// list yet.
fn problem(op: &mut Operation, status: &str, description: &str) {
    may_answer(
        op,
        status,
        description,
        PROBLEM,
        Ref::from_schema_name("Problem"),
    );
}

/// Says that `op` may answer `status` with a body of `media_type` and `schema`, besides what it
/// already says of that status; `description` is for a status it did not list yet.
pub fn may_answer(
    op: &mut Operation,
    status: &str,
    description: &str,
    media_type: &str,
    schema: impl Into<RefOr<Schema>>,
) {
    let response = op
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(description).build()));
    if let RefOr::T(response) = response {
        response
            .content
            .entry(media_type.to_owned())
            .or_insert_with(|| ContentBuilder::new().schema(Some(schema)).build());
    }
}

/// The schema of a string that is one of `values`, for a parameter that a handler matches by hand.
pub fn one_of<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.into_iter().map(Into::into)))
        .build()
}

/// Declares a type whose schema is `$schema`, for a value the code reads or writes without such
/// a type: a parameter read as text (`#[param(value_type = Option<Name>, inline)]`), a body of
/// one of two shapes (`body = Name`).
#[macro_export]
macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident = $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        #[allow(dead_code)]
        pub(crate) struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::from($schema))
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The schema of a string that matches `pattern`.
pub fn matching(pattern: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .build()
}

/// A date from 1900 to 2099 (of February, the 1st to the 28th).
const DATE: &str = "(19|20)[0-9]{2}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))";
/// A time of day to the minute.
const HOUR_MINUTE: &str = "([01][0-9]|2[0-3]):[0-5][0-9]";

/// A time as the native API reads it: RFC 3339, a date (midnight UTC), `now`, or a time before
/// now (`-1h`, `now-7d`). The server takes times from 1800 to 2200; the pattern promises less,
/// what no offset or calendar can take out of that range.
pub fn time() -> Object {
    let relative = "(now)?-0*([1-9][0-9]{0,8}s|[1-9][0-9]{0,6}m|[1-9][0-9]{0,5}h|[1-9][0-9]{0,3}d|[1-9][0-9]{0,2}w)";
    matching(&format!(
        "^(now|{relative}|{DATE}([Tt ]{HOUR_MINUTE}:[0-5][0-9](\\.[0-9]{{1,9}})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?)$"
    ))
}

/// A time as ThingSpeak's reads take it, in the request's zone: `YYYY-MM-DD`, with `HH:NN` or
/// `HH:NN:SS` after a space or a `T`. As with [`time`], the pattern promises less than is read.
pub fn thingspeak_time() -> Object {
    matching(&format!("^{DATE}([ T]{HOUR_MINUTE}(:[0-5][0-9])?)?$"))
}
