//! Purging expired conversations, in two passes so that nothing depends on the
//! order the service returns rows in (Cosmos DB for Table does not sort them):
//! one scan of the history table's turn rows (keys and times only) finds each
//! session's last turn, so that conversations the seed wrote, which no listing
//! knows, expire too; then each session whose last turn is older than the cutoff
//! is read again and deleted as read.
//!
//! A session is deleted only as it was read: every row under the ETag it was read
//! with. If it was continued or started again meanwhile, a transaction fails and
//! the conversation is left alone.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::entity::{self, PARTITION_KEY, ROW_KEY, SYSTEM_TIMESTAMP, TIMESTAMP};
use super::error::storage_error;
use super::keys::END_OF_TURN_KEYS;
use super::{owners, DoomedRow, Row, TableStore};
use crate::domain::SessionId;
use crate::storage::StorageError;

/// The last turn of a session, by number, and when it was asked.
#[derive(Clone, Copy)]
struct LastTurn {
    number: u64,
    time: DateTime<Utc>,
}

impl LastTurn {
    /// The last turn among `rows` (turn rows read with their times).
    fn of<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Option<Self> {
        rows.into_iter()
            .filter_map(|row| {
                Some(LastTurn {
                    number: entity::turn_number(row)?,
                    time: entity::turn_time(row),
                })
            })
            .max_by_key(|turn| turn.number)
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
                "{PARTITION_KEY},{ROW_KEY},{TIMESTAMP},{SYSTEM_TIMESTAMP}"
            ))
            .into_stream::<Row>();
        let mut last_turns: HashMap<String, LastTurn> = HashMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("scanning for expired sessions", &e))?;
            for row in &page.entities {
                let (Some(partition), Some(turn)) =
                    (entity::string(row, PARTITION_KEY), LastTurn::of([row]))
                else {
                    continue;
                };
                let last = last_turns.entry(partition.to_owned()).or_insert(turn);
                if turn.number > last.number {
                    *last = turn;
                }
            }
        }
        let mut purged = 0;
        for (partition, last) in last_turns {
            if last.time < cutoff {
                purged += u64::from(self.delete_if_expired(&partition, cutoff).await?);
            }
        }
        Ok(purged)
    }

    /// Reads the session in `partition` and deletes it as read if it has expired;
    /// whether it did.
    async fn delete_if_expired(
        &self,
        partition: &str,
        cutoff: DateTime<Utc>,
    ) -> Result<bool, StorageError> {
        let rows = self.session_rows(partition).await?;
        if LastTurn::of(&rows).is_none_or(|last| last.time >= cutoff) {
            return Ok(false);
        }
        let doomed = rows.iter().filter_map(DoomedRow::as_read).collect();
        if !self.delete_rows(partition, doomed).await? {
            return Ok(false);
        }
        self.delete_listing_entries(partition, &owners(&rows))
            .await?;
        if let Ok(session) = SessionId::parse(partition) {
            self.forget(&session);
        }
        Ok(true)
    }
}
