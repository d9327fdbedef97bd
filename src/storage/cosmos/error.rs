//! Cosmos DB errors as [`StorageError`]s, from the status code only (the SDK's
//! text can quote endpoints and request details).

use azure_data_cosmos::CosmosError;

use crate::storage::StorageError;

/// What went wrong in `operation` ("replacing a conversation", …), safe to log and show.
pub fn storage_error(operation: &str, error: &CosmosError) -> StorageError {
    let status = error.status();
    let code = u16::from(status.status_code());
    if !error.is_from_wire() {
        return StorageError::Unavailable(format!(
            "{operation}: Cosmos DB did not answer (connection failed, timed out, or no credentials)"
        ));
    }
    let message = format!("{operation}: Cosmos DB answered {code}");
    if matches!(code, 408 | 429 | 449) || code >= 500 {
        StorageError::Unavailable(message)
    } else {
        StorageError::Rejected(message)
    }
}

/// Whether Cosmos DB answered 404 (no such item, container or database).
pub fn is_not_found(error: &CosmosError) -> bool {
    error.is_from_wire() && error.status().is_not_found()
}

/// Whether Cosmos DB answered 409 (an item with this id exists in the partition).
pub fn is_conflict(error: &CosmosError) -> bool {
    error.is_from_wire() && error.status().is_conflict()
}

/// Whether Cosmos DB answered 412 (the item changed since it was read).
pub fn is_precondition_failed(error: &CosmosError) -> bool {
    error.is_from_wire() && error.status().is_precondition_failed()
}
