//! Conversations in Azure Cosmos DB for NoSQL, one document per conversation in
//! seed 000's shape (`document.rs`), partitioned by `/customer_id`. The only module
//! that speaks to Cosmos DB, through `rest.rs`.
//!
//! # Finding a conversation by its id
//!
//! The API names a conversation by id alone, but a point read needs its partition
//! too. Conversations with an owner live in the owner's partition (so a listing is
//! one partition's query); every conversation we write also has an entry under its
//! id in one partition of its own, [`DIRECTORY_PARTITION`]: for a conversation
//! without an owner the entry *is* the conversation, for an owned one it is a
//! small pointer `{id, customer_id: "#conversations", owner}`. So:
//! - a conversation this process has seen costs one point read (its partition is
//!   remembered);
//! - one it has not seen costs two (the directory entry, then the document);
//! - an id nobody uses (or someone else's) costs the directory read, and, for
//!   documents seed 000 wrote (which have no directory entry), one query by id
//!   across partitions;
//! - the directory entry is created with insert-only semantics before the
//!   conversation's document, so two writers starting the same id agree on one
//!   partition.
//!
//! # Appends
//!
//! The document's `_etag` is the version of its last turn, and each append's
//! expectation is checked by the write itself: `New` creates the document
//! insert-only (409 if it exists); `After` adds the message pair and replaces the
//! document with `If-Match` on the `_etag` the caller saw (412 if another writer
//! got there first); `Restart` deletes the expired document with `If-Match`, then
//! creates the new one insert-only, so a turn a racing writer stored is never
//! overwritten. A refused write is `Appended::Changed` (the caller reads again and
//! decides), unless its answer message's `turn_id` is found stored: a write that
//! landed but whose answer was lost is recognised instead of being appended twice.
//! Appends from this process to one conversation take turns (striped locks): they
//! would only refuse each other. A delete is checked the same way: the document
//! goes only with `If-Match` on the `_etag` of the conversation as read.
//!
//! # Cost
//!
//! Every read and every replace moves the whole document, so a turn costs more
//! the longer the conversation (ARCHITECTURE.md has the figures). A document may
//! not exceed Cosmos DB's 2 MB item limit: a turn that would push it over is
//! refused (`StorageError::Rejected`, so the answer comes back with
//! `persisted: false` and a warning that says to start a new conversation).

mod document;
mod error;
mod figures;
mod listing;
mod rest;
mod shares;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use uuid::Uuid;

use self::document::Conversation;
pub use self::document::DIRECTORY_PARTITION;
use self::error::{is_conflict, is_not_found, is_precondition_failed, storage_error};
use self::listing::{ListedRow, PageBuilder};
use self::rest::{Container, Query, Scope as QueryScope, Signer};
use super::{
    Appended, ConversationStore, DayCounts, Deleted, DeletedAll, Expectation, ListPosition,
    ListingPage, Rated, Scope, Seen, SessionSummary, Share, ShareOrigin, StorageError, Version,
    Window,
};
use crate::clock::Clock;
use crate::credential::Credentials;
use crate::domain::{
    may_access, parse_timestamp, CustomerId, DayRange, Feedback, NewTurn, SessionId, ShareId,
    Title, Turn,
};
use crate::settings::{CosmosAuth, CosmosSettings, SettingsError};

/// Appends from this process to conversations hashing alike take turns.
const APPEND_LOCK_STRIPES: usize = 64;
/// Conversations whose partition this process remembers; past this it starts over.
const MAX_REMEMBERED: usize = 100_000;
/// Reads and replaces per rename or feedback before giving up on a conversation
/// that keeps changing.
const WRITE_ATTEMPTS: usize = 4;
/// Queries per delete-all: one changed meanwhile is read again in the next.
const DELETE_ALL_ROUNDS: usize = 4;
/// Conversations a purge or a delete-all deletes at the same time.
const REMOVALS_AT_ONCE: usize = 8;

pub struct CosmosStore {
    client: Container,
    /// With an account key, a missing database or container is created.
    create_missing: bool,
    /// Set once the container is known to exist.
    container_checked: OnceCell<()>,
    /// Where each conversation seen lives: a hint, checked by every read.
    partitions: Mutex<HashMap<SessionId, String>>,
    append_locks: Vec<tokio::sync::Mutex<()>>,
}

