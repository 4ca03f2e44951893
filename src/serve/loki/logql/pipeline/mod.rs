//! The log pipeline: what `| json | status >= 500 | line_format "..."`
//! does to one entry, compiled once per query and run per entry.
//!
//! | stage | file |
//! |-------|------|
//! | line filters `\|= != \|~ !~ \|> !>` | here ([`LineMatch`]) |
//! | `json`, `unpack` | [`json`] |
//! | `logfmt` | [`logfmt`] |
//! | `pattern`, `\|>` | [`pattern`] |
//! | `regexp` | here ([`RegexpStage`]) |
//! | label filters | [`label_filter`] |
//! | `line_format`, `label_format`, `decolorize`, `drop`, `keep` | [`format`] |
//! | the labels a stage reads and writes | [`labels`] |
//!
//! What it promises:
//! - Loki's results, stage by stage (each file says where a rule comes
//!   from), including `__error__`/`__error_details__` on a line a parser or
//!   filter could not read, which is kept, not dropped;
//! - Loki's *parser hints* ([`Hints`]): a metric query that needs only
//!   some labels extracts only those, and stops reading a line once it has
//!   them, as Loki does (so `sum by (level) (count_over_time({...} | json
//!   [5m]))` ignores a line's malformed tail after `level`, like Loki);
//! - line filters that come before any stage that rewrites the line run
//!   in the ring's [`Filter`](crate::filter::Filter) (see
//!   [`Pipeline::ring_filters`]): they decide before a message is even
//!   copied;
//! - bounded work and memory per line: every stage is linear in the line
//!   (templates are bounded by [`super::template`]), and labels live in
//!   one reused buffer ([`Scratch`]).

pub mod format;
pub mod json;
pub mod label_filter;
pub mod labels;
pub mod logfmt;
pub mod pattern;

use memchr::memmem;
use regex::bytes::{Regex, RegexBuilder};

use super::ast::{LineFilter, LineOp, Stage};
use crate::filter::REGEX_SIZE_LIMIT;

pub use labels::{LineLabels, Scratch, ERROR, ERROR_DETAILS};

/// The suffix a parser adds to a name the stream labels already have.
pub const DUPLICATE_SUFFIX: &str = "_extracted";

/// Which labels parsers extract: Loki's `ParserHint`. A metric query that
/// groups by a few labels extracts only those (and the labels its filters
/// and formats read); a log query extracts everything.
#[derive(Clone, Debug, Default)]
pub struct Hints {
    /// `None`: every label.
    required: Option<Vec<String>>,
    /// No label at all is needed: parsers do nothing.
    no_labels: bool,
}

impl Hints {
    /// Extract everything (log queries, and metric queries that keep every
    /// label).
    pub fn all() -> Hints {
        Hints::default()
    }

    /// Loki's `NewParserHint`: `stage_labels` are the labels the stages
    /// read; `groups`/`without`/`no_labels` the grouping the samples get;
    /// `metric_label` the unwrapped label.
    pub fn for_metric(
        stage_labels: &[String],
        groups: &[String],
        without: bool,
        no_labels: bool,
        metric_label: Option<&str>,
    ) -> Hints {
        let mut names: Vec<String> = Vec::new();
        let mut add = |l: &str| {
            if l.is_empty() {
                return;
            }
            for n in [Some(l), l.strip_suffix(DUPLICATE_SUFFIX)]
                .into_iter()
                .flatten()
            {
                if !names.iter().any(|x| x == n) {
                    names.push(n.to_string());
                }
            }
        };
        stage_labels.iter().for_each(|l| add(l));
        groups.iter().for_each(|l| add(l));
        if let Some(m) = metric_label {
            add(m);
        }
        if no_labels {
            return if names.is_empty() {
                Hints {
                    required: None,
                    no_labels: true,
                }
            } else {
                Hints {
                    required: Some(names),
                    no_labels: false,
                }
            };
        }
        if without || groups.is_empty() {
            return Hints::all();
        }
        Hints {
            required: Some(names),
            no_labels: false,
        }
    }

    pub fn should_extract(&self, name: &str) -> bool {
        self.required
            .as_ref()
            .is_none_or(|r| r.iter().any(|n| n == name))
    }

