//! Deleting every conversation of one customer. It walks the customer's own
//! partition of the listing index, never the history table at large, so no other
//! customer's data is read; conversations without an owner (the seed's) are listed
//! for nobody and are never touched.
//!
//! For each listed conversation its turn rows go first (entity-group transactions
//! of up to 100 per session, each row with the ETag it was read with), then its
//! listing entries, up to 100 per transaction in the customer's partition. Should a
//! call stop half way, what is left is still listed, so the next call finds it.
//! Turns that turn out to belong to someone else (the id was deleted and taken by
//! another customer since it was listed) are left alone; only the stale entry goes.

use azure_core::StatusCode;
use azure_data_tables::IfMatchCondition;
use futures::{StreamExt, TryStreamExt};
use tokio::time::Instant;

use super::entity::{self, ROW_KEY};
use super::error::{has_status, storage_error};
use super::keys::quoted;
use super::{transact, Change, DoomedRow, Row, TableStore, DELETE_ROUNDS, MAX_BATCH_OPERATIONS};
use crate::domain::{CustomerId, SessionId};
use crate::storage::{DeletedAll, StorageError};

/// Conversations whose turns are deleted at the same time.
const PARALLEL_SESSIONS: usize = 8;

impl TableStore {
    pub(super) async fn delete_all_of(
        &self,
        owner: &CustomerId,
        stop_at: Instant,
    ) -> Result<DeletedAll, StorageError> {
        self.ensure_index().await?;
        let listed = self.listed_keys(owner).await?;
        let mut deleted = 0;
        let mut complete = true;
        for chunk in listed.chunks(MAX_BATCH_OPERATIONS) {
            if Instant::now() >= stop_at {
                complete = false;
                break;
            }
            // Owned items: a stream of borrowed ones is not `Send` for every lifetime.
            let entries = chunk.to_vec();
            let cleared: Vec<DoomedRow> = futures::stream::iter(entries)
                .map(|entry| async move {
                    if Instant::now() >= stop_at {
                        return Ok(None);
                    }
                    self.delete_turns_of(owner, &entry.key).await?;
                    Ok::<_, StorageError>(Some(entry))
                })
                .buffer_unordered(PARALLEL_SESSIONS)
                .try_filter_map(|cleared| async move { Ok(cleared) })
                .try_collect()
                .await?;
            let removed = self.delete_entries(owner, &cleared).await?;
            deleted += removed;
            if cleared.len() < chunk.len() || removed < cleared.len() as u64 {
                complete = false;
            }
        }
        Ok(DeletedAll { deleted, complete })
    }

    /// The RowKey (session id) and ETag of every entry in `owner`'s listing.
    async fn listed_keys(&self, owner: &CustomerId) -> Result<Vec<DoomedRow>, StorageError> {
        let mut pages = self
            .index
            .query()
            .filter(format!("PartitionKey eq '{}'", quoted(owner.as_str())))
            .select(ROW_KEY)
            .into_stream::<Row>();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("reading the listing", &e))?;
            keys.extend(page.entities.iter().filter_map(DoomedRow::as_read));
        }
        Ok(keys)
    }

    /// Deletes the turns of the session `key` if they are all `owner`'s.
    async fn delete_turns_of(&self, owner: &CustomerId, key: &str) -> Result<(), StorageError> {
        // Every entry this handler writes is keyed by a valid session id.
        let Ok(session) = SessionId::parse(key) else {
            return Ok(());
        };
        for _ in 0..DELETE_ROUNDS {
            let rows = self.session_rows(key).await?;
            let owned = rows
                .iter()
                .filter(|row| entity::turn_number(row).is_some())
                .all(|row| entity::owner(row).as_ref() == Some(owner));
            if rows.is_empty() || !owned {
                return Ok(());
            }
            let doomed = rows.iter().filter_map(DoomedRow::as_read).collect();
            if self.delete_rows(key, doomed).await? {
                self.forget(&session);
                return Ok(());
            }
        }
        Err(StorageError::Unavailable(
            "a conversation kept changing while it was deleted".into(),
        ))
    }

    /// Deletes `entries` from `owner`'s listing, each only as it was read: in one
    /// transaction, or, when that is refused because one of them changed (a turn
    /// was added meanwhile) or went, one by one. How many it deleted.
    async fn delete_entries(
        &self,
        owner: &CustomerId,
        entries: &[DoomedRow],
    ) -> Result<u64, StorageError> {
        let batch = entries.iter().cloned().map(Change::Delete).collect();
        if entries.is_empty()
            || transact(&self.index, owner.as_str(), batch)
                .await?
                .is_some()
        {
            return Ok(entries.len() as u64);
        }
        let mut deleted = 0;
        for entry in entries {
            let mut delete = self
                .index
                .partition_key_client(quoted(owner.as_str()))
                .entity_client(quoted(&entry.key))
                .delete();
            if let Some(etag) = &entry.etag {
                delete = delete.if_match(IfMatchCondition::Etag(etag.clone().into()));
            }
            match delete.await {
                Ok(_) => deleted += 1,
                // Gone already, or a turn was added since: left for the next call.
                Err(e)
                    if has_status(&e, StatusCode::NotFound)
                        || has_status(&e, StatusCode::PreconditionFailed) => {}
                Err(e) => return Err(storage_error("deleting a listing entry", &e)),
            }
        }
        Ok(deleted)
    }
}
