//! Streamed answers (PRODUCT.md, "Streaming"): Server-Sent Events from
//! `POST /api/query`, against the real handler, Azurite, and fake models that
//! stream the way Azure OpenAI and OpenAI-compatible servers do.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::azurite::{connection_string, shared_table_endpoint, unique_table_name};
use crate::fake_upstream::{
    azure_prompt_filter_chunk, chunk, done, streamed, FakeServer, Part, Reply,
};
use crate::helpers::{
    raw_table_client, spawn_app, spawn_app_with_storage, stored_rows, Event, EventReader, TestApp,
};
use crate::model::{azure_openai_at, openai_at, spawn_app_configured_with, Setting};

const QUESTION: &str = "What does LONPF2 do?";

/// Asks with `body` and, when the answer streams, reads it event by event.
async fn post(app: &TestApp, body: &Value, accept: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/api/query", app.address))
        .header("accept-encoding", "gzip, br");
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.json(body).send().await.unwrap()
}

/// A streamed answer: checks the response head, returns the reader.
fn stream_of(response: reqwest::Response) -> EventReader {
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(!headers.contains_key("content-length"), "{headers:?}");
    assert!(!headers.contains_key("content-encoding"), "{headers:?}");
    EventReader::new(response)
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

/// The `text` of every delta, joined.
fn joined(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.name == "delta")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect()
}

/// Checks the contract's order (`meta`, at least one `delta`, then `done`) and
/// shape, and returns `done`'s data.
fn assert_answered(events: &[Event]) -> Value {
    let (first, last) = (&events[0], events.last().unwrap());
    assert_eq!(first.name, "meta", "{:?}", names(events));
    assert_eq!(last.name, "done", "{:?}", names(events));
    let middle = &events[1..events.len() - 1];
    assert!(!middle.is_empty() && middle.iter().all(|e| e.name == "delta"));
    let done = last.data.clone();
    assert_eq!(
        first.data,
        json!({
            "session_id": done["session_id"],
            "history_turns": done["history_turns"],
            "mode": done["mode"],
            "sources": done["sources"],
        })
    );
    assert_eq!(joined(events), done["answer"]);
    done
}

