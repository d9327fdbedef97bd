//! The conversation service: memory semantics of `POST /api/query` (PRODUCT.md).
//!
//! - no session id: stateless;
//! - a session id: in-process memory;
//! - a session id with `enable_persistence`: durable memory, degrading (answer
//!   still given, `persisted: false`, a warning) when storage fails.

use std::sync::Arc;

use chrono::Utc;

use crate::answer::{Answer, AnswerError, Answerer};
use crate::domain::{NewTurn, QueryRequest, SessionId};
use crate::storage::{ConversationStore, GuardedStore, InProcessStore, StorageError};

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

pub struct Conversations {
    answerer: Arc<dyn Answerer>,
    in_process: Arc<InProcessStore>,
    durable: Option<GuardedStore>,
    max_turns: usize,
}

fn storage_warning(what: &str, error: &StorageError) -> String {
    format!("{what}: {error}")
}

impl Conversations {
    pub fn new(
        answerer: Arc<dyn Answerer>,
        in_process: Arc<InProcessStore>,
        durable: Option<GuardedStore>,
        max_turns: usize,
    ) -> Self {
        Self {
            answerer,
            in_process,
            durable,
            max_turns,
        }
    }

    pub fn has_durable_storage(&self) -> bool {
        self.durable.is_some()
    }

    pub async fn ask(&self, request: QueryRequest) -> Result<Reply, AnswerError> {
        let QueryRequest {
            question,
            session_id,
            enable_persistence,
            customer_id,
            metadata,
        } = request;
        let mut warnings = Vec::new();

        let Some(session_id) = session_id else {
            if enable_persistence {
                warnings.push(
                    "enable_persistence was ignored: it needs a session_id; answered statelessly"
                        .to_owned(),
                );
            }
            let answer = self.answerer.answer(question.as_str(), &[]).await?;
            return Ok(Reply {
                answer,
                session_id: None,
                turn: None,
                persisted: false,
                history_turns: 0,
                warnings,
            });
        };

        let new_turn = |answer: &Answer| NewTurn {
            user: question.as_str().to_owned(),
            assistant: answer.text.clone(),
            metadata_json: metadata.as_json().to_owned(),
            timestamp: Utc::now(),
            owner: customer_id.clone(),
        };

        if !enable_persistence {
            let history = self
                .in_process
                .recent(&session_id, self.max_turns)
                .await
                .unwrap_or_default()
                .turns;
            let answer = self.answerer.answer(question.as_str(), &history).await?;
            let turn = self
                .in_process
                .append(&session_id, new_turn(&answer))
                .await
                .ok();
            return Ok(Reply {
                answer,
                session_id: Some(session_id),
                turn,
                persisted: false,
                history_turns: history.len(),
                warnings,
            });
        }

        let Some(durable) = &self.durable else {
            warnings.push(
                "durable storage is not configured: this turn was answered without history and not saved"
                    .to_owned(),
            );
            let answer = self.answerer.answer(question.as_str(), &[]).await?;
            return Ok(Reply {
                answer,
                session_id: Some(session_id),
                turn: None,
                persisted: false,
                history_turns: 0,
                warnings,
            });
        };

        let budget = durable.budget();
        let history = match durable.recent(budget, &session_id, self.max_turns).await {
            Ok(window) => window.turns,
            Err(error) => {
                tracing::warn!(%error, "history not loaded");
                warnings.push(storage_warning(
                    "history could not be loaded, so this answer ignores earlier turns",
                    &error,
                ));
                Vec::new()
            }
        };
        let answer = self.answerer.answer(question.as_str(), &history).await?;
        let (turn, persisted) = match durable.append(budget, &session_id, new_turn(&answer)).await {
            Ok(turn) => (Some(turn), true),
            Err(error) => {
                tracing::warn!(%error, "turn not saved");
                warnings.push(storage_warning("this turn was not saved", &error));
                (None, false)
            }
        };
        Ok(Reply {
            answer,
            session_id: Some(session_id),
            turn,
            persisted,
            history_turns: history.len(),
            warnings,
        })
    }
}
