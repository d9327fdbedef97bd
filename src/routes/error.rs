//! The one place where failures become HTTP statuses and error codes.

use serde_json::{json, Value};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply;

use crate::answer::AnswerError;
use crate::conversation::AskError;
use crate::domain::{InvalidInput, InvalidQuery};
use crate::storage::StorageError;

#[derive(Debug)]
pub enum ApiError {
    Invalid(InvalidQuery),
    PayloadTooLarge {
        limit: usize,
    },
    MethodNotAllowed {
        allow: &'static str,
    },
    NotFound(String),
    Upstream(AnswerError),
    /// Storage is configured but failed: the sessions API has nothing to fall back on.
    StorageUnavailable(StorageError),
    /// A bug (a panic while answering); the details are in the log, not the reply.
    Internal,
}

impl From<InvalidQuery> for ApiError {
    fn from(error: InvalidQuery) -> Self {
        Self::Invalid(error)
    }
}

impl From<AnswerError> for ApiError {
    fn from(error: AnswerError) -> Self {
        Self::Upstream(error)
    }
}

impl From<AskError> for ApiError {
    fn from(error: AskError) -> Self {
        match error {
            AskError::NotFound(_) => Self::NotFound(error.to_string()),
            AskError::Answer(error) => Self::Upstream(error),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        Self::StorageUnavailable(error)
    }
}

impl ApiError {
    /// A 400 for the input `kind` names.
    pub fn invalid(kind: InvalidInput, message: impl Into<String>) -> Self {
        Self::Invalid(InvalidQuery {
            kind,
            message: message.into(),
        })
    }

    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid(invalid) => (
                StatusCode::BAD_REQUEST,
                match invalid.kind {
                    InvalidInput::Json => "invalid_json",
                    InvalidInput::Request => "invalid_request",
                    InvalidInput::Question => "invalid_question",
                    InvalidInput::SessionId => "invalid_session_id",
                    InvalidInput::CustomerId => "invalid_customer_id",
                    InvalidInput::Metadata => "invalid_metadata",
                    InvalidInput::Title => "invalid_title",
                    InvalidInput::Feedback => "invalid_feedback",
                    InvalidInput::Date => "invalid_date",
                },
            ),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Upstream(AnswerError::Upstream { .. }) => {
                (StatusCode::BAD_GATEWAY, "upstream_error")
            }
            ApiError::Upstream(AnswerError::UpstreamTimeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
            ApiError::StorageUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::Invalid(invalid) => invalid.message.clone(),
            ApiError::PayloadTooLarge { limit } => {
                format!("request body must be at most {limit} bytes")
            }
            ApiError::MethodNotAllowed { allow } => format!("this route accepts {allow} only"),
            ApiError::NotFound(message) => message.clone(),
            ApiError::Upstream(error) => error.to_string(),
            ApiError::StorageUnavailable(error) => error.to_string(),
            ApiError::Internal => "the answer failed unexpectedly".into(),
        }
    }

    /// `{"error": {"code", "message"}}`: the body of an error response, and the
    /// data of a stream's `error` event.
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.status_and_code().1, "message": self.message()}})
    }

    pub fn into_response(self) -> Response {
        let status = self.status();
        let mut response =
            warp::reply::with_status(warp::reply::json(&self.body()), status).into_response();
        if let ApiError::MethodNotAllowed { allow } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}
