//! The sessions API: `GET` (a listing, or with `q` a search) and `DELETE
//! /api/sessions`, `GET`, `PATCH` and `DELETE /api/sessions/{session_id}`,
//! `GET /api/sessions/{session_id}/export`, `PUT` and `DELETE
//! /api/sessions/{session_id}/turns/{turn}/feedback`; and who is asking, for
//! every route.

use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use super::{ApiError, AppState, Request};
use crate::domain::{
    timestamp_text, CustomerId, Feedback, InvalidInput, SearchQuery, SessionId, Title, Turn,
};
use crate::sessions::ListPosition;
use crate::storage::SessionSummary;
use crate::transcript;

/// Set by App Service Authentication (Easy Auth) to the signed-in user's id.
const PRINCIPAL_HEADER: &str = "x-ms-client-principal-id";

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// Who is asking. With `TRUST_EASY_AUTH_HEADERS`, only App Service Authentication
/// says: the principal header, or nobody when no one signed in (what the request
/// states is ignored, or anyone could claim anyone's conversations). Otherwise the
/// `stated` customer id, and the header is ignored.
pub fn requester(
    state: &AppState,
    headers: &HeaderMap,
    stated: Option<CustomerId>,
) -> Result<Option<CustomerId>, ApiError> {
    if !state.trust_easy_auth_headers {
        return Ok(stated);
    }
    let Some(principal) = headers.get(PRINCIPAL_HEADER) else {
        return Ok(None);
    };
    let principal = principal.to_str().map_err(|_| {
        ApiError::invalid(
            InvalidInput::CustomerId,
            "X-MS-CLIENT-PRINCIPAL-ID must be visible ASCII",
        )
    })?;
    CustomerId::parse(principal)
        .map(Some)
        .map_err(|e| ApiError::invalid(InvalidInput::CustomerId, e.0))
}

/// A query string's parameters, percent-decoded.
pub(super) struct Parameters(Vec<(String, String)>);

