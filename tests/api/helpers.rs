//! `spawn_app`: the real application on a free port, driven over HTTP.

use azure_data_tables::clients::{TableClient, TableServiceClientBuilder};
use azure_storage::{CloudLocation, StorageCredentials};
use futures::StreamExt;
use serde_json::{Map, Value};
use session_rag::clock::Clock;
use session_rag::credential::Credentials;
use session_rag::domain::SessionId;
use session_rag::settings::{CredentialChoice, Settings, StorageConnection, TableName};
use session_rag::startup::Application;
use session_rag::storage::{ConversationStore, Deleted, StorageError, TableStore};

use crate::azurite;
use crate::cosmos::use_cosmos;

/// Where the sessions API keeps conversations in a test: in process (no storage
/// configured, conversations without `enable_persistence`), in Table Storage (the
/// shared Azurite) or in Cosmos DB (the shared stand-in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backend {
    InProcess,
    Table,
    Cosmos,
}

/// Runs each behaviour (an `async fn(Backend)` of the calling module) once per
/// backend, as `in_process::name`, `table_storage::name` and `cosmos_db::name`.
macro_rules! on_every_backend {
    ($($behaviour:ident),+ $(,)?) => {
        mod in_process {
            $(#[tokio::test]
            async fn $behaviour() {
                super::$behaviour(crate::helpers::Backend::InProcess).await;
            })+
        }
        mod table_storage {
            $(#[tokio::test]
            async fn $behaviour() {
                super::$behaviour(crate::helpers::Backend::Table).await;
            })+
        }
        mod cosmos_db {
            $(#[tokio::test]
            async fn $behaviour() {
                super::$behaviour(crate::helpers::Backend::Cosmos).await;
            })+
        }
    };
}
pub(crate) use on_every_backend;

/// The app on `backend` (Table Storage: a new table named after `prefix` in the
/// shared Azurite; Cosmos DB: a new container so named in the shared stand-in),
/// with settings changed by `configure`; and that table's or container's name.
pub async fn spawn_on(
    backend: Backend,
    prefix: &str,
    configure: impl FnOnce(&mut Settings),
) -> (TestApp, String) {
    let table = azurite::unique_table_name(prefix);
    let app = spawn_app_with(|settings| {
        match backend {
            Backend::InProcess => {}
            Backend::Table => use_table(settings, &azurite::shared_table_endpoint(), &table),
            Backend::Cosmos => use_cosmos(settings, &table),
        }
        configure(settings);
    })
    .await;
    (app, table)
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
}

pub struct TestResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
}

/// Starts the app on port 0 with default settings changed by `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::defaults();
    session_rag::telemetry::init(&settings.log);
    settings.port = 0;
    configure(&mut settings);
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        address,
        client: reqwest::Client::new(),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The app with durable storage in `table` of the shared Azurite.
pub async fn spawn_app_with_storage(table: &str) -> TestApp {
    spawn_app_with(|settings| use_table(settings, &azurite::shared_table_endpoint(), table)).await
}

/// Points `settings` at `table` of the Azurite at `endpoint`, the way users configure it.
pub fn use_table(settings: &mut Settings, endpoint: &str, table: &str) {
    settings.storage = Some(azurite_connection(endpoint));
    settings.chat_history_table = table_name(table);
}

/// An account-key connection string setting for the Azurite at `endpoint`.
pub fn azurite_connection(endpoint: &str) -> StorageConnection {
    StorageConnection::connection_string(
        "AZURE_STORAGE_CONNECTION_STRING",
        azurite::connection_string(endpoint),
    )
}

/// A SAS connection string for the Azurite at `endpoint`: an account SAS for the
/// table service on service, container and object (`srt=sco`; the SDK's builder can
/// only sign one resource type), signed with Azurite's well-known key.
pub fn azurite_sas_connection_string(endpoint: &str) -> String {
    let (permissions, services, resource_types) = ("rwdlacu", "t", "sco");
    let (expiry, version) = ("2099-01-01T00:00:00Z", "2019-02-02");
    // The account SAS string-to-sign before version 2020-12-06 (no encryption scope).
    let string_to_sign = format!(
        "{}\n{permissions}\n{services}\n{resource_types}\n\n{expiry}\n\n\n{version}\n",
        azurite::ACCOUNT_NAME
    );
    let signature = azure_core::hmac::hmac_sha256(
        &string_to_sign,
        &azure_core::auth::Secret::new(azurite::ACCOUNT_KEY),
    )
    .expect("Azurite's key is valid base64");
    let token = azure_core::Url::parse_with_params(
        "http://sas.invalid/",
        [
            ("sv", version),
            ("ss", services),
            ("srt", resource_types),
            ("sp", permissions),
            ("se", expiry),
            ("sig", &signature),
        ],
    )
    .expect("SAS parameters make a URL");
    format!(
        "TableEndpoint={endpoint};SharedAccessSignature={}",
        token.query().expect("the SAS is the query")
    )
}

