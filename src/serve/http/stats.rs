//! Counters and latency histograms of the HTTP API, and the three routes
//! that show them: `GET /api/v1/stats` (JSON), `GET /metrics` (Prometheus
//! text format, the same numbers) and `GET /healthz`.
//!
//! Latencies are recorded in microseconds in hdrhistograms (3 significant
//! figures, up to one hour):
//! - **ingest to visible**: from an entry's receive time (the ring's clock)
//!   to the moment a follow stream hands the chunk holding it to the HTTP
//!   connection. One sample per entry delivered.
//! - **query**: the time `GET /api/v1/entries` takes to build a document.
//!
//! Recording must stay cheap with a thousand followers, so samples go to
//! one of [`SHARDS`] histograms (each behind its own mutex, taken once per
//! chunk, not per entry); a read merges them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::{HttpState, ROUTES};
use crate::timefmt;

/// Independent histograms per metric (a power of two).
pub const SHARDS: usize = 16;
/// Largest latency recorded, in microseconds (one hour); larger ones are
/// clamped to it.
const MAX_US: u64 = 3_600_000_000;

/// A latency distribution in microseconds, recorded from many tasks.
pub struct Latency {
    shards: Box<[Mutex<Histogram<u64>>]>,
    next: AtomicU64,
}

impl Latency {
    fn new() -> Latency {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(
                    Histogram::new_with_bounds(1, MAX_US, 3)
                        .expect("1us..1h with 3 significant figures is a valid histogram"),
                )
            })
            .collect();
        Latency {
            shards,
            next: AtomicU64::new(0),
        }
    }

    /// A shard for one recorder (a follow stream keeps its own).
    pub fn shard(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) as usize % SHARDS
    }

    /// Records every sample in `us` into shard `shard`.
    pub fn record(&self, shard: usize, us: impl IntoIterator<Item = u64>) {
        let mut h = self.shards[shard % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for v in us {
            h.saturating_record(v.clamp(1, MAX_US));
        }
    }

    /// All shards merged.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds");
        for s in self.shards.iter() {
            let h = s.lock().unwrap_or_else(|e| e.into_inner());
            all.add(&*h).expect("same bounds");
        }
        all
    }
}

/// Percentiles of one histogram, for the JSON answer.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: if h.is_empty() { 0.0 } else { h.mean() },
        }
    }
}

/// The HTTP API's counters. Everything is cumulative since start, except
/// what says "now".
pub struct Metrics {
    /// Requests per entry of [`ROUTES`], then one for any other route.
    requests: Box<[AtomicU64]>,
    /// Follow requests turned away with 503 (all follower slots taken).
    pub followers_refused: AtomicU64,
    /// Gap records sent to HTTP readers, and the entries they counted.
    pub gap_events: AtomicU64,
    pub gap_entries: AtomicU64,
    /// Entries appended through `POST /api/v1/entries`.
    pub ingested_entries: AtomicU64,
    /// Ingest requests refused (400, 413, 415).
    pub ingest_rejected: AtomicU64,
    /// Streamed exports (`GET /api/v1/entries` as lines) running now.
    pub exports: AtomicU64,
    /// Entry receive time to hand-off by a follow stream.
    pub delivery: Latency,
    /// Time to build an entries document.
    pub query: Latency,
    /// Gaps not yet reported to the self log, and when the last report was.
    gap_report: Mutex<GapReport>,
    /// What the accept loop counts.
    pub connections: Arc<super::conn::ConnMetrics>,
}

#[derive(Default)]
struct GapReport {
    last: Option<Instant>,
    events: u64,
    missed: u64,
}

