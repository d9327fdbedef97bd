//! The conversation rules under races between two real `handler` processes on one
//! table, requests released together by a barrier: who owns a conversation, what
//! an expiry may delete, and what a killed process leaves behind. Each round is
//! judged on its own; a test fails naming how many rounds broke a rule.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Barrier;

use crate::azurite::{shared_table_endpoint, unique_table_name};
use crate::crowd::{assert_stored_exactly_once, HandlerProcess};
use crate::helpers::{raw_table_client, stored_rows};

/// Two handler processes on a fresh table, with these extra settings.
async fn two_handlers(table: &str, extra_env: &[(&str, &str)]) -> [HandlerProcess; 2] {
    let endpoint = shared_table_endpoint();
    let (first, second) = tokio::join!(
        HandlerProcess::start(&endpoint, table, extra_env),
        HandlerProcess::start(&endpoint, table, extra_env),
    );
    [first, second]
}

/// A reply: status and body.
async fn post_query(client: &reqwest::Client, handler: &str, body: Value) -> (u16, Value) {
    let response = client
        .post(format!("{handler}/api/query"))
        .json(&body)
        .send()
        .await
        .expect("handler answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Sends every `(handler, body)` at once: each request waits at one barrier, on a
/// task of its own, and is released with all the others.
async fn fire_together(
    client: &reqwest::Client,
    requests: Vec<(String, Value)>,
) -> Vec<(u16, Value)> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(handler, body)| {
            let (client, barrier) = (client.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                post_query(&client, &handler, body).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.expect("request task"));
    }
    replies
}

/// Opens pooled connections to both handlers, so that a round's requests start
/// together instead of one of them connecting first.
async fn warm_up(client: &reqwest::Client, handlers: &[HandlerProcess]) {
    for handler in handlers {
        client
            .get(format!("{}/api/health", handler.address))
            .send()
            .await
            .expect("handler answers");
    }
}

fn asked(question: &str, session: &str, customer: &str) -> Value {
    json!({
        "question": question,
        "session_id": session,
        "customer_id": customer,
        "enable_persistence": true,
    })
}

async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request
        .send()
        .await
        .expect("handler answers")
        .status()
        .as_u16()
}

