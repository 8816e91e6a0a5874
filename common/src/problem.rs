//! Errors as `application/problem+json` (RFC 9457). Every error of the native HTTP API becomes a
//! response here, and nowhere else.

use crate::http;
use serde::Serialize;
use std::convert::Infallible;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// One offending member of a request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Violation {
    /// JSON Pointer (RFC 6901) to the member, in the request body.
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

/// An error response (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type", serialize_with = "problem_type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// A short summary of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// The offending members, for invalid definitions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Violation>,
    /// For a body that is not valid JSON: the line of the error (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// For a body that is not valid JSON: the column of the error (1-based).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// For a failure behind the request (a 503): the id under which its cause was logged, also
    /// sent as `X-Request-Id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub request_id: Option<uuid::Uuid>,
}

/// A failure behind a request that is not the client's doing: the log, InfluxDB or the archive
/// did not answer. Its cause names brokers, hosts, files and queries, so it is logged, under a
/// request id, and never sent: the client gets a plain reason and the id, which is what an
/// operator searches the logs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// The id the cause was logged under (a UUIDv7), sent as `X-Request-Id`.
    pub request_id: uuid::Uuid,
    /// What failed, in words fit for the client.
    pub reason: &'static str,
}

impl Incident {
    /// Logs `cause` at warn level under a new request id.
    pub fn log(reason: &'static str, cause: &dyn std::fmt::Display) -> Self {
        let request_id = uuid::Uuid::now_v7();
        tracing::warn!(request_id = %request_id, cause = %cause, "{reason}");
        Self { request_id, reason }
    }

    /// The reason and the request id, for the body of an answer.
    pub fn detail(&self) -> String {
        format!(
            "{}; retry later (request id {})",
            self.reason, self.request_id
        )
    }

    /// Marks a 503 answer: see [`mark_unavailable`].
    pub fn mark(&self, r: &mut Response) {
        mark_unavailable(r, Some(self.request_id));
    }
}

/// Marks a 503 answer: `Retry-After: 1`, and `X-Request-Id` when a cause was logged under it.
pub fn mark_unavailable(r: &mut Response, request_id: Option<uuid::Uuid>) {
    let h = r.headers_mut();
    h.insert("retry-after", warp::http::HeaderValue::from_static("1"));
    if let Some(v) =
        request_id.and_then(|id| warp::http::HeaderValue::from_str(&id.to_string()).ok())
    {
        h.insert("x-request-id", v);
    }
}

impl Problem {
    /// A problem of kind `slug` with `status`.
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind: slug,
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            line: None,
            column: None,
            request_id: None,
        }
    }

    /// 400: the body or a parameter does not parse.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    /// 401: no credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403: credentials that do not grant this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404: no such stream or route.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    /// 409: a change that conflicts with what is stored; `errors` names each conflict.
    pub fn conflict(detail: impl Into<String>, errors: Vec<Violation>) -> Self {
        Self {
            errors,
            ..Self::new(StatusCode::CONFLICT, "conflict", detail)
        }
    }

    /// 422: well-formed JSON that is not a valid definition.
    pub fn invalid(errors: Vec<Violation>) -> Self {
        let detail = errors
            .iter()
            .map(|v| format!("{}: {}", v.pointer, v.detail))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-definition",
                detail,
            )
        }
    }

    /// 503 for a failure behind the request: `cause` is logged under a request id (see
    /// [`Incident`]); the answer says `reason` and the id.
    pub fn unavailable(reason: &'static str, cause: &dyn std::fmt::Display) -> Self {
        Incident::log(reason, cause).into()
    }

    /// 503 for a part of the server that is not there (no InfluxDB configured, say): nothing
    /// failed, so nothing is logged.
    pub fn not_configured(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
}

fn problem_type<S: serde::Serializer>(slug: &&'static str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("https://thingtotal.dev/problems/{slug}"))
}

impl Reply for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = warp::reply::with_status(warp::reply::json(&self), status).into_response();
        r.headers_mut().insert(
            "content-type",
            warp::http::HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            mark_unavailable(&mut r, self.request_id);
        }
        r
    }
}

impl From<Incident> for Problem {
    fn from(i: Incident) -> Self {
        Self {
            request_id: Some(i.request_id),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", i.detail())
        }
    }
}

impl From<crate::Error> for Problem {
    fn from(e: crate::Error) -> Self {
        Problem::unavailable("the log did not answer", &e)
    }
}

/// Turns a handler's result into a response.
pub async fn respond(r: Result<Response, Problem>) -> Response {
    r.unwrap_or_else(Reply::into_response)
}

/// Turns warp's rejections (no route, wrong method, body too large) into problems; a 405 names
/// the methods the path takes in `Allow` where they are known ([`http::WrongMethod`]).
pub async fn recover(r: warp::Rejection) -> Result<Response, Infallible> {
    let p = if r.is_not_found() {
        Problem::not_found("no such route")
    } else if let Some(o) = r.find::<http::Overloaded>() {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "this server is answering its limit of {} requests at once \
                 (--max-requests-in-flight); retry",
                o.limit
            ),
        )
    } else if let Some(t) = r.find::<http::BodyTooLarge>() {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!(
                "the body is larger than this endpoint's limit of {} bytes",
                t.limit
            ),
        )
    } else if let Some(e) = r.find::<http::BodyUnreadable>() {
        Problem::bad_request(format!("the body could not be read: {}", e.0))
    } else if let Some(m) = r.find::<http::WrongMethod>() {
        let mut answer = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            format!("this route takes {}", m.allow),
        )
        .into_response();
        if let Ok(allow) = warp::http::HeaderValue::from_str(&m.allow) {
            answer
                .headers_mut()
                .insert(warp::http::header::ALLOW, allow);
        }
        return Ok(answer);
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        // A route refused the method of a path that no table of methods lists.
        Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "this route does not take that method",
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        Problem::bad_request(e.to_string())
    } else {
        Problem::bad_request(format!("{r:?}"))
    };
    Ok(p.into_response())
}
