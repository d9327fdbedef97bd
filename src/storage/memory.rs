//! In-process conversations: lost at restart, bounded in total size.

mod shelf;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;

use chrono::{DateTime, NaiveDate, Utc};

use super::{
    Appended, ConversationStore, DayCounts, Deleted, DeletedAll, Expectation, ListPosition,
    ListingPage, Rated, Scope, Seen, SessionSummary, Share, ShareOrigin, StorageError, Version,
    Window,
};
use crate::domain::{
    may_access, title_of, CustomerId, DayRange, Feedback, NewTurn, SessionId, ShareId, Title, Turn,
};
use shelf::Shelf;

/// Keeps the turns of every session in memory, within `max_bytes`: past it, the
/// least recently used sessions are dropped whole, so a flood of session ids cannot
/// exhaust the process; a session that alone outgrows the cap drops its oldest
/// turns (the others keep their numbers, and its window says how many are gone).
///
/// One lock guards everything, so nothing under it scans all sessions: listings
/// and the purge read [`Indexes`] kept up to date by every append and removal, a
/// page in O(page · log n), a purge in short rounds of expired sessions.
pub struct InProcessStore {
    max_bytes: usize,
    state: Mutex<State>,
    /// Shares, within their own `max_bytes`.
    shares: Mutex<Shelf>,
    figures: Mutex<Figures>,
}

/// The daily figures, kept apart from the turns: evicting a conversation does not
/// un-count it.
#[derive(Default)]
struct Figures {
    days: HashMap<Scope, BTreeMap<NaiveDate, DayCounts>>,
    rows: usize,
    customers: HashSet<CustomerId>,
}

/// Day rows (and customers) kept at most, so that a flood of customer ids cannot
/// exhaust the process; past it, new ones are refused (and not counted).
const MAX_FIGURE_ROWS: usize = 100_000;

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Session>,
    /// Last-use tick → session, oldest first: the eviction order.
    by_last_use: BTreeMap<u64, SessionId>,
    clock: u64,
    bytes: usize,
    /// The stamp of the turn stored last: every stored turn gets a new one, so a
    /// turn number reached again after a restart never looks unchanged.
    stamp: u64,
    indexes: Indexes,
}

/// An owner's conversations in listing order: latest last turn first, ties by id.
type Listing = BTreeSet<(Reverse<DateTime<Utc>>, SessionId)>;

/// Sessions in the orders listings and the purge read them.
#[derive(Default)]
struct Indexes {
    listings: HashMap<CustomerId, Listing>,
    /// Every session by the time of its last turn, oldest first.
    by_last_turn: BTreeSet<(DateTime<Utc>, SessionId)>,
}

/// Where a session stands in [`Indexes`]: what it was added with, so that it is
/// removed from exactly there.
struct IndexKey {
    owner: Option<CustomerId>,
    last_turn: DateTime<Utc>,
}

impl Indexes {
    fn add(&mut self, id: &SessionId, session: &mut Session) {
        let Some(last) = session.turns.last() else {
            return;
        };
        let key = IndexKey {
            owner: session.owner.clone(),
            last_turn: last.timestamp,
        };
        self.by_last_turn.insert((key.last_turn, id.clone()));
        if let Some(owner) = &key.owner {
            self.listings
                .entry(owner.clone())
                .or_default()
                .insert((Reverse(key.last_turn), id.clone()));
        }
        session.indexed = Some(key);
    }

    fn remove(&mut self, id: &SessionId, session: &mut Session) {
        let Some(key) = session.indexed.take() else {
            return;
        };
        self.by_last_turn.remove(&(key.last_turn, id.clone()));
        if let Some(owner) = &key.owner {
            if let Some(listing) = self.listings.get_mut(owner) {
                listing.remove(&(Reverse(key.last_turn), id.clone()));
                if listing.is_empty() {
                    self.listings.remove(owner);
                }
            }
        }
    }
}

struct Session {
    /// The newest turns, never none: the turns before the first were dropped to
    /// stay within the cap.
    turns: Vec<Turn>,
    /// Turn 0's customer: the owner for the conversation's life.
    owner: Option<CustomerId>,
    /// The last turn's stamp (its [`Version`]).
    last_stamp: u64,
    last_use: u64,
    bytes: usize,
    indexed: Option<IndexKey>,
    /// The title its owner gave it, if renamed.
    title: Option<String>,
}

