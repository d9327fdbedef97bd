//! Local stand-ins for the cloud services behind model answers: Azure OpenAI, an
//! OpenAI-compatible server and Azure AI Search. Each records every request and
//! answers what its test scripts, in the shapes the real APIs use. A chat request
//! with `"stream": true` gets its completion as Server-Sent Events of completion
//! chunks ended by `data: [DONE]`, as the real services send them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply as _};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    /// The JSON body (`null` when the body was not JSON).
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The chat messages of a chat-completions request, as (role, content).
    pub fn messages(&self) -> Vec<(String, String)> {
        self.body["messages"]
            .as_array()
            .expect("a chat request has messages")
            .iter()
            .map(|m| {
                let text = |key: &str| m[key].as_str().unwrap().to_owned();
                (text("role"), text("content"))
            })
            .collect()
    }
}

/// What the fake answers to one request.
pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
    delay: Duration,
    /// A reply of Server-Sent Events, sent part by part (instead of `body`).
    events: Option<Vec<Part>>,
}

/// A part of a streamed reply.
#[derive(Debug, Clone)]
pub enum Part {
    /// One event: `data: <JSON>` and its blank line.
    Data(Value),
    /// Bytes exactly as given.
    Raw(String),
    /// A pause before the next part.
    Wait(Duration),
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self::status(200, body)
    }

    pub fn status(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
            events: None,
        }
    }

    /// A 200 of Server-Sent Events: `parts`, as they are (add [`done`] to end it
    /// properly).
    pub fn events(parts: Vec<Part>) -> Self {
        Self {
            events: Some(parts),
            ..Self::ok(Value::Null)
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Answers only after `delay` (a slow or hung service).
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A chat completion, as Azure OpenAI and OpenAI send it.
pub fn chat_completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_732_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {"prompt_tokens": 321, "completion_tokens": 45, "total_tokens": 366},
        "system_fingerprint": "fp_test"
    })
}

/// A streamed completion chunk of an OpenAI-compatible server carrying `delta`.
pub fn chunk(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_732_000_000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]
    })
}

/// Azure OpenAI's first chunk: no choices, only the prompt's content-filter results.
pub fn azure_prompt_filter_chunk() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [{
            "prompt_index": 0,
            "content_filter_results": {
                "hate": safe, "self_harm": safe, "sexual": safe, "violence": safe,
                "jailbreak": {"filtered": false, "detected": false}
            }
        }]
    })
}

/// The end of a chat completion stream.
pub fn done() -> Part {
    Part::Raw("data: [DONE]\n\n".into())
}

/// `pieces` of an answer as a chat completion stream sends them: the role, each
/// piece `gap` after the one before, the finish reason, `[DONE]`.
pub fn streamed(pieces: &[&str], gap: Duration) -> Vec<Part> {
    let mut parts = vec![Part::Data(chunk(
        json!({"role": "assistant", "content": ""}),
        None,
    ))];
    for (n, piece) in pieces.iter().enumerate() {
        if n > 0 {
            parts.push(Part::Wait(gap));
        }
        parts.push(Part::Data(chunk(json!({ "content": piece }), None)));
    }
    parts.push(Part::Data(chunk(json!({}), Some("stop"))));
    parts.push(done());
    parts
}

/// An error body, as OpenAI and Azure OpenAI send it.
pub fn api_error(code: &str, message: &str) -> Value {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}})
}

/// Search results, as Azure AI Search sends them: the selected fields of each
/// document with its `@search.score`.
pub fn search_results(documents: Vec<Value>) -> Value {
    json!({
        "@odata.context": "https://search.example/indexes('test')/$metadata#docs(*)",
        "value": documents
    })
}

type Responder = dyn Fn(usize, &Recorded) -> Reply + Send + Sync;

/// What became of each streamed reply.
#[derive(Debug, Default)]
struct Streams {
    /// Replies whose client hung up before the last part was sent.
    dropped: AtomicUsize,
    /// When the last part of the latest complete reply was sent.
    finished_at: Mutex<Option<Instant>>,
}

pub struct FakeServer {
    /// `http://127.0.0.1:{port}`, no trailing slash.
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    streams: Arc<Streams>,
}

impl FakeServer {
    /// Serves on a free port; `respond` gets each request's number (from 0) and the request.
    pub async fn start(
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let streams: Arc<Streams> = Arc::default();
        let respond: Arc<Responder> = Arc::new(respond);
        let (seen, streamed) = (requests.clone(), streams.clone());
        let route = warp::any()
            .and(warp::path::full())
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |path: warp::path::FullPath, query, headers, body: bytes::Bytes| {
                    let recorded = Recorded {
                        path: path.as_str().to_owned(),
                        query,
                        headers,
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    };
                    let mut reply = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(recorded.clone());
                        respond(seen.len() - 1, &recorded)
                    };
                    if recorded.body["stream"] == true && reply.status == 200 {
                        reply.events = reply.events.or_else(|| as_chunks(&reply.body));
                    }
                    let streamed = streamed.clone();
                    async move {
                        tokio::time::sleep(reply.delay).await;
                        let (mut response, content_type) = match reply.events {
                            Some(parts) => (
                                warp::reply::stream(event_stream(parts, streamed)).into_response(),
                                "text/event-stream",
                            ),
                            None => (
                                Response::new(reply.body.to_string().into()),
                                "application/json",
                            ),
                        };
                        *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
                        let headers = response.headers_mut();
                        headers.insert("content-type", HeaderValue::from_static(content_type));
                        for (name, value) in reply.headers {
                            headers.insert(name, HeaderValue::from_str(&value).unwrap());
                        }
                        response
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self {
            url,
            requests,
            streams,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// How many streamed replies lost their client before they were complete.
    pub fn dropped_streams(&self) -> usize {
        self.streams.dropped.load(Ordering::SeqCst)
    }

    /// When the latest complete streamed reply sent its last part.
    pub fn finished_at(&self) -> Option<Instant> {
        *self.streams.finished_at.lock().unwrap()
    }
}

/// A chat completion (as [`chat_completion`] makes them) as the stream of chunks
/// the service sends instead when asked to stream: its content word by word.
fn as_chunks(completion: &Value) -> Option<Vec<Part>> {
    let content = completion["choices"][0]["message"]["content"].as_str()?;
    let words: Vec<&str> = content.split_inclusive(' ').collect();
    Some(streamed(&words, Duration::ZERO))
}

/// The body of a streamed reply. Dropped before its last part (the client hung
/// up), it counts itself in `streams.dropped`.
fn event_stream(
    parts: Vec<Part>,
    streams: Arc<Streams>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, Infallible>> + Send + Sync {
    struct Sending {
        parts: std::vec::IntoIter<Part>,
        streams: Arc<Streams>,
        complete: bool,
    }
    impl Drop for Sending {
        fn drop(&mut self) {
            if !self.complete {
                self.streams.dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let sending = Sending {
        parts: parts.into_iter(),
        streams,
        complete: false,
    };
    let body = futures::stream::unfold(sending, |mut sending| async move {
        loop {
            let bytes = match sending.parts.next() {
                None => {
                    sending.complete = true;
                    *sending.streams.finished_at.lock().unwrap() = Some(Instant::now());
                    return None;
                }
                Some(Part::Wait(pause)) => {
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Some(Part::Data(data)) => format!("data: {data}\n\n"),
                Some(Part::Raw(raw)) => raw,
            };
            return Some((Ok::<_, Infallible>(bytes::Bytes::from(bytes)), sending));
        }
    });
    sync_wrapper::SyncStream::new(body)
}
