//! Durable memory through HTTP: the handler with Table Storage in the shared Azurite,
//! each test in a table of its own.

use std::collections::HashSet;

use serde_json::{json, Map, Value};
use session_rag::domain::SessionId;
use session_rag::settings::{StorageConnection, TableName};
use session_rag::storage::ConversationStore;

use crate::azurite::{shared_table_endpoint, unique_table_name};
use crate::crowd::{ask_as_crowd, assert_stored_exactly_once, HandlerProcess};
use crate::helpers::{
    azurite_sas_connection_string, raw_table_client, shared_table_store, spawn_app_with,
    spawn_app_with_storage, stored_rows, top_source, use_table,
};

fn persistent(question: &str, session: &str) -> Value {
    json!({"question": question, "session_id": session, "enable_persistence": true})
}

#[tokio::test]
async fn persistent_turns_are_numbered_and_history_grows_to_max_turns() {
    let table = unique_table_name("numbered");
    let app = spawn_app_with(|settings| {
        use_table(settings, &shared_table_endpoint(), &table);
        settings.max_turns = 3;
    })
    .await;
    for n in 0..5u64 {
        let body = app
            .ask(persistent(&format!("question {n} about LONPF2"), "user123"))
            .await;
        assert_eq!(body["persisted"], true, "{body}");
        assert_eq!(body["turn"], n);
        assert_eq!(body["history_turns"], n.min(3));
        assert_eq!(body["session_id"], "user123");
        assert_eq!(body["warnings"], json!([]));
    }
}

#[tokio::test]
async fn a_sas_connection_string_persists_turns() {
    let table = unique_table_name("sas");
    let app = spawn_app_with(|settings| {
        settings.storage = Some(StorageConnection::connection_string(
            "AzureWebJobsStorage",
            azurite_sas_connection_string(&shared_table_endpoint()),
        ));
        settings.chat_history_table = TableName::new(&table).expect("a valid table name");
    })
    .await;
    for n in 0..2u64 {
        let body = app.ask(persistent("What does LONPF2 do?", "sas")).await;
        assert_eq!(body["persisted"], true, "{body}");
        assert_eq!(body["turn"], n);
    }
}

#[tokio::test]
async fn a_restarted_handler_continues_the_conversation() {
    let table = unique_table_name("restart");
    let before = spawn_app_with_storage(&table).await;
    before
        .ask(persistent("What does LONPF2 do?", "user_123"))
        .await;
    before.ask(persistent("Who calls it?", "user_123")).await;

    // A new application has no in-process state: everything comes from the table.
    let after = spawn_app_with_storage(&table).await;
    let body = after
        .ask(persistent("What copybooks does it use?", "user_123"))
        .await;
    assert_eq!(body["turn"], 2);
    assert_eq!(body["history_turns"], 2);
    assert_eq!(body["persisted"], true);
    assert_eq!(
        top_source(&body),
        "programs/LONPF2.cbl",
        "{}",
        body["answer"]
    );
}

#[tokio::test]
async fn the_same_id_with_and_without_persistence_names_two_conversations() {
    let table = unique_table_name("separate");
    let app = spawn_app_with_storage(&table).await;
    app.ask(persistent("What does LONPF2 do?", "mixed")).await;
    app.ask(persistent("Who calls it?", "mixed")).await;

    let in_memory = app
        .ask(json!({"question": "What does LONES1 do?", "session_id": "mixed"}))
        .await;
    assert_eq!(in_memory["turn"], 0);
    assert_eq!(in_memory["history_turns"], 0);
    assert_eq!(in_memory["persisted"], false);

    let durable = app
        .ask(persistent("What copybooks does it use?", "mixed"))
        .await;
    assert_eq!(durable["turn"], 2);
    assert_eq!(durable["history_turns"], 2);
    assert_eq!(top_source(&durable), "programs/LONPF2.cbl");
}

/// Rows as the seed's Python code writes them: naive ISO timestamps, `{}` metadata.
fn seed_row(session: &str, n: usize, user: &str, assistant: &str) -> Value {
    json!({
        "PartitionKey": session,
        "RowKey": format!("{n:04}"),
        "timestamp": format!("2025-01-24T10:{:02}:00.123456", n % 60),
        "user": user,
        "assistant": assistant,
        "metadata_json": "{}",
    })
}

/// Writes `rows` (one partition) in entity-group transactions of 100.
async fn write_rows(table: &str, session: &str, rows: Vec<Value>) {
    let client = raw_table_client(&shared_table_endpoint(), table);
    client.create().await.expect("table created");
    for chunk in rows.chunks(100) {
        let mut batch = client.partition_key_client(session).transaction();
        for row in chunk {
            batch = batch.insert(row).unwrap();
        }
        let response = batch.await.expect("batch sent");
        assert!(response
            .operation_responses
            .iter()
            .all(|r| r.status_code.is_success()));
    }
}