impl Session {
    /// The conversation as `owner`'s listing shows it; `None` if it is not theirs.
    fn summary(&self, id: &SessionId, owner: &CustomerId) -> Option<SessionSummary> {
        if self.owner.as_ref() != Some(owner) {
            return None;
        }
        let (first, last) = (self.turns.first()?, self.turns.last()?);
        Some(SessionSummary {
            session_id: id.clone(),
            owner: owner.clone(),
            title: self.title.clone().unwrap_or_else(|| title_of(&first.user)),
            turns: self.total(),
            created_at: first.timestamp,
            updated_at: last.timestamp,
        })
    }
}

impl Session {
    /// How many turns the session has had: the last turn's number + 1.
    fn total(&self) -> u64 {
        self.turns.last().map_or(0, |t| t.index + 1)
    }

    /// How many of its oldest turns were dropped: the first kept turn's number.
    fn dropped(&self) -> u64 {
        self.turns.first().map_or(0, |t| t.index)
    }

    /// Whether `expected` holds for this session (`None`: no session).
    fn meets(session: Option<&Self>, expected: &Expectation) -> bool {
        match (expected, session) {
            (Expectation::New, None) => true,
            (
                Expectation::After { last, version } | Expectation::Restart { last, version },
                Some(session),
            ) => session.ends_at(*last, version),
            _ => false,
        }
    }

    /// Whether turn `last` is this session's last turn, unchanged since `version`.
    fn ends_at(&self, last: u64, version: &Version) -> bool {
        self.total() == last + 1 && *version == stamp_version(self.last_stamp)
    }
}

fn stamp_version(stamp: u64) -> Version {
    Version::new(stamp.to_string())
}

/// Sessions a purge or a delete-all removes per hold of the lock.
const REMOVAL_ROUND: usize = 256;

/// Per-session bookkeeping counted against the cap besides its id's two copies.
const SESSION_OVERHEAD_BYTES: usize = 256;
/// Per-turn memory counted against the cap besides its text: the `Turn` in its
/// vector, allocator headers and fragmentation. Measured (`scripts/bench`): 100,000
/// turns grew the resident set by their text plus about 500 bytes each.
const TURN_OVERHEAD_BYTES: usize = 512;

fn session_bytes(session: &SessionId) -> usize {
    SESSION_OVERHEAD_BYTES + 2 * session.as_str().len()
}

fn turn_bytes(turn: &Turn) -> usize {
    TURN_OVERHEAD_BYTES
        + turn.user.len()
        + turn.assistant.len()
        + turn.metadata_json.len()
        + turn.owner.as_ref().map_or(0, |owner| owner.as_str().len())
        + turn
            .feedback
            .as_ref()
            .and_then(|feedback| feedback.comment.as_ref())
            .map_or(0, String::len)
}

impl InProcessStore {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::new(State::default()),
            shares: Mutex::new(Shelf::default()),
            figures: Mutex::new(Figures::default()),
        }
    }

    /// How many sessions are held (for tests and the memory figures).
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    fn shelf(&self) -> std::sync::MutexGuard<'_, Shelf> {
        // Like the conversations: nothing a panic could leave half done matters more.
        self.shares
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way
        // that matters more than losing the service; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn figures(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn touch(&mut self, session: &SessionId) -> Option<&mut Session> {
        self.clock += 1;
        let tick = self.clock;
        let entry = self.sessions.get_mut(session)?;
        self.by_last_use.remove(&entry.last_use);
        entry.last_use = tick;
        self.by_last_use.insert(tick, session.clone());
        Some(entry)
    }

    fn remove(&mut self, session: &SessionId) {
        if let Some(mut removed) = self.sessions.remove(session) {
            self.indexes.remove(session, &mut removed);
            self.by_last_use.remove(&removed.last_use);
            self.bytes -= removed.bytes;
        }
    }

    /// Drops the least recently used sessions until within `max_bytes`; if `keep`
    /// (the session being written) alone is still over, its oldest turns, never its
    /// newest.
    fn evict_until_within(&mut self, max_bytes: usize, keep: &SessionId) {
        while self.bytes > max_bytes {
            let Some((&tick, oldest)) = self.by_last_use.iter().next() else {
                return;
            };
            if oldest == keep {
                break; // The session just written is the most recent: the only one left.
            }
            let oldest = oldest.clone();
            self.by_last_use.remove(&tick);
            if let Some(mut evicted) = self.sessions.remove(&oldest) {
                self.indexes.remove(&oldest, &mut evicted);
                self.bytes -= evicted.bytes;
            }
        }
        let Some(session) = self.sessions.get_mut(keep) else {
            return;
        };
        let mut dropped = 0;
        let mut freed = 0;
        while self.bytes - freed > max_bytes && dropped + 1 < session.turns.len() {
            freed += turn_bytes(&session.turns[dropped]);
            dropped += 1;
        }
        session.turns.drain(..dropped);
        session.bytes -= freed;
        self.bytes -= freed;
    }
}

