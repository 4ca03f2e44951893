//! The one entry filter of ringtail: the query socket's JSON request, the
//! HTTP API and the Loki API all describe "which entries" with a
//! [`Filter`], built from typed values ([`FilterBuilder`]) or from
//! query-parameter pairs ([`Filter::from_pairs`]).
//!
//! A filter is a conjunction: an entry passes when it passes every
//! condition that was given.
//!
//! | condition | parameter | matches |
//! |-----------|-----------|---------|
//! | sources   | `source` (repeatable) | the source name equals one of the patterns; `*` matches any run of characters, `?` one character, nothing else is special |
//! | streams   | `stream` (repeatable) | `stdout` or `stderr`; entries with no known stream do not match |
//! | labels    | `label.KEY=VALUE` (repeatable) | the origin has label KEY with one of the values given for KEY |
//! | since     | `since` | time at or after (RFC 3339, Unix s/ms/ns, or `10m` ago; see [`crate::timefmt`]) |
//! | until     | `until` | time strictly before |
//! | seqs      | `since_seq` | seq strictly after (resume after the last seq seen) |
//! | contains  | `contains` (repeatable) | the message contains these bytes |
//! | regex     | `regex` (repeatable) | the message matches ([`regex::bytes`] syntax, compiled size at most 1 MiB) |
//!
//! LogQL (the Loki API) adds conditions that have no query parameter:
//! label matchers with its four operators ([`LabelMatcher`]: `=`, `!=`,
//! `=~`, `!~`, regexes anchored at both ends, a missing label counting as
//! the empty value) over the labels [`entry_label`] defines, and negated
//! line filters ([`FilterBuilder::not_contains`], [`FilterBuilder::not_regex`]).
//!
//! The filter implements [`Select`]: source and label conditions are
//! decided once per origin (the ring caches that, so they cost nothing per
//! entry), the rest per entry, cheapest first. Matchers on `stream` and
//! `level`, which come from each entry's flags, are decided per entry with
//! a table lookup.

use std::fmt;
use std::ops::Range;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};

use crate::entry::{EntryRef, Flags, Origin, Stream};
use crate::ring::Select;
use crate::timefmt::{self, TimeError, TimeRules};

/// The most memory one compiled regex may take.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Which entries a reader wants. `Filter::default()` takes every entry.
#[derive(Clone, Debug)]
pub struct Filter {
    /// The source patterns as given (for messages and for re-serialising).
    source_patterns: Vec<String>,
    /// The compiled patterns; `None` when no source condition was given.
    sources: Option<GlobSet>,
    /// Wanted streams; empty means any (and no stream).
    streams: Vec<Stream>,
    /// `(key, accepted values)`, sorted by key.
    labels: Vec<(String, Vec<String>)>,
    /// Entry time at or after this, ns.
    since: Option<u64>,
    /// Entry time strictly before this, ns.
    until: Option<u64>,
    /// Entry seq in this range.
    seqs: Range<u64>,
    /// The message must contain every one of these.
    contains: Vec<memmem::Finder<'static>>,
    /// The message must match every one of these.
    regexes: Vec<Regex>,
    /// The message must contain none of these.
    excludes: Vec<memmem::Finder<'static>>,
    /// The message must match none of these.
    not_regexes: Vec<Regex>,
    /// Label matchers decided per origin (every label but `stream` and `level`).
    origin_matchers: Vec<LabelMatcher>,
    /// Label matchers on `stream` and `level`, decided per entry.
    flag_matchers: Vec<LabelMatcher>,
    /// Whether the flag matchers pass, by `flags >> 2` (stream and level
    /// bits), for entries whose origin has no `stream` or `level` label of
    /// its own; `None` when there are no flag matchers.
    flag_table: Option<Box<[bool; 64]>>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            source_patterns: Vec::new(),
            sources: None,
            streams: Vec::new(),
            labels: Vec::new(),
            since: None,
            until: None,
            seqs: 0..u64::MAX,
            contains: Vec::new(),
            regexes: Vec::new(),
            excludes: Vec::new(),
            not_regexes: Vec::new(),
            origin_matchers: Vec::new(),
            flag_matchers: Vec::new(),
            flag_table: None,
        }
    }
}

