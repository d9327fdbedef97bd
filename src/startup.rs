//! Building the application from settings and serving it.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::answer::{answerer_for, load_documents, DocumentIndex};
use crate::conversation::Conversations;
use crate::routes::{router, AppState};
use crate::settings::Settings;
use crate::storage::{GuardedStore, InProcessStore, TableStore};

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Application {
    /// Indexes the documents, connects storage and binds `127.0.0.1:port` (the host
    /// connects to loopback; port 0 picks a free port, for tests).
    ///
    /// Storage settings that cannot work fail here with the [`SettingsError`]
    /// (`main` prints it as a configuration error); storage itself is not contacted,
    /// so the handler starts while storage is down.
    ///
    /// [`SettingsError`]: crate::settings::SettingsError
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let started = std::time::Instant::now();
        let documents = load_documents(settings.docs_dir.as_deref())?;
        let index = DocumentIndex::build(&documents).context("cannot index the documents")?;
        tracing::info!(
            documents = documents.len(),
            passages = index.passage_count(),
            ms = started.elapsed().as_millis() as u64,
            "documents indexed"
        );
        let answerer = answerer_for(&settings, Arc::new(index))?;
        let in_process = Arc::new(InProcessStore::new(settings.session_memory_max_bytes));
        let durable = match &settings.storage {
            None => None,
            Some(connection) => {
                settings.check_sessions_table()?;
                Some(GuardedStore::new(
                    Arc::new(TableStore::connect(
                        connection,
                        &settings.chat_history_table,
                        &settings.sessions_table(),
                    )?),
                    settings.storage_timeout,
                ))
            }
        };
        let conversations = Conversations::new(answerer, in_process, durable, settings.max_turns);

        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port));
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let state = Arc::new(AppState {
            conversations,
            documents_indexed: documents.len(),
        });
        Ok(Self { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
            .port()
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tracing::info!(port = self.port(), "listening");
        warp::serve(router(self.state))
            .incoming(self.listener)
            .graceful(shutdown)
            .run()
            .await;
        tracing::info!("stopped");
    }
}
