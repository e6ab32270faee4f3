//! The emulator alone, from the command line: the `genesys-emulator` binary and the service's
//! `genesys-provisioner emulator` subcommand are both this, so they take the same flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::{Emulator, EmulatorConfig, Seed, SeedGroup};

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
    /// A group to start with, `ID=DISPLAYNAME` (or just `ID`, named by itself); repeatable. Ignored
    /// with `--seed`. (`genesys-provisioner emulator` adds the groups of its config's departments.)
    #[arg(long = "group", value_name = "ID=NAME", value_parser = parse_group)]
    pub groups: Vec<SeedGroup>,
}

/// Starts the emulator as `args` say, prints where it listens, and serves until Ctrl-C. `more_groups`
/// join the `--group` ones when there is no seed file (the service passes its departments' groups).
pub async fn run(args: Args, more_groups: Vec<SeedGroup>) -> ExitCode {
    let seed = match load_seed(&args, more_groups) {
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

/// The seed file when one is named; else the `--group` groups and `more_groups`.
fn load_seed(args: &Args, more_groups: Vec<SeedGroup>) -> Result<Seed, String> {
    if let Some(file) = &args.seed {
        return std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Seed>(&b).map_err(|e| format!("not a valid seed: {e}")))
            .map_err(|e| format!("cannot use seed {}: {e}", file.display()));
    }
    let groups = args.groups.iter().cloned().chain(more_groups).collect();
    Ok(Seed { groups, users: Vec::new(), roles: None })
}

/// `ID=NAME` or `ID`: the id must be a UUID, as Genesys group ids are.
fn parse_group(text: &str) -> Result<SeedGroup, String> {
    let (id, name) = text.split_once('=').unwrap_or((text, ""));
    let id = uuid::Uuid::parse_str(id.trim()).map_err(|_| format!("group id {id:?} is not a UUID"))?.to_string();
    // No name (`ID` or `ID=`): the group is named by its id, never by an empty displayName.
    let display_name = if name.trim().is_empty() { id.clone() } else { name.trim().to_string() };
    Ok(SeedGroup { id, display_name })
}
