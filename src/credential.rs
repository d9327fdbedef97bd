//! Microsoft Entra tokens for every Azure service the handler reaches without a
//! key: Table Storage (by identity), Azure OpenAI, Azure AI Search (and any
//! azure_core 1.x client, through [`TokenSource`]'s `TokenCredential`).
//!
//! [`Credentials`] builds the credential the settings chose
//! ([`CredentialChoice`]) on azure_identity 1.x, one per identity; each
//! [`TokenSource`] caches its tokens by scope and renews them shortly before they
//! expire. Nothing is fetched at start-up: a token is fetched on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_core_v1::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core_v1::error::ErrorKind;
use azure_identity::{
    ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::settings::{ClientId, CredentialChoice};

pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";
pub const SEARCH_SCOPE: &str = "https://search.azure.com/.default";

/// A token is renewed this long before it expires, so no request carries a dying one.
const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// While another caller renews a token, others keep using the old one if it has
/// at least this long left.
const STILL_USABLE_FOR: Duration = Duration::from_secs(30);

/// No token could be had, and why (no secret: none was issued).
#[derive(Debug, Clone, thiserror::Error)]
#[error("no Microsoft Entra token for {scope}: {reason}")]
pub struct NoToken {
    pub scope: String,
    pub reason: String,
}

/// The credential chosen in the settings could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialUnavailable(String);

/// The credentials of this process: one [`TokenSource`] per identity, shared by
/// every service that uses that identity.
pub struct Credentials {
    choice: CredentialChoice,
    /// Says when a token is about to expire.
    clock: Clock,
    /// By user-assigned managed identity (`None`: the chosen credential's own).
    sources: Mutex<HashMap<Option<ClientId>, Arc<TokenSource>>>,
}

impl Credentials {
    pub fn new(choice: CredentialChoice, clock: Clock) -> Self {
        Self {
            choice,
            clock,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// Tokens for Azure OpenAI, Azure AI Search (and Cosmos DB): the chosen
    /// credential, with managed identity's user-assigned `AZURE_CLIENT_ID`.
    pub fn app_identity(&self) -> Result<Arc<TokenSource>, CredentialUnavailable> {
        let client_id = match &self.choice {
            CredentialChoice::ManagedIdentity { client_id } => client_id.clone(),
            _ => None,
        };
        self.source(client_id)
    }

    /// Tokens for storage: as [`Self::app_identity`], except that a managed
    /// identity takes `storage_client_id` (`AzureWebJobsStorage__clientId`) when
    /// set. The other credentials have one identity, used for everything.
    pub fn storage_identity(
        &self,
        storage_client_id: Option<&ClientId>,
    ) -> Result<Arc<TokenSource>, CredentialUnavailable> {
        match (&self.choice, storage_client_id) {
            (CredentialChoice::ManagedIdentity { .. }, Some(id)) => self.source(Some(id.clone())),
            _ => self.app_identity(),
        }
    }

    fn source(
        &self,
        user_assigned: Option<ClientId>,
    ) -> Result<Arc<TokenSource>, CredentialUnavailable> {
        let mut sources = lock(&self.sources);
        if let Some(source) = sources.get(&user_assigned) {
            return Ok(source.clone());
        }
        let credential = build(&self.choice, user_assigned.as_ref())
            .map_err(|error| CredentialUnavailable(error.to_string()))?;
        let source = Arc::new(TokenSource::new(credential, self.clock.clone()));
        sources.insert(user_assigned, source.clone());
        Ok(source)
    }
}

/// The azure_identity credential for `choice`. Makes no request (workload
/// identity reads its token file here).
fn build(
    choice: &CredentialChoice,
    user_assigned: Option<&ClientId>,
) -> azure_core_v1::Result<Arc<dyn TokenCredential>> {
    Ok(match choice {
        CredentialChoice::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file,
        } => WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            client_id: Some(client_id.as_str().to_owned()),
            tenant_id: Some(tenant_id.clone()),
            token_file_path: Some(token_file.clone()),
            ..Default::default()
        }))?,
        CredentialChoice::ClientSecret {
            tenant_id,
            client_id,
            secret,
        } => ClientSecretCredential::new(
            tenant_id,
            client_id.as_str().to_owned(),
            Secret::new(secret.expose().to_owned()),
            None,
        )?,
        // The library tells App Service (IDENTITY_ENDPOINT, IDENTITY_HEADER) from
        // a virtual machine's IMDS by the platform's variables.
        CredentialChoice::ManagedIdentity { .. } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: user_assigned
                    .map(|id| UserAssignedId::ClientId(id.as_str().to_owned())),
                ..Default::default()
            }))?
        }
        CredentialChoice::DeveloperTools => DeveloperToolsCredential::new(None)?,
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps hold no invariant a panic could break.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Tokens from one credential, cached by scope and renewed before they expire.
///
/// Readers of a fresh token take a short std mutex, never held across an
/// `.await`. Fetches go one at a time (an async mutex): callers that need a new
/// token wait for the one fetch rather than each making their own, while callers
/// whose old token is still good for a while keep using it during a renewal.
#[derive(Debug)]
pub struct TokenSource {
    credential: Arc<dyn TokenCredential>,
    clock: Clock,
    cached: Mutex<HashMap<String, AccessToken>>,
    fetching: tokio::sync::Mutex<()>,
}

