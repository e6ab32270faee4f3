//! The documentation against the code: README.md and docs/*.md must not rot. Every relative link
//! resolves, the configuration reference lists exactly the keys and variables the code knows, the
//! layout in docs/design.md names every file of src/ and of the emulator crate, every command in a shell block is one that a
//! test or `.ci/run` runs, and the README's sandbox tour works as written.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use genesys_provisioner::config::{Config, ENV_VARS};
use serde_json::Value;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_genesys-provisioner");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file under docs/, as (path relative to the root, text).
fn pages() -> Vec<(String, String)> {
    let mut out = vec![("README.md".to_string(), read("README.md"))];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("docs/ exists") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                let rel = path.strip_prefix(root()).unwrap().to_string_lossy().replace('\\', "/");
                out.push((rel.clone(), read(&rel)));
            }
        }
    }
    out.sort();
    out
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Fenced blocks of a Markdown text as (info string, body, line of the opening fence).
fn fenced_blocks(text: &str) -> Vec<(String, String, usize)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.take() {
            None if trimmed.starts_with("```") => open = Some((trimmed[3..].trim().to_string(), String::new(), n + 1)),
            None => {}
            Some(block) if trimmed.starts_with("```") => blocks.push(block),
            Some((info, mut body, at)) => {
                body.push_str(line);
                body.push('\n');
                open = Some((info, body, at));
            }
        }
    }
    assert!(open.is_none(), "an unclosed code fence");
    blocks
}

