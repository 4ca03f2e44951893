//! The memlogq protocol itself, as both ends see it: the mode byte
//! ([`Mode`]), the JSON request line ([`JsonRequest`], checked into a
//! [`Request`] by [`parse_request`]), the ring id as it travels
//! ([`ring_id_text`], [`parse_ring_id`]), and refusals: the one
//! `{"error":"...","code":"..."}` line a daemon sends instead of an answer
//! ([`RequestError`] on the server, [`Refusal`] on the client), whose
//! [`ErrorCode`] a client matches instead of the text.
//!
//! Pure functions and types only: no sockets here (see [`super::server`]
//! and [`super::client`]). The request parser reads outside input and has a
//! fuzz target (`fuzz/fuzz_targets/memlogq_request.rs`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::filter::{Filter, FilterBuilder, FilterError};
use crate::format::Format;
use crate::timefmt::{self, TimeRules};

/// The longest JSON request line.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// What the client asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Everything in the ring now, then close (mode byte `0`).
    #[default]
    #[serde(rename = "dump")]
    Dump,
    /// Entries published from now on (mode byte `1`).
    #[serde(rename = "follow")]
    Follow,
    /// Dump, then follow, with nothing missing or repeated (mode byte `2`).
    #[serde(rename = "dump+follow")]
    DumpFollow,
}

impl Mode {
    /// memlogd's mode byte.
    pub fn byte(self) -> u8 {
        match self {
            Mode::Dump => 0,
            Mode::Follow => 1,
            Mode::DumpFollow => 2,
        }
    }

    pub fn from_byte(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::Dump),
            1 => Some(Mode::Follow),
            2 => Some(Mode::DumpFollow),
            _ => None,
        }
    }

    /// Whether the answer starts with what the ring holds.
    pub(crate) fn dumps(self) -> bool {
        self != Mode::Follow
    }

    /// Whether the answer goes on with new entries.
    pub(crate) fn follows(self) -> bool {
        self != Mode::Dump
    }
}

/// A time in a JSON request: a number (Unix seconds, ms or ns by digit
/// count, as in [`timefmt`]) or text (RFC 3339, `"10m"` ago, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeValue {
    Int(u64),
    Float(f64),
    Text(String),
}

impl TimeValue {
    fn text(&self) -> String {
        match self {
            TimeValue::Int(v) => v.to_string(),
            TimeValue::Float(v) => format!("{v}"),
            TimeValue::Text(s) => s.clone(),
        }
    }
}

/// The JSON request line as it travels (see the module docs). Clients
/// build one and send it with [`connect`]; the server reads it with
/// [`parse_request`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonRequest {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<TimeValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<TimeValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The ring `since_seq` was read from (16 hex digits, from a `ring`
    /// record): a daemon whose ring is another refuses the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_id: Option<String>,
    /// Start the answer with a `ring` record (ndjson only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ring_info: bool,
}

/// A checked request, ready to serve.
#[derive(Clone, Debug)]
pub struct Request {
    pub mode: Mode,
    /// Start strictly after this seq.
    pub since_seq: Option<u64>,
    /// Start with the last N matching entries.
    pub tail: Option<u64>,
    /// Send at most this many entries.
    pub limit: Option<u64>,
    pub filter: Filter,
    pub format: Format,
    /// The ring `since_seq` belongs to.
    pub ring_id: Option<u64>,
    /// Start with a `ring` record.
    pub ring_info: bool,
}

impl Request {
    /// What a memlogd mode byte asks for.
    pub fn from_mode(mode: Mode, format: Format) -> Request {
        Request {
            mode,
            since_seq: None,
            tail: None,
            limit: None,
            filter: Filter::all(),
            format,
            ring_id: None,
            ring_info: false,
        }
    }
}

