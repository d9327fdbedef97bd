//! One conversation as one document, in seed 000's shape: `id`, `customer_id` (the
//! partition key), `session_id`, `created_at`, `updated_at` and `messages`, a user
//! message then an assistant message per turn (turn n = message pair n). Our extra
//! fields go only where seed 000 ignores them: `turn` and `metadata_json` on the
//! user message, `turn`, `turn_id` and `feedback` on the assistant message, and
//! `title` (a name its owner gave) on the document. Fields we do not know (seed
//! 000's or anyone's) are kept as found.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::{
    parse_timestamp, timestamp_text, CustomerId, Feedback, NewTurn, Rating, SessionId, Title, Turn,
};
use crate::storage::{Rated, StorageError, Version};

/// Cosmos DB's item limit is 2 MB; its own properties (`_rid`, `_etag`, …) take a
/// little of it, so ours stop this much short.
pub const MAX_DOCUMENT_BYTES: usize = 2 * 1024 * 1024 - 4 * 1024;

/// The partition of conversations without an owner, and of the directory entries
/// that say which partition an owned conversation lives in (see `mod.rs`). `#`
/// cannot appear in a customer id, so no customer's partition is ever this one.
pub const DIRECTORY_PARTITION: &str = "#conversations";

/// Properties the service adds to every item; never sent back.
const SYSTEM_PROPERTIES: [&str; 5] = ["_rid", "_self", "_etag", "_attachments", "_ts"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    #[serde(default)]
    pub timestamp: String,
    /// `turn`, `turn_id`, `metadata_json`, and whatever else was found.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A conversation document as stored, or about to be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub customer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Value>,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    /// The service's `_etag`, and every other field, as found.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

const TURN: &str = "turn";
const TURN_ID: &str = "turn_id";
const METADATA_JSON: &str = "metadata_json";
const ETAG: &str = "_etag";
const TITLE: &str = "title";
const FEEDBACK: &str = "feedback";

impl Conversation {
    /// A new conversation in `partition` whose first turn is `turn`.
    pub fn new(session: &SessionId, partition: &str) -> Self {
        Self {
            id: session.as_str().to_owned(),
            customer_id: partition.to_owned(),
            session_id: Some(Value::String(session.as_str().to_owned())),
            created_at: String::new(),
            updated_at: String::new(),
            messages: Vec::new(),
            extra: Map::new(),
        }
    }

    pub fn etag(&self) -> Option<&str> {
        self.extra.get(ETAG).and_then(Value::as_str)
    }

    /// Whether this is the conversation an append saw: its last turn `last`, unchanged
    /// since (`version`).
    pub fn is_as_seen(&self, last: u64, version: &Version) -> bool {
        self.turn_count() == last + 1 && self.etag() == Some(version.as_str())
    }

    /// How many turns it holds: complete message pairs, and a lone last question.
    pub fn turn_count(&self) -> u64 {
        self.messages.len().div_ceil(2) as u64
    }

    /// Whose conversation it is: the partition it lives in, unless that is the
    /// partition of conversations without an owner.
    pub fn owner(&self) -> Option<CustomerId> {
        (self.customer_id != DIRECTORY_PARTITION)
            .then(|| CustomerId::parse(&self.customer_id).ok())
            .flatten()
    }

    /// Adds `turn` as the next message pair and returns its number.
    pub fn push(&mut self, turn: &NewTurn, turn_id: Uuid) -> u64 {
        let number = self.turn_count();
        if self.messages.len() % 2 == 1 {
            // A question without an answer (seed 000 saves each message as it
            // comes): the pair is completed with an empty answer.
            self.messages.push(message("assistant", "", "", number));
        }
        let timestamp = timestamp_text(turn.timestamp);
        let mut question = message("user", &turn.user, &timestamp, number);
        question
            .extra
            .insert(METADATA_JSON.into(), turn.metadata_json.clone().into());
        let mut answer = message("assistant", &turn.assistant, &timestamp, number);
        answer
            .extra
            .insert(TURN_ID.into(), turn_id.to_string().into());
        self.messages.extend([question, answer]);
        if self.created_at.is_empty() {
            self.created_at = timestamp.clone();
        }
        self.updated_at = timestamp;
        number
    }

    /// The number of the turn whose answer carries `turn_id`, if it is stored.
    pub fn turn_with_id(&self, turn_id: Uuid) -> Option<u64> {
        let wanted = turn_id.to_string();
        self.messages
            .iter()
            .position(|m| m.extra.get(TURN_ID).and_then(Value::as_str) == Some(&wanted))
            .map(|position| (position / 2) as u64)
    }

    /// The name its owner gave it, if renamed.
    pub fn title(&self) -> Option<&str> {
        self.extra.get(TITLE).and_then(Value::as_str)
    }

    pub fn set_title(&mut self, title: &Title) {
        self.extra.insert(TITLE.into(), title.as_str().into());
    }

    /// Records (`Some`) or removes (`None`) the feedback on turn `turn`'s answer;
    /// what it replaced, or `None` when that turn has no answer in this document.
    pub fn set_feedback(&mut self, turn: u64, feedback: Option<&Feedback>) -> Option<Rated> {
        let question_at = usize::try_from(turn).ok()?.checked_mul(2)?;
        let asked_at = self.asked_at(question_at)?;
        let owner = self.owner();
        let answer = self.messages.get_mut(question_at + 1)?;
        let previous = answer
            .extra
            .get(FEEDBACK)
            .and_then(feedback_of)
            .map(|f| f.rating);
        match feedback {
            Some(feedback) => answer
                .extra
                .insert(FEEDBACK.into(), feedback_value(feedback)),
            None => answer.extra.remove(FEEDBACK),
        };
        Some(Rated {
            owner,
            asked_at,
            previous,
        })
    }

    /// When the turn whose question is `messages[question_at]` was asked: its
    /// question's time, else its answer's, else the document's last update.
    fn asked_at(&self, question_at: usize) -> Option<DateTime<Utc>> {
        let question = self.messages.get(question_at)?;
        let answer = self.messages.get(question_at + 1);
        Some(
            parse_timestamp(&question.timestamp)
                .or_else(|| answer.and_then(|a| parse_timestamp(&a.timestamp)))
                .unwrap_or_else(|| parse_timestamp(&self.updated_at).unwrap_or_default()),
        )
    }

    /// The turns from number `from` on.
    pub fn turns_from(&self, from: u64) -> Vec<Turn> {
        self.turns().skip(from as usize).collect()
    }

    /// Turn 0, if there is one.
    pub fn first_turn(&self) -> Option<Turn> {
        self.turns().next()
    }

    /// Every turn, in order, built as it is taken.
    fn turns(&self) -> impl Iterator<Item = Turn> + '_ {
        let owner = self.owner();
        self.messages
            .chunks(2)
            .enumerate()
            .map(move |(index, pair)| {
                let question = &pair[0];
                let answer = pair.get(1);
                Turn {
                    index: index as u64,
                    user: question.content.clone(),
                    assistant: answer.map(|a| a.content.clone()).unwrap_or_default(),
                    metadata_json: question
                        .extra
                        .get(METADATA_JSON)
                        .and_then(Value::as_str)
                        .unwrap_or("{}")
                        .to_owned(),
                    timestamp: self.asked_at(index * 2).unwrap_or_default(),
                    owner: owner.clone(),
                    feedback: answer
                        .and_then(|a| a.extra.get(FEEDBACK))
                        .and_then(feedback_of),
                }
            })
    }

    /// The document to send: ours and everything found, without the service's
    /// own properties; refused when it would not fit in one item.
    pub fn body(&self) -> Result<Value, StorageError> {
        let mut body = serde_json::to_value(self)
            .map_err(|e| StorageError::Rejected(format!("cannot write the document: {e}")))?;
        if let Some(fields) = body.as_object_mut() {
            for name in SYSTEM_PROPERTIES {
                fields.remove(name);
            }
        }
        let size = body.to_string().len();
        if size > MAX_DOCUMENT_BYTES {
            return Err(StorageError::Rejected(format!(
                "the conversation would grow to {size} bytes, over Cosmos DB's 2 MB item limit; start a new conversation"
            )));
        }
        Ok(body)
    }
}

