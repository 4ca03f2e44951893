//! The HTTP API: filtered queries, follow over SSE or plain lines, sources,
//! stats, Prometheus metrics and ingest, on one axum app.
//!
//! # What a client can rely on
//!
//! - **Routes.** [`ROUTES`] lists every route this module serves; the app is
//!   built from that list and `api/openapi.yaml` describes exactly those
//!   (a test compares the two both ways).
//! - **Loopback by default.** The daemon listens on [`DEFAULT_ADDR`]
//!   (127.0.0.1:7464, "RING" on a phone keypad; 7070 was avoided because
//!   AnyDesk and RealServer use it). A non-loopback address is refused
//!   unless a bearer token is configured or `--http-insecure` is given
//!   ([`check_exposure`]).
//! - **Auth.** With a token ([`HttpConfig::token`]) every route requires
//!   `Authorization: Bearer TOKEN`, compared in constant time, otherwise
//!   401; except the health checks (`/healthz`, `/ready`) and the
//!   dashboard's page and assets (`/`, `/dashboard/...`), which hold no
//!   log data. No CORS headers are sent, so browsers only let pages from
//!   this same origin read the answers.
//! - **Limits.** Documents of `GET /api/v1/entries` hold at most
//!   [`HttpConfig::max_limit`] entries (a larger `limit` is capped; page on
//!   with `next`); at most [`HttpConfig::max_followers`] follow streams at
//!   once (then 503); request bodies of at most [`HttpConfig::max_body`]
//!   bytes (then 413); non-streaming requests end after
//!   [`HttpConfig::timeout`] (then 408); regexes are capped by the filter
//!   ([`crate::filter::REGEX_SIZE_LIMIT`]).
//! - **Bounded memory per client.** NDJSON exports go through a channel of
//!   [`STREAM_CHUNKS`] chunks of about [`CHUNK`] bytes (rendering the next
//!   chunk while the connection writes the last); follows render inside
//!   their body (`produced_body`), one chunk at a time, on the
//!   connection's task. Each reader reads the ring through its own cursor, so
//!   a slow client falls behind in the ring (and is told so with a gap)
//!   instead of growing a buffer.
//! - **gzip** for answers over 1 KiB when the client accepts it, except
//!   live streams (follow), which are sent as they come.
//!
//! # Merging more routes
//!
//! [`app`] builds the whole application: this module's routes, then the
//! Loki API and the dashboard ([`merged_routers`], the one place to add a
//! line for another router), merged in before the shared layers, so that
//! every route gets the same auth, limits, timeout, gzip and 404 answer. A
//! router to merge must carry its state already (`Router<()>`) and must not
//! set a fallback.

pub mod conn;
mod entries;
mod follow;
mod hub;
mod ingest;
pub mod params;
mod sources;
mod stats;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, MethodRouter};
use axum::Router;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::TimeoutLayer;

use crate::ring::Ring;
use crate::selflog::SelfLog;
use crate::serve::{dashboard, loki};
use crate::sources::budget::{self, Budget};
use crate::sources::Pipeline;

pub use stats::Metrics;

/// Where the daemon serves HTTP when `--http` is not given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7464";
/// Default and cap of `limit` for documents (`--http-max-limit`).
pub const DEFAULT_LIMIT: u64 = 100;
pub const DEFAULT_MAX_LIMIT: u64 = 10_000;
/// Default cap of concurrent follow streams (`--http-max-followers`).
pub const DEFAULT_MAX_FOLLOWERS: usize = 1024;
/// Default cap of a request body (`--http-max-body`).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// Default time a non-streaming request may take (`--http-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an idle SSE stream sends a keep-alive comment.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A streamed answer is sent in chunks of about this many bytes...
pub const CHUNK: usize = 256 * 1024;
/// ...with at most this many chunks waiting for the client.
pub const STREAM_CHUNKS: usize = 2;
/// At most this many entries per ring read.
const MAX_BATCH: usize = 4096;

