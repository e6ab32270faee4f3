//! The HTTP accept loop, with the limits that keep slow, idle or too many connections from taking
//! the service down. `axum::serve` has neither timeouts nor a connection cap, so the router runs on
//! hyper's HTTP/1 connection directly:
//!
//! - at most `max_connections` connections are served at once. Over the cap the loop stops
//!   accepting: new connections wait in the kernel's backlog, costing no descriptor here, and are
//!   served in order as slots free (answering them 503 would need a descriptor each, the very thing
//!   that runs out, and the sender would retry anyway);
//! - a request head must arrive within `header_timeout`, counted from accept or, on a kept-alive
//!   connection, from its first byte; else the connection is closed;
//! - a request body must arrive within `body_timeout` from the end of its head (`TimedBody`); the
//!   endpoint answers 408;
//! - a kept-alive connection with no request for `idle_timeout` is closed, and so is one where a
//!   write waits `body_timeout` for room because the client does not read its answers;
//! - when accept fails (out of descriptors: EMFILE, ENFILE) the loop pauses 100 ms per failure
//!   instead of spinning, logs once per burst and counts each failure in the metrics.
//!
//! One slot (semaphore permit) per connection, not per request; keep-alive is untouched.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ServerLimits;
use crate::metrics::{CloseReason, Metrics};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long the loop waits after a failed accept before trying again.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `stop` is cancelled; then stops accepting and returns once
/// every open connection has finished its request in flight (idle ones are closed at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let slots_total = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(slots_total));
    let limits = Arc::new(limits);
    let service = TowerToHyperService::new(router);
    // Failed accepts since the last successful one: the first is logged, the rest only counted.
    let mut failed_in_a_row: u64 = 0;
    'accepting: loop {
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = loop {
            let accepted = tokio::select! {
                biased;
                _ = stop.cancelled() => break 'accepting,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok(accepted) => break accepted,
                // The peer gave up before we accepted: nothing wrong here.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    metrics.connections.accept_errors.inc();
                    if failed_in_a_row == 0 {
                        tracing::warn!(
                            "cannot accept connections: {e}; retrying every {} ms until it works \
                             (raise the open-files limit or lower server.max_connections)",
                            ACCEPT_PAUSE.as_millis()
                        );
                    }
                    failed_in_a_row += 1;
                    // The connection stays in the backlog and accept would fail again at once: pause.
                    tokio::select! {
                        _ = stop.cancelled() => break 'accepting,
                        _ = tokio::time::sleep(ACCEPT_PAUSE) => {}
                    }
                }
            }
        };
        if failed_in_a_row > 0 {
            tracing::info!(failed = failed_in_a_row, "accepting connections again");
            failed_in_a_row = 0;
        }
        let connection = Connection {
            stream,
            peer,
            service: service.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(async move {
            connection.run().await;
            drop(permit);
        });
    }
    // New connections are refused from here on.
    drop(listener);
    // Each connection holds its slot until it closes: all slots back means all requests answered.
    let _ = slots.acquire_many(slots_total as u32).await;
}

/// Errors of one connection that leave the listener fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
}

/// Where a connection is in its request cycle, and since when. Written by the connection's own task
/// only (its reads, its service call, its response body), read by its watchdog in the same task.
struct Clock {
    opened: Instant,
    phase: AtomicU8,
    /// Milliseconds from `opened` to the start of the phase.
    since_ms: AtomicU64,
    /// Milliseconds from `opened` to when a write to the client started waiting for room, or
    /// `NOT_BLOCKED`: a client that does not take its answers stalls our writes.
    write_blocked_ms: AtomicU64,
}

const NOT_BLOCKED: u64 = u64::MAX;

/// Accepted; no byte of the first request yet (the header timeout runs from accept).
const FRESH: u8 = 0;
/// Part of a request head received.
const HEAD: u8 = 1;
/// Head complete: the endpoint runs and its answer is written (the request body's timeout is
/// `TimedBody`'s, a stalled write's is the watchdog's).
const HANDLING: u8 = 2;
/// Kept alive between requests.
const IDLE: u8 = 3;

impl Clock {
    fn new() -> Self {
        Clock {
            opened: Instant::now(),
            phase: AtomicU8::new(FRESH),
            since_ms: AtomicU64::new(0),
            write_blocked_ms: AtomicU64::new(NOT_BLOCKED),
        }
    }

    fn enter(&self, phase: u8) -> Instant {
        let now = Instant::now();
        self.since_ms.store(now.duration_since(self.opened).as_millis() as u64, Relaxed);
        self.phase.store(phase, Relaxed);
        now
    }

