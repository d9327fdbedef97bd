//! What only the Cosmos DB backend shows: seed 000's documents read back and
//! continued, our documents in seed 000's shape, several stores and handler
//! processes on one container, and the cost of a turn as conversations grow.

use std::time::Instant;

use chrono::Utc;
use serde_json::{json, Value};
use session_rag::domain::{parse_timestamp, CustomerId, NewTurn, SessionId};
use session_rag::storage::{
    Appended, ConversationStore, Deleted, Expectation, ListPosition, DIRECTORY_PARTITION,
};

use crate::cosmos::{
    cosmos_env, cosmos_store, insert_document, stored_document, throttle, unique_container_name,
    use_cosmos,
};
use crate::crowd::{ask_as_crowd, HandlerProcess};
use crate::helpers::{delete_as_read, spawn_app_with};
use crate::identity::{identity_endpoint, IDENTITY_HEADER};
use crate::startup::refused_start_up;
use crate::storage_conformance::append;

fn session(id: &str) -> SessionId {
    SessionId::parse(id).unwrap()
}

fn turn(user: &str, owner: Option<&str>) -> NewTurn {
    NewTurn {
        user: user.into(),
        assistant: format!("answer to {user}"),
        metadata_json: "{}".into(),
        timestamp: Utc::now(),
        owner: owner.map(|o| CustomerId::parse(o).unwrap()),
    }
}

/// A conversation as seed 000's `ConversationManager` saves it: a Streamlit
/// session id that is not the document id, naive timestamps, a field of its own.
fn seed_000_document(id: &str, customer: &str) -> Value {
    json!({
        "id": id,
        "customer_id": customer,
        "session_id": "streamlit-5f2c",
        "created_at": "2025-01-24T10:30:00Z",
        "updated_at": "2025-01-24T10:30:15.250000",
        "messages": [
            {"role": "user", "content": "What does LONPF2 do?", "timestamp": "2025-01-24T10:30:00Z"},
            {"role": "assistant", "content": "It reads the loan payment file.", "timestamp": "2025-01-24T10:30:15.250000"}
        ],
        "voice": {"enabled": true}
    })
}

#[tokio::test]
async fn a_seed_000_document_reads_back_and_continues_in_its_shape() {
    let container = unique_container_name("seed");
    let store = cosmos_store(&container).await;
    insert_document(&container, &seed_000_document("conv-7", "user_123")).await;

    let s = session("conv-7");
    let turns = store.all(&s).await.unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].user, "What does LONPF2 do?");
    assert_eq!(turns[0].assistant, "It reads the loan payment file.");
    assert_eq!(turns[0].owner, Some(CustomerId::parse("user_123").unwrap()));

    // A fresh store (another process) finds it too, and continues it.
    let other = cosmos_store(&container).await;
    assert_eq!(
        append(
            &other,
            &s,
            turn("What copybooks does it use?", Some("user_123"))
        )
        .await,
        Ok(1)
    );
    let window = store.recent(&s, 10).await.unwrap();
    assert_eq!(window.total, 2);
    assert_eq!(window.turns[1].user, "What copybooks does it use?");

    let stored = stored_document(&container, "user_123", "conv-7")
        .await
        .unwrap();
    assert_eq!(stored["session_id"], "streamlit-5f2c", "kept as found");
    assert_eq!(stored["created_at"], "2025-01-24T10:30:00Z");
    assert_eq!(stored["voice"], json!({"enabled": true}));
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0], seed_000_document("x", "y")["messages"][0]);
    assert_eq!(
        (messages[2]["role"].as_str(), messages[3]["role"].as_str()),
        (Some("user"), Some("assistant"))
    );
    assert_eq!(messages[2]["content"], "What copybooks does it use?");
    assert_eq!(stored["updated_at"], messages[3]["timestamp"]);
}

