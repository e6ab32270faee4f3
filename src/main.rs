//! The command line: serve, check-config, send-webhook, healthcheck. Nothing else lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use genesys_provisioner::App;
use genesys_provisioner::config::{Config, DEFAULT_CONFIG_PATH, LogFormat, ProcessEnv};
use genesys_provisioner::http::signature::WebhookSecret;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "genesys-provisioner", version, about = "Keeps Genesys Cloud in step with an HR system")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: the webhook API, the durable queue and its workers.
    Serve {
        /// TOML settings file (environment variables override it).
        #[arg(long, env = "PROVISIONER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration, print what was loaded (never a secret), exit 1 on any problem.
    CheckConfig {
        #[arg(long, env = "PROVISIONER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Sign a JSON file as a Standard Webhooks event and POST it (to try the service by hand).
    SendWebhook {
        /// Endpoint, e.g. http://127.0.0.1:3000/webhooks/hr/user-created
        #[arg(long)]
        url: String,
        /// JSON file to send as the body, byte for byte.
        #[arg(long)]
        file: PathBuf,
        /// Signing secret (whsec_...); defaults to HR_WEBHOOK_SECRET.
        #[arg(long, env = "HR_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// Event id (webhook-id header); a new one when absent. Send the same id twice to see deduplication.
        #[arg(long)]
        id: Option<String>,
    },
    /// Exit 0 when the service answers GET /healthz (for container health checks).
    Healthcheck {
        /// Defaults to http://<LISTEN_ADDR>/healthz, with 0.0.0.0 read as 127.0.0.1.
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    // A missing .env is normal (production sets real environment variables).
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config.as_deref()).await,
            Command::CheckConfig { config } => check_config(config.as_deref()),
            Command::SendWebhook { url, file, secret, id } => send_webhook(&url, &file, &secret, id).await,
            Command::Healthcheck { url } => healthcheck(url).await,
        }
    })
}

fn load_config(path: Option<&Path>) -> Result<Config, genesys_provisioner::config::ConfigError> {
    let default = Path::new(DEFAULT_CONFIG_PATH);
    let path = path.or_else(|| default.exists().then_some(default));
    Config::load(path, &ProcessEnv)
}

async fn serve(path: Option<&Path>) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(config.log_format);
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    match app.run_until_stopped(stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn stop_on_signal(stop: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                stop.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received: finishing in-flight work");
    stop.cancel();
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn check_config(path: Option<&Path>) -> ExitCode {
    match load_config(path) {
        Ok(config) => {
            println!("configuration OK");
            for line in config.report() {
                println!("  {line}");
            }
            for w in config.warnings() {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            print!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn send_webhook(url: &str, file: &Path, secret: &str, id: Option<String>) -> ExitCode {
    let body = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
        eprintln!("{} is not valid JSON: {e}", file.display());
        return ExitCode::FAILURE;
    }
    let secret = match WebhookSecret::parse(secret) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("the signing secret is not usable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let id = id.unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
    let headers = secret.headers(&id, chrono::Utc::now().timestamp(), &body);
    let mut request = reqwest::Client::new().post(url).header("content-type", "application/json").body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let answer = request.send().await;
    match answer {
        Ok(resp) => {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            println!("webhook-id {id}");
            println!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
            println!("{text}");
            if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("POST {url} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| {
        let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_string());
        format!("http://{}/healthz", addr.replace("0.0.0.0", "127.0.0.1"))
    });
    let client = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build() {
        Ok(c) => c,
        Err(_) => return ExitCode::FAILURE,
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