/// LogQL's label operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: equal.
    Eq,
    /// `!=`: not equal.
    Ne,
    /// `=~`: the whole value matches the regex.
    Re,
    /// `!~`: the whole value does not match the regex.
    Nre,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

/// One LogQL label condition (`app=~"web|db"`), as Loki decides it: a
/// label the entry does not have counts as the empty value, and a regex
/// must match the whole value (it is anchored at both ends).
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    name: String,
    op: MatchOp,
    value: String,
    /// The anchored regex, for `=~` and `!~`.
    regex: Option<regex::Regex>,
}

impl LabelMatcher {
    /// Compiles a matcher; a regex that does not compile (or is larger than
    /// [`REGEX_SIZE_LIMIT`]) is an error naming the label.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<LabelMatcher, FilterError> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::Eq | MatchOp::Ne => None,
            MatchOp::Re | MatchOp::Nre => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| FilterError::Regex {
                        param: name.clone(),
                        error: e.to_string(),
                    })?,
            ),
        };
        Ok(LabelMatcher {
            name,
            op,
            value,
            regex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value or regex as written.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label value (`""` for a missing label) passes.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Eq, _) => value == self.value,
            (MatchOp::Ne, _) => value != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(value),
            (MatchOp::Nre, Some(re)) => !re.is_match(value),
            (MatchOp::Re | MatchOp::Nre, None) => {
                unreachable!("regex matchers compile their regex")
            }
        }
    }

    /// Whether this matcher on its own would select something specific:
    /// `=` or `=~` that the empty value does not pass. Loki refuses a
    /// selector without one, since it would select every stream.
    pub fn is_selective(&self) -> bool {
        matches!(self.op, MatchOp::Eq | MatchOp::Re) && !self.matches("")
    }
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// The value of label `name` of an entry, as the Loki API and LogQL see
/// it: `source` is the source name; `stream` and `level` come from the
/// entry's flags (`stdout`/`stderr`, a syslog severity name) and fall back
/// to an origin label of that name; every other name is an origin label.
pub fn entry_label<'a>(origin: &'a Origin, flags: Flags, name: &str) -> Option<&'a str> {
    match name {
        "source" => Some(origin.source.as_str()),
        "stream" => flags
            .stream()
            .map(Stream::as_str)
            .or_else(|| origin.label("stream")),
        "level" => flags
            .level()
            .map(crate::entry::Level::as_str)
            .or_else(|| origin.label("level")),
        _ => origin.label(name),
    }
}

/// Every label of an entry (see [`entry_label`]), sorted by name.
pub fn entry_labels(origin: &Origin, flags: Flags) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::with_capacity(origin.labels().len() + 3);
    out.push(("source", origin.source.as_str()));
    if let Some(s) = flags.stream() {
        out.push(("stream", s.as_str()));
    }
    if let Some(l) = flags.level().map(crate::entry::Level::as_str) {
        out.push(("level", l));
    }
    for (k, v) in origin.labels() {
        if !out.iter().any(|(name, _)| name == k) {
            out.push((k.as_str(), v.as_str()));
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out
}

/// Whether `name` is a label that comes from an entry's flags.
fn is_flag_label(name: &str) -> bool {
    name == "stream" || name == "level"
}

/// What was wrong with a filter parameter. Every variant names the
/// parameter, so an API can return it to the user as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// A time that did not parse.
    Time { param: String, error: TimeError },
    /// A stream other than `stdout` or `stderr`.
    Stream { param: String, value: String },
    /// A regex that did not compile (or is too big).
    Regex { param: String, error: String },
    /// A source pattern that did not compile.
    Source {
        param: String,
        pattern: String,
        error: String,
    },
    /// `label.` with no key, or a key with characters other than
    /// letters, digits, `_`, `-` and `.`.
    LabelKey { param: String },
    /// A seq that is not an unsigned integer.
    Seq { param: String, value: String },
    /// `since` is not before `until`: nothing could ever match.
    EmptyTimeRange { since: u64, until: u64 },
    /// A parameter that is not a filter parameter.
    Unknown { param: String },
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FilterError::Time { param, error } => write!(f, "parameter `{param}`: {error}"),
            FilterError::Stream { param, value } => write!(
                f,
                "parameter `{param}`: unknown stream {value:?}: expected stdout or stderr"
            ),
            FilterError::Regex { param, error } => {
                write!(f, "parameter `{param}`: bad regular expression: {error}")
            }
            FilterError::Source {
                param,
                pattern,
                error,
            } => write!(
                f,
                "parameter `{param}`: bad source pattern {pattern:?}: {error}"
            ),
            FilterError::LabelKey { param } => write!(
                f,
                "parameter `{param}`: a label parameter is `label.KEY=VALUE` with KEY made of \
                 letters, digits, `_`, `-` and `.`"
            ),
            FilterError::Seq { param, value } => write!(
                f,
                "parameter `{param}`: {value:?} is not a seq: expected an unsigned integer"
            ),
            FilterError::EmptyTimeRange { since, until } => write!(
                f,
                "parameters `since` ({}) and `until` ({}): since must be before until, \
                 otherwise nothing can match",
                timefmt::rfc3339_nanos(*since),
                timefmt::rfc3339_nanos(*until)
            ),
            FilterError::Unknown { param } => write!(
                f,
                "unknown parameter `{param}`: filter parameters are source, stream, \
                 label.KEY, since, until, since_seq, contains and regex"
            ),
        }
    }
}

