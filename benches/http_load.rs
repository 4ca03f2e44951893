//! Load tool for the HTTP API's three performance targets, against an
//! in-process server on loopback, with hdrhistogram percentiles:
//!
//! 1. **query**: `GET /api/v1/entries?source=S&contains=T` over a full ring
//!    (1M 100-byte lines from 100 sources; the substring matches 1 % of a
//!    source's lines, so the whole ring is scanned): p99 at most 20 ms.
//!    Oldest-first and newest-first, each request timed end to end.
//! 2. **follow**: 1000 SSE followers while 10k lines/s are appended:
//!    delivery latency (entry receive time to the event parsed by the
//!    client) p99 at most 5 ms, and no silent loss: every entry a follower
//!    should get is received exactly once or counted in a `gap` event.
//!    Followers each follow one source (`HTTP_LOAD_FOLLOW=source`, the
//!    default) or everything (`all`).
//! 3. **export**: `GET /api/v1/entries?format=ndjson` of the full ring,
//!    read by the client as fast as it can: at least 500 MB/s.
//!
//! Run: `cargo bench --bench http_load`. Sizes come from the environment,
//! so a quick run is e.g.
//! `HTTP_LOAD_ENTRIES=100000 HTTP_LOAD_FOLLOWERS=100 HTTP_LOAD_SECONDS=2 cargo bench --bench http_load`:
//!
//! | variable | default | meaning |
//! |----------|---------|---------|
//! | `HTTP_LOAD_SCENARIOS` | `query,follow,export` | which to run |
//! | `HTTP_LOAD_ENTRIES` | 1000000 | ring size, filled full |
//! | `HTTP_LOAD_SOURCES` | 100 | sources the lines come from |
//! | `HTTP_LOAD_QUERIES` | 200 | requests per query kind |
//! | `HTTP_LOAD_FOLLOWERS` | 1000 | SSE followers |
//! | `HTTP_LOAD_RATE` | 10000 | lines/s appended while following |
//! | `HTTP_LOAD_SECONDS` | 10 | how long lines are appended |
//! | `HTTP_LOAD_TICK_MS` | 1 | the writer appends every this many ms |
//! | `HTTP_LOAD_FOLLOW` | `source` | what each follower follows: `source` or `all` |
//! | `HTTP_LOAD_EXPORTS` | 5 | full exports |
//!
//! The server and the clients run on two separate tokio runtimes of two
//! worker threads each, on the same machine: client work is included in
//! every figure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringtail::entry::{Flags, Origin};
use ringtail::ring::{Ring, RingConfig, Span};
use ringtail::selflog::SelfLog;
use ringtail::serve::http::{self, HttpConfig, Running};
use ringtail::timefmt::now_ns;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_str(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// `p50/p90/p99/max` in ms of a histogram in microseconds.
fn ms(h: &Histogram<u64>) -> String {
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    format!(
        "n={} p50={:.3} p90={:.3} p99={:.3} max={:.3} ms",
        h.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        h.max() as f64 / 1000.0
    )
}

fn source_name(i: usize) -> String {
    format!("svc-{i:03}")
}

/// Fills the ring with `entries` lines of about 100 bytes from `sources`
/// sources, round-robin; every 100th line of a source has `status=599`.
fn fill(ring: &Ring, entries: u64, sources: usize) {
    let handles: Vec<_> = (0..sources)
        .map(|i| ring.origin(Origin::new(source_name(i))).expect("origin"))
        .collect();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut spans = Vec::new();
    let mut n = 0u64;
    while n < entries {
        for (s, h) in handles.iter().enumerate() {
            buf.clear();
            spans.clear();
            for k in 0..64u64 {
                let i = n / sources as u64 + k;
                let status = if i.is_multiple_of(100) { 599 } else { 200 };
                let start = buf.len();
                use std::io::Write as _;
                let _ = write!(
                    buf,
                    "{} GET /api/items/{i:08} status={status} bytes={:05} agent=load-tool/1.0 ok",
                    source_name(s),
                    i * 7 % 100_000
                );
                spans.push(Span::new(
                    start as u32,
                    (buf.len() - start) as u32,
                    Flags::default(),
                ));
            }
            ring.append_batch(h, &buf, &spans).expect("spans in buffer");
        }
        n += 64 * sources as u64;
    }
}

struct Bench {
    ring: Arc<Ring>,
    server: Running,
    base: String,
    client_rt: tokio::runtime::Runtime,
    _server_rt: tokio::runtime::Runtime,
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Bench {
    fn new(entries: u64, config: HttpConfig) -> Bench {
        let mut rc = RingConfig::new(entries.max(1024));
        rc.max_bytes = entries.max(1024) * 128;
        let ring = Arc::new(Ring::open(&rc).expect("ring"));
        let server_rt = runtime("server");
        let selflog = SelfLog::new(ring.clone()).expect("self log");
        let server = server_rt
            .block_on(http::start(
                "127.0.0.1:0".parse().unwrap(),
                ringtail::sources::Pipeline::new(ring.clone(), selflog, Default::default()),
                config,
            ))
            .expect("start the server");
        let base = format!("http://{}", server.addr);
        Bench {
            ring,
            server,
            base,
            client_rt: runtime("client"),
            _server_rt: server_rt,
        }
    }
}

fn query(entries: u64, sources: usize, queries: u64) {
    let b = Bench::new(entries, HttpConfig::default());
    let t = Instant::now();
    fill(&b.ring, entries, sources);
    println!(
        "query: ring of {} entries filled in {:.2} s",
        b.ring.stats().retained,
        t.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::new();
    for (label, order) in [("oldest first", "asc"), ("newest first", "desc")] {
        let mut h = histogram();
        let mut matched = 0;
        b.client_rt.block_on(async {
            for i in 0..queries + 10 {
                let url = format!(
                    "{}/api/v1/entries?source={}&contains=status%3D599&limit=100&order={order}",
                    b.base,
                    source_name(i as usize % sources)
                );
                let start = Instant::now();
                let r = client.get(&url).send().await.expect("query");
                assert_eq!(r.status(), 200);
                let body = r.bytes().await.expect("body");
                let took = start.elapsed();
                if i >= 10 {
                    h.record(took.as_micros().max(1) as u64).unwrap();
                }
                let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                matched = v["count"].as_u64().unwrap();
            }
        });
        println!(
            "query ({label}, source + substring, {matched} matches): {}",
            ms(&h)
        );
    }
    // The sources page scans the whole ring (its answer is then reused
    // for a second).
    b.client_rt.block_on(async {
        let v: serde_json::Value = client
            .get(format!("{}/api/v1/sources", b.base))
            .send()
            .await
            .expect("sources")
            .json()
            .await
            .expect("JSON");
        println!(
            "sources: {} sources, scan of the ring {:.1} ms",
            v["sources"].as_array().map_or(0, Vec::len),
            v["scan_ms"].as_f64().unwrap_or(0.0)
        );
    });
    b.server.shutdown.cancel();
}

fn export(entries: u64, sources: usize, exports: u64) {
    let b = Bench::new(entries, HttpConfig::default());
    fill(&b.ring, entries, sources);
    let client = reqwest::Client::new();
    let mut rates = Vec::new();
    b.client_rt.block_on(async {
        for _ in 0..exports {
            let start = Instant::now();
            let mut r = client
                .get(format!("{}/api/v1/entries?format=ndjson", b.base))
                .send()
                .await
                .expect("export");
            assert_eq!(r.status(), 200);
            let (mut bytes, mut lines) = (0u64, 0u64);
            while let Some(c) = r.chunk().await.expect("read") {
                bytes += c.len() as u64;
                lines += memchr::memchr_iter(b'\n', &c).count() as u64;
            }
            let secs = start.elapsed().as_secs_f64();
            let rate = bytes as f64 / secs / 1e6;
            println!(
                "export: {lines} lines, {:.1} MB in {:.3} s = {rate:.0} MB/s ({:.2} M lines/s)",
                bytes as f64 / 1e6,
                secs,
                lines as f64 / secs / 1e6
            );
            rates.push(rate);
        }
    });
    rates.sort_by(f64::total_cmp);
    println!("export: median {:.0} MB/s", rates[rates.len() / 2]);
    b.server.shutdown.cancel();
}

/// What one follower saw.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    gaps: Vec<(u64, u64)>,
}

/// A minimal SSE client over a raw TCP connection (HTTP/1.1, chunked
/// body), so that a thousand of them cost the machine as little as
/// possible: the figures are the server's, not an HTTP library's.
struct SseClient {
    stream: tokio::net::TcpStream,
    /// Bytes read and not yet decoded (chunk framing included).
    raw: Vec<u8>,
    /// Decoded body bytes not yet split into events.
    body: Vec<u8>,
    /// Bytes left in the current chunk; `None` before a size line.
    chunk_left: Option<usize>,
}

impl SseClient {
    async fn connect(url: &str) -> SseClient {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rest = url.strip_prefix("http://").expect("http URL");
        let (host, path) = rest.split_at(rest.find('/').expect("a path"));
        let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .expect("send the request");
        let mut raw = Vec::with_capacity(16 * 1024);
        let mut buf = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&raw, b"\r\n\r\n") {
                break i + 4;
            }
            let n = stream.read(&mut buf).await.expect("read the head");
            assert!(n > 0, "closed before the response head");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        raw.drain(..head_end);
        SseClient {
            stream,
            raw,
            body: Vec::with_capacity(16 * 1024),
            chunk_left: None,
        }
    }

    /// Reads once and decodes what arrived; false at the end.
    async fn read(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        // Straight into `raw`'s spare room: no zeroed buffer per read.
        self.raw.reserve(16 * 1024);
        match self.stream.read_buf(&mut self.raw).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let mut at = 0;
        loop {
            match self.chunk_left {
                None => {
                    let Some(eol) = memchr::memmem::find(&self.raw[at..], b"\r\n") else {
                        break;
                    };
                    let line = std::str::from_utf8(&self.raw[at..at + eol]).expect("size line");
                    let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
                    at += eol + 2;
                    if size == 0 {
                        return false;
                    }
                    self.chunk_left = Some(size);
                }
                Some(left) => {
                    // Data, then the CRLF that ends the chunk.
                    let avail = self.raw.len() - at;
                    if left > 0 {
                        let take = left.min(avail);
                        self.body.extend_from_slice(&self.raw[at..at + take]);
                        at += take;
                        self.chunk_left = Some(left - take);
                        if take < left {
                            break;
                        }
                    }
                    if self.raw.len() - at < 2 {
                        break;
                    }
                    at += 2;
                    self.chunk_left = None;
                }
            }
        }
        self.raw.drain(..at);
        true
    }

    /// Hands each complete event block to `f`.
    fn events(&mut self, mut f: impl FnMut(&[u8])) {
        let mut used = 0;
        while let Some(end) = memchr::memmem::find(&self.body[used..], b"\n\n") {
            f(&self.body[used..used + end]);
            used += end + 2;
        }
        self.body.drain(..used);
    }
}

/// Finds `"key":NUMBER` in a JSON text without parsing the rest.
fn number_after(data: &[u8], key: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(data, key)? + key.len();
    let digits = data[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&data[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn follow(sources: usize, followers: u64, rate: u64, seconds: u64, tick_ms: u64, mode: &str) {
    let cfg = HttpConfig {
        max_followers: followers as usize + 16,
        ..HttpConfig::default()
    };
    // A ring that holds the whole run: losses would be the server's.
    let total = rate * seconds;
    let b = Bench::new((total * 2).max(100_000), cfg);
    let latency = Arc::new(Mutex::new(histogram()));
    let stop = tokio_util::sync::CancellationToken::new();
    let connected = Arc::new(AtomicU64::new(0));
    let all = mode == "all";
    let mut tasks = Vec::new();
    for f in 0..followers {
        let url = if all {
            format!("{}/api/v1/follow", b.base)
        } else {
            format!(
                "{}/api/v1/follow?source={}",
                b.base,
                source_name(f as usize % sources)
            )
        };
        let latency = latency.clone();
        let stop = stop.clone();
        let connected = connected.clone();
        tasks.push(b.client_rt.spawn(async move {
            let mut conn = SseClient::connect(&url).await;
            connected.fetch_add(1, Ordering::Relaxed);
            let mut local = histogram();
            let mut seen = Seen::default();
            // One registration for the whole run, not a timer per read.
            let mut stopped = std::pin::pin!(stop.cancelled_owned());
            loop {
                tokio::select! {
                    more = conn.read() => if !more { break },
                    _ = &mut stopped => break,
                }
                let now = now_ns();
                conn.events(|block| {
                    if memchr::memmem::find(block, b"event: entry").is_some() {
                        let seq = number_after(block, b"\"seq\":").expect("seq");
                        let t = number_after(block, b"\"time_ns\":").expect("time_ns");
                        local.saturating_record((now.saturating_sub(t) / 1000).max(1));
                        seen.seqs.push(seq);
                    } else if memchr::memmem::find(block, b"event: gap").is_some() {
                        let first = number_after(block, b"\"first_seq\":").expect("gap");
                        let missed = number_after(block, b"\"missed\":").expect("gap");
                        seen.gaps.push((first, missed));
                    }
                });
            }
            latency.lock().unwrap().add(&local).unwrap();
            seen
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::Relaxed) < followers {
        assert!(Instant::now() < deadline, "followers did not connect");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every stream is open on the server side too.
    while b.server.state.followers() < followers as usize {
        assert!(Instant::now() < deadline, "followers did not register");
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "follow: {followers} SSE followers ({mode}), {rate} lines/s from {sources} sources for {seconds} s, appended every {tick_ms} ms"
    );

    // The writer: `rate` lines/s, appended every tick, one batch per
    // source per tick. Records which seqs each source got.
    let ring = b.ring.clone();
    let handles: Vec<_> = (0..sources)
        .map(|i| ring.origin(Origin::new(source_name(i))).expect("origin"))
        .collect();
    let mut by_source: Vec<Vec<u64>> = vec![Vec::new(); sources];
    let tick = Duration::from_millis(tick_ms.max(1));
    let per_tick = (rate * tick.as_millis() as u64 / 1000).max(1);
    let started = Instant::now();
    let mut next = started;
    let mut line = 0u64;
    let mut groups: HashMap<usize, (Vec<u8>, Vec<Span>)> = HashMap::new();
    while line < total {
        for _ in 0..per_tick.min(total - line) {
            let s = (line % sources as u64) as usize;
            let (buf, spans) = groups.entry(s).or_default();
            let start = buf.len();
            use std::io::Write as _;
            let _ = write!(
                buf,
                "{} line {line:010} of the follow load, padding to 100 bytes.....",
                source_name(s)
            );
            spans.push(Span::new(
                start as u32,
                (buf.len() - start) as u32,
                Flags::default(),
            ));
            line += 1;
        }
        for (s, (buf, spans)) in groups.iter_mut() {
            if spans.is_empty() {
                continue;
            }
            let seqs = ring.append_batch(&handles[*s], buf, spans).expect("append");
            by_source[*s].extend(seqs);
            buf.clear();
            spans.clear();
        }
        next += tick;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    let wrote = started.elapsed().as_secs_f64();
    println!(
        "follow: appended {total} lines in {wrote:.2} s ({:.0} lines/s)",
        total as f64 / wrote
    );
    // Let the followers drain, then stop them.
    std::thread::sleep(Duration::from_millis(500));
    stop.cancel();
    let seen: Vec<Seen> = b.client_rt.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("follower task"));
        }
        out
    });
    // No silent loss: each expected seq was received once, or is inside a
    // reported gap; nothing unexpected arrived.
    let (mut received, mut in_gaps, mut lost, mut dup) = (0u64, 0u64, 0u64, 0u64);
    for (f, s) in seen.iter().enumerate() {
        let expected: Vec<u64> = if all {
            let mut v: Vec<u64> = by_source.iter().flatten().copied().collect();
            v.sort_unstable();
            v
        } else {
            by_source[f % sources].clone()
        };
        let mut got = s.seqs.clone();
        got.retain(|q| expected.binary_search(q).is_ok());
        let before = got.len();
        got.dedup();
        dup += (before - got.len()) as u64;
        for q in &expected {
            if got.binary_search(q).is_ok() {
                received += 1;
            } else if s.gaps.iter().any(|&(a, m)| *q >= a && *q < a + m) {
                in_gaps += 1;
            } else {
                lost += 1;
            }
        }
    }
    let h = latency.lock().unwrap();
    println!("follow: delivery latency (client-observed): {}", ms(&h));
    let server = b.server.state.metrics().delivery.merged();
    println!(
        "follow: ingest to hand-off (server side):   {}",
        ms(&server)
    );
    println!(
        "follow: {received} deliveries, {in_gaps} reported in gaps, {lost} lost silently, {dup} duplicates"
    );
    b.server.shutdown.cancel();
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from argv.
    let _ = ringtail::sources::fdpass::raise_fd_limit();
    let scenarios = env_str("HTTP_LOAD_SCENARIOS", "query,follow,export");
    let entries = env("HTTP_LOAD_ENTRIES", 1_000_000);
    let sources = env("HTTP_LOAD_SOURCES", 100).max(1) as usize;
    for s in scenarios.split(',') {
        match s.trim() {
            "query" => query(entries, sources, env("HTTP_LOAD_QUERIES", 200)),
            "follow" => follow(
                sources,
                env("HTTP_LOAD_FOLLOWERS", 1000),
                env("HTTP_LOAD_RATE", 10_000),
                env("HTTP_LOAD_SECONDS", 10),
                env("HTTP_LOAD_TICK_MS", 1),
                &env_str("HTTP_LOAD_FOLLOW", "source"),
            ),
            "export" => export(entries, sources, env("HTTP_LOAD_EXPORTS", 5)),
            other => eprintln!("unknown scenario {other:?}: expected query, follow, export"),
        }
    }
}
