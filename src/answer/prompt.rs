//! What the model is sent, kept inside a token budget so that a long conversation
//! never overflows its context.
//!
//! No tokenizer is shipped, so sizes are estimates: about four characters per
//! token (the usual rule of thumb for English and code in OpenAI's tokenizers),
//! rounded up, plus a few tokens of framing per message.

use super::chat::{ChatMessage, Role};
use super::retriever::Retrieved;
use crate::domain::Turn;

const CHARS_PER_TOKEN: usize = 4;
const TOKENS_PER_MESSAGE: usize = 4;
/// A passage longer than this is cut: a search index may hold whole documents.
const PASSAGE_CHARS: usize = 4_000;

const GROUNDING: &str = "You answer questions about the documents of a codebase. \
Answer from the passages below and the conversation so far. \
Cite each passage you rely on by its id in square brackets, for example [programs/PAY.cbl]. \
If the passages do not hold the answer, say so instead of guessing.";

/// The instruction that turns a follow-up into a search query.
pub const STANDALONE_QUERY: &str = "Rewrite the follow-up question as a standalone search query \
for the documents of a codebase. Replace words that point back (it, its, that program, them) \
with what they refer to in the conversation, and keep the names of programs, files and terms. \
Reply with the query only.";

pub fn estimated_tokens(message: &ChatMessage) -> usize {
    message.content.chars().count().div_ceil(CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE
}

fn turn_tokens(turn: &Turn) -> usize {
    estimated_tokens(&ChatMessage::new(Role::User, turn.user.as_str()))
        + estimated_tokens(&ChatMessage::new(Role::Assistant, turn.assistant.as_str()))
}

/// The latest turns that fit in `budget` tokens: older turns go first.
fn recent_turns_within(history: &[Turn], budget: usize) -> &[Turn] {
    let mut used = 0;
    let mut first = history.len();
    for (n, turn) in history.iter().enumerate().rev() {
        used += turn_tokens(turn);
        if used > budget {
            break;
        }
        first = n;
    }
    &history[first..]
}

/// The messages of an answer, and how many of the passages they carry.
#[derive(Debug)]
pub struct GroundedPrompt {
    pub messages: Vec<ChatMessage>,
    pub passages_used: usize,
}

fn grounding(passages: &[Retrieved]) -> ChatMessage {
    let mut text = String::from(GROUNDING);
    if passages.is_empty() {
        text.push_str("\n\nNo passages matched this question.");
    } else {
        text.push_str("\n\nPassages:");
    }
    for passage in passages {
        let body = match passage.text.char_indices().nth(PASSAGE_CHARS) {
            Some((cut, _)) => format!("{}…", &passage.text[..cut]),
            None => passage.text.clone(),
        };
        text.push_str(&format!(
            "\n\n[{}] {}\n{}",
            passage.source.id,
            passage.source.title,
            body.trim_end()
        ));
    }
    ChatMessage::new(Role::System, text)
}

/// The system prompt grounded on `passages`, then the conversation's turns as
/// alternating user and assistant messages, then the question. Within `budget`,
/// the passages come first (the best of them, when not all fit beside the
/// question), then as many of the latest turns as fit.
pub fn grounded(
    question: &str,
    history: &[Turn],
    passages: &[Retrieved],
    budget: usize,
) -> GroundedPrompt {
    let question = ChatMessage::new(Role::User, question);
    let mut passages_used = passages.len();
    let mut system = grounding(passages);
    while passages_used > 0 && estimated_tokens(&system) + estimated_tokens(&question) > budget {
        passages_used -= 1;
        system = grounding(&passages[..passages_used]);
    }
    let left = budget.saturating_sub(estimated_tokens(&system) + estimated_tokens(&question));
    let turns = recent_turns_within(history, left);
    let mut messages = Vec::with_capacity(turns.len() * 2 + 2);
    messages.push(system);
    for turn in turns {
        messages.push(ChatMessage::new(Role::User, turn.user.as_str()));
        messages.push(ChatMessage::new(Role::Assistant, turn.assistant.as_str()));
    }
    messages.push(question);
    GroundedPrompt {
        messages,
        passages_used,
    }
}

/// Asks for `question` rewritten to stand on its own, given as much of the
/// conversation as fits in `budget`, as a transcript (as separate messages the
/// model would tend to answer the question instead).
pub fn standalone_query_request(
    question: &str,
    history: &[Turn],
    budget: usize,
) -> Vec<ChatMessage> {
    let system = ChatMessage::new(Role::System, STANDALONE_QUERY);
    let ask = format!("\n\nFollow-up question: {question}");
    let fixed =
        estimated_tokens(&system) + estimated_tokens(&ChatMessage::new(Role::User, ask.as_str()));
    let mut transcript = String::from("Conversation:");
    for turn in recent_turns_within(history, budget.saturating_sub(fixed)) {
        transcript.push_str(&format!(
            "\n\nUser: {}\nAssistant: {}",
            turn.user, turn.assistant
        ));
    }
    transcript.push_str(&ask);
    vec![system, ChatMessage::new(Role::User, transcript)]
}

/// The search query in a rewrite's reply; the question itself when the reply is empty.
pub fn standalone_query(reply: &str, question: &str) -> String {
    let query = reply
        .trim()
        .trim_matches(|c| matches!(c, '"' | '\'' | '`'))
        .trim();
    if query.is_empty() {
        question.to_owned()
    } else {
        query.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Source;

    fn turn(n: u64, chars: usize) -> Turn {
        let answer = format!("answer {n} {}", "x".repeat(chars));
        Turn::exchange(&format!("question {n}"), &answer)
    }

    fn passage(id: &str, chars: usize) -> Retrieved {
        Retrieved {
            source: Source {
                id: id.into(),
                title: id.into(),
                snippet: String::new(),
                score: 1.0,
            },
            text: "p".repeat(chars),
        }
    }

    fn total(messages: &[ChatMessage]) -> usize {
        messages.iter().map(estimated_tokens).sum()
    }

    #[test]
    fn tokens_are_estimated_at_four_characters_plus_framing() {
        assert_eq!(estimated_tokens(&ChatMessage::new(Role::User, "")), 4);
        assert_eq!(estimated_tokens(&ChatMessage::new(Role::User, "abcde")), 6);
        assert_eq!(estimated_tokens(&ChatMessage::new(Role::User, "ééé")), 5);
    }

    #[test]
    fn the_prompt_is_grounding_then_turns_in_order_then_the_question() {
        let history = [turn(0, 10), turn(1, 10)];
        let prompt = grounded("and then?", &history, &[passage("a.cbl", 50)], 6000);
        let shape: Vec<(Role, &str)> = prompt
            .messages
            .iter()
            .map(|m| (m.role, m.content.split(' ').take(2).last().unwrap_or("")))
            .collect();
        assert_eq!(prompt.messages[0].role, Role::System);
        assert!(prompt.messages[0].content.contains("[a.cbl] a.cbl\npppp"));
        assert_eq!(
            shape[1..],
            [
                (Role::User, "0"),
                (Role::Assistant, "0"),
                (Role::User, "1"),
                (Role::Assistant, "1"),
                (Role::User, "then?"),
            ]
        );
        assert_eq!(prompt.passages_used, 1);
    }

    #[test]
    fn the_oldest_turns_are_dropped_to_fit_the_budget() {
        let history: Vec<Turn> = (0..20).map(|n| turn(n, 400)).collect();
        let budget = 1000;
        let prompt = grounded("next?", &history, &[passage("a.cbl", 800)], budget);
        assert!(total(&prompt.messages) <= budget);
        let kept = (prompt.messages.len() - 2) / 2;
        assert!((1..20).contains(&kept), "{kept} turns kept");
        let first_kept = &prompt.messages[1].content;
        assert_eq!(first_kept, &format!("question {}", 20 - kept));
        assert_eq!(prompt.passages_used, 1);
    }

    #[test]
    fn the_weakest_passages_go_when_even_they_do_not_fit() {
        let passages = [passage("a", 3000), passage("b", 3000), passage("c", 3000)];
        let prompt = grounded("q", &[turn(0, 10)], &passages, 1600);
        assert_eq!(prompt.passages_used, 2);
        assert!(prompt.messages[0].content.contains("[b]"));
        assert!(!prompt.messages[0].content.contains("[c]"));
        assert!(total(&prompt.messages) <= 1600);
    }

    #[test]
    fn long_passages_are_cut() {
        let prompt = grounded("q", &[], &[passage("a", 10_000)], 1_000_000);
        let carried = prompt.messages[0].content.matches('p').count();
        assert!(carried < 4_100, "{carried}");
    }

    #[test]
    fn the_rewrite_request_carries_the_latest_turns_that_fit() {
        let history: Vec<Turn> = (0..10).map(|n| turn(n, 400)).collect();
        let messages = standalone_query_request("What copybooks does it use?", &history, 800);
        assert_eq!(messages[0].content, STANDALONE_QUERY);
        let transcript = &messages[1].content;
        assert!(transcript.contains("User: question 9\nAssistant: answer 9"));
        assert!(!transcript.contains("question 0"));
        assert!(transcript.ends_with("Follow-up question: What copybooks does it use?"));
        assert!(total(&messages) <= 800);
    }

    #[test]
    fn a_rewrite_reply_is_unquoted_and_never_empty() {
        assert_eq!(
            standalone_query(" \"LONPF2 copybooks\"\n", "q"),
            "LONPF2 copybooks"
        );
        assert_eq!(standalone_query("  ", "the question"), "the question");
    }
}