impl std::error::Error for FilterError {}

/// Collects filter conditions, checks them, and compiles a [`Filter`].
#[derive(Clone, Debug, Default)]
pub struct FilterBuilder {
    sources: Vec<String>,
    streams: Vec<Stream>,
    labels: Vec<(String, String)>,
    since: Option<u64>,
    until: Option<u64>,
    seqs: Option<Range<u64>>,
    contains: Vec<Vec<u8>>,
    regexes: Vec<(String, String)>,
    excludes: Vec<Vec<u8>>,
    not_regexes: Vec<(String, String)>,
    matchers: Vec<LabelMatcher>,
    /// "Now" for relative times (`since=10m`); the clock when unset.
    now_ns: Option<u64>,
}

impl FilterBuilder {
    pub fn new() -> FilterBuilder {
        FilterBuilder::default()
    }

    /// Entries whose source matches `pattern` (several sources: any of them).
    pub fn source(mut self, pattern: impl Into<String>) -> Self {
        self.sources.push(pattern.into());
        self
    }

    /// Entries of this stream (several: any of them).
    pub fn stream(mut self, stream: Stream) -> Self {
        if !self.streams.contains(&stream) {
            self.streams.push(stream);
        }
        self
    }

    /// Entries whose origin has label `key` equal to `value` (the same key
    /// several times: any of the values).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Entries at or after this time (ns since the epoch).
    pub fn since(mut self, ns: u64) -> Self {
        self.since = Some(ns);
        self
    }

    /// Entries strictly before this time (ns since the epoch).
    pub fn until(mut self, ns: u64) -> Self {
        self.until = Some(ns);
        self
    }

    /// Entries with a seq in `range` (narrowing any range already set).
    pub fn seqs(mut self, range: Range<u64>) -> Self {
        self.seqs = Some(match self.seqs {
            Some(r) => r.start.max(range.start)..r.end.min(range.end),
            None => range,
        });
        self
    }

    /// Entries with a seq strictly after `seq`.
    pub fn after_seq(self, seq: u64) -> Self {
        self.seqs(seq.saturating_add(1)..u64::MAX)
    }

    /// Entries whose message contains `needle`.
    pub fn contains(mut self, needle: impl AsRef<[u8]>) -> Self {
        self.contains.push(needle.as_ref().to_vec());
        self
    }

    /// Entries whose message matches `pattern` (compiled by [`build`](Self::build)).
    pub fn regex(mut self, pattern: impl Into<String>) -> Self {
        self.regexes.push(("regex".to_string(), pattern.into()));
        self
    }

    /// Entries whose message does not contain `needle` (LogQL `!=`).
    pub fn not_contains(mut self, needle: impl AsRef<[u8]>) -> Self {
        self.excludes.push(needle.as_ref().to_vec());
        self
    }

    /// Entries whose message does not match `pattern` (LogQL `!~`).
    pub fn not_regex(mut self, pattern: impl Into<String>) -> Self {
        self.not_regexes.push(("regex".to_string(), pattern.into()));
        self
    }