/// Feedback as stored: `{rating, comment (when given), updated_at}`.
fn feedback_value(feedback: &Feedback) -> Value {
    let mut value = Map::new();
    value.insert("rating".into(), feedback.rating.as_str().into());
    if let Some(comment) = &feedback.comment {
        value.insert("comment".into(), comment.as_str().into());
    }
    value.insert(
        "updated_at".into(),
        timestamp_text(feedback.updated_at).into(),
    );
    Value::Object(value)
}

fn feedback_of(value: &Value) -> Option<Feedback> {
    Some(Feedback {
        rating: Rating::parse(value.get("rating")?.as_str()?)?,
        comment: value
            .get("comment")
            .and_then(Value::as_str)
            .map(str::to_owned),
        updated_at: parse_timestamp(value.get("updated_at")?.as_str()?)?,
    })
}

fn message(role: &str, content: &str, timestamp: &str, turn: u64) -> Message {
    let mut extra = Map::new();
    extra.insert(TURN.into(), turn.into());
    Message {
        role: role.into(),
        content: content.into(),
        timestamp: timestamp.into(),
        extra,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn turn(user: &str, assistant: &str) -> NewTurn {
        NewTurn {
            user: user.into(),
            assistant: assistant.into(),
            metadata_json: r#"{"k":1}"#.into(),
            timestamp: Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap(),
            owner: None,
        }
    }

    fn seed_document() -> Conversation {
        serde_json::from_value(json!({
            "id": "conv-1",
            "customer_id": "user_123",
            "session_id": "streamlit-456",
            "created_at": "2025-01-24T10:30:00Z",
            "updated_at": "2025-01-24T10:35:00.123456",
            "messages": [
                {"role": "user", "content": "Hello", "timestamp": "2025-01-24T10:30:00Z"},
                {"role": "assistant", "content": "Hi", "timestamp": "2025-01-24T10:30:15Z"},
                {"role": "user", "content": "Bye", "timestamp": "2025-01-24T10:35:00.123456"}
            ],
            "_etag": "\"e1\"",
            "_ts": 1737715000,
            "custom": {"kept": true}
        }))
        .unwrap()
    }

    #[test]
    fn a_seed_document_reads_as_turns_owned_by_its_customer() {
        let document = seed_document();
        assert_eq!(document.turn_count(), 2);
        assert_eq!(document.etag(), Some("\"e1\""));
        let turns = document.turns_from(0);
        assert_eq!(turns.len(), 2);
        assert_eq!(
            (turns[0].user.as_str(), turns[0].assistant.as_str()),
            ("Hello", "Hi")
        );
        assert_eq!(
            (turns[1].user.as_str(), turns[1].assistant.as_str()),
            ("Bye", "")
        );
        assert_eq!(turns[1].index, 1);
        assert_eq!(turns[0].metadata_json, "{}");
        assert_eq!(turns[0].owner, Some(CustomerId::parse("user_123").unwrap()));
        assert_eq!(
            turns[1].timestamp,
            Utc.with_ymd_and_hms(2025, 1, 24, 10, 35, 0).unwrap()
                + chrono::TimeDelta::microseconds(123_456)
        );
    }

    #[test]
    fn continuing_keeps_what_was_found_and_adds_a_pair() {
        let mut document = seed_document();
        let id = Uuid::new_v4();
        assert_eq!(document.push(&turn("q", "a"), id), 2);
        assert_eq!(document.turn_with_id(id), Some(2));
        let body = document.body().unwrap();
        assert_eq!(body["session_id"], "streamlit-456");
        assert_eq!(body["custom"], json!({"kept": true}));
        assert_eq!(body["created_at"], "2025-01-24T10:30:00Z");
        assert_eq!(body["updated_at"], "2025-01-24T10:30:00Z");
        assert!(body.get("_etag").is_none() && body.get("_ts").is_none());
        let messages = body["messages"].as_array().unwrap();
        // The lone question was answered with nothing; ours follow as one pair.
        assert_eq!(messages.len(), 6);
        assert_eq!(messages[3]["content"], "");
        assert_eq!(messages[4]["role"], "user");
        assert_eq!(messages[4]["turn"], 2);
        assert_eq!(messages[4]["metadata_json"], r#"{"k":1}"#);
        assert_eq!(messages[5]["role"], "assistant");
        assert_eq!(messages[5]["timestamp"], "2025-01-24T10:30:00Z");
    }

    #[test]
    fn ours_are_seed_shaped_and_unowned_ones_have_no_owner() {
        let session = SessionId::parse("s").unwrap();
        let mut document = Conversation::new(&session, DIRECTORY_PARTITION);
        document.push(&turn("q", "a"), Uuid::new_v4());
        let body = document.body().unwrap();
        assert_eq!(body["id"], "s");
        assert_eq!(body["session_id"], "s");
        assert_eq!(body["created_at"], "2025-01-24T10:30:00Z");
        assert_eq!(document.owner(), None);
        assert_eq!(document.turns_from(0)[0].owner, None);
    }

    #[test]
    fn a_document_over_the_item_limit_is_refused() {
        let session = SessionId::parse("s").unwrap();
        let mut document = Conversation::new(&session, "alice");
        document.push(&turn("q", &"x".repeat(MAX_DOCUMENT_BYTES)), Uuid::new_v4());
        match document.body() {
            Err(StorageError::Rejected(message)) => assert!(message.contains("2 MB"), "{message}"),
            other => panic!("expected Rejected, got {other:?}"),
        }
    }
}
