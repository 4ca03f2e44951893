//! The template language of `line_format` and `label_format`: Go's
//! `text/template`, as Loki runs it (`missingkey=zero`, the labels as the
//! dot, `__line__` and `__timestamp__` as functions) with the functions
//! Loki registers ([`funcs::NAMES`]).
//!
//! | file | job |
//! |------|-----|
//! | [`parse`] | source to tree, Go's syntax and trimming |
//! | [`exec`] | running a tree over one line |
//! | [`funcs`] | the functions, `printf` |
//! | [`value`] | values and how Go prints them |
//! | [`gotime`] | Go time layouts |
//!
//! Why not a crate: Rust's template engines (Tera, Handlebars,
//! MiniJinja) speak other languages; Loki's users write Go templates, and
//! their output must be byte for byte what Loki prints.
//!
//! What it promises on any input, template or line: it stops. A template
//! cannot recurse (`define`/`template` are refused), blocks nest at most
//! [`parse::MAX_NESTING`] deep, one line costs at most
//! [`exec::MAX_STEPS`] evaluation steps, and output (and every string a
//! function builds) is capped at [`max_output`]; past a bound the line
//! gets a `TemplateFormatErr` instead.

pub mod exec;
pub mod funcs;
pub mod gotime;
pub mod parse;
pub mod value;

use parse::{Node, Operand, Pipeline};

/// The labels a template reads.
pub trait LabelSource {
    /// `.name`: the label's value (`None`: missing, printed as `""`).
    fn label(&self, name: &str) -> Option<String>;
    /// Every label, for `.` as a whole.
    fn all(&self) -> Vec<(String, String)>;
}

/// The most bytes one execution may write for a line of `line_len` bytes.
pub fn max_output(line_len: usize) -> usize {
    (1 << 20).max(line_len.saturating_mul(2))
}

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    nodes: Vec<Node>,
    /// `line` or `label`: the name Go's messages give the template.
    name: &'static str,
    source: String,
}

impl Template {
    /// Parses `src`; the error reads as Go's (`template: line:1:7: ...`).
    pub fn parse(src: &str, name: &'static str) -> Result<Template, String> {
        let nodes = parse::parse(src)
            .map_err(|e| format!("template: {name}:{}:{}: {}", e.line, e.col, e.msg))?;
        let t = Template {
            nodes,
            name,
            source: src.to_string(),
        };
        let mut bad = None;
        t.walk(&mut |op, pos| {
            if let Operand::Func(f) = op {
                if bad.is_none() && !funcs::NAMES.contains(&f.as_str()) {
                    bad = Some((f.clone(), pos));
                }
            }
        });
        if let Some((f, pos)) = bad {
            let (line, _) = parse::position(src, pos);
            return Err(format!(
                "template: {name}:{line}: function {f:?} not defined"
            ));
        }
        Ok(t)
    }

    fn walk(&self, f: &mut dyn FnMut(&Operand, usize)) {
        fn pipe(p: &Pipeline, f: &mut dyn FnMut(&Operand, usize)) {
            for c in &p.cmds {
                for a in &c.args {
                    f(a, p.pos);
                    if let Operand::Sub(inner, _) = a {
                        pipe(inner, f);
                    }
                }
            }
        }
        fn nodes(ns: &[Node], f: &mut dyn FnMut(&Operand, usize)) {
            for n in ns {
                match n {
                    Node::Action(p) => pipe(p, f),
                    Node::If {
                        cond,
                        then,
                        otherwise,
                    } => {
                        pipe(cond, f);
                        nodes(then, f);
                        nodes(otherwise, f);
                    }
                    Node::Range {
                        pipe: p,
                        body,
                        otherwise,
                    }
                    | Node::With {
                        pipe: p,
                        body,
                        otherwise,
                    } => {
                        pipe(p, f);
                        nodes(body, f);
                        nodes(otherwise, f);
                    }
                    _ => {}
                }
            }
        }
        nodes(&self.nodes, f);
    }

