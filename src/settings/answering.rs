//! Settings of model-backed answers: which model writes them, where their passages
//! come from, and how calls to those services are bounded.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

use super::{number_setting, parse_setting, Echo, Lookup, SettingsError};

/// The current GA version of the Azure OpenAI data-plane API.
pub const DEFAULT_AZURE_OPENAI_API_VERSION: &str = "2024-10-21";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

const AZURE_OPENAI_SETTINGS: [&str; 4] = [
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_API_VERSION",
];
const OPENAI_SETTINGS: [&str; 3] = ["OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY"];
const AZURE_SEARCH_SETTINGS: [&str; 6] = [
    "AZURE_SEARCH_ENDPOINT",
    "AZURE_SEARCH_INDEX",
    "AZURE_SEARCH_API_KEY",
    "AZURE_SEARCH_CONTENT_FIELD",
    "AZURE_SEARCH_TITLE_FIELD",
    "AZURE_SEARCH_ID_FIELD",
];

/// A key for an upstream service. Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Which model writes the answers (`mode` in the response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generator {
    /// No model: the best passages, quoted. The default.
    Offline,
    AzureOpenAi(AzureOpenAi),
    OpenAi(OpenAiCompatible),
}

/// An Azure OpenAI deployment (`AZURE_OPENAI_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureOpenAi {
    /// Without a trailing `/`.
    pub endpoint: String,
    pub deployment: String,
    pub api_version: String,
    /// `None`: a Microsoft Entra token authenticates instead.
    pub api_key: Option<ApiKey>,
}

/// OpenAI or any server speaking its API: llama.cpp, vLLM, Ollama (`OPENAI_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiCompatible {
    /// Without a trailing `/`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    /// `None` for local servers that want no key.
    pub api_key: Option<ApiKey>,
}

/// Where the passages that ground a model's answer come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retrieval {
    /// The documents of `RAG_DOCS_DIR`, indexed in memory. The default.
    LocalIndex,
    AzureSearch(AzureSearch),
}

/// An Azure AI Search index (`AZURE_SEARCH_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSearch {
    /// Without a trailing `/`.
    pub endpoint: String,
    pub index: String,
    /// `None`: a Microsoft Entra token authenticates instead.
    pub api_key: Option<ApiKey>,
    pub content_field: String,
    pub title_field: String,
    pub id_field: String,
}

/// How long calls to a model or search service may take, and how they are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// `MODEL_TIMEOUT_SECONDS`: the most one call may take, its retries included.
    pub timeout: Duration,
    /// `MODEL_MAX_RETRIES`: further attempts after a 429, a 5xx or a refused connection.
    pub max_retries: u32,
    /// The wait before the first retry when the service names none; it doubles per retry.
    pub first_retry_delay: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_retry_delay: Duration,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_retries: 3,
            first_retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(20),
        }
    }
}

/// `AZURE_OPENAI_*` or `OPENAI_*`, never both; neither means offline.
pub(super) fn generator(get: Lookup) -> Result<Generator, SettingsError> {
    let azure = AZURE_OPENAI_SETTINGS.into_iter().find(|n| get(n).is_some());
    let openai = OPENAI_SETTINGS.into_iter().find(|n| get(n).is_some());
    match (azure, openai) {
        (Some(azure), Some(openai)) => Err(SettingsError::new(
            &format!("{azure} and {openai}"),
            "Azure OpenAI and an OpenAI-compatible server are both configured; set only one of them",
        )),
        (Some(first), None) => Ok(Generator::AzureOpenAi(AzureOpenAi {
            endpoint: endpoint(get, "AZURE_OPENAI_ENDPOINT", first)?,
            deployment: path_segment(get, "AZURE_OPENAI_DEPLOYMENT", first)?,
            api_version: parse_setting(
                get,
                "AZURE_OPENAI_API_VERSION",
                "an API version like 2024-10-21",
                Echo::Value,
                |v| {
                    v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-')
                        .then(|| v.to_owned())
                },
            )?
            .unwrap_or_else(|| DEFAULT_AZURE_OPENAI_API_VERSION.to_owned()),
            api_key: api_key(get, "AZURE_OPENAI_API_KEY")?,
        })),
        (None, Some(first)) => Ok(Generator::OpenAi(OpenAiCompatible {
            base_url: match get("OPENAI_BASE_URL") {
                None => DEFAULT_OPENAI_BASE_URL.to_owned(),
                Some(_) => endpoint(get, "OPENAI_BASE_URL", first)?,
            },
            model: required(get, "OPENAI_MODEL", first, "a model name", Echo::Value, |v| {
                Some(v.to_owned())
            })?,
            api_key: api_key(get, "OPENAI_API_KEY")?,
        })),
        (None, None) => Ok(Generator::Offline),
    }
}

