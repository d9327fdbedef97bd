//! Conversations in Azure Table Storage (Azurite locally; Cosmos DB for Table
//! speaks the same protocol), in the seed's format: one partition per session,
//! one entity per turn, RowKey = the zero-padded turn number (see `keys.rs`).
//!
//! # Cost invariants
//!
//! - **A steady turn is one round trip**: when this process served the session's
//!   previous turn, the caller holds its window (`WindowCache`) and the append is
//!   one entity-group transaction: a Merge of the last turn under `If-Match` of
//!   its ETag (keys only: nothing the seed reads changes) and the Insert of the
//!   new turn. An owned conversation adds one more: its listing entry. After
//!   it come the daily counters (`counters.rs`): one write for the app, one for
//!   the owner, sent together with the listing entry.
//! - **A cold turn is two**: one query for the window (with turn 0, for the
//!   owner), then that transaction.
//! - **Window load is flat**: `recent(session, limit)` reads one key range of at
//!   most `limit + 32` rows starting where this process last saw the session
//!   end, so its cost does not grow with the session's length. Only a session
//!   this process has not seen and that is longer than `limit + 32` turns costs
//!   more: existence probes doubling from there, then a binary search (about
//!   2·log2(turns) point reads), then the window read, once per process.
//!
//! # Correctness
//!
//! Appends state what they expect (`Expectation`) and the service checks it in
//! the same request: turn 0 by Insert (409 if taken), a continuation by the
//! transaction above (412 or 404 on the Merge if anyone appended, deleted or
//! restarted since the window was read, 409 on the Insert if the number is
//! taken), a restart by deleting each row of the expired conversation under its
//! ETag and replacing turn 0 under its own. A failed condition rolls the
//! transaction back whole and the caller reloads. Since every continuation
//! touches the turn before it, a restart that deleted that turn, or another
//! writer that continued it, cannot race one through. Every row carries turn 0's
//! owner: a continuation is only accepted on the very row the owner was read
//! with. A retried request that had in fact landed is recognised by its
//! `turn_id`.
//!
//! A delete checks the last turn it was told of as a restart does, then deletes
//! each row under its ETag: what a racing append or restart wrote is never
//! deleted. Rows are deleted from the highest turn down, so a delete cut short
//! leaves a gap-free conversation. Query results are sorted here by turn number,
//! never taken in the service's order (Cosmos DB for Table does not sort them).

mod connection;
mod counters;
mod delete_all;
mod entity;
mod error;
mod feedback;
mod keys;
mod listing;
mod purge;
mod shares;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use azure_core::StatusCode;
use azure_data_tables::clients::{PartitionKeyClient, TableClient};
use azure_data_tables::IfMatchCondition;
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use uuid::Uuid;

use self::entity::{TurnEntity, CUSTOMER_ID, ETAG, ROW_KEY, SYSTEM_TIMESTAMP, TIMESTAMP, TURN_ID};
use self::error::{has_status, status_error, storage_error};
use self::keys::{quoted, row_key, END_OF_TURN_KEYS, MAX_TURN};
use super::{
    Appended, ConversationStore, DayCounts, Deleted, DeletedAll, Expectation, ListPosition,
    ListingPage, Rated, Scope, Seen, SessionSummary, Share, ShareOrigin, StorageError, Version,
    Window,
};
use crate::credential::Credentials;
use crate::domain::{CustomerId, DayRange, Feedback, NewTurn, SessionId, ShareId, Title, Turn};
use crate::settings::{SettingsError, StorageConnection};

/// Rows read past the window, so that turns other writers added since this
/// process last looked still fit in the one read.
const WINDOW_SLACK: usize = 32;
/// The service returns at most this many entities per page.
const MAX_PAGE_SIZE: usize = 1000;
/// Attempts at a window before giving up on a session that keeps changing.
const WINDOW_ATTEMPTS: usize = 4;
/// An entity-group transaction holds at most 100 operations.
const MAX_BATCH_OPERATIONS: usize = 100;
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
    /// The daily figures (`counters.rs`).
    figures: TableClient,
    figures_ready: OnceCell<()>,
    counter_hints: counters::CounterHints,
    /// What this process has learnt about listings (`listing.rs`).
    listing_hints: listing::ListingHints,
    /// Shared snapshots (`shares.rs`).
    shares: TableClient,
    shares_ready: OnceCell<()>,
    /// The turn count last seen per session: where the next window read starts
    /// looking. A hint, never the truth.
    counts: Mutex<HashMap<SessionId, u64>>,
}

