//! session-rag: an Azure Functions custom handler answering `POST /api/query`
//! with retrieval-augmented answers and per-session conversation memory.
//!
//! `ARCHITECTURE.md` at the repository root maps the modules.

pub mod analytics;
pub mod answer;
pub mod clock;
pub mod conversation;
pub mod credential;
pub mod domain;
pub mod routes;
pub mod sessions;
pub mod settings;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod transcript;
