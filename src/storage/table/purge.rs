//! Purging expired conversations: one scan of the history table's turn rows (keys,
//! times and owners only), so that conversations the seed wrote, which no listing
//! knows, expire too. The service returns rows in key order, so each partition's
//! rows arrive together and are judged as soon as the next partition begins.
//!
//! A session is deleted only as it was scanned: every row with the ETag it was read
//! with. If it was deleted and started again meanwhile (a query on an expired
//! session does that), the transaction fails as a whole and the new conversation
//! is left alone.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::entity::{self, CUSTOMER_ID, PARTITION_KEY, ROW_KEY, SYSTEM_TIMESTAMP, TIMESTAMP};
use super::error::storage_error;
use super::keys::END_OF_TURN_KEYS;
use super::{DoomedRow, Row, TableStore};
use crate::domain::{CustomerId, SessionId};
use crate::storage::StorageError;

/// The entity's ETag, as the service reports it in query results.
pub(super) const ETAG: &str = "odata.etag";

/// The turn rows of one session, as scanned.
struct ScannedSession {
    partition: String,
    rows: Vec<DoomedRow>,
    /// The highest turn number seen, and when that turn was asked.
    last_turn: Option<(u64, DateTime<Utc>)>,
    owners: BTreeSet<CustomerId>,
}

impl ScannedSession {
    fn new(partition: &str) -> Self {
        Self {
            partition: partition.to_owned(),
            rows: Vec::new(),
            last_turn: None,
            owners: BTreeSet::new(),
        }
    }

    fn add(&mut self, row: &Row) {
        let (Some(key), Some(number)) = (entity::string(row, ROW_KEY), entity::turn_number(row))
        else {
            return;
        };
        self.rows.push(DoomedRow {
            key: key.to_owned(),
            etag: entity::string(row, ETAG).map(str::to_owned),
        });
        if self.last_turn.is_none_or(|(last, _)| number > last) {
            self.last_turn = Some((number, entity::turn_time(row)));
        }
        self.owners.extend(entity::owner(row));
    }

    fn expired(&self, cutoff: DateTime<Utc>) -> bool {
        self.last_turn.is_some_and(|(_, time)| time < cutoff)
    }
}

impl TableStore {
    /// Deletes every session whose last turn is older than `cutoff`; how many.
    pub(super) async fn purge(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError> {
        self.ensure_table().await?;
        let mut pages = self
            .table
            .query()
            .filter(format!("RowKey lt '{END_OF_TURN_KEYS}'"))
            .select(format!(
                "{PARTITION_KEY},{ROW_KEY},{TIMESTAMP},{SYSTEM_TIMESTAMP},{CUSTOMER_ID}"
            ))
            .into_stream::<Row>();
        let mut purged = 0;
        let mut current: Option<ScannedSession> = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("scanning for expired sessions", &e))?;
            for row in &page.entities {
                let Some(partition) = entity::string(row, PARTITION_KEY) else {
                    continue;
                };
                if current.as_ref().is_none_or(|s| s.partition != partition) {
                    if let Some(scanned) = current.replace(ScannedSession::new(partition)) {
                        purged += u64::from(self.delete_if_expired(scanned, cutoff).await?);
                    }
                }
                if let Some(scanned) = current.as_mut() {
                    scanned.add(row);
                }
            }
        }
        if let Some(scanned) = current {
            purged += u64::from(self.delete_if_expired(scanned, cutoff).await?);
        }
        Ok(purged)
    }

    /// Deletes `scanned` if it expired and is still as scanned; whether it did.
    async fn delete_if_expired(
        &self,
        scanned: ScannedSession,
        cutoff: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        if !scanned.expired(cutoff) || !self.delete_rows(&scanned.partition, &scanned.rows).await? {
            return Ok(false);
        }
        self.delete_listing_entries(&scanned.partition, &scanned.owners)
            .await?;
        if let Ok(session) = SessionId::parse(&scanned.partition) {
            self.forget(&session);
        }
        Ok(true)
    }
}
