//! `POST /api/query`.

use serde_json::json;
use warp::reply::Response;
use warp::Reply;

use super::sessions::requester;
use super::{ApiError, AppState, Request};
use crate::domain::QueryRequest;

pub async fn handle(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    // Content-Type is not checked: callers send JSON with all sorts of types (or none).
    let mut query = QueryRequest::parse(&request.body)?;
    query.customer_id = requester(state, &request.headers, query.customer_id)?;
    let reply = state.conversations.ask(query).await?;
    let sources: Vec<_> = reply
        .answer
        .sources
        .iter()
        .map(|s| json!({"id": s.id, "title": s.title, "snippet": s.snippet, "score": s.score}))
        .collect();
    let body = json!({
        "answer": reply.answer.text,
        "session_id": reply.session_id.as_ref().map(|s| s.as_str()),
        "turn": reply.turn,
        "persisted": reply.persisted,
        "history_turns": reply.history_turns,
        "sources": sources,
        "mode": reply.answer.mode.as_str(),
        "warnings": reply.warnings,
    });
    Ok(warp::reply::json(&body).into_response())
}
