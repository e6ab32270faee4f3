//! A Genesys Cloud emulator: it owns a fake login host (`POST /oauth/token`), the SCIM 2.0 users
//! and groups API (`/api/v2/scim/v2/...`) with the Genesys rules of genesys-api.md, and the fault controls
//! (`Faults`, `POST /emulator/faults`, `GET /emulator/stats`) used by tests, `serve --sandbox` and standalone
//! runs (the `genesys-emulator` binary, or `genesys-provisioner emulator`).
//!
//! It imports nothing of the service: its wire types are its own (`wire`), and every request body it
//! takes is checked against the Genesys API models of the pinned SDK models file (`models`), which
//! the service's tests use to check what its client sends.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use genesys_emulator::{Emulator, EmulatorConfig, SeedGroup};
//! let config = EmulatorConfig {
//!     groups: vec![SeedGroup { id: "g-eng".into(), display_name: "Engineering".into() }],
//!     ..EmulatorConfig::default()
//! };
//! let emulator = Emulator::start("127.0.0.1:0".parse().unwrap(), config).await?;
//! println!("Genesys API and login host: {}", emulator.base_url());
//! emulator.stop().await;
//! # Ok(()) }
//! ```

pub mod cli;
mod faults;
mod filter;
mod integrations;
pub mod models;
mod patch;
mod server;
mod store;
pub mod wire;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use faults::{FailWrites, FaultSettings, Faults};
pub use integrations::DEFAULT_TRIGGER_TOPICS;

use crate::wire::{PatchOp, ScimGroup, ScimUser};
use store::Store;

/// How an emulator starts.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The one OAuth client it knows (client credentials grant).
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of issued tokens, reported as `expires_in` (whole seconds) and enforced as given.
    pub token_ttl: Duration,
    /// Groups that exist at start (SCIM cannot create groups).
    pub groups: Vec<SeedGroup>,
    /// Requests per minute for the OAuth client on `/api/v2`; None = unlimited.
    pub rate_limit_per_minute: Option<u32>,
    /// Names of the security roles `GET /api/v2/authorization/roles` lists (default: `DEFAULT_ROLES`).
    pub roles: Vec<String>,
    /// Topics `GET /api/v2/processautomation/triggers/topics` offers (default: `DEFAULT_TRIGGER_TOPICS`,
    /// which, like a real org's list, lacks the user audit topic).
    pub trigger_topics: Vec<String>,
}

/// The roles the emulator's organisation has unless told otherwise: Genesys Cloud's built-in ones
/// that the sample configuration names, and two more.
pub const DEFAULT_ROLES: &[&str] = &["admin", "agent", "employee", "Master Admin", "supervisor", "User"];

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            client_id: "emulator-client".to_string(),
            client_secret: "emulator-secret".to_string(),
            token_ttl: Duration::from_secs(3600),
            groups: Vec::new(),
            rate_limit_per_minute: None,
            roles: DEFAULT_ROLES.iter().map(|r| r.to_string()).collect(),
            trigger_topics: integrations::DEFAULT_TRIGGER_TOPICS.iter().map(|t| t.to_string()).collect(),
        }
    }
}

/// What `genesys-emulator --seed FILE` loads: groups and users that exist at start.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub groups: Vec<SeedGroup>,
    #[serde(default)]
    pub users: Vec<ScimUser>,
    /// Names of the organisation's security roles; absent: `DEFAULT_ROLES`.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

/// A group that exists when the emulator starts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedGroup {
    pub id: String,
    pub display_name: String,
}

/// A snapshot of what the emulator has seen (also `GET /emulator/stats`, in camelCase).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// `POST /oauth/token` calls, refused ones included.
    pub token_requests: u64,
    /// Requests per `"METHOD /route/{template}"`, e.g. `"POST /api/v2/scim/v2/users"` (control routes excepted).
    pub requests_by_route: BTreeMap<String, u64>,
    /// 429 answers sent.
    pub rate_limited: u64,
    /// Injected 5xx answers sent (server error rate and `fail_next_writes` with a 5xx status).
    pub server_errors: u64,
}

/// One request body the API received (`Emulator::received`).
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// `POST`, `PUT`, `PATCH`.
    pub method: String,
    /// Path and query, e.g. `/api/v2/scim/v2/groups/<id>`.
    pub path: String,
    /// The body as sent: its JSON, or a string when it is not JSON.
    pub body: serde_json::Value,
    /// The `If-Match` header, when one was sent.
    pub if_match: Option<String>,
}

#[derive(Default)]
struct Counters {
    token_requests: AtomicU64,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    routes: Mutex<BTreeMap<String, u64>>,
}

/// What the server task and the `Emulator` handle share.
struct Shared {
    client_id: String,
    client_secret: String,
    token_ttl: Duration,
    store: Mutex<Store>,
    faults: Faults,
    counters: Counters,
    /// (id, name) of each security role, in the order given.
    roles: Vec<(String, String)>,
    received: Mutex<Vec<Received>>,
    /// The path and query of every list request (`GET` of a collection), in order.
    list_queries: Mutex<Vec<String>>,
    /// Integrations and triggers (`integrations`).
    registrations: Mutex<integrations::Registrations>,
    trigger_topics: Vec<String>,
}

