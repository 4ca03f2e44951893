//! The Loki-compatible HTTP API, so that Grafana's Loki data source and
//! `logcli` work against ringtail unchanged.
//!
//! | route | answer |
//! |-------|--------|
//! | `GET/POST /loki/api/v1/query_range` | `streams` for a log query, `matrix` for a metric query (points on multiples of `step`) |
//! | `GET/POST /loki/api/v1/query` | `vector` (or `scalar`) at `time`; a log query is a 400 |
//! | `GET/POST /loki/api/v1/labels` | label names with entries in the range |
//! | `GET/POST /loki/api/v1/label/{name}/values` | values of one label |
//! | `GET/POST /loki/api/v1/series` | label sets selected by `match[]`/`match` |
//! | `GET/POST /loki/api/v1/index/stats` | `{"streams","chunks","entries","bytes"}` for `query` |
//! | `GET/POST /loki/api/v1/index/volume` | bytes per series of the selector over the range: a `vector` ([`index`]) |
//! | `GET/POST /loki/api/v1/index/volume_range` | the same per `step` bucket: a `matrix` |
//! | `GET /loki/api/v1/tail` | WebSocket live tail ([`tail`]) |
//! | `POST /loki/api/v1/push` | ingest, JSON or snappy protobuf ([`crate::sources::loki_push`]); 204 |
//! | `GET /ready` | `ready` |
//! | `GET /loki/api/v1/status/buildinfo` | version strings |
//! | `/loki/api/v2alpha/tail`, `detected_labels`, `detected_fields`, `detected_field/{name}/values`, `patterns` | 404, so Grafana falls back to the v1 API |
//!
//! Parameters follow Loki: times as float or integer Unix seconds, Unix
//! nanoseconds or RFC 3339; `start` defaults to an hour before `end` (six
//! for the metadata routes), `end` to now; `limit` to 100; `direction`
//! (any case) to `backward`. Errors are plain text with a 4xx/5xx status,
//! as Loki answers them. LogQL, its evaluation and its cost are in
//! [`logql`]; [`query`] turns a request into an answer.
//!
//! The router carries no authentication, compression or timeouts of its
//! own: the HTTP server that merges it onto its port applies those to
//! every route alike.

pub mod answer;
pub mod index;
pub mod logql;
pub mod params;
pub mod query;
pub mod tail;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

use crate::ring::Ring;
use crate::selflog::SelfLog;
use crate::sources::budget::{self, Budget};
use crate::sources::{loki_push as push, Pipeline};
use crate::timefmt::{now_ns, NANOS_PER_SEC};

use index::{Selection, VolumeRequest};
use params::Params;
use query::{InstantRequest, RangeRequest};

/// Bounds on what one request may cost.
#[derive(Clone, Copy, Debug)]
pub struct LokiLimits {
    /// The largest `limit` of a log query (Loki's `max_entries_limit_per_query`).
    pub max_entries: usize,
    /// The most points one series of a metric query may have.
    pub max_points: u64,
    /// The most series (label sets) a query or metadata request may produce.
    pub max_series: usize,
    /// The largest push body, compressed and decompressed, in bytes.
    pub max_push_bytes: usize,
    /// The most WebSocket tails at once.
    pub max_tails: usize,
}

impl Default for LokiLimits {
    fn default() -> LokiLimits {
        LokiLimits {
            max_entries: 5000,
            max_points: 11_000,
            max_series: 10_000,
            max_push_bytes: 32 << 20,
            max_tails: 100,
        }
    }
}

/// An error answer: a status and a plain-text message that says what was
/// wrong and, where it can, what to send instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LokiError {
    pub status: StatusCode,
    pub msg: String,
}

impl LokiError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> LokiError {
        LokiError {
            status,
            msg: msg.into(),
        }
    }

    /// A 400.
    pub fn bad(msg: impl Into<String>) -> LokiError {
        LokiError::new(StatusCode::BAD_REQUEST, msg)
    }

    /// A 500.
    pub fn internal(msg: impl Into<String>) -> LokiError {
        LokiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg)
    }
}

impl std::fmt::Display for LokiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.msg, self.status)
    }
}

impl std::error::Error for LokiError {}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.msg + "\n",
        )
            .into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        r
    }
}

