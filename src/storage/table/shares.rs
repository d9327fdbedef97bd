//! Shared snapshots, in a table of their own (`CHAT_SHARES_TABLE`), so that neither
//! the seed's session partitions nor the owners' listing partitions hold a foreign
//! row:
//!
//! | row | PartitionKey | RowKey | properties |
//! |---|---|---|---|
//! | pointer | share id | `~session` | `session_id` |
//! | part | session id | share id + `:` + 4 digits | `document`, `document_2`, … |
//!
//! Part `0000` (the head) also holds `owner`, `started_at`, `created_at`, `turns`
//! and `parts`. A snapshot's text runs over as many parts as it needs (each well
//! under the 1 MiB entity limit), never cut. The head is written last and deleted
//! first, and a share reads only when its head and every part are there: a share
//! is readable whole or not at all. A session's shares are one partition, so
//! revoking them all is one query and their deletes.

use azure_core::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use super::entity::{self, ascii_json, insert_split, read_split, PARTITION_KEY, ROW_KEY};
use super::error::{has_status, storage_error};
use super::keys::quoted;
use super::{ensure_exists, partition_filter, Row, TableStore};
use crate::domain::{parse_timestamp, CustomerId, SessionId, ShareId};
use crate::storage::{Share, ShareOrigin, StorageError};

/// The pointer row's RowKey in a share's partition.
const POINTER: &str = "~session";
const SESSION_ID: &str = "session_id";
const DOCUMENT: &str = "document";
const OWNER: &str = "owner";
const STARTED_AT: &str = "started_at";
const CREATED_AT: &str = "created_at";
const TURNS: &str = "turns";
const PARTS: &str = "parts";
/// UTF-16 units of the document per part: 14 string properties of at most
/// 32,768 units, about 896 KiB, leaving room for keys and the head's properties.
const PART_UNITS: usize = 14 * 32_768;
/// Part numbers have four digits.
const MAX_PARTS: usize = 10_000;

/// The RowKey of part `n` of share `id`.
fn part_key(id: &ShareId, n: usize) -> String {
    format!("{id}:{n:04}")
}

/// The share and part number a part's RowKey names.
fn parse_part_key(key: &str) -> Option<(ShareId, usize)> {
    let (id, n) = key.split_once(':')?;
    let n = (n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()?;
    Some((ShareId::parse(id)?, n))
}

/// Where share `id` of `session` comes from, as its head `head` says.
fn origin_of(session: SessionId, id: ShareId, head: &Row) -> Option<ShareOrigin> {
    Some(ShareOrigin {
        owner: CustomerId::parse(entity::string(head, OWNER)?).ok()?,
        started_at: entity::string(head, STARTED_AT).and_then(parse_timestamp)?,
        session,
        id,
    })
}

fn time_text(time: DateTime<Utc>) -> String {
    // To the nanosecond: `started_at` is compared with turn 0's time as read.
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `text` cut between characters into pieces of at most [`PART_UNITS`] UTF-16
/// units; one empty piece for empty text.
fn pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut units) = (0, 0);
    for (at, c) in text.char_indices() {
        if units + c.len_utf16() > PART_UNITS {
            pieces.push(&text[start..at]);
            (start, units) = (at, 0);
        }
        units += c.len_utf16();
    }
    pieces.push(&text[start..]);
    pieces
}

impl TableStore {
    async fn ensure_shares_table(&self) -> Result<(), StorageError> {
        ensure_exists(&self.shares, &self.shares_ready).await
    }

    async fn insert_share_row(&self, row: Value) -> Result<(), StorageError> {
        self.shares
            .insert::<_, Row>(ascii_json(&row))
            .map_err(|e| storage_error("storing a share", &e))?
            .await
            .map_err(|e| storage_error("storing a share", &e))?;
        Ok(())
    }

    pub(super) async fn store_share(&self, share: &Share) -> Result<(), StorageError> {
        let pieces = pieces(&share.document);
        if pieces.len() > MAX_PARTS {
            return Err(StorageError::Rejected(format!(
                "the snapshot needs {} parts; a share holds at most {MAX_PARTS}",
                pieces.len()
            )));
        }
        self.ensure_shares_table().await?;
        self.insert_share_row(json!({
            "PartitionKey": share.id.as_str(),
            "RowKey": POINTER,
            SESSION_ID: share.session.as_str(),
        }))
        .await?;
        // The head last: until it is written, the share does not read.
        for (n, piece) in pieces.iter().enumerate().rev() {
            let mut row = Map::new();
            row.insert("PartitionKey".into(), share.session.as_str().into());
            row.insert(ROW_KEY.into(), part_key(&share.id, n).into());
            insert_split(&mut row, DOCUMENT, piece);
            if n == 0 {
                row.insert(OWNER.into(), share.owner.as_str().into());
                row.insert(STARTED_AT.into(), time_text(share.started_at).into());
                row.insert(CREATED_AT.into(), time_text(share.created_at).into());
                row.insert(TURNS.into(), share.turns.to_string().into());
                row.insert(PARTS.into(), pieces.len().into());
            }
            self.insert_share_row(Value::Object(row)).await?;
        }
        Ok(())
    }

