//! An answer as Server-Sent Events (PRODUCT.md, "Streaming"): `meta` once the
//! sources are known, `delta`s as the answer is written, then `done` (the usual
//! response, sent after the turn is stored) or `error` (nothing stored; a panic
//! while answering is an `internal_error`, not a cut connection).
//!
//! The question is asked inside the response body: the body drives the
//! [`Conversations::ask`] future, so a client that goes away drops it, and with it
//! the model call and the turn that would have been stored after it.
//!
//! [`Conversations::ask`]: crate::conversation::Conversations::ask

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt as _;
use serde_json::{json, Value};
use sync_wrapper::SyncStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{interval_at, Interval, MissedTickBehavior};
use warp::http::{header, HeaderValue};
use warp::reply::Response;
use warp::Reply as _;

use super::query::{reply_body, sources_body};
use super::{ApiError, AppState};
use crate::answer::{AnswerEvent, AnswerEvents};
use crate::conversation::{AskError, Reply};
use crate::domain::{QueryRequest, SessionId};

type Asking = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send>>;

/// Answers `query` as a stream. Whatever fails before the answer starts (someone
/// else's conversation, say) is the usual JSON error instead.
pub async fn respond(state: Arc<AppState>, query: QueryRequest) -> Result<Response, ApiError> {
    let session_id = query.session_id.clone();
    let keep_alive = state.stream_keep_alive;
    let (events, received) = AnswerEvents::channel();
    let asking = async move { state.conversations.ask(query, events).await };
    let mut stream = AnswerStream::new(asking, received, session_id, keep_alive);
    // The response starts with the first event: what fails before it is an error response.
    stream.first = loop {
        match stream.progress().await {
            Progress::Event(event) => break Some(event),
            Progress::Silent => continue,
            Progress::Finished(Err(error)) => return Err(error),
            Progress::Finished(answered) => {
                stream.outcome = Some(answered);
                break None;
            }
        }
    };
    stream.responding = true;
    let body = futures::stream::unfold(stream, |mut stream| async move {
        let frame = stream.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), stream))
    });
    let mut response = warp::reply::stream(SyncStream::new(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer (nginx) pass an event stream on as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

fn keep_alive_timer(period: Duration) -> Interval {
    let mut timer = interval_at(tokio::time::Instant::now() + period, period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

/// What happened next while asking.
enum Progress {
    Event(AnswerEvent),
    /// Asking ended, and everything it reported has been taken.
    Finished(Result<Reply, ApiError>),
    /// Nothing for a keep-alive period.
    Silent,
}

/// The state of one answer's stream.
struct AnswerStream {
    /// The question being asked, until it is answered (or fails).
    asking: Option<Asking>,
    received: UnboundedReceiver<AnswerEvent>,
    /// How asking ended, once it has, until it is sent.
    outcome: Option<Result<Reply, ApiError>>,
    /// The event that started the stream, until it is sent.
    first: Option<AnswerEvent>,
    session_id: Option<SessionId>,
    /// Fires when nothing has been sent for the keep-alive period.
    keep_alive: Interval,
    /// The response is a stream (not an error found before the answer started).
    responding: bool,
    /// The last event (`done` or `error`), once sent.
    ended: Option<&'static str>,
    started: Instant,
}

impl AnswerStream {
    /// The stream of `asking`, which reports its answer to `received`. A panic
    /// inside `asking` ends the stream with an internal error instead of cutting
    /// the connection.
    fn new(
        asking: impl Future<Output = Result<Reply, AskError>> + Send + 'static,
        received: UnboundedReceiver<AnswerEvent>,
        session_id: Option<SessionId>,
        keep_alive: Duration,
    ) -> Self {
        let asking = AssertUnwindSafe(asking)
            .catch_unwind()
            .map(|outcome| match outcome {
                Ok(answered) => answered.map_err(ApiError::from),
                Err(_) => {
                    tracing::error!("answering panicked");
                    Err(ApiError::Internal)
                }
            });
        Self {
            asking: Some(Box::pin(asking)),
            received,
            outcome: None,
            first: None,
            session_id,
            keep_alive: keep_alive_timer(keep_alive),
            responding: false,
            ended: None,
            started: Instant::now(),
        }
    }

    async fn progress(&mut self) -> Progress {
        if let Some(asking) = self.asking.as_mut() {
            tokio::select! {
                biased;
                Some(event) = self.received.recv() => return Progress::Event(event),
                outcome = asking => {
                    self.asking = None;
                    self.outcome = Some(outcome);
                }
                _ = self.keep_alive.tick() => return Progress::Silent,
            }
        }
        // Asking has ended: what it reported goes before how it ended.
        match self.received.try_recv() {
            Ok(event) => Progress::Event(event),
            Err(_) => Progress::Finished(self.outcome.take().expect("asking has ended")),
        }
    }

    /// The next bytes of the body; `None` after `done` or `error`.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if self.ended.is_some() {
            return None;
        }
        let progress = match self.first.take() {
            Some(event) => Progress::Event(event),
            None => self.progress().await,
        };
        let frame = match progress {
            Progress::Silent => Bytes::from_static(b": keep-alive\n\n"),
            Progress::Event(AnswerEvent::Grounded {
                mode,
                sources,
                history_turns,
            }) => event(
                "meta",
                &json!({
                    "session_id": self.session_id.as_ref().map(|s| s.as_str()),
                    "history_turns": history_turns,
                    "mode": mode.as_str(),
                    "sources": sources_body(&sources),
                }),
            ),
            Progress::Event(AnswerEvent::Text(text)) => event("delta", &json!({ "text": text })),
            Progress::Finished(Ok(reply)) => {
                self.ended = Some("done");
                event("done", &reply_body(&reply))
            }
            Progress::Finished(Err(error)) => {
                self.ended = Some("error");
                event("error", &error.body())
            }
        };
        self.keep_alive.reset();
        Some(frame)
    }
}

/// One event: its name and its data, JSON on one line.
fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

impl Drop for AnswerStream {
    fn drop(&mut self) {
        if !self.responding {
            return;
        }
        tracing::info!(
            outcome = self.ended.unwrap_or("client went away (nothing stored)"),
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            "answer stream"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

    /// Reports part of an answer, then meets a bug.
    async fn answer_with_a_bug(events: UnboundedSender<AnswerEvent>) -> Result<Reply, AskError> {
        events.send(AnswerEvent::Text("Half an".into())).unwrap();
        panic!("a bug while answering")
    }

    #[tokio::test]
    async fn a_panic_while_answering_ends_the_stream_with_an_internal_error() {
        let (events, received) = unbounded_channel();
        let asking = answer_with_a_bug(events);
        let mut stream = AnswerStream::new(asking, received, None, Duration::from_secs(15));
        let mut frames = Vec::new();
        while let Some(frame) = stream.next_frame().await {
            frames.push(String::from_utf8(frame.to_vec()).unwrap());
        }
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert_eq!(frames[0], "event: delta\ndata: {\"text\":\"Half an\"}\n\n");
        let data = frames[1].strip_prefix("event: error\ndata: ").unwrap();
        let data: Value = serde_json::from_str(data.trim_end()).unwrap();
        assert_eq!(data["error"]["code"], "internal_error");
    }
}