/// A [`TableStore`] on `table` of the shared Azurite (the table is created on first
/// use), with the listing table the app would derive from it.
pub fn shared_table_store(table: &str) -> TableStore {
    TableStore::connect(
        &azurite_connection(&azurite::shared_table_endpoint()),
        table,
        &sessions_table_for(table),
        &shares_table_for(table),
        &analytics_table_for(table),
        &Credentials::new(CredentialChoice::DeveloperTools, Clock::system()),
        &[],
    )
    .expect("an Azurite connection string is usable")
}

/// `table` as a table name (tests use valid ones).
pub fn table_name(table: &str) -> TableName {
    TableName::new(table).unwrap_or_else(|| panic!("{table:?} is not a valid table name"))
}

/// The listing table the app uses beside the history table `table`.
pub fn sessions_table_for(table: &str) -> String {
    let mut settings = Settings::defaults();
    settings.chat_history_table = table_name(table);
    settings.sessions_table()
}

/// The shares' table the app uses beside the history table `table`.
pub fn shares_table_for(table: &str) -> String {
    let mut settings = Settings::defaults();
    settings.chat_history_table = table_name(table);
    settings.shares_table()
}

/// The figures' table the app uses beside the history table `table`.
pub fn analytics_table_for(table: &str) -> String {
    let mut settings = Settings::defaults();
    settings.chat_history_table = table_name(table);
    settings.analytics_table()
}

/// The SDK's own client for `table` of the Azurite at `endpoint`, to write and
/// inspect rows the way another program (the seed's Python code, say) would.
pub fn raw_table_client(endpoint: &str, table: &str) -> TableClient {
    let location = CloudLocation::Custom {
        account: azurite::ACCOUNT_NAME.into(),
        uri: endpoint.trim_end_matches('/').to_owned(),
    };
    let credentials = StorageCredentials::access_key(
        azurite::ACCOUNT_NAME,
        azure_core::auth::Secret::new(azurite::ACCOUNT_KEY),
    );
    TableServiceClientBuilder::with_location(location, credentials)
        .build()
        .table_client(table)
}

impl TestApp {
    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResponse {
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
        TestResponse {
            status,
            content_type,
            body,
        }
    }

    pub async fn query(&self, body: Value) -> TestResponse {
        self.send(
            self.client
                .post(format!("{}/api/query", self.address))
                .json(&body),
        )
        .await
    }

    /// A successful query's body (panics with the error otherwise).
    pub async fn ask(&self, body: Value) -> Value {
        let response = self.query(body).await;
        assert_eq!(response.status, 200, "{}", response.body);
        response.body
    }
}

impl TestResponse {
    /// Asserts this is the contract's JSON error with `status` and `code`.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["error"]["code"], code, "{}", self.body);
        assert!(self.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
    }
}

/// The first source's id of an answer.
pub fn top_source(body: &Value) -> &str {
    body["sources"][0]["id"].as_str().unwrap_or("")
}

/// Every row of `session` in `table`, as the service returns them (key order).
pub async fn stored_rows(table: &TableClient, session: &str) -> Vec<Map<String, Value>> {
    let filter = format!("PartitionKey eq '{}'", session.replace('\'', "''"));
    let mut pages = table
        .query()
        .filter(filter)
        .into_stream::<Map<String, Value>>();
    let mut rows = Vec::new();
    while let Some(page) = pages.next().await {
        rows.extend(page.expect("rows can be read").entities);
    }
    rows
}

/// Inserts `rows` of one `partition` into `table`, 100 to a transaction.
pub async fn insert_batched(table: &TableClient, partition: &str, rows: &[Value]) {
    for chunk in rows.chunks(100) {
        let mut batch = table.partition_key_client(partition).transaction();
        for row in chunk {
            batch = batch.insert(row).expect("a row serializes");
        }
        batch.await.expect("rows inserted");
    }
}

/// One Server-Sent Event as a client receives it: its name and its JSON data.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// Reads a streamed response event by event, as the bytes arrive. Our streams
/// send `event:` and one `data:` line per event, and `: ` comment lines.
pub struct EventReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
    /// Every comment line received so far (`: keep-alive`).
    pub comments: Vec<String>,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: Vec::new(),
            comments: Vec::new(),
        }
    }

    /// The next event; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("events are UTF-8");
                let (mut name, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        self.comments.push(comment.trim().to_owned());
                    } else if let Some(value) = line.strip_prefix("event: ") {
                        name = Some(value.to_owned());
                    } else if let Some(value) = line.strip_prefix("data: ") {
                        assert!(data.is_none(), "one data line per event: {block:?}");
                        data = Some(serde_json::from_str(value).expect("event data is JSON"));
                    } else if !line.is_empty() {
                        panic!("unexpected line {line:?} in the stream");
                    }
                }
                match (name, data) {
                    (Some(name), Some(data)) => return Some(Event { name, data }),
                    (None, None) => continue,
                    other => panic!("an event needs a name and data: {other:?}"),
                }
            }
            let chunk = self
                .response
                .chunk()
                .await
                .expect("the stream can be read")?;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Every event until the stream ends.
    pub async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// Deletes `session` from `store` as a read of it just now finds it.
pub async fn delete_as_read(
    store: &dyn ConversationStore,
    session: &SessionId,
) -> Result<Deleted, StorageError> {
    let window = store.recent(session, 1).await?;
    let seen = window.seen().expect("a conversation to delete");
    store.delete(session, seen).await
}
