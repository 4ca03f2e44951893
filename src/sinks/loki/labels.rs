//! An entry's Loki stream labels: which labels, under which names, and how
//! they are written in the push body.
//!
//! # Where labels come from, in priority order
//!
//! 1. the forwarder's static labels (`host="web-3"`, configured);
//! 2. `source` (the source name), `level` and `stream` (from the entry's
//!    flags, else an origin label of that name), as ringtail's own Loki API
//!    shows them ([`crate::filter::entry_label`]);
//! 3. the origin's labels, minus those configured to be left out: names
//!    that are already valid first, then the ones that needed sanitising,
//!    each group sorted by name.
//!
//! # Names: Loki's rule is `[a-zA-Z_][a-zA-Z0-9_]*`
//!
//! - each character outside `[a-zA-Z0-9_]` becomes `_`
//!   (`container.name` and `k8s-app` become `container_name`, `k8s_app`);
//! - a name starting with a digit gets a `_` in front (`1x` -> `_1x`);
//! - a name starting with `__` (reserved for Loki's internal labels) loses
//!   leading underscores down to one (`__meta` -> `_meta`);
//! - the empty name becomes `_`;
//! - names are cut at 1024 bytes and values at 2048 bytes (on a character
//!   boundary), Loki's default `max_label_name_length` and
//!   `max_label_value_length`: beyond those Loki refuses the whole stream.
//!
//! **Clashes**: when two labels end up with the same name, the one earlier
//! in the priority order above keeps it and the later one is dropped (so a
//! name that was valid beats one that became it by sanitising, and the
//! entry's `source`/`level`/`stream` beat origin labels of those names).
//! A label whose value is empty is dropped too: Loki treats it as absent.
//!
//! # At most [`LabelRules::max_labels`] (15, Loki's `max_label_names_per_series`)
//!
//! Labels beyond the limit are dropped from the end of the priority order:
//! origin labels first (sanitised names before valid ones, the last by
//! name first), never `source` or a static label unless those alone exceed
//! the limit. Dropped labels (by clash or by the limit) are not lost
//! silently: they are counted per entry, and with
//! [`Overflow::StructuredMetadata`] they travel as the entry's structured
//! metadata instead (Loki 3 stores and queries it; Loki 2 refuses it).
//!
//! # The selector text
//!
//! A stream's labels are sent as `{name="value", ...}` sorted by name, the
//! value written with Go's escapes (`\\`, `\"`, `\n`, `\r`, `\t`, other
//! control characters as `\u00XX`), which Loki's label parser reads back.

use std::fmt::Write as _;

use crate::entry::{Flags, Origin};
use crate::filter::entry_label;

/// Loki's default `max_label_names_per_series`.
pub const LOKI_MAX_LABELS: usize = 15;
/// Loki's default `max_label_name_length`.
pub const LOKI_MAX_NAME_LEN: usize = 1024;
/// Loki's default `max_label_value_length`.
pub const LOKI_MAX_VALUE_LEN: usize = 2048;

/// What happens to labels that do not fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Counted and dropped.
    #[default]
    Drop,
    /// Sent as the entry's structured metadata (Loki 3).
    StructuredMetadata,
}

/// How a forwarder labels its streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRules {
    /// At most this many labels per stream.
    pub max_labels: usize,
    /// Labels every stream gets, first in priority (names are sanitised too).
    pub static_labels: Vec<(String, String)>,
    /// Origin label names (as in ringtail) never sent as stream labels:
    /// high-cardinality ones such as a container id make Loki slow.
    pub exclude: Vec<String>,
    /// Where dropped labels go.
    pub overflow: Overflow,
}

impl Default for LabelRules {
    fn default() -> Self {
        LabelRules {
            max_labels: LOKI_MAX_LABELS,
            static_labels: Vec::new(),
            exclude: Vec::new(),
            overflow: Overflow::Drop,
        }
    }
}

/// The labels of one stream, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamLabels {
    /// `{name="value",...}`, sorted by name.
    pub selector: String,
    /// The kept labels, sorted by name.
    pub pairs: Vec<(String, String)>,
    /// Labels that did not fit, by sanitised name, in priority order.
    pub dropped: Vec<(String, String)>,
}

/// A name that Loki accepts, by the rules of the module doc.
pub fn sanitize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        out.push('_');
    }
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    let extra = out.len() - out.trim_start_matches('_').len();
    if extra > 1 {
        out.drain(..extra - 1);
    }
    if out.is_empty() {
        out.push('_');
    }
    out.truncate(LOKI_MAX_NAME_LEN);
    out
}

fn is_valid_name(name: &str) -> bool {
    crate::serve::loki::logql::valid_label_name(name)
        && !name.starts_with("__")
        && name.len() <= LOKI_MAX_NAME_LEN
}

