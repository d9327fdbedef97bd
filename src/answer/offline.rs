//! The default answerer: no model, no keys. It answers with the best passages of
//! the documents, and resolves follow-up questions against the conversation.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Answer, AnswerError, AnswerEvents, Answerer, DocumentIndex, Hit, Mode};
use crate::domain::Turn;

const PASSAGES_QUOTED: usize = 3;
/// Words by which a question points back at what was discussed before.
const REFERRING_WORDS: &[&str] = &[
    "it", "its", "it's", "this", "that", "these", "those", "they", "them", "their", "there",
    "same", "above", "previous", "former", "latter",
];

pub struct OfflineAnswerer {
    index: Arc<DocumentIndex>,
}

impl OfflineAnswerer {
    pub fn new(index: Arc<DocumentIndex>) -> Self {
        Self { index }
    }

    /// What a follow-up refers to. A question that names no document but points
    /// back ("What copybooks does *it* use?") is about the documents named by the
    /// most recent turn that named any: its question first, else the first source
    /// its answer cited. Any other question stands on its own.
    pub fn follow_up_context(&self, question: &str, history: &[Turn]) -> Vec<String> {
        let refers_back = question
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .any(|word| REFERRING_WORDS.contains(&word.to_lowercase().as_str()));
        if !refers_back || !self.index.titles_in(question).is_empty() {
            return Vec::new();
        }
        for turn in history.iter().rev() {
            let asked = self.index.titles_in(&turn.user);
            if !asked.is_empty() {
                return asked;
            }
            if let Some(cited) = self.index.titles_in(&turn.assistant).into_iter().next() {
                return vec![cited];
            }
        }
        Vec::new()
    }

    /// The answer: an introduction, then the best passages, each quoted from
    /// [`PASSAGE_START`] on.
    async fn compose(&self, question: &str, history: &[Turn]) -> Answer {
        let context = self.follow_up_context(question, history);
        let hits = self
            .index
            .best_passages(question, &context, PASSAGES_QUOTED)
            .await;
        if hits.is_empty() {
            return Answer {
                text: "I found nothing in the indexed documents about that. Try naming a program, copybook or job.".into(),
                sources: Vec::new(),
                mode: Mode::Offline,
            };
        }
        let mut text = String::from("From the indexed documents");
        if !context.is_empty() {
            text.push_str(&format!(" (following up on {})", context.join(", ")));
        }
        text.push_str(":\n");
        for (n, hit) in hits.iter().enumerate() {
            let p = hit.passage;
            text.push_str(&format!(
                "\n[{}] {} (lines {}-{}):\n{}\n",
                n + 1,
                p.doc_id,
                p.first_line,
                p.last_line,
                p.text.trim_end()
            ));
        }
        Answer {
            text,
            sources: hits.iter().map(Hit::source).collect(),
            mode: Mode::Offline,
        }
    }
}

/// Where a quoted passage begins in an offline answer.
const PASSAGE_START: &str = "\n[";

#[async_trait]
impl Answerer for OfflineAnswerer {
    /// The answer streams as its introduction, then one piece per passage.
    async fn answer(
        &self,
        question: &str,
        history: &[Turn],
        events: &AnswerEvents,
    ) -> Result<Answer, AnswerError> {
        let answer = self.compose(question, history).await;
        events.grounded(answer.mode, &answer.sources, history);
        let mut start = 0;
        for (passage, _) in answer.text.match_indices(PASSAGE_START) {
            events.text(&answer.text[start..passage]);
            start = passage;
        }
        events.text(&answer.text[start..]);
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::{AnswerEvent, Document};

    fn answerer() -> OfflineAnswerer {
        let docs = ["programs/LONPF2.cbl", "programs/LONES1.cbl"].map(|id| Document {
            id: id.into(),
            text: format!("{id} body"),
        });
        OfflineAnswerer::new(Arc::new(DocumentIndex::build(&docs).unwrap()))
    }

    #[test]
    fn a_question_pointing_back_takes_the_latest_named_documents() {
        let a = answerer();
        let history = [
            Turn::exchange("What does LONES1 do?", "…"),
            Turn::exchange("What does LONPF2 do?", "…"),
            Turn::exchange("Thanks", "[1] programs/LONES1.cbl"),
        ];
        assert_eq!(
            a.follow_up_context("What copybooks does it use?", &history),
            ["LONES1"]
        );
        assert_eq!(
            a.follow_up_context("And its inputs?", &history[..2]),
            ["LONPF2"]
        );
    }

    #[tokio::test]
    async fn the_answer_streams_its_sources_then_one_piece_per_passage() {
        let a = answerer();
        let (events, mut received) = AnswerEvents::channel();
        let answer = a
            .answer("What do LONPF2 and LONES1 do?", &[], &events)
            .await
            .unwrap();
        drop(events);
        let Some(AnswerEvent::Grounded {
            mode,
            sources,
            history_turns,
        }) = received.recv().await
        else {
            panic!("sources come first");
        };
        assert_eq!(
            (mode, &sources, history_turns),
            (Mode::Offline, &answer.sources, 0)
        );
        let mut pieces = Vec::new();
        while let Some(event) = received.recv().await {
            let AnswerEvent::Text(piece) = event else {
                panic!("sources come once");
            };
            pieces.push(piece);
        }
        assert_eq!(pieces.len(), 1 + answer.sources.len());
        assert!(pieces[1].starts_with("\n[1] "));
        assert_eq!(pieces.concat(), answer.text);
    }

    #[test]
    fn a_question_that_stands_alone_gets_no_context() {
        let a = answerer();
        let history = [Turn::exchange("What does LONPF2 do?", "…")];
        assert!(a
            .follow_up_context("How are late fees computed?", &history)
            .is_empty());
        assert!(a
            .follow_up_context("What does LONES1 do with it?", &history)
            .is_empty());
        assert!(a.follow_up_context("What does it use?", &[]).is_empty());
    }
}
