//! The service and the emulator as their own processes, and the CLI as an operator runs it: what
//! the tests in `process.rs` start and call.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_genesys-provisioner");

/// The service binary as the tests run it: it reads no `.env` (a developer's `.env` in the checkout
/// must not change what a test sees). Commands that clear the environment set this again.
pub fn bin() -> Command {
    let mut command = Command::new(BIN);
    command.env("PROVISIONER_ENV_FILE", "none");
    command
}

pub const GENESYS_SECRET: &str = "genesys-client-secret-never-logged";

/// The service binary running on a port of its own, its stderr going to a file.
pub struct Service {
    pub child: Child,
    pub base: String,
    pub stderr: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn service_env(dir: &Path, db_url: &str, genesys: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db_url.to_string()),
        ("AUDIT_DIR", dir.join("audit").display().to_string()),
        ("HR_WEBHOOK_SECRET", SECRET.to_string()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("GENESYS_API_URL", genesys.to_string()),
        ("GENESYS_LOGIN_URL", genesys.to_string()),
        ("GENESYS_CLIENT_ID", EMULATOR_CLIENT_ID.to_string()),
        ("GENESYS_CLIENT_SECRET", EMULATOR_CLIENT_SECRET.to_string()),
        ("RUST_LOG", "debug".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Service {
    /// The service binary on `db_url`, calling the Genesys Cloud emulator at `genesys`.
    pub async fn start(dir: &Path, db_url: &str, run: u32, genesys: &str) -> Service {
        Self::start_with(dir, db_url, run, genesys, free_port(), "config/default.toml").await
    }

    /// `start` on a given port and config file (a restart keeps its address).
    pub async fn start_with(dir: &Path, db_url: &str, run: u32, genesys: &str, port: u16, config: &str) -> Service {
        Self::start_with_env(dir, db_url, run, genesys, port, config, &[]).await
    }

    /// `start_with`, with more environment variables (a SIEM destination's token).
    pub async fn start_with_env(
        dir: &Path,
        db_url: &str,
        run: u32,
        genesys: &str,
        port: u16,
        config: &str,
        env: &[(&str, &str)],
    ) -> Service {
        let stderr = dir.join(format!("stderr-{run}.log"));
        let child = bin()
            .args(["serve", "--config", config])
            .envs(service_env(dir, db_url, genesys))
            .envs(env.iter().copied())
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("service binary starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let up = eventually(Duration::from_secs(30), || async {
            client.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        assert!(up.is_some(), "service did not come up: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
        Service { child, base, stderr }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig}");
    }
}

/// The emulator as its own process, as other people's tests would run it.
pub struct EmulatorProcess {
    pub child: Child,
    pub base: String,
}

impl EmulatorProcess {
    pub async fn start() -> EmulatorProcess {
        Self::start_with(&["--config", "config/default.toml"]).await
    }

    pub async fn start_with(extra: &[&str]) -> EmulatorProcess {
        Self::start_in(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), extra).await
    }

    /// The same, run in the folder `dir`.
    pub async fn start_in(dir: &std::path::Path, extra: &[&str]) -> EmulatorProcess {
        let port = free_port();
        let child = bin()
            .current_dir(dir)
            .env_remove("PROVISIONER_CONFIG")
            .args(["emulator", "--addr", &format!("127.0.0.1:{port}")])
            .args(extra)
            .args(["--client-id", EMULATOR_CLIENT_ID, "--client-secret", EMULATOR_CLIENT_SECRET])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("emulator starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let up = eventually(Duration::from_secs(30), || async {
            client.get(format!("{base}/emulator/stats")).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        assert!(up.is_some(), "emulator did not come up");
        EmulatorProcess { child, base }
    }

    /// A GET on its own SCIM API, with a token from its own token endpoint.
    pub async fn scim_get(&self, path: &str) -> Value {
        let client = reqwest::Client::new();
        let token: Value = client
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(EMULATOR_CLIENT_ID, Some(EMULATOR_CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().unwrap();
        client.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap().json().await.unwrap()
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn post(client: &reqwest::Client, base: &str, id: &str, body: &Value) -> Option<(u16, Value)> {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut req =
        client.post(format!("{base}{HR_PATH}")).header("content-type", "application/json").body(bytes.clone());
    for (k, v) in signed_headers(SECRET, id, now(), &bytes) {
        req = req.header(k, v);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

pub fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = bin()
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROVISIONER_ENV_FILE", "none")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A command line run by a POSIX shell as a person would paste it, in the environment `cli` gives.
pub fn shell(line: &str) -> (i32, String, String) {
    let out = Command::new("sh")
        .args(["-c", line])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROVISIONER_ENV_FILE", "none")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The service's environment for `check-config --probe` against the emulator at `emulator`.
pub fn probe_env<'a>(emulator: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HR_WEBHOOK_SECRET", SECRET),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("GENESYS_API_URL", emulator),
        ("GENESYS_LOGIN_URL", emulator),
        ("GENESYS_CLIENT_ID", EMULATOR_CLIENT_ID),
        ("GENESYS_CLIENT_SECRET", secret),
    ]
}

pub const PROBE: &[&str] = &["check-config", "--probe", "--config", "config/default.toml"];

/// The environment of a command that talks to the emulator at `emulator` with its test credentials.
pub fn bin_cli_env(emulator: &str, events_secret: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HR_WEBHOOK_SECRET", SECRET.to_string()),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("GENESYS_API_URL", emulator.to_string()),
        ("GENESYS_LOGIN_URL", emulator.to_string()),
        ("GENESYS_CLIENT_ID", EMULATOR_CLIENT_ID.to_string()),
        ("GENESYS_CLIENT_SECRET", EMULATOR_CLIENT_SECRET.to_string()),
        ("GENESYS_EVENTS_SECRET", events_secret.to_string()),
        ("DATABASE_URL", "sqlite::memory:".to_string()),
    ]
}