/// A row to delete, by RowKey, only if it still has this ETag when one is given.
#[derive(Clone)]
struct DoomedRow {
    key: String,
    etag: Option<String>,
}

impl DoomedRow {
    /// `row` (read with its key and ETag) as it was read.
    fn as_read(row: &Row) -> Option<Self> {
        Some(Self {
            key: entity::string(row, ROW_KEY)?.to_owned(),
            etag: entity::string(row, ETAG).map(str::to_owned),
        })
    }

    /// Turns from the highest down, then rows that are not turns: a delete cut
    /// short leaves turns 0..k, gap-free.
    fn deletion_order(&self) -> std::cmp::Reverse<Option<u64>> {
        std::cmp::Reverse(keys::turn_number(&self.key))
    }
}

/// One operation of an entity-group transaction.
enum Change {
    Delete(DoomedRow),
    /// A Merge of nothing but the keys under `If-Match`: fails the transaction if
    /// the row changed or went, and changes its ETag, so that whoever read the
    /// row before fails in turn.
    Touch {
        key: String,
        etag: String,
    },
    Insert(Box<RawValue>),
    /// Replaces the row under `If-Match`.
    Replace {
        key: String,
        etag: String,
        entity: Box<RawValue>,
    },
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Hints hold no invariant a panic could break.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Turn rows read from some turn number on, sorted by number.
struct TurnRows {
    rows: Vec<(u64, Row)>,
    /// Turn 0, when asked for besides the range.
    first: Option<Row>,
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
    /// A store keeping turns in `history_table`, its listing index in
    /// `sessions_table`, shared snapshots in `shares_table` and the daily figures in
    /// `analytics_table`, as `connection` describes (by identity: with a token from
    /// `credentials`), trusting `trusted_cas` besides the public certificate
    /// authorities. Makes no request: the handler starts (and answers, degraded)
    /// while storage is down.
    pub fn connect(
        connection: &StorageConnection,
        history_table: &str,
        sessions_table: &str,
        shares_table: &str,
        analytics_table: &str,
        credentials: &Credentials,
        trusted_cas: &[reqwest::Certificate],
    ) -> Result<Self, SettingsError> {
        let service = connection::table_service(connection, credentials, trusted_cas)?;
        Ok(Self {
            table: service.table_client(history_table),
            table_ready: OnceCell::new(),
            index: service.table_client(sessions_table),
            index_ready: OnceCell::new(),
            figures: service.table_client(analytics_table),
            figures_ready: OnceCell::new(),
            counter_hints: counters::CounterHints::default(),
            listing_hints: listing::ListingHints::default(),
            shares: service.table_client(shares_table),
            shares_ready: OnceCell::new(),
            counts: Mutex::new(HashMap::new()),
        })
    }

    async fn ensure_table(&self) -> Result<(), StorageError> {
        ensure_exists(&self.table, &self.table_ready).await
    }

    async fn ensure_index(&self) -> Result<(), StorageError> {
        ensure_exists(&self.index, &self.index_ready).await
    }

    fn count_hint(&self, session: &SessionId) -> Option<u64> {
        lock(&self.counts).get(session).copied()
    }

    fn set_count_hint(&self, session: &SessionId, count: u64) {
        let mut counts = lock(&self.counts);
        if counts.len() >= MAX_SESSION_HINTS && !counts.contains_key(session) {
            counts.clear();
        }
        counts.insert(session.clone(), count);
    }

    fn forget(&self, session: &SessionId) {
        lock(&self.counts).remove(session);
    }

    fn partition(&self, session: &SessionId) -> PartitionKeyClient {
        self.table.partition_key_client(quoted(session.as_str()))
    }

