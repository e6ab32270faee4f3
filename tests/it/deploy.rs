//! The deployment files (Dockerfile, compose.yaml, deploy/) cannot be built or run here (no container
//! engine), so this checks what can be checked against the service itself: every environment
//! variable they set is one the service reads, probes and health checks reach real endpoints, ports
//! match LISTEN_ADDR, the stop grace covers the shutdown grace, and the image's health check fails
//! when the service is not reachable the way traffic reaches it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_genesys-provisioner");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Every variable the service reads: its settings (`ENV_VARS`), the log filter, the config file and
/// the env-file switch (read by `main` before the settings).
fn known_variables() -> BTreeSet<&'static str> {
    let mut known: BTreeSet<&str> = genesys_provisioner::config::ENV_VARS.iter().map(|(name, _)| *name).collect();
    known.extend(["RUST_LOG", "PROVISIONER_CONFIG", "PROVISIONER_ENV_FILE"]);
    known
}

fn assert_known(names: impl IntoIterator<Item = String>, file: &str) {
    let known = known_variables();
    let unknown: Vec<String> = names.into_iter().filter(|n| !known.contains(n.as_str())).collect();
    assert!(unknown.is_empty(), "{file} sets variables the service does not read: {unknown:?}");
}

/// The YAML documents of a file, as JSON values.
fn yaml_documents(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `KEY=value` lines of an env file, comments and blank lines left out.
fn env_file(path: &str) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{path}: not KEY=value: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// One Dockerfile instruction: its keyword (upper case) and the rest, continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of the Dockerfile's last stage (the runtime image) and the `FROM` images of all.
struct Dockerfile {
    froms: Vec<String>,
    stage_names: Vec<String>,
    last_stage: Vec<Instruction>,
}

impl Dockerfile {
    fn read() -> Self {
        let mut joined = Vec::new();
        let mut current = String::new();
        for line in read("Dockerfile").lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') {
                continue;
            }
            match trimmed.strip_suffix('\\') {
                Some(head) => {
                    current.push_str(head);
                    current.push(' ');
                }
                None => {
                    current.push_str(trimmed);
                    if !current.trim().is_empty() {
                        joined.push(std::mem::take(&mut current));
                    }
                    current.clear();
                }
            }
        }
        let mut file = Dockerfile { froms: Vec::new(), stage_names: Vec::new(), last_stage: Vec::new() };
        for line in joined {
            let (keyword, args) = line.trim().split_once(char::is_whitespace).unwrap_or((line.trim(), ""));
            let keyword = keyword.to_ascii_uppercase();
            let args = args.trim().to_string();
            if keyword == "FROM" {
                let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
                file.froms.push(words[0].to_string());
                if let [_, as_word, name] = words[..]
                    && as_word.eq_ignore_ascii_case("as")
                {
                    file.stage_names.push(name.to_string());
                }
                file.last_stage.clear();
            }
            file.last_stage.push(Instruction { keyword, args });
        }
        file
    }

    fn all(&self, keyword: &str) -> Vec<&str> {
        self.last_stage.iter().filter(|i| i.keyword == keyword).map(|i| i.args.as_str()).collect()
    }

    fn one(&self, keyword: &str) -> &str {
        let all = self.all(keyword);
        assert_eq!(all.len(), 1, "the runtime stage should have one {keyword}: {all:?}");
        all[0]
    }

    /// The runtime image's environment (`ENV A=1 B=2`).
    fn env(&self) -> BTreeMap<String, String> {
        self.all("ENV")
            .iter()
            .flat_map(|args| args.split_whitespace())
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The port of the image's LISTEN_ADDR.
    fn port(&self) -> u16 {
        let addr = self.env().get("LISTEN_ADDR").cloned().expect("the image sets LISTEN_ADDR");
        let addr: std::net::SocketAddr = addr.parse().expect("LISTEN_ADDR is an address");
        addr.port()
    }

    /// The exec-form command of HEALTHCHECK (`CMD ["a", "b"]`).
    fn healthcheck(&self) -> Vec<String> {
        let args = self.one("HEALTHCHECK");
        let (_, command) = args.split_once("CMD").expect("HEALTHCHECK has a CMD");
        serde_json::from_str(command.trim()).expect("HEALTHCHECK CMD is in exec form (a JSON array)")
    }

    /// `COPY` sources that land in /usr/local/bin, by their name there (the image's PATH).
    fn installed_programs(&self) -> BTreeMap<String, PathBuf> {
        let mut programs = BTreeMap::new();
        for args in self.all("COPY") {
            let words: Vec<&str> = args.split_whitespace().collect();
            let from_build = words.iter().any(|w| w.starts_with("--from="));
            let paths: Vec<&&str> = words.iter().filter(|w| !w.starts_with("--")).collect();
            let (Some(src), Some(dest)) = (paths.first(), paths.last()) else { continue };
            let Some(name) = dest.strip_prefix("/usr/local/bin/") else { continue };
            let source = match from_build {
                // The build stage's release binary: this test's build of the same code.
                true => PathBuf::from(BIN),
                false => repo(src),
            };
            programs.insert(name.to_string(), source);
        }
        programs
    }
}