/// Azure AI Search when any `AZURE_SEARCH_*` is set; it only grounds a model's answers.
pub(super) fn retrieval(get: Lookup, generator: &Generator) -> Result<Retrieval, SettingsError> {
    let Some(first) = AZURE_SEARCH_SETTINGS.into_iter().find(|n| get(n).is_some()) else {
        return Ok(Retrieval::LocalIndex);
    };
    if *generator == Generator::Offline {
        return Err(SettingsError::new(
            first,
            "Azure AI Search grounds model answers: configure AZURE_OPENAI_* or OPENAI_* as well",
        ));
    }
    Ok(Retrieval::AzureSearch(AzureSearch {
        endpoint: endpoint(get, "AZURE_SEARCH_ENDPOINT", first)?,
        index: path_segment(get, "AZURE_SEARCH_INDEX", first)?,
        api_key: api_key(get, "AZURE_SEARCH_API_KEY")?,
        content_field: field_name(get, "AZURE_SEARCH_CONTENT_FIELD", "content")?,
        title_field: field_name(get, "AZURE_SEARCH_TITLE_FIELD", "title")?,
        id_field: field_name(get, "AZURE_SEARCH_ID_FIELD", "id")?,
    }))
}

pub(super) fn upstream_policy(get: Lookup) -> Result<UpstreamPolicy, SettingsError> {
    let defaults = UpstreamPolicy::default();
    // A follow-up makes three calls in turn (rewrite, search, answer): at 75 s each
    // they still end before the Functions front end gives up, at 230 s.
    let seconds = number(
        get,
        "MODEL_TIMEOUT_SECONDS",
        defaults.timeout.as_secs_f64(),
        0.001..=75.0,
        "a number of seconds above 0 and at most 75",
    )?;
    Ok(UpstreamPolicy {
        timeout: Duration::from_secs_f64(seconds),
        max_retries: number(
            get,
            "MODEL_MAX_RETRIES",
            defaults.max_retries,
            0..=10,
            "a whole number from 0 to 10",
        )?,
        ..defaults
    })
}

/// `MODEL_CONTEXT_TOKENS`: the most a prompt may hold, in estimated tokens.
pub(super) fn context_tokens(get: Lookup, default: usize) -> Result<usize, SettingsError> {
    number(
        get,
        "MODEL_CONTEXT_TOKENS",
        default,
        500..=2_000_000,
        "a whole number of tokens from 500 to 2000000",
    )
}

/// A number within `range`, `default` when unset.
fn number<T: std::str::FromStr + PartialOrd>(
    get: Lookup,
    name: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    expected: &str,
) -> Result<T, SettingsError> {
    Ok(number_setting(get, name, range, expected)?.unwrap_or(default))
}