/// At most one self-log entry about gaps per this interval.
const GAP_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Metrics {
    pub fn new(routes: usize) -> Metrics {
        Metrics {
            requests: (0..=routes).map(|_| AtomicU64::new(0)).collect(),
            followers_refused: AtomicU64::new(0),
            connections: Arc::default(),
            gap_events: AtomicU64::new(0),
            gap_entries: AtomicU64::new(0),
            ingested_entries: AtomicU64::new(0),
            ingest_rejected: AtomicU64::new(0),
            exports: AtomicU64::new(0),
            delivery: Latency::new(),
            query: Latency::new(),
            gap_report: Mutex::new(GapReport::default()),
        }
    }

    pub(crate) fn count_request(&self, route: Option<usize>) {
        let i = route.unwrap_or(self.requests.len() - 1);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests served per route of [`ROUTES`] (same order), then others.
    pub fn requests(&self) -> Vec<u64> {
        self.requests
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Counts gaps sent to a reader; returns `(events, missed)` to put in
    /// the self log when a report is due. Call it when the reader is caught
    /// up or done: a self-log entry is itself appended to the ring, and must
    /// not evict what a lapped reader is about to read.
    pub(crate) fn note_gaps(&self, events: u64, missed: u64) -> Option<(u64, u64)> {
        if events == 0 {
            return None;
        }
        self.gap_events.fetch_add(events, Ordering::Relaxed);
        self.gap_entries.fetch_add(missed, Ordering::Relaxed);
        let mut r = self.gap_report.lock().unwrap_or_else(|e| e.into_inner());
        r.events += events;
        r.missed += missed;
        let now = Instant::now();
        if r.last
            .is_some_and(|t| now.duration_since(t) < GAP_REPORT_INTERVAL)
        {
            return None;
        }
        r.last = Some(now);
        let due = (r.events, r.missed);
        r.events = 0;
        r.missed = 0;
        Some(due)
    }
}

/// Puts gaps an HTTP reader was sent in the self log (throttled).
pub(crate) fn report_gaps(state: &HttpState, events: u64, missed: u64) {
    if let Some((events, missed)) = state.metrics.note_gaps(events, missed) {
        let more = if events > 1 {
            format!(" (in {events} gaps since the last report)")
        } else {
            String::new()
        };
        state.selflog.warn(format!(
            "HTTP readers missed {missed} lines{more}: they read slower than the ring evicted; \
             they were told with gap records"
        ));
    }
}

#[derive(Serialize)]
struct RingPart {
    capacity_lines: u64,
    capacity_bytes: u64,
    max_entry_len: usize,
    max_origins: u64,
    entries: u64,
    bytes: u64,
    oldest_seq: u64,
    next_seq: u64,
    appended_total: u64,
    /// Of `appended_total`: ringtail's own entries (source `ringtail`)
    /// since the daemon started.
    self_log_total: u64,
    evicted_total: u64,
    origins: u64,
}

#[derive(Serialize)]
struct RouteCount {
    method: &'static str,
    path: &'static str,
    requests: u64,
}

#[derive(Serialize)]
struct HttpPart {
    followers: usize,
    max_followers: usize,
    followers_refused_total: u64,
    exports: u64,
    gap_events_total: u64,
    gap_entries_total: u64,
    ingested_entries_total: u64,
    ingest_rejected_total: u64,
    connections: usize,
    max_connections: usize,
    connections_accepted_total: u64,
    connections_refused_total: u64,
    header_timeouts_total: u64,
    inflight_bytes: u64,
    max_inflight_bytes: u64,
    inflight_refused_total: u64,
    requests: Vec<RouteCount>,
    other_requests: u64,
}

#[derive(Serialize)]
struct LatencyPart {
    ingest_to_visible_us: Percentiles,
    query_us: Percentiles,
}

/// `--follower-pacing`: how long fd sources paused for query-socket
/// followers.
#[derive(Serialize)]
struct PacingPart {
    percent: u8,
    /// Wall time at least one source waited (what the percentage bounds).
    paused_seconds_total: f64,
    /// Waiting summed over sources.
    waited_seconds_total: f64,
}

/// One sink (forwarder, echo) as the stats report it.
#[derive(Serialize)]
struct SinkPart {
    name: String,
    kind: String,
    target: String,
    /// `idle`, `sending`, `backing_off`, `failed`, `stopped`.
    state: &'static str,
    /// Why the last delivery failed, while backing off or failed.
    last_error: Option<String>,
    /// While backing off: seconds until the next attempt.
    retry_in_seconds: Option<f64>,
    delivered_entries_total: u64,
    delivered_bytes_total: u64,
    batches_total: u64,
    retries_total: u64,
    evicted_total: u64,
    eviction_episodes_total: u64,
    rejected_total: u64,
    rejected_by_reason: std::collections::BTreeMap<String, u64>,
    next_seq: u64,
    lag_entries: u64,
    lag_seconds: f64,
}

#[derive(Serialize)]
struct StatsAnswer {
    time: String,
    ring: RingPart,
    http: HttpPart,
    pacing: PacingPart,
    latency: LatencyPart,
    sinks: Vec<SinkPart>,
}

fn sink_parts(state: &HttpState) -> Vec<SinkPart> {
    state
        .config
        .sinks
        .all()
        .into_iter()
        .map(|sink| {
            let st = &sink.stats;
            let (lag_entries, lag_seconds) = st.lag(&state.ring);
            let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
            SinkPart {
                name: sink.name,
                kind: sink.kind,
                target: sink.target,
                state: st.state().as_str(),
                last_error: st.last_error(),
                retry_in_seconds: st.retry_in().map(|d| d.as_secs_f64()),
                delivered_entries_total: n(&st.delivered),
                delivered_bytes_total: n(&st.bytes),
                batches_total: n(&st.batches),
                retries_total: n(&st.retries),
                evicted_total: n(&st.evicted),
                eviction_episodes_total: n(&st.eviction_episodes),
                rejected_total: n(&st.rejected),
                rejected_by_reason: st.rejected_reasons().into_iter().collect(),
                next_seq: n(&st.next_seq),
                lag_entries,
                lag_seconds,
            }
        })
        .collect()
}

fn collect(state: &HttpState) -> (StatsAnswer, Histogram<u64>, Histogram<u64>) {
    let ring = &state.ring;
    let s = ring.stats();
    let g = ring.geometry();
    let m = &state.metrics;
    let requests = m.requests();
    let delivery = m.delivery.merged();
    let query = m.query.merged();
    let answer = StatsAnswer {
        time: timefmt::rfc3339_nanos(timefmt::now_ns()),
        ring: RingPart {
            capacity_lines: s.geometry_lines,
            capacity_bytes: s.geometry_bytes,
            max_entry_len: ring.max_entry_len(),
            max_origins: g.origin_slots,
            entries: s.retained,
            bytes: s.retained_bytes,
            oldest_seq: s.oldest_seq,
            next_seq: s.next_seq,
            appended_total: s.appended_total,
            self_log_total: state.selflog.appended(),
            evicted_total: s.evicted_total,
            origins: s.origins,
        },
        http: HttpPart {
            followers: state.followers(),
            max_followers: state.config.max_followers,
            followers_refused_total: m.followers_refused.load(Ordering::Relaxed),
            exports: m.exports.load(Ordering::Relaxed),
            gap_events_total: m.gap_events.load(Ordering::Relaxed),
            gap_entries_total: m.gap_entries.load(Ordering::Relaxed),
            ingested_entries_total: m.ingested_entries.load(Ordering::Relaxed),
            ingest_rejected_total: m.ingest_rejected.load(Ordering::Relaxed),
            connections: m.connections.open.load(Ordering::Relaxed),
            max_connections: state.config.connections.max_connections,
            connections_accepted_total: m.connections.accepted.load(Ordering::Relaxed),
            connections_refused_total: m.connections.refused.load(Ordering::Relaxed),
            header_timeouts_total: m.connections.header_timeouts.load(Ordering::Relaxed),
            inflight_bytes: u64::from(state.budget().in_use_kib()) * 1024,
            max_inflight_bytes: u64::from(state.budget().total_kib()) * 1024,
            inflight_refused_total: state.budget().refused(),
            requests: ROUTES
                .iter()
                .zip(&requests)
                .map(|(r, &n)| RouteCount {
                    method: r.method,
                    path: r.path,
                    requests: n,
                })
                .collect(),
            other_requests: requests.last().copied().unwrap_or(0),
        },
        pacing: {
            let pacer = state.pipeline.pacer();
            PacingPart {
                percent: pacer.percent(),
                paused_seconds_total: pacer.paused().as_secs_f64(),
                waited_seconds_total: pacer.waited().as_secs_f64(),
            }
        },
        latency: LatencyPart {
            ingest_to_visible_us: Percentiles::of(&delivery),
            query_us: Percentiles::of(&query),
        },
        sinks: sink_parts(state),
    };
    (answer, delivery, query)
}

/// `GET /api/v1/stats`.
pub(super) async fn get_stats(State(state): State<Arc<HttpState>>) -> Response {
    let (answer, _, _) = collect(&state);
    super::json_bytes(serde_json::to_vec(&answer).expect("stats serialise"))
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4.
pub(super) async fn get_metrics(State(state): State<Arc<HttpState>>) -> Response {
    let (a, delivery, query) = collect(&state);
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let r = &a.ring;
    metric(
        "ringtail_ring_capacity_lines",
        "gauge",
        "Entries the ring holds at most (--max-lines).",
        r.capacity_lines.to_string(),
    );
    metric(
        "ringtail_ring_capacity_bytes",
        "gauge",
        "Message bytes the ring holds at most (--max-bytes).",
        r.capacity_bytes.to_string(),
    );
    metric(
        "ringtail_ring_entries",
        "gauge",
        "Entries retained now.",
        r.entries.to_string(),
    );
    metric(
        "ringtail_ring_bytes",
        "gauge",
        "Message bytes retained now (padded to 8 bytes each).",
        r.bytes.to_string(),
    );
    metric(
        "ringtail_ring_oldest_seq",
        "gauge",
        "Seq of the oldest retained entry.",
        r.oldest_seq.to_string(),
    );
    metric(
        "ringtail_ring_next_seq",
        "gauge",
        "Seq the next entry will get.",
        r.next_seq.to_string(),
    );
    metric(
        "ringtail_ring_origins",
        "gauge",
        "Distinct origins (source and labels) interned now.",
        r.origins.to_string(),
    );
    metric(
        "ringtail_appended_entries_total",
        "counter",
        "Entries appended over the ring's life.",
        r.appended_total.to_string(),
    );
    metric(
        "ringtail_self_log_entries_total",
        "counter",
        "Entries ringtail appended itself (source ringtail) since it started.",
        r.self_log_total.to_string(),
    );
    metric(
        "ringtail_evicted_entries_total",
        "counter",
        "Entries evicted over the ring's life.",
        r.evicted_total.to_string(),
    );
    let h = &a.http;
    metric(
        "ringtail_http_followers",
        "gauge",
        "Follow streams open now.",
        h.followers.to_string(),
    );
    metric(
        "ringtail_http_max_followers",
        "gauge",
        "Follow streams allowed at once (--http-max-followers).",
        h.max_followers.to_string(),
    );
    metric(
        "ringtail_http_followers_refused_total",
        "counter",
        "Follow requests refused with 503 because every slot was taken.",
        h.followers_refused_total.to_string(),
    );
    metric(
        "ringtail_http_exports",
        "gauge",
        "Streamed exports running now.",
        h.exports.to_string(),
    );
    metric(
        "ringtail_http_gap_events_total",
        "counter",
        "Gap records sent to HTTP readers.",
        h.gap_events_total.to_string(),
    );
    metric(
        "ringtail_http_gap_entries_total",
        "counter",
        "Entries HTTP readers were told they missed.",
        h.gap_entries_total.to_string(),
    );
    metric(
        "ringtail_http_ingested_entries_total",
        "counter",
        "Entries appended through POST /api/v1/entries.",
        h.ingested_entries_total.to_string(),
    );
    metric(
        "ringtail_http_ingest_rejected_total",
        "counter",
        "Ingest requests refused (400, 413, 415).",
        h.ingest_rejected_total.to_string(),
    );
    metric(
        "ringtail_http_connections",
        "gauge",
        "HTTP connections open now.",
        h.connections.to_string(),
    );
    metric(
        "ringtail_http_max_connections",
        "gauge",
        "HTTP connections allowed at once (--http-max-connections).",
        h.max_connections.to_string(),
    );
    metric(
        "ringtail_http_connections_accepted_total",
        "counter",
        "HTTP connections accepted.",
        h.connections_accepted_total.to_string(),
    );
    metric(
        "ringtail_http_connections_refused_total",
        "counter",
        "HTTP connections refused with 503 because every slot was taken.",
        h.connections_refused_total.to_string(),
    );
    metric(
        "ringtail_http_header_timeouts_total",
        "counter",
        "HTTP connections closed because a request head did not arrive in time (--http-header-timeout).",
        h.header_timeouts_total.to_string(),
    );
    metric(
        "ringtail_http_inflight_bytes",
        "gauge",
        "Request bytes held now by ingest requests being decoded and stored.",
        h.inflight_bytes.to_string(),
    );
    metric(
        "ringtail_http_max_inflight_bytes",
        "gauge",
        "Request bytes ingest requests may hold at once (--http-max-inflight).",
        h.max_inflight_bytes.to_string(),
    );
    metric(
        "ringtail_http_inflight_refused_total",
        "counter",
        "Ingest requests refused (429 or 413) because the in-flight budget was spent or too small.",
        h.inflight_refused_total.to_string(),
    );
    metric(
        "ringtail_follower_pacing_paused_seconds_total",
        "counter",
        "Wall time fd sources paused reading for lagging query-socket followers (--follower-pacing bounds its share).",
        a.pacing.paused_seconds_total.to_string(),
    );
    metric(
        "ringtail_follower_pacing_waited_seconds_total",
        "counter",
        "Time fd sources waited for lagging query-socket followers, summed over sources.",
        a.pacing.waited_seconds_total.to_string(),
    );
    let _ = writeln!(
        out,
        "# HELP ringtail_http_requests_total HTTP requests by route.\n# TYPE ringtail_http_requests_total counter"
    );
    for rc in &h.requests {
        let _ = writeln!(
            out,
            "ringtail_http_requests_total{{method=\"{}\",route=\"{}\"}} {}",
            rc.method, rc.path, rc.requests
        );
    }
    let _ = writeln!(
        out,
        "ringtail_http_requests_total{{method=\"other\",route=\"other\"}} {}",
        h.other_requests
    );
    sink_metrics(&mut out, &a.sinks);
    summary(
        &mut out,
        "ringtail_http_ingest_to_visible_seconds",
        "From an entry's receive time to its hand-off by a follow stream.",
        &delivery,
    );
    summary(
        &mut out,
        "ringtail_http_query_seconds",
        "Time to answer GET /api/v1/entries with a document.",
        &query,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Per-sink series, labelled `sink="KIND:NAME"`.
fn sink_metrics(out: &mut String, sinks: &[SinkPart]) {
    if sinks.is_empty() {
        return;
    }
    type Get = fn(&SinkPart) -> String;
    let series: [(&str, &str, &str, Get); 9] = [
        ("ringtail_sink_delivered_entries_total", "counter", "Entries a sink delivered (forwarders: acknowledged by the destination).", |s| s.delivered_entries_total.to_string()),
        ("ringtail_sink_delivered_bytes_total", "counter", "Message bytes a sink delivered.", |s| s.delivered_bytes_total.to_string()),
        ("ringtail_sink_batches_total", "counter", "Batches a sink delivered.", |s| s.batches_total.to_string()),
        ("ringtail_sink_retries_total", "counter", "Deliveries that failed and were retried (429, 5xx, network).", |s| s.retries_total.to_string()),
        ("ringtail_sink_evicted_entries_total", "counter", "Entries the ring evicted before a sink delivered them.", |s| s.evicted_total.to_string()),
        ("ringtail_sink_eviction_episodes_total", "counter", "Runs of batches with entries evicted before delivery (each reported once in the self log).", |s| s.eviction_episodes_total.to_string()),
        ("ringtail_sink_next_seq", "gauge", "The next seq a sink delivers.", |s| s.next_seq.to_string()),
        ("ringtail_sink_lag_entries", "gauge", "Entries appended after a sink's position.", |s| s.lag_entries.to_string()),
        ("ringtail_sink_lag_seconds", "gauge", "Age of the oldest entry a sink has not delivered (0 when caught up).", |s| s.lag_seconds.to_string()),
    ];
    for (name, kind, help, get) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in sinks {
            let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", s.name, get(s));
        }
    }
    let name = "ringtail_sink_rejected_entries_total";
    let _ = writeln!(
        out,
        "# HELP {name} Entries a destination refused for good, by reason (the cursor moved past them).\n# TYPE {name} counter"
    );
    for s in sinks {
        for (reason, n) in &s.rejected_by_reason {
            let _ = writeln!(out, "{name}{{sink=\"{}\",reason=\"{reason}\"}} {n}", s.name);
        }
    }
}

/// A histogram in microseconds as a Prometheus summary in seconds.
fn summary(out: &mut String, name: &str, help: &str, h: &Histogram<u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
    for q in [0.5, 0.9, 0.99, 0.999] {
        let v = h.value_at_quantile(q) as f64 / 1e6;
        let _ = writeln!(out, "{name}{{quantile=\"{q}\"}} {v}");
    }
    let sum = if h.is_empty() {
        0.0
    } else {
        h.mean() * h.len() as f64 / 1e6
    };
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", h.len());
}

/// `GET /healthz`: 200 while the daemon serves. Never needs a token.
pub(super) async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_shards_merge() {
        let l = Latency::new();
        l.record(0, [100, 200]);
        l.record(l.shard(), [300]);
        l.record(SHARDS + 3, [0, u64::MAX]);
        let h = l.merged();
        assert_eq!(h.len(), 5);
        assert_eq!(h.min(), 1, "0 is clamped to 1us");
        assert!(h.max() >= MAX_US - MAX_US / 1000, "huge values are clamped");
    }

    #[test]
    fn gap_reports_are_throttled() {
        let m = Metrics::new(1);
        assert_eq!(m.note_gaps(0, 0), None);
        assert_eq!(m.note_gaps(1, 5), Some((1, 5)));
        assert_eq!(m.note_gaps(2, 7), None);
        m.gap_report.lock().unwrap().last = Some(Instant::now() - GAP_REPORT_INTERVAL);
        assert_eq!(m.note_gaps(1, 1), Some((3, 8)));
        assert_eq!(m.gap_events.load(Ordering::Relaxed), 4);
        assert_eq!(m.gap_entries.load(Ordering::Relaxed), 13);
    }
}
