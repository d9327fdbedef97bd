//! `POST /api/query`: one JSON reply, or Server-Sent Events when the caller asks
//! (`Accept: text/event-stream` or `"stream": true`; see `answer_stream.rs`).

use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::{header, HeaderMap};
use warp::reply::Response;
use warp::Reply;

use super::answer_stream;
use super::sessions::requester;
use super::{ApiError, AppState, Request};
use crate::answer::{AnswerEvents, Source};
use crate::conversation::Reply as Answered;
use crate::domain::QueryRequest;

pub async fn handle(state: &Arc<AppState>, request: &Request) -> Result<Response, ApiError> {
    // Content-Type is not checked: callers send JSON with all sorts of types (or none).
    let mut query = QueryRequest::parse(&request.body)?;
    query.customer_id = requester(state, &request.headers, query.customer_id)?;
    if query.stream || accepts_event_stream(&request.headers) {
        return answer_stream::respond(state.clone(), query).await;
    }
    let reply = state.conversations.ask(query, AnswerEvents::none()).await?;
    Ok(warp::reply::json(&reply_body(&reply)).into_response())
}

/// Whether `Accept` lists `text/event-stream` (with a quality above 0).
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media_type = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(name, quality)| {
                    name.trim().eq_ignore_ascii_case("q")
                        && quality.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
            });
            media_type.eq_ignore_ascii_case("text/event-stream") && !refused
        })
}

/// The response to a question: the JSON body, or the data of a stream's `done`.
pub fn reply_body(reply: &Answered) -> Value {
    json!({
        "answer": reply.answer.text,
        "session_id": reply.session_id.as_ref().map(|s| s.as_str()),
        "turn": reply.turn,
        "persisted": reply.persisted,
        "history_turns": reply.history_turns,
        "sources": sources_body(&reply.answer.sources),
        "mode": reply.answer.mode.as_str(),
        "warnings": reply.warnings,
    })
}

pub fn sources_body(sources: &[Source]) -> Vec<Value> {
    sources
        .iter()
        .map(|s| json!({"id": s.id, "title": s.title, "snippet": s.snippet, "score": s.score}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn accepting(values: &[&'static str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::ACCEPT, HeaderValue::from_static(value));
        }
        accepts_event_stream(&headers)
    }

    #[test]
    fn the_accept_header_asks_for_a_stream_when_it_lists_event_streams() {
        assert!(accepting(&["text/event-stream"]));
        assert!(accepting(&["application/json;q=0.5, Text/Event-Stream"]));
        assert!(accepting(&["application/json", "text/event-stream; q=0.1"]));
        assert!(!accepting(&[]));
        assert!(!accepting(&["*/*"]));
        assert!(!accepting(&["application/json"]));
        assert!(!accepting(&["text/event-stream;q=0"]));
    }
}
