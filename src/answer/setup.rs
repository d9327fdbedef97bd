//! The answerer the settings ask for: offline, or a model over a retriever.

use std::sync::Arc;

use anyhow::Context;

use super::azure_search::AzureSearchRetriever;
use super::chat::ChatCompletions;
use super::model::ModelAnswerer;
use super::retriever::{LocalRetriever, Retriever};
use super::upstream::{http_client, Auth, Upstream};
use super::{Answerer, DocumentIndex, Mode, OfflineAnswerer};
use crate::credential::{Credentials, COGNITIVE_SERVICES_SCOPE, SEARCH_SCOPE};
use crate::settings::{ApiKey, Generator, Retrieval, Settings, SettingsError};

/// Builds the answerer. Nothing upstream is contacted: keys are checked on first
/// use, and Entra tokens (from `credentials`) are fetched then.
pub fn answerer_for(
    settings: &Settings,
    index: Arc<DocumentIndex>,
    credentials: &Credentials,
) -> anyhow::Result<Arc<dyn Answerer>> {
    if settings.generator == Generator::Offline {
        return Ok(Arc::new(OfflineAnswerer::new(index)));
    }
    let http = http_client().context("cannot set up the HTTP client for model calls")?;
    let upstream =
        |service, auth| Upstream::new(service, http.clone(), auth, settings.upstream.clone());
    let (mode, chat) = match &settings.generator {
        Generator::Offline => unreachable!("offline answers were returned above"),
        Generator::AzureOpenAi(azure) => {
            let scope = COGNITIVE_SERVICES_SCOPE;
            let auth = azure_auth(credentials, &azure.api_key, scope, "AZURE_OPENAI_API_KEY")?;
            let upstream = upstream(Mode::AzureOpenAi.as_str(), auth);
            (
                Mode::AzureOpenAi,
                ChatCompletions::azure_openai(azure, upstream)?,
            )
        }
        Generator::OpenAi(openai) => {
            let auth = openai
                .api_key
                .clone()
                .map_or(Auth::Anonymous, Auth::BearerKey);
            let upstream = upstream(Mode::OpenAi.as_str(), auth);
            (
                Mode::OpenAi,
                ChatCompletions::openai_compatible(openai, upstream)?,
            )
        }
    };
    let retriever: Arc<dyn Retriever> = match &settings.retrieval {
        Retrieval::LocalIndex => Arc::new(LocalRetriever::new(index)),
        Retrieval::AzureSearch(search) => {
            let auth = azure_auth(
                credentials,
                &search.api_key,
                SEARCH_SCOPE,
                "AZURE_SEARCH_API_KEY",
            )?;
            Arc::new(AzureSearchRetriever::new(
                search,
                upstream("azure-search", auth),
            )?)
        }
    };
    tracing::info!(
        mode = mode.as_str(),
        retrieval = match settings.retrieval {
            Retrieval::LocalIndex => "local-index",
            Retrieval::AzureSearch(_) => "azure-search",
        },
        "answers come from a model"
    );
    Ok(Arc::new(ModelAnswerer::new(
        mode,
        Arc::new(chat),
        retriever,
        settings.model_context_tokens,
    )))
}

/// How an Azure service is called: with its key when one is set, else with a
/// Microsoft Entra token of the app's identity.
fn azure_auth(
    credentials: &Credentials,
    key: &Option<ApiKey>,
    scope: &'static str,
    key_setting: &str,
) -> Result<Auth, SettingsError> {
    if let Some(key) = key {
        return Ok(Auth::ApiKeyHeader(key.clone()));
    }
    let tokens = credentials.app_identity().map_err(|unavailable| {
        SettingsError::new(
            key_setting,
            format!(
                "is not set, and no Microsoft Entra credential is available instead: {unavailable}"
            ),
        )
    })?;
    Ok(Auth::Entra { tokens, scope })
}
