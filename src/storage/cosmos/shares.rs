//! Shared snapshots in Cosmos DB. Each share has a partition of its own,
//! `#share:<share id>` (`#` cannot begin a customer id, so no customer's
//! partition is one, and seed 000's listing never sees them): a head item, whose
//! id is the share id, and its parts, `<share id>:0001`, `:0002`, … holding the
//! snapshot's text, each well within the 2 MB item limit. Parts are written first
//! and the head last, and revoking deletes the head first, so a share reads whole
//! or not at all.

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{is_not_found, storage_error};
use super::rest::{Query, Scope};
use super::CosmosStore;
use crate::domain::{parse_timestamp, CustomerId, SessionId, ShareId};
use crate::storage::{Share, ShareOrigin, StorageError};

const PARTITION_PREFIX: &str = "#share:";
/// What marks a head, so that a query across partitions finds only heads.
const KIND: &str = "share";
/// At most this many bytes of a part's text as sent (non-ASCII escaped), half
/// of Cosmos DB's item limit.
const PART_BYTES: usize = 1 << 20;

/// A share without its text, as stored.
#[derive(Serialize, Deserialize)]
struct Head {
    id: String,
    customer_id: String,
    kind: String,
    session_id: String,
    owner: String,
    started_at: String,
    created_at: String,
    turns: u64,
    parts: usize,
}

impl Head {
    fn origin(&self) -> Option<ShareOrigin> {
        Some(ShareOrigin {
            id: ShareId::parse(&self.id)?,
            session: SessionId::parse(&self.session_id).ok()?,
            owner: CustomerId::parse(&self.owner).ok()?,
            started_at: parse_timestamp(&self.started_at)?,
        })
    }
}

#[derive(Deserialize)]
struct Part {
    document: String,
}

fn partition(id: &str) -> String {
    format!("{PARTITION_PREFIX}{id}")
}

fn part_id(id: &str, number: usize) -> String {
    format!("{id}:{number:04}")
}

/// `text` cut at character boundaries into pieces of at most [`PART_BYTES`] once
/// escaped for sending (a non-ASCII character's UTF-16 units as `\uXXXX` each).
fn split(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (at, character) in text.char_indices() {
        let escaped = if character.is_ascii() {
            6 // at most: a control character's `\u00XX`
        } else {
            6 * character.len_utf16()
        };
        if size + escaped > PART_BYTES {
            parts.push(&text[start..at]);
            (start, size) = (at, 0);
        }
        size += escaped;
    }
    parts.push(&text[start..]);
    parts
}

impl CosmosStore {
    pub(super) async fn put_share(&self, share: &Share) -> Result<(), StorageError> {
        const OPERATION: &str = "storing a share";
        let container = self.container().await?;
        let id = share.id.as_str();
        let partition = partition(id);
        let parts = split(&share.document);
        for (number, text) in parts.iter().enumerate() {
            let part = json!({ "id": part_id(id, number + 1), "customer_id": partition, "document": text });
            container
                .create_item(&partition, &part)
                .await
                .map_err(|e| storage_error(OPERATION, &e))?;
        }
        let head = Head {
            id: id.to_owned(),
            customer_id: partition.clone(),
            kind: KIND.to_owned(),
            session_id: share.session.as_str().to_owned(),
            owner: share.owner.as_str().to_owned(),
            // To the nanosecond: a share lives while its conversation's turn 0 is this one.
            started_at: share.started_at.to_rfc3339_opts(SecondsFormat::Nanos, true),
            created_at: share.created_at.to_rfc3339_opts(SecondsFormat::Nanos, true),
            turns: share.turns,
            parts: parts.len(),
        };
        let head = serde_json::to_value(&head)
            .map_err(|e| StorageError::Rejected(format!("cannot write the share: {e}")))?;
        container
            .create_item(&partition, &head)
            .await
            .map(drop)
            .map_err(|e| storage_error(OPERATION, &e))
    }

