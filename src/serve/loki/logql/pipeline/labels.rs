//! The label set of one entry while its pipeline runs: the stream labels
//! it started with, the labels parsers and formatters added, the labels
//! `drop`/`keep`/renames removed, and the pipeline error.
//!
//! The rules are Loki's `LabelsBuilder`:
//! - a parsed label overrides a stream label of the same name (parsers add
//!   the `_extracted` suffix themselves when the *stream* has the name);
//! - within one line the first parser to extract a name wins: a name once
//!   extracted is not extracted again, even after `drop` removed it;
//! - `__error__` and `__error_details__` are kept apart: only string label
//!   filters read `__error__`, `drop` clears them, `keep` never removes them;
//! - a stream label with an empty value does not exist.
//!
//! Memory: names and values live in one buffer reused from line to line
//! ([`Scratch`]), so a line costs no allocation once the buffer has grown;
//! lookups are linear for the usual handful of labels and hashed past
//! [`INDEX_FROM`], so a line with thousands of fields stays linear.

use std::ops::Range;

use rustc_hash::FxHashMap;

/// The error label and its details.
pub const ERROR: &str = "__error__";
pub const ERROR_DETAILS: &str = "__error_details__";

/// Labels per line from which lookups go through a hash index.
const INDEX_FROM: usize = 24;

type Span = Range<u32>;

/// Names with fast membership: linear while few, hashed past
/// [`INDEX_FROM`]. Names are spans of the scratch buffer.
#[derive(Default)]
struct NameIndex {
    /// name hash -> position in the owner's list (first with that hash).
    map: FxHashMap<u64, u32>,
}

fn hash_name(name: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(name)
}

/// Reusable buffers for one scan thread: cleared, not freed, per line.
#[derive(Default)]
pub struct Scratch {
    buf: String,
    /// Parsed (added or changed) labels: name and value spans of `buf`.
    parsed: Vec<(Span, Span)>,
    parsed_index: NameIndex,
    /// Names removed from the stream labels.
    deleted: Vec<Span>,
    /// Names extracted by a parser or formatter in this line (first wins).
    extracted: Vec<Span>,
    extracted_index: NameIndex,
    error: Option<Span>,
    error_details: Option<Span>,
    /// The line when a stage rewrote it.
    pub line: Vec<u8>,
    /// Spare buffer for the next rewrite.
    pub line_spare: Vec<u8>,
    /// Whether `line` holds the current line (else the entry's message).
    pub line_rewritten: bool,
    /// Output of sorted labels, reused.
    sorted: Vec<(u32, u32, u32, u32)>,
    /// The parsed labels while they are sorted, reused.
    sorted_parsed: Vec<(u32, u32, u32, u32)>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch::default()
    }
}

/// The labels of the entry the pipeline is on.
pub struct LineLabels<'a> {
    /// The stream labels, sorted by name.
    pub base: &'a [(String, String)],
    pub s: &'a mut Scratch,
}

