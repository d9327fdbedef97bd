//! The `POST /api/query` request body, parsed into types that cannot be invalid.

use serde_json::{Map, Value};

use super::identifiers::InvalidIdentifier;
use super::{CustomerId, SessionId};

const MAX_QUESTION_CHARS: usize = 8_000;
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Which part of the input was wrong; the routes map each kind to its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidInput {
    Json,
    Request,
    Question,
    SessionId,
    CustomerId,
    Metadata,
    Title,
    Feedback,
    Date,
}

/// A refused request body: what was wrong, and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidQuery {
    pub kind: InvalidInput,
    pub message: String,
}

impl InvalidQuery {
    fn new(kind: InvalidInput, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// A question exactly as sent: at most 8,000 characters, not blank. It is never
/// trimmed: leading spaces of pasted COBOL are its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question(String);

impl Question {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars > MAX_QUESTION_CHARS {
            return Err(format!(
                "question must be at most {MAX_QUESTION_CHARS} characters (got {chars})"
            ));
        }
        if raw.trim().is_empty() {
            return Err("question must not be empty".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Caller-supplied metadata, kept as the compact JSON that is stored as `metadata_json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata(String);

impl Metadata {
    pub fn empty() -> Self {
        Self("{}".into())
    }

    fn parse(object: &Map<String, Value>) -> Result<Self, String> {
        let compact = serde_json::to_string(object).expect("a JSON map always serializes");
        if compact.len() > MAX_METADATA_BYTES {
            return Err(format!(
                "metadata must be at most {MAX_METADATA_BYTES} bytes as compact JSON (got {})",
                compact.len()
            ));
        }
        Ok(Self(compact))
    }

    pub fn as_json(&self) -> &str {
        &self.0
    }
}

/// A valid `POST /api/query` body.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    pub question: Question,
    pub session_id: Option<SessionId>,
    pub enable_persistence: bool,
    pub customer_id: Option<CustomerId>,
    pub metadata: Metadata,
    /// `stream`: answer as Server-Sent Events.
    pub stream: bool,
}

impl QueryRequest {
    /// Parses a body; `null` means absent and unknown fields are ignored (PRODUCT.md).
    pub fn parse(body: &[u8]) -> Result<Self, InvalidQuery> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            InvalidQuery::new(
                InvalidInput::Json,
                format!("request body is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(fields) = value else {
            return Err(InvalidQuery::new(
                InvalidInput::Request,
                "request body must be a JSON object",
            ));
        };
        let field = |name: &str| fields.get(name).filter(|v| !v.is_null());

        let question = match field("question") {
            None => Err("question is required".to_owned()),
            Some(Value::String(s)) => Question::parse(s),
            Some(_) => Err("question must be a string".to_owned()),
        }
        .map_err(|m| InvalidQuery::new(InvalidInput::Question, m))?;

        let session_id = optional_key(field("session_id"), "session_id", SessionId::parse)
            .map_err(|m| InvalidQuery::new(InvalidInput::SessionId, m))?;
        let customer_id = optional_key(field("customer_id"), "customer_id", CustomerId::parse)
            .map_err(|m| InvalidQuery::new(InvalidInput::CustomerId, m))?;

        let flag = |name: &str| match field(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(InvalidQuery::new(
                InvalidInput::Request,
                format!("{name} must be a boolean"),
            )),
        };
        let enable_persistence = flag("enable_persistence")?;
        let stream = flag("stream")?;

        let metadata = match field("metadata") {
            None => Ok(Metadata::empty()),
            Some(Value::Object(object)) => Metadata::parse(object),
            Some(_) => Err("metadata must be a JSON object".to_owned()),
        }
        .map_err(|m| InvalidQuery::new(InvalidInput::Metadata, m))?;

        Ok(Self {
            question,
            session_id,
            enable_persistence,
            customer_id,
            metadata,
            stream,
        })
    }
}

fn optional_key<T>(
    value: Option<&Value>,
    name: &str,
    parse: fn(&str) -> Result<T, InvalidIdentifier>,
) -> Result<Option<T>, String> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => parse(s).map(Some).map_err(|e| e.0),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(body: &str) -> InvalidInput {
        QueryRequest::parse(body.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn minimal_request_defaults() {
        let q = QueryRequest::parse(br#"{"question":"What does LONPF2 do?"}"#).unwrap();
        assert_eq!(q.question.as_str(), "What does LONPF2 do?");
        assert_eq!(q.session_id, None);
        assert!(!q.enable_persistence);
        assert!(!q.stream);
        assert_eq!(q.metadata.as_json(), "{}");
        let q = QueryRequest::parse(br#"{"question":"q","stream":true}"#).unwrap();
        assert!(q.stream);
    }

    #[test]
    fn nulls_mean_absent_and_unknown_fields_are_ignored() {
        let q = QueryRequest::parse(
            br#"{"question":"q","session_id":null,"enable_persistence":null,"customer_id":null,"metadata":null,"stream":null,"extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(q.session_id, None);
        assert_eq!(q.customer_id, None);
    }

    #[test]
    fn each_field_has_its_own_error_kind() {
        assert_eq!(kind_of("{"), InvalidInput::Json);
        assert_eq!(kind_of("[]"), InvalidInput::Request);
        assert_eq!(kind_of("{}"), InvalidInput::Question);
        assert_eq!(kind_of(r#"{"question":5}"#), InvalidInput::Question);
        assert_eq!(kind_of(r#"{"question":" \n\t"}"#), InvalidInput::Question);
        assert_eq!(
            kind_of(r#"{"question":"q","session_id":7}"#),
            InvalidInput::SessionId
        );
        assert_eq!(
            kind_of(r#"{"question":"q","session_id":"a/b"}"#),
            InvalidInput::SessionId
        );
        assert_eq!(
            kind_of(r#"{"question":"q","customer_id":""}"#),
            InvalidInput::CustomerId
        );
        assert_eq!(
            kind_of(r#"{"question":"q","enable_persistence":"yes"}"#),
            InvalidInput::Request
        );
        assert_eq!(
            kind_of(r#"{"question":"q","stream":1}"#),
            InvalidInput::Request
        );
        assert_eq!(
            kind_of(r#"{"question":"q","metadata":[]}"#),
            InvalidInput::Metadata
        );
    }

    #[test]
    fn the_question_is_kept_exactly_as_sent() {
        let cobol = "       IDENTIFICATION DIVISION.\n       PROGRAM-ID. LONPF2.\n ";
        let body = serde_json::json!({ "question": cobol }).to_string();
        let q = QueryRequest::parse(body.as_bytes()).unwrap();
        assert_eq!(q.question.as_str(), cobol);
    }

    #[test]
    fn the_length_limit_counts_the_question_as_sent() {
        let at_limit = format!("{} ", "x".repeat(MAX_QUESTION_CHARS - 1));
        let body = serde_json::json!({ "question": at_limit }).to_string();
        assert_eq!(
            QueryRequest::parse(body.as_bytes())
                .unwrap()
                .question
                .as_str(),
            at_limit
        );
        let over = format!(" {at_limit}");
        let body = serde_json::json!({ "question": over }).to_string();
        assert_eq!(kind_of(&body), InvalidInput::Question);
    }

    #[test]
    fn question_length_counts_characters() {
        let ok = format!(r#"{{"question":"{}"}}"#, "é".repeat(8_000));
        assert!(QueryRequest::parse(ok.as_bytes()).is_ok());
        let long = format!(r#"{{"question":"{}"}}"#, "é".repeat(8_001));
        assert_eq!(kind_of(&long), InvalidInput::Question);
    }

    #[test]
    fn metadata_limit_applies_to_compact_form() {
        let filler = "x".repeat(MAX_METADATA_BYTES - r#"{"k":""}"#.len());
        let exact = format!(r#"{{"question":"q","metadata":{{ "k" : "{filler}" }}}}"#);
        let q = QueryRequest::parse(exact.as_bytes()).unwrap();
        assert_eq!(q.metadata.as_json().len(), MAX_METADATA_BYTES);
        let over = format!(r#"{{"question":"q","metadata":{{"k":"{filler}x"}}}}"#);
        assert_eq!(kind_of(&over), InvalidInput::Metadata);
    }
}
