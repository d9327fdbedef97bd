//! The windows of the sessions this process served last, so that a session's next
//! turn here needs no read: its append states the window it was answered from, and
//! the store refuses it if that is no longer the session's state
//! ([`Expectation`](super::Expectation)). A stale window costs one refused append
//! and a reload, never a wrong turn; a session whose held window was refused
//! (several processes take turns serving it) is marked contended and read first
//! from then on, so it costs what it would without the windows.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Window;
use crate::domain::{CustomerId, SessionId};

/// Bookkeeping per held window, counted against the cap besides the turns' text.
const WINDOW_OVERHEAD_BYTES: usize = 256;
const TURN_OVERHEAD_BYTES: usize = 96;

/// Windows by session, at most `max_bytes` of them; past that, windows are dropped
/// (whichever come first in the map) until the rest fit.
pub struct WindowCache {
    max_bytes: usize,
    state: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// `None`: contended, no window held.
    windows: HashMap<SessionId, (Option<Window>, usize)>,
    bytes: usize,
}

fn size_of(window: &Window) -> usize {
    WINDOW_OVERHEAD_BYTES
        + window
            .turns
            .iter()
            .map(|t| t.user.len() + t.assistant.len() + t.metadata_json.len() + TURN_OVERHEAD_BYTES)
            .sum::<usize>()
}

impl WindowCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::new(Held::default()),
        }
    }

    /// The window this process last saw `session` at, if it still holds it.
    pub fn get(&self, session: &SessionId) -> Option<Window> {
        self.lock().windows.get(session)?.0.clone()
    }

    /// Holds `window` as `session`'s latest, unless the session is contended (a
    /// window larger than the cap is not held either).
    pub fn put(&self, session: &SessionId, window: Window) {
        let contended = self
            .lock()
            .windows
            .get(session)
            .is_some_and(|(window, _)| window.is_none());
        if !contended {
            self.hold(session, Some(window));
        }
    }

    /// Marks `session` contended: its window is no longer held, nor held again.
    pub fn mark_contended(&self, session: &SessionId) {
        self.hold(session, None);
    }

    fn hold(&self, session: &SessionId, window: Option<Window>) {
        let size = window.as_ref().map_or(WINDOW_OVERHEAD_BYTES, size_of);
        let mut held = self.lock();
        held.remove(session);
        if size > self.max_bytes {
            return;
        }
        while held.bytes + size > self.max_bytes {
            let Some(victim) = held.windows.keys().next().cloned() else {
                break;
            };
            held.remove(&victim);
        }
        held.bytes += size;
        held.windows.insert(session.clone(), (window, size));
    }

    pub fn forget(&self, session: &SessionId) {
        self.lock().remove(session);
    }

    /// Forgets the windows of the conversations `owner` owns (turn 0's customer).
    pub fn forget_owned_by(&self, owner: &CustomerId) {
        let mut held = self.lock();
        let owned: Vec<SessionId> = held
            .windows
            .iter()
            .filter(|(_, (window, _))| {
                window
                    .as_ref()
                    .is_some_and(|window| window.owner.as_ref() == Some(owner))
            })
            .map(|(session, _)| session.clone())
            .collect();
        for session in &owned {
            held.remove(session);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Windows are hints checked by the store: a panic cannot make one harmful.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Held {
    fn remove(&mut self, session: &SessionId) {
        if let Some((_, size)) = self.windows.remove(session) {
            self.bytes -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Turn;

    fn window(text: &str) -> Window {
        Window {
            turns: vec![Turn::exchange(text, text)],
            total: 1,
            ..Window::default()
        }
    }

    fn id(s: &str) -> SessionId {
        SessionId::parse(s).unwrap()
    }

    #[test]
    fn holds_windows_within_its_cap() {
        let one = size_of(&window(&"x".repeat(100)));
        let cache = WindowCache::new(one * 2);
        for name in ["a", "b", "c"] {
            cache.put(&id(name), window(&"x".repeat(100)));
        }
        let held = ["a", "b", "c"]
            .iter()
            .filter(|name| cache.get(&id(name)).is_some())
            .count();
        assert_eq!(held, 2);
        assert!(cache.get(&id("c")).is_some(), "the newest is kept");
        assert!(cache.lock().bytes <= one * 2);
    }

    #[test]
    fn a_window_replaces_the_last_and_can_be_forgotten() {
        let cache = WindowCache::new(1 << 20);
        cache.put(&id("s"), window("first"));
        cache.put(&id("s"), window("second"));
        assert_eq!(cache.get(&id("s")).unwrap().turns[0].user, "second");
        cache.forget(&id("s"));
        assert!(cache.get(&id("s")).is_none());
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn a_contended_session_holds_no_window() {
        let cache = WindowCache::new(1 << 20);
        cache.put(&id("s"), window("first"));
        cache.mark_contended(&id("s"));
        assert!(cache.get(&id("s")).is_none());
        cache.put(&id("s"), window("second"));
        assert!(cache.get(&id("s")).is_none(), "still contended");
        cache.forget(&id("s"));
        cache.put(&id("s"), window("third"));
        assert!(cache.get(&id("s")).is_some(), "forgotten, it starts over");
    }

    #[test]
    fn a_window_larger_than_the_cap_is_not_held() {
        let cache = WindowCache::new(10);
        cache.put(&id("s"), window("too big"));
        assert!(cache.get(&id("s")).is_none());
    }
}
