//! `| json`, `| json a="x.y"` and `| unpack`.
//!
//! Loki reads JSON with a lenient scanner (`jsonparser`), not a validating
//! decoder, and its results show it: trailing text after the object is
//! ignored, arrays are skipped whole by bracket matching, a value is
//! checked only as far as needed to find its end, and the error details
//! are that scanner's messages (`Value looks like object, but can't find
//! closing '}' symbol`). This module is a scanner with the same rules, so
//! that lines get the same labels and the same `__error_details__`; a
//! crate such as serde_json would reject lines Loki accepts. It also
//! copies nothing it does not keep: with parser hints it reads only the
//! wanted fields' values.
//!
//! Flattening (`| json`): nested objects join their keys with `_`; keys
//! are sanitized to label names (`a.b` → `a_b`, a leading digit gets `_`);
//! strings are unescaped (invalid UTF-8 becomes a space, a bad escape an
//! empty value), numbers kept as written, booleans `true`/`false`; `null`
//! and arrays give no label.
//!
//! [`plain_members`] tells a caller when a line is simple enough for its
//! members to be the labels as they stand (see `eval::range`).
//!
//! Bounds: objects nest at most [`MAX_DEPTH`] deep and one line yields at
//! most [`label_budget`] bytes of flattened labels; past either, the line
//! gets `__error__="JSONParserErr"` and the labels found so far.

use std::borrow::Cow;
use std::ops::Range;

use super::{Hints, LineLabels, DUPLICATE_SUFFIX};
use crate::serve::loki::logql::ast::Extraction;

pub const ERR_JSON: &str = "JSONParserErr";

/// The deepest object nesting `| json` descends into.
pub const MAX_DEPTH: usize = 64;

/// The most bytes of flattened names and values one line may produce.
pub fn label_budget(line_len: usize) -> usize {
    (64 << 10) + 4 * line_len
}

const MALFORMED_JSON: &str = "Malformed JSON error";
const MALFORMED_STRING: &str = "Value is string, but can't find closing '\"' symbol";
const MALFORMED_ARRAY: &str = "Value is array, but can't find closing ']' symbol";
const MALFORMED_OBJECT: &str = "Value looks like object, but can't find closing '}' symbol";
const MALFORMED_VALUE: &str =
    "Value looks like Number/Boolean/None, but can't find its end: ',' or '}' symbol";
const UNKNOWN_VALUE: &str = "Unknown value type";
const MALFORMED_ESCAPE: &str = "Encountered an invalid escape sequence in a string";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    String,
    Number,
    Object,
    Array,
    Boolean,
    Null,
}

