//! Benchmark of the release `handler`: start-up time, throughput and latency of
//! `/api/query`, streamed answers against a fake model that streams at a fixed
//! pace, and resident memory. Prints tables; asserts nothing.
//!
//! Run through `scripts/bench` (it builds the release binary first).
//! Usage: bench [path/to/handler]

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_core::auth::Secret;
use azure_core::{Etag, TransportOptions};
use azure_data_tables::clients::{TableClient, TableServiceClientBuilder};
use azure_data_tables::IfMatchCondition;
use azure_storage::{CloudLocation, StorageCredentials};
use serde_json::{json, Value};
use session_rag::clock::Clock;
use session_rag::credential::Credentials;
use session_rag::domain::SessionId;
use session_rag::settings::{CredentialChoice, StorageConnection};
use session_rag::storage::{ConversationStore, TableStore};
use warp::Filter;

const STARTUP_RUNS: usize = 20;
/// Azurite's single account and its published development key (not a secret).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const REQUESTS_PER_RUN: usize = 2_500;
/// The fake model's pace: its first token this long after the request…
const MODEL_FIRST_TOKEN: Duration = Duration::from_millis(300);
/// …then this many more…
const MODEL_TOKENS: usize = 100;
/// …this far apart.
const MODEL_TOKEN_GAP: Duration = Duration::from_millis(20);
/// In-process turns for the memory figure, as runs of `REQUESTS_PER_RUN`.
const MEMORY_TURNS: usize = 100_000;
const MEMORY_SESSIONS: usize = 500;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Handler {
    child: Child,
    port: u16,
    _cwd: tempfile::TempDir,
}

