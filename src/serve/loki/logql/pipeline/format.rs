//! The stages that reshape an entry: `line_format`, `label_format`,
//! `decolorize`, `drop` and `keep` (`pkg/logql/log/fmt.go`,
//! `drop_labels.go`, `keep_labels.go`).
//!
//! - `line_format "{{.msg}}"` rewrites the line; `{{.name}}` alone copies
//!   the label (an empty line when it is missing). A template error keeps
//!   the line and sets `__error__="TemplateFormatErr"`.
//! - `label_format dst=src` renames (the source label goes);
//!   `dst="{{...}}"` sets from a template that sees the labels as they
//!   were when the stage's first template ran.
//! - `drop a, b="x"` removes labels (a matcher: only when it matches);
//!   `drop __error__` clears the error. `keep` removes every other label
//!   but never the error labels.
//! - `decolorize` strips ANSI escape sequences.

use std::sync::OnceLock;

use regex::bytes::Regex;

use super::labels::{ERROR, ERROR_DETAILS};
use super::LineLabels;
use crate::filter::LabelMatcher;
use crate::serve::loki::logql::ast::{LabelFmtValue, NamedMatcher, Stage};
use crate::serve::loki::logql::template::{LabelSource, Template};

pub const ERR_TEMPLATE: &str = "TemplateFormatErr";

/// Loki's ANSI pattern (from acarl005/stripansi).
const ANSI: &str = "[\u{1B}\u{9B}][\\[\\]()#;?]*(?:(?:(?:[a-zA-Z\\d]*(?:;[a-zA-Z\\d]*)*)?\u{7})|(?:(?:\\d{1,4}(?:;\\d{0,4})*)?[\\dA-PRZcf-ntqry=><~]))";

fn ansi() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(ANSI).expect("the ANSI pattern compiles"))
}

pub enum Named {
    Name(String),
    Matcher(LabelMatcher),
}

fn named(list: &[NamedMatcher]) -> Result<Vec<Named>, String> {
    list.iter()
        .map(|n| match n {
            NamedMatcher::Name(s) => Ok(Named::Name(s.clone())),
            NamedMatcher::Matcher(m) => LabelMatcher::new(&m.name, m.op, &m.value)
                .map(Named::Matcher)
                .map_err(|e| e.to_string()),
        })
        .collect()
}

pub enum LabelOp {
    Rename { dst: String, src: String },
    Template { dst: String, tmpl: Template },
}

pub enum FormatStage {
    Line(Template),
    Labels(Vec<LabelOp>),
    Decolorize,
    Drop(Vec<Named>),
    Keep(Vec<Named>),
}

/// A snapshot of the labels (what `label_format`'s templates see).
struct Snapshot(Vec<(String, String)>);

impl LabelSource for Snapshot {
    fn label(&self, name: &str) -> Option<String> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.clone())
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0.clone()
    }
}

impl FormatStage {
    pub fn compile(stage: &Stage) -> Result<FormatStage, String> {
        Ok(match stage {
            Stage::LineFormat(t) => FormatStage::Line(
                Template::parse(t, "line").map_err(|e| format!("invalid line template: {e}"))?,
            ),
            Stage::LabelFormat(ops) => FormatStage::Labels(
                ops.iter()
                    .map(|op| match &op.value {
                        LabelFmtValue::Rename(src) => Ok(LabelOp::Rename {
                            dst: op.dst.clone(),
                            src: src.clone(),
                        }),
                        LabelFmtValue::Template(t) => Ok(LabelOp::Template {
                            dst: op.dst.clone(),
                            tmpl: Template::parse(t, "label").map_err(|e| {
                                format!("invalid template for label '{}': {e}", op.dst)
                            })?,
                        }),
                    })
                    .collect::<Result<_, String>>()?,
            ),
            Stage::Decolorize => FormatStage::Decolorize,
            Stage::Drop(list) => FormatStage::Drop(named(list)?),
            Stage::Keep(list) => FormatStage::Keep(named(list)?),
            _ => unreachable!("only format stages come here"),
        })
    }

