//! The sandbox: `serve --sandbox` runs the service against an in-process Genesys Cloud emulator
//! (the `genesys-emulator` crate), with development secrets made up at start, so the whole job can
//! be tried without credentials. Only with the `sandbox` feature.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use genesys_emulator::{Emulator, EmulatorConfig, SeedGroup};
use rand::RngCore;

use crate::config::{Config, ConfigError, DepartmentMap, Environment, Layered};

/// Where `serve --sandbox` keeps its jobs unless `SANDBOX_DATABASE_URL` says otherwise.
pub const DEFAULT_SANDBOX_DATABASE: &str = "sqlite://data/sandbox.db?mode=rwc";

/// The running emulator and the development values the service was given.
pub struct Sandbox {
    pub emulator: Emulator,
    pub client_id: String,
    pub client_secret: String,
    /// Set only when the environment did not provide them.
    pub signing_secret: Option<String>,
    pub admin_token: Option<String>,
}

/// A `whsec_` secret of 32 random bytes.
pub fn random_webhook_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts the emulator (seeded with the config's department groups) and loads the configuration
/// pointed at it.
pub async fn start(path: Option<&Path>, env: &dyn Environment) -> Result<(Config, Sandbox), ConfigError> {
    // Sandbox jobs never share a queue with real ones, whatever DATABASE_URL says: a sandbox job left
    // queued there would run against the real Genesys Cloud the next time the service starts with
    // credentials. A bad value is named as the variable the user set, before anything starts.
    let database = env.var("SANDBOX_DATABASE_URL").filter(|v| !v.is_empty());
    let database = database.unwrap_or_else(|| DEFAULT_SANDBOX_DATABASE.to_string());
    if let Err(e) = crate::config::DatabaseUrl::parse(&database) {
        return Err(ConfigError { problems: vec![format!("SANDBOX_DATABASE_URL {e}")] });
    }
    let departments = match path {
        Some(p) => Config::departments_in(p)?,
        None => Default::default(),
    };
    let client_id = "sandbox-client".to_string();
    let client_secret = random_token();
    let emulator_config = EmulatorConfig {
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        groups: seed_groups(&departments),
        ..Default::default()
    };
    let emulator = Emulator::start(([127, 0, 0, 1], 0).into(), emulator_config)
        .await
        .map_err(|e| ConfigError { problems: vec![format!("cannot start the sandbox emulator: {e}")] })?;
    let base = emulator.base_url();
    let mut overrides = BTreeMap::from([
        ("GENESYS_API_URL".to_string(), base.clone()),
        ("GENESYS_LOGIN_URL".to_string(), base),
        ("GENESYS_CLIENT_ID".to_string(), client_id.clone()),
        ("GENESYS_CLIENT_SECRET".to_string(), client_secret.clone()),
    ]);
    let signing_secret = env.var("HR_WEBHOOK_SECRET").is_none().then(random_webhook_secret);
    if let Some(s) = &signing_secret {
        overrides.insert("HR_WEBHOOK_SECRET".into(), s.clone());
    }
    let admin_token = env.var("ADMIN_TOKEN").is_none().then(random_token);
    if let Some(t) = &admin_token {
        overrides.insert("ADMIN_TOKEN".into(), t.clone());
    }
    overrides.insert("DATABASE_URL".into(), database);
    let mut config = Config::load(path, &Layered { overrides, base: env })?;
    // Its audit lines, too, stay out of the real trail: a `sandbox` folder inside the audit folder.
    config.audit.dir.push("sandbox");
    config.sandbox = true;
    Ok((config, Sandbox { emulator, client_id, client_secret, signing_secret, admin_token }))
}

/// The departments' groups as the emulator's starting groups, each named by its department code.
pub fn seed_groups(departments: &DepartmentMap) -> Vec<SeedGroup> {
    departments.iter().map(|d| SeedGroup { id: d.group_id.to_string(), display_name: d.code.clone() }).collect()
}

/// `genesys-provisioner emulator`: the emulator program, starting with the groups of the settings
/// file's departments (`config`, else `config/default.toml` when the working directory has it), read
/// by the service's own parser. A seed file (`--seed`) replaces them.
pub async fn run_emulator(args: genesys_emulator::cli::Args, config: Option<&Path>) -> std::process::ExitCode {
    let default = Path::new(crate::config::DEFAULT_CONFIG_PATH);
    let path = config.or_else(|| default.exists().then_some(default));
    let groups = match path.filter(|_| args.seed.is_none()).map(Config::departments_in).transpose() {
        Ok(departments) => departments.as_ref().map(seed_groups).unwrap_or_default(),
        Err(e) => {
            eprint!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    genesys_emulator::cli::run(args, groups).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    #[tokio::test]
    async fn a_bad_sandbox_database_is_named_as_the_variable_that_was_set() {
        let env = BTreeMap::from([("SANDBOX_DATABASE_URL".to_string(), "mysql://db/jobs".to_string())]);
        let problems = super::start(None, &env).await.err().expect("refused").problems;
        assert_eq!(problems, vec!["SANDBOX_DATABASE_URL must start with sqlite: or postgres://".to_string()]);
    }
}