#[async_trait]
impl ConversationStore for InProcessStore {
    async fn append(
        &self,
        session: &SessionId,
        turn: NewTurn,
        expected: Expectation,
    ) -> Result<Appended, StorageError> {
        let mut state = self.lock();
        if !Session::meets(state.sessions.get(session), &expected) {
            return Ok(Appended::Changed);
        }
        if matches!(expected, Expectation::Restart { .. }) {
            state.remove(session);
        }
        state.stamp += 1;
        let stamp = state.stamp;
        if state.touch(session).is_none() {
            let tick = state.clock;
            let bytes = session_bytes(session);
            state.sessions.insert(
                session.clone(),
                Session {
                    turns: Vec::new(),
                    owner: turn.owner.clone(),
                    last_stamp: stamp,
                    last_use: tick,
                    bytes,
                    indexed: None,
                    title: None,
                },
            );
            state.by_last_use.insert(tick, session.clone());
            state.bytes += bytes;
        }
        let State {
            sessions, indexes, ..
        } = &mut *state;
        let entry = sessions.get_mut(session).expect("inserted above");
        let number = entry.total();
        let turn = turn.at(number);
        let added = turn_bytes(&turn);
        indexes.remove(session, entry);
        entry.turns.push(turn);
        entry.last_stamp = stamp;
        indexes.add(session, entry);
        entry.bytes += added;
        state.bytes += added;
        state.evict_until_within(self.max_bytes, session);
        Ok(Appended::Stored {
            number,
            version: stamp_version(stamp),
        })
    }

    async fn recent(&self, session: &SessionId, limit: usize) -> Result<Window, StorageError> {
        let mut state = self.lock();
        Ok(match state.touch(session) {
            None => Window::default(),
            Some(entry) => {
                let start = entry.turns.len().saturating_sub(limit);
                Window {
                    turns: entry.turns[start..].to_vec(),
                    total: entry.total(),
                    dropped: entry.dropped(),
                    owner: entry.owner.clone(),
                    last: Some(stamp_version(entry.last_stamp)),
                }
            }
        })
    }

    async fn all(&self, session: &SessionId) -> Result<Vec<Turn>, StorageError> {
        let state = self.lock();
        Ok(state
            .sessions
            .get(session)
            .map(|s| s.turns.clone())
            .unwrap_or_default())
    }

    async fn first_turn(&self, session: &SessionId) -> Result<Option<Turn>, StorageError> {
        let state = self.lock();
        Ok(state
            .sessions
            .get(session)
            .and_then(|s| s.turns.first().cloned()))
    }

    /// Checked and removed under the lock.
    async fn delete(&self, session: &SessionId, expected: Seen) -> Result<Deleted, StorageError> {
        let mut state = self.lock();
        let Some(entry) = state.sessions.get(session) else {
            return Ok(Deleted::Missing);
        };
        if !entry.ends_at(expected.last, &expected.version) {
            return Ok(Deleted::Changed);
        }
        state.remove(session);
        Ok(Deleted::Deleted)
    }

    /// Listings are read from the turns themselves: nothing to record.
    async fn update_listing(&self, _: &SessionId, _: u64, _: &NewTurn) -> Result<(), StorageError> {
        Ok(())
    }