impl<'a> LineLabels<'a> {
    /// Starts a line over `base`.
    pub fn new(base: &'a [(String, String)], s: &'a mut Scratch) -> LineLabels<'a> {
        s.buf.clear();
        s.parsed.clear();
        s.parsed_index.map.clear();
        s.deleted.clear();
        s.extracted.clear();
        s.extracted_index.map.clear();
        s.error = None;
        s.error_details = None;
        s.line_rewritten = false;
        LineLabels { base, s }
    }

    fn text(&self, span: &Span) -> &str {
        &self.s.buf[span.start as usize..span.end as usize]
    }

    fn push_text(&mut self, text: &str) -> Span {
        let start = self.s.buf.len() as u32;
        self.s.buf.push_str(text);
        start..self.s.buf.len() as u32
    }

    fn find_parsed(&self, name: &str) -> Option<usize> {
        let s = &*self.s;
        if s.parsed.len() < INDEX_FROM {
            return s.parsed.iter().position(|(n, _)| self.text(n) == name);
        }
        match s.parsed_index.map.get(&hash_name(name)) {
            Some(&i) if self.text(&s.parsed[i as usize].0) == name => Some(i as usize),
            // A hash collision: look the slow way.
            Some(_) => s.parsed.iter().position(|(n, _)| self.text(n) == name),
            None => None,
        }
    }

    /// Whether the stream labels have `name` (whatever was deleted since).
    pub fn base_has(&self, name: &str) -> bool {
        self.base_get(name).is_some()
    }

    fn base_get(&self, name: &str) -> Option<&'a str> {
        let base = self.base;
        // Parsers ask this for every field they read: for the usual few
        // stream labels, equality (lengths first) beats ordering them.
        let i = if base.len() <= 8 {
            base.iter().position(|(k, _)| k == name)
        } else {
            base.binary_search_by(|(k, _)| k.as_str().cmp(name)).ok()
        };
        i.map(|i| base[i].1.as_str()).filter(|v| !v.is_empty())
    }

    fn is_deleted(&self, name: &str) -> bool {
        self.s.deleted.iter().any(|d| self.text(d) == name)
    }

    /// The current value of `name`, as a label filter or template sees it
    /// (`__error__` is not a label here: see [`error`](Self::error)).
    pub fn get(&self, name: &str) -> Option<&str> {
        if let Some(i) = self.find_parsed(name) {
            return Some(self.text(&self.s.parsed[i].1));
        }
        if self.is_deleted(name) {
            return None;
        }
        self.base_get(name)
    }

    /// `get`, with `__error__` and `__error_details__` readable: what a
    /// template's `.name` and a string label filter see.
    pub fn get_with_errors(&self, name: &str) -> Option<&str> {
        match name {
            ERROR => self.error(),
            ERROR_DETAILS => self.error_details(),
            _ => self.get(name),
        }
    }

    /// Whether `name` was extracted in this line already.
    pub fn extracted(&self, name: &str) -> bool {
        let s = &*self.s;
        if s.extracted.len() < INDEX_FROM {
            return s.extracted.iter().any(|n| self.text(n) == name);
        }
        match s.extracted_index.map.get(&hash_name(name)) {
            Some(&i) if self.text(&s.extracted[i as usize]) == name => true,
            Some(_) => s.extracted.iter().any(|n| self.text(n) == name),
            None => false,
        }
    }

    /// How many names were extracted in this line.
    pub fn extracted_count(&self) -> usize {
        self.s.extracted.len()
    }

    /// Sets a parsed label (overriding a stream label of that name).
    pub fn set(&mut self, name: &str, value: &str) {
        if let Some(i) = self.find_parsed(name) {
            let v = self.push_text(value);
            self.s.parsed[i].1 = v;
            return;
        }
        let n = self.push_text(name);
        let v = self.push_text(value);
        self.s.parsed.push((n.clone(), v));
        if self.s.parsed.len() >= INDEX_FROM {
            if self.s.parsed.len() == INDEX_FROM {
                let hashes: Vec<(u64, u32)> = (0..self.s.parsed.len())
                    .map(|i| (hash_name(self.text(&self.s.parsed[i].0)), i as u32))
                    .collect();
                for (h, i) in hashes {
                    self.s.parsed_index.map.entry(h).or_insert(i);
                }
            } else {
                let i = (self.s.parsed.len() - 1) as u32;
                self.s.parsed_index.map.entry(hash_name(name)).or_insert(i);
            }
        }
        if !self.extracted(name) {
            self.s.extracted.push(n);
            let len = self.s.extracted.len();
            if len >= INDEX_FROM {
                if len == INDEX_FROM {
                    let hashes: Vec<(u64, u32)> = (0..len)
                        .map(|i| (hash_name(self.text(&self.s.extracted[i])), i as u32))
                        .collect();
                    for (h, i) in hashes {
                        self.s.extracted_index.map.entry(h).or_insert(i);
                    }
                } else {
                    self.s
                        .extracted_index
                        .map
                        .entry(hash_name(name))
                        .or_insert((len - 1) as u32);
                }
            }
        }
    }

    /// Sets a label no stage has extracted in this line yet (what a parser
    /// checked with [`Hints::wants`](super::Hints::wants)): the same as
    /// [`set`](Self::set) without looking the name up again.
    pub fn set_new(&mut self, name: &str, value: &str) {
        debug_assert!(!self.extracted(name));
        if self.s.parsed.len() + 1 >= INDEX_FROM {
            // Past a handful of labels the indexes need maintaining.
            return self.set(name, value);
        }
        let n = self.push_text(name);
        let v = self.push_text(value);
        self.s.parsed.push((n.clone(), v));
        self.s.extracted.push(n);
    }

    /// Removes a label, stream or parsed.
    pub fn delete(&mut self, name: &str) {
        if let Some(i) = self.find_parsed(name) {
            self.s.parsed.remove(i);
            self.rebuild_parsed_index();
        }
        if !self.is_deleted(name) {
            let n = self.push_text(name);
            self.s.deleted.push(n);
        }
    }

    fn rebuild_parsed_index(&mut self) {
        self.s.parsed_index.map.clear();
        if self.s.parsed.len() >= INDEX_FROM {
            let hashes: Vec<(u64, u32)> = (0..self.s.parsed.len())
                .map(|i| (hash_name(self.text(&self.s.parsed[i].0)), i as u32))
                .collect();
            for (h, i) in hashes {
                self.s.parsed_index.map.entry(h).or_insert(i);
            }
        }
    }

    pub fn error(&self) -> Option<&str> {
        self.s.error.as_ref().map(|s| self.text(s))
    }

    pub fn error_details(&self) -> Option<&str> {
        self.s.error_details.as_ref().map(|s| self.text(s))
    }

    pub fn has_error(&self) -> bool {
        self.s.error.is_some()
    }

    /// Sets `__error__` (and `__error_details__` when given).
    pub fn set_error(&mut self, kind: &str, details: Option<&str>) {
        let e = self.push_text(kind);
        self.s.error = Some(e);
        if let Some(d) = details {
            let d = self.push_text(d);
            self.s.error_details = Some(d);
        }
    }

    pub fn clear_error(&mut self) {
        self.s.error = None;
    }

    pub fn clear_error_details(&mut self) {
        self.s.error_details = None;
    }

    /// Whether nothing changed the stream labels.
    pub fn unchanged(&self) -> bool {
        self.s.parsed.is_empty()
            && self.s.deleted.is_empty()
            && self.s.error.is_none()
            && self.s.error_details.is_none()
    }

    /// Every label now, sorted by name, errors included; `f` gets each.
    pub fn for_each_sorted(&mut self, mut f: impl FnMut(&str, &str)) {
        let mut sorted = std::mem::take(&mut self.s.sorted);
        self.collect_sorted(&mut sorted);
        for &(ns, ne, vs, ve) in &sorted {
            f(self.slice(ns, ne), self.slice(vs, ve));
        }
        self.s.sorted = sorted;
    }

    /// Every label now, errors included, in no particular order (stream
    /// labels, then parsed ones as they were set): for keys that are
    /// sorted later, once per series instead of once per line.
    pub fn for_each_unsorted(&self, mut f: impl FnMut(&str, &str)) {
        let s = &*self.s;
        let deleted = !s.deleted.is_empty();
        for (k, v) in self.base {
            if v.is_empty() || (deleted && self.is_deleted(k)) || self.find_parsed(k).is_some() {
                continue;
            }
            f(k, v);
        }
        for (n, v) in &s.parsed {
            f(self.text(n), self.text(v));
        }
        if let Some(e) = &s.error {
            f(ERROR, self.text(e));
        }
        if let Some(d) = &s.error_details {
            f(ERROR_DETAILS, self.text(d));
        }
    }

    /// The labels as owned pairs, sorted by name.
    pub fn to_vec(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.for_each_sorted(|k, v| out.push((k.to_string(), v.to_string())));
        out
    }

    fn slice(&self, start: u32, end: u32) -> &str {
        // Bit 31 of `start` marks a stream label: (index, _) of `base`.
        if start & BASE_BIT != 0 {
            let (k, v) = &self.base[(start & !BASE_BIT) as usize];
            if end == 0 {
                k
            } else {
                v
            }
        } else {
            &self.s.buf[start as usize..end as usize]
        }
    }

    /// `(name start, name end, value start, value end)` of every label,
    /// sorted by name; stream labels are encoded with [`BASE_BIT`]. The
    /// stream labels are sorted already: only the parsed ones (usually a
    /// handful) are sorted, then the two runs are merged.
    fn collect_sorted(&mut self, out: &mut Vec<(u32, u32, u32, u32)>) {
        out.clear();
        // The errors join the parsed labels for one encoding.
        let mut parsed = std::mem::take(&mut self.s.sorted_parsed);
        parsed.clear();
        parsed.extend(
            self.s
                .parsed
                .iter()
                .map(|(n, v)| (n.start, n.end, v.start, v.end)),
        );
        for (name, span) in [
            (ERROR, self.s.error.clone()),
            (ERROR_DETAILS, self.s.error_details.clone()),
        ] {
            if let Some(v) = span {
                let n = self.push_text(name);
                parsed.push((n.start, n.end, v.start, v.end));
            }
        }
        parsed.sort_unstable_by(|a, b| self.slice(a.0, a.1).cmp(self.slice(b.0, b.1)));
        let deleted = !self.s.deleted.is_empty();
        let mut p = parsed.iter().copied().peekable();
        for (i, (k, v)) in self.base.iter().enumerate() {
            while let Some(&x) = p.peek() {
                if self.slice(x.0, x.1) < k.as_str() {
                    out.push(x);
                    p.next();
                } else {
                    break;
                }
            }
            if v.is_empty() || (deleted && self.is_deleted(k)) {
                continue;
            }
            // A parsed label of the same name replaces the stream's.
            if p.peek().is_some_and(|x| self.slice(x.0, x.1) == k.as_str()) {
                continue;
            }
            out.push((i as u32 | BASE_BIT, 0, i as u32 | BASE_BIT, 1));
        }
        out.extend(p);
        self.s.sorted_parsed = parsed;
    }
}

