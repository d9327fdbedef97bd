//! Searching a customer's conversations: which ones hold every word of a query,
//! and where. Words are runs of letters and digits (any script), compared in
//! lower case, so `LONPF2's` holds the words `lonpf2` and `s`, and `Zoë` matches
//! `ZOË`.

use std::collections::BTreeSet;

use super::Turn;

/// How many places one conversation shows for a search.
const MAX_MATCHES: usize = 3;
/// Characters of context kept before and after the matched word in a snippet.
const CONTEXT_BEFORE: usize = 40;
const CONTEXT_AFTER: usize = 100;

/// What a search looks for: the distinct words of `q`, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    words: BTreeSet<String>,
}

/// Who said the text a match was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One place a conversation holds a word of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub turn: u64,
    pub role: Role,
    /// The text around the first word of the query found there, on one line.
    pub snippet: String,
}

impl SearchQuery {
    /// `q` as a query; an error when it holds no word at all (blank, or only
    /// punctuation).
    pub fn parse(q: &str) -> Result<Self, String> {
        let words: BTreeSet<String> = word_spans(q).map(|(_, word)| word).collect();
        if words.is_empty() {
            return Err("q must contain at least one word (letters or digits)".into());
        }
        Ok(Self { words })
    }

    /// Where `turns` hold the query's words: `None` unless every word occurs
    /// somewhere in their questions or answers; then up to three places, in turn
    /// order, each with a snippet around a word of the query.
    pub fn matches(&self, turns: &[Turn]) -> Option<Vec<Match>> {
        let mut missing: BTreeSet<&str> = self.words.iter().map(String::as_str).collect();
        let mut found = Vec::new();
        for turn in turns {
            for (role, text) in [(Role::User, &turn.user), (Role::Assistant, &turn.assistant)] {
                let mut first = None;
                for (start, word) in word_spans(text) {
                    if self.words.contains(&word) {
                        missing.remove(word.as_str());
                        first.get_or_insert(start);
                    }
                }
                if let Some(start) = first.filter(|_| found.len() < MAX_MATCHES) {
                    found.push(Match {
                        turn: turn.index,
                        role,
                        snippet: snippet(text, start),
                    });
                }
            }
        }
        missing.is_empty().then_some(found)
    }
}

/// Each word of `text` (a run of letters and digits) with the byte offset it
/// starts at, lower-cased.
fn word_spans(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while chars.next_if(|(_, c)| !c.is_alphanumeric()).is_some() {}
        let (start, _) = *chars.peek()?;
        let mut word = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| c.is_alphanumeric()) {
            word.extend(c.to_lowercase());
        }
        Some((start, word))
    })
}

/// `text` around byte offset `at`, on one line, with an ellipsis where it was cut.
fn snippet(text: &str, at: usize) -> String {
    let before: Vec<char> = text[..at].chars().rev().take(CONTEXT_BEFORE + 1).collect();
    let after: Vec<char> = text[at..].chars().take(CONTEXT_AFTER + 1).collect();
    let cut_before = before.len() > CONTEXT_BEFORE;
    let cut_after = after.len() > CONTEXT_AFTER;
    let mut window: String = before.iter().take(CONTEXT_BEFORE).rev().collect();
    window.extend(after.iter().take(CONTEXT_AFTER));
    let one_line = window.split_whitespace().collect::<Vec<_>>().join(" ");
    format!(
        "{}{one_line}{}",
        if cut_before { "…" } else { "" },
        if cut_after { "…" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(index: u64, user: &str, assistant: &str) -> Turn {
        Turn {
            index,
            ..Turn::exchange(user, assistant)
        }
    }

    #[test]
    fn words_are_letters_and_digits_of_any_script_in_lower_case() {
        let words: Vec<String> = word_spans("What does LONPF2's ZOË-会话 do? 42")
            .map(|(_, w)| w)
            .collect();
        assert_eq!(
            words,
            ["what", "does", "lonpf2", "s", "zoë", "会话", "do", "42"]
        );
        let starts: Vec<usize> = word_spans("  a  bc").map(|(s, _)| s).collect();
        assert_eq!(starts, [2, 5]);
    }

    #[test]
    fn a_query_needs_a_word() {
        for blank in ["", "   ", "?!", "— …"] {
            assert!(SearchQuery::parse(blank).is_err(), "{blank:?}");
        }
        assert_eq!(
            SearchQuery::parse("Copybook copybook COPYBOOK").unwrap(),
            SearchQuery::parse("copybook").unwrap()
        );
    }

    #[test]
    fn every_word_must_occur_somewhere_in_the_conversation() {
        let turns = [
            turn(0, "What does LONPF2 do?", "It posts loan payments."),
            turn(1, "Which copybooks does it use?", "LNPAYREC and DATEWS."),
        ];
        let query = SearchQuery::parse("lonpf2 DATEWS").unwrap();
        let found = query.matches(&turns).unwrap();
        assert_eq!(
            found.iter().map(|m| (m.turn, m.role)).collect::<Vec<_>>(),
            [(0, Role::User), (1, Role::Assistant)]
        );
        assert_eq!(found[0].snippet, "What does LONPF2 do?");
        assert_eq!(
            SearchQuery::parse("lonpf2 payroll")
                .unwrap()
                .matches(&turns),
            None
        );
        // Whole words only: "loan" is not "loans".
        assert_eq!(SearchQuery::parse("loans").unwrap().matches(&turns), None);
    }

    #[test]
    fn at_most_three_places_are_shown() {
        let turns: Vec<Turn> = (0..5).map(|n| turn(n, "LONPF2?", "LONPF2.")).collect();
        let found = SearchQuery::parse("lonpf2")
            .unwrap()
            .matches(&turns)
            .unwrap();
        assert_eq!(
            found.iter().map(|m| (m.turn, m.role)).collect::<Vec<_>>(),
            [(0, Role::User), (0, Role::Assistant), (1, Role::User)]
        );
    }

    #[test]
    fn snippets_keep_the_word_with_some_context_on_one_line() {
        let text = format!(
            "{}\nThe program  LONPF2 posts payments.\n{}",
            "x ".repeat(100),
            "y ".repeat(100)
        );
        let turns = [turn(0, &text, "")];
        let found = SearchQuery::parse("lonpf2")
            .unwrap()
            .matches(&turns)
            .unwrap();
        let snippet = &found[0].snippet;
        assert!(
            snippet.starts_with('…') && snippet.ends_with('…'),
            "{snippet}"
        );
        assert!(
            snippet.contains("The program LONPF2 posts payments."),
            "{snippet}"
        );
        assert!(!snippet.contains('\n'));
        assert!(snippet.chars().count() <= CONTEXT_BEFORE + CONTEXT_AFTER + 2);
    }
}
