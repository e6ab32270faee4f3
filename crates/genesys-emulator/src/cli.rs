//! The emulator alone, from the command line: the `genesys-emulator` binary and the service's
//! `genesys-provisioner emulator` subcommand are both this, so they take the same flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::{Emulator, EmulatorConfig, Seed, SeedGroup};

/// Where the service keeps its settings file in a checkout; read for its departments' groups when
/// neither `--seed` nor `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Run the Genesys Cloud emulator alone (for trying things and for other people's tests).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1:9100")]
    pub addr: SocketAddr,
    /// JSON seed: {"groups": [{"id", "displayName"}], "users": [SCIM users], "roles": [role names]}.
    /// Without it, the groups of the config file's departments (and the default roles).
    #[arg(long)]
    pub seed: Option<PathBuf>,
    #[arg(long, default_value = "emulator-client")]
    pub client_id: String,
    #[arg(long, default_value = "emulator-secret")]
    pub client_secret: String,
    /// The service's settings file, whose `[departments.*]` groups the emulator starts with.
    #[arg(long, env = "PROVISIONER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Starts the emulator as `args` say, prints where it listens, and serves until Ctrl-C.
pub async fn run(args: Args) -> ExitCode {
    let seed = match load_seed(&args) {
        Ok(seed) => seed,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = EmulatorConfig {
        client_id: args.client_id,
        client_secret: args.client_secret,
        groups: seed.groups.clone(),
        ..Default::default()
    };
    if let Some(roles) = seed.roles {
        config.roles = roles;
    }
    let emulator = match Emulator::start(args.addr, config).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the emulator on {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    for user in seed.users {
        emulator.insert_user(user);
    }
    println!("Genesys Cloud emulator at {} (API and login host); Ctrl-C stops it", emulator.base_url());
    let _ = tokio::signal::ctrl_c().await;
    emulator.stop().await;
    ExitCode::SUCCESS
}

/// The seed file when one is named; else the groups of the config file's departments (the named
/// one, or `config/default.toml` when the working directory has it); else nothing.
fn load_seed(args: &Args) -> Result<Seed, String> {
    if let Some(file) = &args.seed {
        return std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Seed>(&b).map_err(|e| format!("not a valid seed: {e}")))
            .map_err(|e| format!("cannot use seed {}: {e}", file.display()));
    }
    let default = Path::new(DEFAULT_CONFIG_PATH);
    let config = args.config.as_deref().or_else(|| default.exists().then_some(default));
    let groups = match config {
        Some(path) => department_groups(path)?,
        None => Vec::new(),
    };
    Ok(Seed { groups, users: Vec::new(), roles: None })
}

/// The service's `[departments.CODE]` tables: each one's `group_id` (a UUID), named by its code.
/// Only that part of the file is read; the service checks the rest.
pub fn department_groups(path: &Path) -> Result<Vec<SeedGroup>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        departments: std::collections::BTreeMap<String, Department>,
    }
    #[derive(serde::Deserialize)]
    struct Department {
        group_id: String,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    let file: File = toml::from_str(&text)
        .map_err(|e| format!("config file {} is not valid: {}", path.display(), e.to_string().trim()))?;
    let mut problems = Vec::new();
    let mut groups = Vec::new();
    for (code, d) in file.departments {
        match uuid::Uuid::parse_str(&d.group_id) {
            Ok(id) => groups.push(SeedGroup { id: id.to_string(), display_name: code }),
            Err(_) => problems.push(format!("departments.{code}.group_id {:?} is not a UUID", d.group_id)),
        }
    }
    if problems.is_empty() { Ok(groups) } else { Err(problems.join("\n")) }
}