/// Why scanning stopped early.
enum Stop {
    /// A scanner error: the message goes to `__error_details__`.
    Error(Cow<'static, str>),
    /// Every wanted label was found (not an error).
    Done,
}

fn next_token(data: &[u8], from: usize) -> Option<usize> {
    data[from.min(data.len())..]
        .iter()
        .position(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
        .map(|p| from + p)
}

/// How far [`string_end`] looks byte by byte before it searches.
const SHORT_STRING: usize = 32;

/// The end (past the closing quote) of a string whose body starts at
/// `from`, and whether it holds escapes.
fn string_end(data: &[u8], from: usize) -> Option<(usize, bool)> {
    // Strings in log lines are mostly a few bytes: a plain loop finds the
    // end of those sooner than setting up a vectorised search per string.
    let mut i = from;
    let short = data.len().min(from.saturating_add(SHORT_STRING));
    while i < short {
        match data[i] {
            b'"' => return Some((i + 1, false)),
            b'\\' => break,
            _ => i += 1,
        }
    }
    // No backslash before `i`: the general search may start there.
    let mut escaped = false;
    while let Some(p) = memchr::memchr2(b'"', b'\\', &data[i.min(data.len())..]) {
        i += p;
        if data[i] == b'\\' {
            escaped = true;
            i += 1;
            continue;
        }
        // An even number of backslashes before it: it ends here.
        let mut j = i;
        let mut slashes = 0;
        while j > from && data[j - 1] == b'\\' {
            slashes += 1;
            j -= 1;
        }
        if slashes % 2 == 0 {
            return Some((i + 1, escaped));
        }
        i += 1;
    }
    None
}

fn block_end(data: &[u8], from: usize, open: u8, close: u8) -> Option<usize> {
    let mut level = 0usize;
    let mut i = from;
    while i < data.len() {
        match data[i] {
            b'"' => i = string_end(data, i + 1)?.0 - 1,
            c if c == open => level += 1,
            c if c == close => {
                level -= 1;
                if level == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A scanned value: its kind, the span of its text (a string's without the
/// quotes), and where it ends.
type Scanned = (Kind, usize, usize, usize);

/// The value starting at `at` (not whitespace): its kind and the span of
/// its text (a string's without the quotes), and where it ends.
fn value_at(data: &[u8], at: usize) -> Result<Scanned, &'static str> {
    value_escaped_at(data, at).map(|(v, _)| v)
}

/// [`value_at`], and whether a string value holds a backslash (so that
/// callers need not look for one again).
fn value_escaped_at(data: &[u8], at: usize) -> Result<(Scanned, bool), &'static str> {
    match data[at] {
        b'"' => {
            let (end, escaped) = string_end(data, at + 1).ok_or(MALFORMED_STRING)?;
            Ok(((Kind::String, at + 1, end - 1, end), escaped))
        }
        b'[' => {
            let end = block_end(data, at, b'[', b']').ok_or(MALFORMED_ARRAY)?;
            Ok(((Kind::Array, at, end, end), false))
        }
        b'{' => {
            let end = block_end(data, at, b'{', b'}').ok_or(MALFORMED_OBJECT)?;
            Ok(((Kind::Object, at, end, end), false))
        }
        c => {
            let end = data[at..]
                .iter()
                .position(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t' | b',' | b'}' | b']'))
                .map_or(data.len(), |p| at + p);
            let text = &data[at..end];
            let kind = match c {
                b't' | b'f' if text == b"true" || text == b"false" => Kind::Boolean,
                b'n' if text == b"null" => Kind::Null,
                b'0'..=b'9' | b'-' => Kind::Number,
                _ => return Err(UNKNOWN_VALUE),
            };
            if end == at {
                return Err(MALFORMED_VALUE);
            }
            Ok(((kind, at, end, end), false))
        }
    }
}

/// Calls `f(key, kind, value, escaped)` for each member of the object at
/// `data` (leading whitespace allowed), with jsonparser's rules and
/// errors; `escaped`: a string value holds a backslash.
fn object_each(
    data: &[u8],
    mut f: impl FnMut(&[u8], Kind, &[u8], bool) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let err = |m: &'static str| Stop::Error(Cow::Borrowed(m));
    let mut i = next_token(data, 0).ok_or(err(MALFORMED_OBJECT))?;
    if data[i] != b'{' {
        return Err(err(MALFORMED_OBJECT));
    }
    i = next_token(data, i + 1).ok_or(err(MALFORMED_JSON))?;
    if data[i] == b'}' {
        return Ok(());
    }
    let mut key_buf = Vec::new();
    while i < data.len() {
        match data[i] {
            b'"' => i += 1,
            b'}' => return Ok(()),
            _ => return Err(err(MALFORMED_OBJECT)),
        }
        let (end, escaped) = string_end(data, i).ok_or(err(MALFORMED_JSON))?;
        let raw_key = &data[i..end - 1];
        i = end;
        let key: &[u8] = if escaped {
            key_buf.clear();
            if !unescape(raw_key, &mut key_buf) {
                return Err(err(MALFORMED_ESCAPE));
            }
            &key_buf
        } else {
            raw_key
        };
        i = next_token(data, i).ok_or(err(MALFORMED_JSON))?;
        if data[i] != b':' {
            return Err(err(MALFORMED_JSON));
        }
        i = next_token(data, i + 1).ok_or(err(MALFORMED_JSON))?;
        let ((kind, vs, ve, end), escaped) = value_escaped_at(data, i).map_err(err)?;
        f(key, kind, &data[vs..ve], escaped)?;
        i = next_token(data, end).ok_or(err(MALFORMED_ARRAY))?;
        match data[i] {
            b'}' => return Ok(()),
            b',' => i += 1,
            _ => return Err(err(MALFORMED_OBJECT)),
        }
        i = next_token(data, i).ok_or(err(MALFORMED_ARRAY))?;
    }
    Err(err(MALFORMED_OBJECT))
}

/// jsonparser's `Unescape` into `out`; `false` on a bad escape.
fn unescape(s: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let Some(&e) = s.get(i + 1) else {
            return false;
        };
        i += 2;
        let c = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hex4 = |at: usize| -> Option<u32> {
                    let h = s.get(at..at + 4)?;
                    u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
                };
                let Some(mut cp) = hex4(i) else {
                    return false;
                };
                i += 4;
                if (0xD800..0xDC00).contains(&cp) {
                    // A surrogate pair, or the replacement character.
                    match (s.get(i..i + 2), hex4(i + 2)) {
                        (Some(b"\\u"), Some(lo)) if (0xDC00..0xE000).contains(&lo) => {
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            i += 6;
                        }
                        _ => cp = 0xFFFD,
                    }
                } else if (0xDC00..0xE000).contains(&cp) {
                    cp = 0xFFFD;
                }
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                let mut b = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                continue;
            }
            _ => return false,
        };
        out.push(c);
    }
    true
}

/// A JSON string body as a label value: unescaped (a bad escape gives an
/// empty value) with invalid UTF-8 and U+FFFD as spaces, as Loki does.
pub fn string_value(raw: &[u8], tmp: &mut Vec<u8>) -> String {
    tmp.clear();
    let bytes: &[u8] = if raw.contains(&b'\\') {
        if !unescape(raw, tmp) {
            return String::new();
        }
        tmp
    } else {
        raw
    };
    let s = String::from_utf8_lossy(bytes);
    if s.contains('\u{FFFD}') {
        s.replace('\u{FFFD}', " ")
    } else {
        s.into_owned()
    }
}

/// Loki's `sanitizeLabelKey(key, true)` appended to `out`: trimmed, a
/// leading digit prefixed with `_` (when `out` is empty), every character
/// other than `[A-Za-z0-9_]` replaced by `_`.
fn append_sanitized(out: &mut String, key: &[u8]) {
    let key = String::from_utf8_lossy(key);
    let key = key.trim();
    if key.is_empty() {
        return;
    }
    if out.is_empty() && key.as_bytes()[0].is_ascii_digit() {
        out.push('_');
    }
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
}

/// The most members [`plain_members`] takes (it checks each name against
/// the ones before it).
pub const PLAIN_MAX: usize = 32;

/// The members of a "plain" JSON line, as `(name, value)` byte spans of
/// `line`, for callers that can then skip [`LineLabels`]: a line that
/// `| json` (extracting every field) would turn into exactly these labels,
/// in this order, with nothing else happening. `false` (and `out` is to be
/// ignored) unless every member is at the top level, named by a clean key
/// without escapes, and holds a number, a boolean, a null or an array
/// (no label), or an ASCII string without escapes; unless the names are
/// distinct and at most [`PLAIN_MAX`]; and unless the line scans without
/// error. Names are not checked against the stream labels (a clash gets
/// the `_extracted` suffix): that is the caller's part.
///
/// The label budget cannot run out here: a member of a plain line costs
/// at most 16 bytes more than its text, less than the budget allows.
pub fn plain_members(line: &[u8], out: &mut Vec<(Range<u32>, Range<u32>)>) -> bool {
    out.clear();
    let base = line.as_ptr() as usize;
    let span = |part: &[u8]| -> Option<Range<u32>> {
        let off = (part.as_ptr() as usize).wrapping_sub(base);
        (off <= line.len() && part.len() <= line.len() - off)
            .then(|| off as u32..(off + part.len()) as u32)
    };
    let r = object_each(line, |key, kind, value, escaped| {
        match kind {
            Kind::Array | Kind::Null => return Ok(()),
            Kind::Object => return Err(Stop::Done),
            Kind::String | Kind::Number | Kind::Boolean => {}
        }
        // Escapes and other text get repaired or replaced: not plain.
        if escaped || !value.is_ascii() {
            return Err(Stop::Done);
        }
        if !clean_key(key) || out.len() >= PLAIN_MAX {
            return Err(Stop::Done);
        }
        // An escaped key was unescaped into a buffer: not a span of the line.
        let (Some(k), Some(v)) = (span(key), span(value)) else {
            return Err(Stop::Done);
        };
        let name = &line[k.start as usize..k.end as usize];
        // Names of a length rarely share their first and last bytes too:
        // compare those before the bytes.
        let same = |n: &Range<u32>| {
            n.len() == name.len()
                && line[n.start as usize] == name[0]
                && line[n.end as usize - 1] == name[name.len() - 1]
                && &line[n.start as usize..n.end as usize] == name
        };
        if out.iter().any(|(n, _)| same(n)) {
            return Err(Stop::Done);
        }
        out.push((k, v));
        Ok(())
    });
    r.is_ok()
}

/// `| json`: every field, flattened.
pub struct JsonStage;

impl JsonStage {
    pub fn run(&self, line: &[u8], l: &mut LineLabels<'_>, hints: &Hints) {
        if hints.no_labels(l) {
            return;
        }
        let mut walk = Walk {
            prefix: Vec::new(),
            name: String::new(),
            budget: label_budget(line.len()),
            hints,
            text: std::str::from_utf8(line).ok(),
        };
        match walk.object(line, l, 0) {
            Ok(()) | Err(Stop::Done) => {}
            Err(Stop::Error(e)) => l.set_error(ERR_JSON, Some(&e)),
        }
    }
}

struct Walk<'h> {
    /// The keys of the enclosing objects.
    prefix: Vec<Vec<u8>>,
    /// The label name being built.
    name: String,
    /// Label bytes this line may still produce.
    budget: usize,
    hints: &'h Hints,
    /// The line, when it is UTF-8: checked once, so that its keys and
    /// values are borrowed as text without checking each again.
    text: Option<&'h str>,
}