impl Handler {
    /// Starts the handler as the Functions host would and returns once `GET /` answers.
    fn start(binary: &PathBuf, env: &[(String, String)]) -> (Handler, Duration) {
        let port = free_port();
        let cwd = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let child = Command::new(binary)
            .current_dir(cwd.path())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("handler starts");
        let address = format!("127.0.0.1:{port}");
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
                use std::io::{Read, Write};
                stream
                    .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .unwrap();
                let mut head = [0u8; 12];
                if stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1") {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "handler did not start"
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        let elapsed = started.elapsed();
        (
            Handler {
                child,
                port,
                _cwd: cwd,
            },
            elapsed,
        )
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct RunFigures {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    /// Operations whose turn was not stored (a persistent query answered with
    /// `persisted: false`).
    not_stored: usize,
}

/// Runs `op(0..REQUESTS_PER_RUN)` over `concurrency` workers; `op` returns whether
/// its turn was stored as asked.
async fn measure<F, Fut>(concurrency: usize, op: F) -> RunFigures
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let not_stored = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, op, not_stored) = (next.clone(), op.clone(), not_stored.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= REQUESTS_PER_RUN {
                        return latencies;
                    }
                    let sent = Instant::now();
                    if !op(n).await {
                        not_stored.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    RunFigures {
        requests_per_second: REQUESTS_PER_RUN as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        not_stored: not_stored.load(Ordering::Relaxed),
    }
}

/// `/api/query` with `body(n)` as request n.
async fn queries(
    port: u16,
    concurrency: usize,
    body: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> RunFigures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/query");
    measure(concurrency, move |n| {
        let request = body(n);
        let sent = client.post(&url).json(&request).send();
        async move {
            let response = sent.await.unwrap();
            assert_eq!(response.status(), 200);
            let reply: Value = response.json().await.unwrap();
            request["enable_persistence"] != true || reply["persisted"] == true
        }
    })
    .await
}

/// A client of Azurite's own, the SDK with a pooled connection and nothing else.
fn azurite_table(endpoint: &str, table: &str) -> TableClient {
    let location = CloudLocation::Custom {
        account: AZURITE_ACCOUNT.into(),
        uri: endpoint.trim_end_matches('/').to_owned(),
    };
    let credentials = StorageCredentials::access_key(AZURITE_ACCOUNT, Secret::new(AZURITE_KEY));
    TableServiceClientBuilder::with_location(location, credentials)
        .transport(TransportOptions::new(Arc::new(reqwest::Client::new())))
        .build()
        .table_client(table)
}

/// A session of the ceiling run: its next turn number and its last turn's ETag.
#[derive(Default)]
struct CeilingSession {
    next_turn: usize,
    last_etag: Option<Etag>,
}

/// The ceiling for persistent turns: the same storage work a steady turn costs
/// (one entity-group transaction: a Merge of the session's last turn under
/// `If-Match` of its ETag, and the insert of a turn as large as the handler's,
/// `sample`), driven straight at Azurite over 100 sessions.
async fn storage_ceiling(endpoint: &str, concurrency: usize, sample: &Value) -> RunFigures {
    let sample = Arc::new(sample.clone());
    let table = Arc::new(azurite_table(
        endpoint,
        &format!("ceiling{concurrency}x{}", std::process::id()),
    ));
    table.create().await.unwrap();
    // One writer per session at a time, as with the handler (which serves a
    // session's turns one after another): no transaction fails on a stale ETag.
    let sessions: Arc<Vec<tokio::sync::Mutex<CeilingSession>>> = Arc::new(
        (0..100)
            .map(|_| tokio::sync::Mutex::new(CeilingSession::default()))
            .collect(),
    );
    measure(concurrency, move |n| {
        let (table, sessions, sample) = (table.clone(), sessions.clone(), sample.clone());
        async move {
            let session = format!("p{}", n % 100);
            let mut state = sessions[n % 100].lock().await;
            let (turn, last) = (state.next_turn, state.last_etag.clone());
            let entity = json!({
                "PartitionKey": session, "RowKey": format!("{turn:04}"),
                "timestamp": "2026-01-01T00:00:00Z", "user": sample["question"],
                "assistant": sample["answer"], "metadata_json": "{}",
            });
            let mut batch = table.partition_key_client(&session).transaction();
            if let Some(etag) = last {
                let previous = format!("{:04}", turn - 1);
                let keys = json!({"PartitionKey": session, "RowKey": previous});
                batch = batch
                    .merge(previous, keys, Some(IfMatchCondition::Etag(etag)))
                    .unwrap();
            }
            let Ok(response) = batch.insert(entity).unwrap().await else {
                return false;
            };
            let inserted = response.operation_responses.last().unwrap();
            let stored = response
                .operation_responses
                .iter()
                .all(|op| op.status_code.is_success());
            if stored {
                state.next_turn += 1;
                state.last_etag = inserted.etag.clone();
            }
            stored
        }
    })
    .await
}

/// Window load time of `TableStore::recent(MAX_TURNS)` on sessions of each length:
/// warm (this process has served the session) and cold (a fresh process).
async fn window_loads(endpoint: &str) -> Vec<(usize, Duration, Duration)> {
    let table_name = format!("window{}", std::process::id());
    let raw = azurite_table(endpoint, &table_name);
    raw.create().await.unwrap();
    let connection = StorageConnection::connection_string(
        "AZURE_STORAGE_CONNECTION_STRING",
        format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};TableEndpoint={endpoint};"
        ),
    );
    let mut figures = Vec::new();
    for turns in [10usize, 1_000, 10_000] {
        let session = format!("long{turns}");
        // Seed-format rows in entity-group batches of 100.
        for first in (0..turns).step_by(100) {
            let mut batch = raw.partition_key_client(&session).transaction();
            for n in first..(first + 100).min(turns) {
                let row_key = if n < 10_000 {
                    format!("{n:04}")
                } else {
                    format!("9999{}{n}", n.to_string().len())
                };
                let entity = json!({"PartitionKey": session, "RowKey": row_key, "timestamp": "2026-01-01T00:00:00Z", "user": format!("question {n}"), "assistant": "answer", "metadata_json": "{}"});
                batch = batch.insert(entity).unwrap();
            }
            batch.await.unwrap();
        }
        let id = SessionId::parse(&session).unwrap();
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..20 {
            let store = TableStore::connect(
                &connection,
                &table_name,
                &format!("{table_name}Sessions"),
                &format!("{table_name}Shares"),
                &format!("{table_name}Analytics"),
                &Credentials::new(CredentialChoice::DeveloperTools, Clock::system()),
                &[],
            )
            .unwrap();
            let started = Instant::now();
            let window = store.recent(&id, 10).await.unwrap();
            cold.push(started.elapsed());
            assert_eq!(window.total as usize, turns);
            let started = Instant::now();
            store.recent(&id, 10).await.unwrap();
            warm.push(started.elapsed());
        }
        cold.sort_unstable();
        warm.sort_unstable();
        figures.push((turns, percentile(&warm, 0.5), percentile(&cold, 0.5)));
    }
    figures
}

