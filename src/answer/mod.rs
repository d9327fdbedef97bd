//! Answering a question: retrieval over the documents and an answerer that turns
//! passages and the conversation so far into an answer.

mod corpus;
mod index;
mod offline;
mod walk;

pub use corpus::{load_documents, Document};
pub use index::{DocumentIndex, Hit};
pub use offline::OfflineAnswerer;

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

/// A passage an answer relies on.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Path relative to the documents folder, `/`-separated.
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
