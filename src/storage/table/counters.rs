//! The daily figures (`CHAT_ANALYTICS_TABLE`): counters kept as turns and
//! feedback happen, so that reading a customer's figures costs one range query of
//! a few rows per day, however many conversations there are. Its own table: the
//! history table's partitions are sessions (the seed's code reads them), the
//! listing's are customers' (any text could be a customer id), while here the
//! partition names cannot collide: `customer:` + the customer id, or `app`.
//!
//! A partition holds, per UTC day, up to [`SHARDS`] counter rows, RowKey
//! `YYYY-MM-DD.N` (Int64 properties `conversations`, `turns`, `up`, `down`,
//! `customers`); a day's figures are the sum of its rows. Each process writes
//! only its own row of the day (its shard, chosen at random once), so processes
//! rarely share a row and busy days do not contend on one entity. Within a
//! process, adds to one row are written one at a time, each write carrying
//! every change that arrived while the one before was under way, so a busy
//! process sends about one write per round trip, whatever the number of turns.
//! A write is one Replace under `If-Match` of the ETag this process last saw; a
//! 412 (another process wrote the row: nothing was applied) reads the row and
//! tries again. Every write carries an id of its own, and the row keeps the ids
//! of its last [`RECENT_WRITES`] writes (`writes`): a write sent again after its
//! answer was lost (the SDK retries timeouts and I/O errors) that had landed
//! meets its own change as a 412 (or, an Insert, as a 409), reads the row, finds
//! its id and stops there. So a change is counted once or, when storage fails
//! for good, not at all (the caller logs it, with the changes of other turns the
//! failed write carried): figures may fall short, never count twice.
//!
//! A customer's partition also holds the row `first_seen`, inserted once (409
//! afterwards) when the customer's first conversation starts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use azure_core::StatusCode;
use azure_data_tables::IfMatchCondition;
use chrono::NaiveDate;
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::entity::{ascii_json, string, ROW_KEY};
use super::error::{has_status, storage_error};
use super::keys::quoted;
use super::{ensure_exists, lock, Row, TableStore};
use crate::domain::{CustomerId, DayRange};
use crate::storage::{DayCounts, Scope, StorageError};

/// Counter rows per partition and day: enough that processes seldom share one.
const SHARDS: usize = 32;
/// Reads and writes per add before giving up on a row that keeps changing.
const ATTEMPTS: usize = 32;
/// Rows (and customers) this process keeps hints for; past this they start over.
const MAX_HINTS: usize = 100_000;
/// The write ids a counter row keeps: enough that a retried write finds its own
/// even when other processes share the row.
const RECENT_WRITES: usize = 16;
const WRITES: &str = "writes";
/// The row whose insertion marks a customer's first conversation.
const FIRST_SEEN: &str = "first_seen";

/// A counter row as this process last wrote or read it.
#[derive(Clone)]
struct Hint {
    etag: String,
    counts: DayCounts,
    /// The ids of the row's last writes, oldest first.
    writes: Vec<String>,
}