    /// Entries whose labels ([`entry_label`]) pass `matcher`.
    pub fn matcher(mut self, matcher: LabelMatcher) -> Self {
        self.matchers.push(matcher);
        self
    }

    /// The time relative parameters count back from (default: the clock).
    pub fn now(mut self, now_ns: u64) -> Self {
        self.now_ns = Some(now_ns);
        self
    }

    /// Takes one query parameter. Returns `Ok(false)` when `key` is not a
    /// filter parameter (the caller may know it: `limit`, `format`, ...),
    /// and an error naming the parameter when its value is bad.
    pub fn param(&mut self, key: &str, value: &str) -> Result<bool, FilterError> {
        let time = |this: &mut Self| {
            let now = *this.now_ns.get_or_insert_with(timefmt::now_ns);
            timefmt::parse_time(value, now, TimeRules::RINGTAIL).map_err(|error| {
                FilterError::Time {
                    param: key.to_string(),
                    error,
                }
            })
        };
        match key {
            "source" => self.sources.push(value.to_string()),
            "stream" => {
                let s = Stream::parse(value).ok_or_else(|| FilterError::Stream {
                    param: key.to_string(),
                    value: value.to_string(),
                })?;
                *self = std::mem::take(self).stream(s);
            }
            "since" => self.since = Some(time(self)?),
            "until" => self.until = Some(time(self)?),
            "since_seq" => {
                let seq: u64 = value.trim().parse().map_err(|_| FilterError::Seq {
                    param: key.to_string(),
                    value: value.to_string(),
                })?;
                *self = std::mem::take(self).after_seq(seq);
            }
            "contains" => self.contains.push(value.as_bytes().to_vec()),
            "regex" => self.regexes.push((key.to_string(), value.to_string())),
            _ => match key.strip_prefix("label.") {
                Some(k) if valid_label_key(k) => {
                    self.labels.push((k.to_string(), value.to_string()));
                }
                Some(_) => {
                    return Err(FilterError::LabelKey {
                        param: key.to_string(),
                    })
                }
                None => return Ok(false),
            },
        }
        Ok(true)
    }

    /// Checks the conditions together and compiles the filter.
    pub fn build(self) -> Result<Filter, FilterError> {
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if since >= until {
                return Err(FilterError::EmptyTimeRange { since, until });
            }
        }
        let sources = if self.sources.is_empty() {
            None
        } else {
            let mut set = GlobSetBuilder::new();
            for p in &self.sources {
                let glob = GlobBuilder::new(&wildcard_glob(p))
                    .literal_separator(false)
                    .backslash_escape(false)
                    .build()
                    .map_err(|e| FilterError::Source {
                        param: "source".to_string(),
                        pattern: p.clone(),
                        error: e.kind().to_string(),
                    })?;
                set.add(glob);
            }
            Some(set.build().map_err(|e| FilterError::Source {
                param: "source".to_string(),
                pattern: self.sources.join(", "),
                error: e.kind().to_string(),
            })?)
        };
        let mut labels: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in self.labels {
            match labels.iter_mut().find(|(key, _)| *key == k) {
                Some((_, values)) => values.push(v),
                None => labels.push((k, vec![v])),
            }
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let compile_all = |list: &[(String, String)]| -> Result<Vec<Regex>, FilterError> {
            list.iter()
                .map(|(param, pattern)| {
                    RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .dfa_size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| FilterError::Regex {
                            param: param.clone(),
                            error: e.to_string(),
                        })
                })
                .collect()
        };
        let regexes = compile_all(&self.regexes)?;
        let not_regexes = compile_all(&self.not_regexes)?;
        let (flag_matchers, origin_matchers): (Vec<_>, Vec<_>) = self
            .matchers
            .into_iter()
            .partition(|m| is_flag_label(&m.name));
        let flag_table = (!flag_matchers.is_empty()).then(|| {
            let no_labels = Origin::default();
            let mut table = Box::new([false; 64]);
            for (bits, pass) in table.iter_mut().enumerate() {
                let flags = Flags::from_bits((bits as u8) << 2);
                *pass = flag_matchers
                    .iter()
                    .all(|m| m.matches(entry_label(&no_labels, flags, &m.name).unwrap_or("")));
            }
            table
        });
        Ok(Filter {
            source_patterns: self.sources,
            sources,
            streams: self.streams,
            labels,
            since: self.since,
            until: self.until,
            seqs: self.seqs.unwrap_or(0..u64::MAX),
            contains: self
                .contains
                .iter()
                .map(|n| memmem::Finder::new(n).into_owned())
                .collect(),
            regexes,
            excludes: self
                .excludes
                .iter()
                .map(|n| memmem::Finder::new(n).into_owned())
                .collect(),
            not_regexes,
            origin_matchers,
            flag_matchers,
            flag_table,
        })
    }
}

