//! Who a credential says the caller is: the admin token or a stream's read key. Keys are
//! compared in constant time and never logged.

use subtle::ConstantTimeEq;
use thingtotal_common::http::Credential;
use thingtotal_common::keys;
use thingtotal_common::problem::Problem;
use thingtotal_common::stream::StreamRecord;

/// Who the credential says the caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// No credential.
    Anonymous,
    /// The admin token.
    Admin,
    /// A credential that matches nothing.
    Wrong,
    /// The stream's read key.
    Reader,
}

fn is_admin(token: Option<&str>, c: &str) -> bool {
    token.is_some_and(|t| t.len() == c.len() && bool::from(t.as_bytes().ct_eq(c.as_bytes())))
}

/// Requires the admin token: 401 without a credential, 403 with another.
pub(crate) fn require_admin(token: Option<&str>, c: &Credential) -> Result<(), Problem> {
    match c {
        Credential::Absent => Err(Problem::unauthorized(
            "this endpoint needs the admin token (Authorization: Bearer <token>)",
        )),
        Credential::Key(k) if is_admin(token, k) => Ok(()),
        _ => Err(refused(c, "the credential is not the admin token")),
    }
}

/// The 403 for a credential that is not the one needed: `detail`, or, for credentials that
/// disagree, which places they came from.
fn refused(c: &Credential, detail: &str) -> Problem {
    Problem::forbidden(c.conflict().unwrap_or_else(|| detail.to_owned()))
}

/// Classifies the credential against the admin token and a stream's read key. Credentials
/// that disagree are [`Access::Wrong`].
pub(crate) fn access(token: Option<&str>, c: &Credential, stream: Option<&StreamRecord>) -> Access {
    match c {
        Credential::Absent => Access::Anonymous,
        Credential::Key(k) if is_admin(token, k) => Access::Admin,
        Credential::Key(k) if stream.is_some_and(|s| keys::matches(k, &s.read_key_sha256)) => {
            Access::Reader
        }
        Credential::Key(_) | Credential::Conflicting(_) => Access::Wrong,
    }
}

/// Requires that the caller may read `stream`: it is public, or the read key or admin token.
pub(crate) fn require_read(
    token: Option<&str>,
    c: &Credential,
    stream: &StreamRecord,
) -> Result<(), Problem> {
    if stream.public {
        return Ok(());
    }
    key_or_admin(
        token,
        c,
        stream,
        "this stream is private: send its read key or the admin token",
    )
}

/// Requires the stream's read key or the admin token, public or not (for what a public stream
/// does not show: its rejected entries).
pub(crate) fn require_reader(
    token: Option<&str>,
    c: &Credential,
    stream: &StreamRecord,
) -> Result<(), Problem> {
    key_or_admin(
        token,
        c,
        stream,
        "rejected entries need the stream's read key or the admin token, even on a public stream",
    )
}

/// The read key or the admin token: 401 with `missing` without a credential, 403 with another.
fn key_or_admin(
    token: Option<&str>,
    c: &Credential,
    stream: &StreamRecord,
    missing: &str,
) -> Result<(), Problem> {
    match access(token, c, Some(stream)) {
        Access::Admin | Access::Reader => Ok(()),
        Access::Anonymous => Err(Problem::unauthorized(missing)),
        Access::Wrong => Err(refused(
            c,
            "the credential is neither this stream's read key nor the admin token",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_admin_token_is_admin() {
        assert!(is_admin(Some("secret"), "secret"));
        assert!(!is_admin(Some("secret"), "secreT"));
        assert!(!is_admin(Some("secret"), "secret2"));
        assert!(!is_admin(None, "secret"));
    }
}
