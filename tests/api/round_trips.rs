//! What a persistent turn costs in storage requests, counted by a small proxy in
//! front of Azurite (loopback only), and what a stale window costs when another
//! writer got there first: the refused transaction, a point read of the turn it
//! tried to store (a retried request of ours may have landed after all), the
//! window read again, and the append decided again. Each stored turn then adds
//! its daily counters (the app's; an owned turn the customer's too).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use session_rag::domain::{NewTurn, SessionId};
use session_rag::storage::{Appended, ConversationStore, Deleted};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::azurite::{shared_table_endpoint, unique_table_name};
use crate::helpers::{
    delete_as_read, raw_table_client, shared_table_store, spawn_app_with, stored_rows, use_table,
    TestApp,
};

/// Forwards connections to Azurite and counts the HTTP requests sent through it.
struct CountingProxy {
    /// The table endpoint to configure instead of Azurite's.
    endpoint: String,
    requests: Arc<AtomicUsize>,
}

impl CountingProxy {
    async fn start(upstream_endpoint: &str) -> Self {
        let url = reqwest::Url::parse(upstream_endpoint).unwrap();
        let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counter) = (upstream.clone(), counter.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let _ = forward(client, server, counter).await;
                    }
                });
            }
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}{}", url.path()),
            requests,
        }
    }

    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Copies answers back as they come, and requests on one by one: head up to the
