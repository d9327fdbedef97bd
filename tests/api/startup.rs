//! The `handler` binary itself: start-up and configuration errors.

use std::process::Command;

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let cwd = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("MAX_TURNS", "lots"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "99999"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_handler"))
            .current_dir(cwd.path())
            .env(name, value)
            .env("RUST_LOG", "off")
            .output()
            .expect("handler runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(name), "{stderr}");
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
    let cwd = tempfile::tempdir().unwrap();
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
        let output = Command::new(env!("CARGO_BIN_EXE_handler"))
            .current_dir(cwd.path())
            .env(name, &value)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", "0")
            .env("RUST_LOG", "off")
            .output()
            .expect("handler runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(&format!("{name}: ")), "{stderr}");
        assert!(!stderr.contains(secret), "{stderr}");
    }
}