    pub(super) async fn read_share(&self, id: &ShareId) -> Result<Option<Share>, StorageError> {
        const OPERATION: &str = "reading a share";
        let container = self.container().await?;
        let partition = partition(id.as_str());
        let Some(head) = container
            .read_item::<Head>(&partition, id.as_str())
            .await
            .map_err(|e| storage_error(OPERATION, &e))?
        else {
            return Ok(None);
        };
        let mut document = String::new();
        for number in 1..=head.parts {
            match container
                .read_item::<Part>(&partition, &part_id(id.as_str(), number))
                .await
                .map_err(|e| storage_error(OPERATION, &e))?
            {
                Some(part) => document.push_str(&part.document),
                // Revoked while it was read.
                None => return Ok(None),
            }
        }
        let Some(origin) = head.origin() else {
            return Ok(None);
        };
        let created_at = parse_timestamp(&head.created_at).unwrap_or(origin.started_at);
        Ok(Some(origin.into_share(created_at, head.turns, document)))
    }

    /// Deletes share `id` of `session`, head first; `false` if there was none.
    pub(super) async fn remove_share(
        &self,
        session: &SessionId,
        id: &str,
    ) -> Result<bool, StorageError> {
        const OPERATION: &str = "revoking a share";
        let container = self.container().await?;
        let partition = partition(id);
        let Some(head) = container
            .read_item::<Head>(&partition, id)
            .await
            .map_err(|e| storage_error(OPERATION, &e))?
        else {
            return Ok(false);
        };
        if head.session_id != session.as_str() {
            return Ok(false);
        }
        match container.delete_item(&partition, id, None).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(storage_error(OPERATION, &e)),
        }
        for number in 1..=head.parts {
            match container
                .delete_item(&partition, &part_id(id, number), None)
                .await
            {
                Err(e) if !is_not_found(&e) => return Err(storage_error(OPERATION, &e)),
                _ => {}
            }
        }
        Ok(true)
    }

    /// Every share's head (optionally `session`'s only): one query across partitions.
    async fn heads(&self, session: Option<&SessionId>) -> Result<Vec<Head>, StorageError> {
        let container = self.container().await?;
        let mut query = String::from("SELECT * FROM c WHERE c.kind = @kind");
        if session.is_some() {
            query.push_str(" AND c.session_id = @session");
        }
        let mut query = Query::new(query).with("@kind", KIND);
        if let Some(session) = session {
            query = query.with("@session", session.as_str());
        }
        container
            .query_all::<Value>(&query, Scope::AllPartitions)
            .await
            .map_err(|e| storage_error("finding shares", &e))
            // A head of another shape (not ours) is left out.
            .map(|heads| {
                heads
                    .into_iter()
                    .filter_map(|head| serde_json::from_value(head).ok())
                    .collect()
            })
    }

    pub(super) async fn remove_shares_of(&self, session: &SessionId) -> Result<u64, StorageError> {
        let mut removed = 0;
        for head in self.heads(Some(session)).await? {
            removed += u64::from(self.remove_share(session, &head.id).await?);
        }
        Ok(removed)
    }

    pub(super) async fn origins(&self) -> Result<Vec<ShareOrigin>, StorageError> {
        Ok(self
            .heads(None)
            .await?
            .iter()
            .filter_map(Head::origin)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_their_size_once_escaped_and_join_to_the_text() {
        let text = format!(
            "{}{}{}",
            "a".repeat(PART_BYTES / 6 + 3),
            "é".repeat(PART_BYTES / 6),
            "😀".repeat(10)
        );
        let parts = split(&text);
        assert!(parts.len() >= 3, "{}", parts.len());
        assert_eq!(parts.concat(), text);
        for part in parts {
            let escaped = crate::storage::ascii::ascii_json(&json!(part));
            assert!(
                escaped.get().len() <= PART_BYTES + 2,
                "{}",
                escaped.get().len()
            );
        }
        assert_eq!(split(""), vec![""]);
    }
}