/// The text with fenced blocks and `inline code` blanked out, so links are only looked for in prose.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            out.push('\n');
            continue;
        }
        if in_fence {
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            }
            out.push(if in_code || c == '`' { ' ' } else { c });
        }
        out.push('\n');
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_points_at_a_file() {
    let mut broken = Vec::new();
    for (page, text) in pages() {
        let text = prose(&text);
        let base = Path::new(&page).parent().unwrap_or(Path::new("")).to_path_buf();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            rest = &rest[end..];
            if target.is_empty() || target.starts_with('#') || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap();
            let resolved = normalise(&base.join(file));
            if root().join(&resolved).exists() {
                continue;
            }
            broken.push(format!("{page}: link to {target} ({resolved} does not exist)"));
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `docs/../README.md` → `README.md`, without touching the file system.
fn normalise(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

/// The rows of docs/configuration.md's reference table: (variables, file keys, defaults) named in
/// backticks.
fn configuration_rows() -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
    let text = read("docs/configuration.md");
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("| variable | file key |") {
            in_table = true;
            continue;
        }
        if !in_table {
            continue;
        }
        if !line.starts_with('|') {
            break;
        }
        if line.starts_with("|---") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // cells[0] is the empty text before the first bar.
        rows.push((backticked(cells[1]), backticked(cells[2]), backticked(cells[3])));
    }
    assert!(!rows.is_empty(), "docs/configuration.md has no `| variable | file key | ...` table");
    rows
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The keys the config loader accepts in `[section]`, read from its own refusal of an unknown key
/// (the raw structs deny unknown fields and serde lists the expected ones).
fn accepted_keys(section: &str) -> BTreeSet<String> {
    let header = if section.is_empty() { String::new() } else { format!("[{section}]\n") };
    let text = format!("{header}zz_not_a_key = 1\n");
    let err = match Config::from_toml(&text, &BTreeMap::<String, String>::new()) {
        Ok(_) => panic!("the config loader accepted an unknown key in [{section}]"),
        Err(e) => e.to_string(),
    };
    let expected = err
        .split("unknown field `zz_not_a_key`, expected")
        .nth(1)
        .unwrap_or_else(|| panic!("no list of expected keys for [{section}] in: {err}"));
    let expected = expected.split('\n').next().unwrap_or("");
    backticked(expected).into_iter().collect()
}

/// Variables the service reads that are not configuration values of `ENV_VARS`, and where.
const OTHER_VARIABLES: &[(&str, &str, &str)] = &[
    ("PROVISIONER_CONFIG", "src/main.rs", "env = \"PROVISIONER_CONFIG\""),
    ("RUST_LOG", "src/main.rs", "EnvFilter::try_from_default_env"),
    ("JOB_MAX_ATTEMPTS", "src/config/env.rs", "env.var(\"JOB_MAX_ATTEMPTS\")"),
];

#[test]
fn the_configuration_reference_lists_every_key_and_variable_of_the_code() {
    let rows = configuration_rows();
    let documented_vars: BTreeSet<String> = rows.iter().flat_map(|(v, _, _)| v.clone()).collect();
    let documented_keys: BTreeSet<String> = rows.iter().flat_map(|(_, k, _)| k.clone()).collect();
    // A row with several keys gives their defaults in the same order, or one default for all.
    let mut documented_defaults = BTreeMap::new();
    for (_, keys, defaults) in &rows {
        for (i, key) in keys.iter().enumerate() {
            if let Some(d) =
                defaults.get(i).or(defaults.first()).filter(|_| defaults.len() == keys.len() || defaults.len() == 1)
            {
                documented_defaults.insert(key.clone(), d.clone());
            }
        }
    }
    let mut problems = Vec::new();
    let add_row = "add its row (variable or —, key, default, meaning) to the table in docs/configuration.md";

    // Every variable of ENV_VARS has a row, and every documented variable is one the service reads.
    for (name, _) in ENV_VARS {
        if !documented_vars.contains(*name) {
            problems.push(format!("environment variable {name} (ENV_VARS in src/config/env.rs) has no row: {add_row}"));
        }
    }
    for var in &documented_vars {
        if ENV_VARS.iter().any(|(n, _)| n == var) {
            continue;
        }
        match OTHER_VARIABLES.iter().find(|(n, _, _)| n == var) {
            Some((_, file, evidence)) if read(file).contains(evidence) => {}
            Some((_, file, evidence)) => problems.push(format!("{var}: {file} no longer contains {evidence:?}")),
            None => problems.push(format!(
                "docs/configuration.md documents {var}, which is neither in ENV_VARS nor read elsewhere"
            )),
        }
    }

    // The sections the loader knows, and the keys of each.
    let sections = accepted_keys("");
    let mut code_keys = BTreeSet::new();
    for section in &sections {
        match section.as_str() {
            // Tables of user-chosen names: documented as patterns.
            "departments" => {
                for key in accepted_keys("departments.ZZ") {
                    code_keys.insert(format!("departments.<CODE>.{key}"));
                }
            }
            "policy" => {
                for key in accepted_keys("policy") {
                    match key.as_str() {
                        "roles" => {
                            code_keys.insert("policy.roles.<CODE>".to_string());
                        }
                        "rules" => {
                            code_keys.extend(accepted_keys("policy.rules").iter().map(|r| format!("policy.rules.{r}")))
                        }
                        _ => {
                            code_keys.insert(format!("policy.{key}"));
                        }
                    }
                }
            }
            _ => {
                for key in accepted_keys(section) {
                    code_keys.insert(format!("{section}.{key}"));
                }
            }
        }
    }
    for key in &code_keys {
        if !documented_keys.contains(key) {
            problems.push(format!("config key {key} (accepted by src/config/file.rs) has no row: {add_row}"));
        }
    }

    // Every key of config/default.toml has a row.
    let default: toml::Table = toml::from_str(&read("config/default.toml")).expect("config/default.toml is TOML");
    for (section, table) in &default {
        let Some(table) = table.as_table() else {
            problems.push(format!("config/default.toml: top-level key {section} is not a section"));
            continue;
        };
        if section == "departments" || section == "policy" {
            continue; // patterns, checked through the loader above
        }
        for (key, value) in table {
            let key = format!("{section}.{key}");
            if !documented_keys.contains(&key) {
                problems.push(format!("config key {key} (in config/default.toml) has no row: {add_row}"));
                continue;
            }
            let value = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_) => value.to_string(),
                _ => continue,
            };
            match documented_defaults.get(&key) {
                Some(d) if *d == value => {}
                other => problems.push(format!(
                    "config key {key}: config/default.toml has `{value}`, docs/configuration.md gives the default as {other:?}"
                )),
            }
        }
    }

    // Every documented key exists in the code.
    for key in &documented_keys {
        if !code_keys.contains(key) {
            problems.push(format!(
                "docs/configuration.md documents config key {key}, which src/config/file.rs does not accept"
            ));
        }
    }
    assert!(problems.is_empty(), "docs/configuration.md is out of step with the code:\n{}", problems.join("\n"));
}

