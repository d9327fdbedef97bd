//! `POST /api/query`: contract, validation and in-process memory.

use std::os::unix::fs::symlink;

use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, top_source};

#[tokio::test]
async fn stateless_question_is_answered_from_the_sample_corpus() {
    let app = spawn_app().await;
    let body = app.ask(json!({"question": "What does LONPF2 do?"})).await;
    assert_eq!(body["session_id"], json!(null));
    assert_eq!(body["turn"], json!(null));
    assert_eq!(body["persisted"], false);
    assert_eq!(body["history_turns"], 0);
    assert_eq!(body["mode"], "offline");
    assert_eq!(body["warnings"], json!([]));
    assert_eq!(top_source(&body), "programs/LONPF2.cbl");
    let source = &body["sources"][0];
    assert_eq!(source["title"], "LONPF2");
    assert!(source["score"].as_f64().unwrap() > 0.0);
    assert!(!source["snippet"].as_str().unwrap().is_empty());
    assert!(body["answer"].as_str().unwrap().contains("LONPF2"));
}

#[tokio::test]
async fn every_invalid_field_gets_its_own_400() {
    let app = spawn_app().await;
    let long_question = "q".repeat(8_001);
    let cases = [
        (json!([1, 2]), "invalid_request"),
        (json!("question"), "invalid_request"),
        (json!({}), "invalid_question"),
        (json!({"question": null}), "invalid_question"),
        (json!({"question": 42}), "invalid_question"),
        (json!({"question": "   "}), "invalid_question"),
        (json!({"question": long_question}), "invalid_question"),
        (
            json!({"question": "q", "session_id": ""}),
            "invalid_session_id",
        ),
        (
            json!({"question": "q", "session_id": 12}),
            "invalid_session_id",
        ),
        (
            json!({"question": "q", "session_id": "a/b"}),
            "invalid_session_id",
        ),
        (
            json!({"question": "q", "session_id": "a\\b"}),
            "invalid_session_id",
        ),
        (
            json!({"question": "q", "session_id": "a#b"}),
            "invalid_session_id",
        ),
        (
            json!({"question": "q", "session_id": "a?b"}),
            "invalid_session_id",
        ),
        (
            json!({"question": "q", "session_id": "tab\there"}),
            "invalid_session_id",
        ),
        (
            json!({"question": "q", "session_id": "x".repeat(257)}),
            "invalid_session_id",
        ),
        (
            json!({"question": "q", "customer_id": "c/1"}),
            "invalid_customer_id",
        ),
        (
            json!({"question": "q", "customer_id": false}),
            "invalid_customer_id",
        ),
        (
            json!({"question": "q", "enable_persistence": "true"}),
            "invalid_request",
        ),
        (
            json!({"question": "q", "metadata": "tags"}),
            "invalid_metadata",
        ),
        (
            json!({"question": "q", "metadata": {"k": "v".repeat(16 * 1024)}}),
            "invalid_metadata",
        ),
    ];
    for (body, code) in cases {
        app.query(body).await.assert_error(400, code);
    }
    let bad_json = app
        .send(
            app.client
                .post(format!("{}/api/query", app.address))
                .body("{\"question\": "),
        )
        .await;
    bad_json.assert_error(400, "invalid_json");
    let not_utf8 = app
        .send(
            app.client
                .post(format!("{}/api/query", app.address))
                .body(vec![0xff, 0xfe]),
        )
        .await;
    not_utf8.assert_error(400, "invalid_json");
}