impl TokenSource {
    pub fn new(credential: Arc<dyn TokenCredential>, clock: Clock) -> Self {
        Self {
            credential,
            clock,
            cached: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// A token for `scope` (such as [`STORAGE_SCOPE`]).
    pub async fn get_token(&self, scope: &str) -> Result<AccessToken, NoToken> {
        let cached = self.cached(scope);
        if let Some(token) = cached
            .as_ref()
            .filter(|t| self.lasts(t, RENEW_BEFORE_EXPIRY))
        {
            return Ok(token.clone());
        }
        let _fetching = match self.fetching.try_lock() {
            Ok(guard) => guard,
            Err(_) => match cached.filter(|t| self.lasts(t, STILL_USABLE_FOR)) {
                Some(token) => return Ok(token),
                None => self.fetching.lock().await,
            },
        };
        // Renewed by the fetch we waited for?
        if let Some(token) = self
            .cached(scope)
            .filter(|t| self.lasts(t, RENEW_BEFORE_EXPIRY))
        {
            return Ok(token);
        }
        let token = self
            .credential
            .get_token(&[scope], None)
            .await
            .map_err(|error| {
                // azure_identity's errors say which credential failed and why; they
                // carry no token (none was issued).
                let reason = error.to_string();
                tracing::warn!(scope, reason, "no Microsoft Entra token");
                NoToken {
                    scope: scope.to_owned(),
                    reason,
                }
            })?;
        tracing::info!(scope, expires_on = %token.expires_on, "Microsoft Entra token fetched");
        lock(&self.cached).insert(scope.to_owned(), token.clone());
        Ok(token)
    }

    fn cached(&self, scope: &str) -> Option<AccessToken> {
        lock(&self.cached).get(scope).cloned()
    }

    /// Whether `token` is valid for at least `margin` more.
    fn lasts(&self, token: &AccessToken, margin: Duration) -> bool {
        token.expires_on - margin > now(&self.clock)
    }
}

/// The time on `clock`, as azure_core 1.x states a token's expiry.
fn now(clock: &Clock) -> OffsetDateTime {
    OffsetDateTime::from(SystemTime::from(clock.now()))
}

/// So that azure_core 1.x clients (Cosmos DB, say) share the cache.
#[async_trait]
impl TokenCredential for TokenSource {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core_v1::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(azure_core_v1::Error::with_message(
                ErrorKind::Credential,
                "a token is for exactly one scope",
            ));
        };
        TokenSource::get_token(self, scope)
            .await
            .map_err(|no_token| {
                azure_core_v1::Error::with_message(ErrorKind::Credential, no_token.to_string())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TimeControl;
    use chrono::{TimeDelta, TimeZone, Utc};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Issues `token-N` (N counting calls) valid for `lifetime` on `clock`, each
    /// after `delay`.
    #[derive(Debug)]
    struct CountingCredential {
        calls: AtomicUsize,
        lifetime: Duration,
        delay: Duration,
        clock: Clock,
    }

    #[async_trait]
    impl TokenCredential for CountingCredential {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core_v1::Result<AccessToken> {
            assert_eq!(scopes, [SEARCH_SCOPE]);
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            Ok(AccessToken::new(
                format!("token-{n}"),
                now(&self.clock) + self.lifetime,
            ))
        }
    }

    /// A source of [`CountingCredential`]'s tokens, on a clock that stands still
    /// until moved.
    fn source(
        lifetime: Duration,
        delay: Duration,
    ) -> (Arc<TokenSource>, Arc<CountingCredential>, TimeControl) {
        let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
        let (clock, control) = Clock::controlled(start);
        let credential = Arc::new(CountingCredential {
            calls: AtomicUsize::new(0),
            lifetime,
            delay,
            clock: clock.clone(),
        });
        let source = Arc::new(TokenSource::new(credential.clone(), clock));
        (source, credential, control)
    }

    async fn token(source: &TokenSource) -> String {
        source
            .get_token(SEARCH_SCOPE)
            .await
            .unwrap()
            .token
            .secret()
            .to_owned()
    }

    #[tokio::test]
    async fn a_token_is_fetched_on_first_use_and_then_reused() {
        let (source, credential, _) = source(Duration::from_secs(3600), Duration::ZERO);
        assert_eq!(credential.calls.load(Ordering::SeqCst), 0);
        assert_eq!(token(&source).await, "token-1");
        assert_eq!(token(&source).await, "token-1");
        assert_eq!(credential.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_close_to_expiry_is_renewed() {
        let (source, credential, _) = source(Duration::from_secs(60), Duration::ZERO);
        assert_eq!(token(&source).await, "token-1");
        assert_eq!(token(&source).await, "token-2");
        assert_eq!(credential.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_token_is_renewed_once_the_clock_reaches_its_renewal_window() {
        let (source, credential, control) = source(Duration::from_secs(3600), Duration::ZERO);
        assert_eq!(token(&source).await, "token-1");
        control.advance(TimeDelta::minutes(54));
        assert_eq!(token(&source).await, "token-1", "six minutes left");
        control.advance(TimeDelta::minutes(2));
        assert_eq!(token(&source).await, "token-2", "four minutes left");
        assert_eq!(credential.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_first_callers_share_one_fetch() {
        let (source, credential, _) = source(Duration::from_secs(3600), Duration::from_millis(50));
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { token(&source).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), "token-1");
        }
        assert_eq!(credential.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_still_good_is_served_while_another_caller_renews_it() {
        // Four minutes' life: usable, but inside the renewal window at once.
        let (source, credential, _) = source(Duration::from_secs(240), Duration::from_secs(1));
        assert_eq!(token(&source).await, "token-1");
        let renewing = {
            let source = source.clone();
            tokio::spawn(async move { token(&source).await })
        };
        while credential.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // The renewal is under way: this caller gets the old token without waiting.
        assert_eq!(token(&source).await, "token-1");
        assert!(!renewing.is_finished());
        assert_eq!(renewing.await.unwrap(), "token-2");
        assert_eq!(credential.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn one_identity_has_one_source() {
        let credentials = Credentials::new(CredentialChoice::DeveloperTools, Clock::system());
        let app = credentials.app_identity().unwrap();
        let storage = credentials.storage_identity(None).unwrap();
        assert!(Arc::ptr_eq(&app, &storage));
        // A storage client id only matters for managed identity.
        let id = ClientId::new("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f").unwrap();
        assert!(Arc::ptr_eq(
            &app,
            &credentials.storage_identity(Some(&id)).unwrap()
        ));
    }
}