/// A listing of `conversations` of one customer through `/api/sessions`: their
/// entries are written in the listing's previous format (straight into the
/// handler's listing table), so the first listing converts them. Returns the
/// conversion, the median first page of 20 and the median walk through all pages
/// of 100.
async fn listing_latency(
    endpoint: &str,
    port: u16,
    sessions_table: &str,
    conversations: usize,
) -> (Duration, Duration, Duration) {
    const RUNS: usize = 9;
    let customer = format!("busy{conversations}");
    let index = azurite_table(endpoint, sessions_table);
    let _ = index.create().await;
    let entries: Vec<Value> = (0..conversations)
        .map(|n| {
            let time = format!(
                "2026-11-{:02}T{:02}:{:02}:{:02}Z",
                1 + n % 25,
                n % 24,
                n % 60,
                n / 60 % 60
            );
            json!({
                "PartitionKey": customer, "RowKey": format!("conversation-{n:05}"),
                "title": format!("What does program {n} do?"), "turns": 1 + n % 7,
                "created_at": time, "updated_at": time,
            })
        })
        .collect();
    for chunk in entries.chunks(100) {
        let mut batch = index.partition_key_client(&customer).transaction();
        for entry in chunk {
            batch = batch.insert(entry).unwrap();
        }
        batch.await.unwrap();
    }
    let client = reqwest::Client::new();
    let list = |query: String| {
        let request = client
            .get(format!(
                "http://127.0.0.1:{port}/api/sessions?customer_id={customer}&{query}"
            ))
            .send();
        async move {
            let response = request.await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    // A conversion longer than the storage budget answers 503 and keeps its
    // progress: list again (past the circuit breaker's pause) until it is done.
    let started = Instant::now();
    loop {
        let response = client
            .get(format!(
                "http://127.0.0.1:{port}/api/sessions?customer_id={customer}"
            ))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => break,
            503 => tokio::time::sleep(Duration::from_secs(1)).await,
            status => panic!("listing answered {status}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "conversion never ends"
        );
    }
    let conversion = started.elapsed();
    let (mut first_pages, mut walks) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let started = Instant::now();
        let page = list(String::new()).await;
        first_pages.push(started.elapsed());
        assert_eq!(page["sessions"].as_array().unwrap().len(), 20);

        let started = Instant::now();
        let mut seen = 0;
        let mut query = "limit=100".to_owned();
        loop {
            let page = list(query).await;
            seen += page["sessions"].as_array().unwrap().len();
            let Some(token) = page["continuation"].as_str() else {
                break;
            };
            query = format!("limit=100&continuation={token}");
        }
        walks.push(started.elapsed());
        assert_eq!(seen, conversations);
    }
    first_pages.sort_unstable();
    walks.sort_unstable();
    (
        conversion,
        percentile(&first_pages, 0.5),
        percentile(&walks, 0.5),
    )
}

/// An OpenAI-compatible chat-completions server on loopback that streams every
/// answer at the pace above, and records how long after each request its first
/// token went out (the model's own time to first token).
async fn streaming_model() -> (String, Arc<Mutex<Vec<Duration>>>) {
    let first_tokens: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let recorded = first_tokens.clone();
    let route = warp::post().and(warp::body::bytes()).map(move |_: bytes::Bytes| {
        let received = tokio::time::Instant::now();
        let recorded = recorded.clone();
        // Part n: token n (0..MODEL_TOKENS), then the finish chunk, then [DONE].
        let parts = futures::stream::unfold(0, move |n| {
            let recorded = recorded.clone();
            async move {
                let data = match n {
                    n if n < MODEL_TOKENS => {
                        let due = received + MODEL_FIRST_TOKEN + MODEL_TOKEN_GAP * n as u32;
                        tokio::time::sleep_until(due).await;
                        if n == 0 {
                            recorded.lock().unwrap().push(received.elapsed());
                        }
                        json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": format!("token{n} ")}, "finish_reason": null}]}).to_string()
                    }
                    n if n == MODEL_TOKENS => json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string(),
                    n if n == MODEL_TOKENS + 1 => "[DONE]".to_owned(),
                    _ => return None,
                };
                let event = bytes::Bytes::from(format!("data: {data}\n\n"));
                Some((Ok::<_, std::convert::Infallible>(event), n + 1))
            }
        });
        warp::reply::with_header(
            warp::reply::stream(sync_wrapper::SyncStream::new(parts)),
            "content-type",
            "text/event-stream",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (url, first_tokens)
}

/// Times at the client of `requests` streamed answers over `concurrency`
/// connections: to the first `delta` and to `done`, each sorted.
async fn streamed_answers(
    port: u16,
    concurrency: usize,
    requests: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/query");
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let sent = Instant::now();
                    let mut response = client
                        .post(&url)
                        .header("accept", "text/event-stream")
                        .json(&json!({"question": "What does LONPF2 do?"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    let (mut received, mut first_delta) = (String::new(), None);
                    while let Some(chunk) = response.chunk().await.unwrap() {
                        received.push_str(&String::from_utf8_lossy(&chunk));
                        if first_delta.is_none() && received.contains("event: delta\n") {
                            first_delta = Some(sent.elapsed());
                        }
                    }
                    assert!(received.contains("event: done\n"), "{received}");
                    times.push((first_delta.unwrap(), sent.elapsed()));
                }
                times
            })
        })
        .collect();
    let (mut first, mut done) = (Vec::new(), Vec::new());
    for worker in workers {
        for (to_first, to_done) in worker.await.unwrap() {
            first.push(to_first);
            done.push(to_done);
        }
    }
    first.sort_unstable();
    done.sort_unstable();
    (first, done)
}

/// Resident memory of a fresh handler after `MEMORY_TURNS` in-process turns over
/// `MEMORY_SESSIONS` sessions, with `SESSION_MEMORY_MAX_MB` = `cap_mb` (`None`: the
/// default): (RSS idle, RSS after, sessions held, text of the turns held). The text
/// held is read back through the sessions API after RSS was taken.
async fn in_process_memory(
    binary: &PathBuf,
    cap_mb: Option<usize>,
    questions: [&'static str; 4],
) -> (f64, f64, usize, usize) {
    let env: Vec<(String, String)> = cap_mb
        .map(|mb| ("SESSION_MEMORY_MAX_MB".to_owned(), mb.to_string()))
        .into_iter()
        .collect();
    let (handler, _) = Handler::start(binary, &env);
    let idle = handler.rss_mib();
    for run in 0..MEMORY_TURNS / REQUESTS_PER_RUN {
        queries(handler.port, 16, move |n| {
            let n = run * REQUESTS_PER_RUN + n;
            json!({"question": questions[n % questions.len()], "session_id": format!("m{}", n % MEMORY_SESSIONS)})
        })
        .await;
    }
    let after = handler.rss_mib();
    let client = reqwest::Client::new();
    let (mut sessions, mut text) = (0, 0);
    for n in 0..MEMORY_SESSIONS {
        let response = client
            .get(format!(
                "http://127.0.0.1:{}/api/sessions/m{n}",
                handler.port
            ))
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            continue; // evicted
        }
        sessions += 1;
        let document: Value = response.json().await.unwrap();
        text += document["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().len())
            .sum::<usize>();
    }
    (idle, after, sessions, text)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    // Absolute, because each handler runs in a working directory of its own.
    let binary = std::fs::canonicalize(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/release/handler".into()),
    )
    .expect("the handler binary exists (scripts/bench builds it)");
    // Durable storage for the persistent runs: scripts/bench starts Azurite and
    // passes its table endpoint.
    let endpoint = std::env::var("SESSION_RAG_BENCH_TABLE_ENDPOINT").ok();

    let mut startups: Vec<Duration> = (0..STARTUP_RUNS)
        .map(|_| Handler::start(&binary, &[]).1)
        .collect();
    startups.sort_unstable();
    println!("## start-up (process start to first `GET /` answered), {STARTUP_RUNS} runs");
    println!(
        "median {} ms, min {} ms, max {} ms\n",
        ms(percentile(&startups, 0.5)),
        ms(startups[0]),
        ms(startups[STARTUP_RUNS - 1])
    );

    let mut env = Vec::new();
    if let Some(endpoint) = &endpoint {
        env.push((
            "AZURE_STORAGE_CONNECTION_STRING".to_owned(),
            format!("DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};TableEndpoint={endpoint};"),
        ));
        env.push((
            "CHAT_HISTORY_TABLE".to_owned(),
            format!("bench{}", std::process::id()),
        ));
    }
    let (handler, _) = Handler::start(&binary, &env);
    let idle = handler.rss_mib();

    println!("## /api/query, {REQUESTS_PER_RUN} requests per row, sample corpus, offline answerer");
    println!("| mode | connections | requests/s | p50 ms | p99 ms | not stored |");
    println!("|---|---|---|---|---|---|");
    let questions = [
        "What does LONPF2 do?",
        "What copybooks does it use?",
        "How are late fees computed?",
        "Which job runs the escrow analysis?",
    ];
    let mut modes: Vec<&str> = vec!["stateless", "in-process session"];
    if endpoint.is_some() {
        modes.push("persistent (100 sessions)");
    }
    let mut total = 0;
    for mode in modes {
        for concurrency in [16, 64] {
            let mode_name = mode.to_owned();
            let figures = queries(handler.port, concurrency, move |n| {
                let question = questions[n % questions.len()];
                match mode_name.as_str() {
                    "stateless" => json!({"question": question}),
                    "in-process session" => {
                        json!({"question": question, "session_id": format!("s{}", n % 1000)})
                    }
                    _ => json!({"question": question, "session_id": format!("p{concurrency}-{}", n % 100), "enable_persistence": true}),
                }
            })
            .await;
            total += REQUESTS_PER_RUN;
            println!(
                "| {mode} | {concurrency} | {:.0} | {} | {} | {} |",
                figures.requests_per_second,
                ms(figures.p50),
                ms(figures.p99),
                figures.not_stored
            );
        }
    }
    if let Some(endpoint) = &endpoint {
        let question = questions[0];
        let answer = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/query", handler.port))
            .json(&json!({ "question": question }))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["answer"]
            .clone();
        let turn = json!({"question": question, "answer": answer});
        for concurrency in [16, 64] {
            let figures = storage_ceiling(endpoint, concurrency, &turn).await;
            println!(
                "| ceiling: one transaction per turn (Merge of the last turn under If-Match + Insert) straight at Azurite | {concurrency} | {:.0} | {} | {} | {} |",
                figures.requests_per_second,
                ms(figures.p50),
                ms(figures.p99),
                figures.not_stored
            );
        }
    }
    if let Some(endpoint) = &endpoint {
        println!("\n## window load (`MAX_TURNS` = 10), median of 20");
        println!("| turns in session | warm ms | cold ms |");
        println!("|---|---|---|");
        for (turns, warm, cold) in window_loads(endpoint).await {
            println!("| {turns} | {} | {} |", ms(warm), ms(cold));
        }
    }
    let (model_url, model_first_tokens) = streaming_model().await;
    let model_env = [
        ("OPENAI_BASE_URL".to_owned(), model_url),
        ("OPENAI_MODEL".to_owned(), "bench".to_owned()),
    ];
    let (model_handler, _) = Handler::start(&binary, &model_env);
    println!("\n## streamed answers (`Accept: text/event-stream`), stateless, times at the client");
    println!(
        "fake model: first token {} ms after the request, then {MODEL_TOKENS} tokens {} ms apart",
        MODEL_FIRST_TOKEN.as_millis(),
        MODEL_TOKEN_GAP.as_millis()
    );
    println!("| answerer | connections | answers | first delta p50 ms | p99 ms | done p50 ms | p99 ms | added to the model's first token, p50 ms |");
    println!("|---|---|---|---|---|---|---|---|");
    let runs = [
        ("model", model_handler.port, 1, 10),
        ("model", model_handler.port, 16, 160),
        ("offline", handler.port, 1, 500),
        ("offline", handler.port, 16, 2_000),
    ];
    for (answerer, port, concurrency, requests) in runs {
        model_first_tokens.lock().unwrap().clear();
        let (first, done) = streamed_answers(port, concurrency, requests).await;
        let added = if answerer == "model" {
            let mut own = model_first_tokens.lock().unwrap().clone();
            own.sort_unstable();
            let (ours, model) = (percentile(&first, 0.5), percentile(&own, 0.5));
            format!(
                "{} (model's own: {})",
                ms(ours.saturating_sub(model)),
                ms(model)
            )
        } else {
            total += requests;
            "-".to_owned()
        };
        println!(
            "| {answerer} | {concurrency} | {requests} | {} | {} | {} | {} | {added} |",
            ms(percentile(&first, 0.5)),
            ms(percentile(&first, 0.99)),
            ms(percentile(&done, 0.5)),
            ms(percentile(&done, 0.99)),
        );
    }

    println!("\n## resident memory");
    println!(
        "idle after start-up: {idle:.1} MiB; after {total} requests: {:.1} MiB",
        handler.rss_mib()
    );
    if let Some(endpoint) = &endpoint {
        println!("\n## listing one customer's conversations (`GET /api/sessions`), median of 9");
        println!("| conversations | first page of 20 ms | all pages of 100 ms | converting the previous format (first listings) ms |");
        println!("|---|---|---|---|");
        let sessions_table = format!("bench{}Sessions", std::process::id());
        for conversations in [1_000, 10_000] {
            let (conversion, first_page, all_pages) =
                listing_latency(endpoint, handler.port, &sessions_table, conversations).await;
            println!(
                "| {conversations} | {} | {} | {} |",
                ms(first_page),
                ms(all_pages),
                ms(conversion)
            );
        }
    }
    drop(handler);

    println!("\n## in-process memory: {MEMORY_TURNS} turns over {MEMORY_SESSIONS} sessions, fresh handler each");
    println!("| SESSION_MEMORY_MAX_MB | RSS idle MiB | RSS after MiB | sessions held | text held MiB | RSS growth / text held |");
    println!("|---|---|---|---|---|---|");
    for cap_mb in [None, Some(1024)] {
        let (idle, after, sessions, text) = in_process_memory(&binary, cap_mb, questions).await;
        let text_mib = text as f64 / (1024.0 * 1024.0);
        println!(
            "| {} | {idle:.1} | {after:.1} | {sessions} | {text_mib:.1} | {:.2} |",
            cap_mb.map_or("default".to_owned(), |mb| mb.to_string()),
            (after - idle) / text_mib
        );
    }
}
