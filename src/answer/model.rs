//! Answers written by a language model, grounded on retrieved passages, with the
//! conversation so far in the prompt.

use std::sync::Arc;

use async_trait::async_trait;

use super::chat::ChatModel;
use super::prompt::{grounded, standalone_query, standalone_query_request};
use super::retriever::Retriever;
use super::{Answer, AnswerError, Answerer, Mode};
use crate::domain::Turn;

/// Passages retrieved for one question.
const PASSAGES: usize = 5;

pub struct ModelAnswerer {
    mode: Mode,
    chat: Arc<dyn ChatModel>,
    retriever: Arc<dyn Retriever>,
    /// The most one prompt may hold, in estimated tokens.
    context_tokens: usize,
}

impl ModelAnswerer {
    pub fn new(
        mode: Mode,
        chat: Arc<dyn ChatModel>,
        retriever: Arc<dyn Retriever>,
        context_tokens: usize,
    ) -> Self {
        Self {
            mode,
            chat,
            retriever,
            context_tokens,
        }
    }

    /// What to search for: a follow-up ("What copybooks does it use?") names
    /// nothing a search can find, so the model first rewrites it using the
    /// conversation; a first question is searched as asked.
    async fn search_query(&self, question: &str, history: &[Turn]) -> Result<String, AnswerError> {
        if history.is_empty() {
            return Ok(question.to_owned());
        }
        let request = standalone_query_request(question, history, self.context_tokens);
        let reply = self.chat.complete(&request).await?;
        let query = standalone_query(&reply, question);
        tracing::debug!(
            query_chars = query.chars().count(),
            "follow-up rewritten for search"
        );
        Ok(query)
    }
}

#[async_trait]
impl Answerer for ModelAnswerer {
    async fn answer(&self, question: &str, history: &[Turn]) -> Result<Answer, AnswerError> {
        let query = self.search_query(question, history).await?;
        let passages = self.retriever.retrieve(&query, PASSAGES).await?;
        let prompt = grounded(question, history, &passages, self.context_tokens);
        tracing::debug!(
            passages = prompt.passages_used,
            messages = prompt.messages.len(),
            "prompt assembled"
        );
        let text = self.chat.complete(&prompt.messages).await?;
        Ok(Answer {
            text: text.trim().to_owned(),
            sources: passages[..prompt.passages_used]
                .iter()
                .map(|p| p.source.clone())
                .collect(),
            mode: self.mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::chat::{ChatMessage, Role};
    use crate::answer::prompt::STANDALONE_QUERY;
    use crate::answer::retriever::Retrieved;
    use crate::answer::Source;
    use std::sync::Mutex;

    /// Replies to a rewrite request with `rewritten`, to anything else with "the answer".
    struct ScriptedModel {
        rewritten: &'static str,
        seen: Mutex<Vec<Vec<ChatMessage>>>,
    }

    #[async_trait]
    impl ChatModel for ScriptedModel {
        async fn complete(&self, messages: &[ChatMessage]) -> Result<String, AnswerError> {
            self.seen.lock().unwrap().push(messages.to_vec());
            if messages[0].content == STANDALONE_QUERY {
                Ok(self.rewritten.to_owned())
            } else {
                Ok(" the answer \n".to_owned())
            }
        }
    }

    /// Finds one passage, named after the query, and remembers the queries.
    #[derive(Default)]
    struct EchoRetriever {
        queries: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Retriever for EchoRetriever {
        async fn retrieve(&self, query: &str, _: usize) -> Result<Vec<Retrieved>, AnswerError> {
            self.queries.lock().unwrap().push(query.to_owned());
            Ok(vec![Retrieved {
                source: Source {
                    id: format!("doc-for-{query}"),
                    title: "t".into(),
                    snippet: "s".into(),
                    score: 1.0,
                },
                text: "passage text".into(),
            }])
        }
    }

    fn answerer() -> (ModelAnswerer, Arc<ScriptedModel>, Arc<EchoRetriever>) {
        let model = Arc::new(ScriptedModel {
            rewritten: "\"LONPF2 copybooks\"",
            seen: Mutex::default(),
        });
        let retriever = Arc::new(EchoRetriever::default());
        let answerer = ModelAnswerer::new(Mode::OpenAi, model.clone(), retriever.clone(), 6000);
        (answerer, model, retriever)
    }

    #[tokio::test]
    async fn a_first_question_is_searched_as_asked_and_answered_once() {
        let (answerer, model, retriever) = answerer();
        let answer = answerer.answer("What does LONPF2 do?", &[]).await.unwrap();
        assert_eq!(answer.text, "the answer");
        assert_eq!(answer.mode, Mode::OpenAi);
        assert_eq!(answer.sources[0].id, "doc-for-What does LONPF2 do?");
        assert_eq!(*retriever.queries.lock().unwrap(), ["What does LONPF2 do?"]);
        assert_eq!(model.seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_follow_up_is_searched_by_its_rewrite_and_answered_with_the_history() {
        let (answerer, model, retriever) = answerer();
        let history = [Turn::exchange("What does LONPF2 do?", "It posts payments.")];
        let answer = answerer
            .answer("What copybooks does it use?", &history)
            .await
            .unwrap();
        assert_eq!(*retriever.queries.lock().unwrap(), ["LONPF2 copybooks"]);
        assert_eq!(answer.sources[0].id, "doc-for-LONPF2 copybooks");
        let seen = model.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[0][1].content.contains("User: What does LONPF2 do?"));
        let roles: Vec<Role> = seen[1].iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::System, Role::User, Role::Assistant, Role::User]
        );
        assert_eq!(seen[1][3].content, "What copybooks does it use?");
    }
}
