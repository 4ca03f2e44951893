//! `| logfmt`, with `--strict`, `--keep-empty` and the parameter form
//! (`| logfmt host, fwd_ip="fwd"`).
//!
//! The decoder follows go-logfmt as Loki adapted it
//! (`pkg/logql/log/logfmt/decode.go`): a key runs to `=` or a space; a
//! value is bare (to the next space; `=` or `"` inside is an error) or
//! quoted with JSON-style escapes; a key with no `=` has no value. Without
//! `--strict` a bad pair is skipped and decoding goes on; with it,
//! decoding stops and the line gets `__error__="LogfmtParserErr"` with
//! the decoder's message (`logfmt syntax error at pos 5 : unexpected '='`).
//! Keys are sanitized to label names; empty values are dropped unless
//! `--keep-empty`; invalid UTF-8 in a value becomes spaces.

use super::{Hints, LineLabels, DUPLICATE_SUFFIX};
use crate::serve::loki::logql::ast::Extraction;

pub const ERR_LOGFMT: &str = "LogfmtParserErr";

/// One logfmt line being decoded.
pub struct Decoder<'a> {
    line: &'a [u8],
    pos: usize,
    /// The first error, as Loki words it.
    pub err: Option<String>,
}

/// A decoded pair; `value` is `None` for a key without `=`.
pub struct Pair<'a> {
    pub key: &'a [u8],
    pub value: Option<std::borrow::Cow<'a, [u8]>>,
}

impl<'a> Decoder<'a> {
    pub fn new(line: &'a [u8]) -> Decoder<'a> {
        Decoder {
            line,
            pos: 0,
            err: None,
        }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    fn error(&mut self, msg: String) {
        self.err = Some(format!(
            "logfmt syntax error at pos {} : {msg}",
            self.pos + 1
        ));
    }

    fn unexpected(&mut self, c: u8) {
        let shown = if c.is_ascii_graphic() || c == b' ' {
            format!("'{}'", c as char)
        } else {
            format!("'\\x{c:02x}'")
        };
        self.error(format!("unexpected {shown}"));
    }

    fn skip_value(&mut self) -> Option<Pair<'a>> {
        while self.pos < self.line.len() && self.line[self.pos] > b' ' {
            self.pos += 1;
        }
        None
    }

    /// The next pair; `None` at the end of the line or after an error.
    pub fn next_pair(&mut self) -> Option<Pair<'a>> {
        let line = self.line;
        // Garbage before the key.
        while self.pos < line.len() && line[self.pos] <= b' ' {
            self.pos += 1;
        }
        if self.pos >= line.len() {
            return None;
        }
        let start = self.pos;
        let mut multibyte = false;
        while self.pos < line.len() {
            let c = line[self.pos];
            if c == b'=' {
                if self.pos == start {
                    self.unexpected(c);
                    return self.skip_value();
                }
                let key = &line[start..self.pos];
                if multibyte && std::str::from_utf8(key).is_err() {
                    self.error("invalid key".into());
                    return self.skip_value();
                }
                return self.value(key);
            } else if c == b'"' {
                self.unexpected(c);
                return self.skip_value();
            } else if c <= b' ' {
                let key = &line[start..self.pos];
                if multibyte && std::str::from_utf8(key).is_err() {
                    self.error("invalid key".into());
                    return None;
                }
                return Some(Pair { key, value: None });
            } else if c >= 0x80 {
                multibyte = true;
            }
            self.pos += 1;
        }
        let key = &line[start..];
        if multibyte && std::str::from_utf8(key).is_err() {
            self.error("invalid key".into());
            return None;
        }
        Some(Pair { key, value: None })
    }

