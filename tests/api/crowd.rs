//! Many clients asking through several real `handler` processes that share one
//! table, and the check that follows: every acknowledged turn stored exactly once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::azurite::{self, free_port};
use crate::helpers::{raw_table_client, stored_rows};

/// A `handler` process serving a table, started as the Functions host starts it.
pub struct HandlerProcess {
    pub address: String,
    child: tokio::process::Child,
    _cwd: tempfile::TempDir,
}

impl HandlerProcess {
    /// `extra_env` adds settings (a shorter storage budget, say).
    pub async fn start(endpoint: &str, table: &str, extra_env: &[(&str, &str)]) -> HandlerProcess {
        // No local.settings.json where it runs: only what is set here applies.
        let cwd = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .current_dir(cwd.path())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env(
                "AZURE_STORAGE_CONNECTION_STRING",
                azurite::connection_string(endpoint),
            )
            .env("CHAT_HISTORY_TABLE", table)
            .env("RUST_LOG", "warn")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("handler starts");
        let address = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        // Like the host: poll GET / until anything answers.
        while reqwest::get(format!("{address}/")).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("handler exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "handler did not start within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        HandlerProcess {
            address,
            child,
            _cwd: cwd,
        }
    }
}

impl HandlerProcess {
    /// SIGKILLs the process, as a crashed or evicted instance ends: no graceful
    /// shutdown, requests in flight cut off.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("handler killed");
    }
}

/// A crowd's run: how many turns were asked and acknowledged, and how long it took.
pub struct CrowdRun {
    /// (session, turn, question) of every reply with `persisted: true`.
    pub acknowledged: Vec<(String, u64, String)>,
    pub degraded: usize,
    pub elapsed: Duration,
}

/// Sends `requests` persistent questions (named after `round`, so rounds never
/// repeat a question) from `clients` concurrent clients over `sessions` sessions,
/// consecutive turns of a session going to different handlers. `meanwhile` runs
/// alongside (a fault, say). Every answer must be a 200.
pub async fn ask_as_crowd(
    round: &str,
    handlers: &[HandlerProcess],
    sessions: usize,
    clients: usize,
    requests: usize,
    meanwhile: impl Future<Output = ()>,
) -> CrowdRun {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let asking = futures::stream::iter(0..requests)
        .map(|i| {
            let session = format!("crowd-{}", i % sessions);
            let handler = &handlers[(i / sessions) % handlers.len()];
            let question = format!("{round}: question {i} from client {}", i % clients);
            let request = client.post(format!("{}/api/query", handler.address)).json(
                &json!({"question": question, "session_id": session, "enable_persistence": true}),
            );
            async move {
                let response = request.send().await.expect("handler answers");
                assert_eq!(response.status(), 200, "no request may fail");
                let body: Value = response.json().await.unwrap();
                (session, question, body)
            }
        })
        .buffer_unordered(clients)
        .collect::<Vec<_>>();
    let (replies, ()) = tokio::join!(asking, meanwhile);
    let elapsed = started.elapsed();
    let mut run = CrowdRun {
        acknowledged: Vec::new(),
        degraded: 0,
        elapsed,
    };
    for (session, question, body) in replies {
        if body["persisted"] == true {
            run.acknowledged
                .push((session, body["turn"].as_u64().unwrap(), question));
        } else {
            assert_eq!(body["turn"], Value::Null, "{body}");
            assert!(!body["warnings"].as_array().unwrap().is_empty(), "{body}");
            run.degraded += 1;
        }
    }
    run
}

/// Reads every crowd session back and asserts: turn numbers gap-free from 0, no
/// question stored twice, every acknowledged turn stored at its number. Returns
/// how many turns are stored (unacknowledged ones may be among them).
pub async fn assert_stored_exactly_once(
    endpoint: &str,
    table: &str,
    sessions: usize,
    acknowledged: &[(String, u64, String)],
) -> usize {
    let raw = raw_table_client(endpoint, table);
    let mut stored: HashMap<(String, u64), String> = HashMap::new();
    let mut questions = HashSet::new();
    for session in (0..sessions).map(|s| format!("crowd-{s}")) {
        let rows = stored_rows(&raw, &session).await;
        let numbers: Vec<u64> = rows
            .iter()
            .map(|row| row["RowKey"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            numbers,
            (0..rows.len() as u64).collect::<Vec<_>>(),
            "{session}: numbers must be gap-free"
        );
        for (number, row) in numbers.into_iter().zip(&rows) {
            let user = row["user"].as_str().unwrap().to_owned();
            assert!(questions.insert(user.clone()), "{user:?} is stored twice");
            stored.insert((session.clone(), number), user);
        }
    }
    for (session, turn, question) in acknowledged {
        assert_eq!(
            stored.get(&(session.clone(), *turn)),
            Some(question),
            "acknowledged turn {turn} of {session}"
        );
    }
    stored.len()
}