/// Why a JSON request was refused. The server sends its text back as
/// `{"error":"...","code":"..."}`, the code from [`RequestError::code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// More than [`MAX_REQUEST_LEN`] bytes without a newline.
    TooLong,
    /// Not a JSON object of the expected shape (serde's message).
    Json(String),
    /// A filter field with a bad value.
    Filter(FilterError),
    /// A field that does not apply to the mode.
    NotForMode { field: &'static str, mode: Mode },
    /// `since_seq` past the newest entry: the ring is not the one the
    /// client read before.
    FutureSeq { since_seq: u64, newest: u64 },
    /// `ring_id` names another ring than the daemon's.
    OtherRing { given: u64, ring: u64 },
    /// A field with a value it cannot take.
    Field(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLong => write!(
                f,
                "request longer than {MAX_REQUEST_LEN} bytes: send one JSON object on one line"
            ),
            RequestError::Json(e) => write!(
                f,
                "bad request: {e}; send one JSON object on one line, such as \
                 {{\"mode\":\"dump+follow\",\"since_seq\":0,\"sources\":[\"web*\"]}}"
            ),
            RequestError::Filter(e) => write!(f, "bad request: {e}"),
            RequestError::NotForMode { field, mode } => {
                let applies = match *field {
                    "until" => "only to \"dump\"",
                    _ => "only to \"dump\" and \"dump+follow\"",
                };
                let mode = serde_json::to_string(mode).unwrap_or_default();
                write!(
                    f,
                    "bad request: `{field}` applies {applies}, not to mode {mode}"
                )
            }
            RequestError::FutureSeq { since_seq, newest } => write!(
                f,
                "since_seq {since_seq} is past the newest entry (seq {newest}): this ring was \
                 reset or replaced since that seq was read; ask again without since_seq"
            ),
            RequestError::OtherRing { given, ring } => write!(
                f,
                "ring_id {given:016x} is not this daemon's ring ({ring:016x}): the ring was \
                 replaced since that since_seq was read; ask again without since_seq and ring_id"
            ),
            RequestError::Field(e) => write!(f, "bad request: {e}"),
        }
    }
}

impl std::error::Error for RequestError {}

impl RequestError {
    /// The code the refusal carries on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            RequestError::TooLong => ErrorCode::TooLong,
            RequestError::Json(_)
            | RequestError::Filter(_)
            | RequestError::NotForMode { .. }
            | RequestError::Field(_) => ErrorCode::BadRequest,
            RequestError::FutureSeq { .. } => ErrorCode::FutureSeq,
            RequestError::OtherRing { .. } => ErrorCode::OtherRing,
        }
    }

    /// The refusal line: `{"error":"<text>","code":"<code>"}` and a newline.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(&WireRefusal {
            error: self.to_string(),
            code: Some(self.code()),
        })
        .expect("a JSON object of two strings serialises");
        v.push(b'\n');
        v
    }
}

/// What kind of refusal a daemon sent: clients match this, never the text
/// (which says the same for a person, and may be reworded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request line is longer than [`MAX_REQUEST_LEN`].
    TooLong,
    /// The request is not one the daemon can serve (shape, field or value):
    /// asking again unchanged gets the same answer.
    BadRequest,
    /// `since_seq` is past the newest entry: the daemon's ring is not the
    /// one the client read before (it restarted without `--ring-file`).
    FutureSeq,
    /// `ring_id` names another ring than the daemon's (it was replaced).
    OtherRing,
    /// A code this client does not know (from a newer daemon).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Whether the refusal means "the ring your position belongs to is
    /// gone": a resuming client starts again from the oldest entry.
    pub fn ring_replaced(self) -> bool {
        matches!(self, ErrorCode::FutureSeq | ErrorCode::OtherRing)
    }
}

/// The refusal line as it travels.
#[derive(Serialize, Deserialize)]
struct WireRefusal {
    error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
}

/// A refusal as a client reads it: the daemon's reason, for a person, and
/// its code, for the program. A daemon from before codes sends none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: Option<ErrorCode>,
    pub message: String,
}