impl Parameters {
    pub(super) fn of(request: &Request) -> Self {
        Self(
            form_urlencoded::parse(request.query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The first value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Who the request says is asking (`customer_id`), then who is, by [`requester`].
    fn requester(
        &self,
        state: &AppState,
        request: &Request,
    ) -> Result<Option<CustomerId>, ApiError> {
        let stated = self
            .get("customer_id")
            .map(CustomerId::parse)
            .transpose()
            .map_err(|e| ApiError::invalid(InvalidInput::CustomerId, e.0))?;
        requester(state, &request.headers, stated)
    }

    /// The customer whose conversations the request is about: required.
    pub(super) fn owner(
        &self,
        state: &AppState,
        request: &Request,
    ) -> Result<CustomerId, ApiError> {
        self.requester(state, request)?
            .ok_or_else(|| ApiError::invalid(InvalidInput::CustomerId, "customer_id is required"))
    }

    /// `limit`: 20 when absent; a whole number from 1, above 100 taken as 100.
    fn limit(&self) -> Result<usize, ApiError> {
        let Some(raw) = self.get("limit") else {
            return Ok(DEFAULT_LIMIT);
        };
        let refused = || {
            ApiError::invalid(
                InvalidInput::Request,
                format!("limit must be a whole number from 1 to {MAX_LIMIT} (got {raw:?})"),
            )
        };
        let digits = raw.strip_prefix('+').unwrap_or(raw);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(refused());
        }
        match digits.parse::<usize>() {
            Ok(0) => Err(refused()),
            Ok(n) => Ok(n.min(MAX_LIMIT)),
            // Too many digits for a usize: certainly above the maximum.
            Err(_) => Ok(MAX_LIMIT),
        }
    }

    fn continuation(&self) -> Result<Option<ListPosition>, ApiError> {
        self.get("continuation")
            .map(|token| {
                ListPosition::from_token(token).ok_or_else(|| {
                    ApiError::invalid(
                        InvalidInput::Request,
                        "continuation must be a token from a previous page of this listing",
                    )
                })
            })
            .transpose()
    }
}

/// `GET /api/sessions`: a page of the customer's conversations, latest first; with
/// `q`, of those holding its words.
pub async fn list(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let parameters = Parameters::of(request);
    let owner = parameters.owner(state, request)?;
    let limit = parameters.limit()?;
    let after = parameters.continuation()?;
    if let Some(q) = parameters.get("q") {
        return search(state, &owner, q, limit, after.as_ref()).await;
    }
    let page = state.sessions.list(&owner, limit, after.as_ref()).await?;
    let sessions: Vec<Value> = page.sessions.iter().map(listing_entry).collect();
    let body = json!({
        "sessions": sessions,
        "continuation": page.next.map(|position| position.token()),
    });
    Ok(warp::reply::json(&body).into_response())
}

/// A conversation as a listing shows it.
fn listing_entry(summary: &SessionSummary) -> Value {
    json!({
        "session_id": summary.session_id.as_str(),
        "customer_id": summary.owner.as_str(),
        "title": summary.title,
        "turns": summary.turns,
        "created_at": timestamp_text(summary.created_at),
        "updated_at": timestamp_text(summary.updated_at),
    })
}

/// `GET /api/sessions/{session_id}`: the conversation document.
pub async fn read(state: &AppState, raw_id: &str, request: &Request) -> Result<Response, ApiError> {
    let (session, turns) = conversation(state, raw_id, request).await?;
    let title = state.sessions.title(&session, &turns).await?;
    Ok(warp::reply::json(&transcript::document(&session, &title, &turns)).into_response())
}

/// `DELETE /api/sessions/{session_id}`: 204, then 404.
pub async fn delete(
    state: &AppState,
    raw_id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let (session, requester) = addressed(state, raw_id, request)?;
    let deleted = state.sessions.delete(&session, requester.as_ref()).await?;
    no_content_or_not_found(deleted, &session)
}

/// 204 when `done`, else the 404 of [`not_found`].
pub(super) fn no_content_or_not_found(
    done: bool,
    session: &SessionId,
) -> Result<Response, ApiError> {
    match done {
        true => Ok(StatusCode::NO_CONTENT.into_response()),
        false => Err(not_found(session)),
    }
}

/// The formats a conversation exports to.
enum Format {
    Markdown,
    Json,
}

/// `GET /api/sessions/{session_id}/export?format=markdown|json`: a download.
pub async fn export(
    state: &AppState,
    raw_id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let format = match Parameters::of(request).get("format") {
        None | Some("markdown") => Format::Markdown,
        Some("json") => Format::Json,
        Some(other) => {
            return Err(ApiError::invalid(
                InvalidInput::Request,
                format!("format must be markdown or json (got {other:?})"),
            ))
        }
    };
    let (session, turns) = conversation(state, raw_id, request).await?;
    let title = state.sessions.title(&session, &turns).await?;
    let (body, content_type, extension) = match format {
        Format::Markdown => (
            transcript::markdown(&session, &title, &turns),
            "text/markdown; charset=utf-8",
            "md",
        ),
        Format::Json => (
            transcript::document(&session, &title, &turns).to_string(),
            "application/json",
            "json",
        ),
    };
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let disposition = format!(
        "attachment; filename=\"{}\"",
        transcript::file_name(&session, extension)
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).expect("file names are plain ASCII"),
    );
    Ok(response)
}

/// The conversation the path names, as the requester may see it.
async fn conversation(
    state: &AppState,
    raw_id: &str,
    request: &Request,
) -> Result<(SessionId, Vec<Turn>), ApiError> {
    let (session, requester) = addressed(state, raw_id, request)?;
    match state.sessions.read(&session, requester.as_ref()).await? {
        Some(turns) => Ok((session, turns)),
        None => Err(not_found(&session)),
    }
}

/// The conversation the path names, and who asks about it.
pub(super) fn addressed(
    state: &AppState,
    raw_id: &str,
    request: &Request,
) -> Result<(SessionId, Option<CustomerId>), ApiError> {
    let session = session_in_path(raw_id)?;
    let requester = Parameters::of(request).requester(state, request)?;
    Ok((session, requester))
}

/// The same answer for an unknown, expired or someone else's conversation.
pub(super) fn not_found(session: &SessionId) -> ApiError {
    ApiError::NotFound(format!("no conversation {session}"))
}

/// The `{session_id}` path segment, percent-decoded and checked.
fn session_in_path(raw: &str) -> Result<SessionId, ApiError> {
    let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| {
        ApiError::invalid(
            InvalidInput::SessionId,
            "session_id in the path must be UTF-8 once percent-decoded",
        )
    })?;
    SessionId::parse(&decoded).map_err(|e| ApiError::invalid(InvalidInput::SessionId, e.0))
}

