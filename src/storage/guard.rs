//! A time budget per request and a circuit breaker around a durable store.
//!
//! A request never waits on storage longer than its budget in total, and after a
//! failure the store is skipped for a short, growing interval (then tried again by
//! one request), so an unreachable store costs one timeout, not one per request.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};

use super::{
    Appended, ConversationStore, DayCounts, Deleted, DeletedAll, Expectation, ListPosition,
    ListingPage, Rated, Scope, Seen, SessionSummary, Share, ShareOrigin, StorageError, Window,
    WindowCache,
};
use crate::domain::{CustomerId, DayRange, Feedback, NewTurn, SessionId, ShareId, Title, Turn};

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The deadline one request's storage calls share.
#[derive(Debug, Clone, Copy)]
pub struct StorageBudget {
    deadline: Instant,
}

impl StorageBudget {
    /// A budget of `total` from now, for work that is not one request (a purge).
    pub fn lasting(total: Duration) -> Self {
        Self {
            deadline: Instant::now() + total,
        }
    }

    /// Half of what is left of the budget from now: work that may stop early and
    /// report what it did starts nothing new after this, so that what is under way
    /// still ends within the budget.
    pub fn halfway(&self) -> Instant {
        let now = Instant::now();
        now + self.deadline.saturating_duration_since(now) / 2
    }
}

/// Clones share the store, its circuit breaker and the windows it holds.
#[derive(Clone)]
pub struct GuardedStore {
    inner: Arc<dyn ConversationStore>,
    budget: Duration,
    breaker: Arc<Mutex<Breaker>>,
    /// The windows of the sessions last appended to through this store, when it
    /// keeps them ([`GuardedStore::holding_windows`]).
    windows: Option<Arc<WindowCache>>,
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    state: BreakerState,
}

#[derive(Debug, Default, Clone, Copy)]
enum BreakerState {
    #[default]
    Closed,
    Open {
        until: Instant,
    },
    /// One trial call is in flight; everyone else is turned away until it ends.
    Trial,
}

/// Ends a trial: if the call is dropped before it reports, the breaker reopens at once
/// so that the next request becomes the new trial.
struct TrialGuard {
    breaker: Option<Arc<Mutex<Breaker>>>,
}

impl Drop for TrialGuard {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            lock(&breaker).state = BreakerState::Open {
                until: Instant::now(),
            };
        }
    }
}

fn lock(breaker: &Mutex<Breaker>) -> std::sync::MutexGuard<'_, Breaker> {
    breaker.lock().unwrap_or_else(|p| p.into_inner())
}

