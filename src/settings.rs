//! Settings from the environment; `local.settings.json` `Values` fill in what is
//! unset (as `func start` would). A bad value stops start-up with one line naming it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::Clock;

mod answering;
mod cosmos;
mod identity;

pub use answering::{
    ApiKey, AzureOpenAi, AzureSearch, Generator, OpenAiCompatible, Retrieval, UpstreamPolicy,
};
pub use cosmos::{CosmosAuth, CosmosSettings};
pub use identity::{ClientId, CredentialChoice};

const LOCAL_SETTINGS_FILE: &str = "local.settings.json";

/// `SESSION_TTL_DAYS` above this (a century) is almost surely a mistake.
const MAX_TTL_DAYS: f64 = 36_500.0;
const SECONDS_PER_DAY: f64 = 86_400.0;

/// A setting that cannot be used, named, with what is wrong. Never echoes secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct SettingsError {
    pub name: String,
    pub problem: String,
}

impl SettingsError {
    pub fn new(name: &str, problem: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            problem: problem.into(),
        }
    }
}

/// How settings are looked up: by name, trimmed, with empty values as unset.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Whether a bad value may be quoted back in the error.
#[derive(Clone, Copy)]
pub(crate) enum Echo {
    Value,
    /// Keys, secrets and URLs (a pasted URL may carry a key) are never quoted.
    Hidden,
}

