//! The query strings of the HTTP API, parsed at the edge into typed
//! requests: [`parse_entries`] for `GET /api/v1/entries`, [`parse_follow`]
//! for `GET /api/v1/follow`, [`parse_ingest`] for `POST /api/v1/entries`.
//!
//! These are pure functions of the query string (and "now", for relative
//! times), so they are fuzzed on their own (`fuzz/fuzz_targets/http_params.rs`).
//!
//! Rules common to every endpoint:
//! - `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a
//!   byte. Keys must decode to UTF-8; so must values, except `contains`,
//!   whose value is searched for as bytes (`contains=%FF` finds the byte
//!   0xff).
//! - Filter parameters (`source`, `stream`, `label.KEY`, `since`, `until`,
//!   `contains`, `regex`) go to the one [`FilterBuilder`]: same syntax and
//!   same errors as everywhere else in ringtail.
//! - A parameter that may appear once (`after`, `limit`, `since`, ...) is
//!   an error when given twice, and an unknown parameter is an error that
//!   lists the known ones: a typo never silently widens a query.

use std::fmt;

use percent_encoding::percent_decode;

use crate::entry::{Level, Stream};
use crate::filter::{Filter, FilterBuilder, FilterError};
use crate::format::Format;

/// Reading order of `GET /api/v1/entries`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first (the default); `next` is an `after` cursor.
    #[default]
    Asc,
    /// Newest first; `next` is a `before` cursor.
    Desc,
}

/// What `GET /api/v1/entries` answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntriesOutput {
    /// One JSON document with `entries`, `gaps` and `next` (the default).
    Document,
    /// Streamed lines in this format (`format=ndjson|text|logread|raw|etw`,
    /// or `Accept: application/x-ndjson`).
    Lines(Format),
}

/// What `GET /api/v1/follow` answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowOutput {
    /// Server-sent events (`Accept: text/event-stream` or `format=sse`).
    Sse,
    /// Lines in this format, flushed as they come (default `logread`).
    Lines(Format),
}

/// A checked `GET /api/v1/entries` request.
#[derive(Clone, Debug)]
pub struct EntriesQuery {
    pub filter: Filter,
    /// Entries with a seq strictly greater than this.
    pub after: Option<u64>,
    /// Entries with a seq strictly less than this.
    pub before: Option<u64>,
    /// At most this many entries (the server caps it for documents).
    pub limit: Option<u64>,
    pub order: Order,
    /// `None` when no `format` was given: the `Accept` header decides.
    pub output: Option<EntriesOutput>,
}

/// A checked `GET /api/v1/follow` request.
#[derive(Clone, Debug)]
pub struct FollowQuery {
    pub filter: Filter,
    /// Start strictly after this seq (a `Last-Event-ID` header overrides it).
    pub after: Option<u64>,
    /// Start with the last N matching entries.
    pub tail: Option<u64>,
    /// End the stream after this many entries.
    pub limit: Option<u64>,
    /// `None` when no `format` was given: the `Accept` header decides.
    pub output: Option<FollowOutput>,
}

pub use crate::sources::http_ingest::IngestQuery;