fn backoff(consecutive_failures: u32) -> Duration {
    let doublings = consecutive_failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

impl GuardedStore {
    pub fn new(inner: Arc<dyn ConversationStore>, budget: Duration) -> Self {
        Self {
            inner,
            budget,
            breaker: Arc::new(Mutex::new(Breaker::default())),
            windows: None,
        }
    }

    /// Keeps the window of each session appended to through this store (up to
    /// `max_bytes` of them), so that its next turn here can append without
    /// reading. A delete through this store forgets the session's window.
    pub fn holding_windows(mut self, max_bytes: usize) -> Self {
        self.windows = Some(Arc::new(WindowCache::new(max_bytes)));
        self
    }

    /// The window of `session` as of its last append through this store, if held.
    pub fn held_window(&self, session: &SessionId) -> Option<Window> {
        self.windows.as_ref()?.get(session)
    }

    /// Holds `window` as `session`'s latest (nothing when this store holds none).
    pub fn hold_window(&self, session: &SessionId, window: Window) {
        if let Some(windows) = &self.windows {
            windows.put(session, window);
        }
    }

    /// Another writer changed `session` since its window was held or read: from
    /// now on it is read before each turn instead of held.
    pub fn window_refused(&self, session: &SessionId) {
        if let Some(windows) = &self.windows {
            windows.mark_contended(session);
        }
    }

    pub fn forget_window(&self, session: &SessionId) {
        if let Some(windows) = &self.windows {
            windows.forget(session);
        }
    }

    /// Forgets the windows of every conversation `owner` owns.
    fn forget_windows_of(&self, owner: &CustomerId) {
        if let Some(windows) = &self.windows {
            windows.forget_owned_by(owner);
        }
    }

    /// Whether the store answered its last call (or has not been called yet).
    pub fn is_reachable(&self) -> bool {
        lock(&self.breaker).consecutive_failures == 0
    }

    /// One cheap call (a one-turn window of a session nobody uses), so that an
    /// unreachable store is known at start-up rather than at the first turn.
    pub async fn probe(&self) -> Result<(), StorageError> {
        let nobody = SessionId::parse("session-rag-start-up-probe").expect("a valid session id");
        self.recent(self.budget(), &nobody, 1).await.map(|_| ())
    }

    /// Starts the clock for one request's storage calls.
    pub fn budget(&self) -> StorageBudget {
        StorageBudget::lasting(self.budget)
    }

    pub async fn append(
        &self,
        budget: StorageBudget,
        session: &SessionId,
        turn: NewTurn,
        expected: Expectation,
    ) -> Result<Appended, StorageError> {
        self.call(budget, self.inner.append(session, turn, expected))
            .await
    }

    pub async fn recent(
        &self,
        budget: StorageBudget,
        session: &SessionId,
        limit: usize,
    ) -> Result<Window, StorageError> {
        self.call(budget, self.inner.recent(session, limit)).await
    }

    pub async fn all(
        &self,
        budget: StorageBudget,
        session: &SessionId,
    ) -> Result<Vec<Turn>, StorageError> {
        self.call(budget, self.inner.all(session)).await
    }

    pub async fn first_turn(
        &self,
        budget: StorageBudget,
        session: &SessionId,
    ) -> Result<Option<Turn>, StorageError> {
        self.call(budget, self.inner.first_turn(session)).await
    }

    pub async fn delete(
        &self,
        budget: StorageBudget,
        session: &SessionId,
        expected: Seen,
    ) -> Result<Deleted, StorageError> {
        self.forget_window(session);
        self.call(budget, self.inner.delete(session, expected))
            .await
    }

    pub async fn update_listing(
        &self,
        budget: StorageBudget,
        session: &SessionId,
        number: u64,
        turn: &NewTurn,
    ) -> Result<(), StorageError> {
        self.call(budget, self.inner.update_listing(session, number, turn))
            .await
    }

    pub async fn sessions_page(
        &self,
        budget: StorageBudget,
        owner: &CustomerId,
        limit: usize,
        after: Option<&ListPosition>,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<ListingPage, StorageError> {
        self.call(
            budget,
            self.inner.sessions_page(owner, limit, after, cutoff),
        )
        .await
    }

    pub async fn purge_before(
        &self,
        budget: StorageBudget,
        cutoff: DateTime<Utc>,
    ) -> Result<u64, StorageError> {
        self.call(budget, self.inner.purge_before(cutoff)).await
    }

    pub async fn summary(
        &self,
        budget: StorageBudget,
        owner: &CustomerId,
        session: &SessionId,
    ) -> Result<Option<SessionSummary>, StorageError> {
        self.call(budget, self.inner.summary(owner, session)).await
    }

    pub async fn rename(
        &self,
        budget: StorageBudget,
        owner: &CustomerId,
        session: &SessionId,
        title: &Title,
        cutoff: Option<DateTime<Utc>>,
    ) -> Result<Option<SessionSummary>, StorageError> {
        self.call(budget, self.inner.rename(owner, session, title, cutoff))
            .await
    }

    /// Stops at [`StorageBudget::halfway`], so that the call reports what it did
    /// instead of timing out.
    pub async fn delete_all(
        &self,
        budget: StorageBudget,
        owner: &CustomerId,
    ) -> Result<DeletedAll, StorageError> {
        self.forget_windows_of(owner);
        self.call(budget, self.inner.delete_all(owner, budget.halfway()))
            .await
    }

    /// Feedback changes the turn's version, so a held window of the session would
    /// be refused at its next append (and the session taken for contended): it is
    /// forgotten instead, and the next turn reads the session first.
    pub async fn set_feedback(
        &self,
        budget: StorageBudget,
        session: &SessionId,
        turn: u64,
        requester: Option<&CustomerId>,
        feedback: Option<&Feedback>,
    ) -> Result<Option<Rated>, StorageError> {
        self.forget_window(session);
        self.call(
            budget,
            self.inner.set_feedback(session, turn, requester, feedback),
        )
        .await
    }

    pub async fn create_share(
        &self,
        budget: StorageBudget,
        share: &Share,
    ) -> Result<(), StorageError> {
        self.call(budget, self.inner.create_share(share)).await
    }

    pub async fn shared(
        &self,
        budget: StorageBudget,
        id: &ShareId,
    ) -> Result<Option<Share>, StorageError> {
        self.call(budget, self.inner.shared(id)).await
    }

    pub async fn revoke_shares(
        &self,
        budget: StorageBudget,
        session: &SessionId,
    ) -> Result<u64, StorageError> {
        self.call(budget, self.inner.revoke_shares(session)).await
    }

    pub async fn share_origins(
        &self,
        budget: StorageBudget,
    ) -> Result<Vec<ShareOrigin>, StorageError> {
        self.call(budget, self.inner.share_origins()).await
    }

    pub async fn revoke_share(
        &self,
        budget: StorageBudget,
        session: &SessionId,
        id: &ShareId,
    ) -> Result<bool, StorageError> {
        self.call(budget, self.inner.revoke_share(session, id))
            .await
    }

    pub async fn add_counts(
        &self,
        budget: StorageBudget,
        scope: &Scope,
        day: NaiveDate,
        change: DayCounts,
    ) -> Result<(), StorageError> {
        self.call_aside(budget, self.inner.add_counts(scope, day, change))
            .await
    }

    pub async fn day_counts(
        &self,
        budget: StorageBudget,
        scope: &Scope,
        days: &DayRange,
    ) -> Result<Vec<(NaiveDate, DayCounts)>, StorageError> {
        self.call(budget, self.inner.day_counts(scope, days)).await
    }

    pub async fn first_seen(
        &self,
        budget: StorageBudget,
        customer: &CustomerId,
    ) -> Result<bool, StorageError> {
        self.call_aside(budget, self.inner.first_seen(customer))
            .await
    }

    async fn call<T>(
        &self,
        budget: StorageBudget,
        operation: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let mut trial = self.admit()?;
        let result = match tokio::time::timeout_at(budget.deadline, operation).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::Timeout),
        };
        let was_trial = trial.breaker.take().is_some();
        self.record(&result, was_trial);
        result
    }

    /// Counting after a stored turn: tried only while the breaker is closed, and
    /// its outcome leaves the breaker as it is, so the figures (a counter that
    /// kept changing, say) never make the next turns skip storage.
    async fn call_aside<T>(
        &self,
        budget: StorageBudget,
        operation: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        if !matches!(lock(&self.breaker).state, BreakerState::Closed) {
            return Err(StorageError::CircuitOpen { retry_in_ms: 0 });
        }
        match tokio::time::timeout_at(budget.deadline, operation).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::Timeout),
        }
    }

    fn admit(&self) -> Result<TrialGuard, StorageError> {
        let mut breaker = lock(&self.breaker);
        let now = Instant::now();
        match breaker.state {
            BreakerState::Closed => Ok(TrialGuard { breaker: None }),
            BreakerState::Open { until } if now >= until => {
                breaker.state = BreakerState::Trial;
                Ok(TrialGuard {
                    breaker: Some(self.breaker.clone()),
                })
            }
            BreakerState::Open { until } => Err(StorageError::CircuitOpen {
                retry_in_ms: (until - now).as_millis() as u64,
            }),
            BreakerState::Trial => Err(StorageError::CircuitOpen { retry_in_ms: 0 }),
        }
    }

    fn record<T>(&self, result: &Result<T, StorageError>, was_trial: bool) {
        let mut breaker = lock(&self.breaker);
        match result {
            Err(StorageError::Unavailable(_) | StorageError::Timeout) => {
                // Calls already under way when the breaker opened report the same
                // outage again; only the first failure and failed trials lengthen
                // the back-off, so a busy handler recovers as fast as an idle one.
                if !was_trial && !matches!(breaker.state, BreakerState::Closed) {
                    return;
                }
                breaker.consecutive_failures += 1;
                let wait = backoff(breaker.consecutive_failures);
                if breaker.consecutive_failures == 1 {
                    tracing::warn!(
                        backoff_ms = wait.as_millis() as u64,
                        "storage failed; backing off"
                    );
                }
                breaker.state = BreakerState::Open {
                    until: Instant::now() + wait,
                };
            }
            // The store answered (even "cannot store this"): it is reachable.
            Ok(_) | Err(StorageError::Rejected(_) | StorageError::CircuitOpen { .. }) => {
                if breaker.consecutive_failures > 0 {
                    tracing::info!("storage reachable again");
                }
                breaker.consecutive_failures = 0;
                breaker.state = BreakerState::Closed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::InProcessStore;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store that hangs on every call and counts how often it was reached.
    #[derive(Default)]
    struct Hanging {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl ConversationStore for Hanging {
        async fn append(
            &self,
            _: &SessionId,
            _: NewTurn,
            _: Expectation,
        ) -> Result<Appended, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn recent(&self, _: &SessionId, _: usize) -> Result<Window, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn all(&self, _: &SessionId) -> Result<Vec<Turn>, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn first_turn(&self, _: &SessionId) -> Result<Option<Turn>, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn delete(&self, _: &SessionId, _: Seen) -> Result<Deleted, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn update_listing(
            &self,
            _: &SessionId,
            _: u64,
            _: &NewTurn,
        ) -> Result<(), StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn sessions_page(
            &self,
            _: &CustomerId,
            _: usize,
            _: Option<&ListPosition>,
            _: Option<DateTime<Utc>>,
        ) -> Result<ListingPage, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn purge_before(&self, _: DateTime<Utc>) -> Result<u64, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn summary(
            &self,
            _: &CustomerId,
            _: &SessionId,
        ) -> Result<Option<SessionSummary>, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn rename(
            &self,
            _: &CustomerId,
            _: &SessionId,
            _: &Title,
            _: Option<DateTime<Utc>>,
        ) -> Result<Option<SessionSummary>, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn delete_all(&self, _: &CustomerId, _: Instant) -> Result<DeletedAll, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn set_feedback(
            &self,
            _: &SessionId,
            _: u64,
            _: Option<&CustomerId>,
            _: Option<&Feedback>,
        ) -> Result<Option<Rated>, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn add_counts(
            &self,
            _: &Scope,
            _: NaiveDate,
            _: DayCounts,
        ) -> Result<(), StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn day_counts(
            &self,
            _: &Scope,
            _: &DayRange,
        ) -> Result<Vec<(NaiveDate, DayCounts)>, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn first_seen(&self, _: &CustomerId) -> Result<bool, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn create_share(&self, _: &Share) -> Result<(), StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn shared(&self, _: &ShareId) -> Result<Option<Share>, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn revoke_shares(&self, _: &SessionId) -> Result<u64, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn share_origins(&self) -> Result<Vec<ShareOrigin>, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn revoke_share(&self, _: &SessionId, _: &ShareId) -> Result<bool, StorageError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
    }

    fn id() -> SessionId {
        SessionId::parse("s").unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_store_costs_one_timeout_then_is_skipped_until_the_backoff_ends() {
        let hanging = Arc::new(Hanging::default());
        let store = GuardedStore::new(hanging.clone(), Duration::from_secs(10));

        let started = Instant::now();
        let first = store.recent(store.budget(), &id(), 10).await;
        assert_eq!(first, Err(StorageError::Timeout));
        assert_eq!(started.elapsed(), Duration::from_secs(10));

        let second = store.recent(store.budget(), &id(), 10).await;
        assert!(matches!(second, Err(StorageError::CircuitOpen { .. })));
        assert_eq!(hanging.calls.load(Ordering::SeqCst), 1);

        tokio::time::advance(backoff(1)).await;
        let _ = store.recent(store.budget(), &id(), 10).await;
        assert_eq!(
            hanging.calls.load(Ordering::SeqCst),
            2,
            "retried on its own"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_failures_of_one_outage_back_off_once() {
        let hanging = Arc::new(Hanging::default());
        let store = GuardedStore::new(hanging.clone(), Duration::from_secs(1));
        let session = id();
        let calls = (0..10).map(|_| store.recent(store.budget(), &session, 10));
        for result in futures::future::join_all(calls).await {
            assert_eq!(result, Err(StorageError::Timeout));
        }
        tokio::time::advance(backoff(1)).await;
        let _ = store.recent(store.budget(), &id(), 10).await;
        assert_eq!(
            hanging.calls.load(Ordering::SeqCst),
            11,
            "tried again after the first back-off"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_budget_bounds_all_calls_of_a_request() {
        let hanging = Arc::new(Hanging::default());
        let store = GuardedStore::new(hanging, Duration::from_secs(10));
        let budget = store.budget();
        tokio::time::advance(Duration::from_secs(9)).await;
        let started = Instant::now();
        assert_eq!(store.all(budget, &id()).await, Err(StorageError::Timeout));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_healthy_store_passes_through() {
        let store = GuardedStore::new(
            Arc::new(InProcessStore::new(1 << 20)),
            Duration::from_secs(1),
        );
        let turn = NewTurn {
            user: "q".into(),
            assistant: "a".into(),
            metadata_json: "{}".into(),
            timestamp: DateTime::UNIX_EPOCH,
            owner: None,
        };
        let stored = store
            .append(store.budget(), &id(), turn, Expectation::New)
            .await;
        assert!(
            matches!(stored, Ok(Appended::Stored { number: 0, .. })),
            "{stored:?}"
        );
        assert_eq!(
            store.recent(store.budget(), &id(), 5).await.unwrap().total,
            1
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