const BASE_BIT: u32 = 1 << 31;

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(String, String)> {
        vec![
            ("app".into(), "web".into()),
            ("empty".into(), "".into()),
            ("level".into(), "info".into()),
        ]
    }

    #[test]
    fn parsed_overrides_deleted_hides_errors_are_apart() {
        let b = base();
        let mut s = Scratch::new();
        let mut l = LineLabels::new(&b, &mut s);
        assert!(l.base_has("app") && !l.base_has("empty"));
        assert_eq!(l.get("empty"), None);
        l.set("level", "error");
        l.set("status", "500");
        assert_eq!(l.get("level"), Some("error"));
        assert!(l.extracted("status") && !l.extracted("app"));
        l.delete("app");
        assert_eq!(l.get("app"), None);
        assert!(l.base_has("app"));
        l.set_error("JSONParserErr", Some("bad"));
        assert_eq!(l.get("__error__"), None);
        assert_eq!(l.get_with_errors("__error__"), Some("JSONParserErr"));
        assert_eq!(
            l.to_vec(),
            vec![
                ("__error__".to_string(), "JSONParserErr".to_string()),
                ("__error_details__".into(), "bad".into()),
                ("level".into(), "error".into()),
                ("status".into(), "500".into()),
            ]
        );
        l.delete("status");
        assert!(l.extracted("status"), "a dropped name stays extracted");
        l.clear_error();
        l.clear_error_details();
        assert_eq!(l.to_vec(), vec![("level".to_string(), "error".to_string())]);
    }

    #[test]
    fn many_labels_use_the_index() {
        let b = base();
        let mut s = Scratch::new();
        let mut l = LineLabels::new(&b, &mut s);
        for i in 0..1000 {
            l.set(&format!("k{i}"), &i.to_string());
        }
        assert_eq!(l.get("k999"), Some("999"));
        assert_eq!(l.get("k0"), Some("0"));
        assert!(l.extracted("k500") && !l.extracted("k1000"));
        l.delete("k3");
        assert_eq!(l.get("k3"), None);
        assert_eq!(l.get("k4"), Some("4"));
        l.set("k4", "x");
        assert_eq!(l.get("k4"), Some("x"));
        assert_eq!(l.to_vec().len(), 999 + 2);
        // Reused for the next line: empty again.
        let l = LineLabels::new(&b, &mut s);
        assert!(l.unchanged() && l.get("k1").is_none());
    }
}
