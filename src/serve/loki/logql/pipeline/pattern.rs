//! `| pattern "<ip> - <_> <status>"` and the `|>`/`!>` line filters.
//!
//! A pattern is literals and captures (`<name>`, or `<_>` to skip). As in
//! Loki (`pkg/logql/log/pattern`): a pattern starting with a literal is
//! anchored at the line start; each capture runs to the next occurrence
//! of the literal after it (or to the line end); when a literal is not
//! found, the capture before it takes the rest of the line and matching
//! stops. As a parser it needs a named capture, and no two captures may
//! be adjacent or share a name. As a filter (`|>`), captures must be
//! `<_>`; the line matches when every literal is found in order, no
//! capture is empty, and a trailing literal ends the line.
//!
//! Captures and literals are bounded by the pattern's length, so a line
//! costs one pass per literal at most.

use memchr::memmem;

use super::{set_extracted, Hints, LineLabels};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Literal(Vec<u8>),
    /// A capture; `None` for `<_>`.
    Capture(Option<String>),
}

#[derive(Clone, Debug)]
pub struct Pattern {
    nodes: Vec<Node>,
}

fn lex(p: &str) -> Vec<Node> {
    let b = p.as_bytes();
    let mut nodes: Vec<Node> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'<'
            && b.get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        {
            let mut j = i + 2;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j < b.len() && b[j] == b'>' {
                let name = &p[i + 1..j];
                nodes.push(Node::Capture((name != "_").then(|| name.to_string())));
                i = j + 1;
                continue;
            }
        }
        match nodes.last_mut() {
            Some(Node::Literal(l)) => l.push(b[i]),
            _ => nodes.push(Node::Literal(vec![b[i]])),
        }
        i += 1;
    }
    nodes
}

fn show(n: &Node) -> String {
    match n {
        Node::Literal(l) => String::from_utf8_lossy(l).into_owned(),
        Node::Capture(Some(n)) => format!("<{n}>"),
        Node::Capture(None) => "<_>".into(),
    }
}

impl Pattern {
    fn no_consecutive_captures(nodes: &[Node]) -> Result<(), String> {
        for w in nodes.windows(2) {
            if matches!(w[0], Node::Capture(_)) && matches!(w[1], Node::Capture(_)) {
                return Err(format!(
                    "found consecutive capture '{}{}': invalid expression",
                    show(&w[0]),
                    show(&w[1])
                ));
            }
        }
        Ok(())
    }

