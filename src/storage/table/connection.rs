//! From the storage settings to a table service client: where the service is, how to
//! authenticate to it, and how requests travel (one pooled HTTP client, a timeout
//! per call, bounded retries). Nothing here touches the network.
//!
//! Identity-based storage takes its Microsoft Entra tokens from the process's
//! one credential module (`crate::credential`, azure_identity 1.x);
//! [`StorageTokens`] hands them to azure_data_tables 0.21, which speaks
//! azure_core 0.21's credential trait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, Secret, TokenCredential};
use azure_core::error::{Error, ErrorKind};
use azure_core::{ExponentialRetryOptions, RetryOptions, TransportOptions, Url};
use azure_data_tables::clients::{TableServiceClient, TableServiceClientBuilder};
use azure_storage::{CloudLocation, StorageCredentials};

use crate::credential::{Credentials, TokenSource};
use crate::settings::{SettingsError, StorageConnection};

/// One storage call; a silent server must not hold a request forever.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Retries of one call on 408, 429, 5xx and I/O errors: 100 ms, 200 ms, 400 ms
/// (plus up to 255 ms of jitter each, from the SDK), never past 4 s in all. The
/// per-request budget and the circuit breaker in `guard.rs` bound everything above.
fn retry_options() -> RetryOptions {
    RetryOptions::exponential(
        ExponentialRetryOptions::default()
            .initial_delay(Duration::from_millis(100))
            .max_retries(3u32)
            .max_delay(Duration::from_secs(1))
            .max_total_elapsed(Duration::from_secs(4)),
    )
}

/// Where the emulator listens when a connection string says `UseDevelopmentStorage=true`.
const EMULATOR_ADDRESS: &str = "127.0.0.1";
const EMULATOR_TABLE_PORT: u16 = 10002;

const DEFAULT_ENDPOINT_SUFFIX: &str = "core.windows.net";

const TABLE_SERVICE_URI_SETTING: &str = "AzureWebJobsStorage__tableServiceUri";
const ACCOUNT_NAME_SETTING: &str = "AzureWebJobsStorage__accountName";

/// The bridge from the 1.x token cache to azure_core 0.21's credential trait.
#[derive(Debug)]
struct StorageTokens(Arc<TokenSource>);

#[async_trait]
impl TokenCredential for StorageTokens {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let [scope] = scopes else {
            return Err(Error::message(
                ErrorKind::Credential,
                "a storage token is for exactly one scope",
            ));
        };
        let token = self.0.get_token(scope).await.map_err(|no_token| {
            Error::with_message(ErrorKind::Credential, || no_token.to_string())
        })?;
        Ok(AccessToken::new(
            token.token.secret().to_owned(),
            token.expires_on,
        ))
    }

    /// The cache renews tokens itself before they expire.
    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

/// The table service's address and the credentials for it.
struct Endpoint {
    location: CloudLocation,
    credentials: StorageCredentials,
}

/// A client for the table service `connection` describes, authenticated by
/// `credentials` when it is identity-based, trusting `trusted_cas` besides the
/// public certificate authorities. Its table clients share one pool of
/// connections.
pub fn table_service(
    connection: &StorageConnection,
    credentials: &Credentials,
    trusted_cas: &[reqwest::Certificate],
) -> Result<TableServiceClient, SettingsError> {
    let http = trusted_cas
        .iter()
        .fold(reqwest::Client::builder(), |builder, ca| {
            builder.add_root_certificate(ca.clone())
        })
        .timeout(CALL_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|_| {
            SettingsError::new(
                connection.setting(),
                "cannot create an HTTP client for storage",
            )
        })?;
    let Endpoint {
        location,
        credentials,
    } = endpoint(connection, credentials)?;
    Ok(
        TableServiceClientBuilder::with_location(location, credentials)
            .transport(TransportOptions::new(Arc::new(http)))
            .retry(retry_options())
            .build(),
    )
}

