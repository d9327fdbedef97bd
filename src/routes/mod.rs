//! HTTP: the only module that knows about it. One catch-all warp filter hands every
//! request to [`dispatch`], which routes by method and path, so that unknown
//! routes, wrong methods and oversized bodies all get the contract's JSON errors.

mod chat;
mod error;
mod query;

pub use error::ApiError;

use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::json;
use warp::http::{header, HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::conversation::Conversations;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every route handler can reach.
pub struct AppState {
    pub conversations: Conversations,
    pub documents_indexed: usize,
}

/// One request as the routes see it.
pub struct Request {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub fn router(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method, path: warp::path::FullPath, headers: HeaderMap, body| {
                let state = state.clone();
                async move {
                    let started = Instant::now();
                    let path = path.as_str().to_owned();
                    let invocation = headers
                        .get("x-azure-functions-invocationid")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let response = match read_body(&headers, body).await {
                        Ok(body) => {
                            let request = Request {
                                method: method.clone(),
                                path: path.clone(),
                                headers,
                                body,
                            };
                            dispatch(&state, request).await
                        }
                        Err(error) => error.into_response(),
                    };
                    // The query string is left out: it can carry a function key (`code=`).
                    tracing::info!(
                        %method,
                        path,
                        status = response.status().as_u16(),
                        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                        invocation,
                        "request"
                    );
                    response
                }
            },
        )
        .or(warp::any().map(|| ApiError::NotFound("no such route".into()).into_response()))
        .unify()
}

/// Bodies a little over the limit are still read (and dropped) before the 413, so
/// the caller, still writing, sees the answer instead of a reset connection.
const MAX_DRAINED_BYTES: usize = 8 * MAX_BODY_BYTES;

/// Collects the body up to [`MAX_BODY_BYTES`]; more (announced or sent) is a 413.
async fn read_body<S, B>(headers: &HeaderMap, mut body: S) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let too_large = ApiError::PayloadTooLarge {
        limit: MAX_BODY_BYTES,
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_DRAINED_BYTES as u64) {
        return Err(too_large);
    }
    let mut collected = BytesMut::new();
    let mut received = 0;
    while let Some(chunk) = body.next().await {
        // A broken upload is the caller's problem: treat it as an unreadable body.
        let Ok(mut chunk) = chunk else {
            return Err(ApiError::Invalid(crate::domain::InvalidQuery {
                kind: crate::domain::InvalidInput::Json,
                message: "request body could not be read".into(),
            }));
        };
        received += chunk.remaining();
        if received > MAX_DRAINED_BYTES {
            return Err(too_large);
        }
        if received > MAX_BODY_BYTES {
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            collected.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    if received > MAX_BODY_BYTES {
        return Err(too_large);
    }
    Ok(collected.freeze())
}

async fn dispatch(state: &AppState, request: Request) -> Response {
    let route = request.path.trim_end_matches('/');
    let result = match (route, &request.method) {
        ("", &Method::GET) => Ok(service_status(state)),
        ("/api/health", &Method::GET) => Ok(service_status(state)),
        ("" | "/api/health", _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        ("/api/query", &Method::POST) => query::handle(state, &request).await,
        ("/api/query", _) => Err(ApiError::MethodNotAllowed { allow: "POST" }),
        ("/api/chat", &Method::GET) => Ok(chat::page()),
        ("/api/chat", _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        _ => Err(ApiError::NotFound(format!("no route for {}", request.path))),
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// `GET /` (the host's readiness probe) and `GET /api/health`.
fn service_status(state: &AppState) -> Response {
    let body = json!({
        "status": "ok",
        "service": "session-rag",
        "documents_indexed": state.documents_indexed,
        "durable_storage": state.conversations.has_durable_storage(),
    });
    warp::reply::with_status(warp::reply::json(&body), StatusCode::OK).into_response()
}