/// A bearer token. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Checks a token's text: printable ASCII without spaces (what fits in
    /// an `Authorization` header), not empty. Surrounding whitespace (the
    /// newline at the end of a token file) is dropped.
    pub fn new(text: &str) -> Result<Token, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err(
                "the HTTP token is empty; put a random string in it, e.g. the output of \
                        `openssl rand -hex 32`"
                    .into(),
            );
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the HTTP token has spaces, control or non-ASCII characters; use printable \
                        ASCII only, e.g. the output of `openssl rand -hex 32`"
                    .into(),
            );
        }
        Ok(Token(t.to_string()))
    }

    /// Whether an `Authorization` header value carries this token
    /// (`Bearer TOKEN`, scheme case-insensitive). Constant time in the
    /// token's bytes.
    fn accepts(&self, header: &[u8]) -> bool {
        let Some((scheme, given)) = header.split_at_checked(7) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let given = given.trim_ascii();
        subtle::ConstantTimeEq::ct_eq(given, self.0.as_bytes()).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// How the HTTP API behaves. `HttpConfig::default()` is the daemon's
/// default.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Required bearer token, if any.
    pub token: Option<Token>,
    /// `limit` of documents when none is given.
    pub default_limit: u64,
    /// The most entries one document holds.
    pub max_limit: u64,
    /// The most follow streams at once.
    pub max_followers: usize,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// How long a non-streaming request may take.
    pub timeout: Duration,
    /// Keep-alive interval of idle SSE streams.
    pub keep_alive: Duration,
    /// Limits of the Loki API (`--loki-max-push`).
    pub loki: loki::LokiLimits,
    /// Most request bytes held at once while ingest requests are decoded
    /// and stored (`--http-max-inflight`, see [`Budget`]).
    pub max_inflight: usize,
    /// Connection cap and deadlines (see [`conn`]).
    pub connections: conn::ConnLimits,
    /// The daemon's sinks (forwarders), reported by `/metrics` and
    /// `/api/v1/stats`.
    pub sinks: crate::sinks::Registry,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            token: None,
            default_limit: DEFAULT_LIMIT,
            max_limit: DEFAULT_MAX_LIMIT,
            max_followers: DEFAULT_MAX_FOLLOWERS,
            max_body: DEFAULT_MAX_BODY,
            timeout: DEFAULT_TIMEOUT,
            keep_alive: DEFAULT_KEEP_ALIVE,
            loki: loki::LokiLimits::default(),
            max_inflight: budget::DEFAULT_BYTES,
            connections: conn::ConnLimits::default(),
            sinks: crate::sinks::Registry::default(),
        }
    }
}

/// Where and how the daemon serves HTTP (`--http` and its companions).
#[derive(Clone, Debug)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    /// The address was given with `--http` (a failure to bind is then
    /// fatal; on the default address it is a warning).
    pub explicit: bool,
    pub config: HttpConfig,
}

/// Refuses to expose the API beyond loopback without a token, unless the
/// operator insists.
pub fn check_exposure(addr: &SocketAddr, has_token: bool, insecure: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || has_token || insecure {
        return Ok(());
    }
    Err(format!(
        "--http {addr} would serve every log on this host to the network without authentication; \
         give --http-token FILE (or RINGTAIL_HTTP_TOKEN), or --http-insecure if a firewall or \
         proxy protects it, or listen on 127.0.0.1"
    ))
}

/// What every handler shares.
pub struct HttpState {
    ring: Arc<Ring>,
    selflog: SelfLog,
    /// Ingest stores through the pipeline...
    pipeline: Pipeline,
    /// ...within the budget of bytes in flight.
    budget: Arc<Budget>,
    config: HttpConfig,
    shutdown: CancellationToken,
    metrics: Metrics,
    followers: Arc<Semaphore>,
    hub: Arc<hub::Hub>,
    sources: sources::Cache,
}

