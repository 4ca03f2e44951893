//! Helpers for the HTTP API tests: an in-process server on 127.0.0.1:0
//! with its ring, a reqwest client, an SSE reader, and condition waits.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringtail::entry::{Flags, Origin};
use ringtail::ring::{Ring, RingConfig};
use ringtail::selflog::SelfLog;
use ringtail::serve::http::{self, HttpConfig, Running};

/// Every wait gives up after this.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct TestServer {
    pub ring: Arc<Ring>,
    pub selflog: SelfLog,
    pub run: Running,
    pub base: String,
    pub client: reqwest::Client,
}

impl TestServer {
    /// A server over a fresh ring of `lines` entries.
    pub async fn start(lines: u64, config: HttpConfig) -> TestServer {
        let ring = Arc::new(Ring::open(&RingConfig::new(lines)).expect("open the ring"));
        TestServer::over(ring, config).await
    }

    pub async fn over(ring: Arc<Ring>, config: HttpConfig) -> TestServer {
        TestServer::with_ingest(ring, config, Default::default()).await
    }

    /// A server whose ingest runs under `ingest` (line limits, ...).
    pub async fn with_ingest(
        ring: Arc<Ring>,
        config: HttpConfig,
        ingest: ringtail::sources::IngestConfig,
    ) -> TestServer {
        let selflog = SelfLog::new(ring.clone()).expect("self log");
        let pipeline = ringtail::sources::Pipeline::new(ring.clone(), selflog.clone(), ingest);
        let run = http::start("127.0.0.1:0".parse().unwrap(), pipeline, config)
            .await
            .expect("start the HTTP server");
        let base = format!("http://{}", run.addr);
        TestServer {
            ring,
            selflog,
            run,
            base,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    /// GET, expecting 200 and a JSON body.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }

    /// GET, expecting `status`; returns the `error` message.
    pub async fn error(&self, path: &str, status: u16) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), status, "GET {path}");
        let v: serde_json::Value = r.json().await.unwrap();
        v["error"].as_str().expect("an error message").to_string()
    }

    pub fn append(&self, origin: Origin, flags: Flags, msg: &[u8]) -> u64 {
        let h = self.ring.origin(origin).expect("intern");
        self.ring.append(&h, flags, msg)
    }

    /// Appends `n` entries `{prefix} {i}` of `source`; returns their seqs.
    pub fn append_n(&self, source: &str, prefix: &str, n: usize) -> Vec<u64> {
        let h = self.ring.origin(Origin::new(source)).expect("intern");
        (0..n)
            .map(|i| {
                self.ring
                    .append(&h, Flags::default(), format!("{prefix} {i}").as_bytes())
            })
            .collect()
    }

    pub async fn stats(&self) -> serde_json::Value {
        self.json("/api/v1/stats").await
    }

    /// Waits until `n` follow streams are open.
    pub async fn wait_followers(&self, n: u64) {
        wait_until(&format!("{n} followers"), || async {
            self.stats().await["http"]["followers"] == n
        })
        .await;
    }
}

/// Polls `cond` until it holds; panics after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `f` with [`DEADLINE`]; panics naming `what` when it takes longer.
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// Reads server-sent events from a response.
pub struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    pub fn new(resp: reqwest::Response) -> Sse {
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next block with an event or data (comment-only and id-only
    /// blocks are skipped); `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Event> {
        self.try_next().await.expect("read the stream")
    }

    /// [`next`](Self::next), with a broken transfer as an error.
    pub async fn try_next(&mut self) -> Result<Option<Event>, reqwest::Error> {
        loop {
            while let Some(end) = find(&self.buf, b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).expect("SSE is UTF-8");
                let mut ev = Event::default();
                let mut any = false;
                for line in text.lines() {
                    if line.starts_with(':') || line.is_empty() {
                        continue;
                    }
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "id" => ev.id = Some(value.to_string()),
                        "event" => {
                            ev.event = value.to_string();
                            any = true;
                        }
                        "data" => {
                            ev.data = value.to_string();
                            any = true;
                        }
                        _ => {}
                    }
                }
                if any {
                    return Ok(Some(ev));
                }
            }
            match self.resp.chunk().await? {
                Some(c) => self.buf.extend_from_slice(&c),
                None => return Ok(None),
            }
        }
    }

    /// The next event, within [`DEADLINE`].
    pub async fn expect(&mut self) -> Event {
        within("the next server-sent event", self.next())
            .await
            .expect("the stream ended early")
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