    /// The turn rows of `session` numbered `from..from + wanted` (`select`: which
    /// properties, all when `None`), and turn 0 besides when `with_first`. One key
    /// range, read whole: the service may return it in any order.
    async fn read_turns(
        &self,
        session: &SessionId,
        from: u64,
        wanted: usize,
        select: Option<&'static str>,
        with_first: bool,
    ) -> Result<TurnRows, StorageError> {
        let end = from
            .checked_add(wanted as u64)
            .filter(|&end| end <= MAX_TURN)
            .map_or_else(|| END_OF_TURN_KEYS.to_owned(), row_key);
        let mut range = format!("RowKey ge '{}' and RowKey lt '{end}'", row_key(from));
        let first_apart = with_first && from > 0;
        if first_apart {
            range = format!("({range}) or RowKey eq '{}'", row_key(0));
        }
        let mut query = self
            .table
            .query()
            .filter(format!(
                "{} and ({range})",
                partition_filter(session.as_str())
            ))
            .top(wanted.clamp(1, MAX_PAGE_SIZE) as u32);
        if let Some(select) = select {
            query = query.select(select);
        }
        let mut pages = query.into_stream::<Row>();
        let mut rows = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("reading turns", &e))?;
            rows.extend(
                page.entities
                    .into_iter()
                    .filter_map(|row| Some((entity::turn_number(&row)?, row))),
            );
        }
        rows.sort_by_key(|(number, _)| *number);
        let first = if first_apart && rows.first().is_some_and(|(n, _)| *n == 0) {
            Some(rows.remove(0).1)
        } else if with_first {
            rows.first()
                .filter(|(n, _)| *n == 0)
                .map(|(_, row)| row.clone())
        } else {
            None
        };
        let complete = rows.len() < wanted;
        Ok(TurnRows {
            rows,
            first,
            complete,
        })
    }

    /// Turn `n` of `session` with the properties in `select` and its ETag, or
    /// `None` if absent.
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
            Ok(response) => {
                let mut row = response.entity;
                row.insert(ETAG.into(), response.etag.to_string().into());
                Ok(Some(row))
            }
            Err(e) if has_status(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(storage_error("reading a turn", &e)),
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

    /// The row key, ETag, owner and times of every row of `session`'s partition,
    /// turn or not.
    async fn session_rows(&self, partition: &str) -> Result<Vec<Row>, StorageError> {
        let mut pages = self
            .table
            .query()
            .filter(partition_filter(partition))
            .select(format!(
                "{ROW_KEY},{CUSTOMER_ID},{TIMESTAMP},{SYSTEM_TIMESTAMP}"
            ))
            .into_stream::<Row>();
        let mut rows = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("listing a session", &e))?;
            rows.extend(page.entities);
        }
        Ok(rows)
    }

    /// Deletes `rows` from the partition `partition`, highest turn first, each under
    /// its ETag; `false` if some were already gone or changed (the transaction that
    /// met one was rolled back whole, and the ones after it not sent).
    async fn delete_rows(
        &self,
        partition: &str,
        mut rows: Vec<DoomedRow>,
    ) -> Result<bool, StorageError> {
        rows.sort_by_key(DoomedRow::deletion_order);
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk = rows
                .by_ref()
                .take(MAX_BATCH_OPERATIONS)
                .map(Change::Delete)
                .collect();
            if transact(&self.table, partition, chunk).await?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Turn 0 of a session that has none: one Insert, refused if the number is taken.
    async fn insert_first(
        &self,
        session: &SessionId,
        entity: &TurnEntity,
        turn_id: Uuid,
    ) -> Result<Appended, StorageError> {
        let inserted = self
            .table
            .insert::<_, Row>(entity.at(session, 0))
            .map_err(|e| storage_error("inserting a turn", &e))?
            .await;
        match inserted {
            Ok(response) => Ok(Appended::Stored {
                number: 0,
                version: Version::new(response.etag.to_string()),
            }),
            Err(e) if has_status(&e, StatusCode::Conflict) => {
                self.ours_or_changed(session, 0, turn_id).await
            }
            Err(e) => Err(storage_error("inserting a turn", &e)),
        }
    }

    /// Turn `last + 1`, in one transaction with a touch of turn `last` as read.
    async fn insert_after(
        &self,
        session: &SessionId,
        entity: &TurnEntity,
        last: u64,
        version: Version,
        turn_id: Uuid,
    ) -> Result<Appended, StorageError> {
        let number = last + 1;
        if number > MAX_TURN {
            return Err(StorageError::Rejected(format!(
                "a session holds at most {} turns",
                MAX_TURN + 1
            )));
        }
        let changes = vec![
            Change::Touch {
                key: row_key(last),
                etag: version.0,
            },
            Change::Insert(entity.at(session, number)),
        ];
        match transact(&self.table, session.as_str(), changes).await? {
            Some(etags) => stored(number, &etags[1]),
            None => self.ours_or_changed(session, number, turn_id).await,
        }
    }

    /// Turn 0 of a new conversation in place of the expired one that ended at turn
    /// `last` (still at `version`): every row of it deleted as read, highest first,
    /// and turn 0 replaced as read, the last transaction holding both.
    async fn restart(
        &self,
        session: &SessionId,
        entity: &TurnEntity,
        last: u64,
        version: Version,
        turn_id: Uuid,
    ) -> Result<Appended, StorageError> {
        let rows = self.session_rows(session.as_str()).await?;
        if !ends_at(&rows, last, &version) {
            return Ok(Appended::Changed);
        }
        let previous_owners = owners(&rows);
        let first_key = row_key(0);
        let mut doomed: Vec<DoomedRow> = rows.iter().filter_map(DoomedRow::as_read).collect();
        doomed.sort_by_key(DoomedRow::deletion_order);
        let first = doomed
            .iter()
            .position(|row| row.key == first_key)
            .map(|at| doomed.remove(at));
        let new_first = match first {
            Some(DoomedRow {
                key,
                etag: Some(etag),
            }) => Change::Replace {
                key,
                etag,
                entity: entity.at(session, 0),
            },
            _ => Change::Insert(entity.at(session, 0)),
        };
        // The last transaction holds turn 0 and as many of the lowest rows as fit.
        let tail = doomed.split_off(doomed.len().saturating_sub(MAX_BATCH_OPERATIONS - 1));
        if !self.delete_rows(session.as_str(), doomed).await? {
            return Ok(Appended::Changed);
        }
        let mut changes: Vec<Change> = tail.into_iter().map(Change::Delete).collect();
        changes.push(new_first);
        let Some(etags) = transact(&self.table, session.as_str(), changes).await? else {
            return self.ours_or_changed(session, 0, turn_id).await;
        };
        let appended = stored(0, etags.last().expect("turn 0 was in the transaction"))?;
        let new_owner: BTreeSet<CustomerId> = entity.owner().into_iter().collect();
        let gone: BTreeSet<CustomerId> = previous_owners.difference(&new_owner).cloned().collect();
        if let Err(error) = self.delete_listing_entries(session.as_str(), &gone).await {
            // The expired conversation's entry drops out of listings by its age.
            tracing::warn!(%error, "listing entry of an expired conversation not deleted");
        }
        Ok(appended)
    }

    /// After a refused write of turn `number`: stored after all if that turn is ours
    /// (an earlier attempt landed and its answer was lost), else the session changed.
    async fn ours_or_changed(
        &self,
        session: &SessionId,
        number: u64,
        turn_id: Uuid,
    ) -> Result<Appended, StorageError> {
        match self.read_turn(session, number, TURN_ID).await? {
            Some(row) if entity::turn_id(&row) == Some(turn_id) => {
                let etag = entity::string(&row, ETAG).unwrap_or_default();
                Ok(Appended::Stored {
                    number,
                    version: Version::new(etag),
                })
            }
            _ => {
                tracing::debug!(
                    turn = number,
                    "the session changed before the turn was stored"
                );
                Ok(Appended::Changed)
            }
        }
    }
}

