//! The local Cosmos DB for NoSQL stand-in (npm `@vercel/cosmosdb-server` behind
//! `scripts/cosmos-standin.mjs`) for the Cosmos DB tests: the one `scripts/test`
//! starts and announces in `SESSION_RAG_TEST_COSMOS_ENDPOINT`, each test in a
//! container of its own. Documents are written and inspected over plain HTTP, the
//! way another program (seed 000's code, say) would; the stand-in checks no
//! signatures.

use serde_json::Value;
use session_rag::clock::Clock;
use session_rag::credential::Credentials;
use session_rag::settings::{ApiKey, CosmosAuth, CosmosSettings, CredentialChoice, Settings};
use session_rag::storage::CosmosStore;

use crate::azurite::unique_table_name;

const NEED_STANDIN: &str =
    "Cosmos DB tests need the stand-in: run scripts/test (it installs and starts it)";

/// The database the tests use (seed 000's default).
pub const DATABASE: &str = "GenAI";

/// The Cosmos DB emulator's publicly documented key (the stand-in checks none).
const EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU9DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";

/// The shared stand-in's endpoint, `http://127.0.0.1:PORT/`.
pub fn shared_cosmos_endpoint() -> String {
    match std::env::var("SESSION_RAG_TEST_COSMOS_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => endpoint.trim().to_string(),
        _ => panic!("{NEED_STANDIN} (SESSION_RAG_TEST_COSMOS_ENDPOINT is not set)"),
    }
}

/// A container name no other test uses.
pub fn unique_container_name(prefix: &str) -> String {
    unique_table_name(prefix)
}

/// Key-authenticated settings for `container` of the shared stand-in.
pub fn cosmos_settings(container: &str) -> CosmosSettings {
    CosmosSettings {
        endpoint: shared_cosmos_endpoint(),
        database: DATABASE.into(),
        container: container.into(),
        auth: CosmosAuth::Key(ApiKey::new(EMULATOR_KEY)),
    }
}

/// Points `settings` at `container` of the shared stand-in.
pub fn use_cosmos(settings: &mut Settings, container: &str) {
    settings.cosmos = Some(cosmos_settings(container));
}

/// The environment that points a `handler` process at `container`.
pub fn cosmos_env(container: &str) -> Vec<(&'static str, String)> {
    vec![
        ("COSMOSDB_ENDPOINT", shared_cosmos_endpoint()),
        ("COSMOSDB_DATABASE", DATABASE.into()),
        ("COSMOSDB_AIConversations_CONTAINER", container.into()),
        ("COSMOSDB_KEY", EMULATOR_KEY.into()),
    ]
}

/// A store on `container` (created, with the database, on first use).
pub async fn cosmos_store(container: &str) -> CosmosStore {
    let credentials = Credentials::new(CredentialChoice::DeveloperTools, Clock::system());
    let store = CosmosStore::connect(&cosmos_settings(container), &credentials, Clock::system())
        .expect("the stand-in's settings are usable");
    store
        .check_container()
        .await
        .expect("the container can be created");
    store
}

fn documents_url(container: &str) -> String {
    format!(
        "{}dbs/{DATABASE}/colls/{container}/docs",
        shared_cosmos_endpoint()
    )
}

/// Writes `document` as another program would (`customer_id` is its partition).
pub async fn insert_document(container: &str, document: &Value) {
    let partition = serde_json::json!([document["customer_id"]]).to_string();
    let response = reqwest::Client::new()
        .post(documents_url(container))
        .header("x-ms-documentdb-partitionkey", partition)
        .json(document)
        .send()
        .await
        .expect("the stand-in answers");
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// The stored document `id` in partition `customer_id`, or `None`.
pub async fn stored_document(container: &str, customer_id: &str, id: &str) -> Option<Value> {
    let partition = serde_json::json!([customer_id]).to_string();
    let response = reqwest::Client::new()
        .get(format!("{}/{id}", documents_url(container)))
        .header("x-ms-documentdb-partitionkey", partition)
        .send()
        .await
        .expect("the stand-in answers");
    match response.status().as_u16() {
        200 => Some(response.json().await.unwrap()),
        404 => None,
        status => panic!("reading {id}: {status}"),
    }
}

/// Makes the stand-in answer the next `requests` requests for `container`'s items
/// with 429 and `x-ms-retry-after-ms: retry_after_ms`, as the service does when
/// the container's throughput runs out (0: no more throttling).
pub async fn throttle(container: &str, requests: u32, retry_after_ms: u32) {
    let response = reqwest::Client::new()
        .put(format!(
            "{}_throttle/dbs/{DATABASE}/colls/{container}?requests={requests}&retry_after_ms={retry_after_ms}",
            shared_cosmos_endpoint()
        ))
        .send()
        .await
        .expect("the stand-in answers");
    assert_eq!(response.status(), 204);
}
