//! The conversation manager behind the sessions API: list a customer's
//! conversations, read, delete and purge them, with ownership and expiry applied.
//! It reads the durable store when storage is configured, else the in-process one.

use std::cmp::Reverse;
use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::clock::Clock;
use crate::domain::{may_access, owner_of, CustomerId, Retention, SessionId, Turn};
use crate::storage::{GuardedStore, SessionSummary, StorageBudget, StorageError};

/// How long one purge may take: under the Functions Consumption plan's default
/// function timeout (5 minutes).
const PURGE_BUDGET: Duration = Duration::from_secs(240);

pub struct Sessions {
    store: GuardedStore,
    retention: Retention,
    clock: Clock,
}

/// Where a page of a listing ended: its last conversation. Listings run from the
/// most recently updated conversation down, ties by session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPosition {
    updated_at: DateTime<Utc>,
    session_id: SessionId,
}

impl ListPosition {
    fn of(summary: &SessionSummary) -> Self {
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

    fn sort_key(&self) -> (Reverse<DateTime<Utc>>, &SessionId) {
        listing_order(self.updated_at, &self.session_id)
    }
}

/// The listing order as a key: later updates first, then session ids ascending.
fn listing_order(
    updated_at: DateTime<Utc>,
    session_id: &SessionId,
) -> (Reverse<DateTime<Utc>>, &SessionId) {
    (Reverse(updated_at), session_id)
}

fn sort_key(summary: &SessionSummary) -> (Reverse<DateTime<Utc>>, &SessionId) {
    listing_order(summary.updated_at, &summary.session_id)
}

/// One page of a customer's conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub sessions: Vec<SessionSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ListPosition>,
}

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeOutcome {
    /// `SESSION_TTL_DAYS` is not set: conversations are kept forever.
    KeptForever,
    Purged(u64),
}

impl fmt::Display for PurgeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeptForever => f.write_str("SESSION_TTL_DAYS is not set; nothing purged"),
            Self::Purged(1) => f.write_str("purged 1 expired conversation"),
            Self::Purged(count) => write!(f, "purged {count} expired conversations"),
        }
    }
}

impl Sessions {
    pub fn new(store: GuardedStore, retention: Retention, clock: Clock) -> Self {
        Self {
            store,
            retention,
            clock,
        }
    }

    /// Up to `limit` of `owner`'s conversations after `after` (from the start when
    /// `None`), expired ones left out.
    pub async fn list(
        &self,
        owner: &CustomerId,
        limit: usize,
        after: Option<&ListPosition>,
    ) -> Result<Page, StorageError> {
        let mut sessions = self.store.sessions_of(self.store.budget(), owner).await?;
        let cutoff = self.retention.cutoff(self.clock.now());
        sessions.retain(|s| {
            cutoff.is_none_or(|cutoff| s.updated_at >= cutoff)
                && after.is_none_or(|after| sort_key(s) > after.sort_key())
        });
        sessions.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        let next = (sessions.len() > limit).then(|| ListPosition::of(&sessions[limit - 1]));
        sessions.truncate(limit);
        Ok(Page { sessions, next })
    }

    /// Every turn of `session`, or `None` when `requester` may not see it: unknown,
    /// expired, or owned by someone else (all alike, so none can be told apart).
    pub async fn read(
        &self,
        session: &SessionId,
        requester: Option<&CustomerId>,
    ) -> Result<Option<Vec<Turn>>, StorageError> {
        let turns = self.store.all(self.store.budget(), session).await?;
        let visible = self.visible(turns.last(), owner_of(&turns), requester);
        Ok(visible.then_some(turns))
    }

    /// Deletes `session` with its listing entry; `false` (nothing changed) when
    /// `requester` may not see it.
    pub async fn delete(
        &self,
        session: &SessionId,
        requester: Option<&CustomerId>,
    ) -> Result<bool, StorageError> {
        let budget = self.store.budget();
        // The last turn says whether the conversation has expired; the window, who
        // owns it.
        let last = self.store.recent(budget, session, 1).await?;
        if !self.visible(last.turns.last(), last.owner.as_ref(), requester) {
            return Ok(false);
        }
        self.store.delete(budget, session).await
    }

    /// Deletes every expired conversation.
    pub async fn purge(&self) -> Result<PurgeOutcome, StorageError> {
        let Some(cutoff) = self.retention.cutoff(self.clock.now()) else {
            return Ok(PurgeOutcome::KeptForever);
        };
        let purged = self
            .store
            .purge_before(StorageBudget::lasting(PURGE_BUDGET), cutoff)
            .await?;
        Ok(PurgeOutcome::Purged(purged))
    }

    /// Whether a conversation whose last turn is `last`, owned by `owner`, exists
    /// for `requester`: not empty, not expired, and not owned by someone else.
    fn visible(
        &self,
        last: Option<&Turn>,
        owner: Option<&CustomerId>,
        requester: Option<&CustomerId>,
    ) -> bool {
        last.is_some_and(|last| {
            !self.retention.is_expired(last.timestamp, self.clock.now())
                && may_access(owner, requester)
        })
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
    fn purge_outcomes_read_as_log_lines() {
        assert_eq!(
            PurgeOutcome::KeptForever.to_string(),
            "SESSION_TTL_DAYS is not set; nothing purged"
        );
        assert_eq!(
            PurgeOutcome::Purged(0).to_string(),
            "purged 0 expired conversations"
        );
        assert_eq!(
            PurgeOutcome::Purged(1).to_string(),
            "purged 1 expired conversation"
        );
    }
}