/// Whether every operation of a transaction succeeded (it answers 202 even when one
/// failed); `Ok(false)` when it was rolled back whole because a row was not as
/// expected: missing, already there, or changed since read.
fn committed(
    statuses: impl IntoIterator<Item = StatusCode>,
    operation: &str,
) -> Result<bool, StorageError> {
    for status in statuses {
        match status {
            status if status.is_success() => {}
            StatusCode::NotFound | StatusCode::Conflict | StatusCode::PreconditionFailed => {
                return Ok(false)
            }
            status => return Err(status_error(operation, status, None)),
        }
    }
    Ok(true)
}

/// Turn `number`, stored with `etag` as the service said.
fn stored(number: u64, etag: &Option<String>) -> Result<Appended, StorageError> {
    let etag = etag.as_ref().ok_or_else(|| {
        StorageError::Unavailable("storage did not say the stored turn's ETag".into())
    })?;
    Ok(Appended::Stored {
        number,
        version: Version::new(etag.as_str()),
    })
}

/// Runs `changes` on `partition` of `table` as one entity-group transaction (at most 100
/// operations): the ETag each operation left its row with when all were
/// applied (none for a delete), `None` when one found its row changed, gone or
/// taken (404, 409, 412) and all were rolled back.
async fn transact(
    table: &TableClient,
    partition: &str,
    changes: Vec<Change>,
) -> Result<Option<Vec<Option<String>>>, StorageError> {
    debug_assert!(changes.len() <= MAX_BATCH_OPERATIONS);
    let failed = |e: &azure_core::Error| storage_error("writing a session", e);
    let if_match = |etag: String| Some(IfMatchCondition::Etag(etag.into()));
    let mut batch = table.partition_key_client(quoted(partition)).transaction();
    for change in changes {
        batch = match change {
            Change::Delete(row) => batch.delete(quoted(&row.key), row.etag.and_then(if_match)),
            Change::Touch { key, etag } => {
                let keys = serde_json::json!({"PartitionKey": partition, "RowKey": key});
                batch.merge(quoted(&key), entity::ascii_json(&keys), if_match(etag))
            }
            Change::Insert(entity) => batch.insert(entity),
            Change::Replace { key, etag, entity } => {
                batch.update(quoted(&key), entity, if_match(etag))
            }
        }
        .map_err(|e| failed(&e))?;
    }
    let response = batch.await.map_err(|e| failed(&e))?;
    let statuses = response.operation_responses.iter().map(|r| r.status_code);
    if !committed(statuses, "writing a session")? {
        return Ok(None);
    }
    Ok(Some(
        response
            .operation_responses
            .iter()
            .map(|operation| operation.etag.as_ref().map(ToString::to_string))
            .collect(),
    ))
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

/// Whether turn `last` is the highest turn among `rows`, still with ETag `version`.
fn ends_at(rows: &[Row], last: u64, version: &Version) -> bool {
    let last_key = row_key(last);
    rows.iter()
        .all(|row| entity::turn_number(row).is_none_or(|n| n <= last))
        && rows.iter().any(|row| {
            entity::string(row, ROW_KEY) == Some(&last_key)
                && entity::string(row, ETAG) == Some(version.as_str())
        })
}

/// The owners the rows carry (one for every conversation written by this handler).
fn owners<'a>(rows: impl IntoIterator<Item = &'a Row>) -> BTreeSet<CustomerId> {
    rows.into_iter().filter_map(entity::owner).collect()
}