#[test]
fn the_layout_in_design_md_names_every_file_in_src() {
    let design = read("docs/design.md");
    let start = design.find("## Layout of src/").expect("docs/design.md has a layout section");
    let block = &design[start..];
    let block = &block[block.find("```").unwrap() + 3..];
    let block = &block[..block.find("```").expect("the layout block is closed")];
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("src")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !block.contains(&format!("src/{name}/")) {
                missing.push(format!("src/{name}/"));
            }
            for inner in std::fs::read_dir(&path).unwrap() {
                let inner = inner.unwrap().file_name().to_string_lossy().into_owned();
                if !block.contains(&inner) {
                    missing.push(format!("src/{name}/{inner}"));
                }
            }
        } else if !block.contains(&format!("src/{name}")) {
            missing.push(format!("src/{name}"));
        }
    }
    // The emulator crate: its folder, then every file and folder in it by name.
    let emulator = "crates/genesys-emulator/src";
    if !block.contains(&format!("{emulator}/")) {
        missing.push(format!("{emulator}/"));
    }
    let mut dirs = vec![root().join(emulator)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let named = if path.is_dir() { format!("{name}/") } else { name };
            if !block.contains(&named) {
                missing.push(path.strip_prefix(root()).unwrap().display().to_string());
            }
            if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "the layout in docs/design.md does not name: {}", missing.join(", "));
}