/// blank line, then `Content-Length` bytes of body (the storage client always
/// sends one), counting each.
async fn forward(
    client: TcpStream,
    server: TcpStream,
    counter: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
    let mut requests = BufReader::new(client_read);
    loop {
        let mut head = Vec::new();
        let mut content_length = 0u64;
        loop {
            let mut line = String::new();
            if requests.read_line(&mut line).await? == 0 {
                return Ok(()); // The client closed the connection.
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
            head.extend_from_slice(line.as_bytes());
            if line == "\r\n" {
                break;
            }
        }
        counter.fetch_add(1, Ordering::SeqCst);
        server_write.write_all(&head).await?;
        let mut body = (&mut requests).take(content_length);
        tokio::io::copy(&mut body, &mut server_write).await?;
    }
}

async fn app_through(proxy: &CountingProxy, table: &str) -> TestApp {
    spawn_app_with(|settings| use_table(settings, &proxy.endpoint, table)).await
}

fn persistent(question: &str, session: &str, customer: Option<&str>) -> Value {
    json!({"question": question, "session_id": session, "enable_persistence": true, "customer_id": customer})
}

/// Asks and returns the reply and how many storage requests it took.
async fn counted(app: &TestApp, proxy: &CountingProxy, body: Value) -> (Value, usize) {
    let before = proxy.count();
    let reply = app.ask(body).await;
    assert_eq!(reply["persisted"], true, "{reply}");
    (reply, proxy.count() - before)
}

#[tokio::test]
async fn a_steady_turn_costs_one_transaction_and_its_counter_and_an_owned_one_adds_its_listing_entry_and_counter(
) {
    let proxy = CountingProxy::start(&shared_table_endpoint()).await;
    let table = unique_table_name("roundtrips");
    let app = app_through(&proxy, &table).await;

    let (_, cold) = counted(
        &app,
        &proxy,
        persistent("What does LONPF2 do?", "steady", None),
    )
    .await;
    let mut steady = Vec::new();
    for n in 1..5u64 {
        let (reply, requests) =
            counted(&app, &proxy, persistent("Who calls it?", "steady", None)).await;
        assert_eq!(reply["turn"], n);
        assert_eq!(reply["history_turns"], n);
        steady.push(requests);
    }
    assert_eq!(
        steady,
        [2, 2, 2, 2],
        "one entity-group transaction per steady turn, then the app's daily counter"
    );

    // An owned conversation: the transaction, then its listing entry and the
    // customer's and the app's daily counters, at the same time.
    counted(
        &app,
        &proxy,
        persistent("What does LONES1 do?", "owned", Some("alice")),
    )
    .await;
    let (reply, owned) = counted(
        &app,
        &proxy,
        persistent("Who calls it?", "owned", Some("alice")),
    )
    .await;
    assert_eq!(reply["turn"], 1);
    assert_eq!(
        owned, 4,
        "the transaction, the listing entry, two daily counters"
    );

    // A process that has not served the session reads its window first.
    let cold_app = app_through(&proxy, &table).await;
    let (reply, cold_continuation) = counted(
        &cold_app,
        &proxy,
        persistent("And what does it read?", "steady", None),
    )
    .await;
    assert_eq!(reply["turn"], 5);
    println!(
        "storage requests per persistent turn: new conversation in a new process {cold} (table creation included), steady 2 (one of them the app's daily counter), owned steady {owned} (two of them daily counters), cold continuation {cold_continuation} (table creation included)"
    );
}

/// The number and question of every stored row of `session`, in key order.
async fn stored(table: &str, session: &str) -> Vec<(u64, String)> {
    stored_rows(&raw_table_client(&shared_table_endpoint(), table), session)
        .await
        .iter()
        .map(|row| {
            (
                row["RowKey"].as_str().unwrap().parse().unwrap(),
                row["user"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// An anonymous turn asking `question`, written by another process.
fn asked_elsewhere(question: &str) -> NewTurn {
    NewTurn {
        user: question.into(),
        assistant: "elsewhere".into(),
        metadata_json: "{}".into(),
        timestamp: chrono::Utc::now(),
        owner: None,
    }
}

/// Appends `question` from another store (another process), after what it reads.
async fn append_elsewhere(other: &dyn ConversationStore, session: &str, question: &str) -> u64 {
    let s = SessionId::parse(session).unwrap();
    let window = other.recent(&s, 10).await.unwrap();
    let turn = asked_elsewhere(question);
    match other.append(&s, turn, window.continuation()).await.unwrap() {
        Appended::Stored { number, .. } => number,
        Appended::Changed => panic!("nobody else writes"),
    }
}

#[tokio::test]
async fn a_window_overtaken_elsewhere_fails_the_transaction_and_the_retry_stores_the_right_turn() {
    let proxy = CountingProxy::start(&shared_table_endpoint()).await;
    let table = unique_table_name("overtaken");
    let app = app_through(&proxy, &table).await;
    let other = shared_table_store(&table);

    // Appended elsewhere: the transaction fails, the window is read again, and the
    // turn lands after the other one (answered from the window held here).
    app.ask(persistent("What does LONPF2 do?", "s", None)).await;
    app.ask(persistent("Who calls it?", "s", None)).await;
    assert_eq!(append_elsewhere(&other, "s", "from elsewhere").await, 2);
    let (reply, requests) =
        counted(&app, &proxy, persistent("What does it read?", "s", None)).await;
    assert_eq!(
        (reply["turn"].as_u64(), reply["history_turns"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        requests, 5,
        "the failed transaction, the read that tells it was not ours after all, the window, the transaction, the app's counter"
    );
    assert_eq!(
        stored(&table, "s").await,
        [
            (0, "What does LONPF2 do?".into()),
            (1, "Who calls it?".into()),
            (2, "from elsewhere".into()),
            (3, "What does it read?".into()),
        ]
    );
    // Another process takes turns here: from now on the window is read first (two
    // requests), not held and refused (four); each then adds the app's counter.
    let (reply, requests) = counted(&app, &proxy, persistent("And who calls it?", "s", None)).await;
    assert_eq!(reply["turn"], 4);
    assert_eq!(
        requests, 3,
        "the window, the transaction, the app's counter"
    );

    // Deleted elsewhere: the transaction fails and the turn starts a new conversation.
    app.ask(persistent("What does LONPF2 do?", "deleted", None))
        .await;
    app.ask(persistent("Who calls it?", "deleted", None)).await;
    let deleted = SessionId::parse("deleted").unwrap();
    assert_eq!(delete_as_read(&other, &deleted).await, Ok(Deleted::Deleted));
    let (reply, requests) = counted(
        &app,
        &proxy,
        persistent("What does LONES1 do?", "deleted", None),
    )
    .await;
    assert_eq!(reply["turn"], 0);
    assert_eq!(
        requests, 5,
        "the failed transaction, the read that tells it was not ours after all, the window, the insert, the app's counter"
    );
    assert_eq!(
        stored(&table, "deleted").await,
        [(0, "What does LONES1 do?".into())]
    );

    // Restarted elsewhere (as after an expiry there): the transaction fails, and the
    // turn continues the new conversation, never the old one.
    app.ask(persistent("What does LONPF2 do?", "restarted", None))
        .await;
    app.ask(persistent("Who calls it?", "restarted", None))
        .await;
    let id = SessionId::parse("restarted").unwrap();
    let seen = other.recent(&id, 10).await.unwrap();
    assert!(matches!(
        other
            .append(&id, asked_elsewhere("restarted elsewhere"), seen.restart())
            .await,
        Ok(Appended::Stored { number: 0, .. })
    ));
    let (reply, requests) = counted(
        &app,
        &proxy,
        persistent("And what does it write?", "restarted", None),
    )
    .await;
    // Answered from the window this process held (two turns); stored after the
    // restart's turn 0.
    assert_eq!(
        (reply["turn"].as_u64(), reply["history_turns"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        requests, 5,
        "the failed transaction, the read that tells it was not ours after all, the window, the transaction, the app's counter"
    );
    assert_eq!(
        stored(&table, "restarted").await,
        [
            (0, "restarted elsewhere".into()),
            (1, "And what does it write?".into())
        ]
    );
}
