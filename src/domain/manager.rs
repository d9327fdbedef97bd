//! What people add to their conversations through the conversation manager: a
//! title of their choosing, and feedback on an answer. Parsed once at the edge.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{InvalidInput, InvalidQuery};

const MAX_TITLE_CHARS: usize = 200;
const MAX_COMMENT_CHARS: usize = 2_000;

/// A conversation's title as its owner named it: trimmed, 1 to 200 characters, no
/// control characters (it is shown on one line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err("title must not be blank".into());
        }
        if chars > MAX_TITLE_CHARS {
            return Err(format!(
                "title must be at most {MAX_TITLE_CHARS} characters (got {chars})"
            ));
        }
        if let Some(bad) = trimmed.chars().find(|c| c.is_control()) {
            return Err(format!(
                "title must not contain control characters (found U+{:04X})",
                bad as u32
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The body of `PATCH /api/sessions/{session_id}`: `{"title": "…"}`.
    pub fn from_body(body: &[u8]) -> Result<Self, InvalidQuery> {
        let fields = json_object(body, InvalidInput::Title)?;
        let invalid = |message: String| InvalidQuery {
            kind: InvalidInput::Title,
            message,
        };
        match fields.get("title") {
            None | Some(Value::Null) => Err(invalid("title is required".into())),
            Some(Value::String(title)) => Self::parse(title).map_err(invalid),
            Some(_) => Err(invalid("title must be a string".into())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Thumbs up or thumbs down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Up => "up",
            Rating::Down => "down",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "up" => Some(Rating::Up),
            "down" => Some(Rating::Down),
            _ => None,
        }
    }
}

/// What a person said about one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub rating: Rating,
    /// At most 2,000 characters; `None` when none was given (or it was blank).
    pub comment: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Feedback {
    /// The body of `PUT …/turns/{turn}/feedback`: `{"rating": "up" | "down",
    /// "comment": "…"}`, given at `now`. `null` means absent; unknown fields are ignored.
    pub fn from_body(body: &[u8], now: DateTime<Utc>) -> Result<Self, InvalidQuery> {
        let fields = json_object(body, InvalidInput::Feedback)?;
        let invalid = |message: String| InvalidQuery {
            kind: InvalidInput::Feedback,
            message,
        };
        let rating = match fields.get("rating") {
            None | Some(Value::Null) => return Err(invalid("rating is required".into())),
            Some(Value::String(text)) => Rating::parse(text).ok_or_else(|| {
                invalid(format!("rating must be \"up\" or \"down\" (got {text:?})"))
            })?,
            Some(_) => return Err(invalid("rating must be \"up\" or \"down\"".into())),
        };
        let comment = match fields.get("comment") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                let chars = text.chars().count();
                if chars > MAX_COMMENT_CHARS {
                    return Err(invalid(format!(
                        "comment must be at most {MAX_COMMENT_CHARS} characters (got {chars})"
                    )));
                }
                (!text.trim().is_empty()).then(|| text.clone())
            }
            Some(_) => return Err(invalid("comment must be a string".into())),
        };
        Ok(Self {
            rating,
            comment,
            updated_at: now,
        })
    }
}

/// A request body as a JSON object: `invalid_json` when it is not JSON at all,
/// `kind` when it is JSON but not an object.
fn json_object(
    body: &[u8],
    kind: InvalidInput,
) -> Result<serde_json::Map<String, Value>, InvalidQuery> {
    match serde_json::from_slice(body) {
        Err(e) => Err(InvalidQuery {
            kind: InvalidInput::Json,
            message: format!("request body is not valid JSON: {e}"),
        }),
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(InvalidQuery {
            kind,
            message: "request body must be a JSON object".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded_in_characters() {
        assert_eq!(
            Title::parse("  Loan posting  ").unwrap().as_str(),
            "Loan posting"
        );
        assert_eq!(
            Title::parse(&"é".repeat(200)).unwrap().as_str(),
            "é".repeat(200)
        );
        assert!(Title::parse(&"é".repeat(201)).is_err());
        for bad in [
            "",
            "   ",
            "a\nb",
            "tab\there",
            "bell\u{7}",
            "c1\u{85}inside",
        ] {
            assert!(Title::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn title_bodies_name_what_is_wrong() {
        let kind = |body: &str| Title::from_body(body.as_bytes()).unwrap_err().kind;
        assert_eq!(kind("{"), InvalidInput::Json);
        for body in [
            "[]",
            "{}",
            r#"{"title":null}"#,
            r#"{"title":7}"#,
            r#"{"title":" "}"#,
        ] {
            assert_eq!(kind(body), InvalidInput::Title, "{body}");
        }
        let title = Title::from_body(br#"{"title":" Zo\u00eb ","other":1}"#).unwrap();
        assert_eq!(title.as_str(), "Zoë");
    }

    #[test]
    fn feedback_bodies_are_checked() {
        let now = Utc::now();
        let parse = |body: &str| Feedback::from_body(body.as_bytes(), now);
        let up = parse(r#"{"rating":"up"}"#).unwrap();
        assert_eq!(
            (up.rating, up.comment, up.updated_at),
            (Rating::Up, None, now)
        );
        let down =
            parse(r#"{"rating":"down","comment":"Wrong copybook.\nIt is LNPAYREC."}"#).unwrap();
        assert_eq!(down.rating, Rating::Down);
        assert_eq!(
            down.comment.as_deref(),
            Some("Wrong copybook.\nIt is LNPAYREC.")
        );
        assert_eq!(
            parse(r#"{"rating":"up","comment":"  "}"#).unwrap().comment,
            None
        );
        let longest = format!(r#"{{"rating":"up","comment":"{}"}}"#, "é".repeat(2_000));
        assert!(parse(&longest).is_ok());

        assert_eq!(parse("nope").unwrap_err().kind, InvalidInput::Json);
        let too_long = format!(r#"{{"rating":"up","comment":"{}"}}"#, "é".repeat(2_001));
        for body in [
            "[]",
            "{}",
            r#"{"rating":null}"#,
            r#"{"rating":"UP"}"#,
            r#"{"rating":"sideways"}"#,
            r#"{"rating":1}"#,
            r#"{"rating":"up","comment":5}"#,
            &too_long,
        ] {
            assert_eq!(
                parse(body).unwrap_err().kind,
                InvalidInput::Feedback,
                "{body}"
            );
        }
    }
}
