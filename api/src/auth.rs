//! Credentials: an admin token or a stream key, taken from `Authorization: Bearer`, `X-Api-Key`,
//! ThingSpeak's `THINGSPEAKAPIKEY` header, or `api_key` in the query string. Keys are compared in
//! constant time and never logged.

use subtle::ConstantTimeEq;
use thingtotal_common::keys;
use thingtotal_common::stream::StreamRecord;
use warp::Filter;

use crate::problem::Problem;

/// The credential a request carried, if any.
#[derive(Clone)]
pub(crate) struct Credential(pub(crate) Option<String>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Credential(***)"
        } else {
            "Credential(none)"
        })
    }
}

/// Extracts the request's credential.
pub(crate) fn credential(
) -> impl Filter<Extract = (Credential,), Error = std::convert::Infallible> + Clone {
    warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("x-api-key"))
        .and(warp::header::optional::<String>("thingspeakapikey"))
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(
            |auth: Option<String>, x: Option<String>, ts: Option<String>, query: String| {
                let bearer = auth.and_then(|a| {
                    a.strip_prefix("Bearer ")
                        .or_else(|| a.strip_prefix("bearer "))
                        .map(|t| t.trim().to_owned())
                });
                let from_query = || {
                    query
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| *k == "api_key")
                        .map(|(_, v)| percent_decode(v))
                };
                Credential(
                    bearer
                        .or(x)
                        .or(ts)
                        .or_else(from_query)
                        .filter(|k| !k.is_empty()),
                )
            },
        )
        .or_else(|_| async { Ok::<_, std::convert::Infallible>((Credential(None),)) })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
    match &c.0 {
        None => Err(Problem::unauthorized(
            "this endpoint needs the admin token (Authorization: Bearer <token>)",
        )),
        Some(k) if is_admin(token, k) => Ok(()),
        Some(_) => Err(Problem::forbidden("the credential is not the admin token")),
    }
}

/// Classifies the credential against the admin token and a stream's read key.
pub(crate) fn access(token: Option<&str>, c: &Credential, stream: Option<&StreamRecord>) -> Access {
    match &c.0 {
        None => Access::Anonymous,
        Some(k) if is_admin(token, k) => Access::Admin,
        Some(k) if stream.is_some_and(|s| keys::matches(k, &s.read_key_sha256)) => Access::Reader,
        Some(_) => Access::Wrong,
    }
}

/// Requires that the caller may read `stream`: it is public, or the read key or admin token.
pub(crate) fn require_read(
    token: Option<&str>,
    c: &Credential,
    stream: &StreamRecord,
) -> Result<(), Problem> {
    match access(token, c, Some(stream)) {
        Access::Admin | Access::Reader => Ok(()),
        _ if stream.public => Ok(()),
        Access::Anonymous => Err(Problem::unauthorized(
            "this stream is private: send its read key or the admin token",
        )),
        Access::Wrong => Err(Problem::forbidden(
            "the credential is neither this stream's read key nor the admin token",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb+c"), "a+b c");
        assert_eq!(percent_decode("abc"), "abc");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%4"), "end%4");
    }

    #[test]
    fn only_the_exact_admin_token_is_admin() {
        assert!(is_admin(Some("secret"), "secret"));
        assert!(!is_admin(Some("secret"), "secreT"));
        assert!(!is_admin(Some("secret"), "secret2"));
        assert!(!is_admin(None, "secret"));
    }
}