    fn millis(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// A write to the client finished (`blocked` false) or found no room (true).
    fn on_write(&self, blocked: bool) {
        let since = self.write_blocked_ms.load(Relaxed);
        match (blocked, since == NOT_BLOCKED) {
            (true, true) => {
                self.write_blocked_ms.store(Instant::now().duration_since(self.opened).as_millis() as u64, Relaxed)
            }
            (false, false) => self.write_blocked_ms.store(NOT_BLOCKED, Relaxed),
            _ => {}
        }
    }

    fn phase(&self) -> u8 {
        self.phase.load(Relaxed)
    }

    /// Bytes arrived: the start of a request head when the connection was idle.
    fn on_read(&self) {
        match self.phase() {
            IDLE => {
                self.enter(HEAD);
            }
            // The first request's head is timed from accept: a first byte does not restart the clock.
            FRESH => self.phase.store(HEAD, Relaxed),
            _ => {}
        }
    }
}

/// Closes a connection whose current phase outlasts its limit. Polled after the connection in the
/// same task, so it always measures the phase the connection is in now (every phase change
/// happens while the connection is polled).
struct Watchdog {
    clock: Arc<Clock>,
    limits: Arc<ServerLimits>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Watchdog {
    fn new(clock: Arc<Clock>, limits: Arc<ServerLimits>) -> Self {
        let first = clock.opened + limits.header_timeout;
        Watchdog { clock, limits, timer: Box::pin(tokio::time::sleep_until(first)) }
    }
}

impl Future for Watchdog {
    /// Why the connection is closed.
    type Output = CloseReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let clock = &self.clock;
        let limits = &self.limits;
        let since = clock.millis(clock.since_ms.load(Relaxed));
        let phase_deadline = match clock.phase() {
            FRESH | HEAD => Some((since + limits.header_timeout, CloseReason::HeaderTimeout)),
            IDLE => Some((since + limits.idle_timeout, CloseReason::IdleTimeout)),
            // An endpoint at work is not the sender's doing.
            _ => None,
        };
        let write_deadline = match clock.write_blocked_ms.load(Relaxed) {
            NOT_BLOCKED => None,
            blocked => Some((clock.millis(blocked) + limits.body_timeout, CloseReason::ResponseTimeout)),
        };
        // Nothing to time: the phase and the writes only change while the connection is polled,
        // and this is polled right after it.
        let Some((deadline, reason)) = [phase_deadline, write_deadline].into_iter().flatten().min() else {
            return Poll::Pending;
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        ready!(self.timer.as_mut().poll(cx));
        Poll::Ready(reason)
    }
}

/// One accepted connection and what it needs.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    service: TowerToHyperService<Router>,
    limits: Arc<ServerLimits>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Connection {
    async fn run(self) {
        let Connection { stream, peer, service, limits, metrics, stop } = self;
        let clock = Arc::new(Clock::new());
        metrics.connections.open.inc();
        let io = TokioIo::new(WatchedStream { stream, clock: clock.clone() });
        let service =
            ConnectionService { router: service, clock: clock.clone(), body_timeout: limits.body_timeout, peer };
        let mut http = hyper::server::conn::http1::Builder::new();
        // The timeouts are the watchdog's (below): hyper's header timeout would also cut idle
        // keep-alive connections at the header timeout.
        http.header_read_timeout(None);
        let connection = http.serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        let mut watchdog = Watchdog::new(clock.clone(), limits.clone());
        let mut shutting_down = false;
        loop {
            tokio::select! {
                // The watchdog last: it then sees the phase the connection has just moved to.
                biased;
                _ = connection.as_mut() => break,
                _ = stop.cancelled(), if !shutting_down => {
                    // Nothing in flight: close now. Otherwise the request finishes, then the connection closes.
                    if matches!(clock.phase(), FRESH | IDLE) {
                        break;
                    }
                    connection.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
                reason = &mut watchdog => {
                    metrics.connections.closed(reason);
                    tracing::debug!(reason = reason.as_str(), "closing a connection");
                    break;
                }
            }
        }
        metrics.connections.open.dec();
    }
}

/// The TCP stream, telling the clock when request bytes arrive.
struct WatchedStream {
    stream: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.stream).poll_read(cx, buf));
        if buf.filled().len() > before {
            self.clock.on_read();
        }
        Poll::Ready(result)
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.clock.on_write(written.is_pending());
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.clock.on_write(written.is_pending());
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The router, with the request body timed and the response watched.
#[derive(Clone)]
struct ConnectionService {
    router: TowerToHyperService<Router>,
    clock: Arc<Clock>,
    body_timeout: Duration,
    /// The peer's address, for handlers (`ConnectInfo`), as `into_make_service_with_connect_info` gives it.
    peer: SocketAddr,
}

impl Service<Request<Incoming>> for ConnectionService {
    type Response = Response<WatchedBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: Request<Incoming>) -> ResponseFuture {
        let now = self.clock.enter(HANDLING);
        let limit = self.body_timeout;
        let mut request = request.map(|inner| TimedBody { inner, deadline: now + limit, limit, timer: None });
        request.extensions_mut().insert(ConnectInfo(self.peer));
        ResponseFuture { inner: self.router.call(request), clock: self.clock.clone() }
    }
}

struct ResponseFuture {
    inner: TowerToHyperServiceFuture<Router, Request<TimedBody>>,
    clock: Arc<Clock>,
}

impl Future for ResponseFuture {
    type Output = Result<Response<WatchedBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(Pin::new(&mut self.inner).poll(cx));
        let clock = self.clock.clone();
        Poll::Ready(response.map(|r| r.map(|inner| WatchedBody { inner, clock })))
    }
}

/// A response body: the clock goes to IDLE once it has been written (or dropped).
struct WatchedBody {
    inner: Body,
    clock: Arc<Clock>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.clock.enter(IDLE);
    }
}

/// A request body that fails with `BodyTimeout` when it has not ended by `deadline`. The timer is
/// only made when the body is not all there yet, so a body that came with its head costs none.
pub struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The request body did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("Request body did not arrive within {} s", .limit.as_secs())]
pub struct BodyTimeout {
    pub limit: Duration,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout { limit: this.limit }))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
