//! Storage failing under a running handler, and coming back: a private Azurite that
//! a test stops (with SIGINT, so it keeps what it acknowledged) or freezes, then
//! brings back. Answers degrade meanwhile; no acknowledged turn is lost.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::azurite::{unique_table_name, AzuriteProcess};
use crate::helpers::{raw_table_client, spawn_app_with, stored_rows, use_table, TestApp};

const SESSION: &str = "outage";
/// The per-request storage budget in these tests (the default is 10 s).
const BUDGET: Duration = Duration::from_secs(2);

/// A handler on a private Azurite, asking numbered questions on one durable session.
struct Outage {
    azurite: AzuriteProcess,
    endpoint: String,
    table: String,
    app: TestApp,
    asked: usize,
    /// (turn, question number) of every turn acknowledged as persisted.
    acknowledged: Vec<(u64, usize)>,
}

fn question(n: usize) -> String {
    format!("question {n} about LONPF2")
}

impl Outage {
    async fn start() -> Outage {
        let azurite = AzuriteProcess::start().await;
        let endpoint = azurite.endpoint();
        let table = unique_table_name("faults");
        let app = spawn_app_with(|settings| {
            use_table(settings, &endpoint, &table);
            settings.storage_timeout = BUDGET;
        })
        .await;
        Outage {
            azurite,
            endpoint,
            table,
            app,
            asked: 0,
            acknowledged: Vec::new(),
        }
    }

    /// Asks the next question (always a 200) and how long the answer took.
    async fn ask(&mut self) -> (Value, Duration) {
        let started = Instant::now();
        let body = self
            .app
            .ask(json!({
                "question": question(self.asked),
                "session_id": SESSION,
                "enable_persistence": true,
            }))
            .await;
        if body["persisted"] == true {
            self.acknowledged
                .push((body["turn"].as_u64().unwrap(), self.asked));
        }
        self.asked += 1;
        (body, started.elapsed())
    }

    async fn ask_persisted(&mut self) {
        let (body, _) = self.ask().await;
        assert_eq!(body["persisted"], true, "{body}");
    }

    /// Asks while storage is failing: each answer comes back degraded. Returns how
    /// long each took. The first may still be answered from the window this process
    /// held (its turn is not saved, so the window is dropped); the others have no
    /// history.
    async fn ask_degraded(&mut self, times: usize) -> Vec<Duration> {
        let mut durations = Vec::new();
        for i in 0..times {
            let (body, took) = self.ask().await;
            assert_eq!(body["persisted"], false, "{body}");
            assert_eq!(body["turn"], json!(null));
            if i > 0 {
                assert_eq!(body["history_turns"], 0, "{body}");
            }
            assert!(!body["warnings"].as_array().unwrap().is_empty(), "{body}");
            assert!(!body["answer"].as_str().unwrap().is_empty());
            durations.push(took);
        }
        durations
    }

    /// Asks until a turn is persisted again: the breaker tries storage on its own.
    async fn ask_until_persisted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.ask().await.0["persisted"] != true {
            assert!(
                Instant::now() < deadline,
                "storage not used again 20 s after it came back"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every acknowledged turn is stored once, at its number, and numbers are
    /// gap-free. (A turn whose acknowledgement was lost to a timeout may be stored too.)
    async fn assert_acknowledged_turns_stored_once(&self) {
        let rows = stored_rows(&raw_table_client(&self.endpoint, &self.table), SESSION).await;
        let numbers: Vec<u64> = rows
            .iter()
            .map(|row| row["RowKey"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(numbers, (0..rows.len() as u64).collect::<Vec<_>>());
        for &(turn, n) in &self.acknowledged {
            let copies: Vec<u64> = rows
                .iter()
                .zip(&numbers)
                .filter(|(row, _)| row["user"] == question(n).as_str())
                .map(|(_, number)| *number)
                .collect();
            assert_eq!(copies, [turn], "{:?}", question(n));
        }
    }
}

/// After the first failure the circuit breaker turns requests away at once instead
/// of letting each wait on storage. Normally that is every following request; on a
/// slow machine the 500 ms back-off may end before the second arrives, which then
/// makes one more trial, so two of the three following must be quick.
fn assert_breaker_spares_the_wait(durations: &[Duration]) {
    let quick = durations[1..]
        .iter()
        .filter(|took| **took < Duration::from_millis(500))
        .count();
    assert!(quick >= 2, "{durations:?}");
}

#[tokio::test]
async fn a_stopped_store_degrades_answers_and_loses_no_acknowledged_turn() {
    let mut outage = Outage::start().await;
    outage.ask_persisted().await;

    outage.azurite.stop().await;
    let durations = outage.ask_degraded(4).await;
    assert!(
        durations[0] < BUDGET + Duration::from_secs(1),
        "{durations:?}"
    );
    assert_breaker_spares_the_wait(&durations);

    outage.azurite.restart().await;
    outage.ask_until_persisted().await;
    outage.ask_persisted().await;
    assert!(outage.acknowledged.len() >= 3);
    outage.assert_acknowledged_turns_stored_once().await;
}

#[tokio::test]
async fn a_hanging_store_costs_one_budget_then_is_skipped() {
    let mut outage = Outage::start().await;
    outage.ask_persisted().await;

    outage.azurite.pause();
    let durations = outage.ask_degraded(4).await;
    assert!(durations[0] >= BUDGET, "{durations:?}");
    assert!(
        durations[0] < BUDGET + Duration::from_secs(1),
        "{durations:?}"
    );
    assert_breaker_spares_the_wait(&durations);

    outage.azurite.resume();
    outage.ask_until_persisted().await;
    outage.ask_persisted().await;
    outage.assert_acknowledged_turns_stored_once().await;
}
