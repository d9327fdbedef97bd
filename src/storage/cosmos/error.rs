//! Cosmos DB errors as [`StorageError`]s, from the status code only (the service's
//! text can quote request details).

use reqwest::StatusCode;

use super::rest::CosmosError;
use crate::storage::StorageError;

/// What went wrong in `operation` ("replacing a conversation", …), safe to log and show.
pub fn storage_error(operation: &str, error: &CosmosError) -> StorageError {
    let Some(status) = error.status else {
        return StorageError::Unavailable(format!(
            "{operation}: Cosmos DB did not answer (connection failed, timed out, or no credentials)"
        ));
    };
    let code = status.as_u16();
    let message = format!("{operation}: Cosmos DB answered {code}");
    if matches!(code, 408 | 429 | 449) || status.is_server_error() {
        StorageError::Unavailable(message)
    } else {
        StorageError::Rejected(message)
    }
}

/// Whether Cosmos DB answered 404 (no such item, container or database).
pub fn is_not_found(error: &CosmosError) -> bool {
    error.status == Some(StatusCode::NOT_FOUND)
}

/// Whether Cosmos DB answered 409 (an item with this id exists in the partition).
pub fn is_conflict(error: &CosmosError) -> bool {
    error.status == Some(StatusCode::CONFLICT)
}

/// Whether Cosmos DB answered 412 (the item changed since it was read).
pub fn is_precondition_failed(error: &CosmosError) -> bool {
    error.status == Some(StatusCode::PRECONDITION_FAILED)
}