/// Property names without OData annotations.
fn property_names(row: &Map<String, Value>) -> HashSet<&str> {
    row.keys()
        .map(String::as_str)
        .filter(|name| !name.starts_with("odata.") && !name.contains("@odata."))
        .collect()
}

#[tokio::test]
async fn seed_rows_are_history_and_our_rows_keep_the_seed_format() {
    let table = unique_table_name("seed");
    write_rows(
        &table,
        "user_123",
        vec![
            seed_row(
                "user_123",
                0,
                "What does LONPF2 do?",
                "LONPF2 posts daily loan payments to the loan master.",
            ),
            seed_row(
                "user_123",
                1,
                "Which files does LONPF2 read?",
                "LONPF2 reads the payment file and the loan master.",
            ),
            seed_row(
                "user_123",
                2,
                "Does LONPF2 write a report?",
                "LONPF2 writes the exception report.",
            ),
        ],
    )
    .await;

    let app = spawn_app_with_storage(&table).await;
    let body = app
        .ask(json!({
            "question": "What copybooks does it use?",
            "session_id": "user_123",
            "enable_persistence": true,
            "customer_id": "customer-1",
            "metadata": {"channel": "teams"},
        }))
        .await;
    assert_eq!(body["history_turns"], 3);
    assert_eq!(body["turn"], 3);
    assert_eq!(
        top_source(&body),
        "programs/LONPF2.cbl",
        "{}",
        body["answer"]
    );

    let rows = stored_rows(
        &raw_table_client(&shared_table_endpoint(), &table),
        "user_123",
    )
    .await;
    assert_eq!(rows.len(), 4);
    let (seed, ours) = (&rows[0], &rows[3]);
    assert_eq!(ours["RowKey"], "0003");
    // The seed's conversation has no owner, and continuing it gives it none: no
    // `customer_id`, only our `turn_id` besides the seed's properties.
    let mut expected = property_names(seed);
    expected.insert("turn_id");
    assert_eq!(property_names(ours), expected);
    // Every property is a plain string: only the service's Timestamp carries a type.
    let typed: Vec<&String> = ours.keys().filter(|k| k.ends_with("@odata.type")).collect();
    assert_eq!(typed, ["Timestamp@odata.type"]);
    assert_eq!(ours["user"], "What copybooks does it use?");
    assert_eq!(ours["metadata_json"], r#"{"channel":"teams"}"#);
    let timestamp = ours["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'),
        "{timestamp}"
    );
}

#[tokio::test]
async fn the_window_of_a_thousand_turn_session_is_its_last_max_turns() {
    let table = unique_table_name("thousand");
    let session = "long-running";
    let rows = (0..1000)
        .map(|n| seed_row(session, n, &format!("question {n}"), &format!("answer {n}")))
        .collect();
    write_rows(&table, session, rows).await;

    // A store that has never seen the session, as in a fresh handler process.
    let store = shared_table_store(&table);
    let id = SessionId::parse(session).unwrap();
    let window = store.recent(&id, 10).await.unwrap();
    assert_eq!(window.total, 1000);
    let users: Vec<&str> = window.turns.iter().map(|t| t.user.as_str()).collect();
    let expected: Vec<String> = (990..1000).map(|n| format!("question {n}")).collect();
    assert_eq!(users, expected);
    // MAX_TURNS may be up to 1,000: such a window spans more than one page.
    let wide = store.recent(&id, 995).await.unwrap();
    assert_eq!(wide.total, 1000);
    assert_eq!(
        wide.turns.iter().map(|t| t.index).collect::<Vec<_>>(),
        (5..1000).collect::<Vec<_>>()
    );

    let app = spawn_app_with_storage(&table).await;
    let body = app.ask(persistent("What does LONPF2 do?", session)).await;
    assert_eq!(body["turn"], 1000);
    assert_eq!(body["history_turns"], 10);
    assert_eq!(body["persisted"], true);
}

#[tokio::test]
async fn concurrent_turns_from_several_handler_processes_are_stored_exactly_once() {
    const REQUESTS: usize = 150;
    const SESSIONS: usize = 3;
    let table = unique_table_name("processes");
    let endpoint = shared_table_endpoint();
    let handlers =
        futures::future::join_all((0..3).map(|_| HandlerProcess::start(&endpoint, &table, &[])))
            .await;
    let run = ask_as_crowd("crowd", &handlers, SESSIONS, 16, REQUESTS, async {}).await;
    // Storage is up: contention alone must not cost a turn (each request may wait 10 s).
    assert_eq!(run.acknowledged.len(), REQUESTS, "every turn is persisted");
    let stored = assert_stored_exactly_once(&endpoint, &table, SESSIONS, &run.acknowledged).await;
    assert_eq!(stored, REQUESTS);
}
