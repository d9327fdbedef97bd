//! Model-backed answers against local fakes of Azure OpenAI, an OpenAI-compatible
//! server and Azure AI Search: what is sent, how history and follow-ups shape
//! it, and how failures surface.

use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use session_rag::settings::Settings;

use crate::fake_upstream::{
    api_error, chat_completion, search_results, FakeServer, Recorded, Reply,
};
use crate::helpers::{spawn_app_with, TestApp};

/// How the fakes tell the rewrite of a follow-up from a request for an answer.
const REWRITE_INSTRUCTION_START: &str = "Rewrite the follow-up question";

pub type Setting<'a> = (&'a str, &'a str);

/// The app configured by groups of settings (names and values as users set
/// them), with retry back-off shortened so failure tests stay fast.
pub async fn spawn_app_configured(groups: &[&[Setting<'_>]]) -> TestApp {
    spawn_app_configured_with(groups, |_| {}).await
}

/// [`spawn_app_configured`], then `configure` changes what users cannot set.
pub async fn spawn_app_configured_with(
    groups: &[&[Setting<'_>]],
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let parsed = Settings::from_lookup(|name| {
        groups
            .iter()
            .flat_map(|group| group.iter())
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    })
    .expect("test settings are valid");
    spawn_app_with(move |s| {
        *s = Settings { port: 0, ..parsed };
        s.upstream.first_retry_delay = Duration::from_millis(10);
        configure(s);
    })
    .await
}

/// An OpenAI-compatible server at `url` with no key.
pub fn openai_at(url: &str) -> [Setting<'_>; 2] {
    [("OPENAI_BASE_URL", url), ("OPENAI_MODEL", "m")]
}

/// Azure OpenAI at `url`, deployment `gpt-4o`, with `key`.
pub fn azure_openai_at<'a>(url: &'a str, key: &'a str) -> [Setting<'a>; 3] {
    [
        ("AZURE_OPENAI_ENDPOINT", url),
        ("AZURE_OPENAI_DEPLOYMENT", "gpt-4o"),
        ("AZURE_OPENAI_API_KEY", key),
    ]
}

/// Azure AI Search at `url`, index `code`, with `key`.
fn azure_search_at<'a>(url: &'a str, key: &'a str) -> [Setting<'a>; 3] {
    [
        ("AZURE_SEARCH_ENDPOINT", url),
        ("AZURE_SEARCH_INDEX", "code"),
        ("AZURE_SEARCH_API_KEY", key),
    ]
}

fn is_rewrite(request: &Recorded) -> bool {
    request.body["messages"][0]["content"]
        .as_str()
        .is_some_and(|c| c.starts_with(REWRITE_INSTRUCTION_START))
}

/// A model that rewrites every follow-up as `rewritten` and answers "answer N".
fn scripted_model(rewritten: &'static str) -> impl Fn(usize, &Recorded) -> Reply {
    move |n, request| {
        if is_rewrite(request) {
            Reply::ok(chat_completion(rewritten))
        } else {
            Reply::ok(chat_completion(&format!("answer {n}")))
        }
    }
}

fn answer_requests(server: &FakeServer) -> Vec<Recorded> {
    server
        .requests()
        .into_iter()
        .filter(|r| !is_rewrite(r))
        .collect()
}

fn roles(request: &Recorded) -> Vec<String> {
    request
        .messages()
        .into_iter()
        .map(|(role, _)| role)
        .collect()
}

#[tokio::test]
async fn azure_openai_gets_the_deployment_url_api_version_key_and_grounded_messages() {
    let model = FakeServer::start(|_, _| {
        Reply::ok(chat_completion(
            "LONPF2 posts loan payments [programs/LONPF2.cbl].",
        ))
    })
    .await;
    let endpoint = format!("{}/", model.url);
    let app = spawn_app_configured(&[&azure_openai_at(&endpoint, "azure-key-123")]).await;

    let body = app.ask(json!({"question": "What does LONPF2 do?"})).await;
    assert_eq!(body["mode"], "azure-openai");
    assert_eq!(
        body["answer"],
        "LONPF2 posts loan payments [programs/LONPF2.cbl]."
    );
    assert_eq!(body["sources"][0]["id"], "programs/LONPF2.cbl");

    let requests = model.requests();
    assert_eq!(requests.len(), 1, "a first question needs no rewrite");
    let request = &requests[0];
    assert_eq!(request.path, "/openai/deployments/gpt-4o/chat/completions");
    assert_eq!(request.query.len(), 1);
    assert_eq!(request.query["api-version"], "2024-10-21");
    assert_eq!(request.header("api-key"), Some("azure-key-123"));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(
        request.body.get("model").is_none(),
        "Azure names the deployment in the URL"
    );
    let messages = request.messages();
    assert_eq!(roles(request), ["system", "user"]);
    assert!(messages[0].1.contains("[programs/LONPF2.cbl] LONPF2\n"));
    assert_eq!(messages[1].1, "What does LONPF2 do?");
}

#[tokio::test]
async fn an_openai_compatible_server_gets_the_model_and_a_bearer_key_only_when_one_is_set() {
    let server = FakeServer::start(|_, _| Reply::ok(chat_completion("It posts payments."))).await;
    let base_url = format!("{}/v1", server.url);
    for key in [Some("sk-local-456"), None] {
        let mut settings = vec![
            ("OPENAI_BASE_URL", base_url.as_str()),
            ("OPENAI_MODEL", "llama3.1:8b"),
        ];
        settings.extend(key.map(|k| ("OPENAI_API_KEY", k)));
        let app = spawn_app_configured(&[&settings]).await;
        let body = app.ask(json!({"question": "What does LONPF2 do?"})).await;
        assert_eq!(body["mode"], "openai");
        assert_eq!(body["answer"], "It posts payments.");

        let request = server.requests().pop().unwrap();
        assert_eq!(request.path, "/v1/chat/completions");
        assert!(request.query.is_empty());
        assert_eq!(request.body["model"], "llama3.1:8b");
        assert_eq!(roles(&request), ["system", "user"]);
        assert_eq!(
            request.header("authorization"),
            key.map(|k| format!("Bearer {k}")).as_deref()
        );
        assert_eq!(request.header("api-key"), None);
    }
}

#[tokio::test]
async fn azure_search_gets_the_index_url_key_and_query_and_its_documents_ground_the_answer() {
    let search = FakeServer::start(|_, _| {
        Reply::ok(search_results(vec![
            json!({"@search.score": 7.25, "chunk_id": "src/LONPF2.cbl#3", "file_name": "LONPF2.cbl",
                   "chunk": "       PROCEDURE DIVISION.\n           PERFORM POST-PAYMENT."}),
            json!({"@search.score": 3.5, "chunk_id": "src/LNMASTR.cpy#1", "file_name": null,
                   "chunk": "       01  LN-MASTER-REC."}),
        ]))
    })
    .await;
    let model =
        FakeServer::start(|_, _| Reply::ok(chat_completion("See [src/LONPF2.cbl#3]."))).await;
    let app = spawn_app_configured(&[&[
        ("OPENAI_BASE_URL", &model.url),
        ("OPENAI_MODEL", "gpt-4o-mini"),
        ("AZURE_SEARCH_ENDPOINT", &search.url),
        ("AZURE_SEARCH_INDEX", "cobol-code"),
        ("AZURE_SEARCH_API_KEY", "search-key-789"),
        ("AZURE_SEARCH_CONTENT_FIELD", "chunk"),
        ("AZURE_SEARCH_TITLE_FIELD", "file_name"),
        ("AZURE_SEARCH_ID_FIELD", "chunk_id"),
    ]])
    .await;

    let body = app.ask(json!({"question": "What does LONPF2 do?"})).await;
    assert_eq!(
        body["sources"],
        json!([
            {"id": "src/LONPF2.cbl#3", "title": "LONPF2.cbl",
             "snippet": "PROCEDURE DIVISION. PERFORM POST-PAYMENT.", "score": 7.25},
            {"id": "src/LNMASTR.cpy#1", "title": "src/LNMASTR.cpy#1",
             "snippet": "01 LN-MASTER-REC.", "score": 3.5},
        ])
    );

    let requests = search.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/indexes/cobol-code/docs/search");
    assert_eq!(request.query.len(), 1);
    assert_eq!(request.query["api-version"], "2025-09-01");
    assert_eq!(request.header("api-key"), Some("search-key-789"));
    assert_eq!(request.header("authorization"), None);
    assert_eq!(
        request.body,
        json!({"search": "What does LONPF2 do?", "top": 5, "select": "chunk_id,file_name,chunk"})
    );
    let grounding = &model.requests()[0].messages()[0].1;
    assert!(grounding.contains(
        "[src/LONPF2.cbl#3] LONPF2.cbl\n       PROCEDURE DIVISION.\n           PERFORM POST-PAYMENT."
    ));
    assert!(grounding.contains("[src/LNMASTR.cpy#1]"));
}

#[tokio::test]
async fn history_goes_in_order_and_follow_ups_are_searched_by_their_rewrite() {
    let model = FakeServer::start(scripted_model("copybooks used by LONPF2")).await;
    let search = FakeServer::start(|_, _| Reply::ok(search_results(vec![]))).await;
    let app =
        spawn_app_configured(&[&openai_at(&model.url), &azure_search_at(&search.url, "k")]).await;
    let questions = [
        "What does LONPF2 do?",
        "What copybooks does it use?",
        "And which job runs it?",
    ];
    let mut answers = Vec::new();
    for (turn, question) in questions.iter().enumerate() {
        let body = app
            .ask(json!({"question": question, "session_id": "model-history"}))
            .await;
        assert_eq!(body["turn"], turn);
        assert_eq!(body["history_turns"], turn);
        answers.push(body["answer"].as_str().unwrap().to_owned());
    }

    let searched: Vec<Value> = search
        .requests()
        .iter()
        .map(|r| r.body["search"].clone())
        .collect();
    assert_eq!(
        searched,
        json!([
            questions[0],
            "copybooks used by LONPF2",
            "copybooks used by LONPF2"
        ])
        .as_array()
        .unwrap()
        .clone()
    );

    let rewrites: Vec<Recorded> = model.requests().into_iter().filter(is_rewrite).collect();
    assert_eq!(rewrites.len(), 2, "one rewrite per follow-up");
    let transcript = &rewrites[1].messages()[1].1;
    assert!(transcript.contains(&format!(
        "User: {}\nAssistant: {}",
        questions[0], answers[0]
    )));
    assert!(transcript.contains(&format!(
        "User: {}\nAssistant: {}",
        questions[1], answers[1]
    )));
    assert!(transcript.ends_with(&format!("Follow-up question: {}", questions[2])));

    let last = answer_requests(&model).pop().unwrap();
    let expected: Vec<(String, String)> = [
        ("user", questions[0]),
        ("assistant", &answers[0]),
        ("user", questions[1]),
        ("assistant", &answers[1]),
        ("user", questions[2]),
    ]
    .iter()
    .map(|(role, text)| (role.to_string(), text.to_string()))
    .collect();
    assert_eq!(last.messages()[1..], expected);
}

/// The prompt's estimated size, the way the service estimates it.
fn estimated_tokens(request: &Recorded) -> usize {
    request
        .messages()
        .iter()
        .map(|(_, text)| text.chars().count().div_ceil(4) + 4)
        .sum()
}

#[tokio::test]
async fn a_long_conversation_is_trimmed_oldest_turn_first_under_the_budget() {
    let long_answer = "The program reads the payment file. ".repeat(60);
    let model = FakeServer::start(move |_, request| {
        if is_rewrite(request) {
            Reply::ok(chat_completion("LONPF2 payments"))
        } else {
            Reply::ok(chat_completion(&long_answer))
        }
    })
    .await;
    let budget = [("MODEL_CONTEXT_TOKENS", "2500")];
    let app = spawn_app_configured(&[&openai_at(&model.url), &budget]).await;
    for n in 0..8 {
        let question = format!("Question {n} about LONPF2?");
        app.ask(json!({"question": question, "session_id": "model-long"}))
            .await;
    }

    for request in model.requests() {
        assert!(
            estimated_tokens(&request) <= 2500,
            "{}",
            estimated_tokens(&request)
        );
    }
    let last = answer_requests(&model).pop().unwrap();
    let messages = last.messages();
    let kept_turns = (messages.len() - 2) / 2;
    assert!((1..7).contains(&kept_turns), "{kept_turns} of 7 turns kept");
    let users: Vec<&str> = messages[1..]
        .iter()
        .filter(|(role, _)| role == "user")
        .map(|(_, text)| text.as_str())
        .collect();
    let latest: Vec<String> = (7 - kept_turns..8)
        .map(|n| format!("Question {n} about LONPF2?"))
        .collect();
    assert_eq!(
        users, latest,
        "the latest turns, in order, then the question"
    );
    let mut alternating = ["user", "assistant"].repeat(kept_turns);
    alternating.push("user");
    assert_eq!(roles(&last)[1..], alternating);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let model = FakeServer::start(|n, _| match n {
        0 => Reply::status(
            429,
            api_error("429", "Rate limit is exceeded. Try again in 1 seconds."),
        )
        .header("retry-after", "1"),
        _ => Reply::ok(chat_completion("fine now")),
    })
    .await;
    let app = spawn_app_configured(&[&azure_openai_at(&model.url, "k")]).await;
    let started = Instant::now();
    let body = app.ask(json!({"question": "What does LONPF2 do?"})).await;
    assert_eq!(body["answer"], "fine now");
    assert_eq!(model.requests().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
}

/// One good turn on `session`, then a question whose model calls `fail`, then
/// one that succeeds: the failed turn must have left no trace.
async fn assert_failed_turn_is_not_kept(app: &TestApp, status: u16, code: &str, session: &str) {
    let first = app
        .ask(json!({"question": "What does LONPF2 do?", "session_id": session}))
        .await;
    assert_eq!(first["turn"], 0);
    let failed = app
        .query(json!({"question": "What copybooks does it use?", "session_id": session}))
        .await;
    failed.assert_error(status, code);
    assert!(failed.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("openai"));
    let next = app
        .ask(json!({"question": "Which job runs it?", "session_id": session}))
        .await;
    assert_eq!(next["turn"], 1, "the failed turn took no number");
    assert_eq!(next["history_turns"], 1);
}

#[tokio::test]
async fn a_model_timeout_is_504_and_the_turn_is_not_kept() {
    // Request 1 is the failing turn's rewrite; it answers long after the deadline.
    let model = FakeServer::start(|n, request| {
        let reply = scripted_model("LONPF2")(n, request);
        if n == 1 {
            reply.after(Duration::from_secs(2))
        } else {
            reply
        }
    })
    .await;
    let timeout = [("MODEL_TIMEOUT_SECONDS", "0.3")];
    let app = spawn_app_configured(&[&openai_at(&model.url), &timeout]).await;
    assert_failed_turn_is_not_kept(&app, 504, "upstream_timeout", "model-timeout").await;
}

#[tokio::test]
async fn a_model_server_error_is_502_after_bounded_retries_and_the_turn_is_not_kept() {
    // Requests 1-4 are the failing turn's rewrite: the first try and three retries.
    let model = FakeServer::start(|n, request| match n {
        1..=4 => Reply::status(500, api_error("server_error", "The server had an error")),
        _ => scripted_model("LONPF2")(n, request),
    })
    .await;
    let app = spawn_app_configured(&[&openai_at(&model.url)]).await;
    assert_failed_turn_is_not_kept(&app, 502, "upstream_error", "model-5xx").await;
    assert_eq!(model.requests().len(), 1 + 4 + 2);
}

/// Everything logged while it is alive, at every level.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Captures this thread's logs (a `#[tokio::test]` runs the app on its one thread).
    fn start(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn keys_never_reach_logs_or_error_bodies() {
    let logs = CapturedLogs::default();
    let _capture = logs.start();

    // A refused key: OpenAI's 401 quotes part of it, which must go no further.
    let refusing = FakeServer::start(|_, request| {
        let key = request
            .header("authorization")
            .unwrap_or_default()
            .to_owned();
        Reply::status(
            401,
            api_error(
                "invalid_api_key",
                &format!("Incorrect API key provided: {key}"),
            ),
        )
    })
    .await;
    let key = [("OPENAI_API_KEY", "sk-SECRET-openai")];
    let app = spawn_app_configured(&[&openai_at(&refusing.url), &key]).await;
    let response = app.query(json!({"question": "What does LONPF2 do?"})).await;
    response.assert_error(502, "upstream_error");
    let message = response.body["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "openai failed: answered HTTP 401 (invalid_api_key)"
    );

    // Keys that work, for Azure OpenAI and Azure AI Search, then a search failure.
    let model = FakeServer::start(|_, _| Reply::ok(chat_completion("ok"))).await;
    let search = FakeServer::start(|n, _| match n {
        0 => Reply::ok(search_results(vec![])),
        _ => Reply::status(403, json!({"error": {"code": "", "message": "Forbidden"}})),
    })
    .await;
    let app = spawn_app_configured(&[
        &azure_openai_at(&model.url, "SECRET-azure-openai"),
        &azure_search_at(&search.url, "SECRET-azure-search"),
    ])
    .await;
    app.ask(json!({"question": "What does LONPF2 do?"})).await;
    let response = app.query(json!({"question": "What does LONES1 do?"})).await;
    response.assert_error(502, "upstream_error");
    assert_eq!(
        response.body["error"]["message"],
        "azure-search failed: answered HTTP 403"
    );

    let logged = logs.text();
    assert!(logged.contains("upstream call failed"), "{logged}");
    assert!(logged.contains("chat completion"), "{logged}");
    assert!(!logged.contains("SECRET"), "{logged}");
}

#[test]
fn start_up_fails_naming_both_when_azure_openai_and_openai_are_set() {
    let cwd = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_handler"))
        .current_dir(cwd.path())
        .env_clear()
        .env("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com")
        .env("AZURE_OPENAI_DEPLOYMENT", "gpt-4o")
        .env("OPENAI_MODEL", "gpt-4o-mini")
        .env("RUST_LOG", "off")
        .output()
        .expect("handler runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("AZURE_OPENAI_ENDPOINT"), "{stderr}");
    assert!(lines[0].contains("OPENAI_MODEL"), "{stderr}");
}
