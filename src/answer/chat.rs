//! Chat completions. Azure OpenAI and OpenAI-compatible servers take the same
//! request and send the same reply; they differ in the URL, the credentials and
//! whether the body names the model (Azure names the deployment in the URL).

use async_trait::async_trait;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::upstream::{service_url, Upstream};
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
    /// The assistant's reply to `messages`.
    async fn complete(&self, messages: &[ChatMessage]) -> Result<String, AnswerError>;
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
}

#[async_trait]
impl ChatModel for ChatCompletions {
    async fn complete(&self, messages: &[ChatMessage]) -> Result<String, AnswerError> {
        // Only the messages (and the model): sampling parameters are left to the
        // deployment, since reasoning models reject the ones others accept.
        let mut body = json!({ "messages": messages });
        if let Some(model) = &self.model {
            body["model"] = json!(model);
        }
        let completion: Completion = self.upstream.post_json(&self.url, &body).await?;
        if let Some(usage) = &completion.usage {
            tracing::info!(
                service = self.upstream.service,
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                "chat completion"
            );
        }
        let Some(choice) = completion.choices.into_iter().next() else {
            return Err(self.upstream.failure("sent no choices"));
        };
        match choice.message.content {
            Some(content) if !content.trim().is_empty() => Ok(content),
            _ => Err(self.upstream.failure(format!(
                "sent an empty reply (finish_reason: {})",
                choice.finish_reason.as_deref().unwrap_or("none")
            ))),
        }
    }
}