/// What was wrong with a query string. The text names the parameter and
/// says what is expected; the server sends it back with status 400.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamError {
    /// A filter parameter with a bad value.
    Filter(FilterError),
    /// A key or value that is not UTF-8 once percent-decoded.
    NotUtf8 { param: String },
    /// A parameter that does not apply to this endpoint.
    Unknown {
        param: String,
        endpoint: &'static str,
        known: &'static [&'static str],
        hint: &'static str,
    },
    /// A parameter that may appear once, given again.
    Repeated { param: String },
    /// A number that did not parse, or is out of range.
    Number {
        param: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A value not in the parameter's list.
    Choice {
        param: &'static str,
        value: String,
        expected: &'static str,
    },
    /// `after` and `before` leave no seq in between.
    EmptySeqRange { after: u64, before: u64 },
    /// A source name the ring would refuse (empty, or too long).
    Source(crate::sources::pipeline::OriginError),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Filter(e) => e.fmt(f),
            ParamError::NotUtf8 { param } => write!(
                f,
                "parameter `{param}`: not valid UTF-8 once percent-decoded (only `contains` takes \
                 arbitrary bytes)"
            ),
            ParamError::Unknown {
                param,
                endpoint,
                known,
                hint,
            } => write!(
                f,
                "unknown parameter `{param}` for {endpoint}: the parameters are {}{hint}",
                known.join(", ")
            ),
            ParamError::Repeated { param } => {
                write!(f, "parameter `{param}` is given twice; give it once")
            }
            ParamError::Number {
                param,
                value,
                expected,
            } => write!(f, "parameter `{param}`: {value:?} is not {expected}"),
            ParamError::Choice {
                param,
                value,
                expected,
            } => write!(f, "parameter `{param}`: {value:?} is not one of {expected}"),
            ParamError::EmptySeqRange { after, before } => write!(
                f,
                "parameters `after` ({after}) and `before` ({before}) leave no seq in between: \
                 after must be less than before - 1"
            ),
            ParamError::Source(e) => write!(f, "parameter `source`: {e}"),
        }
    }
}

impl std::error::Error for ParamError {}

impl From<FilterError> for ParamError {
    fn from(e: FilterError) -> ParamError {
        ParamError::Filter(e)
    }
}

/// The query parameters of `GET /api/v1/entries` (`api/openapi.yaml`
/// lists the same; a test checks).
pub const ENTRIES_PARAMS: &[&str] = &[
    "source",
    "stream",
    "label.KEY",
    "since",
    "until",
    "contains",
    "regex",
    "after",
    "before",
    "limit",
    "order",
    "format",
];
/// The query parameters of `GET /api/v1/follow`.
pub const FOLLOW_PARAMS: &[&str] = &[
    "source",
    "stream",
    "label.KEY",
    "since",
    "contains",
    "regex",
    "after",
    "tail",
    "limit",
    "format",
];
/// The query parameters of `POST /api/v1/entries`.
pub const INGEST_PARAMS: &[&str] = &["source", "stream", "level", "label.KEY"];

const ENTRIES: &str = "GET /api/v1/entries";
const FOLLOW: &str = "GET /api/v1/follow";
const INGEST: &str = "POST /api/v1/entries";

/// One decoded `key=value` pair. The value stays bytes until the parameter
/// says what it wants.
struct Pair {
    key: String,
    value: Vec<u8>,
}

impl Pair {
    fn text(&self) -> Result<&str, ParamError> {
        std::str::from_utf8(&self.value).map_err(|_| ParamError::NotUtf8 {
            param: self.key.clone(),
        })
    }
}

/// Splits and decodes a query string (`a=1&b=x+y`). Empty pieces are
/// skipped; a piece without `=` has an empty value.
fn pairs(query: &str) -> impl Iterator<Item = Result<Pair, ParamError>> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|piece| {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let key = decode(k);
        let key = String::from_utf8(key).map_err(|e| ParamError::NotUtf8 {
            param: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })?;
        Ok(Pair {
            key,
            value: decode(v),
        })
    })
}

/// Form decoding: `+` is a space, then `%XX` escapes.
fn decode(s: &str) -> Vec<u8> {
    if s.contains('+') {
        let spaced = s.replace('+', " ");
        percent_decode(spaced.as_bytes()).collect()
    } else {
        percent_decode(s.as_bytes()).collect()
    }
}