fn shutdown_grace_secs() -> u64 {
    let config: toml::Table = toml::from_str(&read("config/default.toml")).expect("config/default.toml is TOML");
    config["queue"]["shutdown_grace_secs"].as_integer().expect("queue.shutdown_grace_secs is set") as u64
}

/// Time after SIGTERM the service needs on top of the jobs' grace: answering the requests in flight
/// and committing their jobs, closing the store.
const STOP_MARGIN_SECS: u64 = 5;

/// A compose duration: `30s`, `1m30s`, `1m`, `500ms`.
fn compose_duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().unwrap_or_else(|_| panic!("not a duration: {text}"));
        number.clear();
        total += match c {
            'h' => Duration::from_secs(n * 3600),
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                Duration::from_millis(n)
            }
            'm' => Duration::from_secs(n * 60),
            's' => Duration::from_secs(n),
            _ => panic!("not a duration: {text}"),
        };
    }
    assert!(number.is_empty(), "a duration needs a unit: {text}");
    total
}

#[test]
fn the_image_runs_a_numeric_user_from_fully_qualified_images_with_a_stripped_binary() {
    let file = Dockerfile::read();
    // A registry host (it has a dot or a port, or is localhost) and a path: no short names.
    for image in file.froms.iter().filter(|i| !file.stage_names.contains(i)) {
        let host = image.split('/').next().unwrap_or_default();
        let qualified = image.contains('/') && (host.contains('.') || host.contains(':') || host == "localhost");
        assert!(qualified, "FROM {image} is not a fully qualified image name (e.g. docker.io/library/...)");
    }
    let user = file.one("USER");
    let numeric = user.split(':').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    assert!(numeric, "USER {user} is not numeric, so runAsNonRoot cannot check it");
    assert_eq!(file.one("STOPSIGNAL"), "SIGTERM");
    // The build stage strips the binary for the image only (the release profile keeps line tables).
    let text = read("Dockerfile");
    assert!(text.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"), "the image's binary is not stripped of symbols");
    // The folders the service writes are the user's.
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        file.all("RUN").iter().any(|r| r.contains(&format!("chown -R {uid}:")) && r.contains("data logs")),
        "data and logs are not owned by USER {user}"
    );
    let env = file.env();
    assert_known(env.keys().cloned(), "Dockerfile (runtime ENV)");
    let audit_dir = env.get("AUDIT_DIR").expect("the image sets AUDIT_DIR");
    let volumes = file.one("VOLUME");
    assert!(volumes.contains(audit_dir.as_str()), "AUDIT_DIR {audit_dir} is not a VOLUME: {volumes}");
    assert_eq!(file.one("EXPOSE"), file.port().to_string(), "EXPOSE is not LISTEN_ADDR's port");
}

