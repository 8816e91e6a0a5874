//! Which channel a request names, and whether the caller may read it.

use std::sync::Arc;

use thingtotal_common::http::Credential;
use thingtotal_common::keys;
use thingtotal_common::stream::{StreamId, StreamRecord};
use warp::http::StatusCode;

use super::error::TsError;
use crate::auth::{self, Access};
use crate::Api;

/// The stream behind a channel; ThingSpeak's not-found answer if there is none.
pub(super) async fn lookup(api: &Api, id: StreamId) -> Result<Arc<StreamRecord>, TsError> {
    crate::streams::existing(api, id).await.map_err(|p| {
        if p.status == StatusCode::NOT_FOUND.as_u16() {
            TsError::not_found()
        } else {
            TsError::from(p)
        }
    })
}

/// The stream behind a channel, if the caller may read it: public, or its read (or write) key,
/// or the admin token. ThingSpeak accepts the write key for reads too.
pub(super) async fn channel(
    api: &Api,
    id: StreamId,
    c: &Credential,
) -> Result<Arc<StreamRecord>, TsError> {
    let stream = lookup(api, id).await?;
    if stream.public {
        return Ok(stream);
    }
    match auth::access(api.admin_token(), c, Some(&stream)) {
        Access::Admin | Access::Reader => Ok(stream),
        Access::Wrong
            if c.key()
                .is_some_and(|k| keys::matches(k, &stream.write_key_sha256)) =>
        {
            Ok(stream)
        }
        _ => Err(TsError::NoAccess),
    }
}