/// What a lookup by id found.
enum Found {
    Conversation(Box<Conversation>),
    /// No conversation; `pointer` names the partition a directory entry reserves
    /// for it (its document not written yet, or lost).
    Nothing {
        pointer: Option<String>,
    },
}

/// A directory entry: a conversation without an owner, or a pointer to an owned one.
#[derive(Deserialize)]
struct DirectoryEntry {
    owner: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// A conversation's id, partition, last update and version, projected by a query
/// (for the purge and for delete-all).
#[derive(Deserialize)]
struct StoredRow {
    id: String,
    customer_id: String,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(rename = "_etag")]
    etag: String,
}

/// What a replace under `If-Match` did.
enum Replaced {
    /// Stored; the new `_etag`, when the answer gave it.
    Done(Option<String>),
    /// The document changed or went since it was read: nothing was written.
    Changed,
}

/// What [`CosmosStore::remove_rows`] did.
struct Removal {
    /// Conversations it tried to delete (or had to leave, out of time).
    attempted: u64,
    removed: u64,
    /// Whether it left some because its time was up.
    stopped: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The partition hints hold no invariant a panic could break.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl CosmosStore {
    /// A store for the account in `settings`, signing in with its key or with
    /// `credentials`. Makes no request: the account is contacted on first use (or
    /// by [`CosmosStore::check_container`] at start-up).
    pub fn connect(
        settings: &CosmosSettings,
        credentials: &Credentials,
        clock: Clock,
    ) -> Result<Self, SettingsError> {
        let endpoint = settings.endpoint.trim_end_matches('/');
        let signer = match &settings.auth {
            CosmosAuth::Key(key) => {
                Signer::Key(rest::decode_key(key.expose()).ok_or_else(|| {
                    SettingsError::new("COSMOSDB_KEY", "is not an account key (base64)")
                })?)
            }
            CosmosAuth::Entra => Signer::Entra {
                tokens: credentials.app_identity().map_err(|e| {
                    SettingsError::new(
                        "COSMOSDB_KEY",
                        format!("is not set, and no Microsoft Entra credential is available: {e}"),
                    )
                })?,
                scope: rest::token_scope(endpoint)
                    .ok_or_else(|| SettingsError::new("COSMOSDB_ENDPOINT", "is not a valid URL"))?,
            },
        };
        let client = Container::new(
            endpoint,
            &settings.database,
            &settings.container,
            signer,
            clock,
        )
        .map_err(|_| SettingsError::new("COSMOSDB_ENDPOINT", "cannot start an HTTP client"))?;
        Ok(Self {
            client,
            create_missing: matches!(settings.auth, CosmosAuth::Key(_)),
            container_checked: OnceCell::new(),
            partitions: Mutex::new(HashMap::new()),
            append_locks: (0..APPEND_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    /// The container, checked (and with an account key created, with its
    /// database) once; a failure is tried again on the next call.
    async fn container(&self) -> Result<&Container, StorageError> {
        self.container_checked
            .get_or_try_init(|| async {
                match self.client.read_container().await {
                    Ok(()) => Ok(()),
                    Err(e) if is_not_found(&e) && self.create_missing => {
                        self.create_container().await
                    }
                    Err(e) if is_not_found(&e) => Err(StorageError::Rejected(format!(
                        "COSMOSDB_AIConversations_CONTAINER: Cosmos DB container {} does not exist (signed in with Microsoft Entra ID, it cannot be created: create it with partition key /customer_id, or set COSMOSDB_KEY)",
                        self.client.name()
                    ))),
                    Err(e) => Err(storage_error("opening the container", &e)),
                }
            })
            .await?;
        Ok(&self.client)
    }

    async fn create_container(&self) -> Result<(), StorageError> {
        match self.client.create_database().await {
            Err(e) if !is_conflict(&e) => {
                return Err(storage_error("creating the database", &e));
            }
            _ => {}
        }
        match self.client.create_container("/customer_id").await {
            Err(e) if !is_conflict(&e) => Err(storage_error("creating the container", &e)),
            _ => {
                tracing::info!(container = %self.client.name(), "Cosmos DB container ready");
                Ok(())
            }
        }
    }

    /// Whether the container can be used: at start-up, so that a container that
    /// does not exist (and will not be created) is said at once.
    pub async fn check_container(&self) -> Result<(), StorageError> {
        self.container().await.map(|_| ())
    }

    fn remember(&self, session: &SessionId, partition: &str) {
        let mut partitions = lock(&self.partitions);
        if partitions.len() >= MAX_REMEMBERED && !partitions.contains_key(session) {
            partitions.clear();
        }
        partitions.insert(session.clone(), partition.to_owned());
    }

    fn forget(&self, session: &SessionId) {
        lock(&self.partitions).remove(session);
    }

    fn append_lock(&self, session: &SessionId) -> &tokio::sync::Mutex<()> {
        let mut hasher = DefaultHasher::new();
        session.hash(&mut hasher);
        &self.append_locks[hasher.finish() as usize % APPEND_LOCK_STRIPES]
    }

    /// The document `session` in `partition`, if there.
    async fn read_in(
        &self,
        container: &Container,
        partition: &str,
        session: &SessionId,
    ) -> Result<Option<Conversation>, StorageError> {
        container
            .read_item(partition, session.as_str())
            .await
            .map_err(|e| storage_error("reading a conversation", &e))
    }

    /// The conversation `session`, wherever it lives (see the module's notes).
    async fn find(
        &self,
        container: &Container,
        session: &SessionId,
    ) -> Result<Found, StorageError> {
        let remembered = lock(&self.partitions).get(session).cloned();
        if let Some(partition) = remembered {
            if let Some(found) = self.read_in(container, &partition, session).await? {
                return Ok(Found::Conversation(Box::new(found)));
            }
            self.forget(session);
        }
        let entry: Option<DirectoryEntry> = container
            .read_item(DIRECTORY_PARTITION, session.as_str())
            .await
            .map_err(|e| storage_error("reading the directory", &e))?;
        match entry {
            Some(DirectoryEntry {
                owner: Some(owner), ..
            }) => match self.read_in(container, &owner, session).await? {
                Some(found) => {
                    self.remember(session, &owner);
                    Ok(Found::Conversation(Box::new(found)))
                }
                None => Ok(Found::Nothing {
                    pointer: Some(owner),
                }),
            },
            Some(DirectoryEntry { rest, .. }) => {
                let found: Conversation =
                    serde_json::from_value(Value::Object(rest)).map_err(|_| {
                        StorageError::Unavailable("an unreadable conversation document".into())
                    })?;
                self.remember(session, DIRECTORY_PARTITION);
                Ok(Found::Conversation(Box::new(found)))
            }
            None => self.find_unregistered(container, session).await,
        }
    }

    /// A document with this id that has no directory entry (seed 000 wrote it):
    /// one query by id across partitions.
    async fn find_unregistered(
        &self,
        container: &Container,
        session: &SessionId,
    ) -> Result<Found, StorageError> {
        // Not the directory: an entry written since it was read is no document.
        let query = Query::new(
            "SELECT * FROM c WHERE c.id = @id AND c.customer_id != @directory \
             AND IS_DEFINED(c.messages)",
        )
        .with("@id", session.as_str())
        .with("@directory", DIRECTORY_PARTITION);
        let mut documents: Vec<Conversation> = container
            .query_all(&query, QueryScope::AllPartitions)
            .await
            .map_err(|e| storage_error("finding a conversation", &e))?;
        // Several customers' documents may share an id: the oldest is the one.
        documents
            .sort_by(|a, b| (&a.created_at, &a.customer_id).cmp(&(&b.created_at, &b.customer_id)));
        Ok(match documents.into_iter().next() {
            Some(found) => {
                self.remember(session, &found.customer_id);
                Found::Conversation(Box::new(found))
            }
            None => Found::Nothing { pointer: None },
        })
    }

    /// Stores `document` (just started) as a new conversation: its directory entry
    /// first, then the document. Its `_etag` when the answer gave one, or `None` if
    /// another writer started it first.
    async fn create(
        &self,
        container: &Container,
        session: &SessionId,
        document: &Conversation,
        pointer_exists: bool,
    ) -> Result<Option<Option<String>>, StorageError> {
        let body = document.body()?;
        let partition = document.customer_id.clone();
        if partition != DIRECTORY_PARTITION && !pointer_exists {
            let pointer = json!({
                "id": session.as_str(),
                "customer_id": DIRECTORY_PARTITION,
                "owner": partition,
            });
            match container.create_item(DIRECTORY_PARTITION, &pointer).await {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => return Ok(None),
                Err(e) => return Err(storage_error("registering a conversation", &e)),
            }
        }
        match container.create_item(&partition, &body).await {
            Ok(etag) => {
                self.remember(session, &partition);
                Ok(Some(etag))
            }
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(storage_error("creating a conversation", &e)),
        }
    }

    /// Deletes the document `session` in `partition` only as it was (`etag`), and
    /// then its directory pointer; whether the document was deleted.
    async fn remove(
        &self,
        container: &Container,
        partition: &str,
        session: &SessionId,
        etag: &str,
    ) -> Result<bool, StorageError> {
        let deleted = match container
            .delete_item(partition, session.as_str(), Some(etag))
            .await
        {
            Ok(_) => true,
            Err(e) if is_not_found(&e) || is_precondition_failed(&e) => false,
            Err(e) => return Err(storage_error("deleting a conversation", &e)),
        };
        if deleted && partition != DIRECTORY_PARTITION {
            self.remove_pointer(container, session).await?;
        }
        self.forget(session);
        Ok(deleted)
    }

    async fn remove_pointer(
        &self,
        container: &Container,
        session: &SessionId,
    ) -> Result<(), StorageError> {
        match container
            .delete_item(DIRECTORY_PARTITION, session.as_str(), None)
            .await
        {
            Err(e) if !is_not_found(&e) => Err(storage_error("unregistering a conversation", &e)),
            _ => Ok(()),
        }
    }

    /// Replaces `document` (in its partition) only while it is as read: `If-Match`
    /// on the `_etag` it was read with.
    async fn replace_as_read(
        &self,
        container: &Container,
        session: &SessionId,
        document: &Conversation,
        operation: &str,
    ) -> Result<Replaced, StorageError> {
        let replaced = container
            .replace_item(
                &document.customer_id,
                session.as_str(),
                &document.body()?,
                document.etag().unwrap_or_default(),
            )
            .await;
        match replaced {
            Ok(etag) => Ok(Replaced::Done(etag)),
            Err(e) if is_precondition_failed(&e) || is_not_found(&e) => Ok(Replaced::Changed),
            Err(e) => Err(storage_error(operation, &e)),
        }
    }

    /// Deletes each conversation of `rows` as it was read (with its pointer),
    /// [`REMOVALS_AT_ONCE`] at a time, starting none once `stop_at` has passed.
    async fn remove_rows(
        &self,
        container: &Container,
        rows: Vec<StoredRow>,
        stop_at: Option<Instant>,
    ) -> Result<Removal, StorageError> {
        let doomed: Vec<(SessionId, StoredRow)> = rows
            .into_iter()
            .filter_map(|row| Some((SessionId::parse(&row.id).ok()?, row)))
            .collect();
        let attempted = doomed.len() as u64;
        let outcomes: Vec<Option<bool>> = futures::stream::iter(doomed)
            .map(|(session, row)| async move {
                if stop_at.is_some_and(|stop_at| Instant::now() >= stop_at) {
                    return Ok(None);
                }
                self.remove(container, &row.customer_id, &session, &row.etag)
                    .await
                    .map(Some)
            })
            .buffer_unordered(REMOVALS_AT_ONCE)
            .try_collect()
            .await?;
        Ok(Removal {
            attempted,
            removed: outcomes.iter().filter(|o| **o == Some(true)).count() as u64,
            stopped: outcomes.contains(&None),
        })
    }

    /// Starts `session` with `turn` as turn 0 in its owner's partition: its number
    /// and version, or `None` if another writer started it first. A directory
    /// entry (`pointer`) reserves the id for the owner whose start wrote it: only
    /// that owner's turn may finish the start (theirs under way, or left
    /// unfinished by a crash); anyone else's is refused, never stored as theirs.
    async fn start(
        &self,
        container: &Container,
        session: &SessionId,
        turn: &NewTurn,
        turn_id: Uuid,
        pointer: Option<String>,
    ) -> Result<Option<(u64, Option<String>)>, StorageError> {
        let partition = turn
            .owner
            .as_ref()
            .map_or(DIRECTORY_PARTITION, |owner| owner.as_str());
        if pointer
            .as_deref()
            .is_some_and(|reserved| reserved != partition)
        {
            return Ok(None);
        }
        let mut document = Conversation::new(session, partition);
        let number = document.push(turn, turn_id);
        Ok(self
            .create(container, session, &document, pointer.is_some())
            .await?
            .map(|etag| (number, etag)))
    }

    /// After a refused (or unanswered) write: `Stored` if our turn landed anyway
    /// (an earlier attempt whose answer was lost), else `Changed`.
    async fn ours_or_changed(
        &self,
        container: &Container,
        session: &SessionId,
        turn_id: Uuid,
    ) -> Result<Appended, StorageError> {
        Ok(match self.find(container, session).await? {
            // The document's version: stale if another turn followed ours, which
            // an append expecting it then finds out.
            Found::Conversation(document) => match document.turn_with_id(turn_id) {
                Some(number) => Appended::Stored {
                    number,
                    version: Version::new(document.etag().unwrap_or_default()),
                },
                None => Appended::Changed,
            },
            Found::Nothing { .. } => Appended::Changed,
        })
    }
}

#[async_trait]
impl ConversationStore for CosmosStore {
    async fn append(
        &self,
        session: &SessionId,
        turn: NewTurn,
        expected: Expectation,
    ) -> Result<Appended, StorageError> {
        let container = self.container().await?;
        let turn_id = Uuid::new_v4();
        let _one_at_a_time = self.append_lock(session).lock().await;
        let found = self.find(container, session).await?;
        let written = match (expected, found) {
            (Expectation::New, Found::Nothing { pointer }) => {
                self.start(container, session, &turn, turn_id, pointer)
                    .await?
            }
            (Expectation::After { last, version }, Found::Conversation(mut document))
                if document.is_as_seen(last, &version) =>
            {
                let number = document.push(&turn, turn_id);
                match self
                    .replace_as_read(container, session, &document, "replacing a conversation")
                    .await?
                {
                    Replaced::Done(etag) => Some((number, etag)),
                    Replaced::Changed => None,
                }
            }
            (Expectation::Restart { last, version }, Found::Conversation(document))
                if document.is_as_seen(last, &version) =>
            {
                // The expired document goes only as it was seen; the new one is then
                // created insert-only, so a racing writer's turn is never overwritten.
                if self
                    .remove(container, &document.customer_id, session, version.as_str())
                    .await?
                {
                    self.start(container, session, &turn, turn_id, None).await?
                } else {
                    None
                }
            }
            _ => return Ok(Appended::Changed),
        };
        match written {
            Some((number, Some(etag))) => Ok(Appended::Stored {
                number,
                version: Version::new(etag),
            }),
            // Refused, or stored without a version in the answer: what is there now
            // says whether our turn (by its `turn_id`) landed.
            _ => self.ours_or_changed(container, session, turn_id).await,
        }
    }

    async fn recent(&self, session: &SessionId, limit: usize) -> Result<Window, StorageError> {
        let container = self.container().await?;
        Ok(match self.find(container, session).await? {
            Found::Conversation(document) => {
                let total = document.turn_count();
                Window {
                    turns: document.turns_from(total.saturating_sub(limit as u64)),
                    total,
                    dropped: 0,
                    owner: document.owner(),
                    last: document.etag().map(Version::new),
                }
            }
            Found::Nothing { .. } => Window::default(),
        })
    }

    async fn all(&self, session: &SessionId) -> Result<Vec<Turn>, StorageError> {
        let container = self.container().await?;
        Ok(match self.find(container, session).await? {
            Found::Conversation(document) => document.turns_from(0),
            Found::Nothing { .. } => Vec::new(),
        })
    }

    /// One point read when this process knows the conversation's partition.
    async fn first_turn(&self, session: &SessionId) -> Result<Option<Turn>, StorageError> {
        let container = self.container().await?;
        Ok(match self.find(container, session).await? {
            Found::Conversation(document) => document.first_turn(),
            Found::Nothing { .. } => None,
        })
    }

    /// The document goes only as it was seen: `If-Match` on the `_etag` read.
    async fn delete(&self, session: &SessionId, expected: Seen) -> Result<Deleted, StorageError> {
        let container = self.container().await?;
        let document = match self.find(container, session).await? {
            Found::Conversation(document) => document,
            // A pointer alone stays: it may be a start under way, whose partition
            // it reserves.
            Found::Nothing { .. } => return Ok(Deleted::Missing),
        };
        if !document.is_as_seen(expected.last, &expected.version) {
            return Ok(Deleted::Changed);
        }
        let removed = self
            .remove(
                container,
                &document.customer_id,
                session,
                expected.version.as_str(),
            )
            .await?;
        Ok(match removed {
            true => Deleted::Deleted,
            // Changed or deleted between the read and the delete.
            false => match self.find(container, session).await? {
                Found::Conversation(_) => Deleted::Changed,
                Found::Nothing { .. } => Deleted::Missing,
            },
        })
    }

    /// The document is its own listing entry: nothing more to write.
    async fn update_listing(&self, _: &SessionId, _: u64, _: &NewTurn) -> Result<(), StorageError> {
        Ok(())
    }

    /// One query in the owner's partition (`listing.rs`), read only as far as the
    /// page needs: the service returns it in pieces of the page's size.
    async fn sessions_page(
        &self,
        owner: &CustomerId,
        limit: usize,
        after: Option<&ListPosition>,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, StorageError> {
        const OPERATION: &str = "listing conversations";
        let container = self.container().await?;
        let mut query = Query::new(listing::page_query(after.is_some(), cutoff.is_some()))
            .with("@owner", owner.as_str());
        if let Some(after) = after {
            query = query.with("@before", listing::before(after));
        }
        if let Some(cutoff) = cutoff {
            query = query.with("@from", listing::from(cutoff));
        }
        let mut page = PageBuilder::new(owner, limit, after, cutoff);
        let mut continuation = None;
        loop {
            let rows = container
                .query_page::<ListedRow>(
                    &query,
                    QueryScope::Partition(owner.as_str()),
                    Some(limit + 1),
                    continuation.as_deref(),
                )
                .await
                .map_err(|e| storage_error(OPERATION, &e))?;
            if !rows.items.into_iter().all(|row| page.take(row)) {
                break;
            }
            match rows.continuation {
                Some(next) => continuation = Some(next),
                None => break,
            }
        }
        Ok(page.finish())
    }

    /// One query across partitions for every conversation's id and last update,
    /// then a delete of each expired one as it was read (`If-Match`), so that a
    /// conversation continued meanwhile is left alone.
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError> {
        let container = self.container().await?;
        let query = "SELECT c.id, c.customer_id, c.updated_at, c._etag FROM c \
                     WHERE IS_DEFINED(c.messages)";
        let rows: Vec<StoredRow> = container
            .query_all(&Query::new(query), QueryScope::AllPartitions)
            .await
            .map_err(|e| storage_error("scanning for expired conversations", &e))?;
        let expired = rows
            .into_iter()
            .filter(|row| {
                row.updated_at
                    .as_deref()
                    .and_then(parse_timestamp)
                    .is_some_and(|updated_at| updated_at < cutoff)
            })
            .collect();
        Ok(self.remove_rows(container, expired, None).await?.removed)
    }

    /// A point read in `owner`'s partition: every document there is theirs.
    async fn summary(
        &self,
        owner: &CustomerId,
        session: &SessionId,
    ) -> Result<Option<SessionSummary>, StorageError> {
        let container = self.container().await?;
        Ok(self
            .read_in(container, owner.as_str(), session)
            .await?
            .and_then(|document| listing::summary_of(&document, owner)))
    }

    /// The document's `title` (seed 000 ignores it), replaced under `If-Match` on
    /// the `_etag` read; read again when a turn got there first.
    async fn rename(
        &self,
        owner: &CustomerId,
        session: &SessionId,
        title: &Title,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Option<SessionSummary>, StorageError> {
        let container = self.container().await?;
        for _ in 0..WRITE_ATTEMPTS {
            let Some(mut document) = self.read_in(container, owner.as_str(), session).await? else {
                return Ok(None);
            };
            let live = parse_timestamp(&document.updated_at)
                .is_some_and(|updated_at| cutoff.is_none_or(|cutoff| updated_at >= cutoff));
            if !live || document.messages.is_empty() {
                return Ok(None);
            }
            document.set_title(title);
            if let Replaced::Done(_) = self
                .replace_as_read(container, session, &document, "renaming a conversation")
                .await?
            {
                return Ok(listing::summary_of(&document, owner));
            }
        }
        Err(StorageError::Unavailable(
            "the conversation kept changing while it was renamed".into(),
        ))
    }

    /// One query in `owner`'s partition for every conversation's id and `_etag`,
    /// then a delete of each as read (with its pointer); one changed meanwhile is
    /// read again in the next round.
    async fn delete_all(
        &self,
        owner: &CustomerId,
        stop_at: tokio::time::Instant,
    ) -> Result<DeletedAll, StorageError> {
        let container = self.container().await?;
        let mut deleted = 0;
        for _ in 0..DELETE_ALL_ROUNDS {
            let query = Query::new(
                "SELECT c.id, c.customer_id, c.updated_at, c._etag FROM c \
                 WHERE c.customer_id = @owner AND IS_DEFINED(c.messages)",
            )
            .with("@owner", owner.as_str());
            let rows: Vec<StoredRow> = container
                .query_all(&query, QueryScope::Partition(owner.as_str()))
                .await
                .map_err(|e| storage_error("finding a customer's conversations", &e))?;
            let removal = self.remove_rows(container, rows, Some(stop_at)).await?;
            deleted += removal.removed;
            if removal.attempted == 0 {
                return Ok(DeletedAll {
                    deleted,
                    complete: true,
                });
            }
            if removal.stopped {
                break;
            }
        }
        Ok(DeletedAll {
            deleted,
            complete: false,
        })
    }

    /// On the turn's answer message (seed 000 ignores the field), replaced under
    /// `If-Match` on the `_etag` read; read again when a turn got there first.
    async fn set_feedback(
        &self,
        session: &SessionId,
        turn: u64,
        requester: Option<&CustomerId>,
        feedback: Option<&Feedback>,
    ) -> Result<Option<Rated>, StorageError> {
        let container = self.container().await?;
        for _ in 0..WRITE_ATTEMPTS {
            let Found::Conversation(mut document) = self.find(container, session).await? else {
                return Ok(None);
            };
            if !may_access(document.owner().as_ref(), requester) {
                return Ok(None);
            }
            let Some(rated) = document.set_feedback(turn, feedback) else {
                return Ok(None);
            };
            if let Replaced::Done(_) = self
                .replace_as_read(container, session, &document, "recording feedback")
                .await?
            {
                return Ok(Some(rated));
            }
        }
        Err(StorageError::Unavailable(
            "the conversation kept changing while its feedback was recorded".into(),
        ))
    }

    /// In a partition of the share's own (`shares.rs`).
    async fn create_share(&self, share: &Share) -> Result<(), StorageError> {
        self.put_share(share).await
    }

    async fn shared(&self, id: &ShareId) -> Result<Option<Share>, StorageError> {
        self.read_share(id).await
    }

    async fn revoke_shares(&self, session: &SessionId) -> Result<u64, StorageError> {
        self.remove_shares_of(session).await
    }

    async fn share_origins(&self) -> Result<Vec<ShareOrigin>, StorageError> {
        self.origins().await
    }

    async fn revoke_share(&self, session: &SessionId, id: &ShareId) -> Result<bool, StorageError> {
        self.remove_share(session, id.as_str()).await
    }

    /// One atomic `incr` patch of the day's item (`figures.rs`).
    async fn add_counts(
        &self,
        scope: &Scope,
        day: NaiveDate,
        change: DayCounts,
    ) -> Result<(), StorageError> {
        self.add_to_day(scope, day, change).await
    }

    /// One query in the scope's partition.
    async fn day_counts(
        &self,
        scope: &Scope,
        days: &DayRange,
    ) -> Result<Vec<(NaiveDate, DayCounts)>, StorageError> {
        self.days(scope, days).await
    }

    async fn first_seen(&self, customer: &CustomerId) -> Result<bool, StorageError> {
        self.note_first_seen(customer).await
    }
}
