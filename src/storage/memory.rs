//! In-process conversations: lost at restart, bounded in total size.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use super::{
    Appended, ConversationStore, Expectation, SessionSummary, StorageError, Version, Window,
};
use crate::domain::{title_of, CustomerId, NewTurn, SessionId, Turn};

/// Keeps every turn of every session in memory. When the turns held exceed
/// `max_bytes`, the least recently used sessions are dropped whole, so a flood of
/// session ids cannot exhaust the process.
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
    /// The stamp of the turn stored last: every stored turn gets a new one, so a
    /// turn number reached again after a restart never looks unchanged.
    stamp: u64,
}

struct Session {
    turns: Vec<Turn>,
    /// Turn 0's customer: the owner for the conversation's life.
    owner: Option<CustomerId>,
    /// The last turn's stamp (its [`Version`]).
    last_stamp: u64,
    last_use: u64,
    bytes: usize,
}

impl Session {
    /// How many turns the session has had: the last turn's number + 1.
    fn total(&self) -> u64 {
        self.turns.last().map_or(0, |t| t.index + 1)
    }

    /// Whether `expected` holds for this session (`None`: no session).
    fn meets(session: Option<&Self>, expected: &Expectation) -> bool {
        match (expected, session) {
            (Expectation::New, None) => true,
            (
                Expectation::After { last, version } | Expectation::Restart { last, version },
                Some(session),
            ) => session.total() == last + 1 && *version == stamp_version(session.last_stamp),
            _ => false,
        }
    }
}

fn stamp_version(stamp: u64) -> Version {
    Version::new(stamp.to_string())
}

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
            Some(removed) => {
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
            if let Some(evicted) = self.sessions.remove(&oldest) {
                self.bytes -= evicted.bytes;
            }
        }
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
        let added = turn.heap_size() + TURN_OVERHEAD_BYTES;
        state.stamp += 1;
        let stamp = state.stamp;
        if state.touch(session).is_none() {
            let tick = state.clock;
            state.sessions.insert(
                session.clone(),
                Session {
                    turns: Vec::new(),
                    owner: turn.owner.clone(),
                    last_stamp: stamp,
                    last_use: tick,
                    bytes: SESSION_OVERHEAD_BYTES,
                },
            );
            state.by_last_use.insert(tick, session.clone());
            state.bytes += SESSION_OVERHEAD_BYTES;
        }
        let entry = state.sessions.get_mut(session).expect("inserted above");
        let number = entry.total();
        entry.turns.push(turn.at(number));
        entry.last_stamp = stamp;
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

    async fn delete(&self, session: &SessionId) -> Result<bool, StorageError> {
        Ok(self.lock().remove(session))
    }

    /// Listings are read from the turns themselves: nothing to record.
    async fn update_listing(&self, _: &SessionId, _: u64, _: &NewTurn) -> Result<(), StorageError> {
        Ok(())
    }

    async fn sessions_of(&self, owner: &CustomerId) -> Result<Vec<SessionSummary>, StorageError> {
        let state = self.lock();
        Ok(state
            .sessions
            .iter()
            .filter(|(_, session)| session.owner.as_ref() == Some(owner))
            .filter_map(|(id, session)| {
                let (first, last) = (session.turns.first()?, session.turns.last()?);
                Some(SessionSummary {
                    session_id: id.clone(),
                    owner: owner.clone(),
                    title: title_of(&first.user),
                    turns: session.total(),
                    created_at: first.timestamp,
                    updated_at: last.timestamp,
                })
            })
            .collect())
    }

    async fn purge_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StorageError> {
        let mut state = self.lock();
        let expired: Vec<SessionId> = state
            .sessions
            .iter()
            .filter(|(_, session)| session.turns.last().is_some_and(|t| t.timestamp < cutoff))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            state.remove(id);
        }
        Ok(expired.len() as u64)
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

    #[tokio::test]
    async fn evicts_least_recently_used_sessions_past_the_cap() {
        let per_session =
            SESSION_OVERHEAD_BYTES + TURN_OVERHEAD_BYTES + turn(&"x".repeat(100)).heap_size();
        let store = InProcessStore::new(per_session * 3);
        for name in ["a", "b", "c"] {
            append(&store, &id(name), turn(&"x".repeat(100))).await;
        }
        // Reading "a" makes "b" the least recently used.
        store.recent(&id("a"), 10).await.unwrap();
        append(&store, &id("d"), turn(&"x".repeat(100))).await;
        assert_eq!(store.session_count(), 3);
        assert_eq!(store.recent(&id("b"), 10).await.unwrap().total, 0);
        assert_eq!(store.recent(&id("a"), 10).await.unwrap().total, 1);
    }

    #[tokio::test]
    async fn a_single_huge_session_is_kept_while_written() {
        let store = InProcessStore::new(10);
        assert_eq!(append(&store, &id("big"), turn("hello")).await, 0);
        assert_eq!(append(&store, &id("big"), turn("again")).await, 1);
        assert_eq!(store.recent(&id("big"), 10).await.unwrap().total, 2);
    }
}
