//! Conversations in Azure Table Storage (Azurite locally; Cosmos DB for Table
//! speaks the same protocol), in the seed's format: one partition per session,
//! one entity per turn, RowKey = the zero-padded turn number (see `keys.rs`).
//!
//! # Cost invariants
//!
//! - **Window load is flat**: `recent(session, limit)` reads one page of at most
//!   `limit + 32` rows starting where this process last saw the session end, so
//!   its cost does not grow with the session's length. Only a session this
//!   process has not seen and that is longer than `limit + 32` turns costs more:
//!   existence probes doubling from there, then a binary search (about
//!   2·log2(turns) point reads), then the window read, once per process.
//! - **Steady state is two round trips per persistent turn**: one query to load
//!   the window, one insert to append.
//!
//! # Correctness
//!
//! The count this process remembers per session is a hint, never the truth:
//! windows are trusted only when the rows read are contiguous from where they
//! should start and are not cut short, and a turn is stored only by *insert*
//! (never upsert) at the number after the last one, so a number another writer
//! took is a 409 conflict. Several handler processes can share a table: each turn
//! is stored exactly once and numbers stay gap-free. A retried insert that had in
//! fact landed is recognised by its `turn_id`.
//!
//! A delete racing an append to the same session (on another process, between
//! that append's count and its insert) can leave the appended turn behind under
//! its old number; it is adopted by the next turns written to the session.

mod connection;
mod delete_all;
mod entity;
mod error;
mod feedback;
mod keys;
mod listing;
mod purge;
mod titles;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::{Continuable, StatusCode};
use azure_data_tables::clients::{PartitionKeyClient, TableClient};
use azure_data_tables::IfMatchCondition;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use uuid::Uuid;

use self::entity::{TurnEntity, CUSTOMER_ID, ROW_KEY, TURN_ID};
use self::error::{has_status, status_error, storage_error};
use self::keys::{quoted, row_key, END_OF_TURN_KEYS, MAX_TURN};
use super::{ConversationStore, DeletedAll, SessionSummary, StorageError, Window};
use crate::credential::Credentials;
use crate::domain::{CustomerId, Feedback, NewTurn, SessionId, Title, Turn};
use crate::settings::{SettingsError, StorageConnection};

/// Rows read past the window, so that turns other writers added since this
/// process last looked still fit in the one page.
const WINDOW_SLACK: usize = 32;
/// The service returns at most this many entities per page.
const MAX_PAGE_SIZE: usize = 1000;
/// Attempts at a window before giving up on a session that keeps changing.
const WINDOW_ATTEMPTS: usize = 4;
/// Insert attempts per append; each lost attempt means another writer's turn landed.
const MAX_APPEND_ATTEMPTS: usize = 64;
/// An entity-group transaction holds at most 100 operations.
const MAX_BATCH_OPERATIONS: usize = 100;
/// Listing-and-deleting rounds before a delete that keeps meeting new rows gives up.
const DELETE_ROUNDS: usize = 3;
/// Sessions this process keeps hints for; past this the hints start over.
const MAX_SESSION_HINTS: usize = 100_000;

type Row = Map<String, Value>;

pub struct TableStore {
    table: TableClient,
    /// Set once the table is known to exist; a failed creation is tried again.
    table_ready: OnceCell<()>,
    /// The listing index (`listing.rs`).
    index: TableClient,
    index_ready: OnceCell<()>,
    sessions: Mutex<HashMap<SessionId, Arc<SessionHint>>>,
}

/// A row to delete, by RowKey, and only if it still has this ETag when one is given.
struct DoomedRow {
    key: String,
    etag: Option<String>,
}

/// What this process has learnt about a session.
#[derive(Default)]
struct SessionHint {
    /// The turn count last seen: where the next window and append start looking.
    count: Mutex<Option<u64>>,
    /// Appends from this process to one session go one at a time; concurrent ones
    /// would only collide with each other and pay for it in round trips.
    appending: tokio::sync::Mutex<()>,
}

impl SessionHint {
    fn count(&self) -> Option<u64> {
        *lock(&self.count)
    }