impl HttpState {
    pub fn new(
        pipeline: Pipeline,
        config: HttpConfig,
        shutdown: CancellationToken,
    ) -> Arc<HttpState> {
        let ring = pipeline.ring().clone();
        let selflog = pipeline.selflog().clone();
        Arc::new(HttpState {
            budget: Budget::new(config.max_inflight, budget::DEFAULT_WAIT),
            pipeline,
            followers: Arc::new(Semaphore::new(config.max_followers)),
            metrics: Metrics::new(ROUTES.len()),
            sources: sources::Cache::default(),
            hub: hub::Hub::new(ring.clone(), shutdown.clone()),
            ring,
            selflog,
            config,
            shutdown,
        })
    }

    /// The budget of ingest bytes in flight.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Follow streams open now.
    pub fn followers(&self) -> usize {
        self.config.max_followers - self.followers.available_permits()
    }
}

/// Which handler a route runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Entries,
    Ingest,
    Follow,
    Sources,
    Stats,
    Metrics,
    Healthz,
}

/// One route: method, path (axum syntax), handler.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub endpoint: Endpoint,
}

/// Every route of this module. The app is built from this list, and
/// `api/openapi.yaml` must describe exactly these.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/api/v1/entries",
        endpoint: Endpoint::Entries,
    },
    Route {
        method: "POST",
        path: "/api/v1/entries",
        endpoint: Endpoint::Ingest,
    },
    Route {
        method: "GET",
        path: "/api/v1/follow",
        endpoint: Endpoint::Follow,
    },
    Route {
        method: "GET",
        path: "/api/v1/sources",
        endpoint: Endpoint::Sources,
    },
    Route {
        method: "GET",
        path: "/api/v1/stats",
        endpoint: Endpoint::Stats,
    },
    Route {
        method: "GET",
        path: "/metrics",
        endpoint: Endpoint::Metrics,
    },
    Route {
        method: "GET",
        path: "/healthz",
        endpoint: Endpoint::Healthz,
    },
];

fn method_router(route: &Route) -> MethodRouter<Arc<HttpState>> {
    let r = match route.endpoint {
        Endpoint::Entries => routing::get(entries::get),
        // Bodies sent with `Content-Encoding: gzip` are inflated before the
        // handler reads them, so the size cap applies to what is stored.
        Endpoint::Ingest => routing::post(ingest::post).layer(RequestDecompressionLayer::new()),
        Endpoint::Follow => routing::get(follow::get),
        Endpoint::Sources => routing::get(sources::get),
        Endpoint::Stats => routing::get(stats::get_stats),
        Endpoint::Metrics => routing::get(stats::get_metrics),
        Endpoint::Healthz => routing::get(stats::healthz),
    };
    debug_assert_eq!(
        route.method,
        match route.endpoint {
            Endpoint::Ingest => "POST",
            _ => "GET",
        }
    );
    r
}

/// This module's routes, with their state.
pub fn api_router(state: Arc<HttpState>) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        router = router.route(route.path, method_router(route));
    }
    router.with_state(state)
}

/// The whole HTTP application the daemon serves: this module's routes, the
/// Loki API ([`crate::serve::loki`]) and the dashboard
/// ([`crate::serve::dashboard`]) on one port, under the layers they all
/// share. Further routers are merged here, one line each.
pub fn app(
    pipeline: Pipeline,
    config: HttpConfig,
    shutdown: CancellationToken,
) -> (Router, Arc<HttpState>) {
    let state = HttpState::new(pipeline.clone(), config, shutdown);
    let routers = merged_routers(pipeline, state.config.loki, state.budget.clone());
    (app_with(state.clone(), routers), state)
}

/// The routers served beside this module's: the Loki API and the
/// dashboard. Add a line here to serve another.
pub fn merged_routers(
    pipeline: Pipeline,
    loki: loki::LokiLimits,
    budget: Arc<Budget>,
) -> Vec<Router> {
    vec![loki::router(pipeline, loki, budget), dashboard::router()]
}

