//! 10,000 generated malformed or hostile requests against a handler with durable
//! storage: none may get a 5xx, crash the handler, answer without a JSON body, or
//! return another session's data. Prints what it sent and what came back.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::azurite;
use crate::helpers::spawn_app_with_storage;

const REQUESTS: usize = 10_000;
const CONCURRENCY: usize = 16;
const VICTIM_SECRET: &str = "victim-secret-7f3a";

/// One generated request: method, path, body bytes.
struct Attack {
    method: reqwest::Method,
    path: String,
    body: Vec<u8>,
    /// A valid request on a session id used nowhere else: it must see no history.
    fresh_session: bool,
}

fn post(body: impl Into<Vec<u8>>) -> Attack {
    Attack {
        method: reqwest::Method::POST,
        path: "/api/query".into(),
        body: body.into(),
        fresh_session: false,
    }
}

/// An id built from hostile pieces; unique in the run (a repeat gets a suffix), and
/// never the victim's own id, so every valid one names a conversation of its own.
fn hostile_id(rng: &mut StdRng, used: &mut HashSet<String>) -> String {
    let pieces = [
        "' or PartitionKey ne '",
        "victim",
        "victim'",
        "Victim",
        " victim",
        "'; --",
        "%2F..%2F",
        "$filter=true",
        "ünïcødé-会话-🎉",
        "a/b",
        "a\\b",
        "a#b",
        "a?b",
        "\u{0}",
        "\u{1f}",
        "\u{7f}",
        "\u{85}",
        "\n",
        "..",
        "*",
        "\"",
        "",
    ];
    let mut id = String::new();
    for _ in 0..rng.gen_range(1..4) {
        id.push_str(pieces.choose(rng).unwrap());
    }
    if rng.gen_bool(0.05) {
        id = "x".repeat(rng.gen_range(250..300));
    }
    if id == "victim" || used.contains(&id) {
        id.push_str(&format!("-{}", used.len()));
    }
    used.insert(id.clone());
    id
}

fn random_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..8) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e300),
        4 => json!([1, "two", null]),
        5 => json!({"nested": {"deeper": [1]}}),
        6 => json!(""),
        _ => json!("What does LONPF2 do?"),
    }
}

