//! Functions that are not HTTP-triggered: the host posts `{"Data": …, "Metadata": …}`
//! to `/{functionName}` and expects `{"Outputs": …, "Logs": […], "ReturnValue": …}`,
//! always as JSON (without a body the invocation can hang).

use serde_json::json;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::{ApiError, AppState};

/// `POST /purge`: the timer function `purge`. Its payload says nothing the purge
/// needs. A failure is a non-success status, so the host records the invocation as
/// failed, with the reason in `Logs`.
pub async fn purge(state: &AppState) -> Response {
    match state.sessions.purge().await {
        Ok(outcome) => reply(StatusCode::OK, outcome.to_string()),
        Err(error) => {
            let error = ApiError::from(error);
            reply(error.status(), format!("purge failed: {}", error.message()))
        }
    }
}

fn reply(status: StatusCode, log: String) -> Response {
    let body = json!({"Outputs": {}, "Logs": [log], "ReturnValue": null});
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}
