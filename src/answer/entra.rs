//! Microsoft Entra tokens for Azure OpenAI and Azure AI Search when no key is set.
//!
//! The production source is azure_identity's default credential chain: the
//! environment's service principal, then managed identity (in Azure), then the
//! Azure CLI's login (on a developer's machine). Nothing is fetched at start-up;
//! a token is fetched on first use and reused until shortly before it expires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, TokenCredential};
use azure_identity::{DefaultAzureCredential, TokenCredentialOptions};
use time::OffsetDateTime;

pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";
pub const SEARCH_SCOPE: &str = "https://search.azure.com/.default";

/// A token is renewed this long before it expires, so no request carries a dying one.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// No token could be had; the reason is in the log (it may name local set-up).
#[derive(Debug)]
pub struct NoToken;

/// Bearer tokens, by scope.
#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn bearer_token(&self, scope: &'static str) -> Result<String, NoToken>;
}

/// Tokens from an Azure credential, cached per scope.
pub struct EntraTokens {
    credential: Arc<dyn TokenCredential>,
    /// Held while fetching, so concurrent callers wait for one fetch rather than
    /// each making their own.
    cached: tokio::sync::Mutex<HashMap<&'static str, AccessToken>>,
}

impl EntraTokens {
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        Self {
            credential,
            cached: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The default credential chain, over the shared HTTP client. It only reads
    /// the environment here; the first token is fetched on first use.
    pub fn default_chain(http: &reqwest::Client) -> azure_core::Result<Self> {
        let http = Arc::new(http.clone()) as Arc<dyn azure_core::HttpClient>;
        let credential = DefaultAzureCredential::create(TokenCredentialOptions::from(http))?;
        Ok(Self::new(Arc::new(credential)))
    }
}

#[async_trait]
impl TokenSource for EntraTokens {
    async fn bearer_token(&self, scope: &'static str) -> Result<String, NoToken> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.get(scope) {
            if token.expires_on - RENEW_BEFORE_EXPIRY > OffsetDateTime::now_utc() {
                return Ok(token.token.secret().to_owned());
            }
        }
        match self.credential.get_token(&[scope]).await {
            Ok(token) => {
                tracing::debug!(scope, expires_on = %token.expires_on, "Microsoft Entra token fetched");
                let secret = token.token.secret().to_owned();
                cached.insert(scope, token);
                Ok(secret)
            }
            Err(error) => {
                // The chain's errors say which credentials were tried and why they
                // failed; they carry no token (none was issued).
                tracing::warn!(scope, %error, "no Microsoft Entra token");
                Err(NoToken)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Issues `token-N` (N counting calls) valid for `lifetime`.
    #[derive(Debug)]
    struct CountingCredential {
        calls: AtomicUsize,
        lifetime: Duration,
    }

    #[async_trait]
    impl TokenCredential for CountingCredential {
        async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
            assert_eq!(scopes, [SEARCH_SCOPE]);
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(AccessToken::new(
                format!("token-{n}"),
                OffsetDateTime::now_utc() + self.lifetime,
            ))
        }

        async fn clear_cache(&self) -> azure_core::Result<()> {
            Ok(())
        }
    }

    fn tokens(lifetime: Duration) -> (EntraTokens, Arc<CountingCredential>) {
        let credential = Arc::new(CountingCredential {
            calls: AtomicUsize::new(0),
            lifetime,
        });
        (EntraTokens::new(credential.clone()), credential)
    }

    #[tokio::test]
    async fn a_token_is_fetched_on_first_use_and_then_reused() {
        let (tokens, credential) = tokens(Duration::from_secs(3600));
        assert_eq!(credential.calls.load(Ordering::SeqCst), 0);
        assert_eq!(tokens.bearer_token(SEARCH_SCOPE).await.unwrap(), "token-1");
        assert_eq!(tokens.bearer_token(SEARCH_SCOPE).await.unwrap(), "token-1");
        assert_eq!(credential.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_close_to_expiry_is_renewed() {
        let (tokens, credential) = tokens(Duration::from_secs(60));
        assert_eq!(tokens.bearer_token(SEARCH_SCOPE).await.unwrap(), "token-1");
        assert_eq!(tokens.bearer_token(SEARCH_SCOPE).await.unwrap(), "token-2");
        assert_eq!(credential.calls.load(Ordering::SeqCst), 2);
    }
}
