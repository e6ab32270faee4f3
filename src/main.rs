//! The command line: serve, emulator, check-config, send-webhook, healthcheck. Nothing else lives here.
//! `serve --sandbox` and `emulator` need the `sandbox` feature (on by default, off in the production
//! image, whose binary then holds no emulator code).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use genesys_provisioner::App;
use genesys_provisioner::config::{Config, DEFAULT_CONFIG_PATH, LogFormat, ProcessEnv};
#[cfg(feature = "sandbox")]
use genesys_provisioner::sandbox::Sandbox;
use genesys_provisioner::signing::WebhookSecret;
use tokio_util::sync::CancellationToken;

/// mimalloc instead of the system allocator: a request allocates and frees many small buffers, often
/// on different threads (a request's job is freed by the committer), where glibc's allocator spends
/// measurable time consolidating (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Run against an in-process Genesys Cloud emulator with made-up development secrets
        /// (printed at start). Nothing reaches a real Genesys Cloud.
        #[arg(long)]
        sandbox: bool,
    },
    /// Run the Genesys Cloud emulator alone (for trying things and for other people's tests); the
    /// same program as `genesys-emulator`.
    #[cfg(feature = "sandbox")]
    Emulator {
        #[command(flatten)]
        emulator: genesys_emulator::cli::Args,
        /// The settings file whose departments' groups the emulator starts with (default:
        /// config/default.toml when the working directory has it).
        #[arg(long, env = "PROVISIONER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration, print what was loaded (never a secret), exit 1 on any problem.
    CheckConfig {
        #[arg(long, env = "PROVISIONER_CONFIG")]
        config: Option<PathBuf>,
        /// Also ask Genesys Cloud, with the configured credentials, for a token, every department's
        /// group and every role name (reads only); exit 1 when anything is missing or refused.
        #[arg(long)]
        probe: bool,
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
    /// Ask the running service to reconcile its mirror with Genesys (POST /admin/reconcile), wait
    /// for the job and print its report: drift, users gone from Genesys, entries refreshed.
    Reconcile {
        /// The service, e.g. http://127.0.0.1:3000 (default: http://<LISTEN_ADDR>).
        #[arg(long)]
        url: Option<String>,
        /// The admin token; defaults to ADMIN_TOKEN.
        #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
        /// Give up waiting after this many seconds (the job goes on in the service).
        #[arg(long, default_value_t = 3600)]
        wait_secs: u64,
    },
    /// Subscribe Genesys Cloud to user events as [genesys_events] says (find by name; create,
    /// update or leave alone), print the outcome and what the AWS side needs. Talks to Genesys
    /// with the configured credentials; the service need not run.
    RegisterWebhook {
        #[arg(long, env = "PROVISIONER_CONFIG")]
        config: Option<PathBuf>,
        /// Print the exact calls it would make, and make none.
        #[arg(long)]
        dry_run: bool,
    },
    /// Exit 0 when the service answers GET /healthz (for container health checks).
    Healthcheck {
        /// Defaults to http://<LISTEN_ADDR>/healthz, with 0.0.0.0 read as 127.0.0.1.
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    load_env_file();
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
            Command::Serve { config, sandbox } => serve(config.as_deref(), sandbox).await,
            #[cfg(feature = "sandbox")]
            Command::Emulator { emulator, config } => {
                genesys_provisioner::sandbox::run_emulator(emulator, config.as_deref()).await
            }
            Command::CheckConfig { config, probe } => check_config(config.as_deref(), probe).await,
            Command::SendWebhook { url, file, secret, id } => send_webhook(&url, &file, &secret, id).await,
            Command::Reconcile { url, admin_token, wait_secs } => reconcile(url, &admin_token, wait_secs).await,
            Command::RegisterWebhook { config, dry_run } => register_webhook(config.as_deref(), dry_run).await,
            Command::Healthcheck { url } => healthcheck(url).await,
        }
    })
}

