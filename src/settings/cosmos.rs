//! `COSMOSDB_*`: conversations in Cosmos DB for NoSQL, as seed 000 configures them.

use reqwest::Url;

use super::{ApiKey, SettingsError};

/// Where conversations live when `COSMOSDB_ENDPOINT` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosmosSettings {
    /// `COSMOSDB_ENDPOINT`: the account's URL (`https://<account>.documents.azure.com:443/`).
    pub endpoint: String,
    /// `COSMOSDB_DATABASE`, default `GenAI`.
    pub database: String,
    /// `COSMOSDB_AIConversations_CONTAINER`, default `AI_Conversations`.
    pub container: String,
    pub auth: CosmosAuth,
}

/// How the handler signs in to Cosmos DB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CosmosAuth {
    /// `COSMOSDB_KEY`: the account key (a missing database or container is created).
    Key(ApiKey),
}

const ENDPOINT: &str = "COSMOSDB_ENDPOINT";
const DATABASE: &str = "COSMOSDB_DATABASE";
const CONTAINER: &str = "COSMOSDB_AIConversations_CONTAINER";
const KEY: &str = "COSMOSDB_KEY";

/// `None` when `COSMOSDB_ENDPOINT` is not set (conversations then live in Table Storage).
pub fn cosmos(
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<CosmosSettings>, SettingsError> {
    let Some(endpoint) = get(ENDPOINT) else {
        return Ok(None);
    };
    check_endpoint(&endpoint)?;
    let database = resource_name(DATABASE, get(DATABASE), "GenAI")?;
    let container = resource_name(CONTAINER, get(CONTAINER), "AI_Conversations")?;
    let auth = match get(KEY) {
        Some(key) => CosmosAuth::Key(ApiKey::new(key)),
        None => {
            return Err(SettingsError::new(
                KEY,
                "is required with COSMOSDB_ENDPOINT (signing in to Cosmos DB with Microsoft Entra ID is not supported yet)",
            ))
        }
    };
    Ok(Some(CosmosSettings {
        endpoint,
        database,
        container,
        auth,
    }))
}

/// HTTPS, or plain HTTP to this machine (a local emulator; the SDK allows no other).
fn check_endpoint(endpoint: &str) -> Result<(), SettingsError> {
    let problem = match Url::parse(endpoint) {
        Err(_) => "is not a URL (expected https://<account>.documents.azure.com:443/)",
        Ok(url) => match (url.scheme(), url.host_str()) {
            ("https", Some(_)) => return Ok(()),
            ("http", Some("localhost" | "127.0.0.1" | "[::1]")) => return Ok(()),
            ("http", Some(_)) => {
                "must use https (plain http only for a local emulator on localhost)"
            }
            _ => "is not an https URL (expected https://<account>.documents.azure.com:443/)",
        },
    };
    Err(SettingsError::new(
        ENDPOINT,
        format!("{problem} (got {endpoint:?})"),
    ))
}

/// Cosmos DB database and container ids: 1-255 characters, none of `/ \ # ?`, no
/// trailing space.
fn resource_name(
    name: &str,
    value: Option<String>,
    default: &str,
) -> Result<String, SettingsError> {
    let Some(value) = value else {
        return Ok(default.to_owned());
    };
    let valid = (1..=255).contains(&value.chars().count())
        && !value.contains(['/', '\\', '#', '?'])
        && !value.ends_with(' ');
    if valid {
        Ok(value)
    } else {
        Err(SettingsError::new(
            name,
            format!("{value:?} is not a valid Cosmos DB id (1-255 characters, none of / \\ # ?)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Option<CosmosSettings>, SettingsError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        cosmos(&|name| map.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn unset_endpoint_means_table_storage() {
        assert_eq!(from(&[("COSMOSDB_KEY", "k")]), Ok(None));
    }

    #[test]
    fn seed_defaults_apply() {
        let settings = from(&[
            ("COSMOSDB_ENDPOINT", "https://acct.documents.azure.com:443/"),
            ("COSMOSDB_KEY", "a2V5"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(settings.database, "GenAI");
        assert_eq!(settings.container, "AI_Conversations");
        assert_eq!(settings.auth, CosmosAuth::Key(ApiKey::new("a2V5")));
        assert!(!format!("{settings:?}").contains("a2V5"));
    }

    #[test]
    fn bad_values_name_their_setting() {
        let endpoint = ("COSMOSDB_ENDPOINT", "https://acct.documents.azure.com:443/");
        let key = ("COSMOSDB_KEY", "k");
        for (pairs, name) in [
            (
                vec![("COSMOSDB_ENDPOINT", "acct.documents.azure.com"), key],
                ENDPOINT,
            ),
            (
                vec![
                    ("COSMOSDB_ENDPOINT", "http://acct.documents.azure.com/"),
                    key,
                ],
                ENDPOINT,
            ),
            (
                vec![("COSMOSDB_ENDPOINT", "ftp://localhost/"), key],
                ENDPOINT,
            ),
            (vec![endpoint, key, ("COSMOSDB_DATABASE", "a/b")], DATABASE),
            (
                vec![endpoint, key, ("COSMOSDB_AIConversations_CONTAINER", "c#1")],
                CONTAINER,
            ),
            (vec![endpoint], KEY),
        ] {
            let err = from(&pairs).unwrap_err();
            assert_eq!(err.name, name, "{pairs:?}");
        }
        assert!(
            from(&[("COSMOSDB_ENDPOINT", "http://127.0.0.1:8081/"), key])
                .unwrap()
                .is_some()
        );
    }
}
