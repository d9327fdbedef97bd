//! Conversation storage: one small trait, an in-process backend and an Azure Table
//! Storage backend. Every backend maps its failures into [`StorageError`]; nothing
//! above this module knows which backend it talks to.

mod guard;
mod memory;
mod page;
mod table;

pub use guard::{GuardedStore, StorageBudget};
pub use memory::InProcessStore;
pub use page::{ListPosition, ListingPage};
pub use table::TableStore;

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use crate::domain::{CustomerId, NewTurn, SessionId, Turn};

/// The most recent turns of a session, oldest first, and how many turns it has in all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Window {
    pub turns: Vec<Turn>,
    pub total: u64,
}

/// A conversation as its owner's listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    pub session_id: SessionId,
    pub owner: CustomerId,
    /// The first question, shortened (`domain::title_of`).
    pub title: String,
    pub turns: u64,
    /// When turn 0 was asked.
    pub created_at: DateTime<Utc>,
    /// When the last turn was asked.
    pub updated_at: DateTime<Utc>,
}

/// Why a storage call failed, whatever the backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The store could not be reached or answered with a server error.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The call did not finish within its time budget.
    #[error("storage timed out")]
    Timeout,
    /// The circuit breaker is open after recent failures; storage is not tried.
    #[error("storage skipped after recent failures (retrying in {retry_in_ms} ms)")]
    CircuitOpen { retry_in_ms: u64 },
    /// The data cannot be stored (too large for an entity, for example); retrying will not help.
    #[error("cannot store: {0}")]
    Rejected(String),
}

/// Where conversations live. Every implementation keeps these promises (the
/// conformance suite in `tests/api/storage_conformance.rs` checks each backend):
/// - `append` stores a turn exactly once, at the next free number, even when many
///   callers (in many processes) append to one session at the same time;
/// - turn numbers of a session are 0-based and gap-free;
/// - `recent` costs the same however long the session is;
/// - a conversation is listed for its owner once `update_listing` has seen one of
///   its turns, until it is deleted or purged;
/// - a listing page costs about its own size, however many conversations the
///   owner (or anyone else) has.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// Stores `turn` as the next turn of `session` and returns its number.
    async fn append(&self, session: &SessionId, turn: NewTurn) -> Result<u64, StorageError>;

    /// The last `limit` turns of `session` (oldest first) and its total turn count.
    async fn recent(&self, session: &SessionId, limit: usize) -> Result<Window, StorageError>;

    /// Every turn of `session` in order; empty when the session is unknown.
    async fn all(&self, session: &SessionId) -> Result<Vec<Turn>, StorageError>;

    /// Turn 0 of `session` (which names its owner), in one read; `None` when the
    /// session is unknown.
    async fn first_turn(&self, session: &SessionId) -> Result<Option<Turn>, StorageError>;

    /// Removes every turn of `session` and its listing entry; `false` when there was
    /// nothing to remove.
    async fn delete(&self, session: &SessionId) -> Result<bool, StorageError>;

    /// Records `turn`, just appended to `session` as turn `number`, in the listing of
    /// its owner (nothing for a turn without one). A separate call after `append`, so
    /// that a listing failure never undoes a stored turn.
    async fn update_listing(
        &self,
        session: &SessionId,
        number: u64,
        turn: &NewTurn,
    ) -> Result<(), StorageError>;

    /// Up to `limit` (at least 1) of the conversations listed for `owner`, in listing
    /// order (latest last turn first, ties by session id), from just after `after`
    /// (from the start when `None`); those whose last turn is before `cutoff` are
    /// left out. `next` is set when more follow.
    async fn sessions_page(
        &self,
        owner: &CustomerId,
        limit: usize,
        after: Option<&ListPosition>,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, StorageError>;

    /// Deletes every session whose last turn is older than `cutoff`, with its listing
    /// entry, and returns how many it deleted.
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError>;
}
