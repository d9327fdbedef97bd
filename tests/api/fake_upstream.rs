//! Local stand-ins for the cloud services behind model answers: Azure OpenAI, an
//! OpenAI-compatible server and Azure AI Search. Each records every request and
//! answers what its test scripts, in the shapes the real APIs use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use warp::http::{HeaderMap, Response, StatusCode};
use warp::Filter;

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

pub struct FakeServer {
    /// `http://127.0.0.1:{port}`, no trailing slash.
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeServer {
    /// Serves on a free port; `respond` gets each request's number (from 0) and the request.
    pub async fn start(
        respond: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let respond: Arc<Responder> = Arc::new(respond);
        let seen = requests.clone();
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
                    let reply = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(recorded.clone());
                        respond(seen.len() - 1, &recorded)
                    };
                    async move {
                        tokio::time::sleep(reply.delay).await;
                        let mut response = Response::builder()
                            .status(StatusCode::from_u16(reply.status).unwrap())
                            .header("content-type", "application/json");
                        for (name, value) in reply.headers {
                            response = response.header(name, value);
                        }
                        response.body(reply.body.to_string()).unwrap()
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self { url, requests }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}
