//! Conversation storage: one small trait, an in-process backend, an Azure Table
//! Storage backend and a Cosmos DB backend. Every backend maps its failures into [`StorageError`]; nothing
//! above this module knows which backend it talks to.

mod ascii;
mod cosmos;
mod guard;
mod memory;
mod page;
mod table;
mod window_cache;

pub use cosmos::{CosmosStore, DIRECTORY_PARTITION};
pub use guard::{GuardedStore, StorageBudget};
pub use memory::InProcessStore;
pub use page::{ListPosition, ListingPage};
pub use table::TableStore;
use window_cache::WindowCache;

use async_trait::async_trait;

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::{
    CustomerId, DayRange, Feedback, NewTurn, Rating, SessionId, ShareId, Title, Turn,
};

/// The most recent turns of a session, oldest first, how many turns it has in all,
/// who owns it and how its last turn was stored: all an append needs to state what
/// it expects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Window {
    pub turns: Vec<Turn>,
    pub total: u64,
    /// How many of the session's oldest turns the store no longer holds: the
    /// in-process store drops them when one session alone outgrows its cap.
    /// Always 0 for durable stores.
    pub dropped: u64,
    /// The owner: turn 0's `customer_id` (`None` without turns or without one).
    pub owner: Option<CustomerId>,
    /// The version of the last turn (number `total - 1`); `None` without turns.
    pub last: Option<Version>,
}

/// How a backend recognises a stored turn as unchanged since it was read: the
/// entity's ETag in Table Storage, a stamp in the in-process store. Opaque above
/// the backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(String);

impl Version {
    fn new(version: impl Into<String>) -> Self {
        Self(version.into())
    }

    fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an append expects to find, checked by the backend atomically with the
/// write: if it no longer holds, nothing is stored ([`Appended::Changed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The session has no turn: the new turn is turn 0, and its owner owns the
    /// conversation for life.
    New,
    /// Turn `last` is the last turn and is unchanged since read (`version`): the
    /// new turn is `last + 1`, carrying the owner of turn 0 (as read with it).
    After { last: u64, version: Version },
    /// The conversation ending at turn `last` (unchanged: `version`) has expired:
    /// its rows are deleted, each only as it was seen, and the new turn is turn 0
    /// of a new conversation.
    Restart { last: u64, version: Version },
}

/// A conversation as a read found it: its last turn's number and version. A delete
/// states it, and removes the conversation only while that turn is still its last,
/// unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    last: u64,
    version: Version,
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// The conversation as seen is gone, with its listing entry.
    Deleted,
    /// The conversation is not as seen any more (continued, restarted or deleted
    /// in part by another writer): nothing of what it became was deleted; read it
    /// again and decide again.
    Changed,
    /// The session has no turn (deleted or purged meanwhile).
    Missing,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored as turn `number`, now at `version`.
    Stored { number: u64, version: Version },
    /// The session is not as expected any more (another writer appended, deleted
    /// or restarted it): nothing was stored; reload it and decide again.
    Changed,
}

impl Window {
    /// The conversation as this window saw it; `None` without turns.
    pub fn seen(&self) -> Option<Seen> {
        Some(Seen {
            last: self.total.checked_sub(1)?,
            version: self.last.clone()?,
        })
    }

    /// What continuing this conversation expects: its last turn as read, or no turn.
    pub fn continuation(&self) -> Expectation {
        match self.seen() {
            Some(Seen { last, version }) => Expectation::After { last, version },
            None => Expectation::New,
        }
    }

    /// What starting this (expired) conversation again expects.
    pub fn restart(&self) -> Expectation {
        match self.continuation() {
            Expectation::After { last, version } => Expectation::Restart { last, version },
            other => other,
        }
    }

    /// The window after `turn` was stored as the next turn at `version`, keeping
    /// the last `limit` turns. A new conversation (turn 0) starts from nothing.
    pub fn followed_by(self, turn: Turn, version: Version, limit: usize) -> Window {
        let (mut turns, owner) = if turn.index == 0 {
            (Vec::new(), turn.owner.clone())
        } else {
            (self.turns, self.owner)
        };
        let total = turn.index + 1;
        turns.push(turn);
        let excess = turns.len().saturating_sub(limit);
        turns.drain(..excess);
        Window {
            turns,
            total,
            dropped: 0,
            owner,
            last: Some(version),
        }
    }
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

/// A read-only snapshot of a conversation's turns, shared under an unguessable id.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub id: ShareId,
    pub session: SessionId,
    /// Which conversation it was taken of: its owner and when its turn 0 was
    /// asked. A conversation deleted or started again since is another one.
    pub owner: CustomerId,
    pub started_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// How many turns it holds.
    pub turns: u64,
    /// The snapshot as served (JSON text), opaque to the store and never cut.
    pub document: String,
}

/// Which conversation a share was taken of: a [`Share`] without its snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareOrigin {
    pub id: ShareId,
    pub session: SessionId,
    pub owner: CustomerId,
    pub started_at: DateTime<Utc>,
}

impl ShareOrigin {
    /// The share taken of this conversation at `created_at`: `turns` turns, served as `document`.
    pub fn into_share(self, created_at: DateTime<Utc>, turns: u64, document: String) -> Share {
        Share {
            id: self.id,
            session: self.session,
            owner: self.owner,
            started_at: self.started_at,
            created_at,
            turns,
            document,
        }
    }
}

impl Share {
    pub fn origin(&self) -> ShareOrigin {
        ShareOrigin {
            id: self.id.clone(),
            session: self.session.clone(),
            owner: self.owner.clone(),
            started_at: self.started_at,
        }
    }
}