/// `part` as text: sliced from `text` (the UTF-8 line it lies in) when it
/// can be, else checked on its own (a key unescaped into a buffer, or a
/// line that is not UTF-8).
fn as_str<'a>(text: Option<&'a str>, part: &'a [u8]) -> Option<&'a str> {
    if let Some(t) = text {
        let off = (part.as_ptr() as usize).wrapping_sub(t.as_ptr() as usize);
        if off <= t.len() && part.len() <= t.len() - off {
            // Splits at JSON punctuation (ASCII) are char boundaries;
            // `get` checks that anyway.
            if let Some(s) = t.get(off..off + part.len()) {
                return Some(s);
            }
        }
    }
    std::str::from_utf8(part).ok()
}

/// Whether a key is a label name as it is: `[A-Za-z_][A-Za-z0-9_]*`.
fn clean_key(key: &[u8]) -> bool {
    key.first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && key.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// A scalar's value as a label value, borrowed from the line when it needs
/// no unescaping or repair; `escaped`: a string holds a backslash; `text`:
/// the line, when it is UTF-8 (see [`as_str`]).
fn value_text<'a>(
    kind: Kind,
    raw: &'a [u8],
    escaped: bool,
    text: Option<&'a str>,
    tmp: &'a mut String,
) -> &'a str {
    match kind {
        Kind::Number => as_str(text, raw).unwrap_or("0"),
        Kind::Boolean => {
            if raw == b"true" {
                "true"
            } else {
                "false"
            }
        }
        _ => {
            if !escaped && raw.is_ascii() {
                return as_str(text, raw).expect("ASCII is UTF-8");
            }
            let mut bytes = Vec::new();
            *tmp = string_value(raw, &mut bytes);
            tmp
        }
    }
}

