//! Azure AI Search as the retriever: a full-text query against one index
//! (REST `POST {endpoint}/indexes/{index}/docs/search?api-version=2025-09-01`).

use async_trait::async_trait;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::retriever::{Retrieved, Retriever};
use super::upstream::{service_url, Upstream};
use super::{snippet, AnswerError, Source};
use crate::settings::{AzureSearch, SettingsError};

pub const API_VERSION: &str = "2025-09-01";

pub struct AzureSearchRetriever {
    upstream: Upstream,
    url: Url,
    content_field: String,
    title_field: String,
    id_field: String,
}

/// A search reply: `{"value": [{"@search.score": 1.2, <selected fields>}, …]}`.
#[derive(Deserialize)]
struct SearchResults {
    value: Vec<Map<String, Value>>,
}

impl AzureSearchRetriever {
    pub fn new(settings: &AzureSearch, upstream: Upstream) -> Result<Self, SettingsError> {
        let address = format!(
            "{}/indexes/{}/docs/search",
            settings.endpoint, settings.index
        );
        Ok(Self {
            upstream,
            url: service_url(&address, Some(API_VERSION), "AZURE_SEARCH_ENDPOINT")?,
            content_field: settings.content_field.clone(),
            title_field: settings.title_field.clone(),
            id_field: settings.id_field.clone(),
        })
    }

    fn passage(&self, document: &Map<String, Value>) -> Retrieved {
        let text = field_text(document, &self.content_field);
        let id = field_text(document, &self.id_field);
        let title = match field_text(document, &self.title_field) {
            title if title.is_empty() => id.clone(),
            title => title,
        };
        let score = document
            .get("@search.score")
            .and_then(Value::as_f64)
            .unwrap_or_default() as f32;
        Retrieved {
            source: Source {
                id,
                title,
                snippet: snippet(&text),
                score,
            },
            text,
        }
    }
}

/// A field as text: strings as they are, a missing or null field as nothing, and
/// anything else (a number, a collection) as its JSON.
fn field_text(document: &Map<String, Value>, field: &str) -> String {
    match document.get(field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

#[async_trait]
impl Retriever for AzureSearchRetriever {
    async fn retrieve(&self, query: &str, limit: usize) -> Result<Vec<Retrieved>, AnswerError> {
        let select = [&self.id_field, &self.title_field, &self.content_field]
            .map(String::as_str)
            .join(",");
        let body = json!({"search": query, "top": limit, "select": select});
        let results: SearchResults = self.upstream.post_json(&self.url, &body).await?;
        Ok(results.value.iter().map(|d| self.passage(d)).collect())
    }
}
