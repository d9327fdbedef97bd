//! A conversation as a document: the seed's conversation document (JSON) for
//! programs, Markdown for people, and a file name to download either as.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::domain::{one_line_within, owner_of, timestamp_text, Feedback, Rating, SessionId, Turn};

/// At most this many characters of the session id go into a file name.
const FILE_NAME_ID_CHARS: usize = 100;

/// The seed's conversation document: `id` (the session id: it names the
/// conversation), `title`, `customer_id` (the owner, `null` when none),
/// `session_id`, `created_at` and `updated_at` (first and last turn), and
/// `messages`: each turn's question then answer, stamped with the turn's time and
/// number; an answer someone rated carries its `feedback`.
pub fn document(session: &SessionId, title: &str, turns: &[Turn]) -> Value {
    json!({
        "id": session.as_str(),
        "title": title,
        "customer_id": owner_of(turns).map(|owner| owner.as_str()),
        "session_id": session.as_str(),
        "created_at": turns.first().map(|t| timestamp_text(t.timestamp)),
        "updated_at": turns.last().map(|t| timestamp_text(t.timestamp)),
        "messages": messages(turns),
    })
}

/// What a shared snapshot shows of a conversation: its title and messages, and
/// nothing that names the conversation or its owner.
pub fn snapshot(title: &str, turns: &[Turn]) -> Value {
    json!({"title": title, "messages": messages(turns)})
}

/// Each turn's question then answer, stamped with the turn's time and number; an
/// answer someone rated carries its `feedback`.
fn messages(turns: &[Turn]) -> Vec<Value> {
    turns
        .iter()
        .flat_map(|turn| {
            let timestamp = timestamp_text(turn.timestamp);
            let mut answer = json!({
                "role": "assistant", "content": turn.assistant, "timestamp": timestamp, "turn": turn.index,
            });
            if let Some(feedback) = &turn.feedback {
                answer["feedback"] = feedback_json(feedback);
            }
            [
                json!({"role": "user", "content": turn.user, "timestamp": timestamp, "turn": turn.index}),
                answer,
            ]
        })
        .collect()
}

/// Feedback as the API shows it: `{"rating", "comment", "updated_at"}`.
pub fn feedback_json(feedback: &Feedback) -> Value {
    json!({
        "rating": feedback.rating.as_str(),
        "comment": feedback.comment,
        "updated_at": timestamp_text(feedback.updated_at),
    })
}

/// The conversation for a person to read: its title, a list of its facts, then
/// each turn under its own heading, with the feedback its answer got.
pub fn markdown(session: &SessionId, title: &str, turns: &[Turn]) -> String {
    let mut text = format!("# {}\n\n", one_line_within(title, usize::MAX));
    let mut fact = |name: &str, value: &str| {
        writeln!(text, "- **{name}:** {value}").expect("writing to a String cannot fail")
    };
    fact("Conversation", session.as_str());
    fact(
        "Owner",
        owner_of(turns).map_or("none", |owner| owner.as_str()),
    );
    if let (Some(first), Some(last)) = (turns.first(), turns.last()) {
        fact("Started", &timestamp_text(first.timestamp));
        fact("Last turn", &timestamp_text(last.timestamp));
    }
    fact("Turns", &turns.len().to_string());
    for (number, turn) in (1..).zip(turns) {
        write!(
            text,
            "\n## Turn {number} · {}\n\n**User:**\n\n{}\n\n**Assistant:**\n\n{}\n",
            timestamp_text(turn.timestamp),
            turn.user.trim_end(),
            turn.assistant.trim_end(),
        )
        .expect("writing to a String cannot fail");
        if let Some(feedback) = &turn.feedback {
            let thumb = match feedback.rating {
                Rating::Up => "👍 up",
                Rating::Down => "👎 down",
            };
            write!(
                text,
                "\n**Feedback:** {thumb} · {}\n",
                timestamp_text(feedback.updated_at)
            )
            .expect("writing to a String cannot fail");
            if let Some(comment) = &feedback.comment {
                for line in comment.trim_end().lines() {
                    writeln!(text, "> {line}").expect("writing to a String cannot fail");
                }
            }
        }
    }
    text
}