fn clip_value(value: &str) -> &str {
    let mut end = value.len().min(LOKI_MAX_VALUE_LEN);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// The labels of entries of `origin` with `flags` (only stream and level
/// matter).
pub fn stream_labels(rules: &LabelRules, origin: &Origin, flags: Flags) -> StreamLabels {
    // Candidates in priority order: (name as sent, value).
    let mut candidates: Vec<(String, &str)> = Vec::with_capacity(origin.labels().len() + 8);
    for (k, v) in &rules.static_labels {
        candidates.push((sanitize_name(k), v));
    }
    for fixed in ["source", "level", "stream"] {
        if let Some(v) = entry_label(origin, flags, fixed) {
            candidates.push((fixed.to_string(), v));
        }
    }
    let rest = origin.labels().iter().filter(|(k, _)| {
        !matches!(k.as_str(), "source" | "level" | "stream")
            && !rules.exclude.iter().any(|x| x == k)
    });
    let (valid, fixed_up): (Vec<_>, Vec<_>) = rest.partition(|(k, _)| is_valid_name(k));
    // Origin labels are sorted by their own names; sanitised names sort
    // the same way except where a replaced character changes the order,
    // which only matters among clashing names: the first original name
    // wins.
    candidates.extend(valid.into_iter().map(|(k, v)| (k.clone(), v.as_str())));
    candidates.extend(
        fixed_up
            .into_iter()
            .map(|(k, v)| (sanitize_name(k), v.as_str())),
    );

    let mut kept: Vec<(String, String)> =
        Vec::with_capacity(candidates.len().min(rules.max_labels));
    let mut dropped = Vec::new();
    for (name, value) in candidates {
        let value = clip_value(value);
        if value.is_empty() {
            continue;
        }
        if kept.iter().any(|(n, _)| *n == name) || kept.len() >= rules.max_labels.max(1) {
            dropped.push((name, value.to_string()));
        } else {
            kept.push((name, value.to_string()));
        }
    }
    kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    StreamLabels {
        selector: selector_text(&kept),
        pairs: kept,
        dropped,
    }
}

/// `{name="value",...}` for pairs whose names are already valid.
pub fn selector_text(pairs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(
        2 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Stream;

    fn names(l: &StreamLabels) -> Vec<&str> {
        l.pairs.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn name_sanitising() {
        assert_eq!(sanitize_name("container.name"), "container_name");
        assert_eq!(sanitize_name("k8s-app"), "k8s_app");
        assert_eq!(sanitize_name("1x"), "_1x");
        assert_eq!(sanitize_name("__meta"), "_meta");
        assert_eq!(sanitize_name("___"), "_");
        assert_eq!(sanitize_name(""), "_");
        assert_eq!(sanitize_name("héllo wörld"), "h_llo_w_rld");
        assert_eq!(sanitize_name(&"a".repeat(5000)).len(), LOKI_MAX_NAME_LEN);
        for n in ["container.name", "1x", "__meta", "", "é", "a b"] {
            assert!(is_valid_name(&sanitize_name(n)), "{n:?}");
        }
    }

    #[test]
    fn entry_labels_with_flags_and_clashes() {
        let origin = Origin::new("web.out")
            .with_label("container.name", "web-1")
            .with_label("container_name", "exact")
            .with_label("level", "ignored-because-flags-win")
            .with_label("empty", "")
            .with_label("image", "nginx");
        let flags = Flags::default()
            .with_stream(Some(Stream::Stderr))
            .with_level(crate::entry::Level::from_severity(3));
        let rules = LabelRules {
            static_labels: vec![("host".into(), "node-1".into())],
            ..LabelRules::default()
        };
        let l = stream_labels(&rules, &origin, flags);
        assert_eq!(
            names(&l),
            [
                "container_name",
                "host",
                "image",
                "level",
                "source",
                "stream"
            ]
        );
        assert_eq!(
            l.selector,
            r#"{container_name="exact", host="node-1", image="nginx", level="error", source="web.out", stream="stderr"}"#
        );
        // The valid name beat the sanitised one; the empty value is gone.
        assert_eq!(
            l.dropped,
            [("container_name".to_string(), "web-1".to_string())]
        );
    }

    #[test]
    fn at_most_max_labels_dropping_origin_labels_last_first() {
        let mut origin = Origin::new("s");
        for i in 0..20 {
            origin.set_label(format!("l{i:02}"), "v");
        }
        origin.set_label("bad-name", "v");
        let l = stream_labels(&LabelRules::default(), &origin, Flags::default());
        assert_eq!(l.pairs.len(), 15);
        assert!(names(&l).contains(&"source"));
        // source + l00..l13 kept; l14..l19 and the sanitised name dropped.
        assert!(names(&l).contains(&"l13"));
        assert!(!names(&l).contains(&"l14"));
        let dropped: Vec<&str> = l.dropped.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            dropped,
            ["l14", "l15", "l16", "l17", "l18", "l19", "bad_name"]
        );

        let rules = LabelRules {
            exclude: vec!["l00".into()],
            max_labels: 2,
            ..LabelRules::default()
        };
        let l = stream_labels(&rules, &origin, Flags::default());
        assert_eq!(names(&l), ["l01", "source"]);
    }

    #[test]
    fn selector_escapes_values() {
        let pairs = vec![("a".to_string(), "q\"b\\s\nt\tc\u{1}é".to_string())];
        assert_eq!(selector_text(&pairs), r#"{a="q\"b\\s\nt\tc\u0001é"}"#);
        // ringtail's own LogQL parser (Go's escapes, as Loki's) reads it back.
        let m = crate::serve::loki::logql::parse_selector(&selector_text(&pairs), false).unwrap();
        assert_eq!(m[0].value, pairs[0].1);
        assert_eq!(selector_text(&[]), "{}");
    }

    #[test]
    fn long_values_are_clipped_on_a_char_boundary() {
        let origin = Origin::new("é".repeat(2000));
        let l = stream_labels(&LabelRules::default(), &origin, Flags::default());
        let v = &l.pairs[0].1;
        assert!(v.len() <= LOKI_MAX_VALUE_LEN && v.len() > LOKI_MAX_VALUE_LEN - 2);
    }
}