    /// The field names the template reads (`.a.b` gives `a` and `b`, as
    /// Loki lists them for parser hints).
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.walk(&mut |op, _| {
            if let Operand::Dot(fs) | Operand::Var(_, fs) | Operand::Sub(_, fs) = op {
                for f in fs {
                    if !out.contains(f) {
                        out.push(f.clone());
                    }
                }
            }
        });
        out
    }

    /// `{{.name}}` alone: the label it copies.
    pub fn simple_field(&self) -> Option<&str> {
        match self.nodes.as_slice() {
            [Node::Action(p)] if p.decl.is_empty() && p.cmds.len() == 1 => {
                match p.cmds[0].args.as_slice() {
                    [Operand::Dot(fs)] if fs.len() == 1 => Some(&fs[0]),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Runs the template for one line, appending to `out`; the error is
    /// what goes to `__error_details__`.
    pub fn execute(
        &self,
        labels: &dyn LabelSource,
        line: &[u8],
        ts_ns: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let mut ex = exec::Exec::new(labels, line, ts_ns, out, max_output(line.len()));
        match ex.run(&self.nodes, &exec::Dot::Labels) {
            Ok(()) | Err(exec::Flow::Break) | Err(exec::Flow::Continue) => Ok(()),
            Err(exec::Flow::Error(e)) => {
                let (l, c) = parse::position(&self.source, ex.at);
                Err(format!(
                    "template: {}:{l}:{c}: executing {:?}: {e}",
                    self.name, self.name
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Labels(Vec<(&'static str, &'static str)>);

    impl LabelSource for Labels {
        fn label(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
        fn all(&self) -> Vec<(String, String)> {
            self.0
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }
    }

    fn run(t: &str) -> Result<String, String> {
        let labels = Labels(vec![
            ("path", "/api/v1 x"),
            ("status", "200"),
            ("duration", "3000"),
            ("ip", "1.1.1.1"),
            ("cluster", "us-cluster"),
            ("err", "ErrTimeout here"),
            ("queries", r#"[{"query":"a"},{"query":"b"}]"#),
            ("ts", "2021-11-02T10:00:00Z"),
        ]);
        let tmpl = Template::parse(t, "line")?;
        let mut out = Vec::new();
        tmpl.execute(&labels, b"Hello World", 1_679_577_215_000_000_000, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    // Loki's "LogQL template functions" doc: each example with its output.
    #[test]
    fn documented_examples() {
        for (t, want) in [
            ("{{.ip}} {{.status}} {{div .duration 1000}}", "1.1.1.1 200 3"),
            (r#"{{ .path | replace " " "_" | trunc 5 | upper }}"#, "/API/"),
            (r#"{{ if and (contains "he" "hello") (contains "llo" "hello") }} yes {{end}}"#, " yes "),
            (r#"{{ if contains "ErrTimeout" .err }} timeout {{else if contains "he" "hello"}} yes {{else}} no {{end}}"#, " timeout "),
            ("{{ __line__ | lower }}", "hello world"),
            ("{{ __timestamp__ }}", "2023-03-23 13:13:35 +0000 UTC"),
            (r#"{{ __timestamp__ | date "2006-01-02T15:04:05.00Z-07:00" }}"#, "2023-03-23T13:13:35.00Z+00:00"),
            ("{{ __timestamp__ | unixEpoch }}", "1679577215"),
            (r#"{{ toDateInZone "2006-01-02" "UTC" "2021-11-02" | unixEpoch }}"#, "1635811200"),
            (r#"{{ .ts | toDateInZone "2006-01-02T15:04:05.999999999Z" "UTC" | unixEpochMillis }}"#, "1635847200000"),
            (r#"{{ date "2006-01-02" (unixToTime "1679577215") }}"#, "2023-03-23"),
            (r#"{{ alignLeft 5 "hello world"}}|{{ alignLeft 5 "hi"}}|{{ alignRight 5 "hello world"}}|{{ alignRight 5 "hi"}}"#, "hello|hi   |world|   hi"),
            (r#"{{ default "-" "" }} {{ default "-" "foo" }}"#, "- foo"),
            (r#"{{ repeat 3 "hello" }}"#, "hellohellohello"),
            (r#"{{ printf "%-5.5s|" "GETTING" }}"#, "GETTI|"),
            (r#"{{ .cluster | replace "-cluster" "" }} {{ replace "hello" "world" "hello world" }}"#, "us world world"),
            (r#"{{ substr 0 5 "hello world"}}{{ substr 6 11 "hello world"}}"#, "helloworld"),
            (r#"{{ title "hello world"}}"#, "Hello World"),
            (r#"{{ trim "   hello    " }}{{ trimAll "$" "$5.00" }}{{ trimPrefix "-" "-hello" }}{{ trimSuffix "-" "hello-" }}"#, "hello5.00hellohello"),
            (r#"{{ trunc 5 "hello world"}} {{ trunc -5 "hello world"}}"#, "hello world"),
            ("{{ add 3 2 5 }} {{ addf 3.5 2 5 }} {{ ceil 123.001 }} {{ div 10 2}} {{ divf 10 2 4}}", "10 10.5 124 5 1.25"),
            (r#"{{ "3.5" | float64 }} {{ floor 123.9999 }} {{ "3" | int }} {{ max 1 2 3 }} {{ maxf 1 2.5 3 }}"#, "3.5 123 3 3 3"),
            ("{{ min 1 2 3 }} {{ minf 1 2.5 3 }} {{ mul 5 2 3}} {{ mulf 5.5 2 2.5 }} {{ mod 10 3}}", "1 1 30 27.5 1"),
            ("{{ round 123.555555 3 }} {{ round 123.88571428571 5 .2 }} {{ sub 5 2 }} {{ subf 5.5 2 1.5 }}", "123.556 123.88572 3 2"),
            (r#"{{ count "a|b" "abab" }} {{ count "o" "foo" }}"#, "4 2"),
            (r#"{{ regexReplaceAll "(a*)bc" "aabcX" "${1}a" }} {{ regexReplaceAllLiteral "(ts=)" "ts=1" "timestamp=" }}"#, "aaaX timestamp=1"),
            (r#"{{ range $q := fromJson .queries }} {{ $q.query }} {{ end }}"#, " a  b "),
            (r#"{{ b64enc "hi" }} {{ b64dec "aGk" }} {{ urlencode "a b&c" }} {{ urldecode "a%20b" }}"#, "aGk= hi a+b%26c a b"),
            (r#"{{ "2s" | duration }} {{ bytes "2KiB" }}"#, "2 2048"),
            ("{{ .missing }}|{{ if .missing }}x{{ else }}y{{ end }}", "|y"),
            ("{{- 1 -}}  {{- /* c */ -}}  {{ $x := 2 }}{{ $x }}", "12"),
            ("{{ range $i, $v := fromJson `[5,6]` }}{{ $i }}={{ $v }};{{ end }}", "0=5;1=6;"),
            (r#"{{ with .status }}s={{ . }}{{ end }}{{ with .none }}x{{ else }}none{{ end }}"#, "s=200none"),
            (r#"{{ if eq .status "200" "201" }}ok{{ end }} {{ len .ip }} {{ index (fromJson `{"a":1}`) "a" }}"#, "ok 7 1"),
            ("{{ printf \"%d%%\" (mul 2 3) }}", "6%"),
            ("{{ ToUpper .status }}{{ TrimSpace \" x \" }}{{ Replace \"aaa\" \"a\" \"b\" 2 }}", "200xbba"),
        ] {
            assert_eq!(run(t).as_deref(), Ok(want), "{t}");
        }
    }

    #[test]
    fn errors_and_bounds() {
        assert!(run("{{").unwrap_err().starts_with("template: line:1:"));
        assert!(run("{{ nope }}")
            .unwrap_err()
            .contains("function \"nope\" not defined"));
        assert!(run("{{ if 1 }}").unwrap_err().contains("end"));
        assert!(run("{{ define \"x\" }}{{ end }}").is_err());
        assert!(run("{{ .status.x }}")
            .unwrap_err()
            .contains("can't evaluate field x"));
        assert!(run("{{ div 1 0 }}").unwrap_err().contains("divide by zero"));
        assert!(run("{{ eq 1 \"1\" }}")
            .unwrap_err()
            .contains("incompatible types"));
        assert!(run("{{ repeat 100000000 \"x\" }}")
            .unwrap_err()
            .contains("output bound"));
        assert!(run("{{ range 100000000 }}x{{ end }}").is_err());
        let nested = "{{ if 1 }}".repeat(100) + &"{{ end }}".repeat(100);
        assert!(run(&nested).unwrap_err().contains("nest"));
        // Output growth by loops is capped.
        let grow = r#"{{ range 90000 }}{{ __line__ }}{{ __line__ }}{{ end }}"#;
        assert!(run(grow).is_err());
    }

    #[test]
    fn fields_and_simple_keys() {
        let t = Template::parse("{{.a}} {{ .b.c | lower }} {{ (fromJson .d).e }}", "line").unwrap();
        let mut f = t.fields();
        f.sort();
        assert_eq!(f, vec!["a", "b", "c", "d", "e"]);
        assert_eq!(
            Template::parse("{{ .msg }}", "line")
                .unwrap()
                .simple_field(),
            Some("msg")
        );
        assert_eq!(
            Template::parse("x{{ .msg }}", "line")
                .unwrap()
                .simple_field(),
            None
        );
    }
}