#[test]
fn the_container_env_example_sets_only_known_variables_and_leaves_the_image_settings_alone() {
    let example = env_file("deploy/container.env.example");
    assert_known(example.keys().cloned(), "deploy/container.env.example");
    let image = Dockerfile::read().env();
    for owned in ["LISTEN_ADDR", "AUDIT_DIR", "LOG_FORMAT", "PROVISIONER_CONFIG", "PROVISIONER_ENV_FILE"] {
        assert!(image.contains_key(owned), "the image does not set {owned}");
        assert!(!example.contains_key(owned), "the container example sets {owned}, which fights the image's");
    }
    for secret in ["HR_WEBHOOK_SECRET", "ADMIN_TOKEN", "GENESYS_CLIENT_SECRET"] {
        let value = example.get(secret).unwrap_or_else(|| panic!("the container example has no {secret}"));
        assert!(value.contains("REPLACE_ME"), "{secret} in the container example is not a placeholder: {value}");
    }
}

/// The placeholders cannot start a service by accident: check-config refuses them.
#[test]
fn the_container_env_placeholders_are_refused_at_start() {
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config", &repo("config/default.toml").display().to_string()])
        .env_clear()
        .env("PROVISIONER_ENV_FILE", "none")
        .envs(env_file("deploy/container.env.example"))
        .output()
        .expect("check-config runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "check-config accepted the placeholders: {text}");
    assert!(text.contains("HR_WEBHOOK_SECRET"), "{text}");
    assert!(text.contains("ADMIN_TOKEN"), "{text}");
}

/// The compose service's environment: `environment` (map or list) and its env file's example.
fn compose_environment(service: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match &service["environment"] {
        Value::Object(map) => {
            for (k, v) in map {
                env.insert(k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
            }
        }
        Value::Array(items) => {
            for item in items {
                let text = item.as_str().expect("environment entries are text");
                let (k, v) = text.split_once('=').unwrap_or((text, ""));
                env.insert(k.to_string(), v.to_string());
            }
        }
        _ => {}
    }
    let files: Vec<String> = match &service["env_file"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => {
            items.iter().map(|i| i.as_str().or(i["path"].as_str()).unwrap_or_default().to_string()).collect()
        }
        _ => Vec::new(),
    };
    for file in files {
        // The real file holds secrets and is not in git; its example has the same variables.
        assert_eq!(file, "deploy/container.env", "compose reads an env file other than the container one");
        env.extend(env_file("deploy/container.env.example"));
    }
    env
}

#[test]
fn compose_runs_two_replicas_on_postgres_with_known_variables_ports_and_stop_grace() {
    let docs = yaml_documents("compose.yaml");
    let compose = &docs[0];
    let image = Dockerfile::read();
    let service = &compose["services"]["provisioner"];
    assert!(service.is_object(), "compose.yaml has no `provisioner` service");
    assert!(service["deploy"]["replicas"].as_u64().unwrap_or(1) >= 2, "fewer than two replicas share the queue");
    let env = compose_environment(service);
    assert_known(env.keys().cloned(), "compose.yaml (provisioner)");
    for owned in ["LISTEN_ADDR", "AUDIT_DIR", "LOG_FORMAT"] {
        assert!(!env.contains_key(owned), "compose sets {owned}, which fights the image's");
    }
    let url = env.get("DATABASE_URL").expect("compose sets DATABASE_URL");
    assert!(url.starts_with("postgres://"), "replicas need PostgreSQL to share a queue: {url}");
    assert!(url.contains("${POSTGRES_PASSWORD:?"), "the database password is not required from the environment");
    let postgres_host = url.split('@').nth(1).and_then(|h| h.split([':', '/']).next()).unwrap_or_default();
    assert!(compose["services"][postgres_host].is_object(), "DATABASE_URL names no compose service: {postgres_host}");
    assert!(compose["services"][postgres_host]["healthcheck"]["test"].is_array(), "PostgreSQL has no health check");
    assert_eq!(
        service["depends_on"][postgres_host]["condition"], "service_healthy",
        "the service starts before PostgreSQL is healthy"
    );
    // Each published port leads to the container's LISTEN_ADDR port, with a host port per replica.
    let replicas = service["deploy"]["replicas"].as_u64().unwrap_or(1);
    let ports = service["ports"].as_array().expect("the service publishes a port");
    for port in ports {
        let text = port.as_str().expect("ports in short syntax");
        let mut parts = text.rsplit(':');
        let container = parts.next().unwrap_or_default();
        assert_eq!(container, image.port().to_string(), "{text} does not lead to LISTEN_ADDR's port");
        let host = parts.next().unwrap_or_default();
        let host_ports = match host.split_once('-') {
            Some((first, last)) => {
                let span = |p: &str| p.parse::<u64>().unwrap_or_else(|_| panic!("{text}: not a port range"));
                span(last).saturating_sub(span(first)) + 1
            }
            None => 1,
        };
        assert!(host_ports >= replicas, "{text}: {replicas} replicas cannot each publish a host port");
    }
    // The audit folder is a volume; the health check is the image's.
    let audit_dir = image.env()["AUDIT_DIR"].clone();
    let mounts: Vec<&str> = service["volumes"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    assert!(mounts.iter().any(|m| m.ends_with(&format!(":{audit_dir}"))), "no volume at {audit_dir}: {mounts:?}");
    let test: Vec<String> = serde_json::from_value(service["healthcheck"]["test"].clone()).expect("a health check");
    assert_eq!(test[0], "CMD");
    assert_eq!(test[1..], image.healthcheck()[..], "compose's health check is not the image's");
    let grace = compose_duration(service["stop_grace_period"].as_str().expect("stop_grace_period is set"));
    let needed = shutdown_grace_secs() + STOP_MARGIN_SECS;
    assert!(grace >= Duration::from_secs(needed), "stop_grace_period {grace:?} is shorter than {needed} s");
}

/// The Kubernetes objects of deploy/kubernetes, by kind.
fn kubernetes_objects() -> BTreeMap<String, Value> {
    let mut objects = BTreeMap::new();
    let dir = repo("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    for file in files {
        let name = file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(&file).display().to_string();
        for doc in yaml_documents(name.trim_start_matches('/')) {
            let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{name}: an object without kind")).to_string();
            assert!(objects.insert(kind.clone(), doc).is_none(), "two {kind} objects");
        }
    }
    objects
}

#[tokio::test]
async fn the_kubernetes_example_sets_known_variables_and_probes_real_endpoints() {
    let objects = kubernetes_objects();
    let image = Dockerfile::read();
    let deployment = &objects["Deployment"];
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // Variables: the container's own and the Secret's keys (envFrom).
    let mut names: Vec<String> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["name"].as_str().unwrap_or_default().to_string())
        .collect();
    let secret = &objects["Secret"];
    let secret_name = secret["metadata"]["name"].as_str().unwrap_or_default();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        assert_eq!(from["secretRef"]["name"], secret_name, "envFrom names another Secret");
        let data = secret["stringData"].as_object().expect("the Secret has stringData");
        names.extend(data.keys().cloned());
        for (key, value) in data {
            assert!(value.as_str().unwrap_or_default().contains("REPLACE_ME"), "Secret {key} is not a placeholder");
        }
    }
    for owned in ["LISTEN_ADDR", "AUDIT_DIR", "LOG_FORMAT"] {
        assert!(!names.iter().any(|n| n == owned), "the Deployment sets {owned}, which fights the image's");
    }
    assert_known(names, "deploy/kubernetes (Deployment and Secret)");

    // Ports: the container port is LISTEN_ADDR's; probes and the Service reach it by name.
    let ports: BTreeMap<String, u64> = container["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .map(|p| (p["name"].as_str().unwrap_or_default().to_string(), p["containerPort"].as_u64().unwrap_or(0)))
        .collect();
    let port_of = |v: &Value| match v {
        Value::String(name) => ports.get(name).copied().unwrap_or_else(|| panic!("no container port named {name}")),
        other => other.as_u64().expect("a port"),
    };
    assert!(ports.values().all(|p| *p == u64::from(image.port())), "container ports {ports:?} are not LISTEN_ADDR's");
    for service_port in objects["Service"]["spec"]["ports"].as_array().expect("Service ports") {
        assert_eq!(port_of(&service_port["targetPort"]), u64::from(image.port()), "the Service misses the port");
    }
    let template_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for kind in ["Service", "PodDisruptionBudget"] {
        let selector = match kind {
            "Service" => &objects[kind]["spec"]["selector"],
            _ => &objects[kind]["spec"]["selector"]["matchLabels"],
        };
        for (k, v) in selector.as_object().expect("a selector") {
            assert_eq!(&template_labels[k], v, "the {kind} selects no pod of the Deployment");
        }
    }

    // The probes: readiness on /readyz, liveness on /healthz, both answered 200 by a running service.
    let app = Spawn::new(Backend::Sqlite).start().await.expect("sqlite app");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe} does not GET {path}");
        assert_eq!(port_of(&get["port"]), u64::from(image.port()), "{probe} probes another port");
        let status = app.client.get(app.url(path)).send().await.expect("probe request").status();
        assert_eq!(status, 200, "{probe}: GET {path} answered {status}");
    }

    // Stopping: the grace covers the preStop pause and the service's own shutdown.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    let pause = match container["lifecycle"]["preStop"]["exec"]["command"].as_array() {
        Some(command) if command[0] == "sleep" => command[1].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
        _ => 0,
    };
    let needed = pause + shutdown_grace_secs() + STOP_MARGIN_SECS;
    assert!(grace >= needed, "terminationGracePeriodSeconds {grace} is shorter than {needed}");

    // Not root, as the image's numeric USER; a read-only root with the audit folder on a volume.
    let uid: u64 = image.one("USER").split(':').next().and_then(|u| u.parse().ok()).expect("numeric USER");
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"].as_u64(), Some(uid), "runAsUser is not the image's USER");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let audit_dir = image.env()["AUDIT_DIR"].clone();
    let mounted = container["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == audit_dir);
    assert!(mounted, "a read-only root needs a volume at AUDIT_DIR {audit_dir}");
    let url = secret["stringData"]["DATABASE_URL"].as_str().unwrap_or_default();
    assert!(url.starts_with("postgres://"), "replicas and a read-only root need PostgreSQL: {url}");
    assert!(deployment["spec"]["replicas"].as_u64().unwrap_or(1) >= 2);
    let pdb = &objects["PodDisruptionBudget"]["spec"];
    assert!(pdb["minAvailable"].as_u64().is_some() || pdb["maxUnavailable"].is_number(), "the PDB sets no budget");
    app.shutdown().await;
}

