//! HTTP: the only module that knows about it. One catch-all warp filter hands every
//! request to [`dispatch`], which routes by method and path through [`ROUTES`], so
//! that unknown routes, wrong methods and oversized bodies all get the contract's
//! JSON errors.

mod analytics;
mod answer_stream;
mod chat;
mod error;
mod invocation;
mod query;
mod sessions;
mod shares;
mod whoami;

pub use error::ApiError;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::json;
use warp::http::{header, HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::analytics::Analytics;
use crate::conversation::Conversations;
use crate::sessions::Sessions;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The OpenAPI document of every route, served at `GET /api/openapi.json`.
pub const OPENAPI_DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// What every route handler can reach.
pub struct AppState {
    pub conversations: Conversations,
    pub sessions: Sessions,
    pub analytics: Analytics,
    pub documents_indexed: usize,
    /// `TRUST_EASY_AUTH_HEADERS`: the owner is the `X-MS-CLIENT-PRINCIPAL-ID` header.
    pub trust_easy_auth_headers: bool,
    /// The longest a streamed answer stays silent before a keep-alive comment.
    pub stream_keep_alive: Duration,
}

/// One request as the routes see it.
pub struct Request {
    pub method: Method,
    /// Percent-encoded, as received.
    pub path: String,
    /// The query string without `?`; empty when there is none.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Status,
    Query,
    ChatPage,
    WhoAmI,
    Sessions,
    Session,
    Export,
    OpenApi,
    Purge,
    Feedback,
    Share,
    Shared,
    Analytics,
    AppAnalytics,
}

/// A path the handler serves and the methods it accepts there.
pub struct Route {
    /// `{session_id}`, `{turn}` and `{share_id}` stand for one path segment each.
    pub path: &'static str,
    /// The methods, as the `Allow` header of a 405 lists them.
    pub allow: &'static str,
    endpoint: Endpoint,
}

impl Route {
    pub fn methods(&self) -> impl Iterator<Item = &'static str> {
        self.allow.split(", ")
    }

    /// If `path` (without a trailing `/`) is this route: its parameter segments
    /// (still percent-encoded), in order; none for a route without parameters.
    fn parameters<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        let mut parameters = Vec::new();
        let mut pattern = self.path.trim_end_matches('/').split('/');
        let mut actual = path.split('/');
        loop {
            match (pattern.next(), actual.next()) {
                (None, None) => return Some(parameters),
                (Some(expected), Some(segment))
                    if expected.starts_with('{') && !segment.is_empty() =>
                {
                    parameters.push(segment)
                }
                (Some(expected), Some(segment)) if expected == segment => {}
                _ => return None,
            }
        }
    }
}

/// Every route: [`dispatch`] serves exactly these, and a test holds them equal to
/// the OpenAPI document.
pub const ROUTES: &[Route] = &[
    // The Functions host's readiness probe.
    Route {
        path: "/",
        allow: "GET",
        endpoint: Endpoint::Status,
    },
    Route {
        path: "/api/health",
        allow: "GET",
        endpoint: Endpoint::Status,
    },
    Route {
        path: "/api/query",
        allow: "POST",
        endpoint: Endpoint::Query,
    },
    Route {
        path: "/api/chat",
        allow: "GET",
        endpoint: Endpoint::ChatPage,
    },
    Route {
        path: "/api/whoami",
        allow: "GET",
        endpoint: Endpoint::WhoAmI,
    },
    Route {
        path: "/api/sessions",
        allow: "GET, DELETE",
        endpoint: Endpoint::Sessions,
    },
    Route {
        path: "/api/sessions/{session_id}",
        allow: "GET, PATCH, DELETE",
        endpoint: Endpoint::Session,
    },
    Route {
        path: "/api/sessions/{session_id}/export",
        allow: "GET",
        endpoint: Endpoint::Export,
    },
    Route {
        path: "/api/openapi.json",
        allow: "GET",
        endpoint: Endpoint::OpenApi,
    },
    // The timer function `purge`, invoked by the host with its payload.
    Route {
        path: "/purge",
        allow: "POST",
        endpoint: Endpoint::Purge,
    },
    Route {
        path: "/api/sessions/{session_id}/turns/{turn}/feedback",
        allow: "PUT, DELETE",
        endpoint: Endpoint::Feedback,
    },
    Route {
        path: "/api/sessions/{session_id}/share",
        allow: "POST, DELETE",
        endpoint: Endpoint::Share,
    },
    // Anonymous (its own function): the share id is the capability.
    Route {
        path: "/api/shared/{share_id}",
        allow: "GET",
        endpoint: Endpoint::Shared,
    },
    Route {
        path: "/api/analytics",
        allow: "GET",
        endpoint: Endpoint::Analytics,
    },
    // The whole app's figures: a function of its own, for the host's admin key.
    Route {
        path: "/api/analytics/app",
        allow: "GET",
        endpoint: Endpoint::AppAnalytics,
    },
];

