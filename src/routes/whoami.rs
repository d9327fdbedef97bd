//! `GET /api/whoami`: the customer the service itself knows the caller as, so that
//! the chat page lists the signed-in user's conversations behind App Service
//! Authentication, and keeps its own id in the browser everywhere else.

use serde_json::json;
use warp::reply::Response;
use warp::Reply;

use super::sessions::requester;
use super::{ApiError, AppState, Request};

/// `{"customer_id": <the trusted principal, or null>}`: what the request states is
/// never echoed, so the answer is `null` unless `TRUST_EASY_AUTH_HEADERS` is on and
/// someone signed in.
pub fn handle(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let customer = requester(state, &request.headers, None)?;
    let body = json!({"customer_id": customer.as_ref().map(|c| c.as_str())});
    Ok(warp::reply::json(&body).into_response())
}