impl Walk<'_> {
    /// The flattened name of `key` in `self.name`.
    fn build_name(&mut self, key: &[u8]) {
        self.name.clear();
        for part in self.prefix.iter().map(Vec::as_slice).chain([key]) {
            if part.trim_ascii().is_empty() {
                continue;
            }
            if !self.name.is_empty() {
                self.name.push('_');
            }
            append_sanitized(&mut self.name, part);
        }
    }

    fn object(&mut self, data: &[u8], l: &mut LineLabels<'_>, depth: usize) -> Result<(), Stop> {
        if depth >= MAX_DEPTH {
            return Err(Stop::Error(Cow::Owned(format!(
                "JSON objects nested more than {MAX_DEPTH} deep: ringtail reads no deeper"
            ))));
        }
        let text = self.text;
        object_each(data, |key, kind, value, escaped| {
            match kind {
                Kind::String | Kind::Number | Kind::Boolean => {
                    // Most keys are label names already: no copy then.
                    let plain = self.prefix.is_empty() && clean_key(key);
                    if !plain {
                        self.build_name(key);
                    }
                    let name: &str = if plain {
                        as_str(text, key).expect("clean keys are ASCII")
                    } else {
                        &self.name
                    };
                    if name.is_empty() {
                        return Ok(());
                    }
                    let suffixed;
                    let name = if l.base_has(name) {
                        suffixed = format!("{name}{DUPLICATE_SUFFIX}");
                        suffixed.as_str()
                    } else {
                        name
                    };
                    if self.hints.wants(name, l) {
                        let mut tmp = String::new();
                        let v = value_text(kind, value, escaped, text, &mut tmp);
                        let cost = name.len() + v.len() + 16;
                        if cost > self.budget {
                            return Err(Stop::Error(Cow::Borrowed(
                                "the line's JSON flattens to more label bytes than ringtail \
                                 keeps for one line",
                            )));
                        }
                        self.budget -= cost;
                        l.set_new(name, v);
                    }
                }
                Kind::Object => {
                    self.prefix.push(key.to_vec());
                    self.build_name(b"");
                    let prefix = std::mem::take(&mut self.name);
                    let descend = self.hints.should_extract_prefix(&prefix);
                    self.name = prefix;
                    let r = if descend {
                        self.object(value, l, depth + 1)
                    } else {
                        Ok(())
                    };
                    self.prefix.pop();
                    return r;
                }
                Kind::Array | Kind::Null => {}
            }
            if self.hints.no_labels(l) {
                return Err(Stop::Done);
            }
            Ok(())
        })
    }
}