/// The first address of this machine that is not loopback, as the health check finds its own.
fn outside_address() -> Option<String> {
    let out = std::process::Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| !a.starts_with("127.") && *a != "::1")
        .map(str::to_string)
}

/// Runs the image's HEALTHCHECK command with the image's programs (the repo's files they are
/// copied from, and this build's binary) first on PATH, for a service whose LISTEN_ADDR is `listen`.
async fn run_image_healthcheck(listen: String) -> bool {
    let image = Dockerfile::read();
    let command = image.healthcheck();
    let bin_dir = tempfile::tempdir().expect("tempdir");
    for (name, source) in image.installed_programs() {
        std::os::unix::fs::symlink(&source, bin_dir.path().join(&name)).expect("symlink");
    }
    let path = format!("{}:{}", bin_dir.path().display(), std::env::var("PATH").unwrap_or_default());
    tokio::task::spawn_blocking(move || {
        let status = std::process::Command::new(&command[0])
            .args(&command[1..])
            .env("PATH", path)
            .env("LISTEN_ADDR", listen)
            .env("PROVISIONER_ENV_FILE", "none")
            .status()
            .expect("the health check runs");
        drop(bin_dir);
        status.success()
    })
    .await
    .expect("health check task")
}

#[tokio::test]
async fn the_image_health_check_fails_when_the_service_listens_on_loopback_only() {
    if outside_address().is_none() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: image health check test (no address besides loopback)");
        return;
    }
    // LISTEN_ADDR=127.0.0.1:... from a local-development .env: reachable inside, not from outside.
    let app = Spawn::new(Backend::Sqlite).env("LISTEN_ADDR", "127.0.0.1:0").start().await.expect("app");
    let listen = app.base.trim_start_matches("http://").to_string();
    assert!(!run_image_healthcheck(listen).await, "the health check passed for a service on loopback only");
    app.shutdown().await;

    // The image's own LISTEN_ADDR (every address): healthy.
    let app = Spawn::new(Backend::Sqlite).env("LISTEN_ADDR", "0.0.0.0:0").start().await.expect("app");
    let listen = app.base.trim_start_matches("http://").to_string();
    assert!(listen.starts_with("0.0.0.0:"), "{listen}");
    assert!(run_image_healthcheck(listen).await, "the health check failed for a service on every address");
    app.shutdown().await;
}

