//! Turns as Table Storage entities, in the seed's format.
//!
//! The seed's properties, all strings: `timestamp`, `user`, `assistant`,
//! `metadata_json`. Ours besides: `customer_id` (the owner, when there is one) and
//! `turn_id` (a fresh uuid per append, so a retried insert can recognise itself).
//! A text longer than one string property may hold continues in `user_2`,
//! `user_3`, … and reads back by concatenation.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::keys::{self, MAX_ROW_KEY_CHARS};
use crate::domain::{parse_timestamp, timestamp_text, CustomerId, NewTurn, SessionId, Turn};
use crate::storage::StorageError;

/// A string property holds at most this many UTF-16 code units.
const MAX_PROPERTY_UNITS: usize = 32_768;
/// Azure's entity size limit, by its own size formula.
const MAX_ENTITY_BYTES: usize = 1024 * 1024;
/// Azure's property limit, counting PartitionKey, RowKey and Timestamp.
const MAX_PROPERTIES: usize = 255;
const SYSTEM_PROPERTIES: usize = 3;

pub const TIMESTAMP: &str = "timestamp";
const USER: &str = "user";
const ASSISTANT: &str = "assistant";
const METADATA_JSON: &str = "metadata_json";
pub const CUSTOMER_ID: &str = "customer_id";
pub const TURN_ID: &str = "turn_id";

/// The service's own last-modified time, for rows without a readable `timestamp`.
pub const SYSTEM_TIMESTAMP: &str = "Timestamp";
pub const PARTITION_KEY: &str = "PartitionKey";
/// The entity's ETag, as the service reports it in query results.
pub const ETAG: &str = "odata.etag";
pub const ROW_KEY: &str = "RowKey";

/// A turn's properties, checked against the service limits, ready to be inserted
/// under any turn number.
pub struct TurnEntity {
    properties: Map<String, Value>,
}

impl TurnEntity {
    /// Checks the limits with the longest RowKey, so any turn number fits.
    pub fn new(session: &SessionId, turn: &NewTurn, turn_id: Uuid) -> Result<Self, StorageError> {
        let mut properties = Map::new();
        properties.insert(TIMESTAMP.into(), timestamp_text(turn.timestamp).into());
        insert_split(&mut properties, USER, &turn.user);
        insert_split(&mut properties, ASSISTANT, &turn.assistant);
        insert_split(&mut properties, METADATA_JSON, &turn.metadata_json);
        if let Some(owner) = &turn.owner {
            properties.insert(CUSTOMER_ID.into(), owner.as_str().into());
        }
        properties.insert(TURN_ID.into(), turn_id.to_string().into());

        let count = properties.len() + SYSTEM_PROPERTIES;
        if count > MAX_PROPERTIES {
            return Err(StorageError::Rejected(format!(
                "the turn needs {count} entity properties; Table Storage allows {MAX_PROPERTIES}"
            )));
        }
        let size = entity_size(session.as_str(), MAX_ROW_KEY_CHARS, &properties);
        if size > MAX_ENTITY_BYTES {
            return Err(StorageError::Rejected(format!(
                "the turn is {size} bytes as a Table Storage entity; the limit is {MAX_ENTITY_BYTES} (1 MiB)"
            )));
        }
        Ok(Self { properties })
    }

    /// The owner the turn is stored with.
    pub fn owner(&self) -> Option<CustomerId> {
        owner(&self.properties)
    }

    /// The JSON body inserting this turn as turn `n` of `session`.
    pub fn at(&self, session: &SessionId, n: u64) -> Box<RawValue> {
        let mut entity = self.properties.clone();
        entity.insert(PARTITION_KEY.into(), session.as_str().into());
        entity.insert(ROW_KEY.into(), keys::row_key(n).into());
        ascii_json(&Value::Object(entity))
    }
}

pub use crate::storage::ascii::ascii_json;

/// Stores `text` under `name`, continued in `name_2`, `name_3`, … when it is longer
/// than one property may hold. Split only between characters, so parts concatenate
/// back to the same bytes.
pub fn insert_split(properties: &mut Map<String, Value>, name: &str, text: &str) {
    let mut part = String::new();
    let mut units = 0;
    let mut number = 1;
    for c in text.chars() {
        if units + c.len_utf16() > MAX_PROPERTY_UNITS {
            properties.insert(part_name(name, number), std::mem::take(&mut part).into());
            units = 0;
            number += 1;
        }
        part.push(c);
        units += c.len_utf16();
    }
    properties.insert(part_name(name, number), part.into());
}

fn part_name(name: &str, number: usize) -> String {
    if number == 1 {
        name.to_owned()
    } else {
        format!("{name}_{number}")
    }
}