impl Shared {
    /// The state; never held across an `.await`.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, method: &axum::http::Method, uri: &axum::http::Uri, headers: &axum::http::HeaderMap, body: &[u8]) {
        let body = serde_json::from_slice(body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
        let path = uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
        let if_match = headers.get(axum::http::header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::to_string);
        let received = Received { method: method.to_string(), path, body, if_match };
        self.received.lock().unwrap_or_else(|e| e.into_inner()).push(received);
    }

    fn count_route(&self, route: String) {
        *self.counters.routes.lock().unwrap_or_else(|e| e.into_inner()).entry(route).or_insert(0) += 1;
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            token_requests: c.token_requests.load(Ordering::Relaxed),
            requests_by_route: c.routes.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running emulator. Dropping it stops the server too; `stop` also waits for it.
pub struct Emulator {
    addr: SocketAddr,
    base_url: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Binds `addr` (port 0 picks a free one) and serves in a spawned task.
    pub async fn start(addr: SocketAddr, config: EmulatorConfig) -> std::io::Result<Emulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let host = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let base_url = format!("http://{}", SocketAddr::new(host, addr.port()));
        let shared = Arc::new(Shared {
            client_id: config.client_id,
            client_secret: config.client_secret,
            token_ttl: config.token_ttl,
            store: Mutex::new(Store::new(base_url.clone(), &config.groups)),
            faults: Faults::new(config.rate_limit_per_minute),
            counters: Counters::default(),
            roles: config.roles.into_iter().map(|name| (uuid::Uuid::new_v4().to_string(), name)).collect(),
            received: Mutex::new(Vec::new()),
            list_queries: Mutex::new(Vec::new()),
            registrations: Mutex::new(integrations::Registrations::default()),
            trigger_topics: config.trigger_topics,
        });
        let stop = CancellationToken::new();
        let router = server::router(shared.clone());
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(signal).await {
                tracing::warn!(error = %e, "Genesys emulator stopped with an error");
            }
        });
        tracing::info!(%addr, "Genesys emulator listening");
        Ok(Emulator { addr, base_url, shared, stop, task: Some(task) })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: both the API host and the login host.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Live fault controls.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Every user, active or not, in creation order, as `GET` would show it.
    pub fn users(&self) -> Vec<ScimUser> {
        self.shared.store().users()
    }

    pub fn group(&self, id: &str) -> Option<ScimGroup> {
        self.shared.store().group(id)
    }

    /// Seeds a pre-existing user without validation (no uniqueness check either). Keeps `user.id` when set,
    /// else assigns one; sets meta (version `"1"`, or the next version when the id exists) and the `other` email.
    pub fn insert_user(&self, user: ScimUser) -> ScimUser {
        self.shared.store().insert_user(user)
    }

    /// Changes a user as someone would inside Genesys (the admin UI, another integration): the
    /// edit is applied without validation and the user's version moves on. None when there is no
    /// such user.
    pub fn edit_user(&self, id: &str, edit: impl FnOnce(&mut ScimUser)) -> Option<ScimUser> {
        self.shared.store().edit_user(id, edit)
    }

    /// Deletes a user as someone would inside Genesys; whether there was one.
    pub fn remove_user(&self, id: &str) -> bool {
        self.shared.store().delete_user(id, None).is_ok()
    }

    /// The path and query of every list request received (e.g.
    /// `/api/v2/scim/v2/users?startIndex=1&count=25&attributes=...`), in order.
    pub fn list_queries(&self) -> Vec<String> {
        self.shared.list_queries.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every access token issued so far (to check that none appears in a log).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.store().tokens.issued()
    }

    /// Invalidates every issued token: the next API call with one of them gets a 401.
    pub fn revoke_tokens(&self) {
        self.shared.store().tokens.revoke_all();
    }

    /// Simulates a concurrent change: the group's version moves on, its members stay.
    pub fn bump_group_version(&self, id: &str) {
        self.shared.store().bump_group_version(id);
    }

    /// Every user create body received (`POST /api/v2/scim/v2/users`), as sent, refused ones included
    /// (requests answered by an injected fault never reach this far).
    pub fn created_bodies(&self) -> Vec<serde_json::Value> {
        self.shared.store().created_bodies()
    }

    /// Every PATCH body received for this user that parsed as a PatchOp, in order (refused ones included;
    /// requests answered by an injected fault never reach this far).
    pub fn patches(&self, user_id: &str) -> Vec<PatchOp> {
        self.shared.store().patches(user_id)
    }

    /// Every request body the SCIM API received (user create, replace and PATCH, group PATCH and
    /// replace), in order, as sent: what a client really put on the wire. Requests refused before
    /// the handler (auth, rate limit, an injected fault) are not in it.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The enabled EventBridge integrations' configs and the enabled triggers, as Genesys holds them.
    pub fn enabled_registrations(&self) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        self.shared.registrations.lock().unwrap_or_else(|e| e.into_inner()).enabled()
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