/// The one way a setting is read: `None` when unset, `parse`'s value when it has
/// one, else an error naming the setting and what it `must_be`.
pub(crate) fn parse_setting<T>(
    get: Lookup,
    name: &str,
    must_be: &str,
    echo: Echo,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, SettingsError> {
    let Some(value) = get(name) else {
        return Ok(None);
    };
    parse(&value).map(Some).ok_or_else(|| {
        SettingsError::new(
            name,
            match echo {
                Echo::Value => format!("must be {must_be} (got {value:?})"),
                Echo::Hidden => format!("must be {must_be} (the value is not shown)"),
            },
        )
    })
}

/// A number within `range`; `must_be` describes it.
pub(crate) fn number_setting<T: std::str::FromStr + PartialOrd>(
    get: Lookup,
    name: &str,
    range: std::ops::RangeInclusive<T>,
    must_be: &str,
) -> Result<Option<T>, SettingsError> {
    parse_setting(get, name, must_be, Echo::Value, |v| {
        v.parse().ok().filter(|n| range.contains(n))
    })
}

/// A valid Azure table name (3-63 letters and digits, starting with a letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName(String);

impl TableName {
    pub fn new(name: &str) -> Option<Self> {
        is_valid_table_name(name).then(|| Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A storage connection string. It carries account keys or SAS tokens, so its
/// `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString(String);

impl ConnectionString {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// How to reach Table Storage, as found in the settings (first match wins).
#[derive(Clone, PartialEq, Eq)]
pub enum StorageConnection {
    /// A connection string, and the setting it came from (for error messages).
    ConnectionString {
        setting: &'static str,
        value: ConnectionString,
    },
    /// Identity-based: `AzureWebJobsStorage__tableServiceUri` or `__accountName`.
    Identity {
        table_service_uri: Option<String>,
        account_name: Option<String>,
        /// `AzureWebJobsStorage__clientId`: a user-assigned managed identity for storage.
        client_id: Option<ClientId>,
    },
}

impl StorageConnection {
    /// The setting this connection came from (the first one, for identity).
    pub fn setting(&self) -> &'static str {
        match self {
            Self::ConnectionString { setting, .. } => setting,
            Self::Identity {
                table_service_uri: Some(_),
                ..
            } => "AzureWebJobsStorage__tableServiceUri",
            Self::Identity { .. } => "AzureWebJobsStorage__accountName",
        }
    }

    /// The connection string `value`, as if read from the setting `setting`.
    pub fn connection_string(setting: &'static str, value: impl Into<String>) -> Self {
        Self::ConnectionString {
            setting,
            value: ConnectionString(value.into()),
        }
    }
}

impl std::fmt::Debug for StorageConnection {
    // Connection strings carry account keys and SAS tokens: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ConnectionString { setting, .. } => write!(f, "ConnectionString({setting})"),
            Self::Identity {
                table_service_uri,
                account_name,
                client_id,
            } => f
                .debug_struct("Identity")
                .field("table_service_uri", table_service_uri)
                .field("account_name", account_name)
                .field("client_id", client_id)
                .finish(),
        }
    }
}

/// `LOG_FORMAT`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line of text per event (no colours unless stderr is a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where and how the handler logs (`RUST_LOG`, `LOG_FORMAT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `RUST_LOG`: a tracing filter directive.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            // tantivy reports every index commit at info.
            filter: "info,tantivy=warn".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`; 7071 when run outside the host, 0 in tests.
    pub port: u16,
    /// `MAX_TURNS`: prior turns handed to the answerer.
    pub max_turns: usize,
    /// `RAG_DOCS_DIR`; `None` serves the embedded sample corpus.
    pub docs_dir: Option<PathBuf>,
    /// `CHAT_HISTORY_TABLE`.
    pub chat_history_table: TableName,
    /// `CHAT_SESSIONS_TABLE`, the listing index; `None`: [`Settings::sessions_table`]
    /// derives it from `CHAT_HISTORY_TABLE`.
    pub chat_sessions_table: Option<String>,
    /// `CHAT_SHARES_TABLE`, the shared snapshots; `None`: [`Settings::shares_table`]
    /// derives it from `CHAT_HISTORY_TABLE`.
    pub chat_shares_table: Option<String>,
    /// `CHAT_ANALYTICS_TABLE`, the daily figures; `None`: [`Settings::analytics_table`]
    /// derives it from `CHAT_HISTORY_TABLE`.
    pub chat_analytics_table: Option<String>,
    /// `SESSION_TTL_DAYS`: how long a conversation is kept after its last turn;
    /// `None` keeps conversations forever.
    pub session_ttl: Option<Duration>,
    /// `TRUST_EASY_AUTH_HEADERS`: take the owner from App Service Authentication's
    /// `X-MS-CLIENT-PRINCIPAL-ID` header (set only behind it).
    pub trust_easy_auth_headers: bool,
    pub storage: Option<StorageConnection>,
    /// `COSMOSDB_*`: conversations in Cosmos DB instead of Table Storage.
    pub cosmos: Option<CosmosSettings>,
    /// `STORAGE_TIMEOUT_SECONDS`: the most one request waits on storage in total.
    pub storage_timeout: Duration,
    /// `STORAGE_TRUSTED_CA_FILE`: certificate authorities that storage
    /// connections trust besides the public ones (Azurite over HTTPS with a
    /// certificate of your own, a storage endpoint behind a private CA).
    pub storage_trusted_cas: Vec<reqwest::Certificate>,
    /// `SESSION_MEMORY_MAX_MB`: cap on in-process conversation memory.
    pub session_memory_max_bytes: usize,
    /// `AZURE_OPENAI_*` or `OPENAI_*`: which model writes answers; offline when neither.
    pub generator: Generator,
    /// `AZURE_SEARCH_*`: where a model's passages come from; the local index when unset.
    pub retrieval: Retrieval,
    /// `MODEL_CONTEXT_TOKENS`: the most a model prompt may hold, in estimated tokens.
    pub model_context_tokens: usize,
    /// `MODEL_TIMEOUT_SECONDS`, `MODEL_MAX_RETRIES`: bounds on model and search calls.
    pub upstream: UpstreamPolicy,
    /// `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_FEDERATED_TOKEN_FILE`, `IDENTITY_ENDPOINT`: which Microsoft Entra
    /// credential authenticates to Azure services that get no key.
    pub credential: CredentialChoice,
    /// `RUST_LOG`, `LOG_FORMAT`.
    pub log: LogSettings,
    /// The longest a streamed answer stays silent: then a keep-alive comment is
    /// sent. Not a setting users change (15 s); tests shorten it.
    pub stream_keep_alive: Duration,
    /// Not read from the environment: the system clock, or a controlled one in tests.
    pub clock: Clock,
}

impl Settings {
    /// Defaults for everything: what a test or an embedded run starts from.
    pub fn defaults() -> Self {
        Self {
            port: 7071,
            max_turns: 10,
            docs_dir: None,
            chat_history_table: TableName("OTISChatHistory".into()),
            chat_sessions_table: None,
            chat_shares_table: None,
            chat_analytics_table: None,
            session_ttl: None,
            trust_easy_auth_headers: false,
            storage: None,
            cosmos: None,
            storage_timeout: Duration::from_secs(10),
            storage_trusted_cas: Vec::new(),
            // Comfortably inside Flex Consumption's smallest instance (README, settings).
            session_memory_max_bytes: 64 * 1024 * 1024,
            generator: Generator::Offline,
            retrieval: Retrieval::LocalIndex,
            model_context_tokens: 6000,
            upstream: UpstreamPolicy::default(),
            credential: CredentialChoice::DeveloperTools,
            log: LogSettings::default(),
            stream_keep_alive: Duration::from_secs(15),
            clock: Clock::system(),
        }
    }

    /// The process environment, then `local.settings.json` in the working directory.
    pub fn from_environment() -> Result<Self, SettingsError> {
        let local = read_local_settings(Path::new(LOCAL_SETTINGS_FILE))?;
        Self::from_lookup(|name| {
            std::env::var(name)
                .ok()
                .or_else(|| local.get(name).cloned())
        })
    }

    /// Reads every setting through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let get: Lookup = &get;
        let defaults = Self::defaults();

        let port = number_setting(
            get,
            "FUNCTIONS_CUSTOMHANDLER_PORT",
            0..=u16::MAX,
            "a port number from 0 to 65535",
        )?;
        let max_turns =
            number_setting(get, "MAX_TURNS", 1..=1000, "a whole number from 1 to 1000")?;
        let docs_dir = parse_setting(get, "RAG_DOCS_DIR", "a readable folder", Echo::Value, |v| {
            Path::new(v).is_dir().then(|| PathBuf::from(v))
        })?;
        let table_name = "a valid table name (3-63 letters and digits, starting with a letter)";
        let chat_history_table = parse_setting(
            get,
            "CHAT_HISTORY_TABLE",
            table_name,
            Echo::Value,
            TableName::new,
        )?;
        let session_ttl = number_setting(
            get,
            "SESSION_TTL_DAYS",
            f64::MIN_POSITIVE..=MAX_TTL_DAYS,
            &format!("a number of days above 0 and at most {MAX_TTL_DAYS}; fractions are allowed"),
        )?;
        let trust_easy_auth_headers = parse_setting(
            get,
            "TRUST_EASY_AUTH_HEADERS",
            "true or false",
            Echo::Value,
            boolean,
        )?;
        let storage_timeout = number_setting(
            get,
            "STORAGE_TIMEOUT_SECONDS",
            f64::MIN_POSITIVE..=230.0,
            "a number of seconds above 0 and at most 230",
        )?;
        let storage_trusted_cas = parse_setting(
            get,
            "STORAGE_TRUSTED_CA_FILE",
            "a readable file of PEM certificates",
            Echo::Value,
            |path| {
                let pem = std::fs::read(path).ok()?;
                reqwest::Certificate::from_pem_bundle(&pem)
                    .ok()
                    .filter(|certificates| !certificates.is_empty())
            },
        )?;
        let session_memory_max_mb = number_setting(
            get,
            "SESSION_MEMORY_MAX_MB",
            1..=1 << 20,
            "a whole number of MiB from 1 to 1048576",
        )?;
        let log = LogSettings {
            filter: parse_setting(
                get,
                "RUST_LOG",
                "a log filter such as info or info,session_rag=debug",
                Echo::Value,
                |v| {
                    tracing_subscriber::EnvFilter::try_new(v)
                        .ok()
                        .map(|_| v.to_owned())
                },
            )?
            .unwrap_or(defaults.log.filter),
            format: parse_setting(get, "LOG_FORMAT", "text or json", Echo::Value, |v| match v
                .to_ascii_lowercase()
                .as_str()
            {
                "text" => Some(LogFormat::Text),
                "json" => Some(LogFormat::Json),
                _ => None,
            })?
            .unwrap_or_default(),
        };
        let generator = answering::generator(get)?;
        let settings = Self {
            port: port.unwrap_or(defaults.port),
            max_turns: max_turns.unwrap_or(defaults.max_turns),
            docs_dir,
            chat_history_table: chat_history_table.unwrap_or(defaults.chat_history_table),
            chat_sessions_table: get("CHAT_SESSIONS_TABLE"),
            chat_shares_table: get("CHAT_SHARES_TABLE"),
            chat_analytics_table: get("CHAT_ANALYTICS_TABLE"),
            session_ttl: session_ttl.map(|days| Duration::from_secs_f64(days * SECONDS_PER_DAY)),
            trust_easy_auth_headers: trust_easy_auth_headers.unwrap_or(false),
            storage: storage_connection(get)?,
            cosmos: cosmos::cosmos(get)?,
            storage_timeout: storage_timeout
                .map_or(defaults.storage_timeout, Duration::from_secs_f64),
            storage_trusted_cas: storage_trusted_cas.unwrap_or_default(),
            session_memory_max_bytes: session_memory_max_mb
                .map_or(defaults.session_memory_max_bytes, |mb| mb * 1024 * 1024),
            retrieval: answering::retrieval(get, &generator)?,
            generator,
            model_context_tokens: answering::context_tokens(get, defaults.model_context_tokens)?,
            upstream: answering::upstream_policy(get)?,
            credential: identity::credential_choice(get)?,
            log,
            stream_keep_alive: defaults.stream_keep_alive,
            clock: defaults.clock,
        };
        settings.check_tables()?;
        Ok(settings)
    }

    /// The listing index's table: `CHAT_SESSIONS_TABLE`, else `CHAT_HISTORY_TABLE`
    /// followed by `Sessions` (`OTISChatSessions` by default).
    pub fn sessions_table(&self) -> String {
        self.beside_history(&self.chat_sessions_table, "Sessions")
    }

    /// The shared snapshots' table: `CHAT_SHARES_TABLE`, else `CHAT_HISTORY_TABLE`
    /// followed by `Shares` (`OTISChatShares` by default).
    pub fn shares_table(&self) -> String {
        self.beside_history(&self.chat_shares_table, "Shares")
    }

    /// The daily figures' table: `CHAT_ANALYTICS_TABLE`, else `CHAT_HISTORY_TABLE`
    /// followed by `Analytics` (`OTISChatAnalytics` by default).
    pub fn analytics_table(&self) -> String {
        self.beside_history(&self.chat_analytics_table, "Analytics")
    }

    /// `chosen`, else the history table's name with `History` replaced by `suffix`.
    fn beside_history(&self, chosen: &Option<String>, suffix: &str) -> String {
        chosen.clone().unwrap_or_else(|| {
            let history = self.chat_history_table.as_str();
            format!(
                "{}{suffix}",
                history.strip_suffix("History").unwrap_or(history)
            )
        })
    }

    /// The listing, shares and figures tables must be valid names, each apart
    /// from the history table and from one another. Checked when the settings are
    /// read, and again when storage is connected (settings built in code skip the
    /// first).
    pub fn check_tables(&self) -> Result<(), SettingsError> {
        let history = self.chat_history_table.as_str();
        let (sessions, shares) = (self.sessions_table(), self.shares_table());
        check_own_table("CHAT_SESSIONS_TABLE", &sessions, &[history])?;
        check_own_table("CHAT_SHARES_TABLE", &shares, &[history, &sessions])?;
        check_own_table(
            "CHAT_ANALYTICS_TABLE",
            &self.analytics_table(),
            &[history, &sessions, &shares],
        )
    }
}

/// `name` (the table of `setting`) must be a valid table name other than `taken`.
fn check_own_table(setting: &str, name: &str, taken: &[&str]) -> Result<(), SettingsError> {
    let problem = if !is_valid_table_name(name) {
        format!("{name:?} is not a valid table name (3-63 letters and digits, starting with a letter); set {setting} to one")
    } else if taken.iter().any(|other| name.eq_ignore_ascii_case(other)) {
        format!(
            "{name:?} is taken by another of the app's tables; {setting} needs a table of its own"
        )
    } else {
        return Ok(());
    };
    Err(SettingsError::new(setting, problem))
}

/// `true` or `false`, in any case.
fn boolean(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// PRODUCT.md's order: our own connection string, then the Functions storage
/// connection string, then its identity-based form.
fn storage_connection(get: Lookup) -> Result<Option<StorageConnection>, SettingsError> {
    for setting in ["AZURE_STORAGE_CONNECTION_STRING", "AzureWebJobsStorage"] {
        if let Some(value) = get(setting) {
            return Ok(Some(StorageConnection::connection_string(setting, value)));
        }
    }
    let table_service_uri = get("AzureWebJobsStorage__tableServiceUri");
    let account_name = get("AzureWebJobsStorage__accountName");
    if table_service_uri.is_none() && account_name.is_none() {
        return Ok(None);
    }
    Ok(Some(StorageConnection::Identity {
        table_service_uri,
        account_name,
        client_id: identity::client_id(get, "AzureWebJobsStorage__clientId")?,
    }))
}

/// Azure table names: 3-63 alphanumeric characters, starting with a letter.
pub fn is_valid_table_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

fn read_local_settings(path: &Path) -> Result<HashMap<String, String>, SettingsError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(HashMap::new());
    };
    let invalid = |problem: String| SettingsError::new(LOCAL_SETTINGS_FILE, problem);
    let document: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("is not valid JSON: {e}")))?;
    let Some(values) = document.get("Values") else {
        return Ok(HashMap::new());
    };
    let values = values
        .as_object()
        .ok_or_else(|| invalid("\"Values\" must be an object".into()))?;
    values
        .iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(s) => Ok((name.clone(), s.clone())),
            serde_json::Value::Number(n) => Ok((name.clone(), n.to_string())),
            serde_json::Value::Bool(b) => Ok((name.clone(), b.to_string())),
            _ => Err(invalid(format!("\"Values.{name}\" must be a string"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s = from(&[]).unwrap();
        assert_eq!(s.port, 7071);
        assert_eq!(s.max_turns, 10);
        assert_eq!(s.chat_history_table.as_str(), "OTISChatHistory");
        assert!(s.storage.is_none());
        assert_eq!(s.storage_timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_name_their_setting() {
        for (name, value) in [
            ("FUNCTIONS_CUSTOMHANDLER_PORT", "http"),
            ("MAX_TURNS", "0"),
            ("MAX_TURNS", "ten"),
            ("RAG_DOCS_DIR", "/no/such/folder"),
            ("CHAT_HISTORY_TABLE", "chat-history"),
            ("STORAGE_TIMEOUT_SECONDS", "-1"),
            ("SESSION_MEMORY_MAX_MB", "lots"),
            ("SESSION_TTL_DAYS", "0"),
            ("SESSION_TTL_DAYS", "-1"),
            ("SESSION_TTL_DAYS", "a week"),
            ("SESSION_TTL_DAYS", "NaN"),
            ("TRUST_EASY_AUTH_HEADERS", "yes"),
            ("CHAT_SESSIONS_TABLE", "chat-sessions"),
            ("CHAT_SESSIONS_TABLE", "OTISChatHistory"),
            ("CHAT_ANALYTICS_TABLE", "chat-figures"),
            ("CHAT_ANALYTICS_TABLE", "OTISChatSessions"),
            ("RUST_LOG", "session_rag=verbose"),
            ("LOG_FORMAT", "xml"),
            ("STORAGE_TRUSTED_CA_FILE", "/no/such/ca.pem"),
            ("STORAGE_TRUSTED_CA_FILE", "Cargo.toml"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert_eq!(err.name, name);
            assert!(err.to_string().starts_with(&format!("{name}: ")));
        }
    }

    #[test]
    fn conversation_management_settings() {
        let s = from(&[]).unwrap();
        assert_eq!(s.sessions_table(), "OTISChatSessions");
        assert_eq!(s.analytics_table(), "OTISChatAnalytics");
        assert_eq!(s.session_ttl, None);
        assert!(!s.trust_easy_auth_headers);

        let s = from(&[
            ("CHAT_HISTORY_TABLE", "Chats"),
            ("SESSION_TTL_DAYS", "0.5"),
            ("TRUST_EASY_AUTH_HEADERS", "TRUE"),
        ])
        .unwrap();
        assert_eq!(s.sessions_table(), "ChatsSessions");
        assert_eq!(s.analytics_table(), "ChatsAnalytics");
        assert_eq!(s.session_ttl, Some(Duration::from_secs(43_200)));
        assert!(s.trust_easy_auth_headers);

        let s = from(&[("CHAT_SESSIONS_TABLE", "Listing")]).unwrap();
        assert_eq!(s.sessions_table(), "Listing");

        // A long history table name leaves no room for the derived one.
        let long = format!("T{}", "x".repeat(60));
        let err = from(&[("CHAT_HISTORY_TABLE", long.as_str())]).unwrap_err();
        assert_eq!(err.name, "CHAT_SESSIONS_TABLE");
    }

    #[test]
    fn shares_have_a_table_of_their_own() {
        assert_eq!(from(&[]).unwrap().shares_table(), "OTISChatShares");
        let s = from(&[("CHAT_HISTORY_TABLE", "Chats")]).unwrap();
        assert_eq!(s.shares_table(), "ChatsShares");
        let s = from(&[("CHAT_SHARES_TABLE", "Snapshots")]).unwrap();
        assert_eq!(s.shares_table(), "Snapshots");
        for taken in ["OTISChatHistory", "OTISChatSessions", "no"] {
            let err = from(&[("CHAT_SHARES_TABLE", taken)]).unwrap_err();
            assert_eq!(err.name, "CHAT_SHARES_TABLE", "{taken}");
        }
    }

    #[test]
    fn storage_connection_follows_the_documented_order() {
        let s = from(&[
            ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                "AccountName=a;AccountKey=secret",
            ),
        ])
        .unwrap();
        assert!(matches!(
            s.storage,
            Some(StorageConnection::ConnectionString {
                setting: "AZURE_STORAGE_CONNECTION_STRING",
                ..
            })
        ));
        let s = from(&[
            ("AzureWebJobsStorage__accountName", "acct"),
            (
                "AzureWebJobsStorage__clientId",
                "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
            ),
        ])
        .unwrap();
        assert_eq!(
            s.storage,
            Some(StorageConnection::Identity {
                table_service_uri: None,
                account_name: Some("acct".into()),
                client_id: ClientId::new("6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"),
            })
        );
    }

    #[test]
    fn debug_output_hides_connection_strings() {
        let s = from(&[(
            "AZURE_STORAGE_CONNECTION_STRING",
            "AccountName=a;AccountKey=topsecret",
        )])
        .unwrap();
        assert!(!format!("{s:?}").contains("topsecret"));
    }

    #[test]
    fn local_settings_values_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.settings.json");
        std::fs::write(
            &path,
            r#"{"IsEncrypted":false,"Values":{"MAX_TURNS":"4","X":5}}"#,
        )
        .unwrap();
        let values = read_local_settings(&path).unwrap();
        assert_eq!(values["MAX_TURNS"], "4");
        std::fs::write(&path, "{nope").unwrap();
        assert_eq!(
            read_local_settings(&path).unwrap_err().name,
            LOCAL_SETTINGS_FILE
        );
    }
}