    async fn sessions_page(
        &self,
        owner: &CustomerId,
        limit: usize,
        after: Option<&ListPosition>,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, StorageError> {
        let state = self.lock();
        let Some(listing) = state.indexes.listings.get(owner) else {
            return Ok(ListingPage::from_candidates(Vec::new(), limit));
        };
        let start = after.map_or(Bound::Unbounded, |after| {
            Bound::Excluded((Reverse(after.updated_at), after.session_id.clone()))
        });
        let candidates = listing
            .range((start, Bound::Unbounded))
            .take_while(|(Reverse(updated_at), _)| cutoff.is_none_or(|c| *updated_at >= c))
            .take(limit + 1)
            .filter_map(|(_, id)| state.sessions.get(id)?.summary(id, owner))
            .collect();
        Ok(ListingPage::from_candidates(candidates, limit))
    }

    /// In rounds of [`REMOVAL_ROUND`] expired sessions, so appends wait at most one round.
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError> {
        let mut purged = 0;
        loop {
            let mut state = self.lock();
            let expired: Vec<SessionId> = state
                .indexes
                .by_last_turn
                .iter()
                .take_while(|(last_turn, _)| *last_turn < cutoff)
                .take(REMOVAL_ROUND)
                .map(|(_, id)| id.clone())
                .collect();
            if expired.is_empty() {
                return Ok(purged);
            }
            for id in &expired {
                state.remove(id);
            }
            purged += expired.len() as u64;
        }
    }

    async fn summary(
        &self,
        owner: &CustomerId,
        session: &SessionId,
    ) -> Result<Option<SessionSummary>, StorageError> {
        let state = self.lock();
        Ok(state
            .sessions
            .get(session)
            .and_then(|held| held.summary(session, owner)))
    }

    async fn rename(
        &self,
        owner: &CustomerId,
        session: &SessionId,
        title: &Title,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Option<SessionSummary>, StorageError> {
        let mut state = self.lock();
        let Some(held) = state.sessions.get_mut(session) else {
            return Ok(None);
        };
        let live = held
            .turns
            .last()
            .is_some_and(|last| cutoff.is_none_or(|cutoff| last.timestamp >= cutoff));
        if !live || held.owner.as_ref() != Some(owner) {
            return Ok(None);
        }
        let added = title.as_str().len();
        let removed = held
            .title
            .replace(title.as_str().to_owned())
            .map_or(0, |t| t.len());
        held.bytes = held.bytes + added - removed;
        state.bytes = state.bytes + added - removed;
        Ok(state.sessions[session].summary(session, owner))
    }

    /// From the owner's index, in rounds of [`REMOVAL_ROUND`] sessions like the purge,
    /// so appends wait at most one round; it never stops early: always complete.
    async fn delete_all(
        &self,
        owner: &CustomerId,
        _stop_at: tokio::time::Instant,
    ) -> Result<DeletedAll, StorageError> {
        let mut deleted = 0;
        loop {
            let mut state = self.lock();
            let owned: Vec<SessionId> = state
                .indexes
                .listings
                .get(owner)
                .into_iter()
                .flatten()
                .take(REMOVAL_ROUND)
                .map(|(_, id)| id.clone())
                .collect();
            if owned.is_empty() {
                return Ok(DeletedAll {
                    deleted,
                    complete: true,
                });
            }
            for id in &owned {
                state.remove(id);
            }
            deleted += owned.len() as u64;
        }
    }

    async fn set_feedback(
        &self,
        session: &SessionId,
        turn: u64,
        requester: Option<&CustomerId>,
        feedback: Option<&Feedback>,
    ) -> Result<Option<Rated>, StorageError> {
        let mut state = self.lock();
        let Some(held) = state.sessions.get_mut(session) else {
            return Ok(None);
        };
        if !may_access(held.owner.as_ref(), requester) {
            return Ok(None);
        }
        // Turns dropped to stay within the cap cannot be rated any more.
        let Some(stored) = held.turns.iter_mut().find(|t| t.index == turn) else {
            return Ok(None);
        };
        let rated = Rated {
            owner: held.owner.clone(),
            asked_at: stored.timestamp,
            previous: stored.feedback.as_ref().map(|f| f.rating),
        };
        let removed = turn_bytes(stored);
        stored.feedback = feedback.cloned();
        let added = turn_bytes(stored);
        held.bytes = held.bytes + added - removed;
        state.bytes = state.bytes + added - removed;
        Ok(Some(rated))
    }

    async fn add_counts(
        &self,
        scope: &Scope,
        day: NaiveDate,
        change: DayCounts,
    ) -> Result<(), StorageError> {
        let mut figures = self.figures();
        let known = figures
            .days
            .get(scope)
            .is_some_and(|days| days.contains_key(&day));
        if !known {
            if figures.rows >= MAX_FIGURE_ROWS {
                return Err(StorageError::Rejected(
                    "too many daily figures held in process".into(),
                ));
            }
            figures.rows += 1;
        }
        let counts = figures
            .days
            .entry(scope.clone())
            .or_default()
            .entry(day)
            .or_default();
        *counts = counts.plus(change);
        Ok(())
    }

    async fn day_counts(
        &self,
        scope: &Scope,
        days: &DayRange,
    ) -> Result<Vec<(NaiveDate, DayCounts)>, StorageError> {
        let figures = self.figures();
        let Some(held) = figures.days.get(scope) else {
            return Ok(Vec::new());
        };
        let from = days.from.unwrap_or(NaiveDate::MIN);
        let to = days.to.unwrap_or(NaiveDate::MAX);
        Ok(held
            .range(from..=to)
            .map(|(day, counts)| (*day, *counts))
            .collect())
    }

    async fn first_seen(&self, customer: &CustomerId) -> Result<bool, StorageError> {
        let mut figures = self.figures();
        if figures.customers.contains(customer) {
            return Ok(false);
        }
        if figures.rows >= MAX_FIGURE_ROWS {
            return Err(StorageError::Rejected(
                "too many daily figures held in process".into(),
            ));
        }
        figures.rows += 1;
        Ok(figures.customers.insert(customer.clone()))
    }

    async fn create_share(&self, share: &Share) -> Result<(), StorageError> {
        self.shelf().put(share, self.max_bytes);
        Ok(())
    }

    async fn shared(&self, id: &ShareId) -> Result<Option<Share>, StorageError> {
        Ok(self.shelf().get(id).cloned())
    }

    async fn revoke_shares(&self, session: &SessionId) -> Result<u64, StorageError> {
        Ok(self.shelf().remove_session(session))
    }

    async fn share_origins(&self) -> Result<Vec<ShareOrigin>, StorageError> {
        Ok(self.shelf().origins())
    }

    async fn revoke_share(&self, session: &SessionId, id: &ShareId) -> Result<bool, StorageError> {
        Ok(self.shelf().remove_of(session, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(text: &str) -> NewTurn {
        NewTurn {
            user: text.into(),
            assistant: text.into(),
            metadata_json: "{}".into(),
            timestamp: DateTime::UNIX_EPOCH,
            owner: None,
        }
    }

    /// Appends `turn` after whatever `session` holds now.
    async fn append(store: &InProcessStore, session: &SessionId, turn: NewTurn) -> u64 {
        let expected = store.recent(session, 1).await.unwrap().continuation();
        match store.append(session, turn, expected).await.unwrap() {
            Appended::Stored { number, .. } => number,
            Appended::Changed => panic!("nobody else appends here"),
        }
    }

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    /// What one turn of [`turn`]`(text)` counts against the cap.
    fn bytes_of(text: &str) -> usize {
        turn_bytes(&turn(text).at(0))
    }

    #[tokio::test]
    async fn evicts_least_recently_used_sessions_past_the_cap() {
        let text = "x".repeat(100);
        let per_session = session_bytes(&id("a")) + bytes_of(&text);
        let store = InProcessStore::new(per_session * 3);
        for name in ["a", "b", "c"] {
            append(&store, &id(name), turn(&text)).await;
        }
        // Reading "a" makes "b" the least recently used.
        store.recent(&id("a"), 10).await.unwrap();
        append(&store, &id("d"), turn(&text)).await;
        assert_eq!(store.session_count(), 3);
        assert_eq!(store.recent(&id("b"), 10).await.unwrap().total, 0);
        assert_eq!(store.recent(&id("a"), 10).await.unwrap().total, 1);
    }

    #[tokio::test]
    async fn a_session_over_the_cap_keeps_its_newest_turns_and_their_numbers() {
        let text = "y".repeat(200);
        let store = InProcessStore::new(session_bytes(&id("long")) + 3 * bytes_of(&text));
        for expected in 0..5 {
            let number = append(&store, &id("long"), turn(&text)).await;
            assert_eq!(number, expected);
        }
        let window = store.recent(&id("long"), 10).await.unwrap();
        assert_eq!(window.total, 5);
        assert_eq!(window.dropped, 2);
        let numbers = |turns: &[Turn]| turns.iter().map(|t| t.index).collect::<Vec<_>>();
        assert_eq!(numbers(&window.turns), [2, 3, 4]);

        assert_eq!(append(&store, &id("long"), turn(&text)).await, 5);
        assert_eq!(numbers(&store.all(&id("long")).await.unwrap()), [3, 4, 5]);
        assert_eq!(store.recent(&id("long"), 2).await.unwrap().dropped, 3);
    }

    #[tokio::test]
    async fn other_sessions_go_before_the_written_session_drops_a_turn() {
        let text = "z".repeat(200);
        let store = InProcessStore::new(session_bytes(&id("w")) + 3 * bytes_of(&text));
        append(&store, &id("idle"), turn(&text)).await;
        for _ in 0..3 {
            append(&store, &id("w"), turn(&text)).await;
        }
        assert_eq!(store.recent(&id("idle"), 10).await.unwrap().total, 0);
        let window = store.recent(&id("w"), 10).await.unwrap();
        assert_eq!((window.turns.len(), window.dropped), (3, 0));
    }

    #[tokio::test]
    async fn the_newest_turn_is_kept_even_alone_over_the_cap() {
        let store = InProcessStore::new(10);
        assert_eq!(append(&store, &id("big"), turn("hello")).await, 0);
        assert_eq!(append(&store, &id("big"), turn("again")).await, 1);
        let window = store.recent(&id("big"), 10).await.unwrap();
        assert_eq!(window.total, 2);
        assert_eq!(window.dropped, 1);
        assert_eq!(window.turns.len(), 1);
        assert_eq!(window.turns[0].user, "again");
    }

    /// An owner's listing as (session, turns, last turn's second).
    async fn listed(store: &InProcessStore, owner: &CustomerId) -> Vec<(SessionId, u64, i64)> {
        let page = store.sessions_page(owner, 10, None, None).await.unwrap();
        page.sessions
            .into_iter()
            .map(|s| (s.session_id, s.turns, s.updated_at.timestamp()))
            .collect()
    }

    /// Listings follow the session's owner, not its oldest kept turn: trimming
    /// keeps the conversation listed, and a restart lists it for the new owner only.
    #[tokio::test]
    async fn listings_survive_trimming_and_follow_a_restart() {
        let text = "v".repeat(200);
        let (alice, bob) = (
            CustomerId::parse("alice").unwrap(),
            CustomerId::parse("bob").unwrap(),
        );
        let owned = |owner: &CustomerId, at: i64| NewTurn {
            owner: Some(owner.clone()),
            timestamp: DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(at),
            ..turn(&text)
        };
        let s = id("trimmed");
        let store = InProcessStore::new(session_bytes(&s) + 2 * bytes_of(&text) + 64);
        for at in 0..4 {
            append(&store, &s, owned(&alice, at)).await;
        }
        assert_eq!(store.recent(&s, 10).await.unwrap().dropped, 2);
        assert_eq!(listed(&store, &alice).await, [(s.clone(), 4, 3)]);

        let seen = store.recent(&s, 1).await.unwrap();
        let restarted = store.append(&s, owned(&bob, 10), seen.restart()).await;
        assert!(matches!(restarted, Ok(Appended::Stored { number: 0, .. })));
        assert!(listed(&store, &alice).await.is_empty());
        assert_eq!(listed(&store, &bob).await, [(s.clone(), 1, 10)]);
        assert_eq!(
            store
                .purge_before(DateTime::UNIX_EPOCH + chrono::TimeDelta::seconds(11))
                .await,
            Ok(1)
        );
        assert!(listed(&store, &bob).await.is_empty());
    }
}
