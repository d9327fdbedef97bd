//! Building the application from settings and serving it.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::analytics::Analytics;
use crate::answer::{answerer_for, load_documents, DocumentIndex};
use crate::conversation::Conversations;
use crate::credential::Credentials;
use crate::domain::Retention;
use crate::routes::{router, AppState};
use crate::sessions::{PurgeOutcome, Sessions};
use crate::settings::{CosmosSettings, Settings, StorageConnection};
use crate::storage::{
    ConversationStore, CosmosStore, GuardedStore, InProcessStore, StorageError, TableStore,
};

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    /// Where durable storage was configured, for the start-up probe's message.
    storage_setting: &'static str,
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
        // One credential per process: model, search and storage calls share its tokens.
        let credentials = Credentials::new(settings.credential.clone(), settings.clock.clone());
        let answerer = answerer_for(&settings, Arc::new(index), &credentials)?;
        let stores = Stores::connect(&settings, &credentials).await?;
        let retention = retention(&settings);
        let sessions = Sessions::new(stores.managed(), retention, settings.clock.clone());
        let analytics = Analytics::new(stores.managed());
        let conversations = Conversations::new(
            answerer,
            stores.in_process,
            stores.durable,
            settings.max_turns,
            retention,
            settings.clock.clone(),
        );

        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port));
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let state = Arc::new(AppState {
            conversations,
            sessions,
            analytics,
            documents_indexed: documents.len(),
            trust_easy_auth_headers: settings.trust_easy_auth_headers,
            stream_keep_alive: settings.stream_keep_alive,
        });
        Ok(Self {
            listener,
            state,
            storage_setting: match (&settings.cosmos, &settings.storage) {
                (Some(_), _) => "COSMOSDB_ENDPOINT",
                (None, storage) => storage.as_ref().map_or("", StorageConnection::setting),
            },
        })
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
        if let Some(store) = self.state.conversations.durable_storage() {
            tokio::spawn(probe_storage(store.clone(), self.storage_setting));
        }
        warp::serve(router(self.state))
            .incoming(self.listener)
            .graceful(shutdown)
            .run()
            .await;
        tracing::info!("stopped");
    }
}

/// How much the windows of the durable sessions this process served last may hold:
/// their next turn here costs one storage round trip instead of two.
const HELD_WINDOWS_BYTES: usize = 32 * 1024 * 1024;

/// Where conversations live, as the settings say.
struct Stores {
    in_process: GuardedStore,
    /// Cosmos DB or Table Storage, when storage is configured.
    durable: Option<GuardedStore>,
}

impl Stores {
    /// Table Storage is not contacted: storage may be down at start-up. Cosmos DB is
    /// asked once whether its container exists (or, with a key, creates it): a
    /// container that does not exist and will not be created stops start-up, an
    /// unreachable account does not.
    async fn connect(settings: &Settings, credentials: &Credentials) -> anyhow::Result<Self> {
        let in_process = GuardedStore::new(
            Arc::new(InProcessStore::new(settings.session_memory_max_bytes)),
            settings.storage_timeout,
        );
        let durable: Option<Arc<dyn ConversationStore>> =
            match (&settings.cosmos, &settings.storage) {
                (Some(cosmos), _) => Some(Arc::new(
                    connect_cosmos(cosmos, settings, credentials).await?,
                )),
                (None, Some(connection)) => {
                    settings.check_tables()?;
                    Some(Arc::new(TableStore::connect(
                        connection,
                        settings.chat_history_table.as_str(),
                        &settings.sessions_table(),
                        &settings.shares_table(),
                        &settings.analytics_table(),
                        credentials,
                        &settings.storage_trusted_cas,
                    )?))
                }
                (None, None) => None,
            };
        let durable = durable.map(|store| {
            GuardedStore::new(store, settings.storage_timeout).holding_windows(HELD_WINDOWS_BYTES)
        });
        Ok(Self {
            in_process,
            durable,
        })
    }

    /// The store the sessions API manages: the durable one when configured.
    fn managed(&self) -> GuardedStore {
        self.durable
            .clone()
            .unwrap_or_else(|| self.in_process.clone())
    }
}

/// The Cosmos DB store, its container checked within the storage time budget.
async fn connect_cosmos(
    cosmos: &CosmosSettings,
    settings: &Settings,
    credentials: &Credentials,
) -> anyhow::Result<CosmosStore> {
    let store = CosmosStore::connect(cosmos, credentials, settings.clock.clone())?;
    match tokio::time::timeout(settings.storage_timeout, store.check_container()).await {
        Ok(Ok(())) => {}
        Ok(Err(StorageError::Rejected(problem))) => anyhow::bail!("{problem}"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "Cosmos DB not reachable at start-up; conversations degrade until it is")
        }
        Err(_) => tracing::warn!(
            "Cosmos DB did not answer at start-up; conversations degrade until it does"
        ),
    }
    Ok(store)
}

/// Tries durable storage once, so that `/api/health` and the log tell at once
/// when it cannot be reached, and how to fix that locally.
async fn probe_storage(store: GuardedStore, setting: &'static str) {
    match store.probe().await {
        Ok(()) => tracing::info!(setting, "durable storage reachable"),
        Err(error) => tracing::warn!(
            setting,
            %error,
            "durable storage is configured but unreachable: turns with enable_persistence are answered but not saved. \
             Locally, start Azurite with scripts/azurite (or run scripts/dev, which starts both); \
             or remove the setting to keep conversations in memory"
        ),
    }
}

fn retention(settings: &Settings) -> Retention {
    settings
        .session_ttl
        .map_or_else(Retention::forever, Retention::after)
}

/// One purge of durable storage with these settings, as the timer function runs
/// it (`handler purge`).
pub async fn purge_once(settings: &Settings) -> anyhow::Result<PurgeOutcome> {
    let credentials = Credentials::new(settings.credential.clone(), settings.clock.clone());
    let stores = Stores::connect(settings, &credentials).await?;
    let Some(durable) = stores.durable else {
        anyhow::bail!(
            "no durable storage is configured (COSMOSDB_ENDPOINT, AZURE_STORAGE_CONNECTION_STRING, AzureWebJobsStorage or AzureWebJobsStorage__*): nothing to purge"
        );
    };
    Ok(
        Sessions::new(durable, retention(settings), settings.clock.clone())
            .purge()
            .await?,
    )
}
