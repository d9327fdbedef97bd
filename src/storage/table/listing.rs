//! The listing index (`CHAT_SESSIONS_TABLE`): one partition per owner, so a
//! listing reads nothing of anyone else's, and the history table keeps exactly the
//! seed's shape. An owner's partition holds, per conversation:
//!
//! - its **record**, RowKey = session id: `title` and `created_at` (from turn 0),
//!   `turns` (Int32) and `updated_at` (the last turn's time), times as RFC 3339
//!   strings, and `listed_as`: the RowKey of its sorted entry;
//! - its **sorted entry**, RowKey = `~` + 23 digits of the inverted `updated_at`
//!   (nanoseconds) + session id, holding a copy of the record's properties and
//!   `session_id`. Keys sort in listing order (latest first, ties by session id),
//!   so a page is one range query of `limit + 1` rows, and expired conversations
//!   sort last: the range stops at the cutoff's key.
//!
//! A record and its sorted entry change together, in one entity-group transaction
//! conditional on the record's ETag: the transaction that writes a new sorted entry
//! deletes the one `listed_as` named, so concurrent turns of one conversation (from
//! any number of processes) never leave two entries: the loser's transaction fails
//! whole, and it reads the record again.
//!
//! Entries of the previous format are records without `listed_as` and without a
//! sorted entry. An owner's first listing converts them all (a scan of the
//! partition, then the sorted entries written 50 conversations to a transaction,
//! 4 transactions at once, each conversation conditional on its record's ETag)
//! and leaves the marker row [`CONVERTED_MARKER`]; later listings see the marker
//! and read one page. A conversion cut short (by the request's storage budget)
//! keeps what it converted, and the next listing goes on. A record of the
//! previous format touched by a turn first is converted by that turn.
//!
//! Rows are told apart by their properties, never by key alone (a session id may
//! look like any key): sorted entries have `session_id`, records have `updated_at`
//! and no `session_id`, the marker has `listing_converted`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use azure_core::StatusCode;
use azure_data_tables::clients::PartitionKeyClient;
use azure_data_tables::IfMatchCondition;
use chrono::{DateTime, SubsecRound, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::entity::{ascii_json, parse_timestamp, string, PARTITION_KEY, ROW_KEY};
use super::error::{has_status, status_error, storage_error};
use super::keys::quoted;
use super::{committed, lock, Row, TableStore, MAX_BATCH_OPERATIONS};
use crate::domain::{timestamp_text, title_of, CustomerId, NewTurn, SessionId, Title};
use crate::storage::{ListPosition, ListingPage, SessionSummary, StorageError};

const TITLE: &str = "title";
const TURNS: &str = "turns";
const CREATED_AT: &str = "created_at";
const UPDATED_AT: &str = "updated_at";
const LISTED_AS: &str = "listed_as";
const SESSION_ID: &str = "session_id";
const CONVERTED: &str = "listing_converted";
/// The entity's ETag, as the service reports it in query results.
const ETAG: &str = "odata.etag";

/// Every sorted entry's key starts with this; sorted keys lie between it and
/// [`SORTED_END`].
const SORTED_PREFIX: &str = "~";
/// The character after the digits: past every sorted key.
const SORTED_END: &str = "~:";
/// The row saying the owner's partition holds no entry of the previous format.
/// Outside the sorted range; a conversation with this id shares the row harmlessly
/// (its record is merged into it; deleting it only costs one more conversion scan).
pub const CONVERTED_MARKER: &str = "~listing";
/// Inverted times are `10^22 −` nanoseconds since the epoch: positive and at most
/// 23 digits for every time chrono represents.
const INVERSION_BASE: i128 = 10_i128.pow(22);
/// A conversion transaction holds two operations per conversation.
const CONVERSIONS_PER_BATCH: usize = MAX_BATCH_OPERATIONS / 2;
/// Conversion transactions sent at once (they touch different rows).
const CONVERSIONS_IN_FLIGHT: usize = 4;
/// Attempts at writing one conversation's entry before giving up under contention.
const LISTING_ATTEMPTS: usize = 32;
/// Hints this process keeps of each kind; past this they start over.
const MAX_HINTS: usize = 100_000;

/// A conversation as its listing entry says.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    title: String,
    turns: u64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A conversation's record as read, with the ETag its next write is conditional on.
#[derive(Clone)]
struct Record {
    etag: String,
    /// `None` for a row that is only the marker.
    entry: Option<Entry>,
    listed_as: Option<String>,
}

/// What this process has learnt about listings. Hints, never the truth: a record
/// remembered is only the condition of the next transaction, which fails if
/// another process changed the record meanwhile (then it is read).
#[derive(Default)]
pub struct ListingHints {
    /// Owners whose partitions hold no record of the previous format.
    converted: Mutex<HashSet<CustomerId>>,
    /// The records this process wrote last, so that the next turn of the
    /// conversation costs one transaction and no read.
    records: Mutex<HashMap<(CustomerId, SessionId), Record>>,
}

/// Inserts into a map or set of hints, starting over when it is full.
fn remember<K: Eq + std::hash::Hash, V>(hints: &mut HashMap<K, V>, key: K, value: V) {
    if hints.len() >= MAX_HINTS && !hints.contains_key(&key) {
        hints.clear();
    }
    hints.insert(key, value);
}

/// How a listing entry changes: from the record read (`None`: none yet) to what it
/// should hold (`None`: leave it as it is).
type Change<'a> = dyn Fn(Option<&Record>) -> Option<Entry> + Send + Sync + 'a;

/// The time as stored (RFC 3339 to the second), so that keys made from a stored
/// entry and from a continuation token agree.
fn stored(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(0)
}

fn inverted(time: DateTime<Utc>) -> i128 {
    let nanos = i128::from(time.timestamp()) * 1_000_000_000
        + i128::from(time.timestamp_subsec_nanos().min(999_999_999));
    INVERSION_BASE - nanos
}

/// The RowKey of a sorted entry: later times sort first, then session ids.
fn sorted_key(updated_at: DateTime<Utc>, session: &SessionId) -> String {
    format!("{SORTED_PREFIX}{:023}{session}", inverted(updated_at))
}

/// The first key of a conversation whose last turn is before `cutoff`.
fn expired_from(cutoff: DateTime<Utc>) -> String {
    format!("{SORTED_PREFIX}{:023}", inverted(cutoff) + 1)
}

impl Entry {
    /// What the entry says once turn `number`, asked at `turn.timestamp`, is stored,
    /// given what `record` said before. Entries keep the highest count and time
    /// recorded, so a turn recorded late never moves the conversation back; turn 0
    /// names and dates it. A record older than turn 0 is left over from a
    /// conversation deleted before this one started under the same id: replaced.
    fn after_turn(record: Option<&Record>, number: u64, turn: &NewTurn) -> Self {
        let at = stored(turn.timestamp);
        let fresh = Self {
            title: if number == 0 {
                title_of(&turn.user)
            } else {
                // Turn 0's write failed (the turn was kept): listed untitled.
                String::new()
            },
            turns: number + 1,
            created_at: at,
            updated_at: at,
        };
        match record.and_then(|r| r.entry.clone()) {
            Some(before) if number > 0 || before.updated_at >= at => Self {
                turns: before.turns.max(fresh.turns),
                updated_at: before.updated_at.max(at),
                ..if number == 0 { fresh } else { before }
            },
            _ => fresh,
        }
    }

    fn read(entity: &Row) -> Option<Self> {
        let updated_at = string(entity, UPDATED_AT).and_then(parse_timestamp)?;
        Some(Self {
            // Missing only if the entry's write for turn 0 failed (the turn was kept).
            title: string(entity, TITLE).unwrap_or_default().to_owned(),
            turns: entity
                .get(TURNS)
                .and_then(Value::as_u64)
                .unwrap_or_default(),
            created_at: string(entity, CREATED_AT)
                .and_then(parse_timestamp)
                .unwrap_or(updated_at),
            updated_at,
        })
    }

    fn properties(&self) -> Map<String, Value> {
        let mut properties = Map::new();
        properties.insert(TITLE.into(), self.title.clone().into());
        properties.insert(TURNS.into(), self.turns.into());
        properties.insert(CREATED_AT.into(), timestamp_text(self.created_at).into());
        properties.insert(UPDATED_AT.into(), timestamp_text(self.updated_at).into());
        properties
    }

    fn sorted_body(&self, session: &SessionId) -> Box<RawValue> {
        let mut properties = self.properties();
        properties.insert(SESSION_ID.into(), session.as_str().into());
        ascii_json(&Value::Object(properties))
    }

    /// The record's properties; with its keys when it is inserted.
    fn record_body(
        &self,
        listed_as: &str,
        keys: Option<(&CustomerId, &SessionId)>,
    ) -> Box<RawValue> {
        let mut properties = self.properties();
        properties.insert(LISTED_AS.into(), listed_as.into());
        if let Some((owner, session)) = keys {
            properties.insert(PARTITION_KEY.into(), owner.as_str().into());
            properties.insert(ROW_KEY.into(), session.as_str().into());
        }
        ascii_json(&Value::Object(properties))
    }

    fn summary(self, owner: &CustomerId, session_id: SessionId) -> SessionSummary {
        SessionSummary {
            session_id,
            owner: owner.clone(),
            title: self.title,
            turns: self.turns,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

impl Record {
    fn read(entity: &Row, etag: String) -> Self {
        Self {
            etag,
            entry: Entry::read(entity),
            listed_as: string(entity, LISTED_AS).map(str::to_owned),
        }
    }
}

/// A sorted entry read back as a summary; `None` for a row that is not one.
fn sorted_summary(owner: &CustomerId, entity: &Row) -> Option<SessionSummary> {
    let session_id = SessionId::parse(string(entity, SESSION_ID)?).ok()?;
    Some(Entry::read(entity)?.summary(owner, session_id))
}

/// A row of an owner's partition as a scan read it.
pub(super) struct ScannedRow {
    key: String,
    etag: String,
}

/// A conversation in an owner's partition as a scan found it: its record and
/// sorted entries.
pub(super) struct Listed {
    pub session: SessionId,
    rows: Vec<ScannedRow>,
}

impl Listed {
    /// How many operations deleting it takes.
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }
}

/// What deleting scanned rows did.
#[derive(Debug, PartialEq, Eq)]
enum Removal {
    Removed,
    /// A row was gone already (the conversation was deleted, or restarted by
    /// someone else, by another request): nothing was deleted, nothing is left.
    Gone,
    /// A row changed since the scan: nothing was deleted.
    Changed,
}

/// What a scan of an owner's partition found.
pub(super) struct OwnerRows {
    pub conversations: Vec<Listed>,
    /// The marker, unless it is also a conversation's record.
    pub marker: Option<ScannedRow>,
}

impl TableStore {
    fn owner_partition(&self, owner: &CustomerId) -> PartitionKeyClient {
        self.index.partition_key_client(quoted(owner.as_str()))
    }

    /// Records turn `number` of `session` in its owner's listing.
    pub(super) async fn list_turn(
        &self,
        owner: &CustomerId,
        session: &SessionId,
        number: u64,
        turn: &NewTurn,
    ) -> Result<(), StorageError> {
        self.ensure_index().await?;
        self.relist(owner, session, &|record| {
            Some(Entry::after_turn(record, number, turn))
        })
        .await?;
        Ok(())
    }

    /// Reads `session`'s record, makes the entry `change` asks for, and writes the
    /// record and its sorted entry in one transaction conditional on the record
    /// being as read; read again and retried when another writer came first. The
    /// entry written, `None` when `change` left it as it was.
    async fn relist(
        &self,
        owner: &CustomerId,
        session: &SessionId,
        change: &Change<'_>,
    ) -> Result<Option<Entry>, StorageError> {
        let partition = self.owner_partition(owner);
        let hint = (owner.clone(), session.clone());
        let mut remembered = lock(&self.listing_hints.records).remove(&hint);
        let mut failed_on: Option<String> = None;
        for _ in 0..LISTING_ATTEMPTS {
            let record = match remembered.take() {
                Some(record) => Some(record),
                None => self.read_record(owner, session).await?,
            };
            let Some(entry) = change(record.as_ref()) else {
                return Ok(None);
            };
            let key = sorted_key(entry.updated_at, session);
            // A transaction that failed although the record had not changed can only
            // have failed on deleting its old sorted entry: that one is already gone.
            let unchanged_since_failure =
                failed_on.is_some() && failed_on == record.as_ref().map(|r| r.etag.clone());
            let error = |e| storage_error("updating the listing", &e);
            let mut batch = partition.transaction();
            if let Some(old) = record.as_ref().and_then(|r| r.listed_as.as_deref()) {
                if old != key && !unchanged_since_failure {
                    batch = batch.delete(quoted(old), None).map_err(error)?;
                }
            }
            batch = batch
                .insert_or_replace(quoted(&key), entry.sorted_body(session))
                .map_err(error)?;
            batch = match &record {
                Some(record) => batch.merge(
                    quoted(session.as_str()),
                    entry.record_body(&key, None),
                    Some(IfMatchCondition::Etag(record.etag.clone().into())),
                ),
                None => batch.insert(entry.record_body(&key, Some((owner, session)))),
            }
            .map_err(error)?;
            let response = batch.await.map_err(error)?;
            if committed(
                response.operation_responses.iter().map(|r| r.status_code),
                "updating the listing",
            )? {
                // The record's operation is the last; its answer carries the new ETag.
                if let Some(etag) = response
                    .operation_responses
                    .last()
                    .and_then(|r| r.etag.clone())
                {
                    let written = Record {
                        etag: etag.to_string(),
                        entry: Some(entry.clone()),
                        listed_as: Some(key),
                    };
                    remember(&mut lock(&self.listing_hints.records), hint, written);
                }
                return Ok(Some(entry));
            }
            failed_on = record.map(|r| r.etag);
        }
        Err(StorageError::Unavailable(
            "the listing entry kept changing while it was updated".into(),
        ))
    }

    async fn read_record(
        &self,
        owner: &CustomerId,
        session: &SessionId,
    ) -> Result<Option<Record>, StorageError> {
        let result = self
            .owner_partition(owner)
            .entity_client(quoted(session.as_str()))
            .get::<Row>()
            .await;
        match result {
            Ok(response) => Ok(Some(Record::read(
                &response.entity,
                response.etag.to_string(),
            ))),
            Err(e) if has_status(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(storage_error("reading a listing entry", &e)),
        }
    }

    /// Removes `session` (a partition key of the history table) from the listings of
    /// `owners`: its record and sorted entry together; entries already gone are fine.
    pub(super) async fn delete_listing_entries(
        &self,
        session: &str,
        owners: &BTreeSet<CustomerId>,
    ) -> Result<(), StorageError> {
        let Ok(session) = SessionId::parse(session) else {
            return Ok(()); // Never listed: not an id this handler accepts.
        };
        for owner in owners {
            self.unlist(owner, &session).await?;
        }
        Ok(())
    }

    async fn unlist(&self, owner: &CustomerId, session: &SessionId) -> Result<(), StorageError> {
        lock(&self.listing_hints.records).remove(&(owner.clone(), session.clone()));
        let partition = self.owner_partition(owner);
        let mut failed_on: Option<String> = None;
        for _ in 0..LISTING_ATTEMPTS {
            let record = match self.read_record(owner, session).await {
                Ok(Some(record)) => record,
                // No record, or no index table: nothing to remove.
                Ok(None) => return Ok(()),
                Err(e) => return Err(e),
            };
            let unchanged_since_failure = failed_on.as_ref() == Some(&record.etag);
            let error = |e| storage_error("deleting a listing entry", &e);
            let mut batch = partition
                .transaction()
                .delete(
                    quoted(session.as_str()),
                    Some(IfMatchCondition::Etag(record.etag.clone().into())),
                )
                .map_err(error)?;
            if let Some(sorted) = record.listed_as.as_deref() {
                if !unchanged_since_failure {
                    batch = batch.delete(quoted(sorted), None).map_err(error)?;
                }
            }
            let response = batch.await.map_err(error)?;
            if committed(
                response.operation_responses.iter().map(|r| r.status_code),
                "deleting a listing entry",
            )? {
                return Ok(());
            }
            failed_on = Some(record.etag);
        }
        Err(StorageError::Unavailable(
            "the listing entry kept changing while it was deleted".into(),
        ))
    }

    /// `owner`'s record of `session` as a summary; `None` when there is none.
    pub(super) async fn listed(
        &self,
        owner: &CustomerId,
        session: &SessionId,
    ) -> Result<Option<SessionSummary>, StorageError> {
        let record = self.read_record(owner, session).await?;
        Ok(record
            .and_then(|record| record.entry)
            .map(|entry| entry.summary(owner, session.clone())))
    }

    /// Names `session` in `owner`'s listing: record and sorted entry in one
    /// transaction conditional on the record's ETag, like a turn's update, so a page
    /// shows the title at once. `None`, writing nothing, when `owner` has no record
    /// of it or its last turn is before `cutoff`.
    pub(super) async fn retitle(
        &self,
        owner: &CustomerId,
        session: &SessionId,
        title: &Title,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Option<SessionSummary>, StorageError> {
        let renamed = self
            .relist(owner, session, &|record| {
                let entry = record?.entry.clone()?;
                let live = cutoff.is_none_or(|cutoff| entry.updated_at >= cutoff);
                live.then(|| Entry {
                    title: title.as_str().to_owned(),
                    ..entry
                })
            })
            .await?;
        Ok(renamed.map(|entry| entry.summary(owner, session.clone())))
    }

    /// Every conversation in `owner`'s partition, with the keys and ETags of its
    /// rows, and the marker's ETag: one scan of that partition alone.
    pub(super) async fn scan_owner(&self, owner: &CustomerId) -> Result<OwnerRows, StorageError> {
        let mut pages = self
            .index
            .query()
            .filter(format!("PartitionKey eq '{}'", quoted(owner.as_str())))
            .select(format!("{ROW_KEY},{SESSION_ID},{UPDATED_AT},{CONVERTED}"))
            .into_stream::<Row>();
        let mut conversations: BTreeMap<SessionId, Vec<ScannedRow>> = BTreeMap::new();
        let mut marker = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("reading the listing", &e))?;
            for entity in &page.entities {
                let (Some(key), Some(etag)) = (string(entity, ROW_KEY), string(entity, ETAG))
                else {
                    continue;
                };
                let row = ScannedRow {
                    key: key.to_owned(),
                    etag: etag.to_owned(),
                };
                // A sorted entry names its conversation; a record is keyed by it.
                let session = match string(entity, SESSION_ID) {
                    Some(session) => session,
                    None if string(entity, UPDATED_AT).is_some() => key,
                    None => {
                        if entity.get(CONVERTED) == Some(&Value::Bool(true)) {
                            marker = Some(row);
                        }
                        continue;
                    }
                };
                if let Ok(session) = SessionId::parse(session) {
                    conversations.entry(session).or_default().push(row);
                }
            }
        }
        Ok(OwnerRows {
            conversations: conversations
                .into_iter()
                .map(|(session, mut rows)| {
                    // The record first: a transaction fails on its first refused
                    // operation, and a changed record says more than a moved entry.
                    rows.sort_by_key(|row| row.key != session.as_str());
                    Listed { session, rows }
                })
                .collect(),
            marker,
        })
    }

    /// Removes `conversations` (from [`TableStore::scan_owner`], at most
    /// [`MAX_BATCH_OPERATIONS`] rows in all) from `owner`'s partition, every row
    /// only as scanned: in one transaction, or, when that is refused because one of
    /// them changed or went meanwhile, one transaction per conversation. How many
    /// it removed, and how many changed since the scan (a turn was recorded): those
    /// are left for the next scan. Conversations already gone count as neither.
    pub(super) async fn unlist_scanned(
        &self,
        owner: &CustomerId,
        conversations: &[&Listed],
    ) -> Result<(u64, u64), StorageError> {
        if conversations.is_empty() {
            return Ok((0, 0));
        }
        {
            let mut hints = lock(&self.listing_hints.records);
            for listed in conversations {
                hints.remove(&(owner.clone(), listed.session.clone()));
            }
        }
        let all = conversations.iter().flat_map(|listed| &listed.rows);
        if self.delete_scanned(owner, all).await? == Removal::Removed {
            return Ok((conversations.len() as u64, 0));
        }
        // By index: a stream of borrowed items is not `Send` for every lifetime.
        futures::stream::iter(0..conversations.len())
            .map(|at| self.delete_scanned(owner, &conversations[at].rows))
            .buffer_unordered(CONVERSIONS_IN_FLIGHT)
            .try_fold((0, 0), |(removed, changed), removal| async move {
                Ok(match removal {
                    Removal::Removed => (removed + 1, changed),
                    Removal::Changed => (removed, changed + 1),
                    Removal::Gone => (removed, changed),
                })
            })
            .await
    }

    /// Deletes `owner`'s marker as scanned (a later conversion scan of the empty
    /// partition writes none again); gone or changed meanwhile is fine.
    pub(super) async fn unmark(
        &self,
        owner: &CustomerId,
        marker: &ScannedRow,
    ) -> Result<(), StorageError> {
        self.delete_scanned(owner, [marker]).await?;
        Ok(())
    }

    /// One transaction deleting `rows` of `owner`'s partition, each under its ETag.
    async fn delete_scanned<'a>(
        &self,
        owner: &CustomerId,
        rows: impl IntoIterator<Item = &'a ScannedRow>,
    ) -> Result<Removal, StorageError> {
        let error = |e| storage_error("deleting a listing entry", &e);
        let mut batch = self.owner_partition(owner).transaction();
        for row in rows {
            batch = batch
                .delete(
                    quoted(&row.key),
                    Some(IfMatchCondition::Etag(row.etag.clone().into())),
                )
                .map_err(error)?;
        }
        let response = batch.await.map_err(error)?;
        // The answer of the operation that failed says why all were rolled back.
        for operation in &response.operation_responses {
            match operation.status_code {
                status if status.is_success() => {}
                StatusCode::NotFound => return Ok(Removal::Gone),
                StatusCode::PreconditionFailed => return Ok(Removal::Changed),
                status => return Err(status_error("deleting a listing entry", status, None)),
            }
        }
        Ok(Removal::Removed)
    }

    /// One page of `owner`'s listing: a range query of the sorted entries after
    /// `after` and before the cutoff's key, `limit + 1` rows.
    pub(super) async fn listing_page(
        &self,
        owner: &CustomerId,
        limit: usize,
        after: Option<&ListPosition>,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, StorageError> {
        self.ensure_index().await?;
        let page = || self.read_sorted(owner, limit + 1, after, cutoff);
        let candidates = if lock(&self.listing_hints.converted).contains(owner) {
            page().await?
        } else {
            let (converted, candidates) = tokio::join!(self.is_converted(owner), page());
            if converted? {
                candidates?
            } else {
                self.convert_listing(owner).await?;
                page().await?
            }
        };
        self.remember_converted(owner);
        Ok(ListingPage::from_candidates(candidates, limit))
    }

    async fn read_sorted(
        &self,
        owner: &CustomerId,
        wanted: usize,
        after: Option<&ListPosition>,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Vec<SessionSummary>, StorageError> {
        let from = after.map_or_else(
            || SORTED_PREFIX.to_owned(),
            |after| sorted_key(after.updated_at, &after.session_id),
        );
        let end = cutoff.map_or_else(|| SORTED_END.to_owned(), expired_from);
        let filter = format!(
            "PartitionKey eq '{}' and RowKey gt '{}' and RowKey lt '{}'",
            quoted(owner.as_str()),
            quoted(&from),
            quoted(&end),
        );
        let mut pages = self
            .index
            .query()
            .filter(filter)
            .top(wanted.clamp(1, super::MAX_PAGE_SIZE) as u32)
            .into_stream::<Row>();
        let mut summaries = Vec::new();
        while summaries.len() < wanted {
            let Some(page) = pages.next().await else {
                break;
            };
            let page = page.map_err(|e| storage_error("reading the listing", &e))?;
            // A record whose session id happens to look like a sorted key is skipped.
            summaries.extend(
                page.entities
                    .iter()
                    .filter_map(|entity| sorted_summary(owner, entity)),
            );
        }
        summaries.truncate(wanted);
        Ok(summaries)
    }

    async fn is_converted(&self, owner: &CustomerId) -> Result<bool, StorageError> {
        let result = self
            .owner_partition(owner)
            .entity_client(CONVERTED_MARKER)
            .get::<Row>()
            .await;
        match result {
            Ok(response) => Ok(response.entity.get(CONVERTED) == Some(&Value::Bool(true))),
            Err(e) if has_status(&e, StatusCode::NotFound) => Ok(false),
            Err(e) => Err(storage_error("reading the listing", &e)),
        }
    }

    fn remember_converted(&self, owner: &CustomerId) {
        let mut converted = lock(&self.listing_hints.converted);
        if converted.len() >= MAX_HINTS && !converted.contains(owner) {
            converted.clear();
        }
        converted.insert(owner.clone());
    }

    /// One transaction giving each conversation of `chunk` (records of the previous
    /// format, as scanned) its sorted entry, each conditional on its record's ETag.
    async fn convert_chunk(
        &self,
        owner: &CustomerId,
        chunk: &[(SessionId, String, Entry)],
    ) -> Result<(), StorageError> {
        let error = |e| storage_error("converting the listing", &e);
        let mut batch = self.owner_partition(owner).transaction();
        for (session, etag, entry) in chunk {
            let key = sorted_key(entry.updated_at, session);
            batch = batch
                .insert_or_replace(quoted(&key), entry.sorted_body(session))
                .map_err(error)?
                .merge(
                    quoted(session.as_str()),
                    ascii_json(&serde_json::json!({ LISTED_AS: key })),
                    Some(IfMatchCondition::Etag(etag.clone().into())),
                )
                .map_err(error)?;
        }
        let response = batch.await.map_err(error)?;
        if !committed(
            response.operation_responses.iter().map(|r| r.status_code),
            "converting the listing",
        )? {
            // A turn changed one of them meanwhile: one at a time, as they are now.
            for (session, _, _) in chunk {
                self.relist(owner, session, &|record| {
                    record
                        .filter(|r| r.listed_as.is_none())
                        .and_then(|r| r.entry.clone())
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Gives every record of the previous format in `owner`'s partition its sorted
    /// entry, then leaves the marker (not in an empty partition: a listing of a
    /// customer without conversations writes nothing).
    async fn convert_listing(&self, owner: &CustomerId) -> Result<(), StorageError> {
        let mut pages = self
            .index
            .query()
            .filter(format!("PartitionKey eq '{}'", quoted(owner.as_str())))
            .into_stream::<Row>();
        let mut unconverted = Vec::new();
        let mut rows = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("reading the listing", &e))?;
            rows += page.entities.len();
            unconverted.extend(page.entities.iter().filter_map(|entity| {
                if entity.contains_key(SESSION_ID) || entity.contains_key(LISTED_AS) {
                    return None;
                }
                let session = SessionId::parse(string(entity, ROW_KEY)?).ok()?;
                let etag = string(entity, ETAG)?.to_owned();
                let entry = Entry::read(entity)?;
                Some((session, etag, entry))
            }));
        }
        let converted = unconverted.len();
        futures::stream::iter(unconverted.chunks(CONVERSIONS_PER_BATCH).map(Ok))
            .try_for_each_concurrent(CONVERSIONS_IN_FLIGHT, |chunk| {
                self.convert_chunk(owner, chunk)
            })
            .await?;
        if rows == 0 {
            return Ok(());
        }
        self.owner_partition(owner)
            .entity_client(CONVERTED_MARKER)
            .insert_or_merge(ascii_json(&serde_json::json!({ CONVERTED: true })))
            .map_err(|e| storage_error("converting the listing", &e))?
            .await
            .map_err(|e| storage_error("converting the listing", &e))?;
        tracing::info!(
            converted,
            "listing entries of the previous format converted"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn at(second: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap() + TimeDelta::seconds(second)
    }

    fn turn(user: &str, second: i64) -> NewTurn {
        NewTurn {
            user: user.into(),
            assistant: "a".into(),
            metadata_json: "{}".into(),
            timestamp: at(second) + TimeDelta::milliseconds(250),
            owner: Some(CustomerId::parse("alice").unwrap()),
        }
    }

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    fn record(entry: Entry) -> Record {
        Record {
            etag: "e".into(),
            entry: Some(entry),
            listed_as: None,
        }
    }

    #[test]
    fn sorted_keys_run_latest_first_then_by_session_id() {
        let keys = [
            sorted_key(at(10), &id("b")),
            sorted_key(at(9), &id("a")),
            sorted_key(at(9), &id("ab")),
            sorted_key(at(9), &id("b")),
            sorted_key(at(-1_000_000_000), &id("a")),
            sorted_key(DateTime::<Utc>::MIN_UTC, &id("a")),
        ];
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, keys);
        assert!(keys
            .iter()
            .all(|k| k.as_str() > SORTED_PREFIX && k.as_str() < SORTED_END));
        assert_eq!(
            sorted_key(DateTime::<Utc>::MAX_UTC, &id("a")).len(),
            1 + 23 + 1
        );
    }

    #[test]
    fn the_cutoff_key_keeps_what_is_not_expired_and_nothing_else() {
        let cutoff = at(100);
        assert!(sorted_key(at(100), &id("z")) < expired_from(cutoff));
        assert!(sorted_key(at(99), &id("a")) > expired_from(cutoff));
        // A cutoff within a second: that second's entries (stored whole) are before it.
        assert!(sorted_key(at(100), &id("a")) > expired_from(cutoff + TimeDelta::milliseconds(1)));
    }

    #[test]
    fn turn_zero_names_the_conversation_and_later_turns_count() {
        let first = Entry::after_turn(None, 0, &turn("What does  LONPF2 do?", 0));
        assert_eq!(
            first,
            Entry {
                title: "What does LONPF2 do?".into(),
                turns: 1,
                created_at: at(0),
                updated_at: at(0),
            }
        );
        let third = Entry::after_turn(Some(&record(first.clone())), 2, &turn("Who calls it?", 9));
        assert_eq!(
            third,
            Entry {
                turns: 3,
                updated_at: at(9),
                ..first.clone()
            }
        );
        // Recorded late, an older turn moves nothing back; turn 0 still names it.
        let late = Entry::after_turn(Some(&record(third.clone())), 1, &turn("late", 5));
        assert_eq!(late, third);
        let untitled = Entry::after_turn(None, 2, &turn("Who calls it?", 9));
        let named = Entry::after_turn(Some(&record(untitled)), 0, &turn("What?", 0));
        assert_eq!(
            named,
            Entry {
                title: "What?".into(),
                ..third.clone()
            }
        );
        // A record older than turn 0 belonged to a conversation since deleted.
        let again = Entry::after_turn(Some(&record(third)), 0, &turn("Again", 20));
        assert_eq!(
            (again.title.as_str(), again.turns, again.created_at),
            ("Again", 1, at(20))
        );
    }

    #[test]
    fn an_entry_without_its_first_write_still_lists() {
        let entry = Entry::after_turn(None, 3, &turn("later", 7));
        assert_eq!((entry.title.as_str(), entry.turns), ("", 4));
        assert_eq!(entry.created_at, entry.updated_at);
    }

    #[test]
    fn entries_read_back_including_the_previous_format() {
        let alice = CustomerId::parse("alice").unwrap();
        let entry = Entry::after_turn(None, 0, &turn("Zoë's question", 0));
        let sorted: Row = serde_json::from_str(entry.sorted_body(&id("s-1")).get()).unwrap();
        let summary = sorted_summary(&alice, &sorted).unwrap();
        assert_eq!(summary.session_id, id("s-1"));
        assert_eq!(summary.title, "Zoë's question");
        assert_eq!(timestamp_text(summary.updated_at), "2025-01-24T10:30:00Z");

        let previous: Row = serde_json::from_value(serde_json::json!({
            "RowKey": "s-2", "title": "t", "turns": 5,
            "created_at": "2025-01-24T10:30:00Z", "updated_at": "2025-01-24T10:30:07Z",
        }))
        .unwrap();
        assert!(
            sorted_summary(&alice, &previous).is_none(),
            "not a sorted entry"
        );
        let record = Record::read(&previous, "e".into());
        assert_eq!(record.listed_as, None);
        let entry = record.entry.unwrap();
        assert_eq!(
            (entry.turns, timestamp_text(entry.updated_at)),
            (5, "2025-01-24T10:30:07Z".into())
        );
    }
}
