//! Conversation storage: one small trait, an in-process backend and an Azure Table
//! Storage backend. Every backend maps its failures into [`StorageError`]; nothing
//! above this module knows which backend it talks to.

mod guard;
mod memory;
mod table;

pub use guard::{GuardedStore, StorageBudget};
pub use memory::InProcessStore;
pub use table::TableStore;

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use crate::domain::{CustomerId, Feedback, NewTurn, SessionId, Title, Turn};

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

/// What one call of [`ConversationStore::delete_all`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletedAll {
    /// Conversations removed (turns and listing entry) by this call.
    pub deleted: u64,
    /// `false` when the call stopped at its deadline with conversations left to
    /// delete: the next call goes on from there.
    pub complete: bool,
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
///   its turns, until it is deleted or purged.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// Stores `turn` as the next turn of `session` and returns its number.
    async fn append(&self, session: &SessionId, turn: NewTurn) -> Result<u64, StorageError>;

    /// The last `limit` turns of `session` (oldest first) and its total turn count.
    async fn recent(&self, session: &SessionId, limit: usize) -> Result<Window, StorageError>;

    /// Every turn of `session` in order; empty when the session is unknown.
    async fn all(&self, session: &SessionId) -> Result<Vec<Turn>, StorageError>;

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

    /// Every conversation listed for `owner`, in no particular order, expired or not.
    async fn sessions_of(&self, owner: &CustomerId) -> Result<Vec<SessionSummary>, StorageError>;

    /// Deletes every session whose last turn is older than `cutoff`, with its listing
    /// entry, and returns how many it deleted.
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError>;

    /// `owner`'s listing entry for `session`; `None` when it has none.
    async fn summary(
        &self,
        owner: &CustomerId,
        session: &SessionId,
    ) -> Result<Option<SessionSummary>, StorageError>;

    /// Names `session` in `owner`'s listing and returns the entry as it now is;
    /// `None`, changing nothing, when `owner` has no entry for it or its last turn is
    /// before `cutoff` (expired). Never creates an entry.
    async fn rename(
        &self,
        owner: &CustomerId,
        session: &SessionId,
        title: &Title,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Option<SessionSummary>, StorageError>;

    /// Deletes every conversation listed for `owner` (turns and listing entries),
    /// and no one else's: a listed session whose turns belong to someone else only
    /// loses its entry in `owner`'s listing. Starts no more work after `stop_at`.
    async fn delete_all(
        &self,
        owner: &CustomerId,
        stop_at: tokio::time::Instant,
    ) -> Result<DeletedAll, StorageError>;

    /// Records (`Some`) or removes (`None`) the feedback on turn `turn` of
    /// `session`; `false`, changing nothing, when the turn does not exist or
    /// `requester` may not access its conversation. Only the feedback changes: the
    /// turn's other properties stay as they are, and no turn is ever created.
    async fn set_feedback(
        &self,
        session: &SessionId,
        turn: u64,
        requester: Option<&CustomerId>,
        feedback: Option<&Feedback>,
    ) -> Result<bool, StorageError>;
}