/// One step of a `| json a="x.y[0]"` path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

/// Parses Loki's JSON expression syntax: `a.b`, `a["b c"]`, `list[0]`,
/// any mix (`my.list[0]["field"]`).
pub fn parse_path(expr: &str) -> Result<Vec<PathStep>, String> {
    let b = expr.as_bytes();
    let mut steps = Vec::new();
    let mut i = 0;
    let bad = |what: &str| format!("cannot parse expression [{expr}]: {what}");
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut expect_field = true;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'.' => {
                if steps.is_empty() {
                    return Err(bad("unexpected '.'"));
                }
                expect_field = true;
                i += 1;
            }
            b'[' => {
                i += 1;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                if i < b.len() && b[i] == b'"' {
                    let start = i + 1;
                    let end = expr[start..]
                        .find(['"', ']'])
                        .map(|p| start + p)
                        .ok_or_else(|| bad("unterminated string"))?;
                    steps.push(PathStep::Key(expr[start..end].to_string()));
                    i = end + 1;
                } else {
                    let start = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i < b.len() && b[i] == b'.' {
                        return Err(bad("cannot use float as array index"));
                    }
                    let n: usize = expr[start..i]
                        .parse()
                        .map_err(|_| bad("expected an index or a quoted key in [...]"))?;
                    steps.push(PathStep::Index(n));
                }
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                if i >= b.len() || b[i] != b']' {
                    return Err(bad("expected ']'"));
                }
                i += 1;
                expect_field = false;
            }
            c if ident(c) && !c.is_ascii_digit() || (c.is_ascii_digit() && expect_field) => {
                if !expect_field {
                    return Err(bad("expected '.' or '[' between fields"));
                }
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                steps.push(PathStep::Key(expr[start..i].to_string()));
                expect_field = false;
            }
            c => return Err(bad(&format!("unexpected char {}", c as char))),
        }
    }
    if steps.is_empty() {
        return Err(bad("empty expression"));
    }
    Ok(steps)
}