impl From<crate::sources::budget::Overloaded> for LokiError {
    fn from(e: crate::sources::budget::Overloaded) -> LokiError {
        let status = match e {
            crate::sources::budget::Overloaded::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            crate::sources::budget::Overloaded::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        };
        LokiError::new(status, e.to_string())
    }
}

/// Every route of the Loki API as `(method, path)` in axum syntax, in the
/// order of the module docs: what `api/openapi.yaml` must describe (a test
/// checks that the router answers each of them).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/loki/api/v1/query_range"),
    ("POST", "/loki/api/v1/query_range"),
    ("GET", "/loki/api/v1/query"),
    ("POST", "/loki/api/v1/query"),
    ("GET", "/loki/api/v1/labels"),
    ("POST", "/loki/api/v1/labels"),
    ("GET", "/loki/api/v1/label/{name}/values"),
    ("POST", "/loki/api/v1/label/{name}/values"),
    ("GET", "/loki/api/v1/series"),
    ("POST", "/loki/api/v1/series"),
    ("GET", "/loki/api/v1/index/stats"),
    ("POST", "/loki/api/v1/index/stats"),
    ("GET", "/loki/api/v1/index/volume"),
    ("POST", "/loki/api/v1/index/volume"),
    ("GET", "/loki/api/v1/index/volume_range"),
    ("POST", "/loki/api/v1/index/volume_range"),
    ("GET", "/loki/api/v1/tail"),
    ("POST", "/loki/api/v1/push"),
    ("GET", "/ready"),
    ("GET", "/loki/api/v1/status/buildinfo"),
];

struct Inner {
    ring: Arc<Ring>,
    selflog: SelfLog,
    /// Pushes store through the ingest pipeline...
    pipeline: Pipeline,
    /// ...within the daemon's budget of bytes in flight.
    budget: Arc<Budget>,
    limits: LokiLimits,
    /// WebSocket tails open now.
    tails: AtomicUsize,
}

type Shared = Arc<Inner>;

/// The Loki API's routes (table in the module docs), ready to be merged
/// into the HTTP server's router.
pub fn router(pipeline: Pipeline, limits: LokiLimits, budget: Arc<Budget>) -> Router {
    let state = Arc::new(Inner {
        ring: pipeline.ring().clone(),
        selflog: pipeline.selflog().clone(),
        pipeline,
        budget,
        limits,
        tails: AtomicUsize::new(0),
    });
    Router::new()
        .route(
            "/loki/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/loki/api/v1/query", get(query_instant).post(query_instant))
        .route("/loki/api/v1/labels", get(labels).post(labels))
        .route(
            "/loki/api/v1/label/{name}/values",
            get(label_values).post(label_values),
        )
        .route("/loki/api/v1/series", get(series).post(series))
        .route(
            "/loki/api/v1/index/stats",
            get(index_stats).post(index_stats),
        )
        .route(
            "/loki/api/v1/index/volume",
            get(index_volume).post(index_volume),
        )
        .route(
            "/loki/api/v1/index/volume_range",
            get(index_volume_range).post(index_volume_range),
        )
        .route("/loki/api/v1/tail", get(tail_ws))
        .route(
            "/loki/api/v1/push",
            post(push_handler).layer(DefaultBodyLimit::max(limits.max_push_bytes)),
        )
        .route("/ready", get(ready))
        .route("/loki/api/v1/status/buildinfo", get(buildinfo))
        .route("/loki/api/v2alpha/tail", any(not_served))
        .route("/loki/api/v1/detected_labels", any(not_served))
        .route("/loki/api/v1/detected_fields", any(not_served))
        .route("/loki/api/v1/detected_field/{name}/values", any(not_served))
        .route("/loki/api/v1/patterns", any(not_served))
        .with_state(state)
}

/// The parameters of a request: its query string, plus a form body.
fn params(query: Option<String>, headers: &HeaderMap, body: &[u8]) -> Params {
    let mut p = Params::from_query(query.as_deref());
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        p.extend_form(body);
    }
    p
}

fn json_body(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Runs a ring scan off the async workers.
async fn blocking<T, F>(f: F) -> Result<T, LokiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, LokiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LokiError::internal(format!("the query task failed: {e}")))?
}

const HOUR: u64 = 3600 * NANOS_PER_SEC;

