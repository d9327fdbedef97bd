use session_rag::{settings::Settings, startup::Application, telemetry};

#[tokio::main]
async fn main() {
    telemetry::init();
    let settings = match Settings::from_environment() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("session-rag: configuration error: {error}");
            std::process::exit(2);
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("session-rag: start-up failed: {error:#}");
            std::process::exit(1);
        }
    };
    app.run_until_stopped(telemetry::shutdown_signal()).await;
}
