use session_rag::settings::{Settings, SettingsError};
use session_rag::{startup, startup::Application, telemetry};

/// `handler` serves (what the Functions host runs); `handler purge` deletes the
/// expired conversations once and prints how many.
#[tokio::main]
async fn main() {
    // Settings first (a bad one is reported on stderr without logging), then
    // logging as they say.
    let settings = match Settings::from_environment() {
        Ok(settings) => settings,
        Err(error) => configuration_error(&error),
    };
    telemetry::init(&settings.log);
    match std::env::args().nth(1).as_deref() {
        None => serve(settings).await,
        Some("purge") => match startup::purge_once(&settings).await {
            Ok(outcome) => println!("{outcome}"),
            Err(error) => failed("purge", &error),
        },
        Some(other) => {
            eprintln!("session-rag: unknown command {other:?}; run without arguments to serve, or `purge`");
            std::process::exit(2);
        }
    }
}

async fn serve(settings: Settings) {
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(error) => failed("start-up", &error),
    };
    app.run_until_stopped(telemetry::shutdown_signal()).await;
}

/// Exits after `what` failed: a bad setting (checked while connecting storage) as a
/// configuration error, anything else with status 1.
fn failed(what: &str, error: &anyhow::Error) -> ! {
    if let Some(error) = error.downcast_ref::<SettingsError>() {
        configuration_error(error);
    }
    eprintln!("session-rag: {what} failed: {error:#}");
    std::process::exit(1);
}

/// One line naming the setting, then exit: a bad setting stops start-up (PRODUCT.md).
fn configuration_error(error: &SettingsError) -> ! {
    eprintln!("session-rag: configuration error: {error}");
    std::process::exit(2);
}