/// Every command line in a shell block of the docs, and what runs it (a file that must contain
/// the evidence string). Commands that nothing runs say so, with the reason.
const COMMANDS: &[(&str, &str, &str)] = &[
    ("cargo run -- serve --sandbox", "tests/it/docs.rs", "\"serve\", \"--sandbox\""),
    ("cargo test --workspace", ".ci/run", "cargo test --workspace --locked"),
    (
        "curl -s -H \"Authorization: Bearer $ADMIN_TOKEN\" http://127.0.0.1:3000/jobs/<auditId>",
        "tests/it/docs.rs",
        "GET /jobs/{auditId} with the admin token",
    ),
    ("tail -n 4 logs/audit/sandbox/audit.*.jsonl", "tests/it/docs.rs", "the last 4 lines of the sandbox audit file"),
    (
        "curl -H \"Authorization: Bearer $ADMIN_TOKEN\" http://127.0.0.1:3000/jobs/0b7d6c1e-...",
        "tests/it/docs.rs",
        "GET /jobs/{auditId} with the admin token",
    ),
    // The emulator alone: common/process.rs starts `emulator --addr ... --config config/default.toml`
    // (the default file) and `emulator --addr ... --seed FILE --client-id ... --client-secret ...`.
    ("genesys-provisioner emulator --addr 127.0.0.1:9100", "tests/it/common/process.rs", "[\"emulator\", \"--addr\""),
    (
        "genesys-provisioner emulator --addr 127.0.0.1:9100 --seed seed.json --client-id me --client-secret s3cret",
        "tests/it/common/process.rs",
        "\"--client-id\", EMULATOR_CLIENT_ID, \"--client-secret\"",
    ),
    // The same as its own program: the emulator crate's cli.rs runs the genesys-emulator binary with
    // `--group ID=NAME`, and with `--seed FILE --client-id me --client-secret s3cret`.
    (
        "cargo run -p genesys-emulator -- --addr 127.0.0.1:9100 --group a1b2c3d4-5678-90ab-cdef-1234567890ab=ENG",
        "crates/genesys-emulator/tests/it/cli.rs",
        "\"a1b2c3d4-5678-90ab-cdef-1234567890ab=Engineering\"",
    ),
    (
        "cargo run -p genesys-emulator -- --addr 127.0.0.1:9100 --seed seed.json --client-id me --client-secret s3cret",
        "crates/genesys-emulator/tests/it/cli.rs",
        "\"--client-id\", \"me\", \"--client-secret\", \"s3cret\"",
    ),
    // docs/operations.md: the SQLite backups and the dead-letter commands, run as written against a
    // running service by tests/it/deploy.rs.
    (
        "sqlite3 data/provisioner.db \".backup 'backup/provisioner.db'\"",
        "tests/it/deploy.rs",
        "fn an_online_sqlite_backup_holds_the_jobs_acknowledged_before_it",
    ),
    (
        "sqlite3 data/provisioner.db \"VACUUM INTO 'backup/provisioner-$(date +%F).db'\"",
        "tests/it/deploy.rs",
        "fn an_online_sqlite_backup_holds_the_jobs_acknowledged_before_it",
    ),
    (
        "curl -s -H \"Authorization: Bearer $ADMIN_TOKEN\" \"http://127.0.0.1:3000/admin/dead-letters?limit=50\"",
        "tests/it/deploy.rs",
        "fn the_documented_dead_letter_commands_list_inspect_replay_and_delete",
    ),
    (
        "curl -s -H \"Authorization: Bearer $ADMIN_TOKEN\" http://127.0.0.1:3000/jobs/$AUDIT_ID",
        "tests/it/deploy.rs",
        "fn the_documented_dead_letter_commands_list_inspect_replay_and_delete",
    ),
    (
        "curl -s -X POST -H \"Authorization: Bearer $ADMIN_TOKEN\" http://127.0.0.1:3000/admin/dead-letters/$AUDIT_ID/replay",
        "tests/it/deploy.rs",
        "fn the_documented_dead_letter_commands_list_inspect_replay_and_delete",
    ),
    (
        "curl -s -X DELETE -H \"Authorization: Bearer $ADMIN_TOKEN\" http://127.0.0.1:3000/admin/dead-letters/$AUDIT_ID",
        "tests/it/deploy.rs",
        "fn the_documented_dead_letter_commands_list_inspect_replay_and_delete",
    ),
    // docs/operations.md: reconcile, run against a running service by tests/it/mirror.rs.
    (
        "genesys-provisioner reconcile --url http://127.0.0.1:3000",
        "tests/it/mirror.rs",
        "&[\"reconcile\", \"--url\", &base]",
    ),
    // docs/genesys-setup.md: register-webhook, run against the emulator by tests/it/events.rs.
    (
        "genesys-provisioner register-webhook --dry-run",
        "tests/it/events.rs",
        "[\"register-webhook\", \"--dry-run\", \"--config\"",
    ),
    ("genesys-provisioner register-webhook", "tests/it/events.rs", "[\"register-webhook\", \"--config\""),
    // The API contract: fetched and checked against real answers by tests/it/openapi.rs; the fuzz
    // script is the last step of .ci/run.
    ("curl -s http://127.0.0.1:3000/openapi.json", "tests/it/openapi.rs", "/openapi.json"),
    (
        ".ci/openapi-fuzz.sh target/debug/genesys-provisioner",
        ".ci/run",
        ".ci/openapi-fuzz.sh target/debug/genesys-provisioner",
    ),
    // Benchmarks: compiled by `.ci/run` (clippy over all targets) but not run there: each loads a
    // 2-core machine for a minute or more.
    ("cargo bench --bench intake", ".ci/run", "--all-targets"),
    ("cargo bench --bench provision", ".ci/run", "--all-targets"),
    ("cargo bench --bench sync", ".ci/run", "--all-targets"),
    ("cargo bench --bench policy", ".ci/run", "--all-targets"),
];

/// Shell blocks hold commands to run; every other block must say what it is (text, json, toml, ...),
/// so a command cannot slip past this check in an unlabelled block.
const SHELL: &[&str] = &["sh", "bash", "console", "shell"];

