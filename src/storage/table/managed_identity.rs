//! A user-assigned managed identity on App Service and Azure Functions.
//!
//! azure_identity 0.21 can only ask for the system-assigned identity (its client-id
//! variant is crate-private), so this speaks the platform's managed-identity
//! protocol itself: `GET {IDENTITY_ENDPOINT}?resource=…&api-version=2019-08-01&client_id=…`
//! with the `X-IDENTITY-HEADER` secret, answered by
//! `{"access_token", "expires_on" (epoch seconds), "resource", "token_type"}`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::{Error, ErrorKind};
use azure_core::Url;
use serde::Deserialize;
use time::OffsetDateTime;

const API_VERSION: &str = "2019-08-01";
const IDENTITY_HEADER: &str = "X-IDENTITY-HEADER";
/// A token is renewed this long before it expires, so no request carries a dying one.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
pub struct UserAssignedIdentity {
    endpoint: Url,
    identity_header: Secret,
    client_id: String,
    http: reqwest::Client,
    /// Tokens by resource. The lock is held while fetching, so concurrent callers
    /// wait for one fetch instead of each making their own.
    tokens: tokio::sync::Mutex<HashMap<String, AccessToken>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    expires_on: serde_json::Value,
}

impl UserAssignedIdentity {
    pub fn new(
        endpoint: Url,
        identity_header: String,
        client_id: String,
        http: reqwest::Client,
    ) -> Self {
        Self {
            endpoint,
            identity_header: Secret::new(identity_header),
            client_id,
            http,
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    async fn fetch(&self, resource: &str) -> azure_core::Result<AccessToken> {
        // Errors name no URL: it is harmless here, but every storage error stays URL-free.
        let response = self
            .http
            .get(self.endpoint.clone())
            .query(&[
                ("resource", resource),
                ("api-version", API_VERSION),
                ("client_id", &self.client_id),
            ])
            .header(IDENTITY_HEADER, self.identity_header.secret())
            .send()
            .await
            .map_err(|_| {
                Error::message(
                    ErrorKind::Io,
                    "the managed identity endpoint did not answer",
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::with_message(ErrorKind::Credential, || {
                format!("the managed identity endpoint answered {status}")
            }));
        }
        let body: TokenResponse = response.json().await.map_err(|_| {
            Error::message(
                ErrorKind::Credential,
                "the managed identity endpoint sent an unreadable token",
            )
        })?;
        let expires_on = epoch_seconds(&body.expires_on).ok_or_else(|| {
            Error::message(
                ErrorKind::Credential,
                "the managed identity token has no readable expires_on",
            )
        })?;
        Ok(AccessToken::new(body.access_token, expires_on))
    }
}

/// `expires_on` is documented as a string of epoch seconds; accept a number too.
fn epoch_seconds(value: &serde_json::Value) -> Option<OffsetDateTime> {
    let seconds = match value {
        serde_json::Value::String(text) => text.trim().parse().ok()?,
        serde_json::Value::Number(number) => number.as_i64()?,
        _ => return None,
    };
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}

#[async_trait]
impl TokenCredential for UserAssignedIdentity {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(Error::message(
                ErrorKind::Credential,
                "a managed identity token is for exactly one scope",
            ));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(resource) {
            if token.expires_on - RENEW_BEFORE_EXPIRY > OffsetDateTime::now_utc() {
                return Ok(token.clone());
            }
        }
        let token = self.fetch(resource).await?;
        tokens.insert(resource.to_owned(), token.clone());
        Ok(token)
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.tokens.lock().await.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use warp::Filter;

    const SCOPE: &str = "https://storage.azure.com/.default";

    /// What the fake endpoint saw: the query and the identity header of each request.
    type Seen = Arc<Mutex<Vec<(HashMap<String, String>, Option<String>)>>>;

    /// A local stand-in for the platform endpoint that answers every request with
    /// `status` and a token expiring `lifetime` from now.
    async fn fake_endpoint(status: u16, lifetime: Duration) -> (Url, Seen) {
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let route = warp::path("msi")
            .and(warp::path("token"))
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::optional::<String>("x-identity-header"))
            .map(
                move |query: HashMap<String, String>, header: Option<String>| {
                    record.lock().unwrap().push((query, header));
                    let expires_on = (OffsetDateTime::now_utc() + lifetime)
                        .unix_timestamp()
                        .to_string();
                    let body = serde_json::json!({
                        "access_token": "token-value",
                        "expires_on": expires_on,
                        "resource": "https://storage.azure.com",
                        "token_type": "Bearer",
                    });
                    warp::reply::with_status(
                        warp::reply::json(&body),
                        warp::http::StatusCode::from_u16(status).unwrap(),
                    )
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        let url = Url::parse(&format!("http://127.0.0.1:{port}/msi/token")).unwrap();
        (url, seen)
    }

    fn identity(endpoint: Url) -> UserAssignedIdentity {
        UserAssignedIdentity::new(
            endpoint,
            "header-secret".into(),
            "client-123".into(),
            reqwest::Client::new(),
        )
    }

    #[tokio::test]
    async fn asks_for_the_client_id_with_the_identity_header_and_caches_the_token() {
        let (url, seen) = fake_endpoint(200, Duration::from_secs(3600)).await;
        let credential = identity(url);
        let token = credential.get_token(&[SCOPE]).await.unwrap();
        assert_eq!(token.token.secret(), "token-value");
        credential.get_token(&[SCOPE]).await.unwrap();

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "the second call is served from the cache");
        let (query, header) = &seen[0];
        assert_eq!(query["resource"], "https://storage.azure.com");
        assert_eq!(query["api-version"], "2019-08-01");
        assert_eq!(query["client_id"], "client-123");
        assert_eq!(header.as_deref(), Some("header-secret"));
    }

    #[tokio::test]
    async fn a_token_close_to_expiry_is_renewed() {
        let (url, seen) = fake_endpoint(200, Duration::from_secs(60)).await;
        let credential = identity(url);
        credential.get_token(&[SCOPE]).await.unwrap();
        credential.get_token(&[SCOPE]).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_refusal_is_a_credential_error_without_secrets() {
        let (url, _) = fake_endpoint(400, Duration::from_secs(3600)).await;
        let error = identity(url).get_token(&[SCOPE]).await.unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::Credential);
        assert!(!format!("{error} {error:?}").contains("header-secret"));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_an_io_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = Url::parse(&format!("http://127.0.0.1:{port}/msi/token")).unwrap();
        let error = identity(url).get_token(&[SCOPE]).await.unwrap_err();
        assert_eq!(error.kind(), &ErrorKind::Io);
    }

    #[test]
    fn expires_on_is_read_as_a_string_or_a_number() {
        let expected = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(epoch_seconds(&"1700000000".into()), Some(expected));
        assert_eq!(epoch_seconds(&1_700_000_000.into()), Some(expected));
        assert_eq!(epoch_seconds(&"soon".into()), None);
    }
}