/// Finds the value at `path` in `data`: `Ok(None)` when it is not there.
fn lookup<'d>(data: &'d [u8], path: &[PathStep]) -> Result<Option<(Kind, &'d [u8])>, &'static str> {
    let at = next_token(data, 0).ok_or(MALFORMED_JSON)?;
    let (kind, vs, ve, end) = value_at(data, at)?;
    let Some((step, rest)) = path.split_first() else {
        return Ok(Some((kind, &data[vs..ve])));
    };
    let whole = &data[at..end];
    let inner = match (step, kind) {
        (PathStep::Key(k), Kind::Object) => member(whole, k)?,
        (PathStep::Index(n), Kind::Array) => element(whole, *n)?,
        _ => None,
    };
    match inner {
        Some(v) => lookup(v, rest),
        None => Ok(None),
    }
}

/// The text of the first member named `key` of an object (`obj` starts
/// with `{`).
fn member<'d>(obj: &'d [u8], key: &str) -> Result<Option<&'d [u8]>, &'static str> {
    let mut i = 1;
    let mut buf = Vec::new();
    loop {
        i = next_token(obj, i).ok_or(MALFORMED_OBJECT)?;
        match obj[i] {
            b'}' => return Ok(None),
            b'"' => {}
            _ => return Err(MALFORMED_OBJECT),
        }
        let (end, escaped) = string_end(obj, i + 1).ok_or(MALFORMED_JSON)?;
        let raw = &obj[i + 1..end - 1];
        let matches = if escaped {
            buf.clear();
            unescape(raw, &mut buf) && buf == key.as_bytes()
        } else {
            raw == key.as_bytes()
        };
        i = next_token(obj, end).ok_or(MALFORMED_JSON)?;
        if obj[i] != b':' {
            return Err(MALFORMED_JSON);
        }
        let vat = next_token(obj, i + 1).ok_or(MALFORMED_JSON)?;
        let (_, _, _, vend) = value_at(obj, vat)?;
        if matches {
            return Ok(Some(&obj[vat..vend]));
        }
        i = next_token(obj, vend).ok_or(MALFORMED_OBJECT)?;
        match obj[i] {
            b',' => i += 1,
            b'}' => return Ok(None),
            _ => return Err(MALFORMED_OBJECT),
        }
    }
}

/// The text of element `n` of an array (`arr` starts with `[`).
fn element(arr: &[u8], n: usize) -> Result<Option<&[u8]>, &'static str> {
    let mut i = 1;
    let mut idx = 0;
    loop {
        i = next_token(arr, i).ok_or(MALFORMED_ARRAY)?;
        if arr[i] == b']' {
            return Ok(None);
        }
        let (_, _, _, vend) = value_at(arr, i)?;
        if idx == n {
            return Ok(Some(&arr[i..vend]));
        }
        idx += 1;
        i = next_token(arr, vend).ok_or(MALFORMED_ARRAY)?;
        match arr[i] {
            b',' => i += 1,
            b']' => return Ok(None),
            _ => return Err(MALFORMED_ARRAY),
        }
    }
}

/// `| json a="x.y", b`: the named paths only.
pub struct JsonPathsStage {
    paths: Vec<(String, Vec<PathStep>)>,
}

impl JsonPathsStage {
    pub fn compile(params: &[Extraction]) -> Result<JsonPathsStage, String> {
        let mut paths = Vec::new();
        for p in params {
            paths.push((p.label.clone(), parse_path(&p.expr)?));
        }
        Ok(JsonPathsStage { paths })
    }

    /// Loki's `JSONExpressionParser`: a line that does not start like JSON
    /// gets the error (without details); a path that is not there gives
    /// an empty label (unless a label of that name exists); objects and
    /// arrays come out as their JSON text.
    pub fn run(&self, line: &[u8], l: &mut LineLabels<'_>, hints: &Hints) {
        if line.is_empty() || hints.no_labels(l) {
            return;
        }
        if !matches!(line[0], b'"' | b'{' | b'[') {
            l.set_error(ERR_JSON, None);
            return;
        }
        let mut tmp = Vec::new();
        let mut missing = Vec::new();
        for (label, path) in &self.paths {
            let name = if l.base_has(label) {
                format!("{label}{DUPLICATE_SUFFIX}")
            } else {
                label.clone()
            };
            match lookup(line, path) {
                Ok(Some((kind, raw))) => {
                    let v = match kind {
                        Kind::Null => String::new(),
                        Kind::Object => String::from_utf8_lossy(raw).into_owned(),
                        _ => string_value(raw, &mut tmp),
                    };
                    l.set(&name, &v);
                }
                Ok(None) => missing.push(label),
                Err(e) => {
                    l.set_error(ERR_JSON, Some(e));
                    missing.push(label);
                }
            }
        }
        for label in missing {
            if l.get(label).is_none() {
                l.set(label, "");
            }
        }
    }
}

