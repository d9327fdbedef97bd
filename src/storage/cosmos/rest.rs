//! The few Cosmos DB for NoSQL REST operations the store uses, over `reqwest`:
//! items (create, read, replace, patch and delete, with `If-Match`), queries in one
//! partition or across partitions (followed through `x-ms-continuation`), and the
//! database and container (read, create). A throttled request is sent again after
//! the wait the service asks for, as Azure's own clients do. Requests are signed
//! with the account key (HMAC-SHA256 of verb, resource type, resource link and
//! date) or carry a Microsoft Entra token.
//!
//! Why not `azure_data_cosmos`: it and its driver added about 19 minutes to a
//! build here and turned on `serde_json` features that rebuild everything above
//! it; these operations are a few hundred lines on the HTTP client we already have.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::clock::Clock;
use crate::credential::TokenSource;
use crate::storage::ascii::ascii_json;

/// The REST API version the requests speak.
const API_VERSION: &str = "2018-12-31";
/// How long a connection may take to open; the storage time budget bounds the rest.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Times a throttled request is sent again before the throttling is reported.
const RETRIES: usize = 3;
/// The wait before sending again when the service names none, and the longest.
const DEFAULT_RETRY_WAIT: Duration = Duration::from_millis(100);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);

/// A request Cosmos DB refused (`status`) or did not answer (`None`). Carries no
/// text of the service's: it can quote request details.
#[derive(Debug, Clone, Copy)]
pub struct CosmosError {
    pub status: Option<StatusCode>,
}

impl CosmosError {
    fn no_answer() -> Self {
        Self { status: None }
    }
}

/// How requests prove who sends them.
pub enum Signer {
    /// The account key, decoded.
    Key(Vec<u8>),
    /// Microsoft Entra tokens for `scope` (the account's origin + `/.default`).
    Entra {
        tokens: Arc<TokenSource>,
        scope: String,
    },
}

/// A query and its parameters.
pub struct Query {
    text: String,
    parameters: Vec<Value>,
}

impl Query {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            parameters: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, value: impl Serialize) -> Self {
        self.parameters
            .push(json!({ "name": name, "value": value }));
        self
    }
}

/// Where a query looks.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    Partition(&'a str),
    AllPartitions,
}

/// One page of a query's results, and where the next starts.
pub struct QueryPage<T> {
    pub items: Vec<T>,
    pub continuation: Option<String>,
}

#[derive(Deserialize)]
struct QueryBody<T> {
    #[serde(rename = "Documents")]
    documents: Vec<T>,
}

/// One container of one account.
pub struct Container {
    http: reqwest::Client,
    /// The account's URL without a trailing `/`.
    endpoint: String,
    database: String,
    container: String,
    signer: Signer,
    clock: Clock,
}