pub fn router(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body| {
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
                                query,
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

async fn dispatch(state: &Arc<AppState>, request: Request) -> Response {
    let path = request.path.trim_end_matches('/');
    let found = ROUTES
        .iter()
        .find_map(|route| Some((route, route.parameters(path)?)));
    let result = match found {
        None => Err(ApiError::NotFound(format!("no route for {}", request.path))),
        Some((route, _)) if !route.methods().any(|m| m == request.method.as_str()) => {
            Err(ApiError::MethodNotAllowed { allow: route.allow })
        }
        Some((route, parameters)) => serve(state, route.endpoint, &parameters, &request).await,
    };
    result.unwrap_or_else(ApiError::into_response)
}

/// Runs `endpoint` for a request whose method it accepts; `parameters` are the
/// path's `{session_id}` (then `{turn}`) or `{share_id}` segments.
async fn serve(
    state: &Arc<AppState>,
    endpoint: Endpoint,
    parameters: &[&str],
    request: &Request,
) -> Result<Response, ApiError> {
    let parameter = parameters.first().copied().unwrap_or_default();
    match endpoint {
        Endpoint::Status => Ok(service_status(state)),
        Endpoint::Query => query::handle(state, request).await,
        Endpoint::ChatPage => Ok(chat::page()),
        Endpoint::WhoAmI => whoami::handle(state, request),
        Endpoint::Sessions if request.method == Method::DELETE => {
            sessions::delete_all(state, request).await
        }
        Endpoint::Sessions => sessions::list(state, request).await,
        Endpoint::Session if request.method == Method::DELETE => {
            sessions::delete(state, parameter, request).await
        }
        Endpoint::Session if request.method == Method::PATCH => {
            sessions::rename(state, parameter, request).await
        }
        Endpoint::Session => sessions::read(state, parameter, request).await,
        Endpoint::Export => sessions::export(state, parameter, request).await,
        Endpoint::OpenApi => Ok(json_response(OPENAPI_DOCUMENT)),
        Endpoint::Purge => Ok(invocation::purge(state).await),
        Endpoint::Feedback => {
            let turn = parameters.get(1).copied().unwrap_or_default();
            sessions::feedback(state, parameter, turn, request).await
        }
        Endpoint::Share => shares::share(state, parameter, request).await,
        Endpoint::Shared => shares::shared(state, parameter).await,
        Endpoint::Analytics => analytics::customer(state, request).await,
        Endpoint::AppAnalytics => analytics::app(state, request).await,
    }
}

/// A response of JSON text, as it is.
fn json_response(body: &'static str) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /` (the host's readiness probe) and `GET /api/health`. `storage` says
/// whether durable storage answered its last call (start-up probes it).
fn service_status(state: &AppState) -> Response {
    let durable = state.conversations.durable_storage();
    let body = json!({
        "status": "ok",
        "service": "session-rag",
        "documents_indexed": state.documents_indexed,
        "durable_storage": durable.is_some(),
        "storage": match durable {
            None => "in-process",
            Some(store) if store.is_reachable() => "reachable",
            Some(_) => "unreachable",
        },
    });
    warp::reply::with_status(warp::reply::json(&body), StatusCode::OK).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const OPERATIONS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    #[test]
    fn the_openapi_document_describes_exactly_the_served_routes() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_DOCUMENT).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .filter(|key| OPERATIONS.contains(&key.as_str()))
                    .map(move |method| (path.clone(), method.to_uppercase()))
            })
            .collect();
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|route| {
                route
                    .methods()
                    .map(|m| (route.path.to_owned(), m.to_owned()))
            })
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn a_route_matches_its_own_paths_only() {
        let session = ROUTES
            .iter()
            .find(|r| r.endpoint == Endpoint::Session)
            .unwrap();
        assert_eq!(
            session.parameters("/api/sessions/a%20b"),
            Some(vec!["a%20b"])
        );
        assert_eq!(session.parameters("/api/sessions/"), None);
        assert_eq!(session.parameters("/api/sessions"), None);
        assert_eq!(session.parameters("/api/sessions/a/export"), None);
        let probe = &ROUTES[0];
        assert_eq!(probe.parameters(""), Some(vec![]));
        assert_eq!(probe.parameters("/api"), None);
        let feedback = ROUTES
            .iter()
            .find(|r| r.endpoint == Endpoint::Feedback)
            .unwrap();
        assert_eq!(
            feedback.parameters("/api/sessions/s%201/turns/3/feedback"),
            Some(vec!["s%201", "3"])
        );
        assert_eq!(feedback.parameters("/api/sessions/s/turns//feedback"), None);
        assert_eq!(feedback.parameters("/api/sessions/s/turns/3"), None);
    }
}