impl Hint {
    fn read(etag: String, entity: &Row) -> Self {
        let writes = string(entity, WRITES).unwrap_or_default();
        Self {
            etag,
            counts: counts_of(entity),
            writes: writes
                .split(',')
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// The ids the row keeps once `write` is applied.
    fn writes_after(&self, write: &str) -> Vec<String> {
        let kept = self.writes.len().saturating_sub(RECENT_WRITES - 1);
        let mut writes = self.writes[kept..].to_vec();
        writes.push(write.to_owned());
        writes
    }
}

/// This process's row of one partition and day.
#[derive(Default)]
struct OwnRow {
    /// What this process knows of the row; held while a write is under way.
    known: tokio::sync::Mutex<Option<Hint>>,
    /// Changes not written yet: the next write takes them all.
    pending: Mutex<DayCounts>,
}

/// What this process knows of the counters. Hints, never the truth: a stale one
/// costs a refused write and a read.
pub struct CounterHints {
    /// This process's shard, chosen at random once.
    shard: usize,
    rows: Mutex<HashMap<(String, NaiveDate), Arc<OwnRow>>>,
    /// Customers known to have a `first_seen` row.
    customers: Mutex<HashSet<CustomerId>>,
}

impl Default for CounterHints {
    fn default() -> Self {
        Self {
            shard: usize::from(uuid::Uuid::new_v4().as_bytes()[0]) % SHARDS,
            rows: Mutex::default(),
            customers: Mutex::default(),
        }
    }
}

impl CounterHints {
    fn own_row(&self, partition: &str, day: NaiveDate) -> Arc<OwnRow> {
        let mut rows = lock(&self.rows);
        let key = (partition.to_owned(), day);
        if rows.len() >= MAX_HINTS && !rows.contains_key(&key) {
            rows.clear();
        }
        rows.entry(key).or_default().clone()
    }

    fn know_customer(&self, customer: &CustomerId) {
        let mut customers = lock(&self.customers);
        if customers.len() >= MAX_HINTS {
            customers.clear();
        }
        customers.insert(customer.clone());
    }
}

fn partition_of(scope: &Scope) -> String {
    match scope {
        Scope::Customer(customer) => format!("customer:{customer}"),
        Scope::App => "app".into(),
    }
}

const NAMES: [&str; 5] = ["conversations", "turns", "up", "down", "customers"];

fn values(counts: &DayCounts) -> [i64; 5] {
    [
        counts.conversations,
        counts.turns,
        counts.up,
        counts.down,
        counts.customers,
    ]
}

/// A counter row's entity: its keys, the counts as Int64 properties and the ids
/// of its last writes.
fn body(
    partition: &str,
    row_key: &str,
    counts: &DayCounts,
    writes: &[String],
) -> Box<serde_json::value::RawValue> {
    let mut entity = Map::new();
    entity.insert("PartitionKey".into(), partition.into());
    entity.insert(ROW_KEY.into(), row_key.into());
    entity.insert(WRITES.into(), writes.join(",").into());
    for (name, value) in NAMES.into_iter().zip(values(counts)) {
        entity.insert(format!("{name}@odata.type"), "Edm.Int64".into());
        entity.insert(name.into(), value.to_string().into());
    }
    ascii_json(&Value::Object(entity))
}

/// The counts a row holds (Int64 values arrive as strings; absent ones are 0).
fn counts_of(entity: &Row) -> DayCounts {
    let value = |name: &str| match entity.get(name) {
        Some(Value::String(text)) => text.parse().unwrap_or(0),
        Some(number) => number.as_i64().unwrap_or(0),
        None => 0,
    };
    DayCounts {
        conversations: value("conversations"),
        turns: value("turns"),
        up: value("up"),
        down: value("down"),
        customers: value("customers"),
    }
}

/// The day a counter row counts, from its RowKey (`YYYY-MM-DD.N`).
fn day_of(entity: &Row) -> Option<NaiveDate> {
    let (day, shard) = string(entity, ROW_KEY)?.split_once('.')?;
    shard.parse::<usize>().ok()?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

impl TableStore {
    pub(super) async fn add_to_counters(
        &self,
        scope: &Scope,
        day: NaiveDate,
        change: DayCounts,
    ) -> Result<(), StorageError> {
        ensure_exists(&self.figures, &self.figures_ready).await?;
        let partition = partition_of(scope);
        let own = self.counter_hints.own_row(&partition, day);
        {
            let mut pending = lock(&own.pending);
            *pending = pending.plus(change);
        }
        let mut known = own.known.lock().await;
        let change = std::mem::take(&mut *lock(&own.pending));
        if change.is_zero() {
            // The write before this one carried it.
            return Ok(());
        }
        let row_key = format!("{day}.{}", self.counter_hints.shard);
        let client = self
            .figures
            .partition_key_client(quoted(&partition))
            .entity_client(quoted(&row_key));
        let failed = |e: &azure_core::Error| storage_error("counting", e);
        let write = uuid::Uuid::new_v4().simple().to_string();
        for _ in 0..ATTEMPTS {
            let Some(hint) = known.take() else {
                match client.get::<Row>().await {
                    Ok(read) => {
                        let hint = Hint::read(read.etag.to_string(), &read.entity);
                        // An earlier try of this write landed after all.
                        let landed = hint.writes.contains(&write);
                        *known = Some(hint);
                        if landed {
                            return Ok(());
                        }
                        continue;
                    }
                    Err(e) if has_status(&e, StatusCode::NotFound) => {}
                    Err(e) => return Err(failed(&e)),
                }
                let writes = vec![write.clone()];
                match self
                    .figures
                    .insert::<_, Row>(body(&partition, &row_key, &change, &writes))
                    .map_err(|e| failed(&e))?
                    .await
                {
                    Ok(inserted) => {
                        *known = Some(Hint {
                            etag: inserted.etag.to_string(),
                            counts: change,
                            writes,
                        });
                        return Ok(());
                    }
                    // Created meanwhile (by another writer, or by this Insert
                    // retried): read it.
                    Err(e) if has_status(&e, StatusCode::Conflict) => continue,
                    Err(e) => return Err(failed(&e)),
                }
            };
            let total = hint.counts.plus(change);
            let writes = hint.writes_after(&write);
            let replaced = client
                .update(
                    body(&partition, &row_key, &total, &writes),
                    IfMatchCondition::Etag(hint.etag.into()),
                )
                .map_err(|e| failed(&e))?
                .await;
            match replaced {
                Ok(response) => {
                    *known = Some(Hint {
                        etag: response.etag.to_string(),
                        counts: total,
                        writes,
                    });
                    return Ok(());
                }
                // Changed or gone since it was read (by another writer, or by this
                // write retried): read it again, after a random pause of up to
                // 8 ms, so that writers sharing the row stop meeting in step.
                Err(e)
                    if has_status(&e, StatusCode::PreconditionFailed)
                        || has_status(&e, StatusCode::NotFound) =>
                {
                    let pause = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                // The outcome is unknown: the next add reads the row.
                Err(e) => return Err(failed(&e)),
            }
        }
        Err(StorageError::Unavailable(
            "a counter kept changing while it was written".into(),
        ))
    }

    /// One range query of `scope`'s partition: the rows of the days in `days`.
    pub(super) async fn read_counters(
        &self,
        scope: &Scope,
        days: &DayRange,
    ) -> Result<Vec<(NaiveDate, DayCounts)>, StorageError> {
        // Day keys start with a digit: `0` is before them all and `:` after.
        let from = days
            .from
            .map_or_else(|| "0".to_owned(), |day| day.to_string());
        let to = days
            .to
            .map_or_else(|| ":".to_owned(), |day| format!("{day}~"));
        let filter = format!(
            "PartitionKey eq '{}' and RowKey ge '{from}' and RowKey lt '{to}'",
            quoted(&partition_of(scope))
        );
        let mut pages = self.figures.query().filter(filter).into_stream::<Row>();
        let mut by_day: BTreeMap<NaiveDate, DayCounts> = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(page) => page,
                // No table yet: nothing was counted.
                Err(e) if has_status(&e, StatusCode::NotFound) => break,
                Err(e) => return Err(storage_error("reading the figures", &e)),
            };
            for entity in &page.entities {
                if let Some(day) = day_of(entity).filter(|day| days.contains(*day)) {
                    let counts = by_day.entry(day).or_default();
                    *counts = counts.plus(counts_of(entity));
                }
            }
        }
        Ok(by_day.into_iter().collect())
    }

    pub(super) async fn mark_customer(&self, customer: &CustomerId) -> Result<bool, StorageError> {
        if lock(&self.counter_hints.customers).contains(customer) {
            return Ok(false);
        }
        ensure_exists(&self.figures, &self.figures_ready).await?;
        let marker = json!({
            "PartitionKey": partition_of(&Scope::Customer(customer.clone())),
            ROW_KEY: FIRST_SEEN,
            FIRST_SEEN: true,
        });
        let inserted = self
            .figures
            .insert::<_, Row>(ascii_json(&marker))
            .map_err(|e| storage_error("counting", &e))?
            .await;
        let first = match inserted {
            Ok(_) => true,
            Err(e) if has_status(&e, StatusCode::Conflict) => false,
            Err(e) => return Err(storage_error("counting", &e)),
        };
        self.counter_hints.know_customer(customer);
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_rows_read_back_and_sort_by_day() {
        let counts = DayCounts {
            conversations: 1,
            turns: 3_000_000_000,
            up: -1,
            down: 2,
            customers: 0,
        };
        let row = ("app".to_owned(), "2026-12-01.7".to_owned());
        let writes: Vec<String> = (0..RECENT_WRITES).map(|n| format!("w{n}")).collect();
        let entity: Row =
            serde_json::from_str(body(&row.0, &row.1, &counts, &writes).get()).unwrap();
        assert_eq!(counts_of(&entity), counts);
        let hint = Hint::read("e".into(), &entity);
        assert_eq!(hint.writes, writes);
        // The oldest id makes way for the newest.
        let after = hint.writes_after("new");
        assert_eq!(after.len(), RECENT_WRITES);
        assert_eq!(
            (after[0].as_str(), after[RECENT_WRITES - 1].as_str()),
            ("w1", "new")
        );
        assert_eq!(day_of(&entity), NaiveDate::from_ymd_opt(2026, 12, 1));
        let mut marker = Row::new();
        marker.insert(ROW_KEY.into(), FIRST_SEEN.into());
        assert_eq!(day_of(&marker), None);
        // Every day key lies between the open bounds of a range query.
        assert!("0" < row.1.as_str() && row.1.as_str() < ":");
        assert!(row.1.as_str() < "2026-12-01~" && row.1.as_str() > "2026-11-30~");
        assert_eq!(
            partition_of(&Scope::Customer(CustomerId::parse("app").unwrap())),
            "customer:app"
        );
    }
}