/// Label keys as Loki and Prometheus allow them, plus `.` and `-`: the one
/// rule for every front end (socket requests, HTTP filters, HTTP ingest).
pub fn valid_label_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A globset pattern in which only `*` and `?` are wildcards: globset's
/// other syntax (`[...]`, `{a,b}`, `**`) is escaped or folded, so a source
/// name such as `web[1]` matches itself.
fn wildcard_glob(pattern: &str) -> String {
    let mut g = String::with_capacity(pattern.len() + 8);
    for c in pattern.chars() {
        match c {
            '[' | ']' | '{' | '}' => {
                g.push('[');
                g.push(c);
                g.push(']');
            }
            '*' if g.ends_with('*') => {}
            c => g.push(c),
        }
    }
    g
}

impl Filter {
    /// A filter that takes every entry.
    pub fn all() -> Filter {
        Filter::default()
    }

    pub fn builder() -> FilterBuilder {
        FilterBuilder::new()
    }

    /// Builds a filter from query-parameter pairs (keys in the module
    /// docs); any other key is an error. Relative times count from now.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Filter, FilterError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut b = FilterBuilder::new();
        for (k, v) in pairs {
            if !b.param(k, v)? {
                return Err(FilterError::Unknown {
                    param: k.to_string(),
                });
            }
        }
        b.build()
    }

    /// Whether the filter takes every entry.
    pub fn is_all(&self) -> bool {
        self.sources.is_none()
            && self.streams.is_empty()
            && self.labels.is_empty()
            && self.since.is_none()
            && self.until.is_none()
            && self.seqs == (0..u64::MAX)
            && self.contains.is_empty()
            && self.regexes.is_empty()
            && self.excludes.is_empty()
            && self.not_regexes.is_empty()
            && self.origin_matchers.is_empty()
            && self.flag_matchers.is_empty()
    }

    /// Whether the filter decides by origin alone (its `entry` always
    /// passes an entry of a selected origin): a reader can then skip the
    /// per-entry call.
    pub fn decides_by_origin(&self) -> bool {
        self.seqs == (0..u64::MAX)
            && self.since.is_none()
            && self.until.is_none()
            && self.streams.is_empty()
            && self.flag_table.is_none()
            && self.contains.is_empty()
            && self.regexes.is_empty()
            && self.excludes.is_empty()
            && self.not_regexes.is_empty()
    }

    /// The source patterns, as given.
    pub fn source_patterns(&self) -> &[String] {
        &self.source_patterns
    }

    /// Entries at or after this time, ns (readers seek to it).
    pub fn since_ns(&self) -> Option<u64> {
        self.since
    }

    /// Entries strictly before this time, ns (readers stop at it: times
    /// never decrease in seq order).
    pub fn until_ns(&self) -> Option<u64> {
        self.until
    }

    /// The seqs the filter takes (readers start at `start`).
    pub fn seq_range(&self) -> Range<u64> {
        self.seqs.clone()
    }

    /// Whether a source name passes the source condition.
    pub fn source_matches(&self, source: &str) -> bool {
        self.sources.as_ref().is_none_or(|set| set.is_match(source))
    }
}

impl Select for Filter {
    fn origin(&self, origin: &Origin) -> bool {
        self.source_matches(&origin.source)
            && self.labels.iter().all(|(k, values)| {
                origin
                    .label(k)
                    .is_some_and(|v| values.iter().any(|w| w == v))
            })
            && self
                .origin_matchers
                .iter()
                .all(|m| m.matches(entry_label(origin, Flags::default(), &m.name).unwrap_or("")))
    }