/// Jobs in an SQLite file, read with a connection of its own (SQLite's default VFS, as a tool has).
async fn jobs_in(file: &Path) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=ro", file.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open the backup");
    sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&mut conn).await.expect("count jobs")
}

/// docs/operations.md's online backups of the SQLite file, taken while the service runs (WAL, and
/// its WAL-gathering VFS): each copy holds the job just acknowledged.
#[tokio::test]
async fn an_online_sqlite_backup_holds_the_jobs_acknowledged_before_it() {
    use sqlx::Connection;
    let app = Spawn::new(Backend::Sqlite).no_workers().start().await.expect("sqlite app");
    app.hire(&new_hire("ENG")).await;
    let db = app.db.dir.path().join("jobs.db");
    let backups = tempfile::tempdir().expect("tempdir");

    let vacuumed = backups.path().join("vacuum-into.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.expect("open");
    sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO '{}'", vacuumed.display())))
        .execute(&mut conn)
        .await
        .expect("VACUUM INTO while the service runs");
    conn.close().await.expect("close");
    assert_eq!(jobs_in(&vacuumed).await, 1, "VACUUM INTO missed the acknowledged job");

    // docs/operations.md's commands as written, with the service's file and a backup folder, when
    // this machine has the sqlite3 command-line tool.
    if std::process::Command::new("sqlite3").arg("-version").output().is_err() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: the documented sqlite3 backups (no sqlite3 command here)");
    } else {
        let commands = operations_commands("### SQLite");
        assert_eq!(commands.len(), 2, "{commands:?}");
        for (n, command) in commands.iter().enumerate() {
            let folder = backups.path().join(format!("cli-{n}"));
            std::fs::create_dir_all(&folder).expect("backup folder");
            let command = command
                .replace("data/provisioner.db", &db.display().to_string())
                .replace("backup/", &format!("{}/", folder.display()));
            let out = std::process::Command::new("sh").args(["-c", &command]).output().expect("sh runs");
            assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
            let files: Vec<PathBuf> =
                std::fs::read_dir(&folder).expect("read").filter_map(|e| e.ok().map(|e| e.path())).collect();
            assert_eq!(files.len(), 1, "{command} made {files:?}");
            assert_eq!(jobs_in(&files[0]).await, 1, "{command} missed the acknowledged job");
        }
    }
    app.shutdown().await;
}

