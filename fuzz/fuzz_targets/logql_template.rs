//! Fuzzes the Go-template engine of `line_format` and `label_format`:
//! templates come from query text, lines from whatever was logged.
//!
//! Input: the template, a NUL byte, then the log line (invalid UTF-8 in
//! the template replaced).
//!
//! Checked: parsing and running never panic and always stop; output stays
//! within the engine's bound for the line; a refused template has a Go-style
//! `template: ...` message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtail::serve::loki::logql::template::{max_output, LabelSource, Template};

struct Labels;

impl LabelSource for Labels {
    fn label(&self, name: &str) -> Option<String> {
        match name {
            "status" => Some("200".into()),
            "msg" => Some("hello {{ world }} é".into()),
            "json" => Some(r#"{"a":[1,2,{"b":"c"}],"d":null}"#.into()),
            "n" => Some("12345".into()),
            _ => None,
        }
    }

    fn all(&self) -> Vec<(String, String)> {
        ["json", "msg", "n", "status"]
            .iter()
            .map(|k| (k.to_string(), self.label(k).unwrap_or_default()))
            .collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let (tmpl, line) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"a log line"[..]),
    };
    let src = String::from_utf8_lossy(tmpl);
    match Template::parse(&src, "line") {
        Err(e) => assert!(e.starts_with("template: line:"), "{e}"),
        Ok(t) => {
            let mut out = Vec::new();
            let r = t.execute(&Labels, line, 1_700_000_000_000_000_000, &mut out);
            assert!(out.len() <= max_output(line.len()), "{} bytes", out.len());
            if let Err(e) = r {
                assert!(e.starts_with("template: line:"), "{e}");
            }
            let _ = t.fields();
        }
    }
});
