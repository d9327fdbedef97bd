//! In-process conversations: lost at restart, bounded in total size.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use super::{ConversationStore, ListPosition, ListingPage, SessionSummary, StorageError, Window};
use crate::domain::{title_of, CustomerId, NewTurn, SessionId, Turn};

/// Keeps every turn of every session in memory. When the turns held exceed
/// `max_bytes`, the least recently used sessions are dropped whole, so a flood of
/// session ids cannot exhaust the process.
///
/// One lock guards everything, so nothing under it scans all sessions: listings
/// and the purge read [`Indexes`] kept up to date by every append and removal, a
/// page in O(page · log n), a purge in short rounds of expired sessions.
pub struct InProcessStore {
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Session>,
    /// Last-use tick → session, oldest first: the eviction order.
    by_last_use: BTreeMap<u64, SessionId>,
    clock: u64,
    bytes: usize,
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
        let (Some(first), Some(last)) = (session.turns.first(), session.turns.last()) else {
            return;
        };
        let key = IndexKey {
            owner: first.owner.clone(),
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
    turns: Vec<Turn>,
    last_use: u64,
    bytes: usize,
    indexed: Option<IndexKey>,
}

/// Expired sessions a purge removes per hold of the lock.
const PURGE_ROUND: usize = 256;

/// Per-session bookkeeping counted against the cap besides the turns' text.
const SESSION_OVERHEAD_BYTES: usize = 256;
const TURN_OVERHEAD_BYTES: usize = 96;

impl InProcessStore {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::new(State::default()),
        }
    }

    /// How many sessions are held (for tests and the memory figures).
    pub fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way
        // that matters more than losing the service; keep serving.
        self.state
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

    fn remove(&mut self, session: &SessionId) -> bool {
        match self.sessions.remove(session) {
            None => false,
            Some(mut removed) => {
                self.indexes.remove(session, &mut removed);
                self.by_last_use.remove(&removed.last_use);
                self.bytes -= removed.bytes;
                true
            }
        }
    }

    fn evict_until_within(&mut self, max_bytes: usize, keep: &SessionId) {
        while self.bytes > max_bytes {
            let Some((&tick, oldest)) = self.by_last_use.iter().next() else {
                return;
            };
            if oldest == keep {
                return; // The session being written always survives its own append.
            }
            let oldest = oldest.clone();
            self.by_last_use.remove(&tick);
            if let Some(mut evicted) = self.sessions.remove(&oldest) {
                self.indexes.remove(&oldest, &mut evicted);
                self.bytes -= evicted.bytes;
            }
        }
    }
}

#[async_trait]
impl ConversationStore for InProcessStore {
    async fn append(&self, session: &SessionId, turn: NewTurn) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let added = turn.heap_size() + TURN_OVERHEAD_BYTES;
        if state.touch(session).is_none() {
            let tick = state.clock;
            state.sessions.insert(
                session.clone(),
                Session {
                    turns: Vec::new(),
                    last_use: tick,
                    bytes: SESSION_OVERHEAD_BYTES,
                    indexed: None,
                },
            );
            state.by_last_use.insert(tick, session.clone());
            state.bytes += SESSION_OVERHEAD_BYTES;
        }
        let State {
            sessions, indexes, ..
        } = &mut *state;
        let entry = sessions.get_mut(session).expect("inserted above");
        let index = entry.turns.len() as u64;
        indexes.remove(session, entry);
        entry.turns.push(turn.at(index));
        indexes.add(session, entry);
        entry.bytes += added;
        state.bytes += added;
        state.evict_until_within(self.max_bytes, session);
        Ok(index)
    }

    async fn recent(&self, session: &SessionId, limit: usize) -> Result<Window, StorageError> {
        let mut state = self.lock();
        Ok(match state.touch(session) {
            None => Window::default(),
            Some(entry) => {
                let start = entry.turns.len().saturating_sub(limit);
                Window {
                    turns: entry.turns[start..].to_vec(),
                    total: entry.turns.len() as u64,
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

    async fn delete(&self, session: &SessionId) -> Result<bool, StorageError> {
        Ok(self.lock().remove(session))
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
            .filter_map(|(_, id)| {
                let turns = &state.sessions.get(id)?.turns;
                let (first, last) = (turns.first()?, turns.last()?);
                Some(SessionSummary {
                    session_id: id.clone(),
                    owner: owner.clone(),
                    title: title_of(&first.user),
                    turns: turns.len() as u64,
                    created_at: first.timestamp,
                    updated_at: last.timestamp,
                })
            })
            .collect();
        Ok(ListingPage::from_candidates(candidates, limit))
    }

    /// In rounds of [`PURGE_ROUND`] expired sessions, so appends wait at most one round.
    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError> {
        let mut purged = 0;
        loop {
            let mut state = self.lock();
            let expired: Vec<SessionId> = state
                .indexes
                .by_last_turn
                .iter()
                .take_while(|(last_turn, _)| *last_turn < cutoff)
                .take(PURGE_ROUND)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn turn(text: &str) -> NewTurn {
        NewTurn {
            user: text.into(),
            assistant: text.into(),
            metadata_json: "{}".into(),
            timestamp: Utc::now(),
            owner: None,
        }
    }

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn evicts_least_recently_used_sessions_past_the_cap() {
        let per_session =
            SESSION_OVERHEAD_BYTES + TURN_OVERHEAD_BYTES + turn(&"x".repeat(100)).heap_size();
        let store = InProcessStore::new(per_session * 3);
        for name in ["a", "b", "c"] {
            store
                .append(&id(name), turn(&"x".repeat(100)))
                .await
                .unwrap();
        }
        // Reading "a" makes "b" the least recently used.
        store.recent(&id("a"), 10).await.unwrap();
        store
            .append(&id("d"), turn(&"x".repeat(100)))
            .await
            .unwrap();
        assert_eq!(store.session_count(), 3);
        assert_eq!(store.recent(&id("b"), 10).await.unwrap().total, 0);
        assert_eq!(store.recent(&id("a"), 10).await.unwrap().total, 1);
    }

    #[tokio::test]
    async fn a_single_huge_session_is_kept_while_written() {
        let store = InProcessStore::new(10);
        assert_eq!(store.append(&id("big"), turn("hello")).await.unwrap(), 0);
        assert_eq!(store.append(&id("big"), turn("again")).await.unwrap(), 1);
        assert_eq!(store.recent(&id("big"), 10).await.unwrap().total, 2);
    }
}
