//! In-process conversations: lost at restart, bounded in total size.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use chrono::{DateTime, Utc};

use super::{ConversationStore, DeletedAll, SessionSummary, StorageError, Window};
use crate::domain::{
    may_access, owner_of, title_of, CustomerId, Feedback, NewTurn, SessionId, Title, Turn,
};

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
}

struct Session {
    turns: Vec<Turn>,
    last_use: u64,
    bytes: usize,
    /// The title its owner gave it, if renamed.
    title: Option<String>,
}

impl Session {
    /// The conversation as `owner`'s listing shows it; `None` if it is not theirs.
    fn summary(&self, id: &SessionId, owner: &CustomerId) -> Option<SessionSummary> {
        if owner_of(&self.turns) != Some(owner) {
            return None;
        }
        let (first, last) = (self.turns.first()?, self.turns.last()?);
        Some(SessionSummary {
            session_id: id.clone(),
            owner: owner.clone(),
            title: self.title.clone().unwrap_or_else(|| title_of(&first.user)),
            turns: self.turns.len() as u64,
            created_at: first.timestamp,
            updated_at: last.timestamp,
        })
    }
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
                    title: None,
                },
            );
            state.by_last_use.insert(tick, session.clone());
            state.bytes += SESSION_OVERHEAD_BYTES;
        }
        let entry = state.sessions.get_mut(session).expect("inserted above");
        let index = entry.turns.len() as u64;
        entry.turns.push(turn.at(index));
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
            .filter_map(|(id, session)| session.summary(id, owner))
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
        if !live || owner_of(&held.turns) != Some(owner) {
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

    /// Everything happens under one lock: always complete.
    async fn delete_all(
        &self,
        owner: &CustomerId,
        _stop_at: tokio::time::Instant,
    ) -> Result<DeletedAll, StorageError> {
        let mut state = self.lock();
        let owned: Vec<SessionId> = state
            .sessions
            .iter()
            .filter(|(_, session)| owner_of(&session.turns) == Some(owner))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &owned {
            state.remove(id);
        }
        Ok(DeletedAll {
            deleted: owned.len() as u64,
            complete: true,
        })
    }

    async fn set_feedback(
        &self,
        session: &SessionId,
        turn: u64,
        requester: Option<&CustomerId>,
        feedback: Option<&Feedback>,
    ) -> Result<bool, StorageError> {
        let mut state = self.lock();
        let Some(held) = state.sessions.get_mut(session) else {
            return Ok(false);
        };
        if !may_access(owner_of(&held.turns), requester) {
            return Ok(false);
        }
        let Some(stored) = usize::try_from(turn)
            .ok()
            .and_then(|index| held.turns.get_mut(index))
        else {
            return Ok(false);
        };
        let size = |f: Option<&Feedback>| f.and_then(|f| f.comment.as_ref()).map_or(0, String::len);
        let (added, removed) = (size(feedback), size(stored.feedback.as_ref()));
        stored.feedback = feedback.cloned();
        held.bytes = held.bytes + added - removed;
        state.bytes = state.bytes + added - removed;
        Ok(true)
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