#[tokio::test]
async fn our_documents_are_seed_000_documents_in_the_owners_partition() {
    let container = unique_container_name("shape");
    let store = cosmos_store(&container).await;
    append(&store, &session("mine"), turn("q0", Some("alice")))
        .await
        .unwrap();
    append(&store, &session("mine"), turn("q1", Some("alice")))
        .await
        .unwrap();
    append(&store, &session("nobodys"), turn("q0", None))
        .await
        .unwrap();

    let owned = stored_document(&container, "alice", "mine").await.unwrap();
    assert_eq!(owned["id"], "mine");
    assert_eq!(owned["customer_id"], "alice");
    assert_eq!(owned["session_id"], "mine");
    let messages = owned["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(message["role"], ["user", "assistant"][i % 2]);
        assert_eq!(message["turn"], i / 2);
        let timestamp = message["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok() && timestamp.ends_with('Z'),
            "{timestamp}"
        );
    }
    assert_eq!(owned["created_at"], messages[0]["timestamp"]);
    assert_eq!(owned["updated_at"], messages[3]["timestamp"]);

    // The directory: a pointer for the owned one, the unowned one itself.
    let pointer = stored_document(&container, DIRECTORY_PARTITION, "mine")
        .await
        .unwrap();
    assert_eq!(pointer["owner"], "alice");
    assert!(pointer.get("messages").is_none());
    let unowned = stored_document(&container, DIRECTORY_PARTITION, "nobodys")
        .await
        .unwrap();
    assert_eq!(unowned["messages"].as_array().unwrap().len(), 2);

    // Deleting removes the document and its pointer.
    assert_eq!(
        delete_as_read(&store, &session("mine")).await,
        Ok(Deleted::Deleted)
    );
    assert!(stored_document(&container, "alice", "mine").await.is_none());
    assert!(stored_document(&container, DIRECTORY_PARTITION, "mine")
        .await
        .is_none());
}

/// Seed 000's naive times and ours share seconds: the listing still runs latest
/// first, ties by id, and pages of every size continue exactly, cutoff included.
#[tokio::test]
async fn seed_000_times_and_ours_list_in_one_order_across_pages() {
    let container = unique_container_name("listing");
    let store = cosmos_store(&container).await;
    let carol = CustomerId::parse("carol").unwrap();
    let mut expected = Vec::new();
    // 30 conversations in 4 seconds, in three formats.
    for n in 0..30 {
        let second = n % 4;
        let updated_at = match n % 3 {
            0 => format!("2025-01-24T10:30:{second:02}Z"),
            1 => format!("2025-01-24T10:30:{second:02}.{:06}", n * 1000),
            _ => format!("2025-01-24T10:30:{second:02}"),
        };
        let id = format!("conv-{n:02}");
        let mut document = seed_000_document(&id, "carol");
        document["updated_at"] = updated_at.as_str().into();
        insert_document(&container, &document).await;
        expected.push((parse_timestamp(&updated_at).unwrap(), id));
    }
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));

    let listed = |limit, cutoff| {
        let (store, carol) = (&store, &carol);
        async move {
            let mut ids = Vec::new();
            let mut after: Option<ListPosition> = None;
            loop {
                let page = store
                    .sessions_page(carol, limit, after.as_ref(), cutoff)
                    .await
                    .unwrap();
                assert!(page.sessions.len() <= limit);
                ids.extend(page.sessions.iter().map(|s| s.session_id.to_string()));
                match page.next {
                    Some(next) => after = Some(next),
                    None => return ids,
                }
            }
        }
    };
    let all: Vec<String> = expected.iter().map(|(_, id)| id.clone()).collect();
    for limit in [1, 3, 7, 30, 100] {
        assert_eq!(listed(limit, None).await, all, "{limit}");
    }
    let cutoff = parse_timestamp("2025-01-24T10:30:02.010000").unwrap();
    let recent: Vec<String> = expected
        .iter()
        .filter(|(at, _)| *at >= cutoff)
        .map(|(_, id)| id.clone())
        .collect();
    assert!(recent.len() > 5 && recent.len() < 20);
    for limit in [1, 4, 100] {
        assert_eq!(listed(limit, Some(cutoff)).await, recent, "{limit}");
    }
}

