//! Where the passages that ground a model's answer come from: the local index
//! (the default) or Azure AI Search (`azure_search.rs`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{AnswerError, DocumentIndex, Source};

/// A passage found for a query: the source an answer cites, and the text a
/// model reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrieved {
    pub source: Source,
    pub text: String,
}

#[async_trait]
pub trait Retriever: Send + Sync {
    /// Up to `limit` passages for `query`, best first.
    async fn retrieve(&self, query: &str, limit: usize) -> Result<Vec<Retrieved>, AnswerError>;
}

/// The documents of `RAG_DOCS_DIR` (or the sample corpus), indexed in memory:
/// the best passage of each of the best documents.
pub struct LocalRetriever {
    index: Arc<DocumentIndex>,
}

impl LocalRetriever {
    pub fn new(index: Arc<DocumentIndex>) -> Self {
        Self { index }
    }
}

#[async_trait]
impl Retriever for LocalRetriever {
    async fn retrieve(&self, query: &str, limit: usize) -> Result<Vec<Retrieved>, AnswerError> {
        Ok(self
            .index
            .best_passages(query, &[], limit)
            .await
            .iter()
            .map(|hit| Retrieved {
                source: hit.source(),
                text: hit.passage.text.clone(),
            })
            .collect())
    }
}
