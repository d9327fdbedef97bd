//! The conversation service: memory semantics of `POST /api/query` (PRODUCT.md).
//!
//! - no session id: stateless;
//! - a session id: in-process memory;
//! - a session id with `enable_persistence`: durable memory, degrading (answer
//!   still given, `persisted: false`, a warning) when storage fails.
//!
//! Either way a session belongs to the `customer_id` of its turn 0, and only that
//! customer may continue it; a session whose last turn is older than
//! `SESSION_TTL_DAYS` is deleted and started again.

use std::sync::Arc;

use chrono::Utc;

use crate::answer::{Answer, AnswerError, AnswerEvents, Answerer};
use crate::domain::{
    may_access, owner_of, CustomerId, NewTurn, QueryRequest, Retention, SessionId, Turn,
};
use crate::storage::{GuardedStore, StorageBudget, StorageError};

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
}

/// The conversation a turn continues, once loaded and checked.
struct Continued {
    /// The turns handed to the answerer.
    history: Vec<Turn>,
    /// Who the new turn is stored for: the conversation's owner, or the asker when
    /// the conversation starts with this turn.
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
    ) -> Self {
        Self {
            answerer,
            in_process,
            durable,
            max_turns,
            retention,
        }
    }

    /// The durable store, when storage is configured.
    pub fn durable_storage(&self) -> Option<&GuardedStore> {
        self.durable.as_ref()
    }

    /// Answers `request`, reporting the answer's progress to `events`. A session
    /// owned by someone other than the request's `customer_id` is
    /// [`AskError::NotFound`]; an expired session is deleted and started again from
    /// turn 0. The turn is stored within this future, after the answer is complete:
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
        let continued = self
            .continue_conversation(store, budget, &session_id, asker, &mut warnings)
            .await?;
        let history = continued.as_ref().map_or(&[][..], |c| &c.history[..]);
        let answer = self
            .answerer
            .answer(question.as_str(), history, &events)
            .await?;
        let history_turns = history.len();

        let continued = match continued {
            Some(continued) => Some(continued),
            // Storage may answer again by now (the breaker lets calls through once
            // others succeed): the turn is kept if its conversation can be checked.
            None => {
                self.continue_conversation(store, budget, &session_id, asker, &mut Vec::new())
                    .await?
            }
        };
        let Some(Continued { owner, .. }) = continued else {
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
            timestamp: Utc::now(),
            owner,
        };
        let listed = turn.owner.is_some().then(|| turn.clone());
        let number = match store.append(budget, &session_id, turn).await {
            Ok(number) => number,
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
        if let Some(turn) = listed {
            if let Err(error) = store
                .update_listing(budget, &session_id, number, &turn)
                .await
            {
                tracing::warn!(%error, "conversation list not updated");
                warnings.push(storage_warning(
                    "this turn was saved, but the list of conversations was not updated",
                    &error,
                ));
            }
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

    /// Loads the window of `session` and decides what the new turn continues: the
    /// stored conversation, or a new one when there is none or it has expired (then
    /// it is deleted first). `None` when storage could not tell (a warning says so).
    async fn continue_conversation(
        &self,
        store: &GuardedStore,
        budget: StorageBudget,
        session: &SessionId,
        asker: Option<&CustomerId>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<Continued>, AskError> {
        let window = match store.recent(budget, session, self.max_turns).await {
            Ok(window) => window,
            Err(error) => {
                tracing::warn!(%error, "history not loaded");
                warnings.push(storage_warning(
                    "history could not be loaded, so this answer ignores earlier turns",
                    &error,
                ));
                return Ok(None);
            }
        };
        let new_conversation = Continued {
            history: Vec::new(),
            owner: asker.cloned(),
        };
        let Some(last) = window.turns.last() else {
            return Ok(Some(new_conversation));
        };
        if self.retention.is_expired(last.timestamp, Utc::now()) {
            return match store.delete(budget, session).await {
                Ok(_) => Ok(Some(new_conversation)),
                Err(error) => {
                    tracing::warn!(%error, "expired conversation not deleted");
                    warnings.push(storage_warning(
                        "the expired conversation could not be deleted, so this answer ignores it",
                        &error,
                    ));
                    Ok(None)
                }
            };
        }
        let owner = owner_of(&window.turns).cloned();
        if !may_access(owner.as_ref(), asker) {
            return Err(AskError::NotFound(session.clone()));
        }
        Ok(Some(Continued {
            history: window.turns,
            owner,
        }))
    }
}