#[tokio::test]
async fn two_handler_processes_store_every_acknowledged_turn_exactly_once() {
    const SESSIONS: usize = 3;
    let container = unique_container_name("crowd");
    let env = cosmos_env(&container);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The table settings are unused: COSMOSDB_ENDPOINT wins.
    let handlers = [
        HandlerProcess::start("http://127.0.0.1:9/unused", "unused", &env).await,
        HandlerProcess::start("http://127.0.0.1:9/unused", "unused", &env).await,
    ];
    let run = ask_as_crowd("cosmos", &handlers, SESSIONS, 8, 48, async {}).await;
    assert!(!run.acknowledged.is_empty());

    let store = cosmos_store(&container).await;
    let mut stored = std::collections::HashMap::new();
    for s in 0..SESSIONS {
        let id = format!("crowd-{s}");
        let turns = store.all(&session(&id)).await.unwrap();
        let mut questions: Vec<&str> = turns.iter().map(|t| t.user.as_str()).collect();
        questions.sort();
        questions.dedup();
        assert_eq!(
            questions.len(),
            turns.len(),
            "{id}: a question stored twice"
        );
        for t in turns {
            stored.insert((id.clone(), t.index), t.user);
        }
    }
    for (session, number, question) in &run.acknowledged {
        assert_eq!(
            stored.get(&(session.clone(), *number)),
            Some(question),
            "acknowledged turn {number} of {session}"
        );
    }
}

#[tokio::test]
async fn someone_elses_conversation_is_not_found_through_the_api() {
    let container = unique_container_name("api");
    let app = spawn_app_with(|settings| use_cosmos(settings, &container)).await;
    let ask = |customer: &str| {
        json!({"question": "What does LONPF2 do?", "session_id": "private",
               "customer_id": customer, "enable_persistence": true})
    };
    let first = app.ask(ask("alice")).await;
    assert_eq!(
        (first["turn"].as_u64(), first["persisted"].as_bool()),
        (Some(0), Some(true))
    );
    app.query(ask("bob")).await.assert_error(404, "not_found");
    let read = |customer: &str| {
        app.client.get(format!(
            "{}/api/sessions/private?customer_id={customer}",
            app.address
        ))
    };
    app.send(read("bob")).await.assert_error(404, "not_found");
    assert_eq!(app.send(read("alice")).await.status, 200);
    let stored = stored_document(&container, "alice", "private")
        .await
        .unwrap();
    assert_eq!(stored["messages"].as_array().unwrap().len(), 2);
}

/// Prints what a turn costs as one conversation grows: the latency of an append
/// (read, then replace of the whole document) at 10, 100 and 1,000 turns, and the
/// document's size, from which ARCHITECTURE.md estimates request units (the
/// stand-in charges a flat 1 RU for everything). Checks the turns are all there.
#[tokio::test]
async fn turn_cost_as_a_conversation_grows() {
    let container = unique_container_name("cost");
    let store = cosmos_store(&container).await;
    let s = session("long");
    let question = "What does LONPF2 do with the loan payment file?";
    let mut appended = 0u64;
    for checkpoint in [10u64, 100, 1000] {
        while appended < checkpoint - 5 {
            append(&store, &s, turn(question, Some("alice")))
                .await
                .unwrap();
            appended += 1;
        }
        let started = Instant::now();
        for _ in 0..5 {
            append(&store, &s, turn(question, Some("alice")))
                .await
                .unwrap();
            appended += 1;
        }
        let per_turn = started.elapsed() / 5;
        let document = stored_document(&container, "alice", "long").await.unwrap();
        println!(
            "cosmos turn cost at {checkpoint} turns: append {:.1} ms, document {} bytes",
            per_turn.as_secs_f64() * 1000.0,
            document.to_string().len()
        );
    }
    assert_eq!(store.recent(&s, 10).await.unwrap().total, 1000);
}

#[tokio::test]
async fn an_unreachable_account_at_start_up_degrades_answers_instead_of_failing() {
    let container = unique_container_name("down");
    let app = spawn_app_with(|settings| {
        use_cosmos(settings, &container);
        let closed = format!("http://127.0.0.1:{}/", crate::azurite::free_port());
        settings.cosmos.as_mut().unwrap().endpoint = closed;
        settings.storage_timeout = std::time::Duration::from_secs(2);
    })
    .await;
    let body = app
        .ask(
            json!({"question": "What does LONPF2 do?", "session_id": "s",
                    "enable_persistence": true}),
        )
        .await;
    assert_eq!(body["persisted"], false, "{body}");
    assert_eq!(body["turn"], Value::Null);
    assert!(!body["warnings"].as_array().unwrap().is_empty(), "{body}");
}