fn endpoint(
    connection: &StorageConnection,
    credentials: &Credentials,
) -> Result<Endpoint, SettingsError> {
    match connection {
        StorageConnection::ConnectionString { setting, value } => {
            from_connection_string(value.expose())
                .map_err(|problem| SettingsError::new(setting, problem))
        }
        StorageConnection::Identity {
            table_service_uri,
            account_name,
            client_id,
        } => {
            let location =
                identity_location(table_service_uri.as_deref(), account_name.as_deref())?;
            let tokens =
                credentials
                    .storage_identity(client_id.as_ref())
                    .map_err(|unavailable| {
                        SettingsError::new(
                            connection.setting(),
                            format!("no identity can authenticate to storage: {unavailable}"),
                        )
                    })?;
            let credential: Arc<dyn TokenCredential> = Arc::new(StorageTokens(tokens));
            Ok(Endpoint {
                location,
                credentials: StorageCredentials::token_credential(credential),
            })
        }
    }
}

/// A connection string's `Key=Value;…` pairs, keys case-insensitive as in the
/// other Azure SDKs. Parsed here rather than by azure_storage, whose errors quote
/// the whole string, account key and all.
fn parse_pairs(value: &str) -> Result<HashMap<String, &str>, String> {
    let mut pairs = HashMap::new();
    for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err("connection string must be Key=Value pairs separated by ';'".into());
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err("connection string has a value without a key".into());
        }
        pairs.insert(key.to_ascii_lowercase(), value);
    }
    Ok(pairs)
}

fn from_connection_string(value: &str) -> Result<Endpoint, String> {
    let pairs = parse_pairs(value)?;
    let get = |key: &str| {
        pairs
            .get(&key.to_ascii_lowercase())
            .copied()
            .filter(|v| !v.is_empty())
    };

    match get("UseDevelopmentStorage") {
        Some(flag) if flag.eq_ignore_ascii_case("true") => {
            return Ok(Endpoint {
                location: CloudLocation::Emulator {
                    address: EMULATOR_ADDRESS.into(),
                    port: EMULATOR_TABLE_PORT,
                },
                credentials: StorageCredentials::emulator(),
            })
        }
        Some(flag) if flag.eq_ignore_ascii_case("false") => {}
        Some(_) => return Err("UseDevelopmentStorage must be true or false".into()),
        None => {}
    }

    let account_name = get("AccountName");
    let credentials = match (get("SharedAccessSignature"), get("AccountKey")) {
        (Some(sas), _) => StorageCredentials::sas_token(sas)
            .map_err(|_| "SharedAccessSignature is not a valid SAS token".to_string())?,
        (None, Some(key)) => {
            let account = account_name.ok_or("connection string has no AccountName")?;
            if azure_core::base64::decode(key).is_err() {
                return Err("AccountKey is not valid base64".into());
            }
            StorageCredentials::access_key(account, Secret::new(key.to_owned()))
        }
        (None, None) => {
            return Err("connection string has neither AccountKey nor SharedAccessSignature".into())
        }
    };

    let location = match get("TableEndpoint") {
        Some(uri) => {
            custom_location(uri, account_name).map_err(|p| format!("TableEndpoint {p}"))?
        }
        None => {
            let account = account_name.ok_or("connection string has no AccountName")?;
            let protocol = match get("DefaultEndpointsProtocol") {
                None => "https",
                Some(p) if p.eq_ignore_ascii_case("https") => "https",
                Some(p) if p.eq_ignore_ascii_case("http") => "http",
                Some(_) => return Err("DefaultEndpointsProtocol must be http or https".into()),
            };
            let suffix = get("EndpointSuffix").unwrap_or(DEFAULT_ENDPOINT_SUFFIX);
            custom_location(
                &format!("{protocol}://{account}.table.{suffix}"),
                Some(account),
            )
            .map_err(|p| format!("AccountName and EndpointSuffix do not make a URL: {p}"))?
        }
    };
    Ok(Endpoint {
        location,
        credentials,
    })
}

fn identity_location(
    table_service_uri: Option<&str>,
    account_name: Option<&str>,
) -> Result<CloudLocation, SettingsError> {
    match (table_service_uri, account_name) {
        (Some(uri), account) => custom_location(uri, account)
            .map_err(|problem| SettingsError::new(TABLE_SERVICE_URI_SETTING, problem)),
        (None, Some(account)) => {
            let valid = (3..=24).contains(&account.len())
                && account
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !valid {
                return Err(SettingsError::new(
                    ACCOUNT_NAME_SETTING,
                    "must be a storage account name (3-24 lowercase letters and digits)",
                ));
            }
            custom_location(
                &format!("https://{account}.table.{DEFAULT_ENDPOINT_SUFFIX}"),
                Some(account),
            )
            .map_err(|problem| SettingsError::new(ACCOUNT_NAME_SETTING, problem))
        }
        // Settings only produce the identity form when one of the two is set.
        (None, None) => Err(SettingsError::new(
            TABLE_SERVICE_URI_SETTING,
            "is not set (nor AzureWebJobsStorage__accountName)",
        )),
    }
}

