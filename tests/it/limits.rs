//! Hostile senders at the transport level: slow headers, slow bodies, idle keep-alive connections,
//! more connections than the cap, too many open files, and a 413 that a write-then-read client reads.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// An app with short transport limits, so the tests run in seconds.
async fn app_with(server: &str) -> TestApp {
    let mut spawn = Spawn::new(Backend::Sqlite).no_workers();
    spawn.toml = TEST_TOML.replace("[server]\n", &format!("[server]\n{server}\n"));
    spawn.start().await.unwrap()
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// A client that opens a new connection for every request, so every probe goes through `accept`.
fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(3)).build().unwrap()
}

/// Reads until the peer closes (EOF or reset) or `within` passes; true when it closed.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one HTTP/1.1 response with a Content-Length from a kept-alive connection: status and body.
async fn read_response(tcp: &mut TcpStream, within: Duration) -> Option<(u16, String)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return Some((status, String::from_utf8_lossy(&got[end + 4..end + 4 + length]).to_string()));
            }
        }
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

#[tokio::test]
async fn five_hundred_slow_header_connections_are_closed_while_healthz_keeps_answering() {
    let app = app_with("header_timeout_secs = 1").await;
    let addr = addr(&app);
    let started = Instant::now();
    let mut slow = Vec::new();
    for i in 0..500 {
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        slow.push(tokio::spawn(async move {
            // A head that never ends: a byte of one more header name every 200 ms (slow loris).
            let _ = tcp.write_all(format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow-{i}").as_bytes()).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    read = tcp.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return true,
                        Ok(_) => {}
                    },
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if tcp.write_all(b"a").await.is_err() {
                            return true;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => return false,
                }
            }
        }));
    }
    // While they are held, a new connection is served every time.
    let client = fresh_connection_client();
    let mut probes = 0;
    while slow.iter().any(|h| !h.is_finished()) {
        let answer = client.get(app.url("/healthz")).send().await;
        let status = answer.as_ref().map(|r| r.status().as_u16()).map_err(|e| e.to_string());
        assert_eq!(status, Ok(200), "healthz did not answer while slow connections were held");
        probes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut closed = 0;
    for h in slow {
        closed += usize::from(h.await.unwrap());
    }
    assert_eq!(closed, 500, "every slow-header connection is closed by the service");
    assert!(probes >= 3, "healthz was probed {probes} times");
    assert!(started.elapsed() >= Duration::from_secs(1), "closed no sooner than the header timeout");
    let metrics = client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("provisioner_http_connections_closed_total{reason=\"header_timeout\"} 500"), "{metrics}");
    app.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_a_slot_frees() {
    let app = app_with("max_connections = 4\nheader_timeout_secs = 60").await;
    let addr = addr(&app);
    // Four connections that send nothing take the four slots.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // A fifth connection is not accepted: its request waits in the kernel's backlog, unanswered.
    let mut waiting = TcpStream::connect(&addr).await.unwrap();
    waiting.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut waiting, Duration::from_millis(800)).await, None, "served over the cap");
    // One slot frees: the waiting request is served.
    drop(held.pop());
    let answer = read_response(&mut waiting, Duration::from_secs(10)).await;
    assert_eq!(
        answer.map(|(s, b)| (s, serde_json::from_str::<Value>(&b).unwrap())),
        Some((200, json!({"status": "ok"})))
    );
    drop(held);
    app.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = app_with("idle_timeout_secs = 1\nheader_timeout_secs = 30").await;
    let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
    // Keep-alive works: two requests on one connection.
    for _ in 0..2 {
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let (status, _) = read_response(&mut tcp, Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(status, 200);
    }
    let idle_since = Instant::now();
    assert!(closed_within(&mut tcp, Duration::from_secs(10)).await, "idle connection still open after 10 s");
    // The idle timeout closed it, not the (30 s) header timeout.
    assert!(idle_since.elapsed() >= Duration::from_millis(900), "closed after {:?}", idle_since.elapsed());
    app.shutdown().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_within_the_body_timeout_is_408() {
    let app = app_with("body_timeout_secs = 1").await;
    let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
    let head =
        format!("POST {HR_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // One byte every 100 ms: the connection is never idle, but the body would take 100 s.
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = tcp.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    let _ = tcp.write_all(b" ").await;
                }
            }
        }
    })
    .await
    .expect("the service answered or closed within 10 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.ends_with(r#"{"error":"Request body did not arrive within 1 s"}"#), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    app.shutdown().await;
}