/// The shell commands of the first `sh` block under `heading` in docs/operations.md.
fn operations_commands(heading: &str) -> Vec<String> {
    let text = read("docs/operations.md");
    let (_, section) = text.split_once(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("no {heading}"));
    let (_, block) = section.split_once("```sh\n").expect("a sh block");
    let (block, _) = block.split_once("```").expect("the block ends");
    block.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// Runs one documented command with `sh`, the service's address in place of the documented one.
async fn run_documented(command: &str, base: &str, audit_id: uuid::Uuid) -> String {
    let command = command.replace("http://127.0.0.1:3000", base);
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("sh")
            .args(["-c", &command])
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("AUDIT_ID", audit_id.to_string())
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .expect("command task")
}

/// docs/operations.md's dead-letter commands, as written: list, inspect, replay, delete.
#[tokio::test]
async fn the_documented_dead_letter_commands_list_inspect_replay_and_delete() {
    use genesys_provisioner::queue::worker::JobFailure;
    let commands = operations_commands("## Dead letters");
    assert_eq!(commands.len(), 4, "{commands:?}");
    let handler = ScriptedHandler::new(|_, _| Err(JobFailure::Permanent { error: "refused by policy".into() }));
    let app = Spawn::new(Backend::Sqlite).handler(handler).no_workers().start().await.expect("app");
    let id = app.hire(&new_hire("ENG")).await;
    app.worker.drain().await.expect("drain");

    let listed: Value = serde_json::from_str(&run_documented(&commands[0], &app.base, id).await).expect("JSON");
    assert_eq!(listed["items"][0]["auditId"], id.to_string(), "{listed}");
    assert_eq!(listed["items"][0]["lastError"], "refused by policy", "{listed}");
    let job: Value = serde_json::from_str(&run_documented(&commands[1], &app.base, id).await).expect("JSON");
    assert_eq!(job["attemptHistory"].as_array().map(Vec::len), Some(1), "{job}");
    let replayed: Value = serde_json::from_str(&run_documented(&commands[2], &app.base, id).await).expect("JSON");
    assert_eq!(replayed["status"], "queued", "{replayed}");
    assert_eq!(app.admin_get(&format!("/jobs/{id}")).await.1["state"], "queued");

    app.worker.drain().await.expect("drain");
    assert_eq!(run_documented(&commands[3], &app.base, id).await, "", "DELETE answers 204 with no body");
    assert_eq!(app.admin_get(&format!("/jobs/{id}")).await.0, 404, "the dead letter is still there");
    app.shutdown().await;
}

/// The image is the production build: every `cargo build` in the Dockerfile is without the
/// `sandbox` feature, so the binary holds no emulator code (.ci/production-has-no-emulator.sh checks
/// such a binary for it), and every workspace member's manifest is copied in before the first build,
/// or cargo cannot read the workspace at all.
#[test]
fn the_image_is_built_without_the_sandbox_feature_from_the_whole_workspace() {
    let mut instructions: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines().map(str::trim).filter(|l| !l.starts_with('#')) {
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(&format!("{head} ")),
            None => instructions.push(std::mem::take(&mut current) + line),
        }
    }
    let builds: Vec<usize> = (0..instructions.len()).filter(|&i| instructions[i].contains("cargo build")).collect();
    assert!(!builds.is_empty(), "the Dockerfile builds nothing");
    for &i in &builds {
        assert!(instructions[i].contains("--no-default-features"), "built with the sandbox: {}", instructions[i]);
    }
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let members = manifest["workspace"]["members"].as_array().expect("a workspace with members");
    for member in members {
        let member = member.as_str().unwrap();
        let copied = instructions[..builds[0]]
            .iter()
            .any(|i| i.starts_with("COPY ") && i.contains(&format!("{member}/Cargo.toml")));
        assert!(copied, "{member}/Cargo.toml is not copied in before the first cargo build");
        // Its sources too (a folder that holds it), should a build ever need them.
        let whole = instructions.iter().filter_map(|i| i.strip_prefix("COPY ")).any(|args| {
            let words: Vec<&str> = args.split_whitespace().filter(|w| !w.starts_with("--")).collect();
            let sources = &words[..words.len().saturating_sub(1)];
            sources.iter().any(|s| {
                member == s.trim_end_matches('/') || member.starts_with(&format!("{}/", s.trim_end_matches('/')))
            })
        });
        assert!(whole, "{member} is not copied into the build");
    }
}