/// `| unpack`: string fields become labels and `_entry` the line, as
/// Promtail's `pack` stage wrote them. Returns whether it wrote a new line
/// into `out`.
pub fn unpack(line: &[u8], l: &mut LineLabels<'_>, hints: &Hints, out: &mut Vec<u8>) -> bool {
    if line.is_empty() || hints.no_labels(l) {
        return false;
    }
    if line[0] != b'{' {
        l.set_error(ERR_JSON, Some("expecting json object(6), but it is not"));
        return false;
    }
    let mut found: Vec<(String, String)> = Vec::new();
    let mut entry: Option<Vec<u8>> = None;
    let mut tmp = Vec::new();
    let r = object_each(line, |key, kind, value, escaped| {
        if kind != Kind::String {
            return Ok(());
        }
        if key == b"_entry" {
            let mut e = Vec::new();
            let raw: &[u8] = if escaped {
                if !unescape(value, &mut e) {
                    return Err(Stop::Error(Cow::Borrowed(MALFORMED_ESCAPE)));
                }
                &e
            } else {
                value
            };
            entry = Some(raw.to_vec());
            return Ok(());
        }
        let key = String::from_utf8_lossy(key);
        let key = if l.base_has(&key) {
            format!("{key}{DUPLICATE_SUFFIX}")
        } else {
            key.into_owned()
        };
        if !hints.wants(&key, l) {
            return Ok(());
        }
        let mut name = String::new();
        append_sanitized(&mut name, key.as_bytes());
        found.push((name, string_value(value, &mut tmp)));
        Ok(())
    });
    if let Err(Stop::Error(e)) = r {
        l.set_error(ERR_JSON, Some(&e));
        return false;
    }
    let Some(entry) = entry else {
        return false;
    };
    for (k, v) in &found {
        l.set(k, v);
    }
    out.clear();
    out.extend_from_slice(&entry);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::loki::logql::pipeline::Scratch;

    fn run_json(line: &str, base: &[(String, String)], hints: &Hints) -> Vec<(String, String)> {
        let mut s = Scratch::new();
        let mut l = LineLabels::new(base, &mut s);
        JsonStage.run(line.as_bytes(), &mut l, hints);
        l.to_vec()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // Loki docs, "Parser expression > JSON", and pkg/logql/log/parser_test.go
    // (Test_jsonParser).
    #[test]
    fn flattens_like_loki() {
        let line = r#"{"protocol":"HTTP/2.0","servers":["129.0.1.1","10.2.1.3"],"request":{"time":"6.032","method":"GET","host":"foo.grafana.net","size":"55","headers":{"Accept":"*/*","User-Agent":"curl/7.68.0"}},"response":{"status":401,"size":"228","latency_seconds":"6.031"}}"#;
        assert_eq!(
            run_json(line, &[], &Hints::all()),
            pairs(&[
                ("protocol", "HTTP/2.0"),
                ("request_headers_Accept", "*/*"),
                ("request_headers_User_Agent", "curl/7.68.0"),
                ("request_host", "foo.grafana.net"),
                ("request_method", "GET"),
                ("request_size", "55"),
                ("request_time", "6.032"),
                ("response_latency_seconds", "6.031"),
                ("response_size", "228"),
                ("response_status", "401"),
            ])
        );
        let base = pairs(&[("app", "x")]);
        assert_eq!(
            run_json(
                r#"{"app":"y","1a":true,"n":null," k ":"\u00e9\n"}"#,
                &base,
                &Hints::all()
            ),
            pairs(&[
                ("_1a", "true"),
                ("app", "x"),
                ("app_extracted", "y"),
                ("k", "é\n")
            ])
        );
        // The first of two equal keys wins.
        assert_eq!(
            run_json(r#"{"a":"1","a":"2"}"#, &[], &Hints::all()),
            pairs(&[("a", "1")])
        );
    }

    #[test]
    fn errors_like_jsonparser() {
        assert_eq!(
            run_json("INFO GET /", &[], &Hints::all()),
            pairs(&[
                ("__error__", ERR_JSON),
                ("__error_details__", MALFORMED_OBJECT)
            ])
        );
        assert_eq!(
            run_json(r#"{"a":"b","c"}"#, &[], &Hints::all()),
            pairs(&[
                ("__error__", ERR_JSON),
                ("__error_details__", MALFORMED_JSON),
                ("a", "b")
            ])
        );
        assert_eq!(
            run_json(r#"{"a":"b"} trailing"#, &[], &Hints::all()),
            pairs(&[("a", "b")])
        );
        assert_eq!(
            run_json(r#"{"a":xyz}"#, &[], &Hints::all())[1].1,
            UNKNOWN_VALUE
        );
        let deep = "{\"a\":".repeat(100) + "1" + &"}".repeat(100);
        assert_eq!(run_json(&deep, &[], &Hints::all())[0].1, ERR_JSON);
    }

    #[test]
    fn hints_stop_early() {
        let h = Hints::for_metric(&[], &["level".into()], false, false, None);
        assert_eq!(
            run_json(r#"{"level":"info","x":1, garbage"#, &[], &h),
            pairs(&[("level", "info")])
        );
        let none = Hints::for_metric(&[], &[], false, true, None);
        assert!(run_json("not json", &[], &none).is_empty());
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path(r#"pod.deployment.params[0]["param"]"#).unwrap(),
            vec![
                PathStep::Key("pod".into()),
                PathStep::Key("deployment".into()),
                PathStep::Key("params".into()),
                PathStep::Index(0),
                PathStep::Key("param".into())
            ]
        );
        assert!(parse_path("a[1.5]").is_err());
        assert!(parse_path("").is_err());
        let stage = JsonPathsStage::compile(&[
            Extraction {
                label: "first_server".into(),
                expr: "servers[0]".into(),
            },
            Extraction {
                label: "ua".into(),
                expr: r#"request.headers["User-Agent"]"#.into(),
            },
            Extraction {
                label: "headers".into(),
                expr: "request.headers".into(),
            },
            Extraction {
                label: "nope".into(),
                expr: "x.y".into(),
            },
        ])
        .unwrap();
        let line = r#"{"servers":["129.0.1.1","10.2.1.3"],"request":{"headers":{"Accept":"*/*","User-Agent":"curl/7.68.0"}}}"#;
        let mut s = Scratch::new();
        let mut l = LineLabels::new(&[], &mut s);
        stage.run(line.as_bytes(), &mut l, &Hints::all());
        assert_eq!(
            l.to_vec(),
            pairs(&[
                ("first_server", "129.0.1.1"),
                ("headers", r#"{"Accept":"*/*","User-Agent":"curl/7.68.0"}"#),
                ("nope", ""),
                ("ua", "curl/7.68.0"),
            ])
        );
        let mut l = LineLabels::new(&[], &mut s);
        stage.run(b"plain", &mut l, &Hints::all());
        assert_eq!(l.to_vec(), pairs(&[("__error__", ERR_JSON)]));
    }

    #[test]
    fn unpacks() {
        let mut s = Scratch::new();
        let mut l = LineLabels::new(&[], &mut s);
        let mut out = Vec::new();
        assert!(unpack(
            br#"{"container":"myapp","pod":"pod-3223f","_entry":"original log message"}"#,
            &mut l,
            &Hints::all(),
            &mut out
        ));
        assert_eq!(out, b"original log message");
        assert_eq!(
            l.to_vec(),
            pairs(&[("container", "myapp"), ("pod", "pod-3223f")])
        );
        let mut l = LineLabels::new(&[], &mut s);
        assert!(!unpack(br#"{"a":"b"}"#, &mut l, &Hints::all(), &mut out));
        assert!(l.to_vec().is_empty(), "no _entry: no labels");
        let mut l = LineLabels::new(&[], &mut s);
        assert!(!unpack(b" {}", &mut l, &Hints::all(), &mut out));
        assert_eq!(l.error(), Some(ERR_JSON));
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use crate::serve::loki::logql::pipeline::Scratch;

    #[test]
    #[ignore]
    fn time_json_lines() {
        let line = br#"{"level":"info","method":"GET","status":200,"latency_ms":123,"path":"/api/v1/r3","msg":"request served"}"#;
        let base = vec![("source".to_string(), "json-1".to_string())];
        let mut s = Scratch::new();
        let t = std::time::Instant::now();
        for _ in 0..1_000_000 {
            let mut l = LineLabels::new(&base, &mut s);
            JsonStage.run(line, &mut l, &Hints::all());
        }
        eprintln!("json all: {:?} per line", t.elapsed() / 1_000_000);
        let t = std::time::Instant::now();
        let mut key = Vec::new();
        for _ in 0..1_000_000 {
            let mut l = LineLabels::new(&base, &mut s);
            JsonStage.run(line, &mut l, &Hints::all());
            key.clear();
            l.for_each_sorted(|k, v| crate::serve::loki::logql::pipeline::key_push(&mut key, k, v));
        }
        eprintln!("json all + key: {:?} per line", t.elapsed() / 1_000_000);
    }
}
