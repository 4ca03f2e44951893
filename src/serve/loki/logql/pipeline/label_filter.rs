//! Label filters: `| status >= 500 and method="GET"`,
//! `| duration > 250ms`, `| size < 20MB`, `| __error__=""`.
//!
//! Loki's rules (`pkg/logql/log/label_filter.go`):
//! - a string filter compares the label's value, a missing label being
//!   `""`; it is the only filter that reads `__error__`;
//! - a number, duration or bytes filter drops a line that lacks the label;
//!   when the value does not convert, the line is *kept* and gets
//!   `__error__="LabelFilterErr"` (unless it has an error already);
//! - `and` runs both sides (either may set the error), `or` stops at the
//!   first side that keeps the line.

use super::labels::ERROR;
use super::LineLabels;
use crate::filter::LabelMatcher;
use crate::serve::loki::logql::ast::{CmpOp, LabelFilter};
use crate::serve::loki::logql::units;

pub const ERR_LABEL_FILTER: &str = "LabelFilterErr";

pub enum CompiledLabelFilter {
    Match(LabelMatcher),
    Number(String, CmpOp, f64),
    Duration(String, CmpOp, i64),
    Bytes(String, CmpOp, u64),
    And(Box<CompiledLabelFilter>, Box<CompiledLabelFilter>),
    Or(Box<CompiledLabelFilter>, Box<CompiledLabelFilter>),
}

/// The label names a filter reads (for parser hints).
pub fn names(f: &LabelFilter, out: &mut Vec<String>) {
    match f {
        LabelFilter::Match(m) => out.push(m.name.clone()),
        LabelFilter::Number { name, .. }
        | LabelFilter::Duration { name, .. }
        | LabelFilter::Bytes { name, .. } => out.push(name.clone()),
        LabelFilter::And(a, b) | LabelFilter::Or(a, b) => {
            names(a, out);
            names(b, out);
        }
    }
}

impl CompiledLabelFilter {
    pub fn compile(f: &LabelFilter) -> Result<CompiledLabelFilter, String> {
        Ok(match f {
            LabelFilter::Match(m) => CompiledLabelFilter::Match(
                LabelMatcher::new(&m.name, m.op, &m.value).map_err(|e| e.to_string())?,
            ),
            LabelFilter::Number { name, op, value } => {
                CompiledLabelFilter::Number(name.clone(), *op, *value)
            }
            LabelFilter::Duration { name, op, value } => {
                CompiledLabelFilter::Duration(name.clone(), *op, *value)
            }
            LabelFilter::Bytes { name, op, value } => {
                CompiledLabelFilter::Bytes(name.clone(), *op, *value)
            }
            LabelFilter::And(a, b) => CompiledLabelFilter::And(
                Box::new(CompiledLabelFilter::compile(a)?),
                Box::new(CompiledLabelFilter::compile(b)?),
            ),
            LabelFilter::Or(a, b) => CompiledLabelFilter::Or(
                Box::new(CompiledLabelFilter::compile(a)?),
                Box::new(CompiledLabelFilter::compile(b)?),
            ),
        })
    }

    /// Whether the line is kept.
    pub fn run(&self, l: &mut LineLabels<'_>) -> bool {
        match self {
            CompiledLabelFilter::Match(m) => {
                let v = if m.name() == ERROR {
                    l.error()
                } else {
                    l.get(m.name())
                };
                m.matches(v.unwrap_or(""))
            }
            CompiledLabelFilter::Number(name, op, want) => {
                compare(l, name, *op, want, units::parse_float)
            }
            CompiledLabelFilter::Duration(name, op, want) => {
                compare(l, name, *op, want, units::go_duration)
            }
            CompiledLabelFilter::Bytes(name, op, want) => {
                compare(l, name, *op, want, units::parse_bytes)
            }
            CompiledLabelFilter::And(a, b) => {
                let left = a.run(l);
                let right = b.run(l);
                left && right
            }
            CompiledLabelFilter::Or(a, b) => a.run(l) || b.run(l),
        }
    }
}

fn compare<T: PartialOrd>(
    l: &mut LineLabels<'_>,
    name: &str,
    op: CmpOp,
    want: &T,
    convert: impl Fn(&str) -> Result<T, units::ConvError>,
) -> bool {
    let Some(v) = l.get(name) else {
        return false;
    };
    match convert(v) {
        Ok(have) => op.apply(&have, want),
        Err(e) => {
            if !l.has_error() {
                l.set_error(ERR_LABEL_FILTER, Some(&e.to_string()));
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::MatchOp;
    use crate::serve::loki::logql::ast::Matcher;
    use crate::serve::loki::logql::pipeline::Scratch;

    fn with(labels: &[(&str, &str)], f: &LabelFilter) -> (bool, Vec<(String, String)>) {
        let base: Vec<(String, String)> = Vec::new();
        let mut s = Scratch::new();
        let mut l = LineLabels::new(&base, &mut s);
        for (k, v) in labels {
            l.set(k, v);
        }
        let kept = CompiledLabelFilter::compile(f).unwrap().run(&mut l);
        (kept, l.to_vec())
    }

    // pkg/logql/log/label_filter_test.go (TestBinary_Filter, TestErrorFiltering).
    #[test]
    fn typed_comparisons() {
        let num = |op, v| LabelFilter::Number {
            name: "status".into(),
            op,
            value: v,
        };
        assert!(with(&[("status", "500")], &num(CmpOp::Ge, 500.0)).0);
        assert!(!with(&[("status", "404")], &num(CmpOp::Ge, 500.0)).0);
        assert!(!with(&[], &num(CmpOp::Ne, 1.0)).0, "a missing label drops");
        let (kept, labels) = with(&[("status", "abc")], &num(CmpOp::Gt, 1.0));
        assert!(kept, "a value that does not convert is kept");
        assert_eq!(labels[0].1, ERR_LABEL_FILTER);
        assert_eq!(
            labels[1].1,
            "strconv.ParseFloat: parsing \"abc\": invalid syntax"
        );
        let dur = LabelFilter::Duration {
            name: "d".into(),
            op: CmpOp::Gt,
            value: 250_000_000,
        };
        assert!(with(&[("d", "1.5s")], &dur).0);
        assert!(!with(&[("d", "200ms")], &dur).0);
        let bytes = LabelFilter::Bytes {
            name: "b".into(),
            op: CmpOp::Le,
            value: 20_000_000,
        };
        assert!(with(&[("b", "19MB")], &bytes).0);
        assert!(!with(&[("b", "1GiB")], &bytes).0);
    }

    #[test]
    fn errors_and_boolean_operators() {
        let err_empty = LabelFilter::Match(Matcher {
            name: "__error__".into(),
            op: MatchOp::Eq,
            value: "".into(),
        });
        let bad = LabelFilter::Number {
            name: "x".into(),
            op: CmpOp::Gt,
            value: 1.0,
        };
        // x > 1 sets the error, so __error__="" after it drops the line.
        let f = LabelFilter::And(Box::new(bad.clone()), Box::new(err_empty.clone()));
        assert!(!with(&[("x", "nan?")], &f).0);
        assert!(with(&[("x", "2")], &f).0);
        let a = LabelFilter::Match(Matcher {
            name: "a".into(),
            op: MatchOp::Eq,
            value: "1".into(),
        });
        let or = LabelFilter::Or(Box::new(a), Box::new(bad));
        let (kept, labels) = with(&[("a", "1"), ("x", "bad")], &or);
        assert!(
            kept && labels.iter().all(|(k, _)| k != "__error__"),
            "or stops early"
        );
    }
}
