//! What the benchmarks share: the release binary as a child process that is killed when dropped,
//! free ports, and the sample config with a few values changed; `load` is the intake benchmark's
//! load loop, `hec` the SIEM benchmark's Splunk receiver.

#![allow(dead_code)] // each benchmark uses a part

pub mod hec;
pub mod load;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use genesys_emulator::Stats;
use reqwest::StatusCode;

const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

pub const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
pub const CLIENT_ID: &str = "bench-client";
pub const CLIENT_SECRET: &str = "bench-secret-0123456789";

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
        // BENCH_BINARY runs another build of the service (an A/B of two versions on one machine).
        let binary =
            std::env::var_os("BENCH_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_genesys-provisioner").into());
        let mut command = Command::new(binary);
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

/// The emulator, seeded with the groups of `config/default.toml`'s departments.
/// The emulator as its own process, with the bench client's credentials; `extra` adds arguments
/// (`--config FILE` for the groups of its departments, `--seed FILE`).
pub fn start_emulator(dir: &Path, extra: &[&str]) -> Process {
    let addr = free_port();
    let mut command = Process::command(dir);
    command
        .arg("emulator")
        .arg("--addr")
        .arg(addr.to_string())
        .arg("--client-id")
        .arg(CLIENT_ID)
        .arg("--client-secret")
        .arg(CLIENT_SECRET)
        .args(extra);
    Process::spawn("emulator", command, addr, dir.join("emulator.log"))
}

/// `serve` on `addr` with the sample config (plus `settings`), the bench secrets, and the database and
/// audit folder in `dir` (SQLite unless `DATABASE_URL` is set on the command afterwards).
pub fn serve_command(dir: &Path, addr: SocketAddr, settings: &[(&str, &str, toml::Value)]) -> Command {
    let config_path = dir.join("bench.toml");
    std::fs::write(&config_path, bench_config(addr, settings)).expect("cannot write the benchmark config file");
    let mut command = Process::command(dir);
    command
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()))
        .env("AUDIT_DIR", dir.join("audit"))
        .env("HR_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("ADMIN_TOKEN", ADMIN_TOKEN);
    command
}

/// The service, pacing its Genesys requests at `rate` per minute, with a fresh database and audit folder.
pub fn start_service(dir: &Path, genesys: &str, rate: u32, workers: usize) -> Process {
    let (command, addr) = service_command(dir, genesys, rate, workers);
    Process::spawn("service", command, addr, dir.join("service.log"))
}

/// `start_service`'s command and address, not started yet (set `DATABASE_URL` on it for another store).
pub fn service_command(dir: &Path, genesys: &str, rate: u32, workers: usize) -> (Command, SocketAddr) {
    let addr = free_port();
    let rate = ("genesys", "requests_per_minute", toml::Value::Integer(i64::from(rate)));
    let mut command = serve_command(dir, addr, &[rate]);
    command
        .env("GENESYS_API_URL", genesys)
        .env("GENESYS_LOGIN_URL", genesys)
        .env("GENESYS_CLIENT_ID", CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", CLIENT_SECRET)
        .env("WORKER_CONCURRENCY", workers.to_string());
    (command, addr)
}

pub async fn emulator_stats(http: &reqwest::Client, emulator: &str) -> Stats {
    http.get(format!("{emulator}/emulator/stats"))
        .send()
        .await
        .expect("GET /emulator/stats failed")
        .error_for_status()
        .expect("GET /emulator/stats did not answer 200")
        .json()
        .await
        .expect("GET /emulator/stats did not answer the expected JSON")
}

/// The values of one metric by one label (`name{label="value"} n`).
pub fn labelled(metrics: &str, name: &str, label: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{name}{{{label}=\"");
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (key, value) = rest.split_once("\"}")?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Jiffies one line of `/proc/stat` counts since boot: `cpu` (every CPU of this machine) or `cpuN`.
/// `busy` is user, nice, system, irq and softirq time: unlike a process's own CPU time it includes
/// the interrupt work the kernel does on that CPU (network delivery, disk completions). `steal` is
/// the time the hypervisor gave to other guests, which on a shared virtual machine makes one phase
/// slower than another for reasons outside the service.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTicks {
    pub busy: u64,
    pub steal: u64,
    pub total: u64,
}

impl CpuTicks {
    /// The line of CPU `n` (`Some(n)`) or of every CPU together (`None`); `None` where `/proc/stat`
    /// or that line is not there.
    pub fn read(cpu: Option<usize>) -> Option<CpuTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let name = cpu.map_or("cpu".to_string(), |n| format!("cpu{n}"));
        let line = stat.lines().find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let t: Vec<u64> = line.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect();
        // user nice system idle iowait irq softirq steal guest guest_nice: guest time is already in user.
        let busy = [0, 1, 2, 5, 6].iter().map(|&i| t.get(i).copied()).sum::<Option<u64>>()?;
        Some(CpuTicks { busy, steal: *t.get(7)?, total: t.iter().take(8).sum() })
    }

    /// What was counted between `earlier` and this reading.
    pub fn since(self, earlier: CpuTicks) -> CpuTicks {
        CpuTicks {
            busy: self.busy.saturating_sub(earlier.busy),
            steal: self.steal.saturating_sub(earlier.steal),
            total: self.total.saturating_sub(earlier.total),
        }
    }

    pub fn plus(self, other: CpuTicks) -> CpuTicks {
        CpuTicks { busy: self.busy + other.busy, steal: self.steal + other.steal, total: self.total + other.total }
    }

    pub fn busy_seconds(self) -> f64 {
        self.busy as f64 / TICKS_PER_SECOND
    }
}

/// `/proc` counts CPU time in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system, all threads) that process `pid` has used so far, in seconds; `None` where
/// `/proc` is not there.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SECOND)
}

/// An access token for the bench client, straight from the emulator (for requests the bench makes
/// itself, as someone inside Genesys would).
pub async fn emulator_token(http: &reqwest::Client, emulator: &str) -> String {
    let token: serde_json::Value = http
        .post(format!("{emulator}/oauth/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("POST /oauth/token failed")
        .error_for_status()
        .expect("POST /oauth/token did not answer 200")
        .json()
        .await
        .expect("the token answer is not JSON");
    token["access_token"].as_str().expect("the token answer has no access_token").to_string()
}
