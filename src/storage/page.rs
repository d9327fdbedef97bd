//! Pages of a customer's listing, the same for every backend: conversations run
//! from the most recently updated down, ties by session id, and a page ends at a
//! [`ListPosition`] the next page starts after.

use std::cmp::Reverse;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};

use super::SessionSummary;
use crate::domain::SessionId;

/// Where a page of a listing ended: its last conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPosition {
    pub updated_at: DateTime<Utc>,
    pub session_id: SessionId,
}

impl ListPosition {
    pub fn of(summary: &SessionSummary) -> Self {
        Self {
            updated_at: summary.updated_at,
            session_id: summary.session_id.clone(),
        }
    }

    /// The opaque continuation token: base64url of `[updated_at, session_id]`, the
    /// time to the nanosecond so that the next page starts exactly after this one.
    pub fn token(&self) -> String {
        let position = serde_json::json!([
            self.updated_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            self.session_id.as_str(),
        ]);
        URL_SAFE_NO_PAD.encode(position.to_string())
    }

    /// The position a token names; `None` for anything [`ListPosition::token`] did not make.
    pub fn from_token(token: &str) -> Option<Self> {
        let json = URL_SAFE_NO_PAD.decode(token).ok()?;
        let (updated_at, session_id): (String, String) = serde_json::from_slice(&json).ok()?;
        Some(Self {
            updated_at: DateTime::parse_from_rfc3339(&updated_at)
                .ok()?
                .with_timezone(&Utc),
            session_id: SessionId::parse(&session_id).ok()?,
        })
    }

    /// The listing order as a key: later updates first, then session ids ascending.
    pub fn order(&self) -> (Reverse<DateTime<Utc>>, &SessionId) {
        (Reverse(self.updated_at), &self.session_id)
    }
}

/// One page of a customer's conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingPage {
    pub sessions: Vec<SessionSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ListPosition>,
}

impl ListingPage {
    /// A page of up to `limit` out of `candidates`, which come in listing order and
    /// hold one more than `limit` when a next page exists.
    pub fn from_candidates(mut candidates: Vec<SessionSummary>, limit: usize) -> Self {
        let next = (limit > 0 && candidates.len() > limit)
            .then(|| ListPosition::of(&candidates[limit - 1]));
        candidates.truncate(limit);
        Self {
            sessions: candidates,
            next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn position(nanos: u32, session: &str) -> ListPosition {
        ListPosition {
            updated_at: Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap()
                + chrono::TimeDelta::nanoseconds(i64::from(nanos)),
            session_id: SessionId::parse(session).unwrap(),
        }
    }

    #[test]
    fn tokens_round_trip_to_the_nanosecond() {
        for original in [
            position(0, "s"),
            position(123_456_789, "o'brien \"Zoë\" 会话"),
        ] {
            let token = original.token();
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(ListPosition::from_token(&token), Some(original));
        }
    }

    #[test]
    fn foreign_tokens_are_refused() {
        let bad_id = URL_SAFE_NO_PAD.encode(r#"["2025-01-24T10:30:00Z","a/b"]"#);
        for token in ["", "not base64!", "bm9wZQ", &bad_id] {
            assert_eq!(ListPosition::from_token(token), None, "{token:?}");
        }
    }

    #[test]
    fn later_updates_come_first_then_session_ids() {
        assert!(position(5, "z").order() < position(4, "a").order());
        assert!(position(4, "a").order() < position(4, "b").order());
    }
}
