//! Feedback on an answer, kept on its turn's own entity in properties of ours:
//! `feedback_rating` (`up`, `down`, or empty once removed), `feedback_comment`
//! (empty when none) and `feedback_updated_at` (RFC 3339). Written by a Merge, so
//! the seed's properties (`timestamp`, `user`, `assistant`, `metadata_json`) stay
//! exactly as they were and the seed's Python code still reads the row; a Merge
//! cannot drop properties, so removing feedback empties them instead.
//!
//! The Merge is conditional on the ETag the turn was read with when its owner was
//! checked: it never creates a row for a turn that does not exist, and never lands
//! on a conversation deleted and started again (by someone else) since the check.

use azure_core::StatusCode;
use azure_data_tables::IfMatchCondition;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::entity::{ascii_json, string, CUSTOMER_ID, SYSTEM_TIMESTAMP, TIMESTAMP};
use super::error::{has_status, storage_error};
use super::keys::{row_key, MAX_TURN};
use super::{Row, TableStore};
use crate::domain::{
    may_access, parse_timestamp, timestamp_text, CustomerId, Feedback, Rating, SessionId,
};
use crate::storage::{Rated, StorageError};

const RATING: &str = "feedback_rating";
const COMMENT: &str = "feedback_comment";
const UPDATED_AT: &str = "feedback_updated_at";

/// Reads and merges per call before giving up on a turn that keeps changing.
const ATTEMPTS: usize = 4;

/// The feedback a turn row carries, if any.
pub fn read(entity: &Map<String, Value>) -> Option<Feedback> {
    let rating = Rating::parse(string(entity, RATING)?)?;
    Some(Feedback {
        rating,
        comment: string(entity, COMMENT)
            .filter(|comment| !comment.is_empty())
            .map(str::to_owned),
        updated_at: string(entity, UPDATED_AT).and_then(parse_timestamp)?,
    })
}

/// The properties a Merge writes to record `feedback`, or to remove it (`None`).
fn merge_body(feedback: Option<&Feedback>) -> Box<RawValue> {
    let mut properties = Map::new();
    properties.insert(
        RATING.into(),
        feedback.map_or("", |f| f.rating.as_str()).into(),
    );
    properties.insert(
        COMMENT.into(),
        feedback
            .and_then(|f| f.comment.as_deref())
            .unwrap_or_default()
            .into(),
    );
    properties.insert(
        UPDATED_AT.into(),
        feedback
            .map(|f| timestamp_text(f.updated_at))
            .unwrap_or_default()
            .into(),
    );
    ascii_json(&Value::Object(properties))
}

impl TableStore {
    pub(super) async fn merge_feedback(
        &self,
        session: &SessionId,
        turn: u64,
        requester: Option<&CustomerId>,
        feedback: Option<&Feedback>,
    ) -> Result<Option<Rated>, StorageError> {
        if turn > MAX_TURN {
            return Ok(None);
        }
        let client = self.partition(session).entity_client(row_key(turn));
        let selected = [CUSTOMER_ID, TIMESTAMP, SYSTEM_TIMESTAMP, RATING].join(",");
        for _ in 0..ATTEMPTS {
            // A missing table is a missing turn too.
            let (row, etag) = match client.get::<Row>().select(selected.clone()).await {
                Ok(response) => (response.entity, response.etag),
                Err(e) if has_status(&e, StatusCode::NotFound) => return Ok(None),
                Err(e) => return Err(storage_error("reading a turn", &e)),
            };
            let owner = super::entity::owner(&row);
            if !may_access(owner.as_ref(), requester) {
                return Ok(None);
            }
            let merged = client
                .merge(merge_body(feedback), IfMatchCondition::Etag(etag))
                .map_err(|e| storage_error("recording feedback", &e))?
                .await;
            match merged {
                // The Merge replaced exactly the rating read with this ETag.
                Ok(_) => {
                    return Ok(Some(Rated {
                        owner,
                        asked_at: super::entity::turn_time(&row),
                        previous: string(&row, RATING).and_then(Rating::parse),
                    }))
                }
                // Changed since it was read: judge it again as it now is.
                Err(e) if has_status(&e, StatusCode::PreconditionFailed) => {}
                Err(e) if has_status(&e, StatusCode::NotFound) => return Ok(None),
                Err(e) => return Err(storage_error("recording feedback", &e)),
            }
        }
        Err(StorageError::Unavailable(
            "the turn kept changing while its feedback was recorded".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn object(json: &RawValue) -> Map<String, Value> {
        serde_json::from_str(json.get()).unwrap()
    }

    #[test]
    fn feedback_is_written_in_properties_of_its_own_and_reads_back() {
        let feedback = Feedback {
            rating: Rating::Down,
            comment: Some("Zoë says: wrong copybook".into()),
            updated_at: Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap(),
        };
        let body = merge_body(Some(&feedback));
        assert!(body.get().is_ascii());
        let written = object(&body);
        let mut names: Vec<&str> = written.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["feedback_comment", "feedback_rating", "feedback_updated_at"]
        );
        assert_eq!(read(&written), Some(feedback));
    }

    #[test]
    fn removed_feedback_reads_as_none() {
        assert_eq!(read(&object(&merge_body(None))), None);
        assert_eq!(read(&Map::new()), None);
    }
}
