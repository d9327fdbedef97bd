//! The listing index: one entity per owned conversation in a table of its own
//! (`CHAT_SESSIONS_TABLE`), PartitionKey = owner, RowKey = session id, so a listing
//! reads one owner's partition and nothing of anyone else's, and the history table
//! keeps exactly the seed's shape.
//!
//! Properties: `title` and `created_at` (written with turn 0), `turns` (a 32-bit
//! integer) and `updated_at` (written with every turn); times as RFC 3339 strings.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::entity::{ascii_json, parse_timestamp, string, ROW_KEY};
use crate::domain::{timestamp_text, title_of, CustomerId, NewTurn, SessionId};
use crate::storage::SessionSummary;

pub const TITLE: &str = "title";
const TURNS: &str = "turns";
const CREATED_AT: &str = "created_at";
const UPDATED_AT: &str = "updated_at";

/// The properties to merge into a conversation's entry once turn `number` is stored:
/// turn 0 names and dates the conversation, every turn counts itself and its time.
pub fn merge_body(number: u64, turn: &NewTurn) -> Box<RawValue> {
    let updated_at = timestamp_text(turn.timestamp);
    let mut properties = Map::new();
    properties.insert(TURNS.into(), (number + 1).into());
    if number == 0 {
        properties.insert(TITLE.into(), title_of(&turn.user).into());
        properties.insert(CREATED_AT.into(), updated_at.clone().into());
    }
    properties.insert(UPDATED_AT.into(), updated_at.into());
    ascii_json(&Value::Object(properties))
}

/// An entry of `owner`'s partition as a summary; `None` for an entry that cannot be
/// read (a session id that is not one of ours, no `updated_at`).
pub fn to_summary(owner: &CustomerId, entity: &Map<String, Value>) -> Option<SessionSummary> {
    let session_id = SessionId::parse(string(entity, ROW_KEY)?).ok()?;
    let updated_at = string(entity, UPDATED_AT).and_then(parse_timestamp)?;
    Some(SessionSummary {
        session_id,
        owner: owner.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn turn(user: &str, second: u32) -> NewTurn {
        NewTurn {
            user: user.into(),
            assistant: "a".into(),
            metadata_json: "{}".into(),
            timestamp: Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, second).unwrap(),
            owner: Some(CustomerId::parse("alice").unwrap()),
        }
    }

    fn object(json: &RawValue) -> Map<String, Value> {
        serde_json::from_str(json.get()).unwrap()
    }

    #[test]
    fn turn_zero_names_the_conversation_and_later_turns_only_count() {
        let first = object(&merge_body(0, &turn("What does  LONPF2 do?", 0)));
        assert_eq!(
            Value::Object(first),
            serde_json::json!({
                "turns": 1,
                "title": "What does LONPF2 do?",
                "created_at": "2025-01-24T10:30:00Z",
                "updated_at": "2025-01-24T10:30:00Z",
            })
        );
        let third = object(&merge_body(2, &turn("Who calls it?", 9)));
        assert_eq!(
            Value::Object(third),
            serde_json::json!({"turns": 3, "updated_at": "2025-01-24T10:30:09Z"})
        );
    }

    #[test]
    fn an_entry_reads_back_as_a_summary() {
        let alice = CustomerId::parse("alice").unwrap();
        let mut entry = object(&merge_body(0, &turn("Zoë's question", 0)));
        entry.extend(object(&merge_body(4, &turn("later", 7))));
        entry.insert("PartitionKey".into(), "alice".into());
        entry.insert("RowKey".into(), "s-1".into());
        let summary = to_summary(&alice, &entry).unwrap();
        assert_eq!(summary.session_id.as_str(), "s-1");
        assert_eq!(summary.title, "Zoë's question");
        assert_eq!(summary.turns, 5);
        assert_eq!(timestamp_text(summary.created_at), "2025-01-24T10:30:00Z");
        assert_eq!(timestamp_text(summary.updated_at), "2025-01-24T10:30:07Z");
    }

    #[test]
    fn an_entry_without_its_first_write_still_lists() {
        let alice = CustomerId::parse("alice").unwrap();
        let mut entry = object(&merge_body(3, &turn("later", 7)));
        entry.insert("RowKey".into(), "s-2".into());
        let summary = to_summary(&alice, &entry).unwrap();
        assert_eq!(summary.title, "");
        assert_eq!(summary.created_at, summary.updated_at);
    }
}
