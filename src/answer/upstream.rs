//! Calls to the services behind model answers (Azure OpenAI, OpenAI-compatible
//! servers, Azure AI Search): one pooled client, a deadline per call (for a
//! streamed reply: to its first piece, then between pieces), bounded retries on
//! 429 and 5xx that honour `Retry-After`, and failures as
//! [`AnswerError`]s naming the service and nothing secret: no keys, no tokens, no
//! URLs, no bodies (an OpenAI 401 quotes part of the key it refused).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use super::sse::EventParser;
use super::AnswerError;
use crate::credential::TokenSource;
use crate::settings::{ApiKey, SettingsError, UpstreamPolicy};

/// The client every upstream call shares, so connections (and TLS sessions) are reused.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("session-rag/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `address` as a URL, with `api-version` when the service takes one. The
/// endpoint was checked with the settings; should the whole still not parse, the
/// endpoint's `setting` is named.
pub fn service_url(
    address: &str,
    api_version: Option<&str>,
    setting: &str,
) -> Result<Url, SettingsError> {
    let mut url = Url::parse(address)
        .map_err(|_| SettingsError::new(setting, "does not make a valid URL"))?;
    if let Some(version) = api_version {
        url.query_pairs_mut().append_pair("api-version", version);
    }
    Ok(url)
}

/// How a request proves who sends it.
pub enum Auth {
    /// Nothing: a local server that wants no key.
    Anonymous,
    /// `api-key: <key>` (Azure OpenAI, Azure AI Search).
    ApiKeyHeader(ApiKey),
    /// `Authorization: Bearer <key>` (OpenAI-compatible servers).
    BearerKey(ApiKey),
    /// `Authorization: Bearer <Microsoft Entra token for scope>`.
    Entra {
        tokens: Arc<TokenSource>,
        scope: &'static str,
    },
}

impl Auth {
    async fn apply(&self, request: RequestBuilder) -> Result<RequestBuilder, Failure> {
        Ok(match self {
            Auth::Anonymous => request,
            Auth::ApiKeyHeader(key) => {
                let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
                    Failure::Final("the API key is not a valid header value".into())
                })?;
                value.set_sensitive(true);
                request.header("api-key", value)
            }
            Auth::BearerKey(key) => request.bearer_auth(key.expose()),
            Auth::Entra { tokens, scope } => {
                let token = tokens.get_token(scope).await.map_err(|_| {
                    Failure::Final(
                        "no Microsoft Entra token could be obtained (see the handler's log)".into(),
                    )
                })?;
                request.bearer_auth(token.token.secret())
            }
        })
    }
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt (429, 5xx, refused connection), after `retry_after` if the service said.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    Final(String),
    Timeout,
}

/// One service, with its credentials and limits.
pub struct Upstream {
    /// The service's name in errors and logs: `azure-openai`, `openai`, `azure-search`.
    pub service: &'static str,
    http: reqwest::Client,
    auth: Auth,
    policy: UpstreamPolicy,
}

impl Upstream {
    pub fn new(
        service: &'static str,
        http: reqwest::Client,
        auth: Auth,
        policy: UpstreamPolicy,
    ) -> Self {
        Self {
            service,
            http,
            auth,
            policy,
        }
    }

    /// A failure of this service, as the caller sees it (502).
    pub fn failure(&self, message: impl Into<String>) -> AnswerError {
        let message = message.into();
        tracing::warn!(service = self.service, message, "upstream call failed");
        AnswerError::Upstream {
            service: self.service,
            message,
        }
    }

    /// POSTs `body` as JSON to `url` and reads the JSON reply, within the policy's
    /// timeout for all attempts together.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        body: &impl Serialize,
    ) -> Result<T, AnswerError> {
        let (response, deadline) = self.post(url, body, "application/json").await?;
        match tokio::time::timeout_at(deadline, response.json()).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(error)) if error.is_timeout() => Err(self.timed_out()),
            Ok(Err(_)) => Err(self.failure("sent a reply that is not the expected JSON")),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    /// POSTs `body` as JSON to `url` and reads the reply as Server-Sent Events as
    /// they arrive. The first must come within the policy's timeout for all
    /// attempts together, each later one within the timeout of the one before.
    /// Once the reply has begun nothing is retried: its events may have been passed on.
    pub async fn post_for_events(
        &self,
        url: &Url,
        body: &impl Serialize,
    ) -> Result<EventStream<'_>, AnswerError> {
        let (response, deadline) = self.post(url, body, "text/event-stream").await?;
        Ok(EventStream {
            upstream: self,
            response,
            parser: EventParser::default(),
            next_by: deadline,
        })
    }

    /// A successful response to `body` (its headers: the body is left to the
    /// caller), with retries, and the deadline of the whole call.
    async fn post(
        &self,
        url: &Url,
        body: &impl Serialize,
        accept: &'static str,
    ) -> Result<(reqwest::Response, Instant), AnswerError> {
        let started = Instant::now();
        let deadline = started + self.policy.timeout;
        let mut retries = 0;
        loop {
            let outcome = tokio::time::timeout_at(deadline, self.attempt(url, body, accept))
                .await
                .unwrap_or(Err(Failure::Timeout));
            let message = match outcome {
                Ok(response) => {
                    tracing::info!(
                        service = self.service,
                        retries,
                        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                        "upstream call"
                    );
                    return Ok((response, deadline));
                }
                Err(Failure::Timeout) => return Err(self.timed_out()),
                Err(Failure::Final(message)) => message,
                Err(Failure::Transient {
                    message,
                    retry_after,
                }) => {
                    let delay = retry_after
                        .unwrap_or(self.policy.first_retry_delay * 2u32.saturating_pow(retries))
                        .min(self.policy.max_retry_delay);
                    // A wait that would outlast the deadline only postpones the failure.
                    if retries < self.policy.max_retries && Instant::now() + delay < deadline {
                        tracing::warn!(
                            service = self.service,
                            message,
                            delay_ms = delay.as_millis() as u64,
                            "upstream call will be retried"
                        );
                        tokio::time::sleep(delay).await;
                        retries += 1;
                        continue;
                    }
                    message
                }
            };
            return Err(self.failure(match retries {
                0 => message,
                n => format!("{message} (after {n} retries)"),
            }));
        }
    }

    /// This service took longer than the policy allows (504).
    fn timed_out(&self) -> AnswerError {
        tracing::warn!(
            service = self.service,
            timeout_s = self.policy.timeout.as_secs_f64(),
            "upstream call timed out"
        );
        AnswerError::UpstreamTimeout {
            service: self.service,
        }
    }

    async fn attempt(
        &self,
        url: &Url,
        body: &impl Serialize,
        accept: &'static str,
    ) -> Result<reqwest::Response, Failure> {
        let request = self
            .auth
            .apply(
                self.http
                    .post(url.clone())
                    .header(ACCEPT, accept)
                    .json(body),
            )
            .await?;
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                Failure::Timeout
            } else if error.is_connect() {
                Failure::Transient {
                    message: "could not connect".into(),
                    retry_after: None,
                }
            } else {
                Failure::Final("the request failed in transit".into())
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let code = error_code(response).await;
        let message = match code {
            Some(code) => format!("answered HTTP {} ({code})", status.as_u16()),
            None => format!("answered HTTP {}", status.as_u16()),
        };
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Err(Failure::Transient {
                message,
                retry_after,
            })
        } else {
            Err(Failure::Final(message))
        }
    }
}

