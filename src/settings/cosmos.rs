//! `COSMOSDB_*`: conversations in Cosmos DB for NoSQL, as seed 000 configures them.

use reqwest::Url;

use super::{parse_setting, ApiKey, Echo, Lookup, SettingsError};

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
    /// No key: Microsoft Entra tokens from the process's credential (managed
    /// identity in Azure), which needs the data-plane role "Cosmos DB Built-in Data
    /// Contributor"; the database and container must exist.
    Entra,
}

const ENDPOINT: &str = "COSMOSDB_ENDPOINT";
const DATABASE: &str = "COSMOSDB_DATABASE";
const CONTAINER: &str = "COSMOSDB_AIConversations_CONTAINER";
const KEY: &str = "COSMOSDB_KEY";

/// `None` when `COSMOSDB_ENDPOINT` is not set (conversations then live in Table Storage).
pub fn cosmos(get: Lookup) -> Result<Option<CosmosSettings>, SettingsError> {
    let Some(endpoint) = parse_setting(
        get,
        ENDPOINT,
        "an https URL (https://<account>.documents.azure.com:443/), or http only for a local emulator on localhost",
        Echo::Hidden,
        endpoint,
    )?
    else {
        return Ok(None);
    };
    let database = resource_name(get, DATABASE)?.unwrap_or_else(|| "GenAI".into());
    let container = resource_name(get, CONTAINER)?.unwrap_or_else(|| "AI_Conversations".into());
    let auth = get(KEY).map_or(CosmosAuth::Entra, |key| CosmosAuth::Key(ApiKey::new(key)));
    Ok(Some(CosmosSettings {
        endpoint,
        database,
        container,
        auth,
    }))
}

/// HTTPS, or plain HTTP to this machine (a local emulator; the SDK allows no other).
fn endpoint(value: &str) -> Option<String> {
    let url = Url::parse(value).ok()?;
    let usable = match (url.scheme(), url.host_str()) {
        ("https", Some(_)) => true,
        ("http", Some(host)) => matches!(host, "localhost" | "127.0.0.1" | "[::1]"),
        _ => false,
    };
    usable.then(|| value.to_owned())
}

/// Cosmos DB database and container ids: 1-255 characters, none of `/ \ # ?`, no
/// trailing space.
fn resource_name(get: Lookup, name: &str) -> Result<Option<String>, SettingsError> {
    parse_setting(
        get,
        name,
        "a Cosmos DB id (1-255 characters, none of / \\ # ?)",
        Echo::Value,
        |value| {
            let valid = (1..=255).contains(&value.chars().count())
                && !value.contains(['/', '\\', '#', '?'])
                && !value.ends_with(' ');
            valid.then(|| value.to_owned())
        },
    )
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
        ] {
            let err = from(&pairs).unwrap_err();
            assert_eq!(err.name, name, "{pairs:?}");
        }
        assert!(
            from(&[("COSMOSDB_ENDPOINT", "http://127.0.0.1:8081/"), key])
                .unwrap()
                .is_some()
        );
        let keyless = from(&[endpoint]).unwrap().unwrap();
        assert_eq!(keyless.auth, CosmosAuth::Entra);
    }
}
