//! Parser tests: the shapes Loki's grammar accepts
//! (`pkg/logql/syntax/parser_test.go`), and ringtail's messages.

use super::*;
use crate::filter::MatchOp;

fn err(q: &str) -> String {
    parse(q).unwrap_err().to_string()
}

fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
    Matcher {
        name: name.into(),
        op,
        value: value.into(),
    }
}

fn log(q: &str) -> LogExpr {
    match parse(q).unwrap() {
        Expr::Log(l) => l,
        e => panic!("{e:?}"),
    }
}

fn range(q: &str) -> RangeExpr {
    match parse(q).unwrap() {
        Expr::Range(r) => *r,
        e => panic!("{e:?}"),
    }
}

#[test]
fn selectors_and_line_filters() {
    let l = log(
        r#"{source="web", app!="x", env=~"prod|stage", zone!~`a.*`} |= "GET" != `health` |~ "\\d+" !~ "(?i)bot" |> "<_> x" !> "y <_>""#,
    );
    assert_eq!(
        l.matchers,
        vec![
            m("source", MatchOp::Eq, "web"),
            m("app", MatchOp::Ne, "x"),
            m("env", MatchOp::Re, "prod|stage"),
            m("zone", MatchOp::Nre, "a.*"),
        ]
    );
    let ops: Vec<_> = l
        .stages
        .iter()
        .map(|s| match s {
            Stage::Line(f) => (f.op, f.values[0].as_str()),
            s => panic!("{s:?}"),
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            (LineOp::Contains, "GET"),
            (LineOp::NotContains, "health"),
            (LineOp::Matches, r"\d+"),
            (LineOp::NotMatches, "(?i)bot"),
            (LineOp::Pattern, "<_> x"),
            (LineOp::NotPattern, "y <_>"),
        ]
    );
    assert!(parse("{ a = \"b\" , } # all of a\n").is_ok());
    let l = log(r#"{a="b"} |= "x" or "y" != "z""#);
    assert_eq!(
        l.stages[0],
        Stage::Line(LineFilter {
            op: LineOp::Contains,
            values: vec!["x".into(), "y".into()]
        })
    );
}

// Loki docs, "Log queries": every stage, as written there.
#[test]
fn pipeline_stages() {
    let l = log(
        r#"{job="x"} | json | logfmt --strict --keep-empty host, fwd_ip="fwd" | json first_server="servers[0]", ua | pattern "<ip> - <_>" | regexp "(?P<m>\\w+)" | unpack | line_format "{{.query}}" | label_format dst=src, x="{{.y}}" | decolorize | drop level, method="GET" | keep a, b=~"x.*""#,
    );
    assert_eq!(l.stages.len(), 11);
    assert_eq!(l.stages[0], Stage::Json(vec![]));
    assert_eq!(
        l.stages[1],
        Stage::Logfmt {
            strict: true,
            keep_empty: true,
            params: vec![
                Extraction {
                    label: "host".into(),
                    expr: "host".into()
                },
                Extraction {
                    label: "fwd_ip".into(),
                    expr: "fwd".into()
                }
            ]
        }
    );
    assert_eq!(
        l.stages[7],
        Stage::LabelFormat(vec![
            LabelFmt {
                dst: "dst".into(),
                value: LabelFmtValue::Rename("src".into())
            },
            LabelFmt {
                dst: "x".into(),
                value: LabelFmtValue::Template("{{.y}}".into())
            }
        ])
    );
    assert_eq!(
        l.stages[9],
        Stage::Drop(vec![
            NamedMatcher::Name("level".into()),
            NamedMatcher::Matcher(m("method", MatchOp::Eq, "GET"))
        ])
    );
}

// Loki docs, "Label filter expression": the four equivalent forms, and
// `and` binding tighter than `or`.
#[test]
fn label_filters() {
    let forms = [
        r#"{a="b"} | duration >= 20ms or size == 20KB and method!~"2..""#,
        r#"{a="b"} | duration >= 20ms or size == 20KB , method!~"2..""#,
        r#"{a="b"} | duration >= 20ms or size == 20KB  method!~"2..""#,
        r#"{a="b"} | duration >= 20ms or (size == 20KB and method!~"2..")"#,
    ];
    let want = LabelFilter::Or(
        Box::new(LabelFilter::Duration {
            name: "duration".into(),
            op: CmpOp::Ge,
            value: 20_000_000,
        }),
        Box::new(LabelFilter::And(
            Box::new(LabelFilter::Bytes {
                name: "size".into(),
                op: CmpOp::Eq,
                value: 20_000,
            }),
            Box::new(LabelFilter::Match(m("method", MatchOp::Nre, "2.."))),
        )),
    );
    for q in forms {
        assert_eq!(log(q).stages, vec![Stage::LabelFilter(want.clone())], "{q}");
    }
    let l = log(
        r#"{a="b"} | status >= 500 | x = 1.5 | y != -2 | __error__="" | (a="1" or b="2") c > 1s"#,
    );
    assert_eq!(
        l.stages[0],
        Stage::LabelFilter(LabelFilter::Number {
            name: "status".into(),
            op: CmpOp::Ge,
            value: 500.0
        })
    );
    assert_eq!(
        l.stages[2],
        Stage::LabelFilter(LabelFilter::Number {
            name: "y".into(),
            op: CmpOp::Ne,
            value: -2.0
        })
    );
    assert!(matches!(
        l.stages[4],
        Stage::LabelFilter(LabelFilter::And(..))
    ));
}

#[test]
fn metric_queries() {
    let e = parse(r#"sum by (source) (count_over_time({source=~".+"}[1m]))"#).unwrap();
    let Expr::Agg(a) = e else { panic!() };
    assert_eq!(a.op, AggOp::Sum);
    let Expr::Range(r) = &a.expr else { panic!() };
    assert_eq!(
        (r.func, r.range_ns),
        (RangeFn::CountOverTime, 60_000_000_000)
    );
    // The range right after the selector or after the pipeline; offset.
    let r = range(r#"bytes_rate({a="b"}[1h30m] offset 5m |= "x")"#);
    assert_eq!(
        (r.range_ns, r.offset_ns),
        (5_400_000_000_000, 300_000_000_000)
    );
    let r = range(r#"rate(({a="b"} |= "x")[5m])"#);
    assert_eq!(r.log.stages.len(), 1);
    // Unwrap with a conversion and post filters, grouping after.
    let r = range(
        r#"quantile_over_time(0.99, {a="b"} | json | unwrap duration(latency) | __error__="" [1m]) by (cluster)"#,
    );
    assert_eq!(r.param, Some(0.99));
    let u = r.unwrap.unwrap();
    assert_eq!(
        (u.label.as_str(), u.conversion),
        ("latency", Conversion::Duration)
    );
    assert_eq!(u.post_filters.len(), 1);
    assert_eq!(r.grouping.unwrap().labels, vec!["cluster"]);
    let e = parse(r#"topk(3, sum by (source) (bytes_over_time({a="b"}[10s])))"#).unwrap();
    let Expr::Agg(a) = e else { panic!() };
    assert_eq!((a.op, a.k), (AggOp::Topk, Some(3)));
    // Grafana's volume query.
    let e = parse(
        r#"sum by (level, detected_level) (count_over_time({source="web"} |= "x" | drop __error__, __error_details__ [2s]))"#,
    )
    .unwrap();
    let Expr::Agg(a) = e else { panic!() };
    let Expr::Range(r) = &a.expr else { panic!() };
    assert_eq!(r.log.stages.len(), 2);
    assert!(
        parse(r#"label_replace(rate({a="b"}[1m]), "foo", "$1", "service", "(.*):.*")"#).is_ok()
    );
    assert!(parse(r#"sort_desc(sum(rate({a="b"}[1m]))) "#).is_ok());
    assert!(parse(r#"absent_over_time({a="b"}[1m])"#).is_ok());
    assert!(
        parse(r#"SUM(COUNT_OVER_TIME({a="b"}[1m]))"#).is_ok(),
        "keywords in any case"
    );
}

#[test]
fn binary_operators() {
    assert_eq!(parse("1 + 2 * 3").unwrap(), Expr::Number(7.0));
    assert_eq!(parse("(1 + 2) * 3").unwrap(), Expr::Number(9.0));
    assert_eq!(
        parse("2 ^ 3 ^ 2").unwrap(),
        Expr::Number(512.0),
        "^ is right-associative"
    );
    assert_eq!(parse("7 % 4").unwrap(), Expr::Number(3.0));
    assert_eq!(parse("1 >= 1").unwrap(), Expr::Number(1.0));
    assert!(
        matches!(parse("1 / 0").unwrap(), Expr::Number(n) if n.is_nan()),
        "Loki: NaN"
    );
    let e = parse(r#"count_over_time({a="b"}[1m]) > bool 10"#).unwrap();
    let Expr::Binary(b) = e else { panic!() };
    assert!(b.return_bool && b.op == BinOp::Gt);
    let e = parse(
        r#"sum by (app, status) (rate({a="b"} | json [5m])) / on (app) group_left sum by (app) (rate({a="b"} | json [5m]))"#,
    )
    .unwrap();
    let Expr::Binary(b) = e else { panic!() };
    assert_eq!(b.matching.card, Card::ManyToOne);
    assert!(b.matching.on && b.matching.labels == vec!["app"]);
    let e = parse(
        r#"rate({a="b"}[1m]) * ignoring (x) group_right (org) max_over_time({c="d"} | logfmt | unwrap cost [5m]) by (user, org)"#,
    )
    .unwrap();
    let Expr::Binary(b) = e else { panic!() };
    assert_eq!(
        (b.matching.card, b.matching.include.clone()),
        (Card::OneToMany, vec!["org".to_string()])
    );
    // `or` binds loosest: (a and b) or c.
    let e = parse(r#"rate({a="b"}[1m]) and rate({a="c"}[1m]) or vector(0)"#).unwrap();
    let Expr::Binary(b) = e else { panic!() };
    assert_eq!(b.op, BinOp::Or);
}

#[test]
fn strings() {
    let one = |q: &str| match &log(q).stages[0] {
        Stage::Line(f) => f.values[0].clone(),
        s => panic!("{s:?}"),
    };
    assert_eq!(one(r#"{a="b"} |= "q\"\\\t\x41\u00e9\101""#), "q\"\\\tAéA");
    assert_eq!(one(r#"{a="b"} |= `\d"`"#), r#"\d""#);
    assert_eq!(one("{a=\"b\"} |= \"é😀\""), "é😀");
}

#[test]
fn errors_say_where_and_what() {
    assert_eq!(
        err(r#"{source="web""x"}"#),
        r#"parse error at 1:14: expected '}' or ',' after a matcher, found string "x""#
    );
    assert_eq!(
        err(r#"{source "web"}"#),
        r#"parse error at 1:9: expected '=', '!=', '=~' or '!~' after a label name, found string "web""#
    );
    assert_eq!(
        err(r#"{source="web"} |= error"#),
        "parse error at 1:19: expected a quoted string after the line filter, found 'error'"
    );
    assert_eq!(
        err(r#"count_over_time({a="b"})"#),
        "parse error at 1:24: expected a range such as [5m] after the log query, found ')'"
    );
    assert!(err(r#"{a="b"}[5m]"#).contains("belongs inside a range function"));
    assert!(err(r#"{a="b"} | frob"#)
        .starts_with("parse error at 1:11: unknown pipeline stage '| frob'"));
    assert!(err(r#"avg_over_time({a="b"}[1m])"#).contains("without unwrap"));
    assert!(err(r#"count_over_time({a="b"} | unwrap x [1m])"#).contains("with unwrap"));
    assert!(
        err(r#"sum_over_time({a="b"} | unwrap x [1m]) by (y)"#).contains("grouping not allowed")
    );
    assert!(err(r#"quantile_over_time({a="b"} | unwrap x [1m])"#).contains("the quantile"));
    assert!(err(r#"rate(2, {a="b"}[1m])"#).contains("parameter 2 not supported"));
    assert!(err("frobnicate(1)").starts_with("parse error at 1:1: unknown function"));
    assert!(err("approx_topk(2, vector(1))").contains("not supported by ringtail"));
    assert!(err(r#"{a="b"} |= ip("1.2.3.4")"#).contains("ip() filters are not supported"));
    assert!(err(r#"{a="b"} |~ "(""#).starts_with("parse error at 1:12: bad regular expression"));
    assert!(err(r#"{a="b"} | regexp "(x)""#).contains("named capture"));
    assert!(err(r#"{a="b"} | pattern "<a><b>""#).contains("consecutive capture"));
    assert!(err(r#"{a="b"} | line_format "{{.a""#)
        .starts_with("parse error at 1:11: invalid line template"));
    assert!(err(r#"{a="b"} | line_format "{{ nope }}""#).contains("function \"nope\" not defined"));
    assert!(err(r#"{a="b"} | label_format a=b, a="x""#).contains("multiple label name 'a'"));
    assert!(err(r#"{a="b"} | label_format __error__=b"#).contains("cannot be formatted"));
    assert!(err(r#"{a="b"} | json x="a[1.5]""#).contains("float as array index"));
    assert!(err(r#"{a="b"} | logfmt --fast"#).contains("unknown logfmt flag"));
    assert!(err(r#"{a="b"} | x > "1""#).contains("a string takes"));
    assert!(err(r#"{a="b"} | unwrap x"#).contains("unwrap belongs in a range function"));
    assert!(err(r#"rate({a="b"} | unwrap x | json [1m])"#)
        .contains("only label filters may follow unwrap"));
    assert!(err(r#"{a=~"("}"#).starts_with("parse error at 1:5:"));
    assert!(err(r#"{a="b"} |= "\d""#).contains("unknown escape \\d"));
    assert!(err(r#"{a="b"} |= "open"#).contains("unterminated"));
    assert!(err(r#"sum({a="b"})"#).contains("needs a metric expression"));
    assert!(err(r#"{a="b"} + 1"#).contains("not a log query"));
    assert!(err(r#"rate({a="b"}[5])"#).contains("needs a unit"));
    assert!(err(r#"rate({a="b"}[5x])"#).contains("duration"));
    assert!(err(r#"topk(0, rate({a="b"}[5m]))"#).contains("greater than 0"));
    assert!(err(r#"sum(2, rate({a="b"}[5m]))"#).contains("unsupported parameter"));
    assert!(err("vector(1) and 1").contains("set operation"));
    assert!(err("vector(1) + bool vector(1)").contains("bool modifier"));
    assert!(err(r#"rate({a="b"}[1m] offset -1m)"#).contains("negative offset"));
    assert!(err("").contains("found the end of the query"));
    assert!(err("{a=\"b\"}\n  }").starts_with("parse error at 2:3:"));
}

#[test]
fn selectors_that_select_everything_are_refused() {
    for q in [
        "{}",
        r#"{a=""}"#,
        r#"{a=~".*"}"#,
        r#"{a!="x"}"#,
        r#"{a!~"x", b=~".*"}"#,
        r#"rate({a=~".*"}[1m])"#,
    ] {
        assert!(
            err(q).contains("at least one regexp or equality matcher"),
            "{q}"
        );
    }
    for q in [r#"{a=~".+"}"#, r#"{a!="x", b="y"}"#, r#"{a=~"x|"}"#] {
        let ok = parse(q).is_ok();
        assert_eq!(ok, q != r#"{a=~"x|"}"#, "{q}");
    }
    assert!(parse_selector("{}", false).unwrap().is_empty());
    assert!(parse_selector("{}", true).is_err());
    assert_eq!(
        parse_selector(r#"{job="a", x="b"}"#, true).unwrap().len(),
        2
    );
}

#[test]
fn hostile_input_is_bounded() {
    let deep = "(".repeat(1000) + "1" + &")".repeat(1000);
    assert!(err(&deep).contains("nests deeper"));
    let neg = "-".repeat(1000) + "1";
    assert!(err(&neg).contains("nests deeper"));
    let many = "1+".repeat(20_000) + "1";
    assert!(err(&many).contains("tokens"));
    let filters = r#"{a="b"} | "#.to_string() + &"(".repeat(200) + "x=\"1\"" + &")".repeat(200);
    assert!(err(&filters).contains("nests deeper"));
}