/// The events of a streamed reply, read as they arrive. Dropping it drops the
/// connection, which cancels the call.
pub struct EventStream<'a> {
    upstream: &'a Upstream,
    response: reqwest::Response,
    parser: EventParser,
    /// When the next piece of the reply must have arrived.
    next_by: Instant,
}

impl EventStream<'_> {
    /// The `data` of the next event; `None` when the service closed the stream.
    pub async fn next(&mut self) -> Result<Option<String>, AnswerError> {
        loop {
            if let Some(data) = self.parser.next_event() {
                return Ok(Some(data));
            }
            match tokio::time::timeout_at(self.next_by, self.response.chunk()).await {
                Err(_) => return Err(self.upstream.timed_out()),
                Ok(Err(error)) if error.is_timeout() => return Err(self.upstream.timed_out()),
                Ok(Err(_)) => return Err(self.upstream.failure("broke off its reply")),
                // An event not ended by its blank line is incomplete: it is dropped.
                Ok(Ok(None)) => return Ok(None),
                Ok(Ok(Some(bytes))) => {
                    self.next_by = Instant::now() + self.upstream.policy.timeout;
                    self.parser.feed(&bytes);
                }
            }
        }
    }
}

/// `Retry-After` in seconds, as Azure OpenAI and Azure AI Search send it. (The
/// HTTP-date form is left to the default back-off.)
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The `error.code` of an OpenAI- or Azure-style error body (`invalid_api_key`,
/// `DeploymentNotFound`, `content_filter`), when it is a plain identifier. The
/// message beside it is never passed on: it may quote the key that was refused.
async fn error_code(response: reqwest::Response) -> Option<String> {
    let body: serde_json::Value = response.json().await.ok()?;
    let code = body.pointer("/error/code")?.as_str()?;
    is_plain_code(code).then(|| code.to_owned())
}

/// Whether an error code from a service is a plain identifier, safe to pass on.
pub fn is_plain_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use async_trait::async_trait;
    use azure_core_v1::credentials::{AccessToken, TokenCredential, TokenRequestOptions};

    #[derive(Debug)]
    struct FixedToken;

    #[async_trait]
    impl TokenCredential for FixedToken {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core_v1::Result<AccessToken> {
            let expires_on = time::OffsetDateTime::now_utc() + Duration::from_secs(3600);
            Ok(AccessToken::new(
                format!("token-for-{}", scopes[0]),
                expires_on,
            ))
        }
    }

    async fn headers_sent(auth: Auth) -> HeaderMap {
        let request = reqwest::Client::new().post("http://127.0.0.1:9/x");
        let request = auth.apply(request).await.unwrap().build().unwrap();
        request.headers().clone()
    }

    #[tokio::test]
    async fn each_kind_of_credential_goes_in_its_own_header() {
        let headers = headers_sent(Auth::ApiKeyHeader(ApiKey::new("k1"))).await;
        assert_eq!(headers["api-key"], "k1");
        assert!(headers["api-key"].is_sensitive());
        assert!(!headers.contains_key("authorization"));

        let headers = headers_sent(Auth::BearerKey(ApiKey::new("k2"))).await;
        assert_eq!(headers["authorization"], "Bearer k2");
        assert!(!headers.contains_key("api-key"));

        let tokens = Arc::new(TokenSource::new(Arc::new(FixedToken), Clock::system()));
        let scope = "https://cognitiveservices.azure.com/.default";
        let headers = headers_sent(Auth::Entra { tokens, scope }).await;
        assert_eq!(
            headers["authorization"],
            "Bearer token-for-https://cognitiveservices.azure.com/.default"
        );
        assert!(headers["authorization"].is_sensitive());

        let headers = headers_sent(Auth::Anonymous).await;
        assert!(!headers.contains_key("authorization") && !headers.contains_key("api-key"));
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
