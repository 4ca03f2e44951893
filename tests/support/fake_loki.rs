//! A strict fake Loki push endpoint for tests, for what a real Loki cannot
//! be made to do on cue (answer 429 or 500 on a schedule) and to record
//! every push for exact assertions.
//!
//! Use from a test file with `#[path = "support/fake_loki.rs"] mod fake_loki;`.
//!
//! `POST /loki/api/v1/push` takes what Loki takes: protobuf `PushRequest`
//! compressed with block snappy (`Content-Type: application/x-protobuf`),
//! or JSON (`application/json`), optionally `Content-Encoding: gzip`. It is
//! strict where Loki is:
//!
//! - a body that does not decode, a numeric JSON timestamp, stream labels
//!   that do not parse, a label name outside `[a-zA-Z_][a-zA-Z0-9_]*` or
//!   more than [`FakeLoki::max_labels`] labels: 400, nothing of the stream
//!   stored;
//! - per entry, like Loki's distributor: a line longer than
//!   `max_line_bytes` or older than `reject_older_than`: ignored, listed in
//!   a 400 in Loki's grouped text (`N errors like: ...; ...`);
//! - per stream, like an ingester with ordered writes (or, with
//!   [`LokiState::unordered`], like Loki's default since 2.4, which takes
//!   older entries too): an entry with the
//!   timestamp and line of one already stored in the stream is dropped
//!   silently (Loki's de-duplication); an entry older than the newest of
//!   the stream is ignored as `entry out of order` and listed in a 400 in
//!   the ingester's text (`entry with timestamp ... ignored, reason:
//!   'entry out of order',` ... `total ignored: N out of M for stream:
//!   {..}`);
//! - the good entries of a push are stored even when it answers 400, as
//!   Loki does.
//!
//! A schedule of answers ([`Scripted`]) comes first: each push takes the
//! next one; `Status` answers without storing anything.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Read as _;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ringtail::serve::loki::logql::{parse_selector, valid_label_name};
use ringtail::sources::loki_push::PushRequest;

/// One answer on the schedule.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// Answer this status (with an optional `Retry-After`) and store nothing.
    Status {
        status: u16,
        retry_after: Option<String>,
    },
}

impl Scripted {
    /// This status, without `Retry-After`.
    pub fn status(status: u16) -> Scripted {
        Scripted::Status {
            status,
            retry_after: None,
        }
    }
}

/// One stored entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stored {
    pub ts: u64,
    pub line: String,
}

/// One push as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub content_type: String,
    pub content_encoding: Option<String>,
    /// `(labels as sent, entries)` per stream; empty if the body did not
    /// decode.
    pub streams: Vec<(String, Vec<Stored>)>,
    /// The answer given.
    pub status: u16,
    pub answer: String,
}

#[derive(Debug, Default)]
pub struct LokiState {
    pub schedule: VecDeque<Scripted>,
    /// Per stream (its label pairs, sorted), the entries in arrival order.
    pub streams: BTreeMap<Vec<(String, String)>, Vec<Stored>>,
    seen: BTreeMap<Vec<(String, String)>, HashSet<Stored>>,
    pub received: Vec<Received>,
    /// Entries dropped as exact duplicates.
    pub duplicates: u64,
    pub max_labels: usize,
    pub max_line_bytes: usize,
    /// Entries older than this (ns) are refused as too old.
    pub reject_older_than: Option<u64>,
    /// Takes entries older than the newest of their stream (Loki's
    /// `unordered_writes`, its default since 2.4).
    pub unordered: bool,
    /// While set, every push is answered 503 and nothing is stored (a
    /// backend that is down for as long as a test needs, independent of
    /// how often the forwarder retries).
    pub down: bool,
}

