//! The conversation manager behind the sessions API: list a customer's
//! conversations, read, delete and purge them, with ownership and expiry applied.
//! It reads the durable store when storage is configured, else the in-process one.

use std::cmp::Reverse;
use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};

use futures::StreamExt;

use crate::analytics;
use crate::clock::Clock;
use crate::domain::{
    may_access, owner_of, title_of, CustomerId, Feedback, Match, Retention, SearchQuery, SessionId,
    Title, Turn,
};
use crate::storage::{DeletedAll, GuardedStore, SessionSummary, StorageBudget, StorageError};

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

/// How many conversations a search reads at the same time.
const SEARCH_PARALLELISM: usize = 8;

/// A conversation a search found, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub summary: SessionSummary,
    pub matches: Vec<Match>,
}

/// One page of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Where the next page starts; `None` once every conversation was read.
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

    /// The time on the application's clock: when feedback is given, for instance.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Up to `limit` of `owner`'s conversations after `after` (from the start when
    /// `None`), expired ones left out.
    pub async fn list(
        &self,
        owner: &CustomerId,
        limit: usize,
        after: Option<&ListPosition>,
    ) -> Result<Page, StorageError> {
        let mut sessions = self.listed_after(self.store.budget(), owner, after).await?;
        let next = (sessions.len() > limit).then(|| ListPosition::of(&sessions[limit - 1]));
        sessions.truncate(limit);
        Ok(Page { sessions, next })
    }

    /// `owner`'s live conversations in listing order, from after `after`.
    async fn listed_after(
        &self,
        budget: StorageBudget,
        owner: &CustomerId,
        after: Option<&ListPosition>,
    ) -> Result<Vec<SessionSummary>, StorageError> {
        let mut sessions = self.store.sessions_of(budget, owner).await?;
        let cutoff = self.retention.cutoff(self.clock.now());
        sessions.retain(|s| {
            cutoff.is_none_or(|cutoff| s.updated_at >= cutoff)
                && after.is_none_or(|after| sort_key(s) > after.sort_key())
        });
        sessions.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        Ok(sessions)
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

    /// What `session` (whose turns are `turns`) is called: the title in its owner's
    /// listing (the first question, unless renamed), else its first question.
    pub async fn title(&self, session: &SessionId, turns: &[Turn]) -> Result<String, StorageError> {
        let listed = match owner_of(turns) {
            Some(owner) => {
                self.store
                    .summary(self.store.budget(), owner, session)
                    .await?
            }
            None => None,
        };
        Ok(listed
            .map(|summary| summary.title)
            .filter(|title| !title.is_empty())
            .or_else(|| turns.first().map(|first| title_of(&first.user)))
            .unwrap_or_default())
    }

    /// Renames `session` for its owner and returns its listing entry; `None`
    /// (nothing changed) when `requester` is not its owner, or it expired. A
    /// conversation without an owner is listed for nobody and has no title to change.
    pub async fn rename(
        &self,
        session: &SessionId,
        requester: Option<&CustomerId>,
        title: &Title,
    ) -> Result<Option<SessionSummary>, StorageError> {
        let Some(owner) = requester else {
            return Ok(None);
        };
        let cutoff = self.retention.cutoff(self.clock.now());
        self.store
            .rename(self.store.budget(), owner, session, title, cutoff)
            .await
    }

    /// Deletes `owner`'s conversations, as many as one request's storage budget
    /// allows; see [`DeletedAll::complete`].
    pub async fn delete_all(&self, owner: &CustomerId) -> Result<DeletedAll, StorageError> {
        self.store.delete_all(self.store.budget(), owner).await
    }

    /// Records (`Some`) or removes (`None`) feedback on turn `turn` of `session`,
    /// and counts the change in the figures; `false` (nothing changed) when there
    /// is no such turn for `requester`.
    pub async fn set_feedback(
        &self,
        session: &SessionId,
        turn: u64,
        requester: Option<&CustomerId>,
        feedback: Option<&Feedback>,
    ) -> Result<bool, StorageError> {
        let budget = self.store.budget();
        // The last turn says whether the conversation has expired. Ownership is
        // checked again by the store, on the turn it changes.
        let last = self.store.recent(budget, session, 1).await?;
        if !self.visible(last.turns.last(), last.owner.as_ref(), requester) {
            return Ok(false);
        }
        let Some(rated) = self
            .store
            .set_feedback(budget, session, turn, requester, feedback)
            .await?
        else {
            return Ok(false);
        };
        let rating = feedback.map(|f| f.rating);
        analytics::count_feedback(&self.store, budget, session, turn, &rated, rating).await;
        Ok(true)
    }

    /// Up to `limit` of `owner`'s conversations after `after` that hold every word
    /// of `query`, in listing order, each with where. It reads the conversations
    /// listed for `owner` one after another, [`SEARCH_PARALLELISM`] at a time, and
    /// stops when the page is full or half of the request's storage budget is
    /// spent: then `next` says where the next page goes on.
    pub async fn search(
        &self,
        owner: &CustomerId,
        query: &SearchQuery,
        limit: usize,
        after: Option<&ListPosition>,
    ) -> Result<SearchPage, StorageError> {
        let budget = self.store.budget();
        let stop_at = budget.halfway();
        let candidates = self.listed_after(budget, owner, after).await?;
        let remaining = candidates.len();
        let mut reads = futures::stream::iter(candidates)
            .map(|summary| async move {
                let turns = self.store.all(budget, &summary.session_id).await?;
                Ok::<_, StorageError>((summary, turns))
            })
            .buffered(SEARCH_PARALLELISM);
        let mut hits = Vec::new();
        let mut scanned = 0;
        while let Some(read) = reads.next().await {
            let (summary, turns) = read?;
            scanned += 1;
            // An entry left behind in the listing can name a conversation that is no
            // longer the owner's: it is not shown.
            let found = (owner_of(&turns) == Some(owner))
                .then(|| query.matches(&turns))
                .flatten();
            let position = ListPosition::of(&summary);
            if let Some(matches) = found {
                hits.push(SearchHit { summary, matches });
            }
            let more = scanned < remaining;
            if more && (hits.len() == limit || tokio::time::Instant::now() >= stop_at) {
                return Ok(SearchPage {
                    hits,
                    next: Some(position),
                });
            }
        }
        Ok(SearchPage { hits, next: None })
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