/// A model app with durable storage in a table of its own; its name and the app.
async fn model_app_with_storage(
    model: &[Setting<'_>],
    keep_alive: Duration,
    more: &[Setting<'_>],
) -> (String, TestApp) {
    let table = unique_table_name("stream");
    let connection = connection_string(&shared_table_endpoint());
    let storage = [
        ("AZURE_STORAGE_CONNECTION_STRING", connection.as_str()),
        ("CHAT_HISTORY_TABLE", table.as_str()),
    ];
    let app = spawn_app_configured_with(&[model, &storage, more], |s| {
        s.stream_keep_alive = keep_alive;
    })
    .await;
    (table, app)
}

/// The turns stored for `session` in `table`.
async fn rows(table: &str, session: &str) -> Vec<serde_json::Map<String, Value>> {
    stored_rows(&raw_table_client(&shared_table_endpoint(), table), session).await
}

fn persistent(session: &str) -> Value {
    json!({"question": QUESTION, "session_id": session, "enable_persistence": true, "stream": true})
}

#[tokio::test]
async fn asked_either_way_an_offline_answer_streams_meta_deltas_and_done() {
    let app = spawn_app().await;
    let plain = app
        .ask(json!({"question": QUESTION, "session_id": "plain"}))
        .await;

    let by_body = json!({"question": QUESTION, "session_id": "s", "stream": true});
    let events = stream_of(post(&app, &by_body, None).await).rest().await;
    let done = assert_answered(&events);
    assert!(events.len() > 3, "each passage comes as a delta of its own");
    // `done` is the usual response.
    let mut expected = plain;
    expected["session_id"] = json!("s");
    assert_eq!(done, expected);

    let follow_up = json!({"question": "What copybooks does it use?", "session_id": "s"});
    let accept = Some("application/json;q=0.9, text/event-stream");
    let events = stream_of(post(&app, &follow_up, accept).await).rest().await;
    let done = assert_answered(&events);
    assert_eq!(
        (done["turn"].clone(), done["history_turns"].clone()),
        (json!(1), json!(1))
    );
    assert!(joined(&events).contains("following up on LONPF2"));

    // Not asked: the usual JSON.
    for (body, accept) in [
        (json!({"question": QUESTION, "stream": false}), None),
        (json!({"question": QUESTION}), Some("application/json")),
        (json!({"question": QUESTION, "stream": null}), Some("*/*")),
    ] {
        let response = post(&app, &body, accept).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let reply: Value = response.json().await.unwrap();
        assert_eq!(reply["answer"], expected["answer"]);
    }
}

#[tokio::test]
async fn what_fails_before_the_answer_starts_is_a_json_error() {
    let app = spawn_app().await;
    let stream = Some("text/event-stream");
    let owned = json!({"question": QUESTION, "session_id": "owned", "customer_id": "alice"});
    app.ask(owned).await;

    let too_large = json!({"question": "q", "metadata": {"filler": "x".repeat(1024 * 1024)}});
    let cases = [
        (
            json!({"question": " ", "stream": true}),
            None,
            400,
            "invalid_question",
        ),
        (
            json!({"question": "q", "stream": "yes"}),
            stream,
            400,
            "invalid_request",
        ),
        (
            json!({"question": "q", "session_id": "a/b"}),
            stream,
            400,
            "invalid_session_id",
        ),
        (
            json!({"question": "q", "session_id": "owned", "customer_id": "mallory", "stream": true}),
            None,
            404,
            "not_found",
        ),
        (
            json!({"question": "q", "session_id": "owned"}),
            stream,
            404,
            "not_found",
        ),
        (too_large, stream, 413, "payload_too_large"),
    ];
    for (body, accept, status, code) in cases {
        let response = post(&app, &body, accept).await;
        assert_eq!(response.status(), status, "{code}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{error}");
    }
}

#[tokio::test]
async fn done_is_sent_after_the_turn_is_stored() {
    let table = unique_table_name("streamdone");
    let app = spawn_app_with_storage(&table).await;
    let mut reader = stream_of(post(&app, &persistent("durable"), None).await);
    let mut events = Vec::new();
    while let Some(event) = reader.next().await {
        if event.name == "done" {
            // Read back at once, before anything else happens.
            let stored = rows(&table, "durable").await;
            assert_eq!(stored.len(), 1, "the turn is stored when done arrives");
            assert_eq!(stored[0]["assistant"], event.data["answer"]);
        }
        events.push(event);
    }
    let done = assert_answered(&events);
    assert_eq!(
        (done["persisted"].clone(), done["turn"].clone()),
        (json!(true), json!(0))
    );
}

#[tokio::test]
async fn a_model_answer_reaches_the_client_while_the_model_is_still_writing() {
    let pieces = [
        "LONPF2 ",
        "posts loan ",
        "payments ",
        "[programs/LONPF2.cbl].",
    ];
    let gap = Duration::from_millis(600);
    let model = FakeServer::start(move |_, _| Reply::events(streamed(&pieces, gap))).await;
    let (table, app) =
        model_app_with_storage(&openai_at(&model.url), Duration::from_secs(15), &[]).await;
    let mut reader = stream_of(post(&app, &persistent("slow"), None).await);
    let meta = reader.next().await.unwrap();
    assert_eq!(meta.name, "meta");
    assert_eq!(meta.data["sources"][0]["id"], "programs/LONPF2.cbl");
    let first = reader.next().await.unwrap();
    let first_arrived = Instant::now();
    assert_eq!(
        first.data,
        json!({"text": "LONPF2"}),
        "whitespace around the answer is dropped"
    );
    let mut events = vec![meta, first];
    events.extend(reader.rest().await);
    let finished = model.finished_at().expect("the model finished its reply");
    assert!(
        first_arrived + 3 * gap / 2 < finished,
        "the first delta came {:?} before the model finished",
        finished - first_arrived
    );
    let done = assert_answered(&events);
    assert_eq!(
        done["answer"],
        "LONPF2 posts loan payments [programs/LONPF2.cbl]."
    );
    assert_eq!(done["mode"], "openai");
    assert_eq!(rows(&table, "slow").await.len(), 1);
    assert_eq!(model.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn a_model_that_breaks_off_gives_an_error_event_and_nothing_is_stored() {
    let begun = || {
        vec![
            Part::Data(chunk(json!({"role": "assistant", "content": ""}), None)),
            Part::Data(chunk(json!({"content": "LONPF2 posts"}), None)),
        ]
    };
    let broken: [(Part, &str); 2] = [
        // The connection ends without `[DONE]`.
        (Part::Raw(String::new()), "upstream_error"),
        // OpenAI reports a failure after the reply has begun as an event.
        (
            Part::Data(
                json!({"error": {"message": "The server had an error", "type": "server_error", "code": "server_error"}}),
            ),
            "upstream_error",
        ),
    ];
    for (n, (ending, code)) in broken.into_iter().enumerate() {
        let model = FakeServer::start(move |_, _| {
            let mut parts = begun();
            parts.push(ending.clone());
            Reply::events(parts)
        })
        .await;
        let (table, app) =
            model_app_with_storage(&openai_at(&model.url), Duration::from_secs(15), &[]).await;
        let session = format!("broken-{n}");
        let events = stream_of(post(&app, &persistent(&session), None).await)
            .rest()
            .await;
        assert_eq!(names(&events), ["meta", "delta", "error"]);
        assert_eq!(events[1].data["text"], "LONPF2 posts");
        assert_eq!(events[2].data["error"]["code"], code, "{}", events[2].data);
        assert!(events[2].data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("openai"));
        assert_eq!(
            model.requests().len(),
            1,
            "a reply that has begun is not retried"
        );
        assert!(rows(&table, &session).await.is_empty(), "nothing is stored");

        // Asked without streaming, the same model is the usual 502.
        let mut body = persistent(&session);
        body["stream"] = json!(false);
        let response = app.query(body).await;
        response.assert_error(502, code);
        assert!(rows(&table, &session).await.is_empty());
    }
}

#[tokio::test]
async fn a_model_silent_past_its_timeout_mid_reply_gives_upstream_timeout() {
    let model = FakeServer::start(|_, _| {
        let mut parts = streamed(&["LONPF2 ", "posts payments."], Duration::from_secs(4));
        parts.truncate(3);
        parts.push(Part::Wait(Duration::from_secs(4)));
        Reply::events(parts)
    })
    .await;
    let timeout = [("MODEL_TIMEOUT_SECONDS", "1")];
    let (table, app) =
        model_app_with_storage(&openai_at(&model.url), Duration::from_secs(15), &timeout).await;
    let events = stream_of(post(&app, &persistent("silent"), None).await)
        .rest()
        .await;
    assert_eq!(names(&events), ["meta", "delta", "error"]);
    assert_eq!(events[2].data["error"]["code"], "upstream_timeout");
    assert!(rows(&table, "silent").await.is_empty());
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_model_call_and_nothing_is_stored() {
    let pieces = ["word "; 20];
    let gap = Duration::from_millis(100);
    let model = FakeServer::start(move |_, _| Reply::events(streamed(&pieces, gap))).await;
    let (table, app) =
        model_app_with_storage(&openai_at(&model.url), Duration::from_secs(15), &[]).await;
    let mut reader = stream_of(post(&app, &persistent("gone"), None).await);
    assert_eq!(reader.next().await.unwrap().name, "meta");
    assert_eq!(reader.next().await.unwrap().name, "delta");
    let left = Instant::now();
    drop(reader);

    while model.dropped_streams() == 0 {
        assert!(
            left.elapsed() < Duration::from_secs(5),
            "the model's connection was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        model.finished_at(),
        None,
        "the model never finished its reply"
    );
    // Past the time the model would have finished, nothing has been stored.
    tokio::time::sleep(gap * 20 + Duration::from_millis(500)).await;
    assert!(rows(&table, "gone").await.is_empty());
    assert_eq!(model.requests().len(), 1);
}

#[tokio::test]
async fn azure_openais_first_chunk_without_choices_is_passed_over() {
    // Azure's chunks carry content-filter results beside each delta.
    let azure_chunk = |delta: Value, finish: Option<&str>| {
        let mut chunk = chunk(delta, finish);
        chunk["choices"][0]["content_filter_results"] = json!({});
        Part::Data(chunk)
    };
    let model = FakeServer::start(move |_, _| {
        Reply::events(vec![
            Part::Data(azure_prompt_filter_chunk()),
            azure_chunk(
                json!({"content": "", "refusal": null, "role": "assistant"}),
                None,
            ),
            azure_chunk(json!({"content": "It posts"}), None),
            azure_chunk(json!({"content": " payments."}), None),
            azure_chunk(json!({}), Some("stop")),
            done(),
        ])
    })
    .await;
    let (table, app) = model_app_with_storage(
        &azure_openai_at(&model.url, "k"),
        Duration::from_secs(15),
        &[],
    )
    .await;
    let events = stream_of(post(&app, &persistent("azure"), None).await)
        .rest()
        .await;
    let done = assert_answered(&events);
    assert_eq!(names(&events), ["meta", "delta", "delta", "done"]);
    assert_eq!(done["answer"], "It posts payments.");
    assert_eq!(done["mode"], "azure-openai");
    assert_eq!(rows(&table, "azure").await.len(), 1);
}

#[tokio::test]
async fn keep_alive_comments_fill_a_silence_longer_than_their_interval() {
    let model = FakeServer::start(|_, _| {
        let mut parts = streamed(&["It posts payments."], Duration::ZERO);
        parts.insert(1, Part::Wait(Duration::from_millis(1500)));
        Reply::events(parts)
    })
    .await;
    let (_, app) =
        model_app_with_storage(&openai_at(&model.url), Duration::from_millis(200), &[]).await;
    let mut reader = stream_of(post(&app, &persistent("quiet"), None).await);
    assert_eq!(reader.next().await.unwrap().name, "meta");
    let before = reader.comments.len();
    assert_eq!(reader.next().await.unwrap().name, "delta");
    let during = reader.comments.len() - before;
    assert!(
        during >= 2,
        "{during} keep-alive comments in 1.5 s of silence"
    );
    assert!(reader.comments.iter().all(|c| c == "keep-alive"));
    assert_eq!(reader.rest().await.last().unwrap().name, "done");
}
