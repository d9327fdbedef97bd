//! Microsoft Entra tokens from a managed identity, against a local fake of App
//! Service's identity endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), as the
//! platform runs the handler: model, search and storage calls carry its tokens,
//! each identity is asked for by its client id, a token is fetched once and
//! reused until shortly before it expires, and no token reaches the logs.
//! Also: how the handler logs when its output is not a terminal.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::azurite::free_port;
use crate::fake_upstream::{chat_completion, search_results, FakeServer, Recorded, Reply};

const APP_CLIENT_ID: &str = "11111111-2222-4333-8444-555555555555";
const STORAGE_CLIENT_ID: &str = "66666666-7777-4888-9999-aaaaaaaaaaaa";
const IDENTITY_HEADER: &str = "identity-header-secret";
const COGNITIVE: &str = "https://cognitiveservices.azure.com";
const SEARCH: &str = "https://search.azure.com";
const STORAGE: &str = "https://storage.azure.com";

/// App Service's identity endpoint: a token per request, `token-N-for-<resource>`,
/// valid for `lifetime`, in the platform's response shape.
async fn identity_endpoint(lifetime: Duration) -> FakeServer {
    FakeServer::start(move |n, request| {
        let resource = request.query.get("resource").cloned().unwrap_or_default();
        let expires_on = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            + lifetime;
        Reply::ok(json!({
            "access_token": token_for(n, &resource),
            "expires_on": expires_on.as_secs().to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": request.query.get("client_id").cloned().unwrap_or_default(),
        }))
    })
    .await
}

fn token_for(n: usize, resource: &str) -> String {
    let host = resource.trim_start_matches("https://").replace('.', "-");
    format!("eyJ0eXAi.entra-token-{n}-for-{host}")
}

/// The handler binary, run as the platform runs it: its settings in the
/// environment, no local.settings.json, stdout and stderr piped into a file.
struct Handler {
    address: String,
    child: tokio::process::Child,
    log: std::path::PathBuf,
    _cwd: tempfile::TempDir,
}

impl Handler {
    async fn start(settings: &[(&str, &str)]) -> Handler {
        let cwd = tempfile::tempdir().unwrap();
        let log = cwd.path().join("handler.log");
        let file = std::fs::File::create(&log).unwrap();
        let port = free_port();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .current_dir(cwd.path())
            .env_clear()
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("handler starts");
        let address = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("{address}/")).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "handler exited early: {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "handler did not start in 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Handler {
            address,
            child,
            log,
            _cwd: cwd,
        }
    }

    async fn ask(&self, body: Value) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}/api/query", self.address))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn health(&self) -> Value {
        reqwest::get(format!("{}/api/health", self.address))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Stops the handler and returns everything it wrote.
    async fn stop(mut self) -> Vec<u8> {
        let _ = self.child.kill().await;
        std::fs::read(&self.log).unwrap()
    }
}

fn token_requests(endpoint: &FakeServer, resource: &str) -> Vec<Recorded> {
    endpoint
        .requests()
        .into_iter()
        .filter(|r| r.query.get("resource").map(String::as_str) == Some(resource))
        .collect()
}

/// Azure OpenAI and Azure AI Search without keys, storage by identity at a port
/// nothing listens on, all behind the fake identity endpoint.
async fn keyless_services(
    identity: &FakeServer,
) -> (FakeServer, FakeServer, Vec<(String, String)>) {
    let model = FakeServer::start(|_, _| Reply::ok(chat_completion("It posts payments."))).await;
    let search = FakeServer::start(|_, _| {
        Reply::ok(search_results(vec![
            json!({"@search.score": 2.0, "id": "LONPF2.cbl", "title": "LONPF2", "content": "PROCEDURE DIVISION."}),
        ]))
    })
    .await;
    let settings = [
        ("IDENTITY_ENDPOINT", format!("{}/msi/token", identity.url)),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
        ("AZURE_CLIENT_ID", APP_CLIENT_ID.to_owned()),
        ("AZURE_OPENAI_ENDPOINT", model.url.clone()),
        ("AZURE_OPENAI_DEPLOYMENT", "gpt-4o".to_owned()),
        ("AZURE_SEARCH_ENDPOINT", search.url.clone()),
        ("AZURE_SEARCH_INDEX", "code".to_owned()),
        (
            "AzureWebJobsStorage__tableServiceUri",
            format!("http://127.0.0.1:{}/acct", free_port()),
        ),
        (
            "AzureWebJobsStorage__clientId",
            STORAGE_CLIENT_ID.to_owned(),
        ),
        ("STORAGE_TIMEOUT_SECONDS", "2".to_owned()),
        // As much as anyone could ask for: tokens must stay out even so.
        ("RUST_LOG", "trace".to_owned()),
    ]
    .map(|(name, value)| (name.to_owned(), value));
    (model, search, settings.to_vec())
}

