//! The conversation service: memory semantics of `POST /api/query` (PRODUCT.md).
//!
//! - no session id: stateless;
//! - a session id: in-process memory;
//! - a session id with `enable_persistence`: durable memory, degrading (answer
//!   still given, `persisted: false`, a warning) when storage fails.
//!
//! Either way a session belongs to the `customer_id` of its turn 0, and only that
//! customer may continue it; a session whose last turn is older than
//! `SESSION_TTL_DAYS` is started again at turn 0. Each append states what it
//! found (a new session, the last turn it read, the expired conversation it
//! replaces) and the store refuses it if that changed; then the session is read
//! again and the decision made again, so ownership and expiry are never decided
//! by a read that another writer has overtaken.

use std::sync::Arc;

use crate::analytics;
use crate::answer::{Answer, AnswerError, AnswerEvents, Answerer};
use crate::clock::Clock;
use crate::domain::{may_access, CustomerId, NewTurn, QueryRequest, Retention, SessionId};
use crate::storage::{Appended, Expectation, GuardedStore, StorageBudget, StorageError, Window};

/// Appends per turn; each refused one means another writer changed the session.
const MAX_APPEND_ATTEMPTS: usize = 64;

/// The outcome of one question.
#[derive(Debug, Clone)]
pub struct Reply {
    pub answer: Answer,
    pub session_id: Option<SessionId>,
    pub turn: Option<u64>,
    pub persisted: bool,
    pub history_turns: usize,
    pub warnings: Vec<String>,
}

impl Reply {
    /// An answer whose turn was not stored.
    fn unsaved(
        answer: Answer,
        session_id: Option<SessionId>,
        history_turns: usize,
        warnings: Vec<String>,
    ) -> Self {
        Self {
            answer,
            session_id,
            turn: None,
            persisted: false,
            history_turns,
            warnings,
        }
    }
}

/// Why a question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The session belongs to someone else: answered as if it did not exist.
    #[error("no conversation {0}")]
    NotFound(SessionId),
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

pub struct Conversations {
    answerer: Arc<dyn Answerer>,
    in_process: GuardedStore,
    durable: Option<GuardedStore>,
    max_turns: usize,
    retention: Retention,
    clock: Clock,
}

/// What the new turn will be, decided from the session's window.
struct Plan {
    /// The window the turn follows (empty when it starts a conversation).
    window: Window,
    /// What the store must still find for the turn to be stored.
    expected: Expectation,
    /// Who the turn is stored for: the conversation's owner, or the asker when the
    /// conversation starts with this turn.
    owner: Option<CustomerId>,
}

fn storage_warning(what: &str, error: &StorageError) -> String {
    format!("{what}: {error}")
}

impl Conversations {
    /// `in_process` answers for sessions without `enable_persistence`, `durable` (when
    /// storage is configured) for those with it.
    pub fn new(
        answerer: Arc<dyn Answerer>,
        in_process: GuardedStore,
        durable: Option<GuardedStore>,
        max_turns: usize,
        retention: Retention,
        clock: Clock,
    ) -> Self {
        Self {
            answerer,
            in_process,
            durable,
            max_turns,
            retention,
            clock,
        }
    }

    /// The durable store, when storage is configured.
    pub fn durable_storage(&self) -> Option<&GuardedStore> {
        self.durable.as_ref()
    }

