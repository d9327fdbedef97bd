//! Analytics over HTTP, on every backend the sessions API reads (in-process,
//! Table Storage in the shared Azurite, Cosmos DB in the shared stand-in): known turns and feedback give known
//! figures, per customer and app-wide; date ranges; what is refused. Days come
//! from a clock the tests control.

use chrono::{TimeDelta, TimeZone, Utc};
use serde_json::{json, Value};
use session_rag::clock::{Clock, TimeControl};
use session_rag::settings::Settings;

use crate::azurite::{shared_table_endpoint, unique_table_name};
use crate::helpers::{
    analytics_table_for, on_every_backend, raw_table_client, spawn_app_with, spawn_on, stored_rows,
    use_table, Backend, TestApp, TestResponse,
};

struct Figures {
    app: TestApp,
    backend: Backend,
    table: String,
    time: TimeControl,
}

impl Figures {
    /// The app on `backend`, its clock at noon (UTC) on 10 March 2026.
    async fn start(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Self {
        let (clock, time) = Clock::controlled(Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap());
        let (app, table) = spawn_on(backend, "analytics", |settings| {
            settings.clock = clock;
            configure(settings);
        })
        .await;
        Self {
            app,
            backend,
            table,
            time,
        }
    }

    /// Asks in `session` as `customer` and returns the stored turn's number.
    async fn say(&self, session: &str, customer: Option<&str>) -> u64 {
        let reply = self
            .app
            .ask(json!({
                "question": "What does LONPF2 do?",
                "session_id": session,
                "customer_id": customer,
                "enable_persistence": self.backend != Backend::InProcess,
            }))
            .await;
        reply["turn"].as_u64().expect("the turn was kept")
    }

    /// Rates (`Some`) or un-rates turn `turn` of `session` as `customer`.
    async fn rate(&self, session: &str, turn: u64, customer: &str, rating: Option<&str>) {
        let url = format!(
            "{}/api/sessions/{session}/turns/{turn}/feedback?customer_id={customer}",
            self.app.address
        );
        let request = match rating {
            Some(rating) => self.app.client.put(url).json(&json!({"rating": rating})),
            None => self.app.client.delete(url),
        };
        let status = request.send().await.unwrap().status().as_u16();
        assert!(status == 200 || status == 204, "{status}");
    }

    async fn get(&self, path_and_query: &str) -> TestResponse {
        let url = format!("{}{path_and_query}", self.app.address);
        self.app.send(self.app.client.get(url)).await
    }

    /// `GET path_and_query`, expected to succeed.
    async fn figures(&self, path_and_query: &str) -> Value {
        let response = self.get(path_and_query).await;
        assert_eq!(response.status, 200, "{}", response.body);
        response.body
    }
}

on_every_backend!(
    known_turns_and_feedback_give_known_figures,
    date_ranges_narrow_the_figures,
    bad_requests_are_refused,
);

async fn known_turns_and_feedback_give_known_figures(backend: Backend) {
    let figures = Figures::start(backend, |_| {}).await;
    for _ in 0..3 {
        figures.say("a-1", Some("alice")).await;
    }
    figures.say("a-2", Some("alice")).await;
    figures.say("b-1", Some("bob")).await;
    figures.say("b-1", Some("bob")).await;
    figures.say("anonymous", None).await;

    figures.rate("a-1", 0, "alice", Some("up")).await;
    figures.rate("a-1", 1, "alice", Some("up")).await;
    figures.rate("a-1", 2, "alice", Some("down")).await;
    // A change of mind, a removal, and a rating given again: counted as changes.
    figures.rate("a-1", 1, "alice", Some("down")).await;
    figures.rate("a-1", 2, "alice", None).await;
    figures.rate("a-1", 2, "alice", None).await;
    figures.rate("a-1", 0, "alice", Some("up")).await;
    figures.rate("b-1", 0, "bob", Some("down")).await;

    let alice = figures.figures("/api/analytics?customer_id=alice").await;
    assert_eq!(
        alice,
        json!({
            "conversations": 2, "turns": 4, "feedback": {"up": 1, "down": 1},
            "satisfaction": 0.5,
            "days": [{"date": "2026-03-10", "conversations": 2, "turns": 4, "up": 1, "down": 1}],
        })
    );
    let bob = figures.figures("/api/analytics?customer_id=bob").await;
    assert_eq!(
        (
            &bob["conversations"],
            &bob["turns"],
            &bob["feedback"],
            &bob["satisfaction"]
        ),
        (
            &json!(1),
            &json!(2),
            &json!({"up": 0, "down": 1}),
            &json!(0.0)
        )
    );
    let nobody = figures.figures("/api/analytics?customer_id=carol").await;
    assert_eq!(
        nobody,
        json!({"conversations": 0, "turns": 0, "feedback": {"up": 0, "down": 0}, "satisfaction": null, "days": []})
    );

    // App-wide: everyone's, the anonymous conversation too; two customers so far.
    let app = figures.figures("/api/analytics/app").await;
    assert_eq!(
        app,
        json!({
            "conversations": 4, "turns": 7, "feedback": {"up": 1, "down": 2},
            "satisfaction": 1.0 / 3.0, "customers": 2,
            "days": [{"date": "2026-03-10", "conversations": 4, "turns": 7, "up": 1, "down": 2, "customers": 2}],
        })
    );

    // Deleting a conversation does not un-count it; a customer is new only once.
    let deleted = figures
        .app
        .client
        .delete(format!(
            "{}/api/sessions/a-2?customer_id=alice",
            figures.app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    figures.say("a-3", Some("alice")).await;
    let alice = figures.figures("/api/analytics?customer_id=alice").await;
    assert_eq!(
        (&alice["conversations"], &alice["turns"]),
        (&json!(3), &json!(5))
    );
    let app = figures.figures("/api/analytics/app").await;
    assert_eq!(app["customers"], 2);

    if backend == Backend::Table {
        // The figures live in a table of their own, apart from the seed's rows.
        let counters = raw_table_client(
            &shared_table_endpoint(),
            &analytics_table_for(&figures.table),
        );
        assert!(!stored_rows(&counters, "customer:alice").await.is_empty());
        assert!(!stored_rows(&counters, "app").await.is_empty());
    }
}

async fn date_ranges_narrow_the_figures(backend: Backend) {
    let figures = Figures::start(backend, |_| {}).await;
    // 10 March: a conversation of two turns, the first rated up.
    figures.say("first", Some("alice")).await;
    figures.say("first", Some("alice")).await;
    figures.time.advance(TimeDelta::days(1));
    // 11 March: a new conversation, the first one continued, and the rating of a
    // 10 March answer changed: it counts on the day of the answer.
    figures.say("second", Some("alice")).await;
    figures.say("first", Some("alice")).await;
    figures.rate("first", 0, "alice", Some("up")).await;
    figures.rate("first", 1, "alice", Some("down")).await;
    figures.rate("first", 2, "alice", Some("up")).await;
    figures.say("elsewhere", Some("bob")).await;

    let tenth = json!({"date": "2026-03-10", "conversations": 1, "turns": 2, "up": 1, "down": 1});
    let eleventh =
        json!({"date": "2026-03-11", "conversations": 1, "turns": 2, "up": 1, "down": 0});
    let alice = |range: &str| format!("/api/analytics?customer_id=alice{range}");
    let days = |body: Value| body["days"].clone();
    assert_eq!(
        days(figures.figures(&alice("")).await),
        json!([tenth, eleventh])
    );
    assert_eq!(
        days(
            figures
                .figures(&alice("&from=2026-03-10&to=2026-03-11"))
                .await
        ),
        json!([tenth, eleventh])
    );
    let only_tenth = figures.figures(&alice("&to=2026-03-10")).await;
    assert_eq!(
        (
            &only_tenth["turns"],
            &only_tenth["satisfaction"],
            &only_tenth["days"]
        ),
        (&json!(2), &json!(0.5), &json!([tenth]))
    );
    let only_eleventh = figures.figures(&alice("&from=2026-03-11")).await;
    assert_eq!(
        (
            &only_eleventh["conversations"],
            &only_eleventh["satisfaction"],
            &only_eleventh["days"]
        ),
        (&json!(1), &json!(1.0), &json!([eleventh]))
    );
    let empty = figures
        .figures(&alice("&from=2026-03-12&to=2026-03-31"))
        .await;
    assert_eq!(
        empty,
        json!({"conversations": 0, "turns": 0, "feedback": {"up": 0, "down": 0}, "satisfaction": null, "days": []})
    );
    let app = figures
        .figures("/api/analytics/app?from=2026-03-11&to=2026-03-11")
        .await;
    assert_eq!(
        (&app["conversations"], &app["turns"], &app["customers"]),
        (&json!(2), &json!(3), &json!(1))
    );
}

async fn bad_requests_are_refused(backend: Backend) {
    let figures = Figures::start(backend, |_| {}).await;
    figures.say("s", Some("alice")).await;
    for (path, code) in [
        ("/api/analytics", "invalid_customer_id"),
        ("/api/analytics?from=2026-03-01", "invalid_customer_id"),
        ("/api/analytics?customer_id=a%23b", "invalid_customer_id"),
        (
            "/api/analytics?customer_id=alice&from=2026-3-1",
            "invalid_date",
        ),
        (
            "/api/analytics?customer_id=alice&to=2026-02-30",
            "invalid_date",
        ),
        (
            "/api/analytics?customer_id=alice&from=yesterday",
            "invalid_date",
        ),
        ("/api/analytics?customer_id=alice&from=", "invalid_date"),
        (
            "/api/analytics?customer_id=alice&from=2026-03-11&to=2026-03-10",
            "invalid_date",
        ),
        ("/api/analytics/app?to=2026-13-01", "invalid_date"),
        (
            "/api/analytics/app?from=2026-03-11&to=2026-03-10",
            "invalid_date",
        ),
    ] {
        figures.get(path).await.assert_error(400, code);
    }
}

/// Behind App Service Authentication the principal decides whose figures, as for
/// every sessions route; a stated customer id is ignored.
#[tokio::test]
async fn the_signed_in_principal_decides_whose_figures() {
    let figures = Figures::start(Backend::InProcess, |settings| {
        settings.trust_easy_auth_headers = true;
    })
    .await;
    let asked = figures
        .app
        .send(
            figures
                .app
                .client
                .post(format!("{}/api/query", figures.app.address))
                .header("x-ms-client-principal-id", "alice")
                .json(&json!({"question": "What does LONPF2 do?", "session_id": "s"})),
        )
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    let url = format!("{}/api/analytics?customer_id=bob", figures.app.address);
    let as_alice = figures
        .app
        .send(
            figures
                .app
                .client
                .get(&url)
                .header("x-ms-client-principal-id", "alice"),
        )
        .await;
    assert_eq!((as_alice.status, &as_alice.body["turns"]), (200, &json!(1)));
    figures
        .get("/api/analytics?customer_id=alice")
        .await
        .assert_error(400, "invalid_customer_id");
}

/// Not a pass/fail check on time: prints how long one analytics call takes for a
/// customer with 1,000 and then 10,000 conversations against Azurite
/// (`cargo test analytics_latency -- --nocapture`), and what one add to a daily
/// counter takes, alone and 16 at once. The first 1,000 conversations are counted
/// as the service counts them, one `add_counts` each (turn 0 with two more turns),
/// spread over 30 days by four stores at once (four processes); the next 9,000 in
/// one add per day and store, which leaves the same rows. Their turn rows are not
/// written: nothing reads them here. The figures must come out exact.
#[tokio::test]
async fn analytics_latency_for_1000_and_10000_conversations() {
    use session_rag::storage::{ConversationStore, DayCounts, Scope};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const DAYS: usize = 30;
    const STORES: usize = 4;
    let table = unique_table_name("analyticslatency");
    let stores: Vec<Arc<dyn ConversationStore>> = (0..STORES)
        .map(|_| Arc::new(crate::helpers::shared_table_store(&table)) as _)
        .collect();
    let busy = Scope::Customer(session_rag::domain::CustomerId::parse("busy").unwrap());
    let app =
        spawn_app_with(|settings| use_table(settings, &shared_table_endpoint(), &table)).await;
    let day = |n: usize| {
        chrono::NaiveDate::from_ymd_opt(2026, 2, 1).unwrap() + chrono::Days::new((n % DAYS) as u64)
    };
    let conversation = |conversations: i64| DayCounts {
        conversations,
        turns: 3 * conversations,
        ..DayCounts::default()
    };
    let median = |mut times: Vec<Duration>| {
        times.sort();
        (times[times.len() / 2], times[times.len() * 95 / 100])
    };

    // One add at a time, from one store: what a turn's counter costs when idle.
    let mut alone = Vec::new();
    for n in 0..100 {
        let started = Instant::now();
        stores[0]
            .add_counts(&busy, day(n), conversation(1))
            .await
            .unwrap();
        alone.push(started.elapsed());
    }
    // The next 900, 16 at once from four stores.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(100));
    let workers = (0..16).map(|worker| {
        let (store, busy, next) = (stores[worker % STORES].clone(), busy.clone(), next.clone());
        tokio::spawn(async move {
            let mut adds = Vec::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= 1_000 {
                    return adds;
                }
                let started = Instant::now();
                store
                    .add_counts(&busy, day(n), conversation(1))
                    .await
                    .unwrap();
                adds.push(started.elapsed());
            }
        })
    });
    let mut together = Vec::new();
    for worker in futures::future::join_all(workers).await {
        together.extend(worker.unwrap());
    }
    let (alone, together) = (median(alone), median(together));
    println!(
        "one add to a daily counter against Azurite: alone median {:?}, p95 {:?}; 16 at once from four stores median {:?}, p95 {:?}",
        alone.0, alone.1, together.0, together.1
    );

    for conversations in [1_000usize, 10_000] {
        if conversations == 10_000 {
            let each = (9_000 / (DAYS * STORES)) as i64;
            for n in 0..DAYS * STORES {
                let added = stores[n % STORES].add_counts(&busy, day(n), conversation(each));
                added.await.unwrap();
            }
        }
        let mut calls = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let url = format!("{}/api/analytics?customer_id=busy", app.address);
            let figures = app.send(app.client.get(url)).await;
            calls.push(started.elapsed());
            assert_eq!(figures.status, 200, "{}", figures.body);
            assert_eq!(figures.body["conversations"], conversations);
            assert_eq!(figures.body["turns"], 3 * conversations);
            assert_eq!(figures.body["days"].as_array().unwrap().len(), DAYS);
        }
        let (median, p95) = median(calls);
        println!(
            "analytics of one customer with {conversations} conversations over {DAYS} days against Azurite: \
             one call median {median:?}, p95 {p95:?}"
        );
    }
}