/// A table service at `uri`; the account defaults to the first label of the host.
/// A trailing `/` is dropped: the SDK appends `/Tables`, and `//Tables` is a 400.
fn custom_location(uri: &str, account: Option<&str>) -> Result<CloudLocation, String> {
    let uri = uri.trim().trim_end_matches('/');
    let parsed = Url::parse(uri).map_err(|_| "is not a URL".to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    let host = parsed.host_str().ok_or("has no host")?;
    let account = account
        .map(str::to_owned)
        .unwrap_or_else(|| host.split('.').next().unwrap_or(host).to_owned());
    Ok(CloudLocation::Custom {
        account,
        uri: uri.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_storage::StorageCredentialsInner;

    const KEY: &str = "a2V5LWJ5dGVzLWZvci10ZXN0cw==";

    fn connection_string(value: &str) -> StorageConnection {
        StorageConnection::connection_string("AzureWebJobsStorage", value)
    }

    fn developer_tools() -> Credentials {
        Credentials::new(
            crate::settings::CredentialChoice::DeveloperTools,
            crate::clock::Clock::system(),
        )
    }

    fn resolve(connection: &StorageConnection) -> Result<Endpoint, SettingsError> {
        endpoint(connection, &developer_tools())
    }

    fn table_url(endpoint: &Endpoint) -> String {
        endpoint
            .location
            .url(azure_storage::clients::ServiceType::Table)
            .unwrap()
            .to_string()
    }

    /// Which kind of credential, without ever printing a secret.
    fn credential_kind(endpoint: &Endpoint) -> &'static str {
        match &*endpoint.credentials.0.try_read().unwrap() {
            StorageCredentialsInner::Key(..) => "key",
            StorageCredentialsInner::SASToken(_) => "sas",
            StorageCredentialsInner::TokenCredential(_) => "token",
            StorageCredentialsInner::BearerToken(_) | StorageCredentialsInner::Anonymous => "other",
        }
    }

    fn problem(value: &str) -> String {
        match resolve(&connection_string(value)) {
            Err(error) => {
                assert_eq!(error.name, "AzureWebJobsStorage");
                assert!(!error.to_string().contains(KEY), "{error}");
                error.problem
            }
            Ok(endpoint) => panic!("{value:?} resolved to {}", table_url(&endpoint)),
        }
    }

    #[test]
    fn an_account_key_string_targets_the_public_cloud_over_https() {
        let endpoint = resolve(&connection_string(&format!(
            "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY};EndpointSuffix=core.windows.net"
        )))
        .unwrap();
        assert_eq!(table_url(&endpoint), "https://acct.table.core.windows.net/");
        assert_eq!(credential_kind(&endpoint), "key");
    }

    #[test]
    fn protocol_and_suffix_shape_the_endpoint() {
        let endpoint = resolve(&connection_string(&format!(
            "accountname=acct;accountkey={KEY};defaultendpointsprotocol=http;endpointsuffix=core.chinacloudapi.cn"
        )))
        .unwrap();
        assert_eq!(
            table_url(&endpoint),
            "http://acct.table.core.chinacloudapi.cn/"
        );
    }

    #[test]
    fn a_sas_string_with_a_table_endpoint_uses_the_token() {
        let endpoint = resolve(&connection_string(
            "TableEndpoint=https://acct.table.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=t&srt=sco&sp=rwdlacu&sig=abc%3D",
        ))
        .unwrap();
        assert_eq!(table_url(&endpoint), "https://acct.table.core.windows.net/");
        assert_eq!(credential_kind(&endpoint), "sas");
        let credentials = endpoint.credentials.0.try_read().unwrap();
        match &*credentials {
            StorageCredentialsInner::SASToken(pairs) => {
                assert!(pairs.contains(&("sig".into(), "abc=".into())), "{pairs:?}")
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn development_storage_is_the_local_emulator() {
        let endpoint = resolve(&connection_string("UseDevelopmentStorage=true")).unwrap();
        assert_eq!(
            table_url(&endpoint),
            "http://127.0.0.1:10002/devstoreaccount1"
        );
        assert_eq!(credential_kind(&endpoint), "key");
    }

    #[test]
    fn a_custom_table_endpoint_loses_its_trailing_slash() {
        let endpoint = resolve(&connection_string(&format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};TableEndpoint=http://127.0.0.1:41234/devstoreaccount1/;"
        )))
        .unwrap();
        match &endpoint.location {
            CloudLocation::Custom { account, uri } => {
                assert_eq!(account, "devstoreaccount1");
                assert_eq!(uri, "http://127.0.0.1:41234/devstoreaccount1");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cosmos_table_endpoint_is_used_as_given() {
        let endpoint = resolve(&connection_string(&format!(
            "DefaultEndpointsProtocol=https;AccountName=cosmo;AccountKey={KEY};TableEndpoint=https://cosmo.table.cosmos.azure.com:443/;"
        )))
        .unwrap();
        assert_eq!(
            table_url(&endpoint),
            "https://cosmo.table.cosmos.azure.com/"
        );
    }

    #[test]
    fn unusable_strings_name_the_setting_and_the_problem_but_not_the_value() {
        assert_eq!(
            problem(&format!("AccountKey={KEY}")),
            "connection string has no AccountName"
        );
        assert_eq!(
            problem("AccountName=acct"),
            "connection string has neither AccountKey nor SharedAccessSignature"
        );
        assert_eq!(
            problem("AccountName=acct;AccountKey"),
            "connection string must be Key=Value pairs separated by ';'"
        );
        assert_eq!(
            problem(&format!("AccountName=acct;AccountKey=not base64!{KEY}")),
            "AccountKey is not valid base64"
        );
        assert_eq!(
            problem(&format!(
                "AccountName=acct;AccountKey={KEY};DefaultEndpointsProtocol=ftp"
            )),
            "DefaultEndpointsProtocol must be http or https"
        );
        assert_eq!(
            problem(&format!(
                "AccountName=acct;AccountKey={KEY};TableEndpoint=not a url"
            )),
            "TableEndpoint is not a URL"
        );
        assert_eq!(
            problem("UseDevelopmentStorage=yes"),
            "UseDevelopmentStorage must be true or false"
        );
    }

    #[test]
    fn identity_with_an_account_name_uses_the_default_credential() {
        let endpoint = resolve(&StorageConnection::Identity {
            table_service_uri: None,
            account_name: Some("acct".into()),
            client_id: None,
        })
        .unwrap();
        assert_eq!(table_url(&endpoint), "https://acct.table.core.windows.net/");
        assert_eq!(credential_kind(&endpoint), "token");
    }

    #[test]
    fn identity_with_a_table_service_uri_uses_it() {
        let endpoint = resolve(&StorageConnection::Identity {
            table_service_uri: Some("https://acct.table.core.windows.net/".into()),
            account_name: None,
            client_id: None,
        })
        .unwrap();
        assert_eq!(table_url(&endpoint), "https://acct.table.core.windows.net/");
    }

    #[test]
    fn a_bad_identity_setting_is_named() {
        let error = resolve(&StorageConnection::Identity {
            table_service_uri: Some("acct.table.core.windows.net".into()),
            account_name: None,
            client_id: None,
        })
        .err()
        .unwrap();
        assert_eq!(error.name, TABLE_SERVICE_URI_SETTING);
        let error = resolve(&StorageConnection::Identity {
            table_service_uri: None,
            account_name: Some("Not_An_Account".into()),
            client_id: None,
        })
        .err()
        .unwrap();
        assert_eq!(error.name, ACCOUNT_NAME_SETTING);
    }

    #[test]
    fn building_a_client_makes_no_request() {
        // An address nothing listens on: building must still succeed at once.
        let service = table_service(
            &connection_string(&format!(
                "AccountName=acct;AccountKey={KEY};TableEndpoint=http://127.0.0.1:9/acct"
            )),
            &developer_tools(),
            &[],
        )
        .unwrap();
        assert_eq!(service.table_client("Chats").table_name(), "Chats");
    }
}
