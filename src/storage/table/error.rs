//! Table Storage errors as [`StorageError`]s.
//!
//! Messages are built from the status code and the service's error code only: the
//! SDK's own error text can quote request URLs, and with a SAS connection string
//! those carry the token.

use azure_core::error::ErrorKind;
use azure_core::StatusCode;

use crate::storage::StorageError;

/// What went wrong in `operation` ("inserting a turn", …), safe to log and to show.
pub fn storage_error(operation: &str, error: &azure_core::Error) -> StorageError {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            status_error(operation, *status, error_code.as_deref())
        }
        ErrorKind::Io => StorageError::Unavailable(format!(
            "{operation}: storage did not answer (connection failed or timed out)"
        )),
        ErrorKind::Credential => StorageError::Unavailable(format!(
            "{operation}: could not get credentials for storage"
        )),
        ErrorKind::DataConversion => {
            StorageError::Unavailable(format!("{operation}: storage sent an unreadable answer"))
        }
        ErrorKind::MockFramework | ErrorKind::Other => {
            StorageError::Unavailable(format!("{operation}: the storage request failed"))
        }
    }
}

/// 408, 429 and 5xx are worth trying again later; any other status means the request
/// itself was refused.
pub fn status_error(operation: &str, status: StatusCode, error_code: Option<&str>) -> StorageError {
    let code = u16::from(status);
    let message = format!(
        "{operation}: storage answered {code} {}",
        error_code.unwrap_or("(no error code)")
    );
    if matches!(code, 408 | 429) || code >= 500 {
        StorageError::Unavailable(message)
    } else {
        StorageError::Rejected(message)
    }
}

/// Whether `error` is the service answering `status`.
pub fn has_status(error: &azure_core::Error, status: StatusCode) -> bool {
    matches!(error.kind(), ErrorKind::HttpResponse { status: s, .. } if *s == status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: StatusCode, code: &str) -> azure_core::Error {
        ErrorKind::http_response(status, Some(code.into())).into_error()
    }

    #[test]
    fn server_errors_and_throttling_are_unavailable() {
        for status in [
            StatusCode::RequestTimeout,
            StatusCode::TooManyRequests,
            StatusCode::InternalServerError,
            StatusCode::ServiceUnavailable,
        ] {
            let error = storage_error("loading", &http(status, "ServerBusy"));
            assert!(
                matches!(error, StorageError::Unavailable(_)),
                "{status}: {error}"
            );
        }
    }

    #[test]
    fn other_client_errors_are_rejected_with_status_and_code() {
        let error = storage_error(
            "inserting a turn",
            &http(StatusCode::BadRequest, "PropertyValueTooLarge"),
        );
        assert_eq!(
            error,
            StorageError::Rejected(
                "inserting a turn: storage answered 400 PropertyValueTooLarge".into()
            )
        );
    }

    #[test]
    fn messages_never_quote_the_underlying_error() {
        let leaky = azure_core::Error::full(
            ErrorKind::Io,
            std::io::Error::other("GET http://x/t()?sig=SECRET"),
            "failed to execute request to http://x/t()?sig=SECRET",
        );
        let error = storage_error("loading", &leaky);
        assert!(matches!(error, StorageError::Unavailable(_)));
        assert!(!error.to_string().contains("SECRET"), "{error}");
    }

    #[test]
    fn status_checks_see_only_http_answers() {
        assert!(has_status(
            &http(StatusCode::Conflict, "EntityAlreadyExists"),
            StatusCode::Conflict
        ));
        assert!(!has_status(
            &http(StatusCode::NotFound, "ResourceNotFound"),
            StatusCode::Conflict
        ));
        assert!(!has_status(
            &ErrorKind::Io.into_error(),
            StatusCode::Conflict
        ));
    }
}