/// Remembers which once-only parameters were seen.
#[derive(Default)]
struct Once(Vec<&'static str>);

impl Once {
    fn take(&mut self, name: &'static str) -> Result<(), ParamError> {
        if self.0.contains(&name) {
            return Err(ParamError::Repeated {
                param: name.to_string(),
            });
        }
        self.0.push(name);
        Ok(())
    }
}

fn number(param: &'static str, value: &str, expected: &'static str) -> Result<u64, ParamError> {
    value.trim().parse::<u64>().map_err(|_| ParamError::Number {
        param,
        value: value.to_string(),
        expected,
    })
}

fn positive(param: &'static str, value: &str) -> Result<u64, ParamError> {
    match number(param, value, "a whole number of at least 1")? {
        0 => Err(ParamError::Number {
            param,
            value: value.to_string(),
            expected: "a whole number of at least 1",
        }),
        n => Ok(n),
    }
}

const SEQ: &str = "a seq (an unsigned integer)";

/// Hands a filter parameter to the builder; `contains` keeps its bytes.
/// Returns `Ok(false)` when `key` is not a filter parameter.
fn filter_param(
    b: &mut FilterBuilder,
    once: &mut Once,
    pair: &Pair,
    allow_until: bool,
) -> Result<bool, ParamError> {
    match pair.key.as_str() {
        "contains" => {
            *b = std::mem::take(b).contains(&pair.value);
            return Ok(true);
        }
        "since" => once.take("since")?,
        "until" if allow_until => once.take("until")?,
        // The filter's own spelling of a seq cursor; the HTTP API has `after`.
        "until" | "since_seq" => return Ok(false),
        _ => {}
    }
    Ok(b.param(&pair.key, pair.text()?)?)
}

fn unknown(param: &str, endpoint: &'static str, known: &'static [&'static str]) -> ParamError {
    let hint = match param {
        "since_seq" => "; to resume after a seq, use `after=SEQ`",
        "until" => "; a follow has no end time: use GET /api/v1/entries for a time window",
        "n" | "lines" => {
            "; for the last N entries use `tail=N` on follow, or `order=desc&limit=N` on entries"
        }
        "tail" => "; for the last N entries use `order=desc&limit=N`",
        _ => "",
    };
    ParamError::Unknown {
        param: param.to_string(),
        endpoint,
        known,
        hint,
    }
}

/// Parses the query string of `GET /api/v1/entries`. Relative times count
/// back from `now_ns`.
pub fn parse_entries(query: &str, now_ns: u64) -> Result<EntriesQuery, ParamError> {
    let mut b = FilterBuilder::new().now(now_ns);
    let mut once = Once::default();
    let mut q = EntriesQuery {
        filter: Filter::all(),
        after: None,
        before: None,
        limit: None,
        order: Order::Asc,
        output: None,
    };
    for pair in pairs(query) {
        let pair = pair?;
        if filter_param(&mut b, &mut once, &pair, true)? {
            continue;
        }
        let v = pair.text()?;
        match pair.key.as_str() {
            "after" => {
                once.take("after")?;
                q.after = Some(number("after", v, SEQ)?);
            }
            "before" => {
                once.take("before")?;
                q.before = Some(number("before", v, SEQ)?);
            }
            "limit" => {
                once.take("limit")?;
                q.limit = Some(positive("limit", v)?);
            }
            "order" => {
                once.take("order")?;
                q.order = match v {
                    "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    _ => {
                        return Err(ParamError::Choice {
                            param: "order",
                            value: v.to_string(),
                            expected: "asc, desc",
                        })
                    }
                };
            }
            "format" => {
                once.take("format")?;
                q.output = Some(match v {
                    "json" => EntriesOutput::Document,
                    "ndjson" => EntriesOutput::Lines(Format::Ndjson),
                    "text" => EntriesOutput::Lines(Format::Text),
                    "logread" => EntriesOutput::Lines(Format::Logread),
                    "raw" => EntriesOutput::Lines(Format::Raw),
                    "etw" => EntriesOutput::Lines(Format::Etw),
                    _ => {
                        return Err(ParamError::Choice {
                            param: "format",
                            value: v.to_string(),
                            expected: "json (one document, the default), ndjson, text, logread, \
                                       raw, etw (streamed lines); server-sent events are on \
                                       /api/v1/follow",
                        })
                    }
                });
            }
            other => return Err(unknown(other, ENTRIES, ENTRIES_PARAMS)),
        }
    }
    if let (Some(after), Some(before)) = (q.after, q.before) {
        if after.saturating_add(1) >= before {
            return Err(ParamError::EmptySeqRange { after, before });
        }
    }
    q.filter = b.build()?;
    Ok(q)
}

/// Parses the query string of `GET /api/v1/follow`. Relative times count
/// back from `now_ns`.
pub fn parse_follow(query: &str, now_ns: u64) -> Result<FollowQuery, ParamError> {
    let mut b = FilterBuilder::new().now(now_ns);
    let mut once = Once::default();
    let mut q = FollowQuery {
        filter: Filter::all(),
        after: None,
        tail: None,
        limit: None,
        output: None,
    };
    for pair in pairs(query) {
        let pair = pair?;
        if filter_param(&mut b, &mut once, &pair, false)? {
            continue;
        }
        let v = pair.text()?;
        match pair.key.as_str() {
            "after" => {
                once.take("after")?;
                q.after = Some(number("after", v, SEQ)?);
            }
            "tail" => {
                once.take("tail")?;
                q.tail = Some(number("tail", v, "a number of entries")?);
            }
            "limit" => {
                once.take("limit")?;
                q.limit = Some(positive("limit", v)?);
            }
            "format" => {
                once.take("format")?;
                q.output = Some(match v {
                    "sse" => FollowOutput::Sse,
                    _ => match v.parse::<Format>() {
                        Ok(f) if f.name() == v => FollowOutput::Lines(f),
                        _ => {
                            return Err(ParamError::Choice {
                                param: "format",
                                value: v.to_string(),
                                expected:
                                    "sse, logread (the default), text, json, ndjson, raw, etw",
                            })
                        }
                    },
                });
            }
            other => return Err(unknown(other, FOLLOW, FOLLOW_PARAMS)),
        }
    }
    q.filter = b.build()?;
    Ok(q)
}

/// Label keys as the filter accepts them (the filter owns the rule).
pub use crate::filter::valid_label_key;

/// Parses the query string of `POST /api/v1/entries`.
pub fn parse_ingest(query: &str) -> Result<IngestQuery, ParamError> {
    let mut once = Once::default();
    let mut q = IngestQuery::default();
    for pair in pairs(query) {
        let pair = pair?;
        let v = pair.text()?;
        match pair.key.as_str() {
            "source" => {
                once.take("source")?;
                // Checked here, not only when a line uses it: a bad
                // `?source=` is an error even if every NDJSON object
                // names its own source.
                crate::sources::pipeline::source_name(v).map_err(ParamError::Source)?;
                q.source = Some(v.to_string());
            }
            "stream" => {
                once.take("stream")?;
                q.stream = Some(Stream::parse(v).ok_or_else(|| ParamError::Choice {
                    param: "stream",
                    value: v.to_string(),
                    expected: "stdout, stderr",
                })?);
            }
            "level" => {
                once.take("level")?;
                q.level = Some(Level::parse(v).ok_or_else(|| ParamError::Choice {
                    param: "level",
                    value: v.to_string(),
                    expected: Level::EXPECTED,
                })?);
            }
            key => match key.strip_prefix("label.") {
                Some(k) if valid_label_key(k) => q.labels.push((k.to_string(), v.to_string())),
                Some(_) => {
                    return Err(ParamError::Filter(FilterError::LabelKey {
                        param: key.to_string(),
                    }))
                }
                None => return Err(unknown(key, INGEST, INGEST_PARAMS)),
            },
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{EntryRef, Flags, Origin};
    use crate::ring::Select;

    const NOW: u64 = 10_000 * 1_000_000_000;

    fn passes(f: &Filter, source: &str, msg: &[u8]) -> bool {
        let o = Origin::new(source);
        let e = EntryRef {
            seq: 1,
            time: NOW,
            source_time: crate::entry::SourceTime::None,
            origin: &o,
            flags: Flags::default(),
            msg,
        };
        f.origin(&o) && f.entry(&e)
    }

    #[test]
    fn entries_parameters() {
        let q = parse_entries(
            "source=web*&source=db&contains=GET+%2F&after=10&before=99&limit=5&order=desc&format=ndjson&since=10m",
            NOW,
        )
        .unwrap();
        assert_eq!(q.after, Some(10));
        assert_eq!(q.before, Some(99));
        assert_eq!(q.limit, Some(5));
        assert_eq!(q.order, Order::Desc);
        assert_eq!(q.output, Some(EntriesOutput::Lines(Format::Ndjson)));
        assert_eq!(q.filter.source_patterns(), ["web*", "db"]);
        assert_eq!(q.filter.since_ns(), Some(NOW - 600 * 1_000_000_000));
        assert!(passes(&q.filter, "web.out", b"GET / 200"));
        assert!(!passes(&q.filter, "web.out", b"POST / 200"));
        let q = parse_entries("", NOW).unwrap();
        assert!(q.filter.is_all() && q.output.is_none() && q.order == Order::Asc);
        assert_eq!(
            parse_entries("format=json", NOW).unwrap().output,
            Some(EntriesOutput::Document)
        );
    }

    #[test]
    fn contains_takes_bytes() {
        let q = parse_entries("contains=%FF%00", NOW).unwrap();
        assert!(passes(&q.filter, "s", b"a\xff\x00b"));
        assert!(!passes(&q.filter, "s", b"a\xffb"));
        let e = parse_entries("regex=%FF", NOW).unwrap_err();
        assert!(matches!(e, ParamError::NotUtf8 { .. }), "{e}");
        assert!(e.to_string().contains("`regex`"));
    }

    #[test]
    fn errors_name_the_parameter() {
        let e = |q: &str| parse_entries(q, NOW).unwrap_err().to_string();
        assert!(e("limit=0").contains("`limit`"));
        assert!(e("limit=x").contains("`limit`"));
        assert!(e("after=-1").contains("`after`"));
        assert!(e("limit=1&limit=2").contains("given twice"));
        assert!(e("since=1&since=2").contains("given twice"));
        assert!(e("order=up").contains("asc, desc"));
        assert!(e("format=sse").contains("/api/v1/follow"));
        assert!(e("since_seq=5").contains("after=SEQ"));
        assert!(e("bogus=1").contains("unknown parameter `bogus`"));
        assert!(e("regex=(").contains("parameter `regex`"));
        assert!(e("after=5&before=6").contains("no seq in between"));
        assert!(parse_entries("after=5&before=7", NOW).is_ok());
        let f = |q: &str| parse_follow(q, NOW).unwrap_err().to_string();
        assert!(f("until=1m").contains("no end time"));
        assert!(f("format=xml").contains("sse"));
        assert!(f("order=desc").contains("unknown parameter `order`"));
        assert!(f("format=Json").contains("sse"));
    }

    #[test]
    fn follow_parameters() {
        let q = parse_follow("tail=10&after=3&source=a&format=sse&limit=2", NOW).unwrap();
        assert_eq!((q.tail, q.after, q.limit), (Some(10), Some(3), Some(2)));
        assert_eq!(q.output, Some(FollowOutput::Sse));
        for f in Format::ALL {
            let q = parse_follow(&format!("format={}", f.name()), NOW).unwrap();
            assert_eq!(q.output, Some(FollowOutput::Lines(f)));
        }
    }

    #[test]
    fn ingest_parameters() {
        let q = parse_ingest("source=my+app&stream=stderr&level=warn&label.env=prod").unwrap();
        assert_eq!(q.source.as_deref(), Some("my app"));
        assert_eq!(q.stream, Some(Stream::Stderr));
        assert_eq!(q.level, Some(Level::Warning));
        assert_eq!(q.labels, vec![("env".to_string(), "prod".to_string())]);
        assert!(parse_ingest("label.a%20b=1").is_err());
        assert!(parse_ingest("stream=stdin")
            .unwrap_err()
            .to_string()
            .contains("stdout"));
        assert!(parse_ingest("level=9").is_err());
        // A bad source is refused even when no line would use it.
        let long = format!("source={}", "a".repeat(256));
        assert!(parse_ingest(&long)
            .unwrap_err()
            .to_string()
            .starts_with("parameter `source`: the source name is 256 bytes long"));
        assert!(parse_ingest("source=")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(parse_ingest(&format!("source={}", "a".repeat(255))).is_ok());
        assert!(parse_ingest("limit=1")
            .unwrap_err()
            .to_string()
            .contains("source, stream"));
        assert_eq!(Level::parse("ERROR"), Some(Level::Error));
        assert_eq!(Level::parse("7"), Some(Level::Debug));
    }
}
