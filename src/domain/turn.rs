//! One exchange of a conversation.

use chrono::{DateTime, Utc};

use super::{CustomerId, Feedback};

/// A turn about to be stored: its number is assigned by the store on append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTurn {
    pub user: String,
    pub assistant: String,
    /// The request's `metadata` as compact JSON, `{}` when none was sent.
    pub metadata_json: String,
    pub timestamp: DateTime<Utc>,
    /// Who owns the conversation; `None` for seed-written and anonymous turns.
    pub owner: Option<CustomerId>,
}

/// A stored turn; `index` is its 0-based position in the session.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub index: u64,
    pub user: String,
    pub assistant: String,
    pub metadata_json: String,
    pub timestamp: DateTime<Utc>,
    pub owner: Option<CustomerId>,
    /// What the asker said about the answer, if anything.
    pub feedback: Option<Feedback>,
}

impl NewTurn {
    pub fn at(self, index: u64) -> Turn {
        Turn {
            index,
            user: self.user,
            assistant: self.assistant,
            metadata_json: self.metadata_json,
            timestamp: self.timestamp,
            owner: self.owner,
            feedback: None,
        }
    }
}

#[cfg(test)]
impl Turn {
    /// Turn 0 of an anonymous conversation: `user` asked, `assistant` answered.
    pub fn exchange(user: &str, assistant: &str) -> Self {
        Turn {
            index: 0,
            user: user.into(),
            assistant: assistant.into(),
            metadata_json: "{}".into(),
            timestamp: DateTime::UNIX_EPOCH,
            owner: None,
            feedback: None,
        }
    }
}