/// Alice (on one process) and Bob (on the other) send turn 0 of the same new
/// session at the same instant. Exactly one of them owns it afterwards; the other
/// was refused (404) and can see or change nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_customers_racing_for_turn_zero_leave_exactly_one_owner() {
    const ROUNDS: usize = 12;
    let table = unique_table_name("ownerrace");
    let handlers = two_handlers(&table, &[]).await;
    let client = reqwest::Client::new();
    warm_up(&client, &handlers).await;
    let raw = raw_table_client(&shared_table_endpoint(), &table);

    let mut broken = Vec::new();
    for round in 0..ROUNDS {
        let session = format!("race-{round}");
        let question =
            |who: &str| format!("{who}'s first question in round {round}: What does LONPF2 do?");
        let replies = fire_together(
            &client,
            vec![
                (
                    handlers[0].address.clone(),
                    asked(&question("alice"), &session, "alice"),
                ),
                (
                    handlers[1].address.clone(),
                    asked(&question("bob"), &session, "bob"),
                ),
            ],
        )
        .await;
        let mut problems = Vec::new();
        let winners: Vec<&str> = ["alice", "bob"]
            .into_iter()
            .zip(&replies)
            .filter(|(_, (status, body))| *status == 200 && body["persisted"] == true)
            .map(|(who, _)| who)
            .collect();
        let [winner] = winners[..] else {
            let outcomes: Vec<String> = replies
                .iter()
                .map(|(status, body)| format!("{status} turn {}", body["turn"]))
                .collect();
            broken.push(format!(
                "round {round}: {} customers were answered as owners ({})",
                winners.len(),
                outcomes.join(", ")
            ));
            continue;
        };
        let loser = if winner == "alice" { "bob" } else { "alice" };
        let (winner_reply, loser_reply) = if winner == "alice" {
            (&replies[0], &replies[1])
        } else {
            (&replies[1], &replies[0])
        };
        if winner_reply.1["turn"] != 0 {
            problems.push(format!("the owner's turn is {}", winner_reply.1["turn"]));
        }
        if loser_reply.0 != 404 || loser_reply.1["error"]["code"] != "not_found" {
            problems.push(format!(
                "the loser got {} {}",
                loser_reply.0, loser_reply.1["error"]
            ));
        }

        // What is stored: the winner's turn, carrying the winner, and nothing else.
        let rows = stored_rows(&raw, &session).await;
        let stored: Vec<(String, String)> = rows
            .iter()
            .map(|row| {
                (
                    row["user"].as_str().unwrap_or_default().to_owned(),
                    row["customer_id"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        if stored != [(question(winner), winner.to_owned())] {
            problems.push(format!("stored rows {stored:?}"));
        }

        // Exactly one of them can read it, and it holds nothing of the other.
        for handler in &handlers {
            let read = |who: &str| {
                client.get(format!(
                    "{}/api/sessions/{session}?customer_id={who}",
                    handler.address
                ))
            };
            let document: Value = read(winner).send().await.unwrap().json().await.unwrap();
            let contents: Vec<&str> = document["messages"]
                .as_array()
                .map(|m| m.iter().filter_map(|m| m["content"].as_str()).collect())
                .unwrap_or_default();
            if contents.first() != Some(&question(winner).as_str())
                || contents.iter().any(|c| c.contains(loser))
            {
                problems.push(format!("the owner reads {contents:?}"));
            }
            for (what, request) in [
                ("read", read(loser)),
                (
                    "export",
                    client.get(format!(
                        "{}/api/sessions/{session}/export?customer_id={loser}",
                        handler.address
                    )),
                ),
            ] {
                let status = status_of(request).await;
                if status != 404 {
                    problems.push(format!("the loser's {what} got {status}"));
                }
            }
            let listed: Value = client
                .get(format!(
                    "{}/api/sessions?customer_id={loser}",
                    handler.address
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if listed["sessions"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["session_id"] == session.as_str()))
            {
                problems.push("the loser lists it".into());
            }
            let (status, body) = post_query(
                &client,
                &handler.address,
                asked("And who calls it?", &session, loser),
            )
            .await;
            if status != 404 || body["error"]["code"] != "not_found" {
                problems.push(format!(
                    "the loser's next query got {status} {}",
                    body["error"]
                ));
            }
        }
        let deleted = status_of(client.delete(format!(
            "{}/api/sessions/{session}?customer_id={loser}",
            handlers[1].address
        )))
        .await;
        if deleted != 404 {
            problems.push(format!("the loser's delete got {deleted}"));
        }
        if stored_rows(&raw, &session).await.len() != 1 {
            problems.push("the loser's requests changed what is stored".into());
        }
        if !problems.is_empty() {
            broken.push(format!(
                "round {round} (won by {winner}): {}",
                problems.join("; ")
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "{} of {ROUNDS} rounds broke ownership:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

/// 0.0002 days (17.28 s): longer than all rounds of the race together, so only the
/// conversations written before the wait expire.
const RACE_TTL_DAYS: &str = "0.0002";
const RACE_TTL: Duration = Duration::from_millis(17_280);

/// Several requests, on both processes, arrive together on a conversation that has
/// just expired. Every turn acknowledged with `persisted: true` is stored exactly
/// once, at its number, numbers gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_racing_on_an_expired_conversation_lose_no_acknowledged_turn() {
    const ROUNDS: usize = 10;
    const REQUESTS: usize = 6;
    let table = unique_table_name("expiryrace");
    let handlers = two_handlers(&table, &[("SESSION_TTL_DAYS", RACE_TTL_DAYS)]).await;
    let client = reqwest::Client::new();
    warm_up(&client, &handlers).await;

    // Every round's conversation, written now and left to expire together.
    for round in 0..ROUNDS {
        for n in 0..2 {
            let (status, body) = post_query(
                &client,
                &handlers[0].address,
                json!({"question": format!("old {n} of round {round}"), "session_id": format!("crowd-{round}"), "enable_persistence": true}),
            )
            .await;
            assert_eq!((status, &body["persisted"]), (200, &json!(true)), "{body}");
        }
    }
    tokio::time::sleep(RACE_TTL + Duration::from_millis(500)).await;

    let raw = raw_table_client(&shared_table_endpoint(), &table);
    let mut acknowledged = Vec::new();
    let mut broken = Vec::new();
    let mut lost = 0;
    for round in 0..ROUNDS {
        let session = format!("crowd-{round}");
        let requests = (0..REQUESTS)
            .map(|i| {
                let body = json!({
                    "question": format!("round {round} request {i}"),
                    "session_id": session,
                    "enable_persistence": true,
                });
                (handlers[i % 2].address.clone(), body)
            })
            .collect();
        let replies = fire_together(&client, requests).await;
        let mut round_acknowledged = Vec::new();
        for (i, (status, body)) in replies.iter().enumerate() {
            assert_eq!(*status, 200, "{body}");
            if body["persisted"] == true {
                round_acknowledged.push((
                    session.clone(),
                    body["turn"].as_u64().unwrap(),
                    format!("round {round} request {i}"),
                ));
            }
        }
        let rows = stored_rows(&raw, &session).await;
        let stored: Vec<(u64, String)> = rows
            .iter()
            .map(|row| {
                (
                    row["RowKey"].as_str().unwrap().parse().unwrap(),
                    row["user"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let missing = round_acknowledged
            .iter()
            .filter(|(_, turn, question)| !stored.contains(&(*turn, question.clone())))
            .count();
        let gap_free = stored.iter().enumerate().all(|(i, (n, _))| *n == i as u64);
        if missing > 0 || !gap_free {
            lost += missing;
            broken.push(format!(
                "round {round}: {missing} acknowledged turn(s) lost; stored {stored:?}"
            ));
        }
        acknowledged.extend(round_acknowledged);
    }
    assert!(
        broken.is_empty(),
        "{} of {ROUNDS} rounds broke expiry, {lost} acknowledged turns lost:\n{}",
        broken.len(),
        broken.join("\n")
    );
    assert_stored_exactly_once(&shared_table_endpoint(), &table, ROUNDS, &acknowledged).await;
}

/// Clients on both processes, a few sessions; one process is SIGKILLed mid-run.
/// Every acknowledged turn is stored exactly once at its number, no question twice,
/// numbers gap-free; the survivor goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_killed_under_load_leaves_every_acknowledged_turn_once() {
    const SESSIONS: usize = 4;
    const REQUESTS: usize = 240;
    const CLIENTS: usize = 8;
    let table = unique_table_name("sigkill");
    let [first, mut second] = two_handlers(&table, &[]).await;
    let client = reqwest::Client::new();
    let addresses = [first.address.clone(), second.address.clone()];
    let killed_after = Arc::new(tokio::sync::Notify::new());

    let asking = async {
        use futures::StreamExt;
        futures::stream::iter(0..REQUESTS)
            .map(|i| {
                let session = format!("crowd-{}", i % SESSIONS);
                let question = format!("killed run: question {i}");
                let address = addresses[(i / SESSIONS) % 2].clone();
                let client = client.clone();
                let killed_after = killed_after.clone();
                async move {
                    if i == REQUESTS / 3 {
                        killed_after.notify_one();
                    }
                    let body = json!({"question": question, "session_id": session, "enable_persistence": true});
                    let Ok(response) = client.post(format!("{address}/api/query")).json(&body).send().await else {
                        return None; // The killed process: no answer, nothing acknowledged.
                    };
                    let reply: Value = response.json().await.ok()?;
                    (reply["persisted"] == true).then(|| (session, reply["turn"].as_u64().unwrap(), question))
                }
            })
            .buffer_unordered(CLIENTS)
            .filter_map(|acknowledged| async move { acknowledged })
            .collect::<Vec<_>>()
            .await
    };
    let killing = async {
        killed_after.notified().await;
        second.kill().await;
    };
    let (acknowledged, ()) = tokio::join!(asking, killing);
    assert!(
        acknowledged.len() >= REQUESTS / 3,
        "only {} acknowledged",
        acknowledged.len()
    );

    // The survivor continues every session where the killed process left it.
    let mut after = acknowledged.clone();
    for s in 0..SESSIONS {
        let question = format!("after the kill: session {s}");
        let session = format!("crowd-{s}");
        let (status, reply) = post_query(
            &client,
            &first.address,
            json!({"question": question, "session_id": session, "enable_persistence": true}),
        )
        .await;
        assert_eq!(
            (status, &reply["persisted"]),
            (200, &json!(true)),
            "{reply}"
        );
        after.push((session, reply["turn"].as_u64().unwrap(), question));
    }
    let stored =
        assert_stored_exactly_once(&shared_table_endpoint(), &table, SESSIONS, &after).await;
    println!(
        "sigkill: {} of {REQUESTS} turns acknowledged with one of two processes killed after {} requests; {stored} stored, each acknowledged one exactly once",
        acknowledged.len(),
        REQUESTS / 3
    );
}
