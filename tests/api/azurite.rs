//! Azurite (the Azure Storage emulator) for the storage tests.
//!
//! Most tests share the one table service that `scripts/test` starts and
//! announces in `SESSION_RAG_TEST_TABLE_ENDPOINT`, each in a table of its own.
//! Fault tests that stop and restart storage start a private instance with
//! [`AzuriteProcess`].
//!
//! Needs only std, tempfile and tokio (net, time, process, macros, rt).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::process::{Child, Command};

/// What to tell whoever runs storage tests without Azurite, so they know the one fix.
const NEED_AZURITE: &str =
    "storage tests need Azurite: run scripts/test (it installs and starts it)";

/// Azurite's single built-in account, the one its connection strings name.
pub const ACCOUNT_NAME: &str = "devstoreaccount1";

/// Azurite's well-known, publicly documented development key (not a secret).
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// How long Azurite may take to accept connections; node start-up is slow on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a SIGINT'ed Azurite may take to flush and exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The shared table endpoint from `scripts/test`, so tests reuse one Azurite instead of starting many.
pub fn shared_table_endpoint() -> String {
    match std::env::var("SESSION_RAG_TEST_TABLE_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => endpoint.trim().to_string(),
        _ => panic!("{NEED_AZURITE} (SESSION_RAG_TEST_TABLE_ENDPOINT is not set)"),
    }
}

/// A table name no other test (in this or another process) uses, so tests never see each other's rows.
///
/// Valid for Azure Tables: ASCII alphanumeric, starts with a letter, 3..=63 characters.
pub fn unique_table_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // Letters separate the numbers so that different (count, pid, nanos) never read the same.
    let suffix = format!(
        "{}x{}x{}",
        base36(u128::from(count)),
        base36(u128::from(std::process::id())),
        base36(nanos % 36u128.pow(8)),
    );

    let mut name: String = prefix
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert(0, 't');
    }
    name.truncate(63 - suffix.len());
    name.push_str(&suffix);
    debug_assert!((3..=63).contains(&name.len()));
    name
}

/// Digits 0-9a-z, to keep table names short.
fn base36(mut n: u128) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base36 digits are ASCII")
}

/// An account-key connection string for an Azurite table endpoint, the way users configure real storage.
pub fn connection_string(endpoint: &str) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};TableEndpoint={endpoint};"
    )
}

/// A private Azurite table service, for fault tests that stop and restart storage under the handler.
pub struct AzuriteProcess {
    /// The running Azurite, or None while stopped.
    child: Option<Child>,
    /// Kept across restarts, so clients see the same endpoint again.
    port: u16,
    /// Holds `data/` (Azurite's workspace, kept across restarts) and `azurite.log`; removed on drop.
    dir: tempfile::TempDir,
    /// The `azurite-table` executable.
    bin: PathBuf,
    /// Options beyond the usual ones (HTTPS and OAuth, say).
    extra_args: Vec<String>,
}

impl AzuriteProcess {
    /// Starts Azurite on a free loopback port with a fresh data folder, and waits until it accepts connections.
    pub async fn start() -> AzuriteProcess {
        Self::start_with(&[]).await
    }

    /// As [`AzuriteProcess::start`], with more of Azurite's options.
    pub async fn start_with(extra_args: &[&str]) -> AzuriteProcess {
        let bin = azurite_bin();
        let dir = tempfile::Builder::new()
            .prefix("session-rag-azurite")
            .tempdir()
            .expect("create a temporary folder for Azurite");
        std::fs::create_dir_all(dir.path().join("data")).expect("create Azurite's data folder");
        let mut azurite = AzuriteProcess {
            child: None,
            port: free_port(),
            dir,
            bin,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        azurite.spawn().await;
        azurite
    }

    /// The table endpoint (path-style, account in the path) to build clients and connection strings from.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT_NAME}", self.port)
    }

    /// The same endpoint over HTTPS, for an Azurite started with `--cert` and `--key`.
    pub fn https_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/{ACCOUNT_NAME}", self.port)
    }

    /// Stops Azurite with SIGINT, the only signal on which it flushes its data, and waits for it to exit.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, "-INT");
        if tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .is_err()
        {
            // Hung on open keep-alive connections or worse: give up on a clean stop.
            let _ = child.kill().await;
        }
    }

    /// Freezes Azurite (SIGSTOP): connections are still accepted, nothing is answered,
    /// as with a store that hangs.
    pub fn pause(&self) {
        signal(self.child.as_ref().expect("Azurite is running"), "-STOP");
    }

    /// Lets a paused Azurite go on (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.as_ref().expect("Azurite is running"), "-CONT");
    }

    /// Starts Azurite again on the same port with the same data, as a storage outage that ends would.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Launches the child process and waits until its port accepts connections.
    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "Azurite is already running");
        let log = self.log_path();
        let stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open Azurite's log file");
        let stderr = stdout.try_clone().expect("clone Azurite's log file handle");
        let child = Command::new(&self.bin)
            .arg("--tableHost")
            .arg("127.0.0.1")
            .arg("--tablePort")
            .arg(self.port.to_string())
            .arg("--location")
            .arg(self.dir.path().join("data"))
            // No outbound traffic, no per-request log, any x-ms-version, account always from the path.
            .arg("--silent")
            .arg("--disableTelemetry")
            .arg("--skipApiVersionCheck")
            .arg("--disableProductStyleUrl")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{NEED_AZURITE} (cannot run {}: {e})", self.bin.display()));
        self.child = Some(child);
        self.wait_until_ready().await;
    }

    /// Polls the port, failing fast with Azurite's log if it exits or stays closed for 60 s.
    async fn wait_until_ready(&mut self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "Azurite exited ({status}) before accepting connections on {addr}; its log:\n{}",
                        read_log(&self.log_path())
                    );
                }
            }
            let attempt =
                tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                    .await;
            if let Ok(Ok(_stream)) = attempt {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "Azurite did not accept connections on {addr} within {}s; its log:\n{}",
                    START_TIMEOUT.as_secs(),
                    read_log(&self.log_path())
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where Azurite's stdout and stderr go, to show when it fails.
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("azurite.log")
    }
}

impl Drop for AzuriteProcess {
    /// Kills a still-running Azurite so no test leaves a server behind (data no longer matters here).
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Sends `child` a signal by `kill` (tokio can only SIGKILL; this avoids a libc dependency).
fn signal(child: &Child, signal: &str) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The `azurite-table` executable: the one `scripts/test` installed, else the repo's node_modules.
fn azurite_bin() -> PathBuf {
    let bin = match std::env::var_os("SESSION_RAG_AZURITE_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/azurite-table"),
    };
    if !bin.exists() {
        panic!("{NEED_AZURITE} ({} not found)", bin.display());
    }
    bin
}

/// A loopback port that is free right now (the OS picks it), so parallel tests never collide.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free loopback port")
}

/// Azurite's log, or why it cannot be read.
fn read_log(path: &Path) -> String {
    let mut text = String::new();
    match File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        Ok(_) => text,
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