    pub fn should_extract_prefix(&self, prefix: &str) -> bool {
        self.required
            .as_ref()
            .is_none_or(|r| r.iter().any(|n| n.starts_with(prefix)))
    }

    fn all_required_extracted(&self, l: &LineLabels<'_>) -> bool {
        match &self.required {
            Some(r) if !r.is_empty() && l.extracted_count() >= r.len() => {
                r.iter().all(|n| l.extracted(n))
            }
            _ => false,
        }
    }

    /// Whether a parser has nothing left to extract in this line.
    #[inline]
    pub fn no_labels(&self, l: &LineLabels<'_>) -> bool {
        self.no_labels || self.all_required_extracted(l)
    }

    /// Whether a parser may set `name` now (a hinted name, not extracted
    /// yet in this line).
    #[inline]
    pub fn wants(&self, name: &str, l: &LineLabels<'_>) -> bool {
        (self.required.is_none() || self.should_extract(name)) && !l.extracted(name)
    }
}

/// A compiled line filter.
pub enum LineMatch {
    Contains(Vec<memmem::Finder<'static>>),
    Regex(Vec<Regex>),
    Pattern(Vec<pattern::Pattern>),
}

pub struct CompiledLineFilter {
    negative: bool,
    matcher: LineMatch,
}

impl CompiledLineFilter {
    pub fn compile(f: &LineFilter) -> Result<CompiledLineFilter, String> {
        let matcher = match f.op {
            LineOp::Contains | LineOp::NotContains => LineMatch::Contains(
                f.values
                    .iter()
                    .map(|v| memmem::Finder::new(v.as_bytes()).into_owned())
                    .collect(),
            ),
            LineOp::Matches | LineOp::NotMatches => LineMatch::Regex(
                f.values
                    .iter()
                    .map(|v| {
                        RegexBuilder::new(v)
                            .size_limit(REGEX_SIZE_LIMIT)
                            .dfa_size_limit(REGEX_SIZE_LIMIT)
                            .build()
                            .map_err(|e| format!("bad regular expression: {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            LineOp::Pattern | LineOp::NotPattern => LineMatch::Pattern(
                f.values
                    .iter()
                    .map(|v| pattern::Pattern::parse_filter(v))
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(CompiledLineFilter {
            negative: f.op.is_negative(),
            matcher,
        })
    }

    /// Whether the line passes: a positive filter when any value matches,
    /// a negative one when none does.
    pub fn passes(&self, line: &[u8]) -> bool {
        let any = match &self.matcher {
            LineMatch::Contains(fs) => fs.iter().any(|f| f.find(line).is_some()),
            LineMatch::Regex(rs) => rs.iter().any(|r| r.is_match(line)),
            LineMatch::Pattern(ps) => ps.iter().any(|p| p.test(line)),
        };
        any != self.negative
    }
}

/// `| regexp "..."`: named groups become labels.
pub struct RegexpStage {
    regex: Regex,
    /// `(group index, label name)`.
    names: Vec<(usize, String)>,
}

impl RegexpStage {
    /// Loki's `NewRegexpParser` checks: at least one group, every named
    /// group a valid and unique label name.
    pub fn compile(re: &str) -> Result<RegexpStage, String> {
        let regex = RegexBuilder::new(re)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("bad regular expression: {e}"))?;
        let mut names: Vec<(usize, String)> = Vec::new();
        for (i, n) in regex.capture_names().enumerate() {
            let Some(n) = n else { continue };
            if !super::parser::valid_label_name(n) {
                return Err(format!("invalid extracted label name '{n}'"));
            }
            if names.iter().any(|(_, m)| m == n) {
                return Err(format!("duplicate extracted label name '{n}'"));
            }
            names.push((i, n.to_string()));
        }
        if names.is_empty() {
            return Err("at least one named capture must be supplied, as in (?P<name>\\w+)".into());
        }
        Ok(RegexpStage { regex, names })
    }

    fn run(&self, line: &[u8], l: &mut LineLabels<'_>, hints: &Hints) {
        let Some(caps) = self.regex.captures(line) else {
            return;
        };
        for (i, name) in &self.names {
            let value = caps.get(*i).map_or(&b""[..], |m| m.as_bytes());
            set_extracted(l, hints, name, &String::from_utf8_lossy(value));
        }
    }
}

/// Sets a label a parser found under `name`: with the `_extracted` suffix
/// when the stream has the name, and only if the hints want it and no
/// parser extracted it in this line yet.
pub fn set_extracted(l: &mut LineLabels<'_>, hints: &Hints, name: &str, value: &str) {
    if l.base_has(name) {
        let suffixed = format!("{name}{DUPLICATE_SUFFIX}");
        if hints.wants(&suffixed, l) {
            l.set(&suffixed, value);
        }
    } else if hints.wants(name, l) {
        l.set(name, value);
    }
}

enum Compiled {
    Line(CompiledLineFilter),
    Json(json::JsonStage),
    JsonPaths(json::JsonPathsStage),
    Unpack,
    Logfmt(logfmt::LogfmtStage),
    Regexp(RegexpStage),
    Pattern(pattern::Pattern),
    LabelFilter(label_filter::CompiledLabelFilter),
    Format(format::FormatStage),
}

impl Compiled {
    fn compile(stage: &Stage) -> Result<Compiled, String> {
        Ok(match stage {
            Stage::Line(f) => Compiled::Line(CompiledLineFilter::compile(f)?),
            Stage::Json(params) if params.is_empty() => Compiled::Json(json::JsonStage),
            Stage::Json(params) => Compiled::JsonPaths(json::JsonPathsStage::compile(params)?),
            Stage::Unpack => Compiled::Unpack,
            Stage::Logfmt {
                strict,
                keep_empty,
                params,
            } => Compiled::Logfmt(logfmt::LogfmtStage::new(*strict, *keep_empty, params)),
            Stage::Regexp(re) => Compiled::Regexp(RegexpStage::compile(re)?),
            Stage::Pattern(p) => Compiled::Pattern(pattern::Pattern::parse_parser(p)?),
            Stage::LabelFilter(f) => {
                Compiled::LabelFilter(label_filter::CompiledLabelFilter::compile(f)?)
            }
            Stage::LineFormat(_)
            | Stage::LabelFormat(_)
            | Stage::Decolorize
            | Stage::Drop(_)
            | Stage::Keep(_) => Compiled::Format(format::FormatStage::compile(stage)?),
        })
    }
}

/// Compiles one stage, for the parser to report a bad one where it is.
pub fn check_stage(stage: &Stage) -> Result<(), String> {
    Compiled::compile(stage).map(|_| ())
}

/// Whether a stage changes the line the stages after it read.
fn rewrites_line(stage: &Stage) -> bool {
    matches!(
        stage,
        Stage::LineFormat(_) | Stage::Decolorize | Stage::Unpack
    )
}

/// The labels the stages read (Loki's `RequiredLabelNames`), for hints.
pub fn stage_label_names(stages: &[Stage]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stages {
        match s {
            Stage::LabelFilter(f) => label_filter::names(f, &mut out),
            Stage::LineFormat(_) | Stage::LabelFormat(_) => {
                if let Ok(f) = format::FormatStage::compile(s) {
                    out.extend(f.required_labels());
                }
            }
            _ => {}
        }
    }
    out
}

/// A compiled pipeline.
pub struct Pipeline {
    /// Line filters the ring's filter runs before the pipeline (they come
    /// before any stage that rewrites the line, and take one value each).
    pub ring_filters: Vec<LineFilter>,
    stages: Vec<Compiled>,
    hints: Hints,
}

impl Pipeline {
    pub fn compile(stages: &[Stage], hints: Hints) -> Result<Pipeline, String> {
        let mut ring_filters = Vec::new();
        let mut compiled = Vec::new();
        let mut rewritten = false;
        for s in stages {
            match s {
                Stage::Line(f)
                    if !rewritten
                        && f.values.len() == 1
                        && !matches!(f.op, LineOp::Pattern | LineOp::NotPattern) =>
                {
                    ring_filters.push(f.clone());
                }
                _ => {
                    rewritten |= rewrites_line(s);
                    compiled.push(Compiled::compile(s)?);
                }
            }
        }
        Ok(Pipeline {
            ring_filters,
            stages: compiled,
            hints,
        })
    }

    /// Whether every stage ran in the ring's filter: entries keep their
    /// stream labels and message.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Whether the pipeline is `| json` alone, extracting every field:
    /// then a line that [`json::plain_members`] takes gets exactly its
    /// members as labels, and the caller may use them directly.
    pub fn is_json_all(&self) -> bool {
        matches!(self.stages.as_slice(), [Compiled::Json(_)])
            && self.hints.required.is_none()
            && !self.hints.no_labels
    }

    /// Runs the stages over one entry (`msg`, at `ts_ns`); `false` when a
    /// stage dropped it. The line the entry ends with is
    /// [`final_line`](Self::final_line).
    pub fn run(&self, msg: &[u8], ts_ns: u64, l: &mut LineLabels<'_>) -> bool {
        let mut line = std::mem::take(&mut l.s.line);
        let mut spare = std::mem::take(&mut l.s.line_spare);
        let mut rewritten = false;
        let mut kept = true;
        for stage in &self.stages {
            let cur: &[u8] = if rewritten { &line } else { msg };
            let new_line = match stage {
                Compiled::Line(f) => {
                    kept = f.passes(cur);
                    false
                }
                Compiled::Json(j) => {
                    j.run(cur, l, &self.hints);
                    false
                }
                Compiled::JsonPaths(j) => {
                    j.run(cur, l, &self.hints);
                    false
                }
                Compiled::Unpack => json::unpack(cur, l, &self.hints, &mut spare),
                Compiled::Logfmt(p) => {
                    kept = p.run(cur, l, &self.hints);
                    false
                }
                Compiled::Regexp(r) => {
                    if !self.hints.no_labels(l) {
                        r.run(cur, l, &self.hints);
                    }
                    false
                }
                Compiled::Pattern(p) => {
                    if !self.hints.no_labels(l) {
                        p.extract(cur, l, &self.hints);
                    }
                    false
                }
                Compiled::LabelFilter(f) => {
                    kept = f.run(l);
                    false
                }
                Compiled::Format(f) => f.run(cur, ts_ns, l, &mut spare),
            };
            if new_line {
                std::mem::swap(&mut line, &mut spare);
                rewritten = true;
            }
            if !kept {
                break;
            }
        }
        l.s.line = line;
        l.s.line_spare = spare;
        l.s.line_rewritten = rewritten;
        kept
    }

    /// The line after [`run`](Self::run).
    pub fn final_line<'m>(msg: &'m [u8], l: &'m LineLabels<'_>) -> &'m [u8] {
        if l.s.line_rewritten {
            &l.s.line
        } else {
            msg
        }
    }
}

/// How a metric query groups the labels of its samples (Loki's
/// `GroupedLabels`).
#[derive(Clone, Debug, Default)]
pub struct SampleGrouping {
    /// No grouping: every label.
    pub groups: Option<Vec<String>>,
    pub without: bool,
    /// The sample has no labels (`sum(...)` pushed down, `absent_over_time`).
    pub no_labels: bool,
}

impl SampleGrouping {
    /// Calls `f` with each label of the sample, in no fixed order (a key
    /// built from them is made canonical with [`canonical_key`] once per
    /// series). A line with an error keeps every label, so that the error
    /// surfaces.
    pub fn for_each(&self, l: &mut LineLabels<'_>, mut f: impl FnMut(&str, &str)) {
        if l.has_error() {
            return l.for_each_unsorted(f);
        }
        if self.no_labels {
            return;
        }
        match &self.groups {
            None => l.for_each_unsorted(f),
            Some(g) if self.without => l.for_each_unsorted(|k, v| {
                if !g.iter().any(|n| n == k) {
                    f(k, v)
                }
            }),
            Some(g) => {
                // `g` is sorted; missing labels are left out.
                for name in g {
                    if let Some(v) = l.get(name) {
                        f(name, v);
                    }
                }
            }
        }
    }
}

/// Appends a label to a series key: names and values with their lengths,
/// so that no two label sets share a key.
pub fn key_push(key: &mut Vec<u8>, name: &str, value: &str) {
    key_push_bytes(key, name.as_bytes(), value.as_bytes());
}

/// [`key_push`] of UTF-8 text held as bytes.
#[inline]
pub fn key_push_bytes(key: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    key.reserve(8 + name.len() + value.len());
    key.extend_from_slice(&(name.len() as u32).to_le_bytes());
    key.extend_from_slice(name);
    key.extend_from_slice(&(value.len() as u32).to_le_bytes());
    key.extend_from_slice(value);
}

/// A key with its labels sorted by name: equal label sets, equal keys.
pub fn canonical_key(key: &[u8]) -> Box<[u8]> {
    let mut labels = key_labels(key);
    labels.sort();
    let mut out = Vec::with_capacity(key.len());
    for (k, v) in &labels {
        key_push(&mut out, k, v);
    }
    out.into()
}

/// The labels of a series key.
pub fn key_labels(mut key: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let take = |key: &mut &[u8]| -> String {
        let n = u32::from_le_bytes(key[..4].try_into().expect("4 bytes")) as usize;
        let s = String::from_utf8_lossy(&key[4..4 + n]).into_owned();
        *key = &key[4 + n..];
        s
    };
    while !key.is_empty() {
        let k = take(&mut key);
        let v = take(&mut key);
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(String, String)> {
        vec![("app".to_string(), "web".to_string())]
    }

    #[test]
    fn hints_follow_loki() {
        let h = Hints::for_metric(&[], &["level".into()], false, false, None);
        assert!(h.should_extract("level") && !h.should_extract("msg"));
        let h = Hints::for_metric(&[], &["level".into()], true, false, None);
        assert!(h.should_extract("msg"), "without: everything");
        let h = Hints::for_metric(&[], &[], false, true, None);
        assert!(h.no_labels, "sum() of a count needs no label");
        let h = Hints::for_metric(&["status".into()], &[], false, true, None);
        assert!(!h.no_labels && h.should_extract("status"));
        let h = Hints::for_metric(&[], &["level_extracted".into()], false, false, None);
        assert!(h.should_extract("level") && h.should_extract("level_extracted"));
    }

    #[test]
    fn line_filters_and_pushdown() {
        let stages = vec![
            Stage::Line(LineFilter {
                op: LineOp::Contains,
                values: vec!["GET".into()],
            }),
            Stage::Line(LineFilter {
                op: LineOp::NotContains,
                values: vec!["a".into(), "b".into()],
            }),
            Stage::LineFormat("x{{.app}}".into()),
            Stage::Line(LineFilter {
                op: LineOp::Contains,
                values: vec!["xweb".into()],
            }),
        ];
        let p = Pipeline::compile(&stages, Hints::all()).unwrap();
        assert_eq!(p.ring_filters.len(), 1);
        let b = base();
        let mut s = Scratch::new();
        let mut l = LineLabels::new(&b, &mut s);
        assert!(p.run(b"GET c", 0, &mut l));
        assert_eq!(Pipeline::final_line(b"GET c", &l), b"xweb");
        let mut l = LineLabels::new(&b, &mut s);
        assert!(!p.run(b"GET b", 0, &mut l), "!= a or b drops either");
    }

    #[test]
    fn regexp_stage() {
        assert!(RegexpStage::compile("(a)").is_err());
        assert!(RegexpStage::compile("(?P<a>x)(?P<a>y)").is_err());
        assert!(RegexpStage::compile("(?P<1a>x)").is_err());
        let stages = vec![Stage::Regexp(
            r"(?P<method>\w+) (?P<path>\S+)(?P<opt> opt)?".into(),
        )];
        let p = Pipeline::compile(&stages, Hints::all()).unwrap();
        let b = vec![("method".to_string(), "x".to_string())];
        let mut s = Scratch::new();
        let mut l = LineLabels::new(&b, &mut s);
        assert!(p.run(b"GET /a", 0, &mut l));
        assert_eq!(
            l.to_vec(),
            vec![
                ("method".to_string(), "x".to_string()),
                ("method_extracted".into(), "GET".into()),
                ("opt".into(), "".into()),
                ("path".into(), "/a".into())
            ]
        );
    }

    #[test]
    fn keys_round_trip() {
        let mut k = Vec::new();
        key_push(&mut k, "a", "1");
        key_push(&mut k, "b", "");
        assert_eq!(
            key_labels(&k),
            vec![("a".to_string(), "1".to_string()), ("b".into(), "".into())]
        );
    }
}