fn as_pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

#[tokio::test]
async fn managed_identity_tokens_authenticate_model_search_and_storage_calls() {
    let identity = identity_endpoint(Duration::from_secs(3600)).await;
    let (model, search, settings) = keyless_services(&identity).await;
    let handler = Handler::start(&as_pairs(&settings)).await;

    for n in 0..3 {
        let body = handler
            .ask(json!({"question": format!("What does LONPF2 do? ({n})"),
                        "session_id": "identity", "enable_persistence": true}))
            .await;
        assert_eq!(body["mode"], "azure-openai", "{body}");
    }

    // Each service's calls carry the token issued for its resource.
    for (service, resource, calls) in [
        ("model", COGNITIVE, model.requests()),
        ("search", SEARCH, search.requests()),
    ] {
        assert!(calls.len() >= 3, "{service}: {calls:?}");
        let issued = format!(
            "Bearer {}",
            token_for(first_index(&identity, resource), resource)
        );
        for call in &calls {
            assert_eq!(
                call.header("authorization"),
                Some(issued.as_str()),
                "{service}"
            );
            assert_eq!(call.header("api-key"), None, "{service}");
        }
    }

    // One token request per resource however many calls: the token is reused.
    // App Service's protocol, with the app's client id for the model and search,
    // and storage's own for storage.
    for (resource, client_id) in [
        (COGNITIVE, APP_CLIENT_ID),
        (SEARCH, APP_CLIENT_ID),
        (STORAGE, STORAGE_CLIENT_ID),
    ] {
        let requests = token_requests(&identity, resource);
        assert_eq!(requests.len(), 1, "{resource}: {requests:?}");
        let request = &requests[0];
        assert_eq!(request.path, "/msi/token");
        assert_eq!(request.query["api-version"], "2019-08-01");
        assert_eq!(request.query["client_id"], client_id, "{resource}");
        assert_eq!(request.header("x-identity-header"), Some(IDENTITY_HEADER));
    }

    let logs = handler.stop().await;
    let logs = String::from_utf8_lossy(&logs);
    assert!(logs.contains("Microsoft Entra token fetched"), "{logs}");
    for secret in ["entra-token", "eyJ0eXAi", IDENTITY_HEADER] {
        assert!(!logs.contains(secret), "{secret} logged: {logs}");
    }
}

/// The number of the identity endpoint's first request for `resource`.
fn first_index(identity: &FakeServer, resource: &str) -> usize {
    identity
        .requests()
        .iter()
        .position(|r| r.query.get("resource").map(String::as_str) == Some(resource))
        .unwrap_or_else(|| panic!("no token was asked for {resource}"))
}

#[tokio::test]
async fn a_token_about_to_expire_is_fetched_again() {
    // Four minutes' life is inside the five-minute renewal margin.
    let identity = identity_endpoint(Duration::from_secs(240)).await;
    let (model, _search, settings) = keyless_services(&identity).await;
    let handler = Handler::start(&as_pairs(&settings)).await;
    for n in 0..2 {
        handler
            .ask(json!({"question": format!("What does LONPF2 do? ({n})")}))
            .await;
    }
    let requests = token_requests(&identity, COGNITIVE);
    assert_eq!(requests.len(), 2, "{requests:?}");
    let calls = model.requests();
    assert_eq!(calls.len(), 2);
    assert_ne!(
        calls[0].header("authorization"),
        calls[1].header("authorization"),
        "the second call carries the renewed token"
    );
    handler.stop().await;
}