/// A setting that must be set when `because` is, parsed as [`parse_setting`] does.
fn required<T>(
    get: Lookup,
    name: &str,
    because: &str,
    must_be: &str,
    echo: Echo,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, SettingsError> {
    parse_setting(get, name, must_be, echo, parse)?
        .ok_or_else(|| SettingsError::new(name, format!("is required when {because} is set")))
}

/// An http(s) URL. The value is not echoed: a pasted URL may carry a key.
fn endpoint(get: Lookup, name: &str, because: &str) -> Result<String, SettingsError> {
    required(
        get,
        name,
        because,
        "an http or https URL with no credentials, query or fragment",
        Echo::Hidden,
        |value| {
            let url = Url::parse(value).ok()?;
            let plain = matches!(url.scheme(), "http" | "https")
                && url.has_host()
                && url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none();
            plain.then(|| value.trim_end_matches('/').to_owned())
        },
    )
}

/// A name that becomes one segment of a URL path (a deployment or an index).
fn path_segment(get: Lookup, name: &str, because: &str) -> Result<String, SettingsError> {
    required(
        get,
        name,
        because,
        "at most 128 letters, digits, '-', '_' or '.'",
        Echo::Value,
        |value| {
            (value.len() <= 128
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
            .then(|| value.to_owned())
        },
    )
}

/// An Azure AI Search field name: a letter, then letters, digits or underscores.
fn field_name(get: Lookup, name: &str, default: &str) -> Result<String, SettingsError> {
    let field = parse_setting(
        get,
        name,
        "a field name: a letter, then letters, digits or '_'",
        Echo::Value,
        |value| {
            (value.len() <= 128
                && value.starts_with(|c: char| c.is_ascii_alphabetic())
                && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| value.to_owned())
        },
    )?;
    Ok(field.unwrap_or_else(|| default.to_owned()))
}

/// A key goes into an HTTP header, so it must be visible ASCII. Never echoed.
pub(super) fn api_key(get: Lookup, name: &str) -> Result<Option<ApiKey>, SettingsError> {
    parse_setting(
        get,
        name,
        "visible ASCII characters only",
        Echo::Hidden,
        |key| {
            key.chars()
                .all(|c| c.is_ascii_graphic())
                .then(|| ApiKey::new(key))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        Settings::from_lookup(|name| map.get(name).map(|v| v.to_string()))
    }

    #[test]
    fn offline_and_the_local_index_are_the_defaults() {
        let s = from(&[]).unwrap();
        assert_eq!(s.generator, Generator::Offline);
        assert_eq!(s.retrieval, Retrieval::LocalIndex);
        assert_eq!(s.model_context_tokens, 6000);
        assert_eq!(s.upstream, UpstreamPolicy::default());
        assert_eq!(s.upstream.timeout, Duration::from_secs(60));
        assert_eq!(s.upstream.max_retries, 3);
    }

    #[test]
    fn azure_openai_takes_its_endpoint_deployment_and_optional_key() {
        let s = from(&[
            ("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com/"),
            ("AZURE_OPENAI_DEPLOYMENT", "gpt-4o"),
        ])
        .unwrap();
        assert_eq!(
            s.generator,
            Generator::AzureOpenAi(AzureOpenAi {
                endpoint: "https://contoso.openai.azure.com".into(),
                deployment: "gpt-4o".into(),
                api_version: "2024-10-21".into(),
                api_key: None,
            })
        );
        let s = from(&[
            ("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com"),
            ("AZURE_OPENAI_DEPLOYMENT", "gpt-4o"),
            ("AZURE_OPENAI_API_KEY", "k"),
            ("AZURE_OPENAI_API_VERSION", "2025-01-01-preview"),
        ])
        .unwrap();
        let Generator::AzureOpenAi(azure) = s.generator else {
            panic!("not Azure OpenAI");
        };
        assert_eq!(azure.api_key, Some(ApiKey::new("k")));
        assert_eq!(azure.api_version, "2025-01-01-preview");
    }

    #[test]
    fn openai_compatible_needs_a_model_and_defaults_to_openai() {
        let s = from(&[("OPENAI_MODEL", "gpt-4o-mini"), ("OPENAI_API_KEY", "sk-x")]).unwrap();
        assert_eq!(
            s.generator,
            Generator::OpenAi(OpenAiCompatible {
                base_url: DEFAULT_OPENAI_BASE_URL.into(),
                model: "gpt-4o-mini".into(),
                api_key: Some(ApiKey::new("sk-x")),
            })
        );
        let s = from(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1/"),
            ("OPENAI_MODEL", "llama3.1:8b"),
        ])
        .unwrap();
        let Generator::OpenAi(openai) = s.generator else {
            panic!("not OpenAI-compatible");
        };
        assert_eq!(openai.base_url, "http://127.0.0.1:8080/v1");
        assert_eq!(openai.api_key, None);
    }

    #[test]
    fn both_generators_at_once_name_both() {
        let err = from(&[
            ("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com"),
            ("AZURE_OPENAI_DEPLOYMENT", "gpt-4o"),
            ("OPENAI_API_KEY", "sk-x"),
        ])
        .unwrap_err();
        assert_eq!(err.name, "AZURE_OPENAI_ENDPOINT and OPENAI_API_KEY");
    }

    #[test]
    fn azure_search_takes_its_fields_and_needs_a_model() {
        let search = [
            ("AZURE_SEARCH_ENDPOINT", "https://s.search.windows.net"),
            ("AZURE_SEARCH_INDEX", "cobol-code"),
            ("AZURE_SEARCH_CONTENT_FIELD", "chunk"),
        ];
        let err = from(&search).unwrap_err();
        assert_eq!(err.name, "AZURE_SEARCH_ENDPOINT");
        let s = from(&[search.as_slice(), &[("OPENAI_MODEL", "m")]].concat()).unwrap();
        assert_eq!(
            s.retrieval,
            Retrieval::AzureSearch(AzureSearch {
                endpoint: "https://s.search.windows.net".into(),
                index: "cobol-code".into(),
                api_key: None,
                content_field: "chunk".into(),
                title_field: "title".into(),
                id_field: "id".into(),
            })
        );
    }

    #[test]
    fn bad_values_name_their_setting_and_never_echo_keys_or_urls() {
        let model = ("OPENAI_MODEL", "m");
        let azure = [
            ("AZURE_OPENAI_ENDPOINT", "https://a.openai.azure.com"),
            ("AZURE_OPENAI_DEPLOYMENT", "d"),
        ];
        let search = [
            model,
            ("AZURE_SEARCH_ENDPOINT", "https://s.search.windows.net"),
            ("AZURE_SEARCH_INDEX", "i"),
        ];
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![azure[0]], "AZURE_OPENAI_DEPLOYMENT"),
            (vec![azure[1]], "AZURE_OPENAI_ENDPOINT"),
            (
                vec![("AZURE_OPENAI_ENDPOINT", "ftp://x"), azure[1]],
                "AZURE_OPENAI_ENDPOINT",
            ),
            (
                vec![azure[0], ("AZURE_OPENAI_DEPLOYMENT", "a/b")],
                "AZURE_OPENAI_DEPLOYMENT",
            ),
            (
                [
                    azure.as_slice(),
                    &[("AZURE_OPENAI_API_VERSION", "2024&x=1")],
                ]
                .concat(),
                "AZURE_OPENAI_API_VERSION",
            ),
            (vec![("OPENAI_API_KEY", "sk-secret")], "OPENAI_MODEL"),
            (
                vec![model, ("OPENAI_BASE_URL", "https://h/v1?key=url-secret")],
                "OPENAI_BASE_URL",
            ),
            (
                vec![model, ("OPENAI_API_KEY", "key secret")],
                "OPENAI_API_KEY",
            ),
            (
                vec![model, ("AZURE_SEARCH_INDEX", "i")],
                "AZURE_SEARCH_ENDPOINT",
            ),
            (vec![search[0], search[1]], "AZURE_SEARCH_INDEX"),
            (
                [search.as_slice(), &[("AZURE_SEARCH_ID_FIELD", "1id")]].concat(),
                "AZURE_SEARCH_ID_FIELD",
            ),
            (
                vec![("MODEL_TIMEOUT_SECONDS", "0")],
                "MODEL_TIMEOUT_SECONDS",
            ),
            (
                vec![("MODEL_TIMEOUT_SECONDS", "76")],
                "MODEL_TIMEOUT_SECONDS",
            ),
            (vec![("MODEL_MAX_RETRIES", "11")], "MODEL_MAX_RETRIES"),
            (
                vec![("MODEL_CONTEXT_TOKENS", "lots")],
                "MODEL_CONTEXT_TOKENS",
            ),
        ];
        for (pairs, name) in cases {
            let err = from(&pairs).unwrap_err();
            assert_eq!(err.name, name, "{pairs:?}");
            let shown = err.to_string();
            assert!(shown.starts_with(&format!("{name}: ")), "{shown}");
            assert!(!shown.contains("secret"), "{shown}");
        }
    }

    #[test]
    fn debug_output_hides_keys() {
        let s = from(&[
            ("OPENAI_MODEL", "m"),
            ("OPENAI_API_KEY", "sk-topsecret"),
            ("AZURE_SEARCH_ENDPOINT", "https://s.search.windows.net"),
            ("AZURE_SEARCH_INDEX", "i"),
            ("AZURE_SEARCH_API_KEY", "search-topsecret"),
        ])
        .unwrap();
        assert!(!format!("{s:?}").contains("topsecret"));
    }

    #[test]
    fn upstream_limits_are_read() {
        let s = from(&[
            ("MODEL_TIMEOUT_SECONDS", "0.5"),
            ("MODEL_MAX_RETRIES", "0"),
            ("MODEL_CONTEXT_TOKENS", "3000"),
        ])
        .unwrap();
        assert_eq!(s.upstream.timeout, Duration::from_millis(500));
        assert_eq!(s.upstream.max_retries, 0);
        assert_eq!(s.model_context_tokens, 3000);
    }
}