/// [`app`] with the state built by the caller (to read its metrics) and
/// the routers to merge given explicitly.
pub fn app_with(state: Arc<HttpState>, routers: impl IntoIterator<Item = Router>) -> Router {
    let mut router = api_router(state.clone());
    for other in routers {
        router = router.merge(other);
    }
    let timeout = state.config.timeout;
    router
        .fallback(not_found)
        .layer(CompressionLayer::new().compress_when(compress_predicate()))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(middleware::from_fn_with_state(state, authorize))
        // Outermost: covers auth and the handler up to the response head;
        // a streamed body is not cut by it.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
}

/// gzip answers over 1 KiB, but never live streams, SSE, images or gRPC.
fn compress_predicate() -> impl Predicate {
    SizeAbove::new(1024)
        .and(NotForContentType::SSE)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::GRPC)
        .and(|_, _, _: &HeaderMap, ext: &axum::http::Extensions| ext.get::<Live>().is_none())
}

/// Marks a response that is a live stream: sent as it comes, never
/// compressed (a compressor would hold lines back until its buffer fills).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Live;

/// Routes that answer without a token: health checks, and the dashboard's
/// page and assets (they hold no log data; the page asks for the token and
/// sends it with every API call).
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/ready" | "/") || path.starts_with("/dashboard/")
}

async fn authorize(State(state): State<Arc<HttpState>>, req: Request, next: Next) -> Response {
    let Some(token) = &state.config.token else {
        return next.run(req).await;
    };
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|h| token.accepts(h.as_bytes()));
    if ok {
        return next.run(req).await;
    }
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this ringtail requires a bearer token: send `Authorization: Bearer TOKEN` with the token \
         the daemon was given (--http-token FILE or RINGTAIL_HTTP_TOKEN)",
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"ringtail\""),
    );
    r
}

async fn count_requests(State(state): State<Arc<HttpState>>, req: Request, next: Next) -> Response {
    let index = req.extensions().get::<MatchedPath>().and_then(|p| {
        ROUTES
            .iter()
            .position(|r| r.path == p.as_str() && r.method == req.method().as_str())
    });
    state.metrics.count_request(index);
    next.run(req).await
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}; the API is described at api/openapi.yaml: /api/v1/entries, \
             /api/v1/follow, /api/v1/sources, /api/v1/stats, /metrics, /healthz; the Loki API \
             is under /loki/api/v1/, the dashboard at /",
            uri.path()
        ),
    )
}

/// An error answer: the status and `{"error":"..."}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    retry_after: Option<u32>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Adds `Retry-After: secs`.
    pub(crate) fn retry_after(mut self, secs: u32) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    pub(crate) fn bad_request(message: impl ToString) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&serde_json::json!({ "error": self.message }))
            .expect("a JSON object of one string serialises");
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// A JSON answer from bytes already rendered.
pub(crate) fn json_bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The sending half of a streamed body; an `Err` aborts the response (the
/// client sees a broken transfer, not a clean end).
pub(crate) type Chunks = tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>;

/// A body fed by a bounded channel of [`STREAM_CHUNKS`] chunks.
pub(crate) fn streamed_body() -> (Chunks, Body) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS);
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (tx, Body::from_stream(stream))
}

/// What a stream cut off by shutdown ends with: an error, so that the
/// client does not take the answer for complete.
pub(crate) fn shutting_down() -> io::Error {
    io::Error::other("ringtail is shutting down")
}

/// Where a producer running inside its own body ([`produced_body`]) puts
/// the next chunk; an `Err` aborts the response.
pub(crate) struct Yielder {
    slot: Arc<std::sync::Mutex<Option<Result<Bytes, io::Error>>>>,
}