    /// The session `id` was taken of, from its pointer row.
    async fn shared_session(&self, id: &ShareId) -> Result<Option<SessionId>, StorageError> {
        let read = self
            .shares
            .partition_key_client(id.as_str())
            .entity_client(POINTER)
            .get::<Row>()
            .await;
        match read {
            Ok(response) => Ok(entity::string(&response.entity, SESSION_ID)
                .and_then(|session| SessionId::parse(session).ok())),
            // No such share, or no shares table yet.
            Err(e) if has_status(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(storage_error("reading a share", &e)),
        }
    }

    /// The part rows of `session`'s shares: of share `id` only, or of all when `None`.
    async fn share_parts(
        &self,
        session: &SessionId,
        id: Option<&ShareId>,
        select: Option<&'static str>,
    ) -> Result<Vec<(ShareId, usize, Row)>, StorageError> {
        let mut filter = partition_filter(session.as_str());
        if let Some(id) = id {
            // Every part key of `id` starts with `id:`; `;` follows `:`.
            filter = format!("{filter} and RowKey gt '{id}:' and RowKey lt '{id};'");
        }
        let mut query = self.shares.query().filter(filter);
        if let Some(select) = select {
            query = query.select(select);
        }
        let mut pages = query.into_stream::<Row>();
        let mut parts = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("reading a share", &e))?;
            parts.extend(page.entities.into_iter().filter_map(|row| {
                let (share, n) = parse_part_key(entity::string(&row, ROW_KEY)?)?;
                Some((share, n, row))
            }));
        }
        Ok(parts)
    }

    pub(super) async fn read_share(&self, id: &ShareId) -> Result<Option<Share>, StorageError> {
        let Some(session) = self.shared_session(id).await? else {
            return Ok(None);
        };
        let mut parts = self.share_parts(&session, Some(id), None).await?;
        parts.sort_by_key(|(_, n, _)| *n);
        let Some((_, 0, head)) = parts.first() else {
            return Ok(None);
        };
        let count = head.get(PARTS).and_then(Value::as_u64);
        let whole = count.is_some_and(|count| {
            parts.len() as u64 == count && parts.iter().zip(0..).all(|((_, n, _), m)| *n == m)
        });
        let created_at = entity::string(head, CREATED_AT).and_then(parse_timestamp);
        let turns = entity::string(head, TURNS).and_then(|turns| turns.parse().ok());
        let (Some(origin), Some(created_at), Some(turns), true) = (
            origin_of(session, id.clone(), head),
            created_at,
            turns,
            whole,
        ) else {
            return Ok(None);
        };
        let document = parts
            .iter()
            .map(|(_, _, row)| read_split(row, DOCUMENT))
            .collect();
        Ok(Some(origin.into_share(created_at, turns, document)))
    }

    pub(super) async fn every_share_origin(&self) -> Result<Vec<ShareOrigin>, StorageError> {
        self.ensure_shares_table().await?;
        let mut pages = self
            .shares
            .query()
            .select(format!("{PARTITION_KEY},{ROW_KEY},{OWNER},{STARTED_AT}"))
            .into_stream::<Row>();
        let mut origins = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| storage_error("reading the shares", &e))?;
            origins.extend(page.entities.iter().filter_map(|row| {
                let (id, 0) = parse_part_key(entity::string(row, ROW_KEY)?)? else {
                    return None;
                };
                let session = SessionId::parse(entity::string(row, PARTITION_KEY)?).ok()?;
                origin_of(session, id, row)
            }));
        }
        Ok(origins)
    }

    /// Deletes `session`'s share `id`, or all its shares when `None`; how many.
    pub(super) async fn delete_shares_of(
        &self,
        session: &SessionId,
        id: Option<&ShareId>,
    ) -> Result<u64, StorageError> {
        self.ensure_shares_table().await?;
        let mut parts = self.share_parts(session, id, Some(ROW_KEY)).await?;
        // Heads first: a share without its head no longer reads.
        parts.sort_by_key(|(_, n, _)| *n);
        let mut revoked = 0;
        for (id, n, _) in &parts {
            let deleted = self
                .shares
                .partition_key_client(quoted(session.as_str()))
                .entity_client(part_key(id, *n))
                .delete()
                .await;
            match deleted {
                Ok(_) => revoked += u64::from(*n == 0),
                // Revoked meanwhile by someone else.
                Err(e) if has_status(&e, StatusCode::NotFound) => {}
                Err(e) => return Err(storage_error("revoking a share", &e)),
            }
        }
        for (id, _, _) in parts.iter().filter(|(_, n, _)| *n == 0) {
            let deleted = self
                .shares
                .partition_key_client(id.as_str())
                .entity_client(POINTER)
                .delete()
                .await;
            match deleted {
                Err(e) if !has_status(&e, StatusCode::NotFound) => {
                    return Err(storage_error("revoking a share", &e))
                }
                _ => {}
            }
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_keys_name_their_share_and_number() {
        let id = ShareId::generate().unwrap();
        for n in [0, 7, 9999] {
            assert_eq!(parse_part_key(&part_key(&id, n)), Some((id.clone(), n)));
        }
        for foreign in [POINTER, "0000", &format!("{id}:1"), &format!("{id}:00x0")] {
            assert_eq!(parse_part_key(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn long_text_is_cut_between_characters_and_never_lost() {
        let text = format!("{}{}", "a".repeat(PART_UNITS - 1), "😀é".repeat(10));
        let cut = pieces(&text);
        assert_eq!(cut.len(), 2);
        assert_eq!(cut[0].len(), PART_UNITS - 1, "the emoji does not fit whole");
        assert_eq!(cut.concat(), text);
        assert_eq!(pieces(""), vec![""]);
    }
}
