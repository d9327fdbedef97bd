//! The slow suite: a crowd of clients on four handler processes sharing one table,
//! first with storage up, then with Azurite stopped and restarted in the middle.
//! Afterwards every acknowledged turn is stored exactly once, in order. Prints its
//! figures.

use std::time::Duration;

use crate::azurite::{unique_table_name, AzuriteProcess};
use crate::crowd::{ask_as_crowd, assert_stored_exactly_once, HandlerProcess};

const PROCESSES: usize = 4;
const CLIENTS: usize = 64;
const SESSIONS: usize = 20;

async fn handlers(endpoint: &str, table: &str, extra_env: &[(&str, &str)]) -> Vec<HandlerProcess> {
    futures::future::join_all(
        (0..PROCESSES).map(|_| HandlerProcess::start(endpoint, table, extra_env)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_and_sixty_four_clients_store_every_acknowledged_turn_once() {
    const REQUESTS: usize = 2_000;
    let azurite = AzuriteProcess::start().await;
    let endpoint = azurite.endpoint();
    let table = unique_table_name("crowd");
    let handlers = handlers(&endpoint, &table, &[]).await;

    let run = ask_as_crowd("steady", &handlers, SESSIONS, CLIENTS, REQUESTS, async {}).await;
    let stored = assert_stored_exactly_once(&endpoint, &table, SESSIONS, &run.acknowledged).await;
    println!(
        "crowd: {PROCESSES} processes x {CLIENTS} clients x {SESSIONS} sessions: {REQUESTS} turns in {:.1} s ({:.0} turns/s), {} acknowledged, {} degraded, {stored} stored",
        run.elapsed.as_secs_f64(),
        REQUESTS as f64 / run.elapsed.as_secs_f64(),
        run.acknowledged.len(),
        run.degraded,
    );
    // Storage stays up, but on a starved 2-core machine a storage call can outlast
    // its 3 s timeout; the breaker then degrades that handler's turns for a moment.
    // Those turns are answered and not acknowledged: allowed, and how many depends on
    // the machine's load (the bench reports the rate), so this asserts only that
    // storage carried most of the run.
    assert!(
        run.acknowledged.len() >= REQUESTS / 2,
        "storage was up, yet only {} of {REQUESTS} turns were persisted",
        run.acknowledged.len()
    );
    assert_eq!(run.acknowledged.len() + run.degraded, REQUESTS);
    assert!(stored >= run.acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_restarted_mid_run_costs_no_acknowledged_turn_and_no_error() {
    const REQUESTS: usize = 1_500;
    let mut azurite = AzuriteProcess::start().await;
    let endpoint = azurite.endpoint();
    let table = unique_table_name("restart");
    // A short budget so the outage costs seconds, not tens of seconds.
    let handlers = handlers(&endpoint, &table, &[("STORAGE_TIMEOUT_SECONDS", "2")]).await;

    let outage = async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        azurite.stop().await; // SIGINT: Azurite keeps what it acknowledged.
        tokio::time::sleep(Duration::from_secs(3)).await;
        azurite.restart().await;
    };
    let run = ask_as_crowd("outage", &handlers, SESSIONS, CLIENTS, REQUESTS, outage).await;
    assert!(run.degraded > 0, "the outage was seen");
    assert!(!run.acknowledged.is_empty());

    // Every handler goes back to storage on its own once its back-off ends.
    let mut acknowledged = run.acknowledged.clone();
    let mut recovery_rounds = 0;
    loop {
        recovery_rounds += 1;
        let round = format!("recovery {recovery_rounds}");
        let after =
            ask_as_crowd(&round, &handlers, SESSIONS, CLIENTS, 4 * SESSIONS, async {}).await;
        acknowledged.extend(after.acknowledged);
        if after.degraded == 0 {
            break;
        }
        assert!(
            recovery_rounds < 30,
            "storage never used again after the restart"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let stored = assert_stored_exactly_once(&endpoint, &table, SESSIONS, &acknowledged).await;
    println!(
        "outage: {REQUESTS} turns in {:.1} s with Azurite stopped for 3 s: {} acknowledged, {} degraded (200, persisted: false), 0 errors; recovered after {recovery_rounds} round(s); {stored} turns stored, every acknowledged one exactly once",
        run.elapsed.as_secs_f64(),
        run.acknowledged.len(),
        run.degraded,
    );
    assert!(stored >= acknowledged.len());
}