/// Azure's formula: 4 + 2·len(PK) + 2·len(RK) + Σ(8 + 2·len(name) + value size),
/// where a string value takes 4 + 2·len bytes (lengths in UTF-16 units).
fn entity_size(
    partition_key: &str,
    row_key_units: usize,
    properties: &Map<String, Value>,
) -> usize {
    let properties: usize = properties
        .iter()
        .map(|(name, value)| {
            let value_units = value.as_str().map_or(0, utf16_len);
            8 + 2 * utf16_len(name) + 4 + 2 * value_units
        })
        .sum();
    4 + 2 * utf16_len(partition_key) + 2 * row_key_units + properties
}

fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// The turn number of a stored row, if it is a turn row.
pub fn turn_number(entity: &Map<String, Value>) -> Option<u64> {
    entity
        .get(ROW_KEY)
        .and_then(Value::as_str)
        .and_then(keys::turn_number)
}

/// The `turn_id` a row was inserted with (absent on rows the seed wrote).
pub fn turn_id(entity: &Map<String, Value>) -> Option<Uuid> {
    entity
        .get(TURN_ID)
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
}

/// A stored row as a turn; `None` for rows that are not turns.
pub fn to_turn(entity: &Map<String, Value>) -> Option<Turn> {
    let index = turn_number(entity)?;
    let metadata_json = read_split(entity, METADATA_JSON);
    Some(Turn {
        index,
        user: read_split(entity, USER),
        assistant: read_split(entity, ASSISTANT),
        metadata_json: if metadata_json.is_empty() {
            "{}".into()
        } else {
            metadata_json
        },
        timestamp: turn_time(entity),
        owner: owner(entity),
        feedback: super::feedback::read(entity),
    })
}

/// When a turn row was written: its `timestamp`, else the service's own time.
pub fn turn_time(entity: &Map<String, Value>) -> DateTime<Utc> {
    string(entity, TIMESTAMP)
        .and_then(parse_timestamp)
        .or_else(|| string(entity, SYSTEM_TIMESTAMP).and_then(parse_timestamp))
        .unwrap_or_default()
}

/// The `customer_id` a turn row carries (absent on rows the seed wrote).
pub fn owner(entity: &Map<String, Value>) -> Option<CustomerId> {
    string(entity, CUSTOMER_ID).and_then(|id| CustomerId::parse(id).ok())
}

pub fn string<'a>(entity: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    entity.get(name).and_then(Value::as_str)
}