/// Reads `.env` from the current directory, or the file `PROVISIONER_ENV_FILE` names; `none` reads
/// nothing (tests run the binary in the checkout, where a developer's `.env` must not leak in).
/// Variables already set in the environment win over the file. A missing default `.env` is normal
/// (production sets real environment variables); a named file that cannot be read is reported.
fn load_env_file() {
    match std::env::var("PROVISIONER_ENV_FILE").ok().filter(|v| !v.is_empty()) {
        Some(off) if off.eq_ignore_ascii_case("none") => {}
        Some(path) => {
            if let Err(e) = dotenvy::from_path(&path) {
                eprintln!("warning: PROVISIONER_ENV_FILE {path:?} was not read: {e}");
            }
        }
        None => {
            let _ = dotenvy::dotenv();
        }
    }
}

/// The config file to read: the one named (`--config` or `PROVISIONER_CONFIG`), else
/// `config/default.toml` when the working directory has one (the checkout, for the quick start).
/// With neither, an explanation of where it looked: a service started without its departments would
/// refuse every new hire.
fn config_path(path: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = path {
        return Ok(p.to_path_buf());
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    if default.exists() {
        return Ok(default.to_path_buf());
    }
    let cwd = std::env::current_dir().map_or_else(|_| "the working directory".to_string(), |d| d.display().to_string());
    Err(format!(
        "no config file: looked for {DEFAULT_CONFIG_PATH} in {cwd} (not there) and neither --config nor \
         PROVISIONER_CONFIG names one.\nPoint at one: --config /path/to/provisioner.toml, or \
         PROVISIONER_CONFIG=/path/to/provisioner.toml (the checkout's config/default.toml is a commented sample).\n"
    ))
}

fn load_config(path: &Path) -> Result<Config, genesys_provisioner::config::ConfigError> {
    Config::load(Some(path), &ProcessEnv)
}

async fn serve(path: Option<&Path>, sandbox: bool) -> ExitCode {
    let path = match config_path(path) {
        Ok(p) => p,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let (config, sandbox) = if sandbox {
        match start_sandbox(&path).await {
            Ok((config, sandbox)) => (config, Some(sandbox)),
            Err(e) => {
                eprint!("{e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        match load_config(&path) {
            Ok(c) => (c, None),
            Err(e) => {
                eprint!("config file {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    };
    init_logging(config.log_format);
    let sample = path.parent().map(|dir| dir.join("samples/new-hire.json")).filter(|p| p.exists());
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Only now: the port is bound, so the commands of the banner work the moment they are read.
    if let Some(s) = &sandbox {
        print_sandbox_banner(s, app.addr(), app.config().database_summary(), sample.as_deref());
    }
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    let outcome = app.run_until_stopped(stop).await;
    if let Some(s) = sandbox {
        stop_sandbox(s).await;
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "sandbox")]
async fn start_sandbox(path: &Path) -> Result<(Config, Sandbox), genesys_provisioner::config::ConfigError> {
    genesys_provisioner::sandbox::start(Some(path), &ProcessEnv).await
}

#[cfg(feature = "sandbox")]
async fn stop_sandbox(s: Sandbox) {
    s.emulator.stop().await;
}

/// How to run this binary again from a shell: `cargo run -q --` when cargo started it (cargo sets
/// `CARGO` for what it runs), else the binary's own path, quoted for a POSIX shell when it needs it.
#[cfg(feature = "sandbox")]
fn self_command() -> String {
    if std::env::var_os("CARGO").is_some() {
        return "cargo run -q --".to_string();
    }
    let exe = std::env::current_exe().map_or_else(|_| "genesys-provisioner".to_string(), |p| p.display().to_string());
    shell_quote(&exe)
}

#[cfg(feature = "sandbox")]
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:,=@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// What a newcomer needs to try the sandbox; these are development values made up at start.
#[cfg(feature = "sandbox")]
fn print_sandbox_banner(s: &Sandbox, bound: std::net::SocketAddr, jobs: String, sample: Option<&Path>) {
    // Listening on every address (0.0.0.0 in a container): the commands below run on this machine.
    let mut local = bound;
    if local.ip().is_unspecified() {
        local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{local}");
    let base = s.emulator.base_url();
    println!("SANDBOX: Genesys Cloud emulator at {base}; nothing reaches a real Genesys Cloud.");
    println!("  service: {url} (listening now)");
    println!("  jobs: {jobs} (SANDBOX_DATABASE_URL; DATABASE_URL is not used)");
    match &s.signing_secret {
        Some(secret) => println!("  HR_WEBHOOK_SECRET={secret}   (development value, made up now)"),
        None => println!("  HR_WEBHOOK_SECRET: from your environment"),
    }
    match &s.admin_token {
        Some(token) => println!("  ADMIN_TOKEN={token}   (development value, made up now)"),
        None => println!("  ADMIN_TOKEN: from your environment"),
    }
    let secret_arg = s.signing_secret.as_deref().map(|x| format!(" --secret {x}")).unwrap_or_default();
    let file = sample.map_or_else(|| "YOUR-EVENT.json".to_string(), |p| shell_quote(&p.display().to_string()));
    println!("Send the sample new hire:");
    println!("  {} send-webhook --url {url}/webhooks/hr/user-created --file {file}{secret_arg}", self_command());
    println!("See the user in the emulator (its own SCIM API; emulator client {}):", s.client_id);
    println!(
        "  TOKEN=$(curl -s -u {}:{} -d grant_type=client_credentials {base}/oauth/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')",
        s.client_id, s.client_secret
    );
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" {base}/api/v2/scim/v2/users");
}

/// A build without the `sandbox` feature (the production image): `serve --sandbox` says so and
/// stops, and there is no `emulator` subcommand. `Sandbox` has no values, so nothing below can run.
#[cfg(not(feature = "sandbox"))]
enum Sandbox {}

#[cfg(not(feature = "sandbox"))]
async fn start_sandbox(_: &Path) -> Result<(Config, Sandbox), String> {
    Err("serve --sandbox: this build has no sandbox (built without the `sandbox` cargo feature, as the \
         production image is); build with default features for it, or run the service against Genesys Cloud\n"
        .to_string())
}

#[cfg(not(feature = "sandbox"))]
async fn stop_sandbox(s: Sandbox) {
    match s {}
}

#[cfg(not(feature = "sandbox"))]
fn print_sandbox_banner(s: &Sandbox, _: std::net::SocketAddr, _: String, _: Option<&Path>) {
    match *s {}
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
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colours only for a person at a terminal: in a file, a pipe or a log collector they are ESC bytes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        // Control characters from input are escaped, so a value cannot forge a line.
        LogFormat::Text => builder.fmt_fields(genesys_provisioner::logging::escaped_fields()).init(),
    }
}

async fn register_webhook(path: Option<&Path>, dry_run: bool) -> ExitCode {
    use genesys_provisioner::events;
    let config = match config_path(path).and_then(|p| load_config(&p).map_err(|e| e.to_string())) {
        Ok(config) => config,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let client = match genesys_provisioner::genesys::GenesysClient::from_config(&config.genesys) {
        Some(Ok(client)) => client,
        Some(Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
        None => {
            eprintln!("register-webhook: no Genesys credentials (GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET)");
            return ExitCode::FAILURE;
        }
    };
    let events_config = &config.genesys_events;
    let registration = match events::register(&client, events_config, dry_run).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("register-webhook: {e}");
            return ExitCode::FAILURE;
        }
    };
    let status = serde_json::to_value(registration.status).unwrap_or_default();
    let status = status.as_str().unwrap_or_default();
    match dry_run {
        true => println!("dry run: {status} would be the outcome; the calls it would make (none made):"),
        false => println!("{status}: {} {:?} {}", registration.route, registration.name, registration.ids),
    }
    if !registration.differences.is_empty() {
        println!("differed: {}", registration.differences.join(", "));
    }
    for call in &registration.calls {
        println!("  {call}");
    }
    if let Some(aws) = events::aws_side(events_config) {
        println!("AWS side (EventBridge partner event source, rule, API destination):");
        println!("{}", serde_json::to_string_pretty(&aws).unwrap_or_default());
    }
    ExitCode::SUCCESS
}

async fn check_config(path: Option<&Path>, probe: bool) -> ExitCode {
    let path = match config_path(path) {
        Ok(p) => p,
        Err(e) => {
            print!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match load_config(&path) {
        Ok(config) => config,
        Err(e) => {
            println!("config file {}", path.display());
            print!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("configuration OK");
    for line in config.report() {
        println!("  {line}");
    }
    for w in config.warnings() {
        println!("warning: {w}");
    }
    if !probe {
        return ExitCode::SUCCESS;
    }
    println!("probe of Genesys Cloud at {} (reads only):", config.genesys.api_url);
    let findings = genesys_provisioner::probe::probe(&config).await;
    let problems = findings.iter().filter(|f| !f.ok).count();
    for f in &findings {
        println!("  {} {}", if f.ok { "ok     " } else { "PROBLEM" }, f.text);
    }
    if problems == 0 {
        println!("probe OK: everything the configuration names exists in Genesys Cloud");
        ExitCode::SUCCESS
    } else {
        println!("probe FAILED: {problems} problem(s)");
        ExitCode::FAILURE
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

/// `http://<LISTEN_ADDR>`, with 0.0.0.0 read as 127.0.0.1: where a command finds the local service.
fn local_service() -> String {
    let addr = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_string());
    format!("http://{}", addr.replace("0.0.0.0", "127.0.0.1"))
}

/// Queues a reconcile in the running service and prints its report when the job has finished.
/// Exit 1 when it could not be queued, failed for good, or did not finish within `wait_secs`.
async fn reconcile(url: Option<String>, admin_token: &str, wait_secs: u64) -> ExitCode {
    let base = url.unwrap_or_else(local_service);
    let base = base.trim_end_matches('/');
    let http = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot build an HTTP client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let queued = http.post(format!("{base}/admin/reconcile")).bearer_auth(admin_token).send().await;
    let audit_id = match queued {
        Ok(r) if r.status().as_u16() == 202 => match r.json::<serde_json::Value>().await {
            Ok(body) => body["auditId"].as_str().unwrap_or_default().to_string(),
            Err(e) => {
                eprintln!("{base}/admin/reconcile answered 202 without a readable body: {e}");
                return ExitCode::FAILURE;
            }
        },
        Ok(r) => {
            let status = r.status();
            eprintln!("{base}/admin/reconcile answered HTTP {status}: {}", r.text().await.unwrap_or_default());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("cannot reach {base}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("reconcile queued as job {audit_id}; waiting for it (at most {wait_secs} s)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_secs);
    while std::time::Instant::now() < deadline {
        let job = http.get(format!("{base}/jobs/{audit_id}")).bearer_auth(admin_token).send().await;
        if let Ok(job) = job
            && let Ok(job) = job.json::<serde_json::Value>().await
        {
            match job["state"].as_str() {
                Some("succeeded") => {
                    println!("{}", serde_json::to_string_pretty(&job["result"]).unwrap_or_default());
                    return ExitCode::SUCCESS;
                }
                Some("dead") => {
                    eprintln!("the reconcile failed: {}", job["lastError"].as_str().unwrap_or("(no reason)"));
                    return ExitCode::FAILURE;
                }
                _ => {}
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    eprintln!("job {audit_id} has not finished after {wait_secs} s; see GET {base}/jobs/{audit_id}");
    ExitCode::FAILURE
}

async fn healthcheck(url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| format!("{}/healthz", local_service()));
    let client = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build() {
        Ok(c) => c,
        Err(_) => return ExitCode::FAILURE,
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