    fn set_count(&self, count: u64) {
        *lock(&self.count) = Some(count);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Hints hold no invariant a panic could break.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Turn rows read from some turn number on, in key order.
struct TurnRows {
    rows: Vec<(u64, Row)>,
    /// No turn row follows the last one read.
    complete: bool,
}

impl TurnRows {
    /// How many rows continue `from` without a gap, and whether the session's turns
    /// are known to end right after them.
    fn run_from(&self, from: u64) -> (usize, bool) {
        let len = self
            .rows
            .iter()
            .zip(from..)
            .take_while(|((number, _), expected)| number == expected)
            .count();
        (len, len < self.rows.len() || self.complete)
    }
}

impl TableStore {
    /// A store keeping turns in `history_table` and its listing index in
    /// `sessions_table`, as `connection` describes (by identity: with a token from
    /// `credentials`), trusting `trusted_cas` besides the public certificate
    /// authorities. Makes no request: the handler starts (and answers, degraded)
    /// while storage is down.
    pub fn connect(
        connection: &StorageConnection,
        history_table: &str,
        sessions_table: &str,
        credentials: &Credentials,
        trusted_cas: &[reqwest::Certificate],
    ) -> Result<Self, SettingsError> {
        let service = connection::table_service(connection, credentials, trusted_cas)?;
        Ok(Self {
            table: service.table_client(history_table),
            table_ready: OnceCell::new(),
            index: service.table_client(sessions_table),
            index_ready: OnceCell::new(),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    async fn ensure_table(&self) -> Result<(), StorageError> {
        ensure_exists(&self.table, &self.table_ready).await
    }

    async fn ensure_index(&self) -> Result<(), StorageError> {
        ensure_exists(&self.index, &self.index_ready).await
    }

    fn hint(&self, session: &SessionId) -> Arc<SessionHint> {
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSION_HINTS && !sessions.contains_key(session) {
            sessions.clear();
        }
        sessions.entry(session.clone()).or_default().clone()
    }

    fn forget(&self, session: &SessionId) {
        lock(&self.sessions).remove(session);
    }

    fn partition(&self, session: &SessionId) -> PartitionKeyClient {
        self.table.partition_key_client(quoted(session.as_str()))
    }

    /// Up to `wanted` turn rows of `session` from turn `from` on (`select`: which
    /// properties, all when `None`). Reads a single page when `wanted` fits in one.
    async fn read_turns(
        &self,
        session: &SessionId,
        from: u64,
        wanted: usize,
        select: Option<&'static str>,
    ) -> Result<TurnRows, StorageError> {
        let filter = format!(
            "{} and RowKey ge '{}' and RowKey lt '{END_OF_TURN_KEYS}'",
            partition_filter(session),
            row_key(from)
        );
        let mut query = self
            .table
            .query()
            .filter(filter)
            .top(wanted.clamp(1, MAX_PAGE_SIZE) as u32);
        if let Some(select) = select {
            query = query.select(select);
        }
        let mut pages = query.into_stream::<Row>();
        let mut rows = Vec::new();
        let mut exhausted = false;
        while rows.len() < wanted {
            let Some(page) = pages.next().await else {
                exhausted = true;
                break;
            };
            let page = page.map_err(|e| storage_error("reading turns", &e))?;
            let last = page.continuation().is_none();
            rows.extend(
                page.entities
                    .into_iter()
                    .filter_map(|row| Some((entity::turn_number(&row)?, row))),
            );
            if last {
                exhausted = true;
                break;
            }
        }
        // A full page may hide rows after it even when the service says nothing follows.
        let complete = exhausted && rows.len() < wanted;
        rows.truncate(wanted);
        Ok(TurnRows { rows, complete })
    }

    /// Turn `n` of `session` with the properties in `select`, or `None` if absent.
    async fn read_turn(
        &self,
        session: &SessionId,
        n: u64,
        select: &'static str,
    ) -> Result<Option<Row>, StorageError> {
        let result = self
            .partition(session)
            .entity_client(row_key(n))
            .get::<Row>()
            .select(select)
            .await;
        match result {
            Ok(response) => Ok(Some(response.entity)),
            Err(e) if has_status(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(storage_error("reading a turn", &e)),
        }
    }

    /// The number of turns of `session`, given that it has at least `known`: one
    /// page of row keys from there, and probes if that page does not reach the end.
    async fn count_from(&self, session: &SessionId, known: u64) -> Result<u64, StorageError> {
        let rows = self
            .read_turns(session, known, WINDOW_SLACK, Some(ROW_KEY))
            .await?;
        let (len, ends) = rows.run_from(known);
        let reached = known + len as u64;
        if ends {
            Ok(reached)
        } else {
            self.probe_count(session, reached).await
        }
    }

    /// The number of turns of `session`, given that it has at least `known`, by point
    /// reads: doubling steps until a turn is missing, then a binary search.
    async fn probe_count(&self, session: &SessionId, known: u64) -> Result<u64, StorageError> {
        let mut at_least = known;
        let mut step = known.max(1);
        let mut probes = 0;
        let mut at_most = loop {
            if at_least > MAX_TURN {
                return Ok(at_least);
            }
            let probe = (at_least + step - 1).min(MAX_TURN);
            probes += 1;
            if self.read_turn(session, probe, ROW_KEY).await?.is_none() {
                break probe;
            }
            at_least = probe + 1;
            step = step.saturating_mul(2);
        };
        while at_least < at_most {
            let probe = at_least + (at_most - at_least) / 2;
            probes += 1;
            if self.read_turn(session, probe, ROW_KEY).await?.is_some() {
                at_least = probe + 1;
            } else {
                at_most = probe;
            }
        }
        tracing::debug!(probes, turns = at_least, "counted a session by probing");
        Ok(at_least)
    }

    /// The row key and owner of every row of `session`'s partition, turn or not.
    async fn session_rows(&self, session: &SessionId) -> Result<Vec<Row>, StorageError> {
        let mut pages = self
            .table
            .query()
            .filter(partition_filter(session))
            .select(format!("{ROW_KEY},{CUSTOMER_ID}"))
            .into_stream::<Row>();
        let mut rows = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("listing a session", &e))?;
            rows.extend(page.entities);
        }
        Ok(rows)
    }

    /// Deletes `rows` from the partition `partition` of the history table; see
    /// [`delete_in_batches`].
    async fn delete_rows(&self, partition: &str, rows: &[DoomedRow]) -> Result<bool, StorageError> {
        delete_in_batches(&self.table, partition, rows).await
    }

    /// Removes `session` (a partition key of the history table) from the listings of
    /// `owners`; entries already gone are fine.
    async fn delete_listing_entries(
        &self,
        session: &str,
        owners: &BTreeSet<CustomerId>,
    ) -> Result<(), StorageError> {
        for owner in owners {
            let deleted = self
                .index
                .partition_key_client(quoted(owner.as_str()))
                .entity_client(quoted(session))
                .delete()
                .await;
            match deleted {
                // A missing entry, or a missing index table: nothing to remove.
                Err(e) if has_status(&e, StatusCode::NotFound) => {}
                Err(e) => return Err(storage_error("deleting a listing entry", &e)),
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

/// Creates `table` unless `ready` says it is known to exist.
async fn ensure_exists(table: &TableClient, ready: &OnceCell<()>) -> Result<(), StorageError> {
    ready
        .get_or_try_init(|| async {
            match table.create().await {
                Ok(_) => {
                    tracing::info!(table = table.table_name(), "table created");
                    Ok(())
                }
                Err(e) if has_status(&e, StatusCode::Conflict) => Ok(()),
                Err(e) => Err(storage_error("creating the table", &e)),
            }
        })
        .await
        .map(|_| ())
}

/// Deletes `rows` from the partition `partition` of `table` in entity-group
/// transactions of up to 100; `false` if some were already gone or changed (that
/// transaction was rolled back whole).
async fn delete_in_batches(
    table: &TableClient,
    partition: &str,
    rows: &[DoomedRow],
) -> Result<bool, StorageError> {
    let mut all_deleted = true;
    for chunk in rows.chunks(MAX_BATCH_OPERATIONS) {
        let mut batch = table.partition_key_client(quoted(partition)).transaction();
        for row in chunk {
            let condition = row
                .etag
                .clone()
                .map(|etag| IfMatchCondition::Etag(etag.into()));
            batch = batch
                .delete(quoted(&row.key), condition)
                .map_err(|e| storage_error("deleting a session", &e))?;
        }
        let response = batch
            .await
            .map_err(|e| storage_error("deleting a session", &e))?;
        // The transaction answers 202 even when an operation in it failed.
        for operation in &response.operation_responses {
            match operation.status_code {
                status if status.is_success() => {}
                StatusCode::NotFound | StatusCode::PreconditionFailed => all_deleted = false,
                status => return Err(status_error("deleting a session", status, None)),
            }
        }
    }
    Ok(all_deleted)
}

/// The owners the rows carry (one for every conversation written by this handler).
fn owners<'a>(rows: impl IntoIterator<Item = &'a Row>) -> BTreeSet<CustomerId> {
    rows.into_iter().filter_map(entity::owner).collect()
}

fn partition_filter(session: &SessionId) -> String {
    format!("PartitionKey eq '{}'", quoted(session.as_str()))
}

#[async_trait]
impl ConversationStore for TableStore {
    async fn append(&self, session: &SessionId, turn: NewTurn) -> Result<u64, StorageError> {
        let turn_id = Uuid::new_v4();
        let entity = TurnEntity::new(session, &turn, turn_id)?;
        self.ensure_table().await?;
        let hint = self.hint(session);
        let _one_at_a_time = hint.appending.lock().await;
        let mut n = match hint.count() {
            Some(n) => n,
            None => self.count_from(session, 0).await?,
        };
        for _ in 0..MAX_APPEND_ATTEMPTS {
            if n > MAX_TURN {
                return Err(StorageError::Rejected(format!(
                    "a session holds at most {} turns",
                    MAX_TURN + 1
                )));
            }
            let inserted = self
                .table
                .insert::<_, Row>(entity.at(session, n))
                .map_err(|e| storage_error("inserting a turn", &e))?
                .await;
            match inserted {
                Ok(_) => {
                    hint.set_count(n + 1);
                    return Ok(n);
                }
                Err(e) if has_status(&e, StatusCode::Conflict) => {
                    match self.read_turn(session, n, TURN_ID).await? {
                        // An earlier attempt of ours landed and its answer was lost.
                        Some(row) if entity::turn_id(&row) == Some(turn_id) => {
                            hint.set_count(n + 1);
                            return Ok(n);
                        }
                        Some(_) => {
                            tracing::debug!(turn = n, "turn number taken by another writer");
                            n = self.count_from(session, n + 1).await?;
                        }
                        // Gone again: the session was deleted meanwhile.
                        None => n = self.count_from(session, 0).await?,
                    }
                }
                Err(e) => return Err(storage_error("inserting a turn", &e)),
            }
        }
        Err(StorageError::Unavailable(format!(
            "too much contention: no free turn number after {MAX_APPEND_ATTEMPTS} attempts"
        )))
    }

    async fn recent(&self, session: &SessionId, limit: usize) -> Result<Window, StorageError> {
        self.ensure_table().await?;
        let hint = self.hint(session);
        let wanted = limit + WINDOW_SLACK;
        let mut expected = hint.count();
        for _ in 0..WINDOW_ATTEMPTS {
            let start = expected.map_or(0, |count| count.saturating_sub(limit as u64));
            let rows = self.read_turns(session, start, wanted, None).await?;
            let (len, ends) = rows.run_from(start);
            let reached = start + len as u64;
            // From turn 0 the rows are the whole truth; from elsewhere they must
            // begin where expected and reach at least as far as last seen.
            let trusted =
                ends && (start == 0 || (len > 0 && reached >= expected.unwrap_or_default()));
            if trusted {
                hint.set_count(reached);
                let turns = rows.rows[len.saturating_sub(limit)..len]
                    .iter()
                    .filter_map(|(_, row)| entity::to_turn(row))
                    .collect();
                return Ok(Window {
                    turns,
                    total: reached,
                });
            }
            expected = if len > 0 && !ends {
                // The session runs past this page: count on from its end.
                Some(self.probe_count(session, reached).await?)
            } else {
                // Not where this process last saw it end (deleted or rewritten elsewhere).
                None
            };
        }
        Err(StorageError::Unavailable(
            "the session kept changing while its turns were read".into(),
        ))
    }

    async fn all(&self, session: &SessionId) -> Result<Vec<Turn>, StorageError> {
        self.ensure_table().await?;
        let filter = format!(
            "{} and RowKey lt '{END_OF_TURN_KEYS}'",
            partition_filter(session)
        );
        let mut pages = self.table.query().filter(filter).into_stream::<Row>();
        let mut turns = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("reading a session", &e))?;
            turns.extend(page.entities.iter().filter_map(entity::to_turn));
        }
        turns.sort_by_key(|turn| turn.index);
        Ok(turns)
    }

    async fn delete(&self, session: &SessionId) -> Result<bool, StorageError> {
        self.ensure_table().await?;
        let mut existed = false;
        for _ in 0..DELETE_ROUNDS {
            let rows = self.session_rows(session).await?;
            if rows.is_empty() {
                self.forget(session);
                return Ok(existed);
            }
            existed = true;
            // The listing entry goes first: should deleting the turns fail, they still
            // name their owner when the delete is tried again.
            self.delete_listing_entries(session.as_str(), &owners(&rows))
                .await?;
            let doomed: Vec<DoomedRow> = rows
                .iter()
                .filter_map(|row| row.get(ROW_KEY)?.as_str())
                .map(|key| DoomedRow {
                    key: key.to_owned(),
                    etag: None,
                })
                .collect();
            if self.delete_rows(session.as_str(), &doomed).await? {
                self.forget(session);
                return Ok(true);
            }
        }
        Err(StorageError::Unavailable(
            "the session kept changing while it was deleted".into(),
        ))
    }

    /// One InsertOrMerge of the owner's entry: the third round trip of an owned turn.
    async fn update_listing(
        &self,
        session: &SessionId,
        number: u64,
        turn: &NewTurn,
    ) -> Result<(), StorageError> {
        let Some(owner) = &turn.owner else {
            return Ok(());
        };
        self.ensure_index().await?;
        self.index
            .partition_key_client(quoted(owner.as_str()))
            .entity_client(quoted(session.as_str()))
            .insert_or_merge(listing::merge_body(number, turn))
            .map_err(|e| storage_error("updating the listing", &e))?
            .await
            .map_err(|e| storage_error("updating the listing", &e))?;
        Ok(())
    }

    async fn sessions_of(&self, owner: &CustomerId) -> Result<Vec<SessionSummary>, StorageError> {
        self.ensure_index().await?;
        let mut pages = self
            .index
            .query()
            .filter(format!("PartitionKey eq '{}'", quoted(owner.as_str())))
            .into_stream::<Row>();
        let mut summaries = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("reading the listing", &e))?;
            summaries.extend(
                page.entities
                    .iter()
                    .filter_map(|entry| listing::to_summary(owner, entry)),
            );
        }
        Ok(summaries)
    }

    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError> {
        self.purge(cutoff).await
    }

    async fn summary(
        &self,
        owner: &CustomerId,
        session: &SessionId,
    ) -> Result<Option<SessionSummary>, StorageError> {
        self.summary_of(owner, session).await
    }

    async fn rename(
        &self,
        owner: &CustomerId,
        session: &SessionId,
        title: &Title,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Option<SessionSummary>, StorageError> {
        self.retitle(owner, session, title, cutoff).await
    }

    async fn delete_all(
        &self,
        owner: &CustomerId,
        stop_at: tokio::time::Instant,
    ) -> Result<DeletedAll, StorageError> {
        self.delete_all_of(owner, stop_at).await
    }

    async fn set_feedback(
        &self,
        session: &SessionId,
        turn: u64,
        requester: Option<&CustomerId>,
        feedback: Option<&Feedback>,
    ) -> Result<bool, StorageError> {
        self.merge_feedback(session, turn, requester, feedback)
            .await
    }
}