#[test]
fn every_command_in_the_docs_is_run_by_a_test_or_ci() {
    let mut problems = Vec::new();
    for (page, text) in pages() {
        for (info, body, at) in fenced_blocks(&text) {
            if info.is_empty() {
                problems.push(format!("{page}:{at}: a code block without a language (use text for output)"));
                continue;
            }
            if !SHELL.contains(&info.as_str()) {
                continue;
            }
            for command in commands(&body) {
                match COMMANDS.iter().find(|(c, _, _)| *c == command) {
                    None => problems.push(format!(
                        "{page}:{at}: `{command}` is run by nothing: add it to COMMANDS in tests/it/docs.rs with the test or .ci/run step that runs it"
                    )),
                    Some((_, file, evidence)) if !read(file).contains(evidence) => {
                        problems.push(format!("{page}:{at}: `{command}`: {file} no longer contains {evidence:?}"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The command lines of a shell block: comments and prompts removed, continuations joined, spaces
/// collapsed.
fn commands(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in body.lines() {
        let line = line.trim();
        let line = line.strip_prefix("$ ").unwrap_or(line);
        let line = match line.find(" #") {
            Some(at) => &line[..at],
            None if line.starts_with('#') => "",
            None => line,
        };
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let command = pending.split_whitespace().collect::<Vec<_>>().join(" ");
        pending.clear();
        if !command.is_empty() {
            out.push(command);
        }
    }
    out
}

/// The README's tour, step by step, with the built binary: `serve --sandbox` prints its development
/// values, the printed `send-webhook` gets a 202, GET /jobs/{auditId} with the admin token shows the
/// job succeeded with a `result.scimId`, and the last 4 lines of the sandbox audit file hold
/// `intake.accepted`, `scim.user.created` and `job.attempt`.
#[tokio::test]
async fn the_readme_sandbox_tour_works_as_written() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(BIN)
        .args(["serve", "--sandbox"])
        .current_dir(root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PROVISIONER_ENV_FILE", "none")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("SANDBOX_DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.path().join("sandbox.db").display()))
        .env("AUDIT_DIR", dir.path().join("audit"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut secret, mut token) = (None, None);
    while secret.is_none() || token.is_none() {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the sandbox prints its development values");
        if let Some(v) = line.trim().strip_prefix("HR_WEBHOOK_SECRET=") {
            secret = v.split_whitespace().next().map(str::to_string);
        }
        if let Some(v) = line.trim().strip_prefix("ADMIN_TOKEN=") {
            token = v.split_whitespace().next().map(str::to_string);
        }
    }
    let (secret, token) = (secret.unwrap(), token.unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let up = eventually(Duration::from_secs(30), || async {
        client.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    assert!(up.is_some(), "the sandbox answers /healthz");

    // The printed send-webhook, with the sample new hire.
    let url = format!("{base}{HR_PATH}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["send-webhook", "--url", &url, "--file", "config/samples/new-hire.json", "--secret", &secret])
            .current_dir(root())
            .env("PROVISIONER_ENV_FILE", "none")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{printed}{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_str(printed.lines().last().unwrap_or("")).expect("the answer is JSON");
    assert_eq!(answer["status"], "provisioning_queued", "{printed}");
    let audit_id = answer["auditId"].as_str().expect("an auditId").to_string();

    // GET /jobs/{auditId} with the admin token: state succeeded, result.scimId.
    let job = eventually(Duration::from_secs(30), || async {
        let job: Value =
            client.get(format!("{base}/jobs/{audit_id}")).bearer_auth(&token).send().await.ok()?.json().await.ok()?;
        (job["state"] == "succeeded").then_some(job)
    })
    .await
    .expect("the sample new hire is provisioned");
    assert!(job["result"]["scimId"].is_string(), "{job}");

    // The last 4 lines of the sandbox audit file (lines reach the file within milliseconds).
    let audit = dir.path().join("audit/sandbox");
    let tail = eventually(Duration::from_secs(10), || {
        let audit = audit.clone();
        async move {
            let file = std::fs::read_dir(&audit).ok()?.next()?.ok()?.path();
            let text = std::fs::read_to_string(file).ok()?;
            let lines: Vec<&str> = text.lines().collect();
            let events: Vec<String> = lines[lines.len().saturating_sub(4)..]
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|v| v["event"].as_str().unwrap_or("").to_string())
                .collect();
            ["intake.accepted", "scim.user.created", "job.attempt"]
                .iter()
                .all(|e| events.iter().any(|x| x == e))
                .then_some(events)
        }
    })
    .await;
    assert!(tail.is_some(), "the sandbox audit file ends with intake.accepted, scim.user.created, job.attempt");
}