impl Refusal {
    /// Whether the daemon said the client's ring position belongs to a
    /// ring it no longer has ([`ErrorCode::ring_replaced`]).
    pub fn ring_replaced(&self) -> bool {
        self.code.is_some_and(ErrorCode::ring_replaced)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

impl From<FilterError> for RequestError {
    fn from(e: FilterError) -> RequestError {
        RequestError::Filter(e)
    }
}

/// A ring id as the protocol carries it: 16 hex digits (a JSON number
/// could not carry every u64 to every client).
pub fn ring_id_text(id: u64) -> String {
    format!("{id:016x}")
}

/// The ring id in `text`, if it is 16 hex digits.
pub fn parse_ring_id(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16)
        .ok()
        .filter(|_| text.len() == 16)
}

/// Parses and checks one JSON request line (trailing newline optional).
/// Relative times count back from now.
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    parse_request_at(line, timefmt::now_ns())
}

/// [`parse_request`] with "now" given.
pub fn parse_request_at(line: &[u8], now_ns: u64) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST_LEN {
        return Err(RequestError::TooLong);
    }
    let req: JsonRequest =
        serde_json::from_slice(line).map_err(|e| RequestError::Json(e.to_string()))?;
    if req.tail.is_some() && !req.mode.dumps() {
        return Err(RequestError::NotForMode {
            field: "tail",
            mode: req.mode,
        });
    }
    if req.until.is_some() && req.mode != Mode::Dump {
        return Err(RequestError::NotForMode {
            field: "until",
            mode: req.mode,
        });
    }
    let format = req.format.unwrap_or(Format::Ndjson);
    if req.ring_info && format != Format::Ndjson {
        return Err(RequestError::Field(
            "`ring_info` needs format \"ndjson\" (the default)".into(),
        ));
    }
    let ring_id = match &req.ring_id {
        None => None,
        Some(hex) => Some(parse_ring_id(hex).ok_or_else(|| {
            RequestError::Field(format!(
                "`ring_id` is {hex:?}; send the 16 hex digits of a `ring` record's id"
            ))
        })?),
    };
    let mut b = FilterBuilder::new().now(now_ns);
    for s in &req.sources {
        b = b.source(s.as_str());
    }
    for s in &req.streams {
        b.param("stream", s)?;
    }
    for (k, v) in &req.labels {
        b.param(&format!("label.{k}"), v)?;
    }
    let time = |param: &str, v: &TimeValue| {
        timefmt::parse_time(&v.text(), now_ns, TimeRules::RINGTAIL).map_err(|error| {
            FilterError::Time {
                param: param.to_string(),
                error,
            }
        })
    };
    if let Some(v) = &req.since {
        b = b.since(time("since", v)?);
    }
    if let Some(v) = &req.until {
        b = b.until(time("until", v)?);
    }
    if let Some(c) = &req.contains {
        b = b.contains(c);
    }
    if let Some(r) = &req.regex {
        b = b.regex(r.as_str());
    }
    Ok(Request {
        mode: req.mode,
        since_seq: req.since_seq,
        tail: req.tail,
        limit: req.limit,
        filter: b.build()?,
        format,
        ring_id,
        ring_info: req.ring_info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_fields() {
        let r = parse_request(br#"{"since_seq":7,"ring_id":"00000000000000ff","ring_info":true}"#)
            .unwrap();
        assert_eq!((r.ring_id, r.ring_info), (Some(255), true));
        let e = |line: &str| parse_request(line.as_bytes()).unwrap_err().to_string();
        assert!(e(r#"{"ring_id":"ff"}"#).contains("16 hex digits"));
        assert!(e(r#"{"ring_id":"zz00000000000000"}"#).contains("16 hex digits"));
        assert!(e(r#"{"ring_info":true,"format":"json"}"#).contains("ndjson"));
        let refused = RequestError::OtherRing { given: 1, ring: 2 }.to_string();
        assert!(refused.contains("since_seq") && refused.contains("0000000000000002"));
    }

    #[test]
    fn parses_a_full_request() {
        let now = 10_000_000_000_000u64;
        let r = parse_request_at(
            br#"{"mode":"dump+follow","since_seq":7,"sources":["web*"],"streams":["stderr"],
                "labels":{"app":"x"},"since":"10s","contains":"err","regex":"^E","limit":5,
                "tail":3,"format":"logread"}"#,
            now,
        )
        .unwrap();
        assert_eq!(r.mode, Mode::DumpFollow);
        assert_eq!(r.since_seq, Some(7));
        assert_eq!(r.limit, Some(5));
        assert_eq!(r.tail, Some(3));
        assert_eq!(r.format, Format::Logread);
        assert_eq!(r.filter.since_ns(), Some(now - 10_000_000_000));
        assert_eq!(r.filter.source_patterns(), ["web*"]);
    }

    #[test]
    fn defaults_and_times() {
        let r = parse_request_at(b"{}\n", 0).unwrap();
        assert_eq!(r.mode, Mode::Dump);
        assert_eq!(r.format, Format::Ndjson);
        assert!(r.filter.is_all());
        let r = parse_request_at(br#"{"since":1531041413,"until":1531041414.5}"#, 0).unwrap();
        assert_eq!(r.filter.since_ns(), Some(1_531_041_413_000_000_000));
        assert_eq!(r.filter.until_ns(), Some(1_531_041_414_500_000_000));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |s: &str| parse_request_at(s.as_bytes(), 0).unwrap_err().to_string();
        assert!(e(r#"{"mode":"dump","bogus":1}"#).contains("unknown field `bogus`"));
        assert!(e(r#"{"mode":"tail"}"#).contains("unknown variant"));
        assert!(e("not json").contains("one JSON object on one line"));
        assert!(e(r#"{"since_seq":-1}"#).starts_with("bad request"));
        assert!(e(r#"{"regex":"("}"#).contains("parameter `regex`"));
        assert!(e(r#"{"streams":["stdin"]}"#).contains("stdout or stderr"));
        assert!(e(r#"{"since":"soon"}"#).contains("parameter `since`"));
        assert!(e(r#"{"mode":"follow","tail":3}"#).contains("`tail` applies only to"));
        assert!(e(r#"{"mode":"dump+follow","until":"1m"}"#)
            .contains("`until` applies only to \"dump\""));
        assert!(e(r#"{"labels":{"a b":"c"}}"#).contains("label.KEY"));
        let long = format!("{{\"contains\":\"{}\"}}", "x".repeat(MAX_REQUEST_LEN));
        assert_eq!(
            parse_request_at(long.as_bytes(), 0).unwrap_err(),
            RequestError::TooLong
        );
    }

    #[test]
    fn client_requests_round_trip() {
        let req = JsonRequest {
            mode: Mode::DumpFollow,
            since_seq: Some(3),
            sources: vec!["a*".into()],
            since: Some(TimeValue::Text("5m".into())),
            format: Some(Format::Json),
            ..JsonRequest::default()
        };
        let line = serde_json::to_vec(&req).unwrap();
        let back: JsonRequest = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, req);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#"{"mode":"dump+follow","since_seq":3,"sources":["a*"],"since":"5m","format":"json"}"#
        );
        for m in [Mode::Dump, Mode::Follow, Mode::DumpFollow] {
            assert_eq!(Mode::from_byte(m.byte()), Some(m));
        }
        assert_eq!(Mode::from_byte(3), None);
    }

    #[test]
    fn refusals_carry_a_code() {
        let e = RequestError::OtherRing { given: 1, ring: 2 };
        let line = e.line();
        assert!(line.ends_with(b"\n"));
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["code"], "other_ring");
        assert_eq!(v["error"], e.to_string());
        assert_eq!(RequestError::TooLong.code(), ErrorCode::TooLong);
        assert_eq!(RequestError::Json("x".into()).code(), ErrorCode::BadRequest);
        let future = RequestError::FutureSeq {
            since_seq: 9,
            newest: 3,
        };
        assert!(future.code().ring_replaced() && e.code().ring_replaced());
        assert!(!ErrorCode::BadRequest.ring_replaced());
        let newer: ErrorCode = serde_json::from_str("\"out_of_coffee\"").unwrap();
        assert_eq!(newer, ErrorCode::Unknown);
    }
}
