//! The Functions host, emulated: Core Tools cannot be installed here, so this test
//! does what the host does with our app files. It validates `host.json` and every
//! `*/function.json` against the official schemas, lays out the deployment the way
//! `func` packages it, starts `defaultExecutablePath` with the app settings and
//! `FUNCTIONS_CUSTOMHANDLER_PORT`, waits on `GET /`, passes each HTTP function's
//! request on, and invokes every other function with the custom-handler
//! invocation payload. HTTP requests go both ways the host sends them: forwarded
//! unchanged (`enableForwardingHttpRequest`), and through a streaming reverse
//! proxy (`enableProxyingHttpRequest`, the host's YARP).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warp::{Filter, Reply as _};

use crate::fake_upstream::{streamed, FakeServer, Reply};
use crate::helpers::EventReader;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every function folder: (name, function.json).
fn functions() -> Vec<(String, Value)> {
    let mut found: Vec<_> = std::fs::read_dir(repo())
        .unwrap()
        .filter_map(|entry| {
            let dir = entry.ok()?.path();
            let definition = dir.join("function.json");
            definition.is_file().then(|| {
                let name = dir.file_name().unwrap().to_string_lossy().into_owned();
                (name, read_json(&definition))
            })
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// `definition` as the host reads it: `%NAME%` in a binding property is replaced by
/// the app setting `NAME` (here from `local.settings.json`); an unset one is an error.
fn with_app_settings(definition: &Value, settings: &Value) -> Value {
    match definition {
        Value::String(text) => {
            let mut parts = text.split('%');
            let mut resolved = parts.next().unwrap_or_default().to_owned();
            while let (Some(name), Some(rest)) = (parts.next(), parts.next()) {
                let value = settings["Values"][name]
                    .as_str()
                    .unwrap_or_else(|| panic!("app setting {name} is used but not set"));
                resolved.push_str(value);
                resolved.push_str(rest);
            }
            Value::String(resolved)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| with_app_settings(item, settings))
                .collect(),
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), with_app_settings(value, settings)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn trigger(definition: &Value) -> &Value {
    definition["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["direction"] == "in" && b["type"].as_str().unwrap().ends_with("Trigger"))
        .expect("every function has one trigger")
}

#[test]
fn app_files_follow_the_official_schemas() {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    let host_schema = compiler
        .compile(
            repo()
                .join("schemas/host.json.schema.json")
                .to_str()
                .unwrap(),
            &mut schemas,
        )
        .unwrap();
    // The function.json schema declares draft-04 but uses draft-06's `const`;
    // read strictly as draft-04, `const` means nothing and every binding matches
    // two definitions. It is checked as its authors mean it: under draft-07.
    let mut function_schema = read_json(&repo().join("schemas/function.json.schema.json"));
    function_schema["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    let function_schema_location = "https://json.schemastore.org/function.json";
    compiler
        .add_resource(function_schema_location, function_schema)
        .unwrap();
    let function_schema = compiler
        .compile(function_schema_location, &mut schemas)
        .unwrap();

    let host = read_json(&repo().join("host.json"));
    if let Err(error) = schemas.validate(&host, host_schema) {
        panic!("host.json: {error:#}");
    }
    assert_eq!(host["version"], "2.0");
    // Proxying streams responses; hosts without it ignore the key and forward.
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true);
    assert_eq!(host["customHandler"]["enableProxyingHttpRequest"], true);
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );

    let functions = functions();
    assert!(functions.iter().any(|(name, _)| name == "query"));
    let settings = read_json(&repo().join("local.settings.json"));
    for (name, definition) in &functions {
        let resolved = with_app_settings(definition, &settings);
        if let Err(error) = schemas.validate(&resolved, function_schema) {
            panic!("{name}/function.json: {error:#}");
        }
        // Forwarding works only for one httpTrigger in and one http out.
        if trigger(definition)["type"] == "httpTrigger" {
            let bindings = definition["bindings"].as_array().unwrap();
            assert_eq!(
                bindings.len(),
                2,
                "{name}: forwarding needs exactly one http in and out"
            );
            assert!(bindings
                .iter()
                .any(|b| b["type"] == "http" && b["direction"] == "out"));
        }
    }

    // The schema itself must catch mistakes, or the checks above prove nothing.
    let mut broken = host.clone();
    broken["version"] = json!("3.0");
    assert!(schemas.validate(&broken, host_schema).is_err());
    for (key, value) in [("enableStreaming", json!(true)), ("port", json!("7071"))] {
        let mut broken = host.clone();
        broken["customHandler"][key] = value;
        assert!(schemas.validate(&broken, host_schema).is_err(), "{key}");
    }
}

/// The durable conversation the sessions functions are called on, and its owner.
const SESSION: &str = "host-conversation";
const OWNER: &str = "host-customer";

/// A request the host would forward for each HTTP function and method: its query
/// string, its body and the status it expects. Functions run in name order, so
/// `session`'s DELETE comes after `export` has read the conversation.
fn sample_request(function: &str, method: &reqwest::Method) -> (String, Value, u16) {
    let owner = format!("customer_id={OWNER}");
    match (function, method.as_str()) {
        ("query", _) => (
            String::new(),
            json!({"question": "What does LONPF2 do?", "session_id": "host-1"}),
            200,
        ),
        ("health" | "chat" | "openapi" | "whoami", _) => (String::new(), Value::Null, 200),
        ("sessions" | "session", "GET") => (owner, Value::Null, 200),
        ("export", _) => (format!("{owner}&format=json"), Value::Null, 200),
        ("feedback", "PUT") => (owner, json!({"rating": "up"}), 200),
        ("feedback", "DELETE") => (owner, Value::Null, 204),
        ("session", "PATCH") => (owner, json!({"title": "Renamed by the host"}), 200),
        ("session", "DELETE") => (owner, Value::Null, 204),
        // After `session`'s DELETE: nothing of the customer's is left.
        ("sessions", "DELETE") => (owner, Value::Null, 200),
        // After `session`'s DELETE too: nothing to share, nothing shared.
        ("share", _) => (owner, Value::Null, 404),
        ("shared", _) => (String::new(), Value::Null, 404),
        ("analytics", _) => (format!("{owner}&from=2026-01-01"), Value::Null, 200),
        ("analytics_app", _) => ("to=2099-12-31".into(), Value::Null, 200),
        (other, method) => {
            panic!("add a sample request for {method} of the new function {other:?} to this test")
        }
    }
}

#[test]
fn the_app_figures_need_the_admin_key_and_a_customers_the_function_key() {
    let functions = functions();
    let auth_level = |name: &str| {
        let (_, definition) = functions
            .iter()
            .find(|(function, _)| function == name)
            .unwrap_or_else(|| panic!("no function {name}"));
        (
            trigger(definition)["authLevel"]
                .as_str()
                .unwrap()
                .to_owned(),
            trigger(definition)["route"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        auth_level("analytics_app"),
        ("admin".to_owned(), "analytics/app".to_owned())
    );
    assert_eq!(
        auth_level("analytics"),
        ("function".to_owned(), "analytics".to_owned())
    );
}

/// What the host posts to `/{functionName}` for a non-HTTP function.
fn invocation_payload(function: &str, trigger: &Value) -> Value {
    let name = trigger["name"].as_str().unwrap();
    let data = match trigger["type"].as_str().unwrap() {
        "timerTrigger" => json!({
            "Schedule": {"AdjustForDST": true},
            "ScheduleStatus": {
                "Last": "2026-01-01T00:00:00+00:00",
                "Next": "2026-01-01T01:00:00+00:00",
                "LastUpdated": "2026-01-01T00:00:00+00:00"
            },
            "IsPastDue": false
        }),
        other => panic!("add the {other} payload for {function:?} to this test"),
    };
    json!({
        "Data": {name: data},
        "Metadata": {
            "sys": {
                "MethodName": function,
                "UtcNow": "2026-01-01T01:00:00.0012345Z",
                "RandGuid": "6c8e3f0a-53a2-4b8f-9d7e-0f6f2b1c9a47"
            }
        },
    })
}

/// What each non-HTTP function must answer.
fn expected_reply(function: &str) -> Value {
    match function {
        // The conversation the test made is fresh: nothing has expired.
        "purge" => {
            json!({"Outputs": {}, "Logs": ["purged 0 expired conversations"], "ReturnValue": null})
        }
        other => panic!("add the expected reply of the new function {other:?} to this test"),
    }
}

/// Starts the freshly copied handler. While another test thread forks, its child
/// briefly holds our copy's write descriptor and exec meets ETXTBSY: try again.
async fn spawn_copied(command: &mut tokio::process::Command) -> tokio::process::Child {
    let mut attempts = 0;
    loop {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            spawned => return spawned.expect("the host can start defaultExecutablePath"),
        }
    }
}

/// The app deployed as the host runs it: the package laid out, the handler
/// started with the app settings, and answering `GET /`.
struct Deployment {
    /// The handler's own address.
    base: String,
    /// `extensions.http.routePrefix`.
    route_prefix: String,
    child: tokio::process::Child,
    _app_root: tempfile::TempDir,
}

impl Deployment {
    /// Deploys with the app settings of `local.settings.json`, durable storage in
    /// the shared Azurite, and `settings`.
    async fn start(settings: &[(&str, &str)]) -> Self {
        let host = read_json(&repo().join("host.json"));
        let description = &host["customHandler"]["description"];
        let route_prefix = host["extensions"]["http"]["routePrefix"]
            .as_str()
            .unwrap_or("api")
            .to_owned();

        // The deployment package: app root with host.json, function folders and the binary.
        let app_root = tempfile::tempdir().unwrap();
        std::fs::copy(repo().join("host.json"), app_root.path().join("host.json")).unwrap();
        for (name, _) in functions() {
            std::fs::create_dir(app_root.path().join(&name)).unwrap();
            std::fs::copy(
                repo().join(&name).join("function.json"),
                app_root.path().join(&name).join("function.json"),
            )
            .unwrap();
        }
        let executable = app_root
            .path()
            .join(description["defaultExecutablePath"].as_str().unwrap());
        std::fs::copy(env!("CARGO_BIN_EXE_handler"), &executable).unwrap();
        let working_directory = app_root
            .path()
            .join(description["workingDirectory"].as_str().unwrap_or(""));

        // App settings reach the handler as environment variables, as in Azure.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let local_settings = read_json(&repo().join("local.settings.json"));
        let mut command = tokio::process::Command::new(&executable);
        command
            .current_dir(&working_directory)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (name, value) in local_settings["Values"].as_object().unwrap() {
            command.env(name, value.as_str().unwrap());
        }
        // The app settings of a deployment: its storage (the shared Azurite, a table of
        // this test's own) and a retention for the purge.
        command
            .env(
                "AzureWebJobsStorage",
                crate::azurite::connection_string(&crate::azurite::shared_table_endpoint()),
            )
            .env(
                "CHAT_HISTORY_TABLE",
                crate::azurite::unique_table_name("host"),
            )
            .env("SESSION_TTL_DAYS", "30")
            .envs(settings.iter().copied());
        let child = spawn_copied(&mut command).await;

        // The host probes GET / every 25 ms until any HTTP answer arrives.
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if client.get(format!("{base}/")).send().await.is_ok() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "handler never answered GET /"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Self {
            base,
            route_prefix,
            child,
            _app_root: app_root,
        }
    }
}

/// Calls every function the way the host does, through `base` (the handler, or
/// a proxy in front of it), and checks each answer.
async fn call_every_function(deployment: &Deployment, base: &str) {
    let client = reqwest::Client::new();
    let route_prefix = &deployment.route_prefix;
    let created = client
        .post(format!("{base}/{route_prefix}/query"))
        .json(&json!({
            "question": "What does LONPF2 do?",
            "session_id": SESSION,
            "customer_id": OWNER,
            "enable_persistence": true,
        }))
        .send()
        .await
        .unwrap();
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["persisted"], true, "{created}");

    let started = Instant::now();
    for (name, definition) in functions() {
        let trigger = trigger(&definition);
        let invocation_id = format!(
            "00000000-0000-0000-0000-{:012}",
            started.elapsed().as_nanos() % 1_000_000_000_000
        );
        if trigger["type"] == "httpTrigger" {
            let route = trigger["route"]
                .as_str()
                .unwrap_or(&name)
                .replace("{session_id}", SESSION)
                .replace("{turn}", "0")
                .replace("{share_id}", "AAAAAAAAAAAAAAAAAAAAAA");
            for method in trigger["methods"].as_array().expect("methods are declared") {
                let method =
                    reqwest::Method::from_bytes(method.as_str().unwrap().to_uppercase().as_bytes())
                        .unwrap();
                let (query, body, expected) = sample_request(&name, &method);
                let mut request = client
                    .request(
                        method.clone(),
                        format!("{base}/{route_prefix}/{route}?{query}"),
                    )
                    .header("x-azure-functions-invocationid", &invocation_id);
                if !body.is_null() {
                    request = request.json(&body);
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status().as_u16(), expected, "{method} {name}");
                if expected == 204 {
                    continue;
                }
                // The chat page is the one function that answers with HTML.
                let content_type = if name == "chat" {
                    "text/html"
                } else {
                    "application/json"
                };
                assert!(response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with(content_type));
            }
        } else {
            // Non-HTTP triggers arrive as POST /{functionName} with the invocation
            // payload, straight from the host in either mode.
            let response = client
                .post(format!("{}/{name}", deployment.base))
                .header("x-azure-functions-invocationid", &invocation_id)
                .json(&invocation_payload(&name, trigger))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200, "{name}");
            let reply: Value = response.json().await.unwrap();
            assert_eq!(reply, expected_reply(&name), "{name}");
        }
    }
}

#[tokio::test]
async fn the_handler_serves_every_function_as_a_forwarding_host_would() {
    let mut deployment = Deployment::start(&[]).await;
    call_every_function(&deployment, &deployment.base.clone()).await;

    // The host stops the worker with SIGTERM; the handler finishes and exits cleanly.
    let pid = deployment.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), deployment.child.wait())
        .await
        .expect("handler exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Headers that belong to one connection, which a proxy does not pass on.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// A reverse proxy in the manner of the host's YARP in proxying mode: each
/// request goes on to `backend` with `X-Forwarded-*` headers and the backend's
/// loopback address as `Host`, and each response comes back piece by piece, as
/// its bytes arrive. Returns the proxy's address.
async fn streaming_proxy(backend: String) -> String {
    let client = reqwest::Client::new();
    let route = warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |method: warp::http::Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: warp::http::HeaderMap,
                  body: bytes::Bytes| {
                let (client, backend) = (client.clone(), backend.clone());
                async move {
                    let mut url = format!("{backend}{}", path.as_str());
                    if !query.is_empty() {
                        url = format!("{url}?{query}");
                    }
                    let mut request = client.request(method, url).body(body);
                    for (name, value) in &headers {
                        if name != "host" && !HOP_BY_HOP.contains(&name.as_str()) {
                            request = request.header(name, value);
                        }
                    }
                    let original_host = headers.get("host").cloned().unwrap();
                    let response = request
                        .header("x-forwarded-for", "127.0.0.1")
                        .header("x-forwarded-proto", "http")
                        .header("x-forwarded-host", original_host)
                        .send()
                        .await
                        .expect("the handler answers");
                    let status = response.status();
                    let passed: Vec<_> = response
                        .headers()
                        .iter()
                        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
                        .map(|(name, value)| (name.clone(), value.clone()))
                        .collect();
                    let pieces = futures::stream::unfold(response, |mut response| async move {
                        let piece = response.chunk().await.expect("the handler's reply");
                        piece.map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), response))
                    });
                    let mut reply =
                        warp::reply::stream(sync_wrapper::SyncStream::new(pieces)).into_response();
                    *reply.status_mut() = status;
                    reply.headers_mut().extend(passed);
                    reply
                }
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    address
}

#[tokio::test]
async fn the_handler_streams_through_a_proxying_host() {
    let host = read_json(&repo().join("host.json"));
    assert_eq!(host["customHandler"]["enableProxyingHttpRequest"], true);

    // A model that takes its time: 4 pieces, 400 ms apart.
    let pieces = ["LONPF2 ", "posts ", "loan ", "payments."];
    let gap = Duration::from_millis(400);
    let model = FakeServer::start(move |_, _| Reply::events(streamed(&pieces, gap))).await;
    let deployment =
        Deployment::start(&[("OPENAI_BASE_URL", &model.url), ("OPENAI_MODEL", "m")]).await;
    let proxy = streaming_proxy(deployment.base.clone()).await;
    call_every_function(&deployment, &proxy).await;

    let response = reqwest::Client::new()
        .post(format!("{proxy}/{}/query", deployment.route_prefix))
        .header("accept", "text/event-stream")
        .json(&json!({"question": "What does LONPF2 do?", "session_id": "host-stream"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = EventReader::new(response);
    assert_eq!(events.next().await.unwrap().name, "meta");
    let first = events.next().await.unwrap();
    let first_arrived = Instant::now();
    assert_eq!(first.data["text"], "LONPF2");
    let rest = events.rest().await;
    let finished = model.finished_at().expect("the model finished");
    assert!(
        first_arrived + gap < finished,
        "through the proxy, the first delta came {:?} before the model finished",
        finished - first_arrived
    );
    let done = rest.last().unwrap();
    assert_eq!(done.name, "done");
    assert_eq!(done.data["answer"], "LONPF2 posts loan payments.");
}