impl Yielder {
    /// Hands `chunk` to the body and returns once the connection asks for
    /// the next one, so at most one chunk waits for the client.
    pub(crate) async fn send(&self, chunk: Result<Bytes, io::Error>) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(chunk);
        // Pending once: `produced_body` sees the chunk and returns it; the
        // connection polls again when it wants more, and then this is done.
        let mut yielded = false;
        std::future::poll_fn(|_| {
            if std::mem::replace(&mut yielded, true) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// A body whose chunks come from `produce`, which runs inside the body: on
/// the connection's own task, polled when the connection wants data. A
/// stream that delivers a few lines at a time (a follower) then costs one
/// task wake-up per delivery instead of two plus a channel hand-off, and
/// when the client goes away the connection drops the body and with it the
/// producer. The producer must await something that registers the waker
/// (a timer, a `Notify`) whenever it has nothing to send.
pub(crate) fn produced_body<F, Fut>(produce: F) -> Body
where
    F: FnOnce(Yielder) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slot = Arc::new(std::sync::Mutex::new(None));
    let mut producer = Some(Box::pin(produce(Yielder { slot: slot.clone() })));
    let take = move || slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let stream = futures_util::stream::poll_fn(move |cx| {
        if let Some(chunk) = take() {
            return std::task::Poll::Ready(Some(chunk));
        }
        let Some(running) = producer.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        let done = running.as_mut().poll(cx).is_ready();
        if done {
            producer = None;
        }
        match take() {
            Some(chunk) => std::task::Poll::Ready(Some(chunk)),
            None if done => std::task::Poll::Ready(None),
            None => std::task::Poll::Pending,
        }
    });
    Body::from_stream(stream)
}

/// Entries per ring read: about [`CHUNK`] bytes of messages, judged from
/// the ring's average room per line.
pub(crate) fn batch_size(ring: &Ring) -> usize {
    let g = ring.geometry();
    let avg = (g.data_words * 8 / g.slots.max(1)).max(16) as usize;
    (CHUNK / avg).clamp(256, MAX_BATCH)
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets
/// requests in flight finish (follow streams end at shutdown).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancellationToken,
    state: &HttpState,
) -> io::Result<()> {
    conn::serve(
        listener,
        app,
        shutdown,
        state.config.connections,
        state.metrics.connections.clone(),
        Some(state.selflog.clone()),
    )
    .await
}

/// A server running on the current runtime (tests, benches, embedding).
pub struct Running {
    /// The address it listens on (the real port when bound to port 0).
    pub addr: SocketAddr,
    pub state: Arc<HttpState>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<io::Result<()>>,
}

/// Binds `addr` (port 0 picks a free port) and serves the whole
/// application on it, as the daemon does.
pub async fn start(
    addr: SocketAddr,
    pipeline: Pipeline,
    config: HttpConfig,
) -> io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let state = HttpState::new(pipeline.clone(), config, shutdown.clone());
    let routers = merged_routers(pipeline, state.config.loki, state.budget.clone());
    let app = app_with(state.clone(), routers);
    let task = {
        let (state, shutdown) = (state.clone(), shutdown.clone());
        tokio::spawn(async move { serve(listener, app, shutdown, &state).await })
    };
    Ok(Running {
        addr,
        state,
        shutdown,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = Token::new(" s3cret-token\n").unwrap();
        assert!(t.accepts(b"Bearer s3cret-token"));
        assert!(t.accepts(b"bearer s3cret-token "));
        assert!(!t.accepts(b"Bearer s3cret-tokeN"));
        assert!(!t.accepts(b"Bearer s3cret-token2"));
        assert!(!t.accepts(b"Basic s3cret-token"));
        assert!(!t.accepts(b"Bearer"));
        assert!(!t.accepts(b""));
        assert!(Token::new("  \n").is_err());
        assert!(Token::new("a b").is_err());
        assert_eq!(format!("{t:?}"), "Token(..)");
    }

    #[test]
    fn exposure() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(check_exposure(&a("127.0.0.1:1"), false, false).is_ok());
        assert!(check_exposure(&a("[::1]:1"), false, false).is_ok());
        let e = check_exposure(&a("0.0.0.0:1"), false, false).unwrap_err();
        assert!(
            e.contains("--http-token") && e.contains("--http-insecure"),
            "{e}"
        );
        assert!(check_exposure(&a("0.0.0.0:1"), true, false).is_ok());
        assert!(check_exposure(&a("0.0.0.0:1"), false, true).is_ok());
    }

    #[test]
    fn routes_are_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    (a.method, a.path) != (b.method, b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
        }
    }
}
