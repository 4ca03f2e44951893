//! Property tests of the two LogQL parsers users write the most by hand:
//! label filters and `line_format` templates.
//!
//! - Label filters: any filter tree, written out with random spacing and
//!   any of the equivalent spellings of `and` (`and`, `,`, a space),
//!   parses back to the same tree.
//! - Templates: text without actions comes out unchanged; quoted strings
//!   print as themselves; any byte string parses or is refused without a
//!   panic, and runs within its output bound.

use proptest::prelude::*;
use ringtail::filter::MatchOp;
use ringtail::serve::loki::logql::template::{max_output, LabelSource, Template};
use ringtail::serve::loki::logql::{parse, CmpOp, Expr, LabelFilter, Matcher, Stage};

fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,6}".prop_filter("not a keyword", |n| {
        ![
            "and", "or", "ip", "bool", "by", "without", "on", "ignoring", "unless", "offset",
        ]
        .contains(&n.as_str())
    })
}

fn cmp() -> impl Strategy<Value = CmpOp> {
    prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
    ]
}

fn leaf() -> impl Strategy<Value = LabelFilter> {
    prop_oneof![
        (
            name(),
            prop_oneof![
                Just(MatchOp::Eq),
                Just(MatchOp::Ne),
                Just(MatchOp::Re),
                Just(MatchOp::Nre)
            ],
            "[a-z0-9 .]{0,8}"
        )
            .prop_map(|(name, op, value)| LabelFilter::Match(Matcher { name, op, value })),
        (name(), cmp(), -1000i32..1000, 0u8..3).prop_map(|(name, op, v, frac)| {
            LabelFilter::Number {
                name,
                op,
                value: v as f64 + frac as f64 / 4.0,
            }
        }),
        (name(), cmp(), 1i64..100_000).prop_map(|(name, op, ms)| LabelFilter::Duration {
            name,
            op,
            value: ms * 1_000_000,
        }),
        (name(), cmp(), 1u64..1000).prop_map(|(name, op, kb)| LabelFilter::Bytes {
            name,
            op,
            value: kb * 1000,
        }),
    ]
}

fn tree() -> impl Strategy<Value = LabelFilter> {
    leaf().prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| LabelFilter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner).prop_map(|(a, b)| LabelFilter::Or(Box::new(a), Box::new(b))),
        ]
    })
}

fn op_text(op: CmpOp, eq: u8) -> &'static str {
    match op {
        CmpOp::Eq if eq.is_multiple_of(2) => "==",
        CmpOp::Eq => "=",
        o => o.as_str(),
    }
}

/// Writes a filter with every binary node in parentheses, choosing among
/// the spellings with `r`.
fn write(f: &LabelFilter, r: &mut impl FnMut() -> u8) -> String {
    let sp = |r: &mut dyn FnMut() -> u8| if r().is_multiple_of(2) { " " } else { "  " };
    match f {
        LabelFilter::Match(m) => format!("{}{}{}{:?}", m.name, sp(r), m.op.as_str(), m.value),
        LabelFilter::Number { name, op, value } => {
            format!("{name}{}{}{}{value}", sp(r), op_text(*op, r()), sp(r))
        }
        LabelFilter::Duration { name, op, value } => {
            format!("{name} {} {}ms", op_text(*op, r()), value / 1_000_000)
        }
        LabelFilter::Bytes { name, op, value } => {
            format!("{name} {} {}KB", op_text(*op, r()), value / 1000)
        }
        LabelFilter::And(a, b) => {
            let joint = match r() % 3 {
                0 => " and ",
                1 => " , ",
                _ => " ",
            };
            format!("({}{joint}{})", write(a, r), write(b, r))
        }
        LabelFilter::Or(a, b) => format!("({} or {})", write(a, r), write(b, r)),
    }
}

struct Labels;

impl LabelSource for Labels {
    fn label(&self, name: &str) -> Option<String> {
        (name == "x").then(|| "value".to_string())
    }
    fn all(&self) -> Vec<(String, String)> {
        vec![("x".into(), "value".into())]
    }
}

fn run(t: &Template, line: &[u8]) -> (Result<(), String>, Vec<u8>) {
    let mut out = Vec::new();
    let r = t.execute(&Labels, line, 0, &mut out);
    (r, out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn label_filters_parse_back(f in tree(), seed in any::<u64>()) {
        let mut s = seed;
        let mut r = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as u8
        };
        let text = format!("{{a=\"b\"}} | {}", write(&f, &mut r));
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let Expr::Log(log) = parsed else { return Err(TestCaseError::fail("not a log query")) };
        prop_assert_eq!(log.stages, vec![Stage::LabelFilter(f)], "{}", text);
    }

    #[test]
    fn text_without_actions_is_kept(text in "[^{}]{0,200}") {
        let t = Template::parse(&text, "line").unwrap();
        let (r, out) = run(&t, b"line");
        prop_assert!(r.is_ok());
        prop_assert_eq!(out, text.as_bytes());
    }

    #[test]
    fn quoted_strings_print_as_themselves(s in "[a-zA-Z0-9 !#-/:-@\\[\\]^_~é]{0,40}") {
        let lit = serde_json::to_string(&s).unwrap();
        let t = Template::parse(&format!("<{{{{ {lit} }}}}>"), "line").unwrap();
        let (r, out) = run(&t, b"");
        prop_assert!(r.is_ok());
        prop_assert_eq!(String::from_utf8(out).unwrap(), format!("<{s}>"));
    }

    #[test]
    fn any_template_stops_within_bounds(src in proptest::collection::vec(any::<u8>(), 0..200), line in proptest::collection::vec(any::<u8>(), 0..100)) {
        let src = String::from_utf8_lossy(&src);
        if let Ok(t) = Template::parse(&src, "line") {
            let (_, out) = run(&t, &line);
            prop_assert!(out.len() <= max_output(line.len()));
        }
    }

    #[test]
    fn generated_templates_run(parts in proptest::collection::vec(prop_oneof![
        Just("{{ .x }}"), Just("{{ .missing | default \"d\" }}"), Just("{{ if .x }}y{{ else }}n{{ end }}"),
        Just("{{ range $i, $v := fromJson `[1,2,3]` }}{{ $i }}{{ end }}"), Just("{{ __line__ | upper }}"),
        Just("{{ printf \"%05.1f|%-4s|%x\" 3.14159 .x 255 }}"), Just("{{ repeat 3 .x }}"), Just("text"),
        Just("{{- \" trimmed \" -}}"), Just("{{ with $y := .x }}{{ $y }}{{ end }}"), Just("{{ len .x | add 1 }}"),
    ], 0..12)) {
        let src = parts.concat();
        let t = Template::parse(&src, "line").unwrap();
        let (r, out) = run(&t, b"a line");
        prop_assert!(r.is_ok(), "{}: {:?}", src, r);
        prop_assert!(out.len() <= max_output(6));
    }
}