fn partition_filter(partition: &str) -> String {
    format!("PartitionKey eq '{}'", quoted(partition))
}

#[async_trait]
impl ConversationStore for TableStore {
    async fn append(
        &self,
        session: &SessionId,
        turn: NewTurn,
        expected: Expectation,
    ) -> Result<Appended, StorageError> {
        let turn_id = Uuid::new_v4();
        let entity = TurnEntity::new(session, &turn, turn_id)?;
        self.ensure_table().await?;
        // A turn this process stored after `last` already refutes the expectation:
        // no round trip needed to learn it.
        if let Expectation::After { last, .. } = &expected {
            if self
                .count_hint(session)
                .is_some_and(|count| count > last + 1)
            {
                return Ok(Appended::Changed);
            }
        }
        let appended = match expected {
            Expectation::New => self.insert_first(session, &entity, turn_id).await?,
            Expectation::After { last, version } => {
                self.insert_after(session, &entity, last, version, turn_id)
                    .await?
            }
            Expectation::Restart { last, version } => {
                self.restart(session, &entity, last, version, turn_id)
                    .await?
            }
        };
        if let Appended::Stored { number, .. } = &appended {
            self.set_count_hint(session, number + 1);
        }
        Ok(appended)
    }

    async fn recent(&self, session: &SessionId, limit: usize) -> Result<Window, StorageError> {
        self.ensure_table().await?;
        let wanted = limit + WINDOW_SLACK;
        let mut expected = self.count_hint(session);
        for _ in 0..WINDOW_ATTEMPTS {
            let start = expected.map_or(0, |count| count.saturating_sub(limit as u64));
            let rows = self.read_turns(session, start, wanted, None, true).await?;
            let (len, ends) = rows.run_from(start);
            let reached = start + len as u64;
            // From turn 0 the rows are the whole truth; from elsewhere they must
            // begin where expected, reach at least as far as last seen, and the
            // conversation must still have its turn 0.
            let trusted = ends
                && (start == 0
                    || (len > 0
                        && reached >= expected.unwrap_or_default()
                        && rows.first.is_some()));
            if trusted {
                self.set_count_hint(session, reached);
                let window = &rows.rows[len.saturating_sub(limit)..len];
                return Ok(Window {
                    turns: window
                        .iter()
                        .filter_map(|(_, row)| entity::to_turn(row))
                        .collect(),
                    total: reached,
                    dropped: 0,
                    owner: rows.first.as_ref().and_then(entity::owner),
                    last: window
                        .last()
                        .and_then(|(_, row)| entity::string(row, ETAG))
                        .map(Version::new),
                });
            }
            expected = if len > 0 && !ends {
                // The session runs past this read: count on from its end.
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
            partition_filter(session.as_str())
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

    /// One point read of turn 0.
    async fn first_turn(&self, session: &SessionId) -> Result<Option<Turn>, StorageError> {
        self.ensure_table().await?;
        let result = self
            .partition(session)
            .entity_client(row_key(0))
            .get::<Row>()
            .await;
        match result {
            Ok(response) => Ok(entity::to_turn(&response.entity)),
            Err(e) if has_status(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(storage_error("reading turn 0", &e)),
        }
    }

    /// Checked on the rows as read, then every row deleted under the ETag it was
    /// read with: a racing append or restart fails a transaction, and what it
    /// wrote is left alone.
    async fn delete(&self, session: &SessionId, expected: Seen) -> Result<Deleted, StorageError> {
        self.ensure_table().await?;
        // Whatever happens, the count this process saw is no longer a good hint.
        self.forget(session);
        let rows = self.session_rows(session.as_str()).await?;
        if rows.is_empty() {
            return Ok(Deleted::Missing);
        }
        if !ends_at(&rows, expected.last, &expected.version) {
            return Ok(Deleted::Changed);
        }
        // The listing entry goes first: should deleting the turns fail, they still
        // name their owner when the delete is tried again.
        self.delete_listing_entries(session.as_str(), &owners(&rows))
            .await?;
        let doomed = rows.iter().filter_map(DoomedRow::as_read).collect();
        Ok(if self.delete_rows(session.as_str(), doomed).await? {
            Deleted::Deleted
        } else {
            Deleted::Changed
        })
    }

    /// The owner's record and sorted entry (`listing.rs`): one transaction, the
    /// extra round trip of an owned turn (and a read of the record first, when this
    /// process did not write it last).
    async fn update_listing(
        &self,
        session: &SessionId,
        number: u64,
        turn: &NewTurn,
    ) -> Result<(), StorageError> {
        match &turn.owner {
            Some(owner) => self.list_turn(owner, session, number, turn).await,
            None => Ok(()),
        }
    }

    async fn sessions_page(
        &self,
        owner: &CustomerId,
        limit: usize,
        after: Option<&ListPosition>,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, StorageError> {
        self.listing_page(owner, limit, after, cutoff).await
    }

    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError> {
        self.purge(cutoff).await
    }

    async fn summary(
        &self,
        owner: &CustomerId,
        session: &SessionId,
    ) -> Result<Option<SessionSummary>, StorageError> {
        self.listed(owner, session).await
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
    ) -> Result<Option<Rated>, StorageError> {
        self.merge_feedback(session, turn, requester, feedback)
            .await
    }

    async fn create_share(&self, share: &Share) -> Result<(), StorageError> {
        self.store_share(share).await
    }

    async fn shared(&self, id: &ShareId) -> Result<Option<Share>, StorageError> {
        self.read_share(id).await
    }

    async fn revoke_shares(&self, session: &SessionId) -> Result<u64, StorageError> {
        self.delete_shares_of(session, None).await
    }

    async fn share_origins(&self) -> Result<Vec<ShareOrigin>, StorageError> {
        self.every_share_origin().await
    }

    async fn revoke_share(&self, session: &SessionId, id: &ShareId) -> Result<bool, StorageError> {
        Ok(self.delete_shares_of(session, Some(id)).await? > 0)
    }

    async fn add_counts(
        &self,
        scope: &Scope,
        day: NaiveDate,
        change: DayCounts,
    ) -> Result<(), StorageError> {
        self.add_to_counters(scope, day, change).await
    }

    async fn day_counts(
        &self,
        scope: &Scope,
        days: &DayRange,
    ) -> Result<Vec<(NaiveDate, DayCounts)>, StorageError> {
        self.read_counters(scope, days).await
    }

    async fn first_seen(&self, customer: &CustomerId) -> Result<bool, StorageError> {
        self.mark_customer(customer).await
    }
}