/// Signed in with Microsoft Entra ID (here: a managed identity, from a fake of App
/// Service's identity endpoint), the container cannot be created: start-up stops
/// with one line that names it.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_key_a_missing_container_stops_start_up_in_one_line() {
    let identity = identity_endpoint(std::time::Duration::from_secs(3600)).await;
    let container = unique_container_name("absent");
    let settings = [
        ("COSMOSDB_ENDPOINT", crate::cosmos::shared_cosmos_endpoint()),
        ("COSMOSDB_AIConversations_CONTAINER", container.clone()),
        ("IDENTITY_ENDPOINT", format!("{}/msi/token", identity.url)),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "0".to_owned()),
    ];
    let line = tokio::task::spawn_blocking(move || {
        let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        refused_start_up(&pairs)
    })
    .await
    .unwrap();
    assert!(
        line.contains("COSMOSDB_AIConversations_CONTAINER")
            && line.contains(&container)
            && line.contains("does not exist"),
        "{line}"
    );
    assert!(!identity.requests().is_empty(), "a token was asked for");
}

/// A directory entry reserves a new conversation's id for the customer starting
/// it until their document is written. Another customer's first turn under that
/// id, at that moment, is refused (the caller reads again and finds whose it is),
/// never stored as turn 0 of the reserving customer's conversation.
#[tokio::test]
async fn a_start_under_way_is_not_finished_by_another_customer() {
    let container = unique_container_name("reserved");
    let store = cosmos_store(&container).await;
    // Alice's start, between its two writes: the entry is there, her document not yet.
    insert_document(
        &container,
        &json!({"id": "contested", "customer_id": DIRECTORY_PARTITION, "owner": "alice"}),
    )
    .await;
    let contested = session("contested");
    for owner in [Some("mallory"), None] {
        let refused = store
            .append(&contested, turn("Mallory's plan", owner), Expectation::New)
            .await;
        assert_eq!(refused, Ok(Appended::Changed), "{owner:?}");
    }
    assert!(stored_document(&container, "alice", "contested")
        .await
        .is_none());

    let finished = store
        .append(
            &contested,
            turn("Alice's plan", Some("alice")),
            Expectation::New,
        )
        .await
        .unwrap();
    assert!(
        matches!(finished, Appended::Stored { number: 0, .. }),
        "{finished:?}"
    );
    let turns = store.all(&contested).await.unwrap();
    assert_eq!(turns.len(), 1);
    assert_eq!(turns[0].user, "Alice's plan");
    assert_eq!(
        turns[0].owner.as_ref().map(CustomerId::as_str),
        Some("alice")
    );
}

/// The service throttles (429, `x-ms-retry-after-ms`) when a container's
/// throughput runs out: a turn is sent again after the wait asked for, and is
/// answered with `persisted: false` only while the throttling lasts.
#[tokio::test]
async fn a_throttled_turn_is_sent_again_and_degrades_only_while_throttling_lasts() {
    let container = unique_container_name("throttle");
    let app = spawn_app_with(|settings| use_cosmos(settings, &container)).await;
    let ask = json!({"question": "What does LONPF2 do?", "session_id": "busy",
                     "customer_id": "alice", "enable_persistence": true});
    let turn_and_persisted = |body: &Value| (body["turn"].as_u64(), body["persisted"].as_bool());
    assert_eq!(
        turn_and_persisted(&app.ask(ask.clone()).await),
        (Some(0), Some(true))
    );

    throttle(&container, 2, 20).await;
    assert_eq!(
        turn_and_persisted(&app.ask(ask.clone()).await),
        (Some(1), Some(true))
    );

    throttle(&container, 1_000, 20).await;
    let throttled = app.ask(ask.clone()).await;
    assert_eq!(throttled["persisted"], false, "{throttled}");
    assert!(
        !throttled["warnings"].as_array().unwrap().is_empty(),
        "{throttled}"
    );

    throttle(&container, 0, 0).await;
    // The circuit breaker skips storage briefly after a failure: ask until stored.
    let mut stored = None;
    for _ in 0..50 {
        let reply = app.ask(ask.clone()).await;
        if reply["persisted"] == true {
            stored = Some(reply);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stored = stored.expect("stored once the throttling ended");
    assert_eq!(stored["turn"], 2, "{stored}");
    let document = stored_document(&container, "alice", "busy").await.unwrap();
    assert_eq!(document["messages"].as_array().unwrap().len(), 6);
}