impl Container {
    pub fn new(
        endpoint: &str,
        database: &str,
        container: &str,
        signer: Signer,
        clock: Clock,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            database: database.to_owned(),
            container: container.to_owned(),
            signer,
            clock,
        })
    }

    /// `database/container`, for messages.
    pub fn name(&self) -> String {
        format!("{}/{}", self.database, self.container)
    }

    fn collection_link(&self) -> String {
        format!("dbs/{}/colls/{}", self.database, self.container)
    }

    fn item_link(&self, id: &str) -> String {
        format!("{}/docs/{id}", self.collection_link())
    }

    /// A request for `link` (the resource's path, also what the key signs),
    /// signed for `resource_type` on `signed_link`.
    async fn request(
        &self,
        method: Method,
        path: &str,
        resource_type: &str,
        signed_link: &str,
    ) -> Result<RequestBuilder, CosmosError> {
        let date = self
            .clock
            .now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let authorization = match &self.signer {
            Signer::Key(key) => key_authorization(key, &method, resource_type, signed_link, &date),
            Signer::Entra { tokens, scope } => {
                let token = tokens
                    .get_token(scope)
                    .await
                    .map_err(|_| CosmosError::no_answer())?;
                aad_authorization(token.token.secret())
            }
        };
        let url = format!("{}/{}", self.endpoint, encode_path(path));
        Ok(self
            .http
            .request(method, url)
            .header("x-ms-date", date)
            .header("x-ms-version", API_VERSION)
            .header("authorization", authorization))
    }

    async fn item_request(
        &self,
        method: Method,
        partition: &str,
        id: &str,
    ) -> Result<RequestBuilder, CosmosError> {
        let link = self.item_link(id);
        Ok(self
            .request(method, &link, "docs", &link)
            .await?
            .header("x-ms-documentdb-partitionkey", partition_key(partition)))
    }

    /// The item `id` in `partition`, if there.
    pub async fn read_item<T: DeserializeOwned>(
        &self,
        partition: &str,
        id: &str,
    ) -> Result<Option<T>, CosmosError> {
        let request = self.item_request(Method::GET, partition, id).await?;
        match send(request).await {
            Ok(response) => json_body(response).await.map(Some),
            Err(CosmosError {
                status: Some(StatusCode::NOT_FOUND),
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates `item` (insert-only: 409 if its id is taken in `partition`); its `_etag`.
    pub async fn create_item(
        &self,
        partition: &str,
        item: &Value,
    ) -> Result<Option<String>, CosmosError> {
        let link = self.collection_link();
        let request = self
            .request(Method::POST, &format!("{link}/docs"), "docs", &link)
            .await?
            .header("x-ms-documentdb-partitionkey", partition_key(partition))
            .header("content-type", "application/json")
            .body(ascii_body(item));
        Ok(etag(&send(request).await?))
    }

    /// Replaces the item `id` only while its `_etag` is `if_match` (412 if not); its new `_etag`.
    pub async fn replace_item(
        &self,
        partition: &str,
        id: &str,
        item: &Value,
        if_match: &str,
    ) -> Result<Option<String>, CosmosError> {
        let request = self
            .item_request(Method::PUT, partition, id)
            .await?
            .header("if-match", if_match)
            .header("content-type", "application/json")
            .body(ascii_body(item));
        Ok(etag(&send(request).await?))
    }

    /// Applies `operations` (Cosmos DB's partial document update: `set`, `incr`, …)
    /// to the item `id`, atomically (404 if it does not exist).
    pub async fn patch_item(
        &self,
        partition: &str,
        id: &str,
        operations: &[Value],
    ) -> Result<(), CosmosError> {
        let request = self
            .item_request(Method::PATCH, partition, id)
            .await?
            .header("content-type", "application/json_patch+json")
            .body(ascii_body(&json!({ "operations": operations })));
        send(request).await.map(drop)
    }

    /// Deletes the item `id`, with `if_match` only while its `_etag` is that.
    pub async fn delete_item(
        &self,
        partition: &str,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), CosmosError> {
        let mut request = self.item_request(Method::DELETE, partition, id).await?;
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        send(request).await.map(drop)
    }

    /// One page of `query`'s results in `scope`, at most `max_items` (the service
    /// chooses without), from `continuation`.
    pub async fn query_page<T: DeserializeOwned>(
        &self,
        query: &Query,
        scope: Scope<'_>,
        max_items: Option<usize>,
        continuation: Option<&str>,
    ) -> Result<QueryPage<T>, CosmosError> {
        let link = self.collection_link();
        let mut request = self
            .request(Method::POST, &format!("{link}/docs"), "docs", &link)
            .await?
            .header("x-ms-documentdb-isquery", "True")
            .header("content-type", "application/query+json")
            .body(ascii_body(
                &json!({ "query": query.text, "parameters": query.parameters }),
            ));
        request = match scope {
            Scope::Partition(partition) => {
                request.header("x-ms-documentdb-partitionkey", partition_key(partition))
            }
            Scope::AllPartitions => {
                request.header("x-ms-documentdb-query-enablecrosspartition", "True")
            }
        };
        if let Some(max_items) = max_items {
            request = request.header("x-ms-max-item-count", max_items.to_string());
        }
        if let Some(continuation) = continuation {
            request = request.header("x-ms-continuation", continuation);
        }
        let response = send(request).await?;
        let continuation = response
            .headers()
            .get("x-ms-continuation")
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty())
            .map(str::to_owned);
        let body: QueryBody<T> = json_body(response).await?;
        Ok(QueryPage {
            items: body.documents,
            continuation,
        })
    }

    /// Every result of `query` in `scope`, page after page.
    pub async fn query_all<T: DeserializeOwned>(
        &self,
        query: &Query,
        scope: Scope<'_>,
    ) -> Result<Vec<T>, CosmosError> {
        let mut items = Vec::new();
        let mut continuation = None;
        loop {
            let page = self
                .query_page(query, scope, None, continuation.as_deref())
                .await?;
            items.extend(page.items);
            match page.continuation {
                Some(next) => continuation = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// Whether the container exists (404 if it or its database does not).
    pub async fn read_container(&self) -> Result<(), CosmosError> {
        let link = self.collection_link();
        let request = self.request(Method::GET, &link, "colls", &link).await?;
        send(request).await.map(drop)
    }

    /// Creates the database (409 if it exists).
    pub async fn create_database(&self) -> Result<(), CosmosError> {
        let request = self
            .request(Method::POST, "dbs", "dbs", "")
            .await?
            .header("content-type", "application/json")
            .body(ascii_body(&json!({ "id": self.database })));
        send(request).await.map(drop)
    }

    /// Creates the container, partitioned by `partition_path` (409 if it exists).
    pub async fn create_container(&self, partition_path: &str) -> Result<(), CosmosError> {
        let database = format!("dbs/{}", self.database);
        let request = self
            .request(
                Method::POST,
                &format!("{database}/colls"),
                "colls",
                &database,
            )
            .await?
            .header("content-type", "application/json")
            .body(ascii_body(&json!({
                "id": self.container,
                "partitionKey": { "paths": [partition_path], "kind": "Hash", "version": 2 },
            })));
        send(request).await.map(drop)
    }
}

/// Sends `request`; one the service throttled (429) or asked to send again (449),
/// neither of which it carried out, goes again after the wait it asked for, at most
/// [`RETRIES`] times (the storage time budget bounds the whole).
async fn send(mut request: RequestBuilder) -> Result<reqwest::Response, CosmosError> {
    let mut retries = 0;
    loop {
        let again = request.try_clone();
        let response = request.send().await.map_err(|_| CosmosError::no_answer())?;
        let status = response.status();
        // What each request cost, for measuring on a real account (`RUST_LOG=session_rag=debug`).
        tracing::debug!(
            status = status.as_u16(),
            request_charge = response
                .headers()
                .get("x-ms-request-charge")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("unknown"),
            "Cosmos DB answered"
        );
        if status.is_success() {
            return Ok(response);
        }
        let retriable = status == StatusCode::TOO_MANY_REQUESTS || status.as_u16() == 449;
        match again {
            Some(again) if retriable && retries < RETRIES => {
                tokio::time::sleep(retry_after(&response)).await;
                request = again;
                retries += 1;
            }
            _ => {
                return Err(CosmosError {
                    status: Some(status),
                })
            }
        }
    }
}

/// The wait a throttled answer asks for (`x-ms-retry-after-ms`), within bounds.
fn retry_after(response: &reqwest::Response) -> Duration {
    response
        .headers()
        .get("x-ms-retry-after-ms")
        .and_then(|value| value.to_str().ok()?.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map_or(DEFAULT_RETRY_WAIT, |ms| {
            Duration::from_secs_f64(ms / 1000.0)
        })
        .min(MAX_RETRY_WAIT)
}

async fn json_body<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, CosmosError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|_| CosmosError::no_answer())?;
    // An answer we cannot read is reported as the service's fault, not the caller's.
    serde_json::from_slice(&bytes).map_err(|_| CosmosError {
        status: Some(StatusCode::BAD_GATEWAY),
    })
}

fn etag(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("etag")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The `x-ms-documentdb-partitionkey` header: the value as a one-element JSON
/// array (ASCII: a header cannot carry more).
fn partition_key(partition: &str) -> String {
    ascii_body(&json!([partition]))
}

fn ascii_body(value: &Value) -> String {
    ascii_json(value).get().to_owned()
}

/// Every byte but the unreserved ones (RFC 3986) is percent-encoded.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path with each segment percent-encoded where a URL needs it.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|segment| utf8_percent_encode(segment, ENCODED).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The `authorization` header for the account key: HMAC-SHA256 of the verb, the
/// resource type, the resource link and the date, as the service checks it.
fn key_authorization(
    key: &[u8],
    method: &Method,
    resource_type: &str,
    resource_link: &str,
    date: &str,
) -> String {
    let payload = format!(
        "{}\n{}\n{}\n{}\n\n",
        method.as_str().to_lowercase(),
        resource_type.to_lowercase(),
        resource_link,
        date.to_lowercase()
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(payload.as_bytes());
    let signature = BASE64.encode(mac.finalize().into_bytes());
    form_encode(&format!("type=master&ver=1.0&sig={signature}"))
}

fn aad_authorization(token: &str) -> String {
    form_encode(&format!("type=aad&ver=1.0&sig={token}"))
}

/// URL-encodes the header's value, as the service expects.
fn form_encode(value: &str) -> String {
    utf8_percent_encode(value, ENCODED).to_string()
}

/// The Microsoft Entra scope of the account at `endpoint`: its origin (no port)
/// and `/.default`.
pub fn token_scope(endpoint: &str) -> Option<String> {
    let url = reqwest::Url::parse(endpoint).ok()?;
    Some(format!("{}://{}/.default", url.scheme(), url.host_str()?))
}

/// The account key as bytes, or `None` if it is not base64.
pub fn decode_key(key: &str) -> Option<Vec<u8>> {
    BASE64.decode(key.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the service's REST documentation ("Access control on Cosmos
    /// DB resources"): a GET of a database's collection list with its sample key.
    #[test]
    fn a_key_signature_matches_the_documented_example() {
        let key = decode_key(
            "dsZQi3KtZmCv1ljt3VNWNm7sQUF1y5rJfC6kv5JiwvW0EndXdDku/dkKBp8/ufDToSxLzR4y+O/0H/t4bQtVNw==",
        )
        .unwrap();
        let header = key_authorization(
            &key,
            &Method::GET,
            "dbs",
            "dbs/ToDoList",
            "Thu, 27 Apr 2017 00:51:12 GMT",
        );
        assert_eq!(
            header,
            "type%3Dmaster%26ver%3D1.0%26sig%3Dc09PEVJrgp2uQRkr934kFbTqhByc7TVr3OHyqlu%2Bc%2Bc%3D"
        );
    }

    #[test]
    fn a_partition_key_header_is_an_ascii_json_array() {
        assert_eq!(partition_key("é😀"), r#"["\u00e9\ud83d\ude00"]"#);
        assert_eq!(partition_key("a\"b"), r#"["a\"b"]"#);
    }

    #[test]
    fn the_token_scope_is_the_accounts_origin() {
        assert_eq!(
            token_scope("https://acct.example:443/").as_deref(),
            Some("https://acct.example/.default")
        );
        assert_eq!(token_scope("not a url"), None);
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            encode_path("dbs/Gen AI/colls/x+y"),
            "dbs/Gen%20AI/colls/x%2By"
        );
    }
}
