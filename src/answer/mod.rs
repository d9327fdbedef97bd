//! Answering a question: retrieval over the documents and an answerer that turns
//! passages and the conversation so far into an answer. Offline answers quote
//! the local index; model answers (`model.rs`) are written by a chat model
//! (`chat.rs`) from passages of a retriever (`retriever.rs`, `azure_search.rs`).

mod azure_search;
mod chat;
mod corpus;
mod index;
mod model;
mod offline;
mod prompt;
mod retriever;
mod setup;
mod upstream;
mod walk;

pub use corpus::{load_documents, Document};
pub use index::{DocumentIndex, Hit};
pub use offline::OfflineAnswerer;
pub use setup::answerer_for;

use async_trait::async_trait;

use crate::domain::Turn;

/// Which answerer produced an answer (`mode` in the response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Offline,
    AzureOpenAi,
    OpenAi,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Offline => "offline",
            Mode::AzureOpenAi => "azure-openai",
            Mode::OpenAi => "openai",
        }
    }
}

const SNIPPET_CHARS: usize = 240;

/// The start of a passage on one line, for a source's `snippet`: up to
/// `SNIPPET_CHARS` characters, then an ellipsis when the passage goes on.
fn snippet(text: &str) -> String {
    crate::domain::one_line_within(text, SNIPPET_CHARS + 1)
}

/// A passage an answer relies on.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The document: its `/`-separated path relative to the documents folder, or
    /// its key in Azure AI Search.
    pub id: String,
    pub title: String,
    pub snippet: String,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    pub sources: Vec<Source>,
    pub mode: Mode,
}

/// An upstream service (model or search) failed; the turn is not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("{service} failed: {message}")]
    Upstream {
        service: &'static str,
        message: String,
    },
    #[error("{service} timed out")]
    UpstreamTimeout { service: &'static str },
}

#[async_trait]
pub trait Answerer: Send + Sync + 'static {
    /// Answers `question` given the conversation's recent turns (oldest first).
    async fn answer(&self, question: &str, history: &[Turn]) -> Result<Answer, AnswerError>;
}
