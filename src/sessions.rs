//! The conversation manager behind the sessions API: list a customer's
//! conversations, read, delete and purge them, with ownership and expiry applied.
//! It reads the durable store when storage is configured, else the in-process one.

mod sharing;

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::analytics;
use crate::clock::Clock;
use crate::domain::{
    may_access, owner_of, title_of, CustomerId, Feedback, Match, Retention, SearchQuery, SessionId,
    Title, Turn,
};
use crate::storage::{
    Deleted, DeletedAll, GuardedStore, ListingPage, SessionSummary, StorageBudget, StorageError,
    Window,
};

pub use crate::storage::ListPosition;

/// How long one purge may take: under the Functions Consumption plan's default
/// function timeout (5 minutes).
const PURGE_BUDGET: Duration = Duration::from_secs(240);
/// Reads and deletes before a delete whose conversation keeps changing gives up.
const DELETE_ATTEMPTS: usize = 3;

pub struct Sessions {
    store: GuardedStore,
    retention: Retention,
    clock: Clock,
}

/// How many conversations a search reads at the same time.
const SEARCH_PARALLELISM: usize = 8;
/// Listing entries a search asks for at a time.
const SEARCH_LISTING_PAGE: usize = 50;

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
    /// `None`), expired ones left out: one page read, whatever the listing's length.
    pub async fn list(
        &self,
        owner: &CustomerId,
        limit: usize,
        after: Option<&ListPosition>,
    ) -> Result<ListingPage, StorageError> {
        let cutoff = self.retention.cutoff(self.clock.now());
        self.store
            .sessions_page(self.store.budget(), owner, limit, after, cutoff)
            .await
    }

    /// Every turn of `session`, or `None` when `requester` may not see it: unknown,
    /// expired, or owned by someone else (all alike, so none can be told apart).
    /// Someone else's conversation costs one point read (its turn 0), an expired
    /// one two; only a visible one is read whole.
    pub async fn read(
        &self,
        session: &SessionId,
        requester: Option<&CustomerId>,
    ) -> Result<Option<Vec<Turn>>, StorageError> {
        let budget = self.store.budget();
        // Turn 0 says who owns it: someone else's conversation costs this one read.
        let Some(first) = self.store.first_turn(budget, session).await? else {
            return Ok(None);
        };
        if !may_access(first.owner.as_ref(), requester) {
            return Ok(None);
        }
        // The last turn, whether it expired: an expired one is not read whole.
        if self
            .last_if_visible(budget, session, requester)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let turns = self.store.all(budget, session).await?;
        // Judged again on what was read: the conversation may have been deleted and
        // started again by someone else in between.
        let owner = owner_of(&turns).or(first.owner.as_ref());
        let visible = self.visible(turns.last(), owner, requester);
        Ok(visible.then_some(turns))
    }

    /// Deletes `session` with its listing entry; `false` (nothing changed) when
    /// `requester` may not see it. The store deletes the conversation only as it was
    /// judged: one continued or started again meanwhile (by someone else, once it
    /// expired) is judged again.
    pub async fn delete(
        &self,
        session: &SessionId,
        requester: Option<&CustomerId>,
    ) -> Result<bool, StorageError> {
        let budget = self.store.budget();
        for _ in 0..DELETE_ATTEMPTS {
            let last = self.last_if_visible(budget, session, requester).await?;
            let Some(seen) = last.and_then(|last| last.seen()) else {
                return Ok(false);
            };
            // Shares first: should the delete fail, the conversation can be deleted again.
            self.store.revoke_shares(budget, session).await?;
            match self.store.delete(budget, session, seen).await? {
                Deleted::Deleted => return Ok(true),
                Deleted::Missing => return Ok(false),
                Deleted::Changed => continue,
            }
        }
        Err(StorageError::Unavailable(
            "the conversation kept changing while it was deleted".into(),
        ))
    }

    /// Deletes every expired conversation, then the shares of conversations that
    /// are gone.
    pub async fn purge(&self) -> Result<PurgeOutcome, StorageError> {
        let budget = StorageBudget::lasting(PURGE_BUDGET);
        let outcome = match self.retention.cutoff(self.clock.now()) {
            None => PurgeOutcome::KeptForever,
            Some(cutoff) => PurgeOutcome::Purged(self.store.purge_before(budget, cutoff).await?),
        };
        // Shares of gone conversations no longer read: a failure here leaves rows
        // for the next purge, and the purge itself stands.
        match self.sweep_shares(budget).await {
            Ok(swept) => tracing::info!(swept, "deleted the shares of gone conversations"),
            Err(error) => tracing::warn!(%error, "shares of gone conversations not deleted"),
        }
        Ok(outcome)
    }

    /// The window of `session`'s last turn (which says whether it expired, and who
    /// owns it) when the conversation exists for `requester`; `None` otherwise.
    async fn last_if_visible(
        &self,
        budget: StorageBudget,
        session: &SessionId,
        requester: Option<&CustomerId>,
    ) -> Result<Option<Window>, StorageError> {
        let last = self.store.recent(budget, session, 1).await?;
        Ok(self
            .visible(last.turns.last(), last.owner.as_ref(), requester)
            .then_some(last))
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
        // Ownership is checked again by the store, on the turn it changes.
        if self
            .last_if_visible(budget, session, requester)
            .await?
            .is_none()
        {
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
    /// of `query`, in listing order, each with where. It walks `owner`'s listing a
    /// page at a time and reads the conversations on it, [`SEARCH_PARALLELISM`] at
    /// a time, until the page of hits is full or half of the request's storage
    /// budget is spent (then, once one conversation was read, it stops at once):
    /// then `next` says where the next page goes on.
    pub async fn search(
        &self,
        owner: &CustomerId,
        query: &SearchQuery,
        limit: usize,
        after: Option<&ListPosition>,
    ) -> Result<SearchPage, StorageError> {
        let budget = self.store.budget();
        let stop_at = budget.halfway();
        let cutoff = self.retention.cutoff(self.clock.now());
        let mut position = after.cloned();
        let mut hits = Vec::new();
        loop {
            let ListingPage { sessions, next } = self
                .store
                .sessions_page(
                    budget,
                    owner,
                    SEARCH_LISTING_PAGE,
                    position.as_ref(),
                    cutoff,
                )
                .await?;
            let listed = sessions.len();
            let mut reads = futures::stream::iter(sessions)
                .map(|summary| async move {
                    let turns = self.store.all(budget, &summary.session_id).await?;
                    Ok::<_, StorageError>((summary, turns))
                })
                .buffered(SEARCH_PARALLELISM);
            let mut scanned = 0;
            loop {
                // Once this call has got somewhere, reads still under way at `stop_at`
                // are abandoned: the next page starts again after the last one done.
                let read = match &position {
                    Some(done) if position.as_ref() != after => {
                        match tokio::time::timeout_at(stop_at, reads.next()).await {
                            Ok(read) => read,
                            Err(_) => {
                                return Ok(SearchPage {
                                    hits,
                                    next: Some(done.clone()),
                                })
                            }
                        }
                    }
                    _ => reads.next().await,
                };
                let Some(read) = read else {
                    break;
                };
                let (summary, turns) = read?;
                scanned += 1;
                position = Some(ListPosition::of(&summary));
                // An entry left behind in the listing can name a conversation that is
                // no longer the owner's: it is not shown.
                let found = (owner_of(&turns) == Some(owner))
                    .then(|| query.matches(&turns))
                    .flatten();
                if let Some(matches) = found {
                    hits.push(SearchHit { summary, matches });
                }
                let more = scanned < listed || next.is_some();
                if !more {
                    break;
                }
                if hits.len() == limit || tokio::time::Instant::now() >= stop_at {
                    return Ok(SearchPage {
                        hits,
                        next: position,
                    });
                }
            }
            if next.is_none() {
                return Ok(SearchPage { hits, next: None });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use chrono::{DateTime, TimeDelta, Utc};

    use chrono::NaiveDate;

    use crate::domain::{DayRange, NewTurn, ShareId};
    use crate::storage::{
        Appended, ConversationStore, DayCounts, Expectation, InProcessStore, Rated, Scope, Seen,
        Share, ShareOrigin, Window,
    };

    /// The in-process store, counting the reads the sessions API makes of it; given
    /// a turn in `restart_before_delete`, it starts the conversation again with that
    /// turn just before the next delete reaches the store (as another customer
    /// would, the instant it expired).
    struct Counted {
        store: InProcessStore,
        first_turns: AtomicUsize,
        recents: AtomicUsize,
        alls: AtomicUsize,
        restart_before_delete: Mutex<Option<NewTurn>>,
    }

    #[async_trait]
    impl ConversationStore for Counted {
        async fn append(
            &self,
            s: &SessionId,
            turn: NewTurn,
            expected: Expectation,
        ) -> Result<Appended, StorageError> {
            self.store.append(s, turn, expected).await
        }
        async fn recent(&self, s: &SessionId, limit: usize) -> Result<Window, StorageError> {
            self.recents.fetch_add(1, Ordering::SeqCst);
            self.store.recent(s, limit).await
        }
        async fn all(&self, s: &SessionId) -> Result<Vec<Turn>, StorageError> {
            self.alls.fetch_add(1, Ordering::SeqCst);
            self.store.all(s).await
        }
        async fn first_turn(&self, s: &SessionId) -> Result<Option<Turn>, StorageError> {
            self.first_turns.fetch_add(1, Ordering::SeqCst);
            self.store.first_turn(s).await
        }
        async fn delete(&self, s: &SessionId, expected: Seen) -> Result<Deleted, StorageError> {
            let restart = self.restart_before_delete.lock().unwrap().take();
            if let Some(turn) = restart {
                let expired = self.store.recent(s, 1).await?.restart();
                let appended = self.store.append(s, turn, expired).await?;
                assert!(matches!(appended, Appended::Stored { number: 0, .. }));
            }
            self.store.delete(s, expected).await
        }
        async fn update_listing(
            &self,
            s: &SessionId,
            number: u64,
            turn: &NewTurn,
        ) -> Result<(), StorageError> {
            self.store.update_listing(s, number, turn).await
        }
        async fn sessions_page(
            &self,
            owner: &CustomerId,
            limit: usize,
            after: Option<&ListPosition>,
            cutoff: Option<DateTime<Utc>>,
        ) -> Result<ListingPage, StorageError> {
            self.store.sessions_page(owner, limit, after, cutoff).await
        }
        async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError> {
            self.store.purge_before(cutoff).await
        }
        async fn summary(
            &self,
            owner: &CustomerId,
            s: &SessionId,
        ) -> Result<Option<SessionSummary>, StorageError> {
            self.store.summary(owner, s).await
        }
        async fn rename(
            &self,
            owner: &CustomerId,
            s: &SessionId,
            title: &Title,
            cutoff: Option<DateTime<Utc>>,
        ) -> Result<Option<SessionSummary>, StorageError> {
            self.store.rename(owner, s, title, cutoff).await
        }
        async fn delete_all(
            &self,
            owner: &CustomerId,
            stop_at: tokio::time::Instant,
        ) -> Result<DeletedAll, StorageError> {
            self.store.delete_all(owner, stop_at).await
        }
        async fn set_feedback(
            &self,
            s: &SessionId,
            turn: u64,
            requester: Option<&CustomerId>,
            feedback: Option<&Feedback>,
        ) -> Result<Option<Rated>, StorageError> {
            self.store.set_feedback(s, turn, requester, feedback).await
        }
        async fn create_share(&self, share: &Share) -> Result<(), StorageError> {
            self.store.create_share(share).await
        }
        async fn shared(&self, id: &ShareId) -> Result<Option<Share>, StorageError> {
            self.store.shared(id).await
        }
        async fn revoke_shares(&self, s: &SessionId) -> Result<u64, StorageError> {
            self.store.revoke_shares(s).await
        }
        async fn share_origins(&self) -> Result<Vec<ShareOrigin>, StorageError> {
            self.store.share_origins().await
        }
        async fn revoke_share(&self, s: &SessionId, id: &ShareId) -> Result<bool, StorageError> {
            self.store.revoke_share(s, id).await
        }
        async fn add_counts(
            &self,
            scope: &Scope,
            day: NaiveDate,
            change: DayCounts,
        ) -> Result<(), StorageError> {
            self.store.add_counts(scope, day, change).await
        }
        async fn day_counts(
            &self,
            scope: &Scope,
            days: &DayRange,
        ) -> Result<Vec<(NaiveDate, DayCounts)>, StorageError> {
            self.store.day_counts(scope, days).await
        }
        async fn first_seen(&self, customer: &CustomerId) -> Result<bool, StorageError> {
            self.store.first_seen(customer).await
        }
    }

    impl Counted {
        fn new() -> Self {
            Self {
                store: InProcessStore::new(1 << 20),
                first_turns: AtomicUsize::new(0),
                recents: AtomicUsize::new(0),
                alls: AtomicUsize::new(0),
                restart_before_delete: Mutex::new(None),
            }
        }

        /// Stores `turn` after the last turn of `session`.
        async fn store_turn(&self, session: &SessionId, turn: NewTurn) {
            let expected = self.store.recent(session, 1).await.unwrap().continuation();
            let appended = self.store.append(session, turn, expected).await;
            assert!(matches!(appended, Ok(Appended::Stored { .. })));
        }

        /// How many times turn 0, the last turns and all turns were read since asked last.
        fn reads(&self) -> [usize; 3] {
            [&self.first_turns, &self.recents, &self.alls].map(|n| n.swap(0, Ordering::SeqCst))
        }
    }

    fn turn(owner: &str, age: TimeDelta) -> NewTurn {
        NewTurn {
            user: "q".into(),
            assistant: "a".into(),
            metadata_json: "{}".into(),
            timestamp: Clock::system().now() - age,
            owner: Some(customer(owner)),
        }
    }

    fn customer(id: &str) -> CustomerId {
        CustomerId::parse(id).unwrap()
    }

    /// Sessions kept for an hour, on a [`Counted`] store of their own.
    fn counted_sessions() -> (Arc<Counted>, Sessions) {
        let counted = Arc::new(Counted::new());
        let sessions = Sessions::new(
            GuardedStore::new(counted.clone(), Duration::from_secs(5)),
            Retention::after(Duration::from_secs(3_600)),
            Clock::system(),
        );
        (counted, sessions)
    }

    /// Reads of someone else's conversation cost one point read, of an expired one
    /// two; only a visible one is read whole. A delete reads the last turn's window,
    /// which names the owner.
    #[tokio::test]
    async fn conversations_are_read_whole_only_when_visible() {
        let (counted, sessions) = counted_sessions();
        let (alice, bob) = (customer("alice"), customer("bob"));
        let (fresh, stale) = (
            SessionId::parse("fresh").unwrap(),
            SessionId::parse("stale").unwrap(),
        );
        for (session, age) in [
            (&fresh, TimeDelta::zero()),
            (&fresh, TimeDelta::zero()),
            (&fresh, TimeDelta::zero()),
            (&stale, TimeDelta::hours(2)),
        ] {
            counted.store_turn(session, turn("alice", age)).await;
        }
        counted.reads();

        assert_eq!(sessions.read(&fresh, Some(&bob)).await, Ok(None));
        assert_eq!(counted.reads(), [1, 0, 0], "someone else's");
        assert_eq!(sessions.delete(&fresh, None).await, Ok(false));
        assert_eq!(counted.reads(), [0, 1, 0], "no requester");
        assert_eq!(sessions.read(&stale, Some(&alice)).await, Ok(None));
        assert_eq!(counted.reads(), [1, 1, 0], "expired");
        let unknown = SessionId::parse("unknown").unwrap();
        assert_eq!(sessions.read(&unknown, Some(&alice)).await, Ok(None));
        assert_eq!(counted.reads(), [1, 0, 0], "unknown");
        let turns = sessions.read(&fresh, Some(&alice)).await.unwrap().unwrap();
        assert_eq!(turns.len(), 3);
        assert_eq!(counted.reads(), [1, 1, 1], "visible");
    }

    /// Another customer starts the conversation again between the owner's check and
    /// the delete: told what the check read, the store deletes nothing of theirs, and
    /// judged again, the conversation is not the owner's any more.
    #[tokio::test]
    async fn a_delete_leaves_a_racing_restart_by_someone_else_alone() {
        let (counted, sessions) = counted_sessions();
        let (alice, bob) = (customer("alice"), customer("bob"));
        let session = SessionId::parse("contested").unwrap();
        for _ in 0..2 {
            counted
                .store_turn(&session, turn("alice", TimeDelta::zero()))
                .await;
        }
        *counted.restart_before_delete.lock().unwrap() = Some(turn("bob", TimeDelta::zero()));

        assert_eq!(sessions.delete(&session, Some(&alice)).await, Ok(false));
        let kept = counted.all(&session).await.unwrap();
        assert_eq!(kept.len(), 1, "bob's turn 0 is kept");
        assert_eq!(kept[0].owner.as_ref(), Some(&bob));
        assert_eq!(sessions.delete(&session, Some(&bob)).await, Ok(true));
        assert!(counted.all(&session).await.unwrap().is_empty());
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
