use session_rag::settings::{Settings, SettingsError};
use session_rag::{startup::Application, telemetry};

#[tokio::main]
async fn main() {
    telemetry::init();
    let settings = match Settings::from_environment() {
        Ok(settings) => settings,
        Err(error) => configuration_error(&error),
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(error) => match error.downcast_ref::<SettingsError>() {
            // Storage settings are checked while building the application.
            Some(error) => configuration_error(error),
            None => {
                eprintln!("session-rag: start-up failed: {error:#}");
                std::process::exit(1);
            }
        },
    };
    app.run_until_stopped(telemetry::shutdown_signal()).await;
}

/// One line naming the setting, then exit: a bad setting stops start-up (PRODUCT.md).
fn configuration_error(error: &SettingsError) -> ! {
    eprintln!("session-rag: configuration error: {error}");
    std::process::exit(2);
}