    /// The labels the stage reads (for parser hints).
    pub fn required_labels(&self) -> Vec<String> {
        match self {
            FormatStage::Line(t) => t.fields(),
            FormatStage::Labels(ops) => ops
                .iter()
                .flat_map(|op| match op {
                    LabelOp::Rename { src, .. } => vec![src.clone()],
                    LabelOp::Template { tmpl, .. } => tmpl.fields(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Runs the stage; `true` when it wrote a new line into `out`.
    pub fn run(&self, line: &[u8], ts_ns: u64, l: &mut LineLabels<'_>, out: &mut Vec<u8>) -> bool {
        match self {
            FormatStage::Line(t) => {
                out.clear();
                if let Some(key) = t.simple_field() {
                    if let Some(v) = l.get(key) {
                        out.extend_from_slice(v.as_bytes());
                    }
                    return true;
                }
                let snapshot = Snapshot(l.to_vec());
                match t.execute(&snapshot, line, ts_ns as i64, out) {
                    Ok(()) => true,
                    Err(e) => {
                        l.set_error(ERR_TEMPLATE, Some(&e));
                        false
                    }
                }
            }
            FormatStage::Labels(ops) => {
                let mut snapshot: Option<Snapshot> = None;
                let mut buf = Vec::new();
                for op in ops {
                    match op {
                        LabelOp::Rename { dst, src } => {
                            if let Some(v) = l.get(src).map(str::to_string) {
                                l.set(dst, &v);
                                l.delete(src);
                            }
                        }
                        LabelOp::Template { dst, tmpl } => {
                            let snap = snapshot.get_or_insert_with(|| Snapshot(l.to_vec()));
                            buf.clear();
                            match tmpl.execute(&*snap, line, ts_ns as i64, &mut buf) {
                                Ok(()) => l.set(dst, &String::from_utf8_lossy(&buf)),
                                Err(e) => l.set_error(ERR_TEMPLATE, Some(&e)),
                            }
                        }
                    }
                }
                false
            }
            FormatStage::Decolorize => {
                out.clear();
                out.extend_from_slice(&ansi().replace_all(line, &b""[..]));
                true
            }
            FormatStage::Drop(list) => {
                for n in list {
                    match n {
                        Named::Name(name) => match name.as_str() {
                            ERROR => l.clear_error(),
                            ERROR_DETAILS => l.clear_error_details(),
                            _ => {
                                if l.get(name).is_some() {
                                    l.delete(name);
                                }
                            }
                        },
                        Named::Matcher(m) => match m.name() {
                            ERROR => {
                                if m.matches(l.error().unwrap_or("")) {
                                    l.clear_error();
                                }
                            }
                            ERROR_DETAILS => {
                                if m.matches(l.error_details().unwrap_or("")) {
                                    l.clear_error_details();
                                }
                            }
                            name => {
                                if m.matches(l.get(name).unwrap_or("")) {
                                    l.delete(name);
                                }
                            }
                        },
                    }
                }
                false
            }
            FormatStage::Keep(list) => {
                if list.is_empty() {
                    return false;
                }
                let current = l.to_vec();
                for (k, v) in current {
                    if k == ERROR || k == ERROR_DETAILS {
                        continue;
                    }
                    let keep = list.iter().any(|n| match n {
                        Named::Name(name) => *name == k,
                        Named::Matcher(m) => m.name() == k && m.matches(&v),
                    });
                    if !keep {
                        l.delete(&k);
                    }
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::MatchOp;
    use crate::serve::loki::logql::ast::{LabelFmt, Matcher};
    use crate::serve::loki::logql::pipeline::Scratch;

    fn base() -> Vec<(String, String)> {
        vec![
            ("app".to_string(), "web".to_string()),
            ("level".into(), "info".into()),
        ]
    }

    fn run(
        stage: Stage,
        line: &str,
        setup: impl Fn(&mut LineLabels<'_>),
    ) -> (String, Vec<(String, String)>) {
        let b = base();
        let mut s = Scratch::new();
        let mut l = LineLabels::new(&b, &mut s);
        setup(&mut l);
        let mut out = Vec::new();
        let f = FormatStage::compile(&stage).unwrap();
        let rewrote = f.run(line.as_bytes(), 1_000_000_000, &mut l, &mut out);
        let text = if rewrote {
            String::from_utf8(out).unwrap()
        } else {
            line.to_string()
        };
        (text, l.to_vec())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // pkg/logql/log/fmt_test.go (Test_lineFormatter_Format,
    // Test_labelsFormatter_Format) and drop/keep_labels_test.go.
    #[test]
    fn line_and_label_format() {
        let (line, _) = run(
            Stage::LineFormat("{{.app}} {{.missing}}|{{ __line__ }}".into()),
            "orig",
            |_| {},
        );
        assert_eq!(line, "web |orig");
        let (line, _) = run(Stage::LineFormat("{{.nope}}".into()), "orig", |_| {});
        assert_eq!(line, "", "a missing simple key gives an empty line");
        let (line, labels) = run(Stage::LineFormat("{{ .app.x }}".into()), "orig", |_| {});
        assert_eq!(line, "orig", "an error keeps the line");
        assert_eq!(
            labels[0],
            ("__error__".to_string(), ERR_TEMPLATE.to_string())
        );
        let (_, labels) = run(
            Stage::LabelFormat(vec![
                LabelFmt {
                    dst: "application".into(),
                    value: LabelFmtValue::Rename("app".into()),
                },
                LabelFmt {
                    dst: "both".into(),
                    value: LabelFmtValue::Template("{{.application}}-{{.level}}".into()),
                },
                LabelFmt {
                    dst: "level".into(),
                    value: LabelFmtValue::Template("{{.level | upper}}".into()),
                },
            ]),
            "x",
            |_| {},
        );
        assert_eq!(
            labels,
            pairs(&[
                ("application", "web"),
                ("both", "web-info"),
                ("level", "INFO")
            ])
        );
    }

    #[test]
    fn drop_keep_decolorize() {
        let m = |n: &str, v: &str| {
            NamedMatcher::Matcher(Matcher {
                name: n.into(),
                op: MatchOp::Eq,
                value: v.into(),
            })
        };
        let set_err = |l: &mut LineLabels<'_>| {
            l.set("method", "GET");
            l.set_error("JSONParserErr", Some("bad"));
        };
        let (_, labels) = run(
            Stage::Drop(vec![
                NamedMatcher::Name("level".into()),
                m("method", "POST"),
                NamedMatcher::Name("__error__".into()),
            ]),
            "x",
            set_err,
        );
        assert_eq!(
            labels,
            pairs(&[
                ("__error_details__", "bad"),
                ("app", "web"),
                ("method", "GET")
            ])
        );
        let (_, labels) = run(Stage::Keep(vec![m("method", "GET")]), "x", set_err);
        assert_eq!(
            labels,
            pairs(&[
                ("__error__", "JSONParserErr"),
                ("__error_details__", "bad"),
                ("method", "GET")
            ])
        );
        let (line, _) = run(Stage::Decolorize, "\u{1b}[31mred\u{1b}[0m plain", |_| {});
        assert_eq!(line, "red plain");
    }
}