/// `DELETE /api/sessions?customer_id=…`: every conversation of the customer, as
/// many as fit in one request's storage budget. `{"deleted": n, "complete": true}`
/// once none is left; `complete: false` asks for another call, which goes on
/// where this one stopped.
pub async fn delete_all(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let owner = Parameters::of(request).owner(state, request)?;
    let outcome = state.sessions.delete_all(&owner).await?;
    let body = json!({"deleted": outcome.deleted, "complete": outcome.complete});
    Ok(warp::reply::json(&body).into_response())
}

/// `PATCH /api/sessions/{session_id}` `{"title": "…"}`: the renamed listing entry.
pub async fn rename(
    state: &AppState,
    raw_id: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let session = session_in_path(raw_id)?;
    let title = Title::from_body(&request.body)?;
    let requester = Parameters::of(request).requester(state, request)?;
    match state
        .sessions
        .rename(&session, requester.as_ref(), &title)
        .await?
    {
        Some(summary) => Ok(warp::reply::json(&listing_entry(&summary)).into_response()),
        None => Err(not_found(&session)),
    }
}

/// `PUT` (`{"rating", "comment"}` → 200 with the feedback) and `DELETE` (→ 204)
/// `/api/sessions/{session_id}/turns/{turn}/feedback`.
pub async fn feedback(
    state: &AppState,
    raw_id: &str,
    raw_turn: &str,
    request: &Request,
) -> Result<Response, ApiError> {
    let session = session_in_path(raw_id)?;
    if raw_turn.is_empty() || !raw_turn.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(
            InvalidInput::Request,
            format!("turn must be a turn number: 0, 1, 2, … (got {raw_turn:?})"),
        ));
    }
    let feedback = match request.method {
        warp::http::Method::PUT => Some(Feedback::from_body(&request.body, state.sessions.now())?),
        _ => None,
    };
    let requester = Parameters::of(request).requester(state, request)?;
    let missing = || ApiError::NotFound(format!("no turn {raw_turn} in conversation {session}"));
    // More digits than any turn number has: certainly not a turn.
    let turn: u64 = raw_turn.parse().map_err(|_| missing())?;
    let recorded = state
        .sessions
        .set_feedback(&session, turn, requester.as_ref(), feedback.as_ref())
        .await?;
    match (recorded, feedback) {
        (false, _) => Err(missing()),
        (true, Some(feedback)) => {
            Ok(warp::reply::json(&transcript::feedback_json(&feedback)).into_response())
        }
        (true, None) => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `GET /api/sessions?customer_id=…&q=…`: the listing, narrowed to conversations
/// holding every word of `q`, each entry with up to three `matches`.
async fn search(
    state: &AppState,
    owner: &CustomerId,
    q: &str,
    limit: usize,
    after: Option<&ListPosition>,
) -> Result<Response, ApiError> {
    let query = SearchQuery::parse(q)
        .map_err(|message| ApiError::invalid(InvalidInput::Request, message))?;
    let page = state.sessions.search(owner, &query, limit, after).await?;
    let sessions: Vec<Value> = page
        .hits
        .iter()
        .map(|hit| {
            let mut entry = listing_entry(&hit.summary);
            entry["matches"] = hit
                .matches
                .iter()
                .map(|m| json!({"turn": m.turn, "role": m.role.as_str(), "snippet": m.snippet}))
                .collect();
            entry
        })
        .collect();
    let body = json!({
        "sessions": sessions,
        "continuation": page.next.map(|position| position.token()),
    });
    Ok(warp::reply::json(&body).into_response())
}
