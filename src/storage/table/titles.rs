//! A conversation's title lives in its listing entry (`listing.rs`): one point read
//! shows it, and renaming merges a new `title` into the entry, conditional on the
//! ETag it was read with, so a rename never creates an entry (nor revives a deleted
//! conversation) and judges expiry on the entry it changes.

use azure_core::{Etag, StatusCode};
use azure_data_tables::clients::EntityClient;
use azure_data_tables::IfMatchCondition;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::entity::ascii_json;
use super::error::{has_status, storage_error};
use super::keys::quoted;
use super::listing::{to_summary, TITLE};
use super::{Row, TableStore};
use crate::domain::{CustomerId, SessionId, Title};
use crate::storage::{SessionSummary, StorageError};

/// Reads and merges per rename before giving up on an entry that keeps changing.
const ATTEMPTS: usize = 4;

impl TableStore {
    fn listing_entry_client(&self, owner: &CustomerId, session: &SessionId) -> EntityClient {
        self.index
            .partition_key_client(quoted(owner.as_str()))
            .entity_client(quoted(session.as_str()))
    }

    /// `owner`'s entry for `session` and its ETag; `None` when there is none (or no
    /// listing table yet).
    async fn listing_entry(
        &self,
        client: &EntityClient,
    ) -> Result<Option<(Row, Etag)>, StorageError> {
        match client.get::<Row>().await {
            Ok(response) => Ok(Some((response.entity, response.etag))),
            Err(e) if has_status(&e, StatusCode::NotFound) => Ok(None),
            Err(e) => Err(storage_error("reading a listing entry", &e)),
        }
    }

    pub(super) async fn summary_of(
        &self,
        owner: &CustomerId,
        session: &SessionId,
    ) -> Result<Option<SessionSummary>, StorageError> {
        let client = self.listing_entry_client(owner, session);
        Ok(self
            .listing_entry(&client)
            .await?
            .and_then(|(entry, _)| to_summary(owner, &entry)))
    }

    pub(super) async fn retitle(
        &self,
        owner: &CustomerId,
        session: &SessionId,
        title: &Title,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Option<SessionSummary>, StorageError> {
        let client = self.listing_entry_client(owner, session);
        let mut body = Map::new();
        body.insert(TITLE.into(), title.as_str().into());
        let body = ascii_json(&Value::Object(body));
        for _ in 0..ATTEMPTS {
            let Some((entry, etag)) = self.listing_entry(&client).await? else {
                return Ok(None);
            };
            let Some(mut summary) = to_summary(owner, &entry) else {
                return Ok(None);
            };
            if cutoff.is_some_and(|cutoff| summary.updated_at < cutoff) {
                return Ok(None);
            }
            let merged = client
                .merge(&body, IfMatchCondition::Etag(etag))
                .map_err(|e| storage_error("renaming a conversation", &e))?
                .await;
            match merged {
                Ok(_) => {
                    summary.title = title.as_str().to_owned();
                    return Ok(Some(summary));
                }
                // A turn updated the entry meanwhile: judge it again as it now is.
                Err(e) if has_status(&e, StatusCode::PreconditionFailed) => {}
                Err(e) if has_status(&e, StatusCode::NotFound) => return Ok(None),
                Err(e) => return Err(storage_error("renaming a conversation", &e)),
            }
        }
        Err(StorageError::Unavailable(
            "the conversation kept changing while it was renamed".into(),
        ))
    }
}