/// Writes `head` and the whole `body` before reading anything, as urllib or HttpURLConnection do,
/// then reads the answer to the end (the request says `connection: close`).
async fn write_all_then_read(app: &TestApp, head: String, body: &[u8]) -> Result<String, String> {
    // A small send buffer, as over a real network: the body cannot all sit in kernel buffers, so the
    // writes only finish if the service reads the body.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    let mut tcp = socket.connect(addr(app).parse().unwrap()).await.unwrap();
    tcp.write_all(head.as_bytes()).await.map_err(|e| format!("writing the head: {e}"))?;
    tcp.write_all(body).await.map_err(|e| format!("writing the body: {e}"))?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).to_string())
}

const TOO_LARGE: &str = r#"{"error":"Request body is larger than 1048576 bytes"}"#;

#[tokio::test]
async fn a_client_that_writes_the_whole_oversized_body_first_reads_the_413() {
    let app = app_with("").await;
    let body = vec![b' '; 1024 * 1024 + 100 * 1024];
    let head = format!(
        "POST {HR_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = write_all_then_read(&app, head, &body).await.expect("the whole body is taken and answered");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with(TOO_LARGE), "{answer}");

    // The same without a length: chunked.
    let mut chunked = Vec::new();
    for piece in body.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST {HR_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    let answer = write_all_then_read(&app, head, &chunked).await.expect("the whole chunked body is taken and answered");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.ends_with(TOO_LARGE), "{answer}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_past_the_drain_cap_is_answered_413_on_a_closed_connection() {
    let app = app_with("max_drain_bytes = 2097152").await;
    // Past the cap nothing is read: the sender may see a reset, but the service does not read 3 MiB.
    let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "POST {HR_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        3 * 1024 * 1024
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let answer = read_response(&mut tcp, Duration::from_secs(5)).await;
    assert_eq!(answer, Some((413, TOO_LARGE.to_string())));
    assert!(closed_within(&mut tcp, Duration::from_secs(5)).await, "the connection is closed after the 413");
    app.shutdown().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_genesys-provisioner");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The service binary with at most 64 open files (`ulimit -n` in the shell that starts it) and a
/// connection cap above that: accepting runs out of descriptors long before the cap.
#[tokio::test]
async fn the_service_backs_off_when_it_runs_out_of_file_descriptors_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let sample = sample_config_text();
    let port = free_port();
    let config_text = sample
        .replace("\nmax_connections = 512 ", "\nmax_connections = 1000 ")
        .replace("\nheader_timeout_secs = 10 ", "\nheader_timeout_secs = 1 ");
    assert_ne!(config_text, sample);
    std::fs::write(&config, config_text).unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let child = Command::new("sh")
        .args(["-c", "ulimit -n 64 && exec \"$0\" serve --config \"$1\"", BIN, config.to_str().unwrap()])
        .env("PROVISIONER_ENV_FILE", "none")
        .env("DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.path().join("jobs.db").display()))
        .env("AUDIT_DIR", dir.path().join("audit"))
        .env("HR_WEBHOOK_SECRET", SECRET)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    // Killed however the test ends.
    let child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = fresh_connection_client();
    let up = eventually(Duration::from_secs(30), || async {
        client.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    assert!(up.is_some(), "service did not come up: {}", read(&stderr_path));

    let flood_started = Instant::now();
    // 100 idle connections, held open by this side: more than the process has descriptors for.
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(format!("127.0.0.1:{port}")).await.unwrap());
    }
    let exhausted = eventually(Duration::from_secs(10), || async {
        read(&stderr_path).contains("Too many open files").then_some(())
    })
    .await;
    assert!(exhausted.is_some(), "the service never ran out of descriptors: {}", read(&stderr_path));
    // The header timeout closes the idle connections; the service recovers without anyone closing them.
    let recovered = eventually(Duration::from_secs(30), || async {
        client.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    assert!(recovered.is_some(), "healthz never answered again: {}", read(&stderr_path));
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("provisioner_http_accept_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no accept error counter in {metrics}"));
    let log = read(&stderr_path);
    let warnings = log.matches("cannot accept connections").count() as u64;
    eprintln!("{warnings} warning(s) for {errors} failed accepts");
    assert!(errors >= 1, "{metrics}");
    // Logged once per burst (a burst ends with a successful accept), not once per failed accept.
    assert!(warnings <= 5 && warnings < errors, "{warnings} warnings for {errors} errors:\n{log}");
    // No spinning: a 100 ms pause after each failure, so at most about 10 failures a second.
    let most = flood_started.elapsed().as_secs() * 10 + 10;
    assert!(errors <= most, "{errors} failed accepts in {:?}: the loop spins", flood_started.elapsed());
    assert!(log.contains("Too many open files"), "{log}");
    drop(held);
    drop(child);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn stopping_closes_idle_connections_and_lets_a_request_in_flight_finish() {
    let app = app_with("").await;
    let mut idle = TcpStream::connect(addr(&app)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut idle, Duration::from_secs(5)).await.map(|(s, _)| s), Some(200));

    // A webhook in flight: its head is in, and the endpoint is waiting for the body (the service
    // says "100 Continue" when the endpoint starts reading it).
    let body = serde_json::to_vec(&new_hire("ENG")).unwrap();
    let mut head = format!(
        "POST {HR_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n",
        body.len()
    );
    for (name, value) in signed_headers(SECRET, "msg_in_flight_at_stop", now(), &body) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut busy = TcpStream::connect(addr(&app)).await.unwrap();
    busy.write_all(head.as_bytes()).await.unwrap();
    let mut continue_line = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), busy.read_exact(&mut continue_line)).await.unwrap().unwrap();
    assert!(continue_line.starts_with(b"HTTP/1.1 100 Continue"), "{}", String::from_utf8_lossy(&continue_line));

    app.stop.cancel();
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await, "the idle connection is closed at stop");
    let refused = eventually(Duration::from_secs(5), || async { TcpStream::connect(addr(&app)).await.err() }).await;
    assert!(refused.is_some(), "new connections are refused after stop");
    busy.write_all(&body).await.unwrap();
    let (status, answer) =
        read_response(&mut busy, Duration::from_secs(5)).await.expect("the request in flight is answered");
    assert_eq!(status, 202, "{answer}");
    app.shutdown().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_its_responses_is_disconnected() {
    let app = app_with("body_timeout_secs = 1\nidle_timeout_secs = 30\nheader_timeout_secs = 30").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    let tcp = socket.connect(addr(&app).parse().unwrap()).await.unwrap();
    let (_unread, mut write) = tcp.into_split();
    // Requests pipelined without ever reading an answer: the answers pile up until the service
    // cannot write any more.
    let requests = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".repeat(1000);
    let started = Instant::now();
    let cut_off = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if write.write_all(&requests).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(cut_off.is_ok(), "still connected after 20 s");
    let metrics = reqwest::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    eprintln!("cut off after {:?}", started.elapsed());
    assert!(metrics.contains("provisioner_http_connections_closed_total{reason=\"response_timeout\"} 1"), "{metrics}");
    app.shutdown().await;
}

#[tokio::test]
async fn an_oversized_body_announced_with_expect_100_continue_is_refused_before_it_is_sent() {
    let app = app_with("").await;
    let mut tcp = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "POST {HR_PATH} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nexpect: 100-continue\r\n\r\n",
        1024 * 1024 + 1
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // No "100 Continue": the 413 comes first, and the body is never sent.
    let answer = read_response(&mut tcp, Duration::from_secs(5)).await;
    assert_eq!(answer, Some((413, TOO_LARGE.to_string())));
    app.shutdown().await;
}