pub fn read_split(entity: &Map<String, Value>, name: &str) -> String {
    (1..)
        .map_while(|number| string(entity, &part_name(name, number)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn session() -> SessionId {
        SessionId::parse("o'brien").unwrap()
    }

    fn new_turn(user: &str, assistant: &str) -> NewTurn {
        NewTurn {
            user: user.into(),
            assistant: assistant.into(),
            metadata_json: r#"{"k":"v"}"#.into(),
            timestamp: Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap()
                + chrono::Duration::milliseconds(750),
            owner: Some(CustomerId::parse("cust").unwrap()),
        }
    }

    fn object(json: &RawValue) -> Map<String, Value> {
        serde_json::from_str(json.get()).unwrap()
    }

    fn json_object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn a_turn_is_written_with_the_seed_properties_and_ours() {
        let id = Uuid::new_v4();
        let entity = object(
            &TurnEntity::new(&session(), &new_turn("q", "a"), id)
                .unwrap()
                .at(&session(), 3),
        );
        let mut names: Vec<&str> = entity.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "PartitionKey",
                "RowKey",
                "assistant",
                "customer_id",
                "metadata_json",
                "timestamp",
                "turn_id",
                "user"
            ]
        );
        assert!(entity.values().all(Value::is_string));
        assert_eq!(entity["PartitionKey"], "o'brien");
        assert_eq!(entity["RowKey"], "0003");
        assert_eq!(entity["timestamp"], "2025-01-24T10:30:00Z");
        assert_eq!(turn_id(&entity), Some(id));
    }

    #[test]
    fn a_turn_reads_back() {
        let written = new_turn("question", "answer");
        let entity = object(
            &TurnEntity::new(&session(), &written, Uuid::new_v4())
                .unwrap()
                .at(&session(), 12_345),
        );
        let turn = to_turn(&entity).unwrap();
        assert_eq!(turn.index, 12_345);
        assert_eq!(turn.user, "question");
        assert_eq!(turn.assistant, "answer");
        assert_eq!(turn.metadata_json, r#"{"k":"v"}"#);
        assert_eq!(turn.owner, written.owner);
        assert_eq!(turn.timestamp.timestamp(), written.timestamp.timestamp());
    }

    #[test]
    fn seed_rows_read_back() {
        let entity = json_object(serde_json::json!({
            "PartitionKey": "user_123",
            "RowKey": "0001",
            "Timestamp": "2025-01-24T10:31:02.1234567Z",
            "timestamp": "2025-01-24T10:30:00.123456",
            "user": "What does LONPF2 do?",
            "assistant": "It reads the loan payment file.",
            "metadata_json": "{}",
        }));
        let turn = to_turn(&entity).unwrap();
        assert_eq!(turn.index, 1);
        assert_eq!(
            turn.timestamp,
            Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap()
                + chrono::Duration::microseconds(123_456)
        );
        assert_eq!(turn.owner, None);
        assert_eq!(turn_id(&entity), None);
    }

    #[test]
    fn an_unreadable_timestamp_falls_back_to_the_service_time() {
        let entity = json_object(serde_json::json!({
            "RowKey": "0000",
            "Timestamp": "2025-01-24T10:31:02.5Z",
            "timestamp": "yesterday",
        }));
        let turn = to_turn(&entity).unwrap();
        assert_eq!(turn.timestamp.timestamp(), 1_737_714_662);
        assert_eq!(turn.metadata_json, "{}");
    }

    #[test]
    fn rows_that_are_not_turns_are_skipped() {
        let entity = json_object(serde_json::json!({"RowKey": "summary", "user": "x"}));
        assert!(to_turn(&entity).is_none());
    }

    #[test]
    fn long_texts_are_split_at_character_boundaries_and_join_back() {
        // Emoji are two UTF-16 units: a split must never fall inside one.
        let user = format!("a{}", "😀".repeat(40_000));
        let assistant = "é".repeat(70_000);
        let turn = new_turn(&user, &assistant);
        let entity = object(
            &TurnEntity::new(&session(), &turn, Uuid::new_v4())
                .unwrap()
                .at(&session(), 0),
        );
        for (name, value) in &entity {
            let units = utf16_len(value.as_str().unwrap());
            assert!(units <= MAX_PROPERTY_UNITS, "{name}: {units} units");
        }
        assert!(entity.contains_key("user_3"));
        assert!(!entity.contains_key("user_4"));
        assert!(entity.contains_key("assistant_3"));
        let back = to_turn(&entity).unwrap();
        assert_eq!(back.user, user);
        assert_eq!(back.assistant, assistant);
    }

    #[test]
    fn entities_are_sent_as_ascii_and_mean_the_same() {
        let turn = new_turn("Zoë asks about 会话 😀", "\"quoted\" \\ answer");
        let json = TurnEntity::new(&session(), &turn, Uuid::new_v4())
            .unwrap()
            .at(&session(), 0);
        assert!(json.get().is_ascii(), "{}", json.get());
        assert!(json.get().contains(r"Zo\u00eb"), "{}", json.get());
        assert!(json.get().contains(r"\ud83d\ude00"), "{}", json.get());
        let back = to_turn(&object(&json)).unwrap();
        assert_eq!(back.user, turn.user);
        assert_eq!(back.assistant, turn.assistant);
    }

    #[test]
    fn a_property_of_exactly_the_limit_is_not_split() {
        let user = "x".repeat(MAX_PROPERTY_UNITS);
        let entity = object(
            &TurnEntity::new(&session(), &new_turn(&user, ""), Uuid::new_v4())
                .unwrap()
                .at(&session(), 0),
        );
        assert!(!entity.contains_key("user_2"));
        assert_eq!(entity["assistant"], "");
    }

    #[test]
    fn entities_over_one_mebibyte_are_rejected() {
        // 2 bytes per unit: 520,000 units is just under 1 MiB of text on its own.
        let fits = new_turn(&"x".repeat(260_000), &"y".repeat(260_000));
        assert!(TurnEntity::new(&session(), &fits, Uuid::new_v4()).is_ok());
        let too_big = new_turn(&"x".repeat(300_000), &"y".repeat(300_000));
        match TurnEntity::new(&session(), &too_big, Uuid::new_v4()) {
            Err(StorageError::Rejected(message)) => assert!(message.contains("1 MiB"), "{message}"),
            other => panic!("expected Rejected, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn the_size_formula_counts_keys_names_and_values() {
        // PartitionKey "pk", a 2-unit RowKey, one property "a" holding "bc":
        // 4 + 2·2 + 2·2 + (8 + 2·1 + 4 + 2·2) = 30.
        let mut properties = Map::new();
        properties.insert("a".into(), "bc".into());
        assert_eq!(entity_size("pk", 2, &properties), 30);
    }
}