    /// After `key=`.
    fn value(&mut self, key: &'a [u8]) -> Option<Pair<'a>> {
        let line = self.line;
        self.pos += 1;
        if self.pos >= line.len() || line[self.pos] <= b' ' {
            return Some(Pair { key, value: None });
        }
        if line[self.pos] == b'"' {
            return self.quoted(key);
        }
        let start = self.pos;
        while self.pos < line.len() {
            let c = line[self.pos];
            if c == b'=' || c == b'"' {
                self.unexpected(c);
                return self.skip_value();
            }
            if c <= b' ' {
                break;
            }
            self.pos += 1;
        }
        let v = &line[start..self.pos];
        Some(Pair {
            key,
            value: (!v.is_empty()).then_some(std::borrow::Cow::Borrowed(v)),
        })
    }

    fn quoted(&mut self, key: &'a [u8]) -> Option<Pair<'a>> {
        let line = self.line;
        let start = self.pos;
        let (mut has_esc, mut esc) = (false, false);
        let mut i = start + 1;
        while i < line.len() {
            let c = line[i];
            if esc {
                esc = false;
            } else if c == b'\\' {
                has_esc = true;
                esc = true;
            } else if c == b'"' {
                self.pos = i + 1;
                let body = &line[start + 1..i];
                if has_esc {
                    return match unquote(body) {
                        Some(v) => Some(Pair {
                            key,
                            value: Some(std::borrow::Cow::Owned(v)),
                        }),
                        None => {
                            self.error("invalid quoted value".into());
                            None
                        }
                    };
                }
                return Some(Pair {
                    key,
                    value: (!body.is_empty()).then_some(std::borrow::Cow::Borrowed(body)),
                });
            }
            i += 1;
        }
        self.pos = line.len();
        self.error("unterminated quoted value".into());
        None
    }
}

/// The body of a quoted value with JSON-style escapes.
fn unquote(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'"' | b'\\' | b'/' | b'\'' => out.push(e),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let h = body.get(i..i + 4)?;
                let cp = u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
                i += 4;
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                let mut b = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A key as a label name, or `None` when nothing is left of it.
fn sanitize(key: &[u8]) -> Option<String> {
    let key = String::from_utf8_lossy(key);
    let key = key.trim();
    if key.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(key.len() + 1);
    if key.as_bytes()[0].is_ascii_digit() {
        out.push('_');
    }
    out.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    Some(out)
}

/// A value as a label value: invalid UTF-8 (and U+FFFD) become spaces.
fn value_text(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if s.contains('\u{FFFD}') {
        s.replace('\u{FFFD}', " ")
    } else {
        s.into_owned()
    }
}

pub struct LogfmtStage {
    strict: bool,
    keep_empty: bool,
    /// `(label, key)` of the parameter form; empty: every pair.
    params: Vec<(String, String)>,
}

impl LogfmtStage {
    pub fn new(strict: bool, keep_empty: bool, params: &[Extraction]) -> LogfmtStage {
        LogfmtStage {
            strict,
            keep_empty,
            params: params
                .iter()
                .map(|e| (e.label.clone(), e.expr.clone()))
                .collect(),
        }
    }

    /// Always keeps the line.
    pub fn run(&self, line: &[u8], l: &mut LineLabels<'_>, hints: &Hints) -> bool {
        if hints.no_labels(l) {
            return true;
        }
        if self.params.is_empty() {
            self.run_all(line, l, hints);
        } else {
            self.run_params(line, l, hints);
        }
        true
    }

    fn run_all(&self, line: &[u8], l: &mut LineLabels<'_>, hints: &Hints) {
        let mut dec = Decoder::new(line);
        while !dec.at_end() {
            let Some(pair) = dec.next_pair() else {
                if self.strict && dec.err.is_some() {
                    break;
                }
                continue;
            };
            let Some(mut key) = sanitize(pair.key) else {
                continue;
            };
            if l.base_has(&key) {
                key.push_str(DUPLICATE_SUFFIX);
            }
            if !hints.wants(&key, l) {
                continue;
            }
            let value = pair.value.as_deref().map(value_text).unwrap_or_default();
            if !self.keep_empty && value.is_empty() {
                continue;
            }
            l.set(&key, &value);
            if hints.no_labels(l) {
                break;
            }
        }
        if self.strict {
            if let Some(e) = dec.err {
                l.set_error(ERR_LOGFMT, Some(&e));
            }
        }
    }

    /// Loki's `LogfmtExpressionParser`: each requested label exists (empty
    /// until found); a key matching a requested expression takes the
    /// label's name; later duplicates win.
    fn run_params(&self, line: &[u8], l: &mut LineLabels<'_>, _hints: &Hints) {
        for (label, _) in &self.params {
            if !l.base_has(label) {
                l.set(label, "");
            }
        }
        let mut dec = Decoder::new(line);
        while !dec.at_end() {
            let Some(pair) = dec.next_pair() else {
                if self.strict && dec.err.is_some() {
                    break;
                }
                continue;
            };
            let Some(mut key) = sanitize(pair.key) else {
                continue;
            };
            if let Some((label, _)) = self.params.iter().find(|(_, k)| *k == key) {
                key = label.clone();
            }
            if !self.params.iter().any(|(label, _)| *label == key) {
                continue;
            }
            if l.base_has(&key) {
                key.push_str(DUPLICATE_SUFFIX);
            }
            let value = match pair.value.as_deref() {
                Some(v) if std::str::from_utf8(v).is_ok() => value_text(v),
                _ => String::new(),
            };
            l.set(&key, &value);
        }
        if self.strict {
            if let Some(e) = dec.err {
                l.set_error(ERR_LOGFMT, Some(&e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::loki::logql::pipeline::Scratch;

    fn run(stage: &LogfmtStage, line: &str) -> Vec<(String, String)> {
        let base = vec![("app".to_string(), "x".to_string())];
        let mut s = Scratch::new();
        let mut l = LineLabels::new(&base, &mut s);
        stage.run(line.as_bytes(), &mut l, &Hints::all());
        l.to_vec().into_iter().filter(|(k, _)| k != "app").collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // Loki docs "Parser expression > logfmt" and pkg/logql/log/parser_test.go
    // (Test_logfmtParser_Parse, Test_logfmtParser_strict).
    #[test]
    fn pairs_flags_and_errors() {
        let plain = LogfmtStage::new(false, false, &[]);
        assert_eq!(
            run(
                &plain,
                r#"at=info method=GET path=/ host=grafana.net fwd="124.133.124.161" service=8ms status=200"#
            ),
            pairs(&[
                ("at", "info"),
                ("fwd", "124.133.124.161"),
                ("host", "grafana.net"),
                ("method", "GET"),
                ("path", "/"),
                ("service", "8ms"),
                ("status", "200"),
            ])
        );
        assert_eq!(
            run(
                &plain,
                r#"app=y a.b=1 empty= alone msg="a \"q\" b" x=y=z 1n=2"#
            ),
            pairs(&[
                ("_1n", "2"),
                ("a_b", "1"),
                ("app_extracted", "y"),
                ("msg", "a \"q\" b"),
            ])
        );
        let keep = LogfmtStage::new(false, true, &[]);
        assert_eq!(
            run(&keep, "a= b c=1"),
            pairs(&[("a", ""), ("b", ""), ("c", "1")])
        );
        let strict = LogfmtStage::new(true, false, &[]);
        assert_eq!(
            run(&strict, "a=1 foo=bar=buzz c=2"),
            pairs(&[
                ("__error__", ERR_LOGFMT),
                (
                    "__error_details__",
                    "logfmt syntax error at pos 12 : unexpected '='"
                ),
                ("a", "1"),
            ])
        );
        assert_eq!(
            run(&strict, "=value"),
            pairs(&[
                ("__error__", ERR_LOGFMT),
                (
                    "__error_details__",
                    "logfmt syntax error at pos 1 : unexpected '='"
                ),
            ])
        );
        assert_eq!(
            run(&strict, "a=\"open"),
            pairs(&[
                ("__error__", ERR_LOGFMT),
                (
                    "__error_details__",
                    "logfmt syntax error at pos 8 : unterminated quoted value"
                ),
            ])
        );
    }

    #[test]
    fn parameter_form() {
        let p = LogfmtStage::new(
            false,
            false,
            &[
                Extraction {
                    label: "host".into(),
                    expr: "host".into(),
                },
                Extraction {
                    label: "fwd_ip".into(),
                    expr: "fwd".into(),
                },
                Extraction {
                    label: "gone".into(),
                    expr: "gone".into(),
                },
            ],
        );
        assert_eq!(
            run(&p, r#"at=info host=grafana.net fwd="124.133.124.161""#),
            pairs(&[
                ("fwd_ip", "124.133.124.161"),
                ("gone", ""),
                ("host", "grafana.net")
            ])
        );
    }
}