/// `conversation-<session id>.<extension>`, with every character of the id that is
/// not a letter, a digit, `-`, `_` or `.` replaced by `_`, so that the name is safe in
/// a `Content-Disposition` header and on any file system.
pub fn file_name(session: &SessionId, extension: &str) -> String {
    let id: String = session
        .as_str()
        .chars()
        .take(FILE_NAME_ID_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("conversation-{id}.{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CustomerId;
    use chrono::{TimeZone, Utc};

    fn turns() -> Vec<Turn> {
        let at = |second| Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, second).unwrap();
        let owner = Some(CustomerId::parse("user_123").unwrap());
        vec![
            Turn {
                index: 0,
                user: "What does LONPF2 do?".into(),
                assistant: "It posts loan payments.".into(),
                metadata_json: "{}".into(),
                timestamp: at(0),
                owner: owner.clone(),
                feedback: None,
            },
            Turn {
                index: 1,
                user: "Which copybooks?".into(),
                assistant: "LNMASTR.\n".into(),
                metadata_json: "{}".into(),
                timestamp: at(15),
                owner,
                feedback: Some(Feedback {
                    rating: Rating::Down,
                    comment: Some("It also uses DATEWS.\nSee the COPY lines.".into()),
                    updated_at: at(20),
                }),
            },
        ]
    }

    fn session() -> SessionId {
        SessionId::parse("session_456").unwrap()
    }

    #[test]
    fn the_document_has_the_seed_shape() {
        assert_eq!(
            document(&session(), "Loan posting", &turns()),
            json!({
                "id": "session_456",
                "title": "Loan posting",
                "customer_id": "user_123",
                "session_id": "session_456",
                "created_at": "2025-01-24T10:30:00Z",
                "updated_at": "2025-01-24T10:30:15Z",
                "messages": [
                    {"role": "user", "content": "What does LONPF2 do?", "timestamp": "2025-01-24T10:30:00Z", "turn": 0},
                    {"role": "assistant", "content": "It posts loan payments.", "timestamp": "2025-01-24T10:30:00Z", "turn": 0},
                    {"role": "user", "content": "Which copybooks?", "timestamp": "2025-01-24T10:30:15Z", "turn": 1},
                    {"role": "assistant", "content": "LNMASTR.\n", "timestamp": "2025-01-24T10:30:15Z", "turn": 1,
                     "feedback": {"rating": "down", "comment": "It also uses DATEWS.\nSee the COPY lines.", "updated_at": "2025-01-24T10:30:20Z"}},
                ],
            })
        );
    }

    #[test]
    fn markdown_reads_turn_by_turn_under_the_title() {
        let text = markdown(&session(), "Loan posting", &turns());
        assert!(text.starts_with("# Loan posting\n\n- **Conversation:** session_456\n- **Owner:** user_123\n- **Started:** 2025-01-24T10:30:00Z\n- **Last turn:** 2025-01-24T10:30:15Z\n- **Turns:** 2\n"), "{text}");
        assert!(text.contains("\n## Turn 2 · 2025-01-24T10:30:15Z\n\n**User:**\n\nWhich copybooks?\n\n**Assistant:**\n\nLNMASTR.\n"), "{text}");
        assert!(text.ends_with("LNMASTR.\n\n**Feedback:** 👎 down · 2025-01-24T10:30:20Z\n> It also uses DATEWS.\n> See the COPY lines.\n"), "{text}");
        assert_eq!(text.matches("**Feedback:**").count(), 1, "{text}");
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        let awkward = SessionId::parse("o'brien \"x\"; é会话.v1").unwrap();
        assert_eq!(
            file_name(&awkward, "md"),
            "conversation-o_brien__x______.v1.md"
        );
        let long = SessionId::parse(&"a".repeat(256)).unwrap();
        assert_eq!(
            file_name(&long, "json").len(),
            "conversation-".len() + 100 + 5
        );
    }
}