fn attack(rng: &mut StdRng, used: &mut HashSet<String>) -> Attack {
    match rng.gen_range(0..12) {
        // Truncated or corrupted JSON.
        0 => {
            let valid = br#"{"question":"What does LONPF2 do?","session_id":"s"}"#;
            let cut = rng.gen_range(0..valid.len());
            post(valid[..cut].to_vec())
        }
        // Random bytes, sometimes invalid UTF-8.
        1 => post((0..rng.gen_range(0..64)).map(|_| rng.gen::<u8>()).collect::<Vec<_>>()),
        // Deep nesting.
        2 => {
            let depth = rng.gen_range(100..5_000);
            post(format!("{}{}", "[".repeat(depth), "]".repeat(depth)))
        }
        // Valid JSON that is not an object.
        3 => post(random_value(rng).to_string()),
        // Wrong types in every field.
        4 => {
            let mut body = json!({"question": "What does LONPF2 do?"});
            let field = *["question", "session_id", "enable_persistence", "customer_id", "metadata"]
                .choose(rng)
                .unwrap();
            body[field] = random_value(rng);
            post(body.to_string())
        }
        // Hostile ids, persistent, sometimes with an owner: valid ones must start afresh.
        5 | 6 => Attack {
            fresh_session: true,
            ..post(
                json!({
                    "question": "Tell me everything you remember",
                    "session_id": hostile_id(rng, used),
                    "customer_id": if rng.gen_bool(0.3) { Value::String(hostile_id(rng, used)) } else { Value::Null },
                    "enable_persistence": true,
                })
                .to_string(),
            )
        },
        // Huge fields.
        7 => {
            let question = "q".repeat(*[8_001, 20_000, 500_000].choose(rng).unwrap());
            post(json!({"question": question}).to_string())
        }
        8 => {
            let metadata = json!({"blob": "m".repeat(rng.gen_range(16_380..40_000))});
            post(json!({"question": "q", "metadata": metadata}).to_string())
        }
        // Over the body limit.
        9 => post(vec![b' '; 1024 * 1024 + rng.gen_range(1..1024)]),
        // Unknown routes and wrong methods.
        10 => Attack {
            method: [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH]
                .choose(rng)
                .unwrap()
                .clone(),
            path: ["/api/query", "/api/query/../query", "/api/%00", "/api/query?x=1", "/admin"]
                .choose(rng)
                .unwrap()
                .to_string(),
            body: b"{}".to_vec(),
            fresh_session: false,
        },
        // Control characters and blanks in the question.
        _ => {
            let question = ["\u{0}\u{1}", " \t\n", "\u{200b}", "é\u{301}"].choose(rng).unwrap();
            post(json!({ "question": question }).to_string())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_requests_get_json_4xx_or_fresh_answers_and_never_a_5xx() {
    let table = azurite::unique_table_name("hostile");
    let app = spawn_app_with_storage(&table).await;
    // A victim conversation whose content must never reach anyone else.
    for _ in 0..2 {
        let body = app
            .ask(json!({"question": format!("My secret is {VICTIM_SECRET}"), "session_id": "victim", "enable_persistence": true}))
            .await;
        assert_eq!(body["persisted"], true, "{body}");
    }

    let mut rng = StdRng::seed_from_u64(20261126);
    let mut used = HashSet::new();
    let attacks: Vec<Attack> = (0..REQUESTS).map(|_| attack(&mut rng, &mut used)).collect();
    let started = Instant::now();
    let outcomes: Vec<(u16, String)> = futures::stream::iter(attacks)
        .map(|attack| {
            let client = app.client.clone();
            let url = format!("{}{}", app.address, attack.path);
            async move {
                let response = client
                    .request(attack.method, url)
                    .body(attack.body)
                    .send()
                    .await
                    .expect("the handler keeps answering");
                let status = response.status().as_u16();
                let content_type = response.headers().get("content-type").cloned();
                let text = response.text().await.unwrap();
                assert!(
                    content_type
                        .is_some_and(|c| c.to_str().unwrap().starts_with("application/json")),
                    "{status}: {text}"
                );
                let body: Value = serde_json::from_str(&text).expect("every answer is JSON");
                assert!(status < 500, "{status}: {body}");
                assert!(
                    !text.contains(VICTIM_SECRET),
                    "another session's data leaked: {body}"
                );
                let outcome = if status == 200 {
                    if attack.fresh_session {
                        assert_eq!(body["history_turns"], 0, "{body}");
                    }
                    "answered".to_owned()
                } else {
                    body["error"]["code"]
                        .as_str()
                        .expect("errors carry a code")
                        .to_owned()
                };
                (status, outcome)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let mut tally: BTreeMap<(u16, String), usize> = BTreeMap::new();
    for outcome in outcomes {
        *tally.entry(outcome).or_default() += 1;
    }
    println!(
        "hostile input: {REQUESTS} requests in {:.1} s, no 5xx; by outcome:",
        elapsed.as_secs_f64()
    );
    for ((status, outcome), count) in &tally {
        println!("  {status} {outcome}: {count}");
    }
    assert!(
        tally.keys().any(|(status, _)| *status == 200),
        "some hostile ids are valid"
    );
    assert!(tally.keys().any(|(_, code)| code == "payload_too_large"));

    // The victim's conversation is intact and still answers with its history.
    let victim = app
        .ask(json!({"question": "and then?", "session_id": "victim", "enable_persistence": true}))
        .await;
    assert_eq!(victim["turn"], 2, "{victim}");
    assert_eq!(victim["history_turns"], 2);
}
