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
mod sse;
mod upstream;
mod walk;

pub use corpus::{load_documents, Document};
pub use index::{DocumentIndex, Hit};
pub use offline::OfflineAnswerer;
pub use setup::answerer_for;

use async_trait::async_trait;
use tokio::sync::mpsc;

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

/// What an answerer reports while it works, for a reply that streams.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerEvent {
    /// Retrieval is done: what the answer is built from. Sent once, before any text.
    Grounded {
        mode: Mode,
        sources: Vec<Source>,
        /// The prior turns the answerer was given.
        history_turns: usize,
    },
    /// The next piece of the answer: all pieces joined are exactly [`Answer::text`].
    Text(String),
}

/// Where an answerer's events go: a channel when the reply streams, nowhere
/// otherwise.
#[derive(Debug)]
pub struct AnswerEvents(Option<mpsc::UnboundedSender<AnswerEvent>>);

impl AnswerEvents {
    /// Events are dropped: the caller wants only the finished answer.
    pub fn none() -> Self {
        Self(None)
    }

    /// Events go to the receiver, in order.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<AnswerEvent>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Self(Some(sender)), receiver)
    }

    fn grounded(&self, mode: Mode, sources: &[Source], history: &[Turn]) {
        self.send(AnswerEvent::Grounded {
            mode,
            sources: sources.to_vec(),
            history_turns: history.len(),
        });
    }

    fn text(&self, piece: &str) {
        if !piece.is_empty() {
            self.send(AnswerEvent::Text(piece.to_owned()));
        }
    }

    fn send(&self, event: AnswerEvent) {
        if let Some(sender) = &self.0 {
            // A receiver that is gone has stopped listening: nothing is lost.
            let _ = sender.send(event);
        }
    }
}

#[async_trait]
pub trait Answerer: Send + Sync + 'static {
    /// Answers `question` given the conversation's recent turns (oldest first),
    /// reporting its sources and then its text to `events` as they are known.
    async fn answer(
        &self,
        question: &str,
        history: &[Turn],
        events: &AnswerEvents,
    ) -> Result<Answer, AnswerError>;
}
