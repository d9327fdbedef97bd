//! The `handler` binary itself: start-up and configuration errors.

use std::process::Command;

/// Runs the handler with `settings` in an empty folder, expects it to refuse to
/// start, and returns the one line it prints.
pub fn refused_start_up(settings: &[(&str, &str)]) -> String {
    let cwd = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_handler"))
        .current_dir(cwd.path())
        .envs(settings.iter().copied())
        .env("RUST_LOG", "off")
        .output()
        .expect("handler runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    for (name, value) in [
        ("MAX_TURNS", "lots"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "99999"),
    ] {
        let line = refused_start_up(&[(name, value)]);
        assert!(line.contains(name), "{line}");
    }
}

#[test]
fn a_broken_local_settings_file_is_named() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("local.settings.json"), "{ not json").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_handler"))
        .current_dir(cwd.path())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("local.settings.json"));
}

#[test]
fn an_unusable_storage_connection_stops_start_up_naming_the_setting_not_the_secret() {
    let secret = "c2VjcmV0LWFjY291bnQta2V5";
    for (name, value) in [
        (
            "AZURE_STORAGE_CONNECTION_STRING",
            format!("AccountKey={secret};DefaultEndpointsProtocol=https"),
        ),
        (
            "AzureWebJobsStorage",
            format!("AccountName=acct;AccountKey={secret};TableEndpoint=not a url"),
        ),
    ] {
        // Port 0: should it start after all, it must not take 7071 from anyone.
        let line = refused_start_up(&[(name, &value), ("FUNCTIONS_CUSTOMHANDLER_PORT", "0")]);
        assert!(
            line.contains(&format!("configuration error: {name}: ")),
            "{line}"
        );
        assert!(!line.contains(secret), "{line}");
    }
}

#[test]
fn bad_cosmos_db_settings_stop_start_up_naming_the_setting_not_the_key() {
    let key = "c2VjcmV0LWNvc21vcy1rZXk=";
    let endpoint = "https://acct.documents.azure.com:443/";
    for (settings, name) in [
        (
            vec![
                ("COSMOSDB_ENDPOINT", "acct.documents.azure.com"),
                ("COSMOSDB_KEY", key),
            ],
            "COSMOSDB_ENDPOINT",
        ),
        (
            vec![
                ("COSMOSDB_ENDPOINT", "http://acct.documents.azure.com/"),
                ("COSMOSDB_KEY", key),
            ],
            "COSMOSDB_ENDPOINT",
        ),
        (
            vec![
                ("COSMOSDB_ENDPOINT", endpoint),
                ("COSMOSDB_KEY", key),
                ("COSMOSDB_AIConversations_CONTAINER", "a/b"),
            ],
            "COSMOSDB_AIConversations_CONTAINER",
        ),
    ] {
        let mut settings = settings;
        settings.push(("FUNCTIONS_CUSTOMHANDLER_PORT", "0"));
        let line = refused_start_up(&settings);
        assert!(
            line.contains(&format!("configuration error: {name}: ")),
            "{line}"
        );
        assert!(!line.contains(key), "{line}");
    }
}
