//! HTTP connections: the accept loop, and the limits that keep what clients
//! can hold bounded in number and in time.
//!
//! What a client can rely on, and what it cannot do:
//! - **A cap on open connections** (`--http-max-connections`). Past it, a
//!   new connection gets a one-line `503 Service Unavailable` with
//!   `Retry-After` and a JSON error saying so, and is closed; the refusal
//!   is counted (`ringtail_http_connections_refused_total`) and reported
//!   in the self log, throttled. Accepting never waits on a client: the
//!   refusal is written by a task of its own, with a short deadline.
//! - **A header deadline** (`--http-header-timeout`): once a client has
//!   sent the first byte of a request, the whole request head must arrive
//!   within it, or the connection is closed (a client trickling headers,
//!   "slowloris", holds a connection at most this long).
//! - **An idle deadline** (`--http-idle-timeout`): a connection with no
//!   request in progress (a fresh one, or keep-alive between requests) is
//!   closed after this long. Between requests hyper enforces it (its
//!   header-read timer runs from the moment it waits for a request head);
//!   before the first byte of a fresh connection hyper-util is still
//!   finding out the protocol, with no timer, so the connection's task
//!   closes a connection that has sent nothing by then.
//! - **Live streams are not idle.** While a response is being sent (an SSE
//!   or `curl -N` follow, an export), neither deadline runs, however long
//!   the client stays silent; a WebSocket (Loki's live tail) leaves both
//!   behind once upgraded.
//! - **Costs while idle:** one timer in tokio's wheel and no CPU; memory is
//!   hyper's connection state and the socket buffers.
//! - **Small SSE events are not delayed** by Nagle's algorithm
//!   (`TCP_NODELAY`).
//! - **Shutdown** stops accepting, lets requests in progress finish (follow
//!   streams end on the same signal) and closes idle connections.
//!
//! The listen backlog is the system's largest (`net.core.somaxconn`): the
//! daemon binds the socket itself (see [`crate::listener`]), so a burst of
//! connects is queued rather than made to retry SYNs.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::selflog::{SelfLog, Throttle};

/// Default of `--http-max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default of `--http-header-timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `--http-idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a refused client gets to take its 503 before it is dropped.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(1);

/// The limits on connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// What the accept loop counts (exposed by `/metrics` and
/// `/api/v1/stats`).
#[derive(Debug, Default)]
pub struct ConnMetrics {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Connections accepted over the server's life.
    pub accepted: AtomicU64,
    /// Connections refused because the cap was reached.
    pub refused: AtomicU64,
    /// Connections closed because a request head did not arrive in time.
    pub header_timeouts: AtomicU64,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, under
/// `limits` (see the module docs).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ConnLimits,
    metrics: Arc<ConnMetrics>,
    selflog: Option<SelfLog>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    let refusals = Arc::new(Throttle::default());
    let accept_errors = Throttle::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if let (Some(log), Some(r)) = (&selflog, accept_errors.note(1)) {
                    log.error(format!(
                        "HTTP: cannot accept a connection{}: {e}; if the process is out of file \
                         descriptors, raise its limit (ulimit -n) or lower \
                         --http-max-connections",
                        r.times()
                    ));
                }
                // Out of fds (or a similar resource): give the system a
                // moment instead of spinning on a listener that stays ready.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.refused.fetch_add(1, Ordering::Relaxed);
            if let (Some(log), Some(r)) = (&selflog, refusals.note(1)) {
                log.warn(format!(
                    "HTTP: refused {} connection(s) since the last report: all {} connection \
                     slots are in use (--http-max-connections)",
                    r.events, limits.max_connections
                ));
            }
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        metrics.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::default());
        let io = TokioIo::new(Watched {
            inner: stream,
            state: state.clone(),
        });
        let service = ConnService {
            app: app.clone(),
            state: state.clone(),
        };
        let service = hyper_util::service::TowerToHyperService::new(service);
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        let metrics = metrics.clone();
        let header_timeout = limits.header_timeout;
        metrics.open.fetch_add(1, Ordering::Relaxed);
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                () = head_watchdog(&state, header_timeout) => {
                    metrics.header_timeouts.fetch_add(1, Ordering::Relaxed);
                }
                () = silence_watchdog(&state, idle_timeout) => {}
            }
            metrics.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    // Requests in progress finish; follow streams end on the same
    // shutdown signal, idle connections close at once.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}

/// Writes the refusal of a connection past the cap, then closes it.
async fn refuse(mut stream: TcpStream, max: usize) {
    let body = format!(
        "{{\"error\":\"all {max} connection slots are in use (--http-max-connections); retry \
         in a moment\"}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_DEADLINE, async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// What a connection's IO, its service and its watchdog share.
#[derive(Debug, Default)]
struct ConnState {
    /// Requests whose response has not been sent completely.
    in_flight: AtomicUsize,
    /// When the first byte of the request head being received arrived,
    /// in ns since `EPOCH` (0: no head in progress).
    head_started: AtomicU64,
    /// The client has sent at least one byte.
    heard: AtomicBool,
    /// The connection was upgraded (WebSocket): no deadlines apply.
    upgraded: AtomicBool,
    /// Woken when a head starts.
    head: Notify,
}

/// A monotonic origin for `head_started` (0 means none).
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn now_ns() -> u64 {
    (EPOCH.elapsed().as_nanos() as u64).max(1)
}

/// Ends once a request head has been arriving for longer than `timeout`;
/// never while no head is in progress.
async fn head_watchdog(state: &ConnState, timeout: Duration) {
    loop {
        let notified = state.head.notified();
        let started = state.head_started.load(Ordering::Acquire);
        if started == 0 || state.upgraded.load(Ordering::Relaxed) {
            notified.await;
            continue;
        }
        let deadline = *EPOCH + Duration::from_nanos(started) + timeout;
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => {
                if state.head_started.load(Ordering::Acquire) == started
                    && !state.upgraded.load(Ordering::Relaxed)
                {
                    return;
                }
            }
            _ = notified => {}
        }
    }
}

/// Ends if the client sends nothing at all within `timeout` of the
/// connect; never once it has sent a byte (hyper's timers take over).
async fn silence_watchdog(state: &ConnState, timeout: Duration) {
    tokio::time::sleep(timeout).await;
    if state.heard.load(Ordering::Acquire) {
        std::future::pending::<()>().await;
    }
}

/// The connection's socket, noting when a request head starts arriving.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let s = &self.state;
            s.heard.store(true, Ordering::Release);
            if s.in_flight.load(Ordering::Acquire) == 0
                && s.head_started.load(Ordering::Relaxed) == 0
            {
                s.head_started.store(now_ns(), Ordering::Release);
                s.head.notify_one();
            }
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The app as one connection's service: a request in progress stops the
/// header deadline and counts until its response body is done.
#[derive(Clone)]
struct ConnService {
    app: Router,
    state: Arc<ConnState>,
}

impl tower::Service<Request<hyper::body::Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let state = self.state.clone();
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.head_started.store(0, Ordering::Release);
        let guard = InFlight(state);
        let mut app = self.app.clone();
        Box::pin(async move {
            let req = req.map(Body::new);
            let resp = tower::Service::call(&mut app, req).await?;
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                guard.0.upgraded.store(true, Ordering::Relaxed);
            }
            Ok(resp.map(|body| {
                Body::new(Tracked {
                    inner: body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// Counts a request as in flight until dropped (with its response body).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted while it is sent.
struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