    #[inline]
    fn entry(&self, e: &EntryRef<'_>) -> bool {
        if !self.seqs.contains(&e.seq) {
            return false;
        }
        if self.since.is_some_and(|t| e.time < t) || self.until.is_some_and(|t| e.time >= t) {
            return false;
        }
        if !self.streams.is_empty() && !e.flags.stream().is_some_and(|s| self.streams.contains(&s))
        {
            return false;
        }
        if let Some(table) = &self.flag_table {
            let pass = if e.origin.label("stream").is_none() && e.origin.label("level").is_none() {
                table[(e.flags.bits() >> 2) as usize]
            } else {
                self.flag_matchers
                    .iter()
                    .all(|m| m.matches(entry_label(e.origin, e.flags, &m.name).unwrap_or("")))
            };
            if !pass {
                return false;
            }
        }
        self.contains.iter().all(|f| f.find(e.msg).is_some())
            && self.excludes.iter().all(|f| f.find(e.msg).is_none())
            && self.regexes.iter().all(|r| r.is_match(e.msg))
            && self.not_regexes.iter().all(|r| !r.is_match(e.msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Flags;

    fn entry<'a>(
        origin: &'a Origin,
        seq: u64,
        time: u64,
        flags: Flags,
        msg: &'a [u8],
    ) -> EntryRef<'a> {
        EntryRef {
            seq,
            time,
            source_time: crate::entry::SourceTime::None,
            origin,
            flags,
            msg,
        }
    }

    fn passes(f: &Filter, e: &EntryRef<'_>) -> bool {
        f.origin(e.origin) && f.entry(e)
    }

    #[test]
    fn empty_filter_takes_everything() {
        let f = Filter::all();
        assert!(f.is_all());
        let o = Origin::new("");
        assert!(passes(&f, &entry(&o, 0, 0, Flags::default(), b"")));
        assert!(Filter::from_pairs([]).unwrap().is_all());
    }

    #[test]
    fn sources_exact_and_wildcards() {
        let f = Filter::builder()
            .source("web*")
            .source("db.out")
            .build()
            .unwrap();
        let ok = |s: &str| f.origin(&Origin::new(s));
        assert!(ok("web") && ok("web.out") && ok("web/x") && ok("db.out"));
        assert!(!ok("db") && !ok("xweb") && !ok("db.outx"));

        let f = Filter::builder().source("svc-?").build().unwrap();
        assert!(f.origin(&Origin::new("svc-1")) && !f.origin(&Origin::new("svc-12")));

        // Only * and ? are special.
        let f = Filter::builder()
            .source("web[1]")
            .source("a{b,c}")
            .source("x\\y")
            .source("u[")
            .build()
            .unwrap();
        for s in ["web[1]", "a{b,c}", "x\\y", "u["] {
            assert!(f.origin(&Origin::new(s)), "{s}");
        }
        assert!(!f.origin(&Origin::new("web1")) && !f.origin(&Origin::new("ab")));
        let f = Filter::builder()
            .source("a/**/b")
            .source("**")
            .build()
            .unwrap();
        assert!(f.origin(&Origin::new("anything")));
    }

    #[test]
    fn labels_streams_and_times() {
        let f = Filter::from_pairs([
            ("label.app", "nginx"),
            ("label.app", "caddy"),
            ("label.env", "prod"),
            ("stream", "stderr"),
            ("since", "100"),
            ("until", "200"),
        ])
        .unwrap();
        let s = 1_000_000_000u64;
        let o = Origin::new("x")
            .with_label("app", "caddy")
            .with_label("env", "prod");
        let err = Flags::default().with_stream(Some(Stream::Stderr));
        assert!(passes(&f, &entry(&o, 1, 100 * s, err, b"m")));
        assert!(
            !passes(&f, &entry(&o, 1, 200 * s, err, b"m")),
            "until is exclusive"
        );
        assert!(!passes(&f, &entry(&o, 1, 100 * s - 1, err, b"m")));
        assert!(
            !passes(&f, &entry(&o, 1, 150 * s, Flags::default(), b"m")),
            "no stream"
        );
        let out = Flags::default().with_stream(Some(Stream::Stdout));
        assert!(!passes(&f, &entry(&o, 1, 150 * s, out, b"m")));
        let o2 = Origin::new("x").with_label("app", "caddy");
        assert!(
            !passes(&f, &entry(&o2, 1, 150 * s, err, b"m")),
            "env missing"
        );
        let o3 = Origin::new("x")
            .with_label("app", "apache")
            .with_label("env", "prod");
        assert!(!passes(&f, &entry(&o3, 1, 150 * s, err, b"m")));
        assert_eq!(f.since_ns(), Some(100 * s));
        assert_eq!(f.until_ns(), Some(200 * s));
    }

    #[test]
    fn message_conditions() {
        let f = Filter::from_pairs([
            ("contains", "err"),
            ("regex", r"code=\d+$"),
            ("since_seq", "5"),
        ])
        .unwrap();
        let o = Origin::new("x");
        let e = |seq, m: &'static [u8]| entry(&o, seq, 0, Flags::default(), m);
        assert!(passes(&f, &e(6, b"error code=42")));
        assert!(
            !passes(&f, &e(5, b"error code=42")),
            "since_seq is exclusive"
        );
        assert!(!passes(&f, &e(6, b"warn code=42")));
        assert!(!passes(&f, &e(6, b"error code=x")));
        // Bytes that are not UTF-8 are searched as bytes.
        let f = Filter::builder()
            .contains(b"\xff\x00")
            .regex("^a")
            .build()
            .unwrap();
        assert!(passes(&f, &e(1, b"a \xff\x00 b")));
        assert!(!passes(&f, &e(1, b"a \xff b")));
        assert_eq!(f.seq_range(), 0..u64::MAX);
        let f = Filter::builder().after_seq(9).seqs(0..20).build().unwrap();
        assert_eq!(f.seq_range(), 10..20);
    }

    #[test]
    fn relative_times_use_the_given_now() {
        let now = 10_000 * 1_000_000_000u64;
        let mut b = FilterBuilder::new().now(now);
        assert!(b.param("since", "10m").unwrap());
        let f = b.build().unwrap();
        assert_eq!(f.since_ns(), Some(now - 600 * 1_000_000_000));
    }

    #[test]
    fn errors_name_the_parameter() {
        let err = |pairs: &[(&str, &str)]| Filter::from_pairs(pairs.iter().copied()).unwrap_err();
        let e = err(&[("since", "yesterday")]);
        assert!(matches!(e, FilterError::Time { .. }));
        assert!(e.to_string().starts_with("parameter `since`:"), "{e}");
        let e = err(&[("stream", "stdin")]);
        assert!(
            e.to_string().contains("`stream`") && e.to_string().contains("stdout"),
            "{e}"
        );
        let e = err(&[("regex", "(")]);
        assert!(
            e.to_string()
                .starts_with("parameter `regex`: bad regular expression"),
            "{e}"
        );
        let e = err(&[("regex", r"\w{1000}{1000}")]);
        assert!(matches!(e, FilterError::Regex { .. }), "size limit: {e}");
        let e = err(&[("label.", "x")]);
        assert!(e.to_string().contains("label.KEY"), "{e}");
        let e = err(&[("label.a b", "x")]);
        assert!(matches!(e, FilterError::LabelKey { .. }));
        let e = err(&[("since_seq", "-1")]);
        assert!(e.to_string().contains("`since_seq`"), "{e}");
        let e = err(&[("since", "200"), ("until", "100")]);
        assert!(matches!(e, FilterError::EmptyTimeRange { .. }), "{e}");
        let e = err(&[("limit", "5")]);
        assert_eq!(
            e,
            FilterError::Unknown {
                param: "limit".into()
            }
        );
        assert!(e.to_string().contains("label.KEY"));
        // The builder leaves unknown keys to its caller.
        let mut b = FilterBuilder::new();
        assert_eq!(b.param("limit", "5"), Ok(false));
    }

    #[test]
    fn logql_label_matchers() {
        let m = |name: &str, op, value: &str| LabelMatcher::new(name, op, value).unwrap();
        let web = Origin::new("web.out").with_label("app", "nginx");
        let db = Origin::new("db");
        let out = Flags::default().with_stream(Some(Stream::Stdout));
        let err = Flags::default()
            .with_stream(Some(Stream::Stderr))
            .with_level(Some(crate::entry::Level::Error));
        let f = Filter::builder()
            .matcher(m("source", MatchOp::Re, "web.*"))
            .matcher(m("app", MatchOp::Ne, "apache"))
            .build()
            .unwrap();
        assert!(!f.is_all());
        assert!(f.decides_by_origin());
        assert!(passes(&f, &entry(&web, 1, 0, out, b"m")));
        assert!(!passes(&f, &entry(&db, 1, 0, out, b"m")));
        // Anchored: "eb" does not match "web.out".
        let f = Filter::builder()
            .matcher(m("source", MatchOp::Re, "eb"))
            .build()
            .unwrap();
        assert!(!f.origin(&web));
        // A missing label is the empty value.
        let f = Filter::builder()
            .matcher(m("app", MatchOp::Eq, ""))
            .build()
            .unwrap();
        assert!(f.origin(&db) && !f.origin(&web));
        let f = Filter::builder()
            .matcher(m("app", MatchOp::Nre, "ngi.*"))
            .build()
            .unwrap();
        assert!(f.origin(&db) && !f.origin(&web));
        // stream and level come from the flags, per entry.
        let f = Filter::builder()
            .matcher(m("stream", MatchOp::Eq, "stderr"))
            .matcher(m("level", MatchOp::Re, "err.*|crit"))
            .build()
            .unwrap();
        assert!(!f.decides_by_origin());
        assert!(passes(&f, &entry(&web, 1, 0, err, b"m")));
        assert!(!passes(&f, &entry(&web, 1, 0, out, b"m")));
        let f = Filter::builder()
            .matcher(m("level", MatchOp::Eq, ""))
            .build()
            .unwrap();
        assert!(passes(&f, &entry(&web, 1, 0, out, b"m")));
        assert!(!passes(&f, &entry(&web, 1, 0, err, b"m")));
        // An origin label named level stands in where the flags have none.
        let tagged = Origin::new("x").with_label("level", "warn");
        let f = Filter::builder()
            .matcher(m("level", MatchOp::Eq, "warn"))
            .build()
            .unwrap();
        assert!(passes(&f, &entry(&tagged, 1, 0, out, b"m")));
        assert!(!passes(&f, &entry(&web, 1, 0, out, b"m")));
        assert!(m("app", MatchOp::Re, ".+").is_selective());
        assert!(!m("app", MatchOp::Re, ".*").is_selective());
        assert!(!m("app", MatchOp::Ne, "x").is_selective());
        assert!(!m("app", MatchOp::Eq, "").is_selective());
        assert!(LabelMatcher::new("app", MatchOp::Re, "(").is_err());
    }

    #[test]
    fn negated_line_filters() {
        let f = Filter::builder()
            .contains("GET")
            .not_contains("/health")
            .not_regex("(?i)bot")
            .build()
            .unwrap();
        assert!(!f.decides_by_origin());
        let o = Origin::new("x");
        let e = |m: &'static [u8]| entry(&o, 1, 0, Flags::default(), m);
        assert!(passes(&f, &e(b"GET /index")));
        assert!(!passes(&f, &e(b"GET /health")));
        assert!(!passes(&f, &e(b"GET / GoogleBOT")));
        assert!(!passes(&f, &e(b"POST /")));
    }

    #[test]
    fn entry_label_set() {
        let o = Origin::new("web")
            .with_label("app", "nginx")
            .with_label("zone", "a");
        let flags = Flags::default()
            .with_stream(Some(Stream::Stderr))
            .with_level(Some(crate::entry::Level::Warning));
        assert_eq!(
            entry_labels(&o, flags),
            vec![
                ("app", "nginx"),
                ("level", "warning"),
                ("source", "web"),
                ("stream", "stderr"),
                ("zone", "a")
            ]
        );
        assert_eq!(entry_labels(&o, Flags::default()).len(), 3);
        assert_eq!(entry_label(&o, flags, "level"), Some("warning"));
        assert_eq!(entry_label(&o, Flags::default(), "level"), None);
    }
}
