//! ThingSpeak's error object, `{"status": "400", "error": {"error_code", "message",
//! "details"}}`, and the error codes both sides answer with.

use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// One of ThingSpeak's error codes, with the HTTP status and the message it goes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    /// The HTTP status of the answer (also its `status` member, as a string).
    pub status: StatusCode,
    /// The `error_code` member, such as `error_bad_request`.
    pub code: &'static str,
    /// The `message` member: a short title.
    pub message: &'static str,
}

impl ErrorCode {
    /// `400 error_bad_request`: a parameter or body that cannot be used.
    pub const BAD_REQUEST: ErrorCode =
        ErrorCode::new(StatusCode::BAD_REQUEST, "error_bad_request", "Bad Request");
    /// `401 error_auth_required`: a missing or wrong key.
    pub const AUTH_REQUIRED: ErrorCode = ErrorCode::new(
        StatusCode::UNAUTHORIZED,
        "error_auth_required",
        "Authorization Required",
    );
    /// `404 error_resource_not_found`: no such channel.
    pub const RESOURCE_NOT_FOUND: ErrorCode = ErrorCode::new(
        StatusCode::NOT_FOUND,
        "error_resource_not_found",
        "Resource Not Found",
    );
    /// `413 error_request_too_large`: too large a body, or too many updates.
    pub const REQUEST_TOO_LARGE: ErrorCode = ErrorCode::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "error_request_too_large",
        "Request Entity Too Large",
    );
    /// `503 error_service_unavailable`: the log did not answer.
    pub const SERVICE_UNAVAILABLE: ErrorCode = ErrorCode::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "error_service_unavailable",
        "Service Unavailable",
    );

    /// A code of this status and message.
    const fn new(status: StatusCode, code: &'static str, message: &'static str) -> Self {
        ErrorCode {
            status,
            code,
            message,
        }
    }

    /// The error object with `details`, as a JSON answer with this code's status.
    pub fn reply(self, details: &str) -> Response {
        warp::reply::with_status(warp::reply::json(&self.object(details)), self.status)
            .into_response()
    }

    /// The error object; its `status` is a string.
    fn object(self, details: &str) -> Value {
        json!({"status": self.status.as_str(),
            "error": {"error_code": self.code, "message": self.message, "details": details}})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_object_carries_its_status_as_a_string() {
        assert_eq!(
            ErrorCode::AUTH_REQUIRED.reply("").status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            ErrorCode::AUTH_REQUIRED.object("check the key"),
            json!({"status": "401", "error": {"error_code": "error_auth_required",
                "message": "Authorization Required", "details": "check the key"}})
        );
    }
}