async fn query_range(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let p = params(q, &headers, &body);
    let (start, end) = p.range(now_ns(), HOUR)?;
    let req = RangeRequest {
        query: p.required("query")?.to_string(),
        start,
        end,
        step: p.duration("step")?,
        limit: p.limit(s.limits.max_entries)?,
        direction: p.direction()?,
    };
    let body = blocking(move || query::query_range(&s.ring, &req, &s.limits)).await?;
    Ok(json_body(body))
}

async fn query_instant(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let p = params(q, &headers, &body);
    let req = InstantRequest {
        query: p.required("query")?.to_string(),
        time: p.time("time")?.unwrap_or_else(now_ns),
        limit: p.limit(s.limits.max_entries)?,
        direction: p.direction()?,
    };
    let body = blocking(move || query::query_instant(&s.ring, &req, &s.limits)).await?;
    Ok(json_body(body))
}

/// The streams of a metadata request: `selectors` within the range.
async fn metadata(
    s: &Shared,
    p: &Params,
    selectors: Vec<String>,
) -> Result<Vec<index::StreamStat>, LokiError> {
    let (start, end) = p.range(now_ns(), 6 * HOUR)?;
    let selection = Selection::parse(selectors.iter().map(String::as_str))?;
    let s = s.clone();
    blocking(move || index::stream_stats(&s.ring, &selection, start, end, &s.limits)).await
}

fn success(data: serde_json::Value) -> Response {
    axum::Json(serde_json::json!({"status": "success", "data": data})).into_response()
}

async fn labels(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let p = params(q, &headers, &body);
    let selectors = p.get("query").map(str::to_string).into_iter().collect();
    let stats = metadata(&s, &p, selectors).await?;
    Ok(success(index::label_names(&stats).into()))
}

async fn label_values(
    State(s): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let p = params(q, &headers, &body);
    let selectors = p.get("query").map(str::to_string).into_iter().collect();
    let stats = metadata(&s, &p, selectors).await?;
    Ok(success(index::label_values(&stats, &name).into()))
}

async fn series(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let p = params(q, &headers, &body);
    // Loki takes both spellings and merges them.
    let selectors = p
        .all("match[]")
        .chain(p.all("match"))
        .map(str::to_string)
        .collect();
    let stats = metadata(&s, &p, selectors).await?;
    let data: Vec<serde_json::Value> = stats
        .iter()
        .map(|st| {
            serde_json::Value::Object(
                st.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect(),
            )
        })
        .collect();
    Ok(success(data.into()))
}

async fn index_stats(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    let p = params(q, &headers, &body);
    let selectors = vec![p.required("query")?.to_string()];
    let stats = metadata(&s, &p, selectors).await?;
    // ringtail keeps no chunks: entries live in one ring.
    Ok(axum::Json(serde_json::json!({
        "streams": stats.len(),
        "chunks": 0,
        "entries": stats.iter().map(|st| st.entries).sum::<u64>(),
        "bytes": stats.iter().map(|st| st.bytes).sum::<u64>(),
    }))
    .into_response())
}

