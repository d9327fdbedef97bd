//! Answers written by a language model, grounded on retrieved passages, with the
//! conversation so far in the prompt.

use std::sync::Arc;

use async_trait::async_trait;

use super::chat::ChatModel;
use super::prompt::{grounded, standalone_query, standalone_query_request};
use super::retriever::Retriever;
use super::{Answer, AnswerError, AnswerEvents, Answerer, Mode};
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
    /// The model's reply streams as it is written, without the whitespace around it.
    async fn answer(
        &self,
        question: &str,
        history: &[Turn],
        events: &AnswerEvents,
    ) -> Result<Answer, AnswerError> {
        let query = self.search_query(question, history).await?;
        let passages = self.retriever.retrieve(&query, PASSAGES).await?;
        let prompt = grounded(question, history, &passages, self.context_tokens);
        tracing::debug!(
            passages = prompt.passages_used,
            messages = prompt.messages.len(),
            "prompt assembled"
        );
        let sources: Vec<_> = passages[..prompt.passages_used]
            .iter()
            .map(|p| p.source.clone())
            .collect();
        events.grounded(self.mode, &sources, history);
        let mut trimmed = Trimmed::default();
        let text = self
            .chat
            .stream(&prompt.messages, &mut |piece| {
                events.text(&trimmed.piece(piece));
            })
            .await?;
        Ok(Answer {
            text: text.trim().to_owned(),
            sources,
            mode: self.mode,
        })
    }
}

/// The pieces of a text without the whitespace around the whole: leading
/// whitespace is dropped, trailing whitespace held back until more text follows.
#[derive(Default)]
struct Trimmed {
    started: bool,
    held: String,
}

impl Trimmed {
    /// What of `piece` may be passed on now.
    fn piece(&mut self, piece: &str) -> String {
        let piece = if self.started {
            piece
        } else {
            piece.trim_start()
        };
        let body = piece.trim_end();
        if body.is_empty() {
            if self.started {
                self.held.push_str(piece);
            }
            return String::new();
        }
        self.started = true;
        let passed = std::mem::take(&mut self.held) + body;
        self.held.push_str(&piece[body.len()..]);
        passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::chat::{ChatMessage, Role};
    use crate::answer::prompt::STANDALONE_QUERY;
    use crate::answer::retriever::Retrieved;
    use crate::answer::{AnswerEvent, Source};
    use std::sync::Mutex;

    /// Replies to a rewrite request with `rewritten`, to anything else with "the answer".
    struct ScriptedModel {
        rewritten: &'static str,
        seen: Mutex<Vec<Vec<ChatMessage>>>,
    }

    /// The answer, in the pieces the model streams it in.
    const ANSWER_PIECES: [&str; 5] = ["\n ", " the", " ", "answer", " \n"];

    #[async_trait]
    impl ChatModel for ScriptedModel {
        async fn complete(&self, messages: &[ChatMessage]) -> Result<String, AnswerError> {
            self.seen.lock().unwrap().push(messages.to_vec());
            assert_eq!(
                messages[0].content, STANDALONE_QUERY,
                "only rewrites are not streamed"
            );
            Ok(self.rewritten.to_owned())
        }

        async fn stream(
            &self,
            messages: &[ChatMessage],
            on_text: &mut (dyn for<'t> FnMut(&'t str) + Send),
        ) -> Result<String, AnswerError> {
            self.seen.lock().unwrap().push(messages.to_vec());
            for piece in ANSWER_PIECES {
                on_text(piece);
            }
            Ok(ANSWER_PIECES.concat())
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
        let (events, mut received) = AnswerEvents::channel();
        let answer = answerer
            .answer("What does LONPF2 do?", &[], &events)
            .await
            .unwrap();
        drop(events);
        assert_eq!(answer.text, "the answer");
        let Some(AnswerEvent::Grounded { sources, .. }) = received.recv().await else {
            panic!("sources come first");
        };
        assert_eq!(sources, answer.sources);
        let mut pieces = Vec::new();
        while let Some(AnswerEvent::Text(piece)) = received.recv().await {
            pieces.push(piece);
        }
        assert_eq!(pieces, ["the", " answer"]);
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
            .answer(
                "What copybooks does it use?",
                &history,
                &AnswerEvents::none(),
            )
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

    #[test]
    fn pieces_joined_are_the_trimmed_text_whatever_the_cut() {
        let text = " \n  LONPF2 posts payments.\n\n It reads LNMASTR.  \n";
        for size in 1..=text.len() {
            let mut trimmed = Trimmed::default();
            let joined: String = text
                .as_bytes()
                .chunks(size)
                .map(|chunk| trimmed.piece(std::str::from_utf8(chunk).unwrap()))
                .collect();
            assert_eq!(joined, text.trim(), "pieces of {size}");
        }
    }
}
