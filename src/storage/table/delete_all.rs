//! Deleting every conversation of one customer. It walks the customer's own
//! partition of the listing index (one scan, `listing.rs`), never the history table
//! at large, so no other customer's data is read; conversations without an owner
//! (the seed's) are listed for nobody and are never touched.
//!
//! Conversations go in groups whose listing rows fit one transaction: the turns of
//! each (read, then deleted each under its ETag; [`PARALLEL_SESSIONS`] sessions at
//! a time), then the group's records and sorted entries in one transaction, each row
//! as scanned. Listing rows go only after their turns, so a call that stops half way
//! (at its deadline, abandoning what is under way) leaves what is left still
//! listed, and the next call finds it. Turns that turn out
//! to belong to someone else (the id was deleted and taken by another customer
//! since) are left alone; only the stale listing rows go. Once nothing is left, the
//! marker goes too.

use tokio::time::Instant;

use futures::StreamExt;

use super::entity;
use super::listing::Listed;
use super::{DoomedRow, TableStore, MAX_BATCH_OPERATIONS};
use crate::domain::CustomerId;
use crate::storage::{DeletedAll, StorageError};

/// Conversations whose turns are deleted at the same time.
const PARALLEL_SESSIONS: usize = 16;
/// Reads and deletes of one conversation that keeps changing (its owner is still
/// writing to it) before the call leaves it for the next one.
const ATTEMPTS: usize = 3;

impl TableStore {
    pub(super) async fn delete_all_of(
        &self,
        owner: &CustomerId,
        stop_at: Instant,
    ) -> Result<DeletedAll, StorageError> {
        self.ensure_index().await?;
        let scanned = self.scan_owner(owner).await?;
        let mut deleted = 0;
        let mut complete = true;
        for group in transaction_groups(&scanned.conversations) {
            if Instant::now() >= stop_at {
                return Ok(DeletedAll {
                    deleted,
                    complete: false,
                });
            }
            // By index: a stream of borrowed items is not `Send` for every lifetime.
            let mut deletions = futures::stream::iter(0..group.len())
                .map(|at| {
                    let listed = group[at];
                    async move {
                        let cleared = self.delete_turns_of(owner, listed).await?;
                        Ok::<_, StorageError>(cleared.then_some(at))
                    }
                })
                .buffer_unordered(PARALLEL_SESSIONS);
            let mut cleared = Vec::new();
            let mut timed_out = false;
            // Deletions still under way at `stop_at` are abandoned (each is guarded
            // and can be sent again; what they did not finish is still listed); the
            // listing rows of those done go all the same, in one transaction.
            loop {
                match tokio::time::timeout_at(stop_at, deletions.next()).await {
                    Ok(Some(deletion)) => cleared.extend(deletion?.map(|at| group[at])),
                    Ok(None) => break,
                    Err(_) => {
                        timed_out = true;
                        break;
                    }
                }
            }
            drop(deletions);
            let (removed, changed) = self.unlist_scanned(owner, &cleared).await?;
            deleted += removed;
            // One that kept changing, or changed since the scan, waits for the next call.
            complete &= cleared.len() == group.len() && changed == 0;
            if timed_out {
                return Ok(DeletedAll {
                    deleted,
                    complete: false,
                });
            }
        }
        if complete {
            if let Some(marker) = &scanned.marker {
                self.unmark(owner, marker).await?;
            }
        }
        Ok(DeletedAll { deleted, complete })
    }

    /// Deletes the turns of the conversation `listed` if they are all `owner`'s, each
    /// row only as read (as `ConversationStore::delete` does): a turn appended or a
    /// restart by someone else meanwhile fails the transaction that meets it, and the
    /// rows are read again. `false` when it kept changing: left for the next call.
    async fn delete_turns_of(
        &self,
        owner: &CustomerId,
        listed: &Listed,
    ) -> Result<bool, StorageError> {
        let session = &listed.session;
        for _ in 0..ATTEMPTS {
            let rows = self.session_rows(session.as_str()).await?;
            let owned = rows
                .iter()
                .filter(|row| entity::turn_number(row).is_some())
                .all(|row| entity::owner(row).as_ref() == Some(owner));
            if rows.is_empty() || !owned {
                // Gone, or someone else's by now: only the listing rows go.
                return Ok(true);
            }
            let doomed = rows.iter().filter_map(DoomedRow::as_read).collect();
            let deleted = self.delete_rows(session.as_str(), doomed).await?;
            self.forget(session);
            if deleted {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// `conversations` in groups whose listing rows fit one transaction.
fn transaction_groups(conversations: &[Listed]) -> Vec<Vec<&Listed>> {
    let mut groups: Vec<Vec<&Listed>> = Vec::new();
    let mut rows = 0;
    for listed in conversations {
        match groups.last_mut() {
            Some(group) if rows + listed.row_count() <= MAX_BATCH_OPERATIONS => {
                group.push(listed);
                rows += listed.row_count();
            }
            _ => {
                groups.push(vec![listed]);
                rows = listed.row_count();
            }
        }
    }
    groups
}
