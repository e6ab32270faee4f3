//! The `genesys-emulator` program, run as other people's tests would run it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_genesys-emulator");

/// A running `genesys-emulator`, killed when the test ends, passed or failed.
struct Program {
    child: Child,
    base: String,
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Program {
    /// `genesys-emulator --addr 127.0.0.1:PORT --client-id me --client-secret s3cret` and `extra`.
    async fn start(extra: &[&str]) -> Program {
        Self::start_in(Path::new(env!("CARGO_MANIFEST_DIR")), extra).await
    }

    /// The same, run in the folder `dir`.
    async fn start_in(dir: &Path, extra: &[&str]) -> Program {
        let port = free_port();
        let child = Command::new(BIN)
            .current_dir(dir)
            .args(["--addr", &format!("127.0.0.1:{port}"), "--client-id", "me", "--client-secret", "s3cret"])
            .args(extra)
            .env_remove("PROVISIONER_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("genesys-emulator starts");
        let base = format!("http://127.0.0.1:{port}");
        let program = Program { child, base };
        let client = reqwest::Client::new();
        let up = eventually(Duration::from_secs(30), || async {
            client.get(format!("{}/emulator/stats", program.base)).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        assert!(up.is_some(), "genesys-emulator did not come up");
        program
    }

    /// A GET on its SCIM API, with a token from its token endpoint for the client it was given.
    async fn scim_get(&self, path: &str) -> Value {
        let client = reqwest::Client::new();
        let token: Value = client
            .post(format!("{}/oauth/token", self.base))
            .basic_auth("me", Some("s3cret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().expect("the given client credentials are the emulator's");
        let answer = client.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap();
        answer.json().await.unwrap()
    }
}

#[tokio::test]
async fn the_program_starts_from_a_seed_file() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"groups": [{"id": "11111111-2222-3333-4444-555555555555", "displayName": "Night shift"}],
            "users": [{"userName": "ops@example.com", "displayName": "Ops", "active": true,
                       "emails": [{"value": "ops@example.com", "type": "work", "primary": true}]}],
            "roles": ["employee", "Night Admin"]}"#,
    )
    .unwrap();
    let program = Program::start(&["--seed", seed.to_str().unwrap()]).await;
    let users = program.scim_get("/api/v2/scim/v2/users?filter=userName%20eq%20%22ops%40example.com%22").await;
    assert_eq!(users["totalResults"], 1, "{users}");
    let group = program.scim_get("/api/v2/scim/v2/groups/11111111-2222-3333-4444-555555555555").await;
    assert_eq!(group["displayName"], "Night shift");
    let roles = program.scim_get("/api/v2/authorization/roles?name=night%20admin").await;
    assert_eq!(roles["total"], 1, "{roles}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"groupz": []}"#).unwrap();
    let out = Command::new(BIN).args(["--addr", "127.0.0.1:0", "--seed", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a valid seed"), "{stderr}");
}

#[tokio::test]
async fn the_program_starts_with_the_groups_it_is_given() {
    let program = Program::start(&[
        "--group",
        "a1b2c3d4-5678-90ab-cdef-1234567890ab=Engineering",
        "--group",
        "c3d4e5f6-7890-12cd-efab-34567890abcd",
        "--group",
        "d4e5f6a7-8901-23de-fabc-4567890abcde=",
    ])
    .await;
    let group = program.scim_get("/api/v2/scim/v2/groups/a1b2c3d4-5678-90ab-cdef-1234567890ab").await;
    assert_eq!(group["displayName"], "Engineering", "{group}");
    let bare = program.scim_get("/api/v2/scim/v2/groups/c3d4e5f6-7890-12cd-efab-34567890abcd").await;
    assert_eq!(bare["displayName"], "c3d4e5f6-7890-12cd-efab-34567890abcd", "{bare}");
    let unnamed = program.scim_get("/api/v2/scim/v2/groups/d4e5f6a7-8901-23de-fabc-4567890abcde").await;
    assert_eq!(unnamed["displayName"], "d4e5f6a7-8901-23de-fabc-4567890abcde", "never an empty name: {unnamed}");

    let out = Command::new(BIN).args(["--addr", "127.0.0.1:0", "--group", "not-a-uuid=X"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("group id \"not-a-uuid\" is not a UUID"), "{stderr}");
}
