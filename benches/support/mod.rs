//! What both benchmarks share: the release binary as a child process that is killed when dropped,
//! free ports, and the sample config with a few values changed.

#![allow(dead_code)] // each benchmark uses a part

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A whole number from the environment, or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        _ => default,
    }
}

/// A child process of a benchmark (the service or the emulator), killed when dropped (also on panic).
pub struct Process {
    pub name: &'static str,
    pub child: Child,
    pub base: String,
    /// Its stderr, kept out of the report.
    log: PathBuf,
}

impl Process {
    /// A command for the release binary that reads nothing of the caller's settings: the service's
    /// environment variables are removed and it runs in `dir`, so no `.env` of the checkout is loaded.
    pub fn command(dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_genesys-provisioner"));
        for (name, _) in genesys_provisioner::config::ENV_VARS {
            command.env_remove(name);
        }
        command
            .env_remove("PROVISIONER_CONFIG")
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        command
    }

    /// Starts `command`, which serves on `addr`, with its stderr going to `log`.
    pub fn spawn(name: &'static str, mut command: Command, addr: SocketAddr, log: PathBuf) -> Process {
        let log_file = std::fs::File::create(&log).expect("cannot create a log file");
        let child = command.stderr(log_file).spawn().unwrap_or_else(|e| panic!("cannot start the {name}: {e}"));
        Process { name, child, base: format!("http://{addr}"), log }
    }

    /// Its log so far (for error messages and the report).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET path` answers 200; panics with the process's log when it exits or takes too long.
    pub async fn wait_until_ready(&mut self, http: &reqwest::Client, path: &str) {
        let url = format!("{}{path}", self.base);
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the {} exited ({status}) before answering GET {path}; its log:\n{}", self.name, self.log());
            }
            if Instant::now() >= deadline {
                panic!("the {} did not answer GET {path} 200 within 30 s; its log:\n{}", self.name, self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now (bound to port 0, then released for a child process).
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("cannot read the free port")
}

pub fn default_config_path() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")
}

/// `config/default.toml` with `[server] listen_addr` set to `addr` and each `(table, key, value)` set.
pub fn bench_config(addr: SocketAddr, settings: &[(&str, &str, toml::Value)]) -> String {
    let path = default_config_path();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let mut config: toml::Table = text.parse().unwrap_or_else(|e| panic!("{path} is not valid TOML: {e}"));
    table(&mut config, "server").insert("listen_addr".to_string(), toml::Value::String(addr.to_string()));
    // The benchmarks run the service in a temporary directory: point at the checkout's mapping.
    let mapping = concat!(env!("CARGO_MANIFEST_DIR"), "/config/mappings/directory.jsonata");
    table(&mut config, "sync").insert("mapping".to_string(), toml::Value::String(mapping.to_string()));
    for (name, key, value) in settings {
        table(&mut config, name).insert(key.to_string(), value.clone());
    }
    config.to_string()
}

/// The table `[name]` of `config`, created when absent.
fn table<'a>(config: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    config
        .entry(name)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .unwrap_or_else(|| panic!("[{name}] in config/default.toml is not a table"))
}