/// A running fake.
pub struct FakeLoki {
    pub url: String,
    pub state: Arc<Mutex<LokiState>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeLoki {
    /// Starts on a free loopback port, with Loki's default limits.
    pub async fn start() -> FakeLoki {
        let state = Arc::new(Mutex::new(LokiState {
            max_labels: 15,
            max_line_bytes: 256 * 1024,
            ..LokiState::default()
        }));
        let app = Router::new()
            .route("/loki/api/v1/push", post(push))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeLoki { url, state, server }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, LokiState> {
        self.state.lock().unwrap()
    }

    /// Queues scripted answers for the next pushes.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state().schedule.extend(answers);
    }

    /// The stored lines of the stream with these labels.
    pub fn lines(&self, labels: &[(&str, &str)]) -> Vec<String> {
        let mut key: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        key.sort();
        self.state()
            .streams
            .get(&key)
            .map(|s| s.iter().map(|e| e.line.clone()).collect())
            .unwrap_or_default()
    }

    /// Every stored entry, over all streams.
    pub fn stored_count(&self) -> usize {
        self.state().streams.values().map(Vec::len).sum()
    }
}

impl Drop for FakeLoki {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn answer(status: u16, text: String) -> Response {
    (StatusCode::from_u16(status).unwrap(), text).into_response()
}

/// Go's `time.Time.String()` for a UTC time, as Loki's ingester writes it.
fn go_time(ns: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128).unwrap();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09} +0000 UTC",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

fn rfc3339(ns: u64) -> String {
    ringtail::timefmt::rfc3339_nanos(ns)
}

type Streams = Vec<(String, Vec<Stored>)>;

fn decode(headers: &HeaderMap, body: &[u8]) -> Result<(Streams, String, Option<String>), String> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match encoding.as_deref() {
        None => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| format!("bad gzip: {e}"))?;
            out
        }
        Some(other) => return Err(format!("unsupported Content-Encoding {other}")),
    };
    let streams = if content_type.starts_with("application/json") {
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("bad JSON: {e}"))?;
        let mut out = Vec::new();
        for s in v["streams"].as_array().ok_or("no streams")? {
            let labels: BTreeMap<String, String> = serde_json::from_value(s["stream"].clone())
                .map_err(|e| format!("bad stream labels: {e}"))?;
            let text = format!(
                "{{{}}}",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut entries = Vec::new();
            for value in s["values"].as_array().ok_or("no values")? {
                let ts = value[0]
                    .as_str()
                    .ok_or("a timestamp that is not a string")?
                    .parse::<u64>()
                    .map_err(|e| format!("bad timestamp: {e}"))?;
                let line = value[1]
                    .as_str()
                    .ok_or("a line that is not a string")?
                    .to_string();
                entries.push(Stored { ts, line });
            }
            out.push((text, entries));
        }
        out
    } else if content_type == "application/x-protobuf" {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .map_err(|e| format!("not block snappy: {e}"))?;
        let req: PushRequest = prost::Message::decode(raw.as_slice())
            .map_err(|e| format!("not a PushRequest: {e}"))?;
        req.streams
            .into_iter()
            .map(|s| {
                let entries = s
                    .entries
                    .into_iter()
                    .map(|e| {
                        let t = e.timestamp.unwrap_or_default();
                        Ok(Stored {
                            ts: t.seconds as u64 * 1_000_000_000 + t.nanos as u64,
                            line: String::from_utf8(e.line)
                                .map_err(|_| "a line that is not UTF-8".to_string())?,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                Ok((s.labels, entries))
            })
            .collect::<Result<Vec<_>, String>>()?
    } else {
        return Err(format!("unexpected Content-Type {content_type:?}"));
    };
    Ok((streams, content_type, encoding))
}

async fn push(
    State(state): State<Arc<Mutex<LokiState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = state.lock().unwrap();
    let (streams, content_type, content_encoding) = match decode(&headers, &body) {
        Ok(d) => d,
        Err(e) => {
            st.received.push(Received {
                content_type: String::new(),
                content_encoding: None,
                streams: Vec::new(),
                status: 400,
                answer: e.clone(),
            });
            return answer(400, e);
        }
    };
    let mut record = Received {
        content_type,
        content_encoding,
        streams: streams.clone(),
        status: 0,
        answer: String::new(),
    };
    if st.down {
        record.status = 503;
        st.received.push(record);
        return answer(503, "down".into());
    }
    if let Some(Scripted::Status {
        status,
        retry_after,
    }) = st.schedule.pop_front()
    {
        record.status = status;
        st.received.push(record);
        let mut resp = answer(status, format!("scripted {status}"));
        if let Some(ra) = retry_after {
            resp.headers_mut()
                .insert("retry-after", ra.parse().unwrap());
        }
        return resp;
    }

    // Distributor validation: grouped error messages.
    let mut validation: Vec<String> = Vec::new();
    let mut ingester_error: Option<String> = None;
    for (labels_text, entries) in streams {
        let matchers = match parse_selector(&labels_text, false) {
            Ok(m) => m,
            Err(e) => {
                validation.push(format!(
                    "error parsing labels '{labels_text}' with error: {e}"
                ));
                continue;
            }
        };
        let mut key: Vec<(String, String)> = matchers
            .iter()
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        key.sort();
        if let Some((bad, _)) = key.iter().find(|(k, _)| !valid_label_name(k)) {
            validation.push(format!(
                "error parsing labels '{labels_text}' with error: invalid label name {bad:?}"
            ));
            continue;
        }
        if key.windows(2).any(|w| w[0].0 == w[1].0) {
            validation.push(format!(
                "stream '{labels_text}' has duplicate label name: '{}'",
                key[0].0
            ));
            continue;
        }
        if key.len() > st.max_labels {
            validation.push(format!(
                "entry for stream '{labels_text}' has {} label names; limit {}",
                key.len(),
                st.max_labels
            ));
            continue;
        }
        let total = entries.len();
        let mut ignored: Vec<(u64, &'static str)> = Vec::new();
        for e in entries {
            if e.line.len() > st.max_line_bytes {
                validation.push(format!(
                    "max entry size '{}' bytes exceeded for stream '{labels_text}' while adding an entry with length '{}' bytes",
                    st.max_line_bytes,
                    e.line.len()
                ));
                continue;
            }
            if st.reject_older_than.is_some_and(|limit| e.ts < limit) {
                validation.push(format!(
                    "entry for stream '{labels_text}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                    rfc3339(e.ts),
                    rfc3339(st.reject_older_than.unwrap())
                ));
                continue;
            }
            let seen = st.seen.entry(key.clone()).or_default();
            if seen.contains(&e) {
                st.duplicates += 1;
                continue;
            }
            let unordered = st.unordered;
            let stored = st.streams.entry(key.clone()).or_default();
            if !unordered && stored.last().is_some_and(|last| e.ts < last.ts) {
                ignored.push((e.ts, "entry out of order"));
                continue;
            }
            stored.push(e.clone());
            st.seen.entry(key.clone()).or_default().insert(e);
        }
        if !ignored.is_empty() {
            // Loki lists at most 10 (max_returned_stream_errors) and the total.
            let mut text = String::new();
            for (ts, reason) in ignored.iter().take(10) {
                text.push_str(&format!(
                    "entry with timestamp {} ignored, reason: '{reason}',\n",
                    go_time(*ts)
                ));
            }
            text.push_str(&format!(
                "user 'fake', total ignored: {} out of {total} for stream: {labels_text}",
                ignored.len()
            ));
            // An ingester reports only its last failing stream.
            ingester_error = Some(text);
        }
    }
    let (status, text) = if !validation.is_empty() {
        let mut groups: Vec<(String, usize)> = Vec::new();
        for v in validation {
            match groups.iter_mut().find(|(m, _)| *m == v) {
                Some(g) => g.1 += 1,
                None => groups.push((v, 1)),
            }
        }
        let single = groups.len() == 1 && groups[0].1 == 1;
        let text = groups
            .iter()
            .map(|(m, n)| {
                if single {
                    m.clone()
                } else {
                    format!("{n} errors like: {m}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        (400, text)
    } else if let Some(text) = ingester_error {
        (400, text)
    } else {
        (204, String::new())
    };
    record.status = status;
    record.answer = text.clone();
    st.received.push(record);
    answer(status, text)
}
