//! Sharing: `POST` and `DELETE /api/sessions/{session_id}/share` for the owner,
//! and the anonymous `GET /api/shared/{share_id}`, where the id is the capability.

use serde_json::{json, Value};
use warp::http::{header, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::sessions::{addressed, no_content_or_not_found, not_found};
use super::{ApiError, AppState, Request};
use crate::domain::{timestamp_text, ShareId};
use crate::storage::StorageError;

/// `POST` (→ 201 `{"share_id", "turns", "created_at"}`) and `DELETE` (→ 204, every
/// share of the conversation revoked) `/api/sessions/{session_id}/share`.
pub async fn share(
    state: &AppState,
    raw_id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (session, requester) = addressed(state, raw_id, request)?;
    if request.method == Method::DELETE {
        let revoked = state.sessions.unshare(&session, requester.as_ref()).await?;
        return no_content_or_not_found(revoked, &session);
    }
    let Some(share) = state.sessions.share(&session, requester.as_ref()).await? else {
        return Err(not_found(&session));
    };
    let body = json!({
        "share_id": share.id.as_str(),
        "turns": share.turns,
        "created_at": timestamp_text(share.created_at),
    });
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED).into_response())
}

/// `GET /api/shared/{share_id}`: the snapshot (`share_id`, `title`, `created_at`,
/// `turns`, `messages`); 404 for an id that is not a live share.
pub async fn shared(state: &AppState, raw_id: &str) -> Result<Response, ApiError> {
    let missing = || ApiError::NotFound("no such shared conversation".into());
    let id = ShareId::parse(raw_id).ok_or_else(missing)?;
    let share = state.sessions.shared(&id).await?.ok_or_else(missing)?;
    let mut snapshot: Value = serde_json::from_str(&share.document).map_err(|_| {
        StorageError::Unavailable(format!("the stored snapshot of share {id} is not JSON"))
    })?;
    snapshot["share_id"] = id.as_str().into();
    snapshot["created_at"] = timestamp_text(share.created_at).into();
    snapshot["turns"] = share.turns.into();
    let mut response = warp::reply::json(&snapshot).into_response();
    // Revoking must take effect for whoever holds the link, caches included.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
