//! Logging set-up and process signals.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::settings::{LogFormat, LogSettings};

/// Logs go to stderr (the Functions host collects both streams) at `RUST_LOG`,
/// as text or JSON lines (`LOG_FORMAT`). Colours only on a terminal: in Azure the
/// host captures the stream into Application Insights traces, where escape codes
/// are noise.
pub fn init(settings: &LogSettings) {
    // Settings checked the filter; the default stands in should it still fail.
    let filter = EnvFilter::try_new(&settings.filter)
        .unwrap_or_else(|_| EnvFilter::new(LogSettings::default().filter));
    // The Azure SDKs log request URLs (SAS tokens and all) at debug and whole
    // requests (bearer tokens) at trace: those stay out whatever RUST_LOG asks for.
    let no_sdk_secrets = filter_fn(|metadata| {
        let target = metadata.target();
        let sdk = target.starts_with("azure_") || target.starts_with("typespec");
        !(sdk && *metadata.level() > Level::INFO)
    });
    let filter = filter.and(no_sdk_secrets);
    let layer = match settings.format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(filter)
            .boxed(),
    };
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Resolves on SIGTERM (what the host and Azure send) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