#[tokio::test]
async fn unknown_fields_and_nulls_are_ignored_and_content_type_is_not_required() {
    let app = spawn_app().await;
    let response = app
        .send(
            app.client
                .post(format!("{}/api/query", app.address))
                .header("content-type", "text/plain")
                .body(r#"{"question":"What does LONPF2 do?","session_id":null,"metadata":null,"colour":"blue"}"#),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.body["turn"], json!(null));
}

#[tokio::test]
async fn routes_methods_and_sizes_get_json_errors() {
    let app = spawn_app().await;
    let get = app
        .send(app.client.get(format!("{}/api/query", app.address)))
        .await;
    get.assert_error(405, "method_not_allowed");
    let raw = app
        .client
        .put(format!("{}/api/query", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["allow"], "POST");

    app.send(app.client.get(format!("{}/api/nope", app.address)))
        .await
        .assert_error(404, "not_found");
    app.send(app.client.post(format!("{}/query", app.address)).body("{}"))
        .await
        .assert_error(404, "not_found");

    let huge = format!(r#"{{"question":"{}"}}"#, "x".repeat(1024 * 1024));
    app.send(
        app.client
            .post(format!("{}/api/query", app.address))
            .body(huge.clone()),
    )
    .await
    .assert_error(413, "payload_too_large");
    // Without a Content-Length (chunked), the limit still holds.
    let chunks = futures::stream::iter(
        huge.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    app.send(
        app.client
            .post(format!("{}/api/query", app.address))
            .body(reqwest::Body::wrap_stream(chunks)),
    )
    .await
    .assert_error(413, "payload_too_large");
}

#[tokio::test]
async fn readiness_probe_and_health_answer() {
    let app = spawn_app().await;
    for path in ["/", "/api/health"] {
        let response = app
            .send(app.client.get(format!("{}{path}", app.address)))
            .await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body["status"], "ok");
        assert!(response.body["documents_indexed"].as_u64().unwrap() > 10);
    }
}

// The seed's three scenarios: memory-only, multi-turn, isolation.

#[tokio::test]
async fn without_a_session_nothing_is_remembered() {
    let app = spawn_app().await;
    app.ask(json!({"question": "What does LONPF2 do?"})).await;
    let second = app
        .ask(json!({"question": "What copybooks does it use?"}))
        .await;
    assert_eq!(second["history_turns"], 0);
    assert_eq!(second["turn"], json!(null));
}

#[tokio::test]
async fn a_session_remembers_its_turns_up_to_max_turns() {
    let app = spawn_app_with(|s| s.max_turns = 2).await;
    for n in 0..4u64 {
        let body = app
            .ask(json!({"question": format!("question {n} about LONPF2"), "session_id": "user123"}))
            .await;
        assert_eq!(body["turn"], n);
        assert_eq!(body["session_id"], "user123");
        assert_eq!(body["history_turns"], n.min(2));
        assert_eq!(body["persisted"], false);
    }
}

#[tokio::test]
async fn sessions_never_see_each_other() {
    let app = spawn_app().await;
    app.ask(json!({"question": "What does LONPF2 do?", "session_id": "alice"}))
        .await;
    app.ask(json!({"question": "And then?", "session_id": "alice"}))
        .await;
    let bob = app
        .ask(json!({"question": "Hello", "session_id": "bob"}))
        .await;
    assert_eq!(bob["turn"], 0);
    assert_eq!(bob["history_turns"], 0);
    // Ids that differ only in case or by a quote are different sessions.
    let other = app
        .ask(json!({"question": "Hello", "session_id": "Alice"}))
        .await;
    assert_eq!(other["turn"], 0);
    let quoted = app
        .ask(json!({"question": "Hello", "session_id": "alice'"}))
        .await;
    assert_eq!(quoted["turn"], 0);
}

#[tokio::test]
async fn concurrent_turns_on_one_session_get_distinct_consecutive_numbers() {
    let app = spawn_app().await;
    let requests = (0..40).map(|n| {
        app.ask(json!({"question": format!("concurrent question {n}"), "session_id": "busy"}))
    });
    let mut turns: Vec<u64> = futures::future::join_all(requests)
        .await
        .iter()
        .map(|b| b["turn"].as_u64().unwrap())
        .collect();
    turns.sort_unstable();
    assert_eq!(turns, (0..40).collect::<Vec<_>>());
}

#[tokio::test]
async fn follow_ups_resolve_against_their_own_session_only() {
    let app = spawn_app().await;
    let first = app
        .ask(json!({"question": "What does LONPF2 do?", "session_id": "a"}))
        .await;
    assert_eq!(top_source(&first), "programs/LONPF2.cbl");
    let other = app
        .ask(json!({"question": "What does LONES1 do?", "session_id": "b"}))
        .await;
    assert_eq!(top_source(&other), "programs/LONES1.cbl");

    let follow_up = json!({"question": "What copybooks does it use?"});
    let a = app
        .ask(json!({"question": follow_up["question"], "session_id": "a"}))
        .await;
    assert_eq!(a["history_turns"], 1);
    assert_eq!(top_source(&a), "programs/LONPF2.cbl", "{}", a["answer"]);
    assert!(
        a["answer"].as_str().unwrap().contains("COPY"),
        "{}",
        a["answer"]
    );
    let b = app
        .ask(json!({"question": follow_up["question"], "session_id": "b"}))
        .await;
    assert_eq!(top_source(&b), "programs/LONES1.cbl", "{}", b["answer"]);

    let fresh = app
        .ask(json!({"question": follow_up["question"], "session_id": "c"}))
        .await;
    assert_eq!(fresh["history_turns"], 0);
    assert!(!fresh["answer"].as_str().unwrap().contains("following up"));
}

#[tokio::test]
async fn persistence_flag_without_session_is_ignored_with_a_warning() {
    let app = spawn_app().await;
    let body = app
        .ask(json!({"question": "What does LONPF2 do?", "enable_persistence": true}))
        .await;
    assert_eq!(body["persisted"], false);
    assert_eq!(body["turn"], json!(null));
    let warnings = body["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].as_str().unwrap().contains("enable_persistence"));
}

#[tokio::test]
async fn persistence_without_configured_storage_degrades_with_a_warning() {
    let app = spawn_app().await;
    let body = app
        .ask(json!({"question": "What does LONPF2 do?", "session_id": "s", "enable_persistence": true}))
        .await;
    assert_eq!(body["persisted"], false);
    assert_eq!(body["turn"], json!(null));
    assert!(body["warnings"][0]
        .as_str()
        .unwrap()
        .contains("not configured"));
}

#[tokio::test]
async fn documents_come_from_rag_docs_dir_recursively() {
    let docs = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(docs.path().join("deep/er")).unwrap();
    std::fs::write(
        docs.path().join("deep/er/ZEBRA.md"),
        "The zebra module grazes on striped data.",
    )
    .unwrap();
    std::fs::write(docs.path().join("other.txt"), "Nothing to see here.").unwrap();
    let dir = docs.path().to_owned();
    let app = spawn_app_with(|s| s.docs_dir = Some(dir)).await;
    let body = app
        .ask(json!({"question": "Where does the zebra graze?"}))
        .await;
    assert_eq!(top_source(&body), "deep/er/ZEBRA.md");
}

#[tokio::test]
async fn a_docs_folder_with_loops_duplicates_and_unreadable_files_indexes_each_file_once() {
    let docs = tempfile::tempdir().unwrap();
    let root = docs.path();
    std::fs::create_dir(root.join("programs")).unwrap();
    std::fs::write(
        root.join("programs/ZEBRA.cbl"),
        "The zebra module grazes on striped data.",
    )
    .unwrap();
    std::fs::write(root.join("other.txt"), "Nothing to see here.").unwrap();
    symlink("..", root.join("programs/up")).unwrap(); // a loop: back to its parent
    symlink("programs/ZEBRA.cbl", root.join("alias.cbl")).unwrap(); // the same file again
                                                                    // Unreadable for root too: a broken link, a FIFO (reading it would block start-up)
                                                                    // and a file that is not UTF-8.
    symlink("nowhere.txt", root.join("broken.txt")).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(root.join("queue.txt"))
        .status()
        .unwrap()
        .success());
    std::fs::write(root.join("latin1.txt"), b"zebra caf\xe9").unwrap();

    let dir = root.to_owned();
    let app = spawn_app_with(|s| s.docs_dir = Some(dir)).await;
    let health = app
        .send(app.client.get(format!("{}/api/health", app.address)))
        .await;
    assert_eq!(health.body["documents_indexed"], 2, "{}", health.body);
    let body = app
        .ask(json!({"question": "Where does the zebra graze?"}))
        .await;
    let sources: Vec<&str> = body["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["programs/ZEBRA.cbl"]);
}

#[tokio::test]
async fn a_session_over_the_memory_cap_keeps_its_newest_turns_and_says_so() {
    let app = spawn_app_with(|s| s.session_memory_max_bytes = 1024 * 1024).await;
    // About 16 KB a turn: the session outgrows 1 MiB after some 60 turns.
    let question = |n: usize| format!("{n:03} {}", "é".repeat(7_990));
    let mut replies = Vec::new();
    for n in 0..80 {
        replies.push(
            app.ask(json!({"question": question(n), "session_id": "chatty"}))
                .await,
        );
    }
    for (n, reply) in replies.iter().enumerate() {
        assert_eq!(reply["turn"], n, "numbers run on past the dropped turns");
    }
    assert_eq!(replies[0]["warnings"], json!([]));
    let last_warnings = replies[79]["warnings"].as_array().unwrap();
    assert_eq!(last_warnings.len(), 1, "{last_warnings:?}");
    assert!(last_warnings[0]
        .as_str()
        .unwrap()
        .contains("SESSION_MEMORY_MAX_MB"));

    let read = app
        .send(
            app.client
                .get(format!("{}/api/sessions/chatty", app.address)),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.body);
    let asked: Vec<&str> = read.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let first_kept = 80 - asked.len();
    assert!((1..80).contains(&first_kept), "kept {} turns", asked.len());
    let expected: Vec<String> = (first_kept..80).map(question).collect();
    assert_eq!(asked, expected, "the newest turns, in order");
}