    /// Answers `request`, reporting the answer's progress to `events`. A session
    /// owned by someone other than the request's `customer_id` is
    /// [`AskError::NotFound`]; an expired session is started again from turn 0. The turn is stored within this future, after the answer is complete:
    /// dropped before (the caller went away), it stores nothing.
    pub async fn ask(
        &self,
        request: QueryRequest,
        events: AnswerEvents,
    ) -> Result<Reply, AskError> {
        let QueryRequest {
            question,
            session_id,
            enable_persistence,
            customer_id,
            metadata,
            ..
        } = request;
        let mut warnings = Vec::new();

        let Some(session_id) = session_id else {
            if enable_persistence {
                warnings.push(
                    "enable_persistence was ignored: it needs a session_id; answered statelessly"
                        .to_owned(),
                );
            }
            let answer = self
                .answerer
                .answer(question.as_str(), &[], &events)
                .await?;
            return Ok(Reply::unsaved(answer, None, 0, warnings));
        };

        let store = match (enable_persistence, &self.durable) {
            (false, _) => &self.in_process,
            (true, Some(durable)) => durable,
            (true, None) => {
                warnings.push(
                    "durable storage is not configured: this turn was answered without history and not saved"
                        .to_owned(),
                );
                let answer = self
                    .answerer
                    .answer(question.as_str(), &[], &events)
                    .await?;
                return Ok(Reply::unsaved(answer, Some(session_id), 0, warnings));
            }
        };

        let budget = store.budget();
        let asker = customer_id.as_ref();
        let plan = match self.load(store, budget, &session_id).await {
            Ok(window) => {
                if window.dropped > 0 {
                    warnings.push(format!(
                        "this conversation outgrew the in-process memory cap (SESSION_MEMORY_MAX_MB): its first {} turns were dropped, the newest are kept",
                        window.dropped
                    ));
                }
                Some(self.plan(window, &session_id, asker)?)
            }
            Err(error) => {
                tracing::warn!(%error, "history not loaded");
                warnings.push(storage_warning(
                    "history could not be loaded, so this answer ignores earlier turns",
                    &error,
                ));
                None
            }
        };
        let history = plan.as_ref().map_or(&[][..], |p| &p.window.turns[..]);
        let answer = self
            .answerer
            .answer(question.as_str(), history, &events)
            .await?;
        let history_turns = history.len();

        let plan = match plan {
            Some(plan) => Some(plan),
            // Storage may answer again by now (the breaker lets calls through once
            // others succeed): the turn is kept if its conversation can be checked.
            None => match self.load(store, budget, &session_id).await {
                Ok(window) => Some(self.plan(window, &session_id, asker)?),
                Err(_) => None,
            },
        };
        let Some(plan) = plan else {
            warnings.push(
                "this turn was not saved: the conversation it continues could not be read"
                    .to_owned(),
            );
            return Ok(Reply::unsaved(
                answer,
                Some(session_id),
                history_turns,
                warnings,
            ));
        };
        let turn = NewTurn {
            user: question.as_str().to_owned(),
            assistant: answer.text.clone(),
            metadata_json: metadata.as_json().to_owned(),
            timestamp: self.clock.now(),
            owner: None,
        };
        let (number, turn) = match self
            .append(store, budget, &session_id, asker, plan, turn)
            .await?
        {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "turn not saved");
                warnings.push(storage_warning("this turn was not saved", &error));
                return Ok(Reply::unsaved(
                    answer,
                    Some(session_id),
                    history_turns,
                    warnings,
                ));
            }
        };
        // The listing entry and the figures at the same time: neither undoes the turn.
        let listed = async {
            match turn.owner {
                Some(_) => {
                    store
                        .update_listing(budget, &session_id, number, &turn)
                        .await
                }
                None => Ok(()),
            }
        };
        let counted = analytics::count_turn(store, budget, &session_id, number, &turn);
        if let (Err(error), ()) = tokio::join!(listed, counted) {
            tracing::warn!(%error, "conversation list not updated");
            warnings.push(storage_warning(
                "this turn was saved, but the list of conversations was not updated",
                &error,
            ));
        }
        Ok(Reply {
            answer,
            session_id: Some(session_id),
            turn: Some(number),
            persisted: enable_persistence,
            history_turns,
            warnings,
        })
    }

    /// The window of `session`: the one `store` holds (this process stored the
    /// session's last turn), else read.
    async fn load(
        &self,
        store: &GuardedStore,
        budget: StorageBudget,
        session: &SessionId,
    ) -> Result<Window, StorageError> {
        if let Some(window) = store.held_window(session) {
            return Ok(window);
        }
        store.recent(budget, session, self.max_turns).await
    }

    /// Decides what a turn asked by `asker` does to the session whose window is
    /// `window`: starts it, continues it, or starts it again when it has expired.
    /// Someone else's conversation is [`AskError::NotFound`].
    fn plan(
        &self,
        window: Window,
        session: &SessionId,
        asker: Option<&CustomerId>,
    ) -> Result<Plan, AskError> {
        let Some(last) = window.turns.last() else {
            return Ok(Plan {
                expected: window.continuation(),
                window,
                owner: asker.cloned(),
            });
        };
        if self.retention.is_expired(last.timestamp, self.clock.now()) {
            return Ok(Plan {
                expected: window.restart(),
                window: Window::default(),
                owner: asker.cloned(),
            });
        }
        if !may_access(window.owner.as_ref(), asker) {
            return Err(AskError::NotFound(session.clone()));
        }
        Ok(Plan {
            expected: window.continuation(),
            owner: window.owner.clone(),
            window,
        })
    }

    /// Stores `turn` as `plan` says; when the session changed meanwhile, reloads it
    /// and decides again (which may find it someone else's). The stored turn and its
    /// number, or why storage failed.
    async fn append(
        &self,
        store: &GuardedStore,
        budget: StorageBudget,
        session: &SessionId,
        asker: Option<&CustomerId>,
        mut plan: Plan,
        turn: NewTurn,
    ) -> Result<Result<(u64, NewTurn), StorageError>, AskError> {
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let turn = NewTurn {
                owner: plan.owner.clone(),
                ..turn.clone()
            };
            let appended = store
                .append(budget, session, turn.clone(), plan.expected.clone())
                .await;
            match appended {
                Ok(Appended::Stored { number, version }) => {
                    let window =
                        plan.window
                            .followed_by(turn.clone().at(number), version, self.max_turns);
                    store.hold_window(session, window);
                    return Ok(Ok((number, turn)));
                }
                Ok(Appended::Changed) => {
                    store.window_refused(session);
                    match store.recent(budget, session, self.max_turns).await {
                        Ok(window) => plan = self.plan(window, session, asker)?,
                        Err(error) => return Ok(Err(error)),
                    }
                }
                Err(error) => {
                    store.forget_window(session);
                    return Ok(Err(error));
                }
            }
        }
        Ok(Err(StorageError::Unavailable(format!(
            "too much contention: the session changed {MAX_APPEND_ATTEMPTS} times in a row"
        ))))
    }
}