/// The turn whose feedback [`ConversationStore::set_feedback`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rated {
    /// The conversation's owner.
    pub owner: Option<CustomerId>,
    /// When the rated turn was asked: the day its feedback counts on.
    pub asked_at: DateTime<Utc>,
    /// The rating the write replaced (`None`: there was none).
    pub previous: Option<Rating>,
}

/// Whose figures: one customer's (the conversations they own) or the whole app's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Customer(CustomerId),
    App,
}

/// What happened on one UTC day, or a change to it: conversations started, turns
/// stored, the ratings standing on that day's answers, and (app-wide) customers
/// whose first conversation started that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayCounts {
    pub conversations: i64,
    pub turns: i64,
    pub up: i64,
    pub down: i64,
    pub customers: i64,
}

impl DayCounts {
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    pub fn plus(self, other: Self) -> Self {
        Self {
            conversations: self.conversations + other.conversations,
            turns: self.turns + other.turns,
            up: self.up + other.up,
            down: self.down + other.down,
            customers: self.customers + other.customers,
        }
    }
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
/// - `append` stores a turn exactly once, and only if the session is still as the
///   caller expects ([`Expectation`]), checked atomically with the write, even when
///   many callers (in many processes) append to one session at the same time;
/// - turn numbers of a session are 0-based and gap-free, and every turn carries
///   the owner of turn 0;
/// - a restart deletes only the rows it saw; an acknowledged turn is never lost
///   to a racing restart;
/// - a delete removes only the conversation as it was read ([`Seen`]): one
///   continued or started again meanwhile keeps every turn of what it became;
/// - `recent` costs the same however long the session is;
/// - a conversation is listed for its owner once `update_listing` has seen one of
///   its turns, until it is deleted or purged;
/// - a listing page costs about its own size, however many conversations the
///   owner (or anyone else) has.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// Stores `turn` in `session` if the session is as `expected`, or stores nothing
    /// and says the session changed.
    async fn append(
        &self,
        session: &SessionId,
        turn: NewTurn,
        expected: Expectation,
    ) -> Result<Appended, StorageError>;

    /// The last `limit` turns of `session` (oldest first) and its total turn count.
    async fn recent(&self, session: &SessionId, limit: usize) -> Result<Window, StorageError>;

    /// Every turn of `session` in order of their numbers; empty when the session is unknown.
    async fn all(&self, session: &SessionId) -> Result<Vec<Turn>, StorageError>;

    /// Turn 0 of `session` (which names its owner), in one read; `None` when the
    /// session is unknown.
    async fn first_turn(&self, session: &SessionId) -> Result<Option<Turn>, StorageError>;

    /// Removes every turn of `session` and its listing entry if the conversation is
    /// still as `expected` (its last turn unchanged), or removes nothing of what it
    /// became and says it changed.
    async fn delete(&self, session: &SessionId, expected: Seen) -> Result<Deleted, StorageError>;

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
    /// loses its entry in `owner`'s listing. Stops at `stop_at` (what is under way
    /// then is abandoned; every deletion can be repeated) and says whether it
    /// finished: the next call goes on with what is left.
    async fn delete_all(
        &self,
        owner: &CustomerId,
        stop_at: tokio::time::Instant,
    ) -> Result<DeletedAll, StorageError>;

    /// Records (`Some`) or removes (`None`) the feedback on turn `turn` of
    /// `session`, and says what it replaced; `None`, changing nothing, when the
    /// turn does not exist or `requester` may not access its conversation. Only the
    /// feedback changes: the turn's other properties stay as they are, and no turn
    /// is ever created.
    async fn set_feedback(
        &self,
        session: &SessionId,
        turn: u64,
        requester: Option<&CustomerId>,
        feedback: Option<&Feedback>,
    ) -> Result<Option<Rated>, StorageError>;

    /// Stores `share`, readable by its id (whole or not at all) until revoked.
    async fn create_share(&self, share: &Share) -> Result<(), StorageError>;

    /// The share stored as `id`; `None` when there is none or it was revoked.
    async fn shared(&self, id: &ShareId) -> Result<Option<Share>, StorageError>;

    /// Revokes every share of `session`; how many there were.
    async fn revoke_shares(&self, session: &SessionId) -> Result<u64, StorageError>;

    /// Where every stored share comes from, revoked or not yet whole ones aside.
    async fn share_origins(&self) -> Result<Vec<ShareOrigin>, StorageError>;

    /// Revokes share `id` of `session` alone; `false` if there was none.
    async fn revoke_share(&self, session: &SessionId, id: &ShareId) -> Result<bool, StorageError>;

    /// Adds `change` (not all zero) to the figures of `scope` for `day`: applied
    /// once when `Ok`, not at all when refused. Many writers (in many processes) may add at the
    /// same time; none is lost.
    async fn add_counts(
        &self,
        scope: &Scope,
        day: NaiveDate,
        change: DayCounts,
    ) -> Result<(), StorageError>;

    /// The figures of `scope` for each day of `days` that has any, in date order.
    /// Costs about the number of days, whatever the number of conversations.
    async fn day_counts(
        &self,
        scope: &Scope,
        days: &DayRange,
    ) -> Result<Vec<(NaiveDate, DayCounts)>, StorageError>;

    /// Records that `customer` has started a conversation; `true` only for the
    /// first call ever for that customer, even among concurrent callers.
    async fn first_seen(&self, customer: &CustomerId) -> Result<bool, StorageError>;
}
