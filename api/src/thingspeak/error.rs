//! The read side's failures: ThingSpeak's `-1` for a channel the caller may not read, and its
//! error object for everything else.

use thingtotal_common::problem::{self, Problem};
use thingtotal_common::thingspeak::ErrorCode;
use warp::http::StatusCode;
use warp::reply::Response;

use super::render::text;

/// A ThingSpeak answer that is not a success.
#[derive(Debug)]
pub(super) enum TsError {
    /// No access: `400` with the body `-1`, as ThingSpeak answers.
    NoAccess,
    /// ThingSpeak's error object.
    Error {
        /// Its status, code and message.
        code: ErrorCode,
        /// What went wrong, in words.
        details: String,
        /// For a failure behind the request: the id its cause was logged under.
        request_id: Option<uuid::Uuid>,
    },
}

impl TsError {
    /// `error_bad_request` with `details`.
    pub(super) fn bad(details: impl Into<String>) -> Self {
        TsError::Error {
            code: ErrorCode::BAD_REQUEST,
            details: details.into(),
            request_id: None,
        }
    }

    /// `error_resource_not_found`: no such channel.
    pub(super) fn not_found() -> Self {
        TsError::Error {
            code: ErrorCode::RESOURCE_NOT_FOUND,
            details: "The requested resource was not found. Check the URL and try again.".into(),
            request_id: None,
        }
    }

    /// The answer.
    pub(super) fn reply(self) -> Response {
        match self {
            TsError::NoAccess => {
                let mut r = text("-1", "application/json; charset=utf-8");
                *r.status_mut() = StatusCode::BAD_REQUEST;
                r
            }
            TsError::Error {
                code,
                details,
                request_id,
            } => {
                let mut r = code.reply(&details);
                if code.status == StatusCode::SERVICE_UNAVAILABLE {
                    problem::mark_unavailable(&mut r, request_id);
                }
                r
            }
        }
    }
}

/// A problem of the native API, told in ThingSpeak's words: its status and title, with the
/// code of a missing resource or, for anything else, of an unavailable service.
impl From<Problem> for TsError {
    fn from(p: Problem) -> Self {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::BAD_REQUEST {
            return TsError::bad(p.detail);
        }
        let code = if status == StatusCode::NOT_FOUND {
            ErrorCode::RESOURCE_NOT_FOUND
        } else {
            ErrorCode::SERVICE_UNAVAILABLE
        };
        TsError::Error {
            code: ErrorCode {
                status,
                message: p.title,
                ..code
            },
            details: p.detail,
            request_id: p.request_id,
        }
    }
}
