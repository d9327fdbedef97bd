//! Chat completions. Azure OpenAI and OpenAI-compatible servers take the same
//! request and send the same reply; they differ in the URL, the credentials and
//! whether the body names the model (Azure names the deployment in the URL).
//! Answers are streamed (`"stream": true`): the reply is Server-Sent Events of
//! completion chunks, ended by `data: [DONE]`.

use async_trait::async_trait;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::upstream::{is_plain_code, service_url, Upstream};
use super::AnswerError;
use crate::settings::{AzureOpenAi, OpenAiCompatible, SettingsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A model that continues a conversation.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The assistant's reply to `messages`, in one piece.
    async fn complete(&self, messages: &[ChatMessage]) -> Result<String, AnswerError>;

    /// The assistant's reply to `messages`, each piece handed to `on_text` the
    /// moment it arrives; returns the whole reply.
    async fn stream(
        &self,
        messages: &[ChatMessage],
        on_text: &mut (dyn for<'t> FnMut(&'t str) + Send),
    ) -> Result<String, AnswerError>;
}

/// The `/chat/completions` endpoint of Azure OpenAI or an OpenAI-compatible server.
pub struct ChatCompletions {
    upstream: Upstream,
    url: Url,
    /// `model` in the body: OpenAI-compatible servers only.
    model: Option<String>,
}

/// The parts of a chat completion this service reads.
#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ReplyMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ReplyMessage {
    /// `null` when a content filter withheld the reply.
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// The parts of a streamed completion chunk this service reads.
#[derive(Deserialize)]
struct Chunk {
    /// Empty in Azure OpenAI's first chunk, which carries only the prompt's
    /// content-filter results; absent in an error event.
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    /// Sent by some servers with the last chunk.
    usage: Option<Usage>,
    /// A failure after the reply had begun (OpenAI sends it as an event).
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct Delta {
    content: Option<String>,
}

impl ChatCompletions {
    /// `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`
    pub fn azure_openai(settings: &AzureOpenAi, upstream: Upstream) -> Result<Self, SettingsError> {
        let address = format!(
            "{}/openai/deployments/{}/chat/completions",
            settings.endpoint, settings.deployment
        );
        Ok(Self {
            upstream,
            url: service_url(
                &address,
                Some(&settings.api_version),
                "AZURE_OPENAI_ENDPOINT",
            )?,
            model: None,
        })
    }

    /// `{base_url}/chat/completions`
    pub fn openai_compatible(
        settings: &OpenAiCompatible,
        upstream: Upstream,
    ) -> Result<Self, SettingsError> {
        let address = format!("{}/chat/completions", settings.base_url);
        Ok(Self {
            upstream,
            url: service_url(&address, None, "OPENAI_BASE_URL")?,
            model: Some(settings.model.clone()),
        })
    }

    /// The request for a reply to `messages`: only the messages (and the model).
    /// Sampling parameters are left to the deployment, since reasoning models
    /// reject the ones others accept.
    fn request(&self, messages: &[ChatMessage]) -> serde_json::Value {
        let mut body = json!({ "messages": messages });
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        body
    }

    fn log_usage(&self, usage: Option<&Usage>) {
        tracing::info!(
            service = self.upstream.service,
            prompt_tokens = usage.map(|u| u.prompt_tokens),
            completion_tokens = usage.map(|u| u.completion_tokens),
            "chat completion"
        );
    }

    /// A reply that is only whitespace is a failure (a content filter withheld it).
    fn non_empty(&self, reply: String, finish_reason: Option<&str>) -> Result<String, AnswerError> {
        if reply.trim().is_empty() {
            return Err(self.upstream.failure(format!(
                "sent an empty reply (finish_reason: {})",
                finish_reason.unwrap_or("none")
            )));
        }
        Ok(reply)
    }
}

#[async_trait]
impl ChatModel for ChatCompletions {
    async fn complete(&self, messages: &[ChatMessage]) -> Result<String, AnswerError> {
        let completion: Completion = self
            .upstream
            .post_json(&self.url, &self.request(messages))
            .await?;
        self.log_usage(completion.usage.as_ref());
        let Some(choice) = completion.choices.into_iter().next() else {
            return Err(self.upstream.failure("sent no choices"));
        };
        self.non_empty(
            choice.message.content.unwrap_or_default(),
            choice.finish_reason.as_deref(),
        )
    }

    async fn stream(
        &self,
        messages: &[ChatMessage],
        on_text: &mut (dyn for<'t> FnMut(&'t str) + Send),
    ) -> Result<String, AnswerError> {
        let mut body = self.request(messages);
        body["stream"] = json!(true);
        let mut events = self.upstream.post_for_events(&self.url, &body).await?;
        let mut reply = String::new();
        let mut finish_reason = None;
        let mut usage = None;
        loop {
            let Some(data) = events.next().await? else {
                return Err(self.upstream.failure("ended its reply before [DONE]"));
            };
            let data = data.trim();
            if data == "[DONE]" {
                break;
            }
            if data.is_empty() {
                continue;
            }
            let chunk: Chunk = serde_json::from_str(data).map_err(|_| {
                self.upstream
                    .failure("sent an event that is not a chat completion chunk")
            })?;
            if let Some(error) = chunk.error {
                let code = error["code"].as_str().filter(|c| is_plain_code(c));
                return Err(self.upstream.failure(match code {
                    Some(code) => format!("broke off its reply ({code})"),
                    None => "broke off its reply".to_owned(),
                }));
            }
            usage = chunk.usage.or(usage);
            let Some(choice) = chunk.choices.into_iter().next() else {
                continue;
            };
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                on_text(&text);
                reply.push_str(&text);
            }
            finish_reason = choice.finish_reason.or(finish_reason);
        }
        self.log_usage(usage.as_ref());
        self.non_empty(reply, finish_reason.as_deref())
    }
}