    /// A pattern for `| pattern`.
    pub fn parse_parser(p: &str) -> Result<Pattern, String> {
        if p.is_empty() {
            return Err("syntax error: unexpected $end, expecting IDENTIFIER or LITERAL".into());
        }
        let nodes = lex(p);
        let names: Vec<&String> = nodes
            .iter()
            .filter_map(|n| match n {
                Node::Capture(Some(name)) => Some(name),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err("at least one capture is required, as in \"<ip> - <_>\"".into());
        }
        Self::no_consecutive_captures(&nodes)?;
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!("duplicate capture name ({n}): invalid expression"));
            }
        }
        Ok(Pattern { nodes })
    }

    /// A pattern for `|>` and `!>`: only `<_>` captures.
    pub fn parse_filter(p: &str) -> Result<Pattern, String> {
        let nodes = lex(p);
        Self::no_consecutive_captures(&nodes)?;
        if let Some(n) = nodes.iter().find(|n| matches!(n, Node::Capture(Some(_)))) {
            return Err(format!(
                "named captures are not allowed: found '{}': use <_> in a line filter pattern",
                show(n)
            ));
        }
        Ok(Pattern { nodes })
    }

    /// The named captures of `line`, in order (fewer when matching stops).
    pub fn captures<'p, 'l>(&'p self, mut line: &'l [u8], out: &mut Vec<(&'p str, &'l [u8])>) {
        out.clear();
        if line.is_empty() || self.nodes.is_empty() {
            return;
        }
        let mut nodes = &self.nodes[..];
        if let Node::Literal(l) = &nodes[0] {
            if !line.starts_with(l) {
                return;
            }
            line = &line[l.len()..];
            nodes = &nodes[1..];
        }
        while let Some((first, rest)) = nodes.split_first() {
            let Node::Capture(name) = first else {
                unreachable!("captures and literals alternate after the first literal")
            };
            let Some(Node::Literal(lit)) = rest.first() else {
                // Ending on a capture: it takes the rest.
                if let Some(n) = name {
                    out.push((n, line));
                }
                return;
            };
            nodes = &rest[1..];
            match memmem::find(line, lit) {
                None => {
                    if let Some(n) = name {
                        out.push((n, line));
                    }
                    return;
                }
                Some(i) => {
                    if let Some(n) = name {
                        out.push((n, &line[..i]));
                    }
                    line = &line[i + lit.len()..];
                }
            }
        }
    }

    /// `| pattern`: the captures become labels.
    pub fn extract(&self, line: &[u8], l: &mut LineLabels<'_>, hints: &Hints) {
        let mut caps = Vec::new();
        self.captures(line, &mut caps);
        for (name, value) in caps {
            set_extracted(l, hints, name, &String::from_utf8_lossy(value));
        }
    }

    /// `|>`: whether the line matches.
    pub fn test(&self, line: &[u8]) -> bool {
        if line.is_empty() || self.nodes.is_empty() {
            return line.is_empty() && self.nodes.is_empty();
        }
        let mut off = 0;
        for (i, n) in self.nodes.iter().enumerate() {
            let Node::Literal(lit) = n else { continue };
            let Some(j) = memmem::find(&line[off..], lit) else {
                return false;
            };
            if i != 0 && j == 0 {
                return false;
            }
            off += j + lit.len();
        }
        let ends_on_capture = matches!(self.nodes.last(), Some(Node::Capture(_)));
        let has_rest = off != line.len();
        ends_on_capture == has_rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(p: &str, line: &str) -> Vec<String> {
        let p = Pattern::parse_parser(p).unwrap();
        let mut out = Vec::new();
        p.captures(line.as_bytes(), &mut out);
        out.iter()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    // pkg/logql/log/pattern/pattern_test.go (fixtures) and the docs'
    // NGINX example.
    #[test]
    fn matches_like_loki() {
        assert_eq!(caps("foo <foo> bar", "foo buzz bar"), vec!["buzz"]);
        assert_eq!(
            caps("foo <foo> bar<fuzz>", "foo buzz bar"),
            vec!["buzz", ""]
        );
        assert_eq!(caps("<foo>", "foo buzz bar"), vec!["foo buzz bar"]);
        assert_eq!(
            caps("<foo> bar", "foo buzz"),
            vec!["foo buzz"],
            "literal missing"
        );
        assert!(caps("x<foo>", "foo").is_empty(), "anchored at the start");
        assert_eq!(
            caps(
                r#"<ip> - - <_> "<method> <uri> <_>" <status> <size> <_> "<agent>" <_>"#,
                r#"0.191.12.2 - - [10/Jun/2021:09:14:29 +0000] "GET /api/plugins/versioncheck HTTP/1.1" 200 2 "-" "Go-http-client/2.0" "13.76.247.102, 34.120.177.193" "TLSv1.2" "US" """#
            ),
            vec![
                "0.191.12.2",
                "GET",
                "/api/plugins/versioncheck",
                "200",
                "2",
                "Go-http-client/2.0"
            ]
        );
        assert_eq!(
            caps(
                r#"<_> msg="<method> <path> (<status>) <latency>""#,
                r#"level=debug ts=2021-06-10T09:24:13.472094048Z caller=logging.go:66 traceID=0568b66ad2d9294c msg="POST /loki/api/v1/push (204) 16.652862ms""#
            ),
            vec!["POST", "/loki/api/v1/push", "204", "16.652862ms"]
        );
    }

    #[test]
    fn invalid_patterns() {
        assert!(Pattern::parse_parser("").is_err());
        assert!(Pattern::parse_parser("<_>")
            .unwrap_err()
            .contains("at least one capture"));
        assert!(Pattern::parse_parser("foo bar").is_err());
        assert_eq!(
            Pattern::parse_parser("<f><f>").unwrap_err(),
            "found consecutive capture '<f><f>': invalid expression"
        );
        assert_eq!(
            Pattern::parse_parser("<f> f<f>").unwrap_err(),
            "duplicate capture name (f): invalid expression"
        );
        assert!(Pattern::parse_filter("<foo>").is_err());
        assert!(
            Pattern::parse_parser("a <1> <b>").is_ok(),
            "<1> is a literal"
        );
        let many: String = (0..1000).map(|i| format!("<c{i}> ")).collect();
        assert!(Pattern::parse_parser(&many).is_ok());
    }

    // docs, "Pattern match filter operators".
    #[test]
    fn filters() {
        let p = Pattern::parse_filter(
            r#"<_> caller=http.go:194 level=debug <_> msg="POST /push.v1.PusherService/Push <_>"#,
        )
        .unwrap();
        assert!(p.test(br#"ts=2024-04-05T08:40:13.585911094Z caller=http.go:194 level=debug traceID=23e54a271db607cc orgID=3648 msg="POST /push.v1.PusherService/Push (200) 12.684035ms""#));
        assert!(!p.test(b"caller=http.go:194 level=info"));
        let p = Pattern::parse_filter("<_> bar").unwrap();
        assert!(!p.test(b"foo bar baz") && p.test(b"foo bar"));
        let p = Pattern::parse_filter("foo <_>").unwrap();
        assert!(p.test(b"foo bar baz"));
        let empty = Pattern::parse_filter("").unwrap();
        assert!(empty.test(b"") && !empty.test(b"x"));
    }
}