#[tokio::test]
async fn health_reports_storage_that_cannot_be_reached_and_the_log_says_how_to_start_it() {
    let closed = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;TableEndpoint=http://127.0.0.1:{}/devstoreaccount1",
        free_port()
    );
    let handler = Handler::start(&[
        ("AzureWebJobsStorage", &closed),
        ("STORAGE_TIMEOUT_SECONDS", "2"),
    ])
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = handler.health().await;
        assert_eq!(health["durable_storage"], true, "{health}");
        if health["storage"] == "unreachable" {
            break;
        }
        assert_eq!(health["storage"], "reachable", "{health}");
        assert!(Instant::now() < deadline, "still {health} after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = handler.stop().await;
    let logs = String::from_utf8_lossy(&logs);
    let lines: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("durable storage is configured but unreachable"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(lines[0].contains("scripts/azurite"), "{logs}");
    assert!(lines[0].contains("AzureWebJobsStorage"), "{logs}");
}

#[tokio::test]
async fn logs_have_no_colour_codes_when_piped_and_are_json_lines_on_request() {
    for format in ["text", "json"] {
        let handler = Handler::start(&[("LOG_FORMAT", format), ("RUST_LOG", "info")]).await;
        handler
            .ask(json!({"question": "What does LONPF2 do?"}))
            .await;
        let logs = handler.stop().await;
        assert!(!logs.is_empty());
        assert!(!logs.contains(&0x1b), "escape codes in {format} logs");
        let text = String::from_utf8(logs).unwrap();
        assert!(text.contains("/api/query"), "{text}");
        if format == "json" {
            for line in text.lines() {
                let parsed: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(parsed["level"].is_string(), "{line}");
            }
        }
    }
}

/// A certificate authority and a certificate it issued for 127.0.0.1, as PEM
/// files in `dir`: (authority, certificate, key).
fn loopback_certificate(dir: &std::path::Path) -> [String; 3] {
    let mut authority = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    authority.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(rcgen::DnType::CommonName, "session-rag test CA");
    let authority =
        rcgen::CertifiedIssuer::self_signed(authority, rcgen::KeyPair::generate().unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &authority)
        .unwrap();
    [
        ("ca.pem", authority.pem()),
        ("cert.pem", certificate.pem()),
        ("key.pem", key.serialize_pem()),
    ]
    .map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.to_str().unwrap().to_owned()
    })
}

/// An identity endpoint issuing what Microsoft Entra issues: a JWT for the
/// resource asked for, from `sts.windows.net`, valid for an hour (Azurite's
/// OAuth mode checks these claims, not the signature).
async fn jwt_identity_endpoint() -> FakeServer {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    FakeServer::start(|_, request| {
        let resource = request.query.get("resource").cloned().unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let part = |value: Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let token = format!(
            "{}.{}.{}",
            part(json!({"typ": "JWT", "alg": "RS256"})),
            part(
                json!({"aud": resource, "iat": now - 60, "nbf": now - 60, "exp": now + 3600,
                        "iss": "https://sts.windows.net/72f988bf-0000-4000-8000-2d7cd011db47/"})
            ),
            URL_SAFE_NO_PAD.encode("not checked"),
        );
        Reply::ok(json!({
            "access_token": token,
            "expires_on": (now + 3600).to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": "",
        }))
    })
    .await
}

#[tokio::test]
async fn storage_by_managed_identity_works_against_azurite_in_oauth_mode_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let [authority, certificate, key] = loopback_certificate(dir.path());
    let azurite = crate::azurite::AzuriteProcess::start_with(&[
        "--oauth",
        "basic",
        "--cert",
        &certificate,
        "--key",
        &key,
    ])
    .await;
    let identity = jwt_identity_endpoint().await;
    let endpoint = format!("{}/msi/token", identity.url);
    let storage = azurite.https_endpoint();
    let settings = [
        ("IDENTITY_ENDPOINT", endpoint.as_str()),
        ("IDENTITY_HEADER", IDENTITY_HEADER),
        ("AzureWebJobsStorage__tableServiceUri", storage.as_str()),
        ("STORAGE_TIMEOUT_SECONDS", "3"),
    ];
    let question = |n: usize| {
        json!({"question": format!("What does LONPF2 do? ({n})"),
               "session_id": "oauth", "enable_persistence": true})
    };

    // Trusting the test's certificate authority: turns are stored with bearer tokens.
    let trusting = [
        settings.as_slice(),
        &[("STORAGE_TRUSTED_CA_FILE", &authority)],
    ]
    .concat();
    let handler = Handler::start(&trusting).await;
    for n in 0..2 {
        let body = handler.ask(question(n)).await;
        assert_eq!(body["persisted"], true, "{body}");
        assert_eq!(body["turn"], n, "{body}");
    }
    assert_eq!(handler.health().await["storage"], "reachable");
    assert_eq!(token_requests(&identity, STORAGE).len(), 1);
    handler.stop().await;

    // The certificate is trusted by that handler only: without the setting the
    // same storage cannot be reached.
    let handler = Handler::start(&settings).await;
    let body = handler.ask(question(2)).await;
    assert_eq!(body["persisted"], false, "{body}");
    handler.stop().await;

    // Azurite does check the token: one that is not a JWT is refused.
    let opaque = identity_endpoint(Duration::from_secs(3600)).await;
    let opaque_endpoint = format!("{}/msi/token", opaque.url);
    let mut refused = trusting.clone();
    refused[0] = ("IDENTITY_ENDPOINT", opaque_endpoint.as_str());
    let handler = Handler::start(&refused).await;
    let body = handler.ask(question(2)).await;
    assert_eq!(body["persisted"], false, "{body}");
    assert_eq!(token_requests(&opaque, STORAGE).len(), 1);
    handler.stop().await;
}