/// `index/volume` and `index/volume_range`: Loki's parameters (`query`,
/// `start`, `end`, `limit` (100), `targetLabels`, `aggregateBy`, and
/// `step` for the range form).
async fn volume_common(s: Shared, p: Params, range: bool) -> Result<Response, LokiError> {
    let (start, end) = p.range(now_ns(), HOUR)?;
    let limit = match p.get("limit") {
        None => 100,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(0) => 100,
            Ok(n) if n > 0 => n as usize,
            _ => {
                return Err(LokiError::bad(format!(
                    "invalid parameter `limit`: {v:?}: limit must be a positive value"
                )))
            }
        },
    };
    let by_label_names = match p.get("aggregateBy") {
        None | Some("series") => false,
        Some("labels") => true,
        Some(other) => {
            return Err(LokiError::bad(format!(
                "invalid aggregation option {other:?}: expected series or labels"
            )))
        }
    };
    let step = if range {
        Some(
            p.duration("step")?
                .unwrap_or_else(|| params::default_step(start, end)),
        )
    } else {
        None
    };
    let req = VolumeRequest {
        query: p.required("query")?.to_string(),
        start,
        end,
        step,
        limit,
        target_labels: p
            .get("targetLabels")
            .map(|t| {
                t.split(',')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        by_label_names,
    };
    let body = blocking(move || index::volume(&s.ring, &req, &s.limits)).await?;
    Ok(json_body(body))
}

async fn index_volume(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    volume_common(s, params(q, &headers, &body), false).await
}

async fn index_volume_range(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, LokiError> {
    volume_common(s, params(q, &headers, &body), true).await
}

/// Counts a tail connection for as long as it lives.
struct TailSlot(Shared);

impl Drop for TailSlot {
    fn drop(&mut self) {
        self.0.tails.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn tail_ws(
    State(s): State<Shared>,
    RawQuery(q): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, LokiError> {
    let p = Params::from_query(q.as_deref());
    let query = p.required("query")?;
    let log =
        match logql::parse(query).map_err(|e| LokiError::bad(e.to_string()))? {
            logql::Expr::Log(log) => log,
            _ => return Err(LokiError::bad(
                "tail takes a log query such as {source=\"web\"} |= \"error\", not a metric query",
            )),
        };
    if let Some(d) = p.get("delay_for") {
        // Loki waits this long for late entries; ringtail's entries are
        // never late (times are receive times), so the value only needs to
        // be valid.
        match d.parse::<u32>() {
            Ok(0..=5) => {}
            _ => {
                return Err(LokiError::bad(format!(
                    "invalid parameter `delay_for`: {d:?}: expected whole seconds from 0 to 5"
                )))
            }
        }
    }
    let plan = tail::TailPlan {
        plan: logql::eval::LogPlan::new(&log, logql::pipeline::Hints::all())?,
        start: p
            .time("start")?
            .unwrap_or_else(|| now_ns().saturating_sub(HOUR)),
        limit: p.limit(s.limits.max_entries)?,
    };
    if s.tails.fetch_add(1, Ordering::Relaxed) >= s.limits.max_tails {
        s.tails.fetch_sub(1, Ordering::Relaxed);
        return Err(LokiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many live tails: {} are open, the limit; close one and retry",
                s.limits.max_tails
            ),
        ));
    }
    let slot = TailSlot(s.clone());
    Ok(ws.on_upgrade(move |socket| async move {
        let _slot = slot;
        tail::serve(socket, s.ring.clone(), s.selflog.clone(), plan).await;
    }))
}

async fn push_handler(
    State(s): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, LokiError> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (content_type, content_encoding) =
        (text(header::CONTENT_TYPE), text(header::CONTENT_ENCODING));
    let max = s.limits.max_push_bytes;
    let mut charge = budget::Charge::default();
    s.budget.take(&mut charge, budget::WORKING_BYTES).await?;
    let hint = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = match budget::collect(body, max, hint, &s.budget, &mut charge).await {
        Ok(b) => b,
        Err(budget::CollectError::TooLarge) => {
            return Err(LokiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "push body is larger than {max} bytes: send smaller batches or raise \
                     --loki-max-push"
                ),
            ))
        }
        Err(budget::CollectError::Overloaded(e)) => return Err(e.into()),
        Err(e) => return Err(LokiError::bad(e.to_string())),
    };
    blocking(move || {
        let budget = s.budget.clone();
        let prepared = push::prepare(
            content_type.as_deref(),
            content_encoding.as_deref(),
            &body,
            max,
            |len| {
                budget
                    .take_blocking(&mut charge, len)
                    .map_err(LokiError::from)
            },
        )?;
        push::ingest(&s.pipeline, &prepared).inspect_err(|e| {
            if e.status == StatusCode::TOO_MANY_REQUESTS {
                s.selflog.warn(format!("Loki push refused: {}", e.msg));
            }
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn ready() -> &'static str {
    "ready"
}

async fn buildinfo() -> Response {
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("RINGTAIL_REVISION").unwrap_or(""),
        "branch": option_env!("RINGTAIL_BRANCH").unwrap_or(""),
        "buildUser": "",
        "buildDate": option_env!("RINGTAIL_BUILD_DATE").unwrap_or(""),
        "goVersion": "",
    }))
    .into_response()
}

async fn not_served(uri: Uri) -> LokiError {
    LokiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "{} is not served by ringtail; Grafana falls back to the /loki/api/v1 routes",
            uri.path()
        ),
    )
}
