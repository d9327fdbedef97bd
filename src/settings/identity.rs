//! Which Microsoft Entra credential authenticates the handler to the Azure
//! services that get no key: Table Storage by identity, Azure OpenAI, Azure AI
//! Search. The choice is made once, here, from the settings; the first that
//! applies wins (README, "Identity"):
//!
//! 1. `AZURE_FEDERATED_TOKEN_FILE`: workload identity (Kubernetes, federated CI);
//! 2. `AZURE_CLIENT_SECRET`: a service principal's secret;
//! 3. `IDENTITY_ENDPOINT` (App Service, Azure Functions and Container Apps set it):
//!    the app's managed identity, system-assigned, or user-assigned by client id;
//! 4. otherwise the developer's own login: `az login`, then `azd auth login`.

use std::path::PathBuf;

use super::{parse_setting, ApiKey, Echo, Lookup, SettingsError};

const CLIENT_ID: &str = "AZURE_CLIENT_ID";
const TENANT_ID: &str = "AZURE_TENANT_ID";
const CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
const FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Set by the platform where a managed identity is available.
const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";

/// A Microsoft Entra application (client) id, or a managed identity's: a GUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    pub fn new(id: &str) -> Option<Self> {
        uuid::Uuid::parse_str(id).ok().map(|_| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The credential chosen for Microsoft Entra tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialChoice {
    /// `AZURE_FEDERATED_TOKEN_FILE`, with `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`.
    WorkloadIdentity {
        tenant_id: String,
        client_id: ClientId,
        token_file: PathBuf,
    },
    /// `AZURE_CLIENT_SECRET`, with `AZURE_TENANT_ID` and `AZURE_CLIENT_ID`.
    ClientSecret {
        tenant_id: String,
        client_id: ClientId,
        secret: ApiKey,
    },
    /// The platform's managed identity: user-assigned `client_id`
    /// (`AZURE_CLIENT_ID`) for Azure OpenAI and Azure AI Search, else
    /// system-assigned. Storage names its own (`AzureWebJobsStorage__clientId`).
    ManagedIdentity { client_id: Option<ClientId> },
    /// The developer's `az login`, then `azd auth login`.
    DeveloperTools,
}

/// A client id setting (`AZURE_CLIENT_ID`, `AzureWebJobsStorage__clientId`).
pub(super) fn client_id(get: Lookup, name: &str) -> Result<Option<ClientId>, SettingsError> {
    parse_setting(
        get,
        name,
        "a client id (a GUID such as 00000000-0000-0000-0000-000000000000)",
        Echo::Value,
        ClientId::new,
    )
}

pub(super) fn credential_choice(get: Lookup) -> Result<CredentialChoice, SettingsError> {
    let client_id = client_id(get, CLIENT_ID)?;
    let tenant_id = parse_setting(
        get,
        TENANT_ID,
        "a tenant id (a GUID or a domain such as contoso.onmicrosoft.com)",
        Echo::Value,
        |v| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
                .then(|| v.to_owned())
        },
    )?;
    let token_file = parse_setting(
        get,
        FEDERATED_TOKEN_FILE,
        "the path of a readable file",
        Echo::Value,
        |v| std::path::Path::new(v).is_file().then(|| PathBuf::from(v)),
    )?;
    let secret = super::answering::api_key(get, CLIENT_SECRET)?;
    let identity_endpoint = parse_setting(
        get,
        IDENTITY_ENDPOINT,
        "an http or https URL",
        Echo::Hidden,
        |v| reqwest::Url::parse(v).ok(),
    )?;

    // A service principal needs to know who it is and where.
    let principal = |because: &str| -> Result<(String, ClientId), SettingsError> {
        let missing =
            |name: &str| SettingsError::new(name, format!("is required when {because} is set"));
        Ok((
            tenant_id.clone().ok_or_else(|| missing(TENANT_ID))?,
            client_id.clone().ok_or_else(|| missing(CLIENT_ID))?,
        ))
    };
    Ok(if let Some(token_file) = token_file {
        let (tenant_id, client_id) = principal(FEDERATED_TOKEN_FILE)?;
        CredentialChoice::WorkloadIdentity {
            tenant_id,
            client_id,
            token_file,
        }
    } else if let Some(secret) = secret {
        let (tenant_id, client_id) = principal(CLIENT_SECRET)?;
        CredentialChoice::ClientSecret {
            tenant_id,
            client_id,
            secret,
        }
    } else if identity_endpoint.is_some() {
        CredentialChoice::ManagedIdentity { client_id }
    } else {
        CredentialChoice::DeveloperTools
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use std::collections::HashMap;

    const GUID: &str = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

    fn choice(pairs: &[(&str, &str)]) -> Result<CredentialChoice, SettingsError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        Settings::from_lookup(|name| map.get(name).map(|v| v.to_string())).map(|s| s.credential)
    }

    #[test]
    fn the_first_credential_that_applies_wins() {
        let token = tempfile::NamedTempFile::new().unwrap();
        let token_path = token.path().to_str().unwrap();
        let principal = [(TENANT_ID, "contoso.onmicrosoft.com"), (CLIENT_ID, GUID)];
        let everything = [
            principal.as_slice(),
            &[
                (FEDERATED_TOKEN_FILE, token_path),
                (CLIENT_SECRET, "s3cret"),
                (IDENTITY_ENDPOINT, "http://127.0.0.1:41234/msi/token"),
            ],
        ]
        .concat();
        assert!(matches!(
            choice(&everything).unwrap(),
            CredentialChoice::WorkloadIdentity { token_file, .. } if token_file == token.path()
        ));
        let without_token_file = [everything[0], everything[1], everything[3], everything[4]];
        assert!(matches!(
            choice(&without_token_file).unwrap(),
            CredentialChoice::ClientSecret { client_id, .. } if client_id.as_str() == GUID
        ));
        assert_eq!(
            choice(&[everything[1], everything[4]]).unwrap(),
            CredentialChoice::ManagedIdentity {
                client_id: ClientId::new(GUID)
            }
        );
        assert_eq!(
            choice(&[everything[4]]).unwrap(),
            CredentialChoice::ManagedIdentity { client_id: None }
        );
        assert_eq!(choice(&[]).unwrap(), CredentialChoice::DeveloperTools);
        assert_eq!(
            choice(&principal).unwrap(),
            CredentialChoice::DeveloperTools
        );
    }

    #[test]
    fn bad_identity_values_name_their_setting_and_never_echo_the_secret() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[(CLIENT_ID, "my-app")], CLIENT_ID),
            (
                &[
                    ("AzureWebJobsStorage__accountName", "acct"),
                    ("AzureWebJobsStorage__clientId", "x"),
                ],
                "AzureWebJobsStorage__clientId",
            ),
            (&[(TENANT_ID, "contoso/tenant")], TENANT_ID),
            (
                &[(FEDERATED_TOKEN_FILE, "/no/such/token")],
                FEDERATED_TOKEN_FILE,
            ),
            (&[(CLIENT_SECRET, "top secret")], CLIENT_SECRET),
            (
                &[(CLIENT_SECRET, "topsecret"), (CLIENT_ID, GUID)],
                TENANT_ID,
            ),
            (&[(IDENTITY_ENDPOINT, "not a url")], IDENTITY_ENDPOINT),
        ];
        for (pairs, name) in cases {
            let err = choice(pairs).unwrap_err();
            assert_eq!(err.name, name, "{pairs:?}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn debug_output_hides_the_client_secret() {
        let parsed = choice(&[
            (TENANT_ID, "t"),
            (CLIENT_ID, GUID),
            (CLIENT_SECRET, "topsecret"),
        ])
        .unwrap();
        assert!(!format!("{parsed:?}").contains("topsecret"));
    }
}
