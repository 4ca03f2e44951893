//! Log group and stream names from templates, per entry, in the syntax of
//! Docker's `awslogs` driver (Go templates), limited to what an entry has:
//!
//! | template | renders |
//! |----------|---------|
//! | `{{.Source}}` | the source name |
//! | `{{.Label "container_name"}}` | that label of the origin (`level` and `stream` as in queries); empty when absent |
//! | anything else | itself |
//!
//! Spaces inside `{{ }}` are allowed. A template is parsed once, at
//! configuration time; anything else inside `{{ }}` is an error that
//! names it.
//!
//! The rendered text is then made a valid name ([`NameKind`]):
//! - a log group name allows `A-Z a-z 0-9 . - _ / #`; every other
//!   character becomes `_`;
//! - a log stream name allows anything but `:` and `*`, which become `_`;
//! - both are cut at 512 bytes (on a character boundary);
//! - an empty name (say, every label it uses is absent) becomes `ringtail`.

use std::fmt;

use crate::entry::{Flags, Origin};
use crate::filter::entry_label;

/// The longest group or stream name CloudWatch Logs takes.
pub const MAX_NAME_LEN: usize = 512;
/// What an empty rendering becomes.
pub const EMPTY_NAME: &str = "ringtail";

/// Which rules a rendered name follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    LogGroup,
    LogStream,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Source,
    Label(String),
}

/// A parsed name template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplate {
    kind: NameKind,
    parts: Vec<Part>,
    /// The template text, for messages.
    text: String,
}

/// A template that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad name template {template:?}: {problem} (use {{{{.Source}}}} or {{{{.Label \"name\"}}}})"
)]
pub struct TemplateError {
    pub template: String,
    pub problem: String,
}

impl NameTemplate {
    pub fn parse(text: &str, kind: NameKind) -> Result<NameTemplate, TemplateError> {
        let bad = |problem: String| TemplateError {
            template: text.to_string(),
            problem,
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| bad("a {{ without its }}".into()))?;
            let action = after[..close].trim();
            parts.push(parse_action(action).map_err(bad)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(NameTemplate {
            kind,
            parts,
            text: text.to_string(),
        })
    }

    /// Whether the name is the same for every entry.
    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The name for entries of `origin` (with `flags`, for `level` and
    /// `stream`), made valid for its kind.
    pub fn render(&self, origin: &Origin, flags: Flags) -> String {
        let mut raw = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => raw.push_str(t),
                Part::Source => raw.push_str(&origin.source),
                Part::Label(name) => raw.push_str(entry_label(origin, flags, name).unwrap_or("")),
            }
        }
        valid_name(&raw, self.kind)
    }
}

impl fmt::Display for NameTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_action(action: &str) -> Result<Part, String> {
    if action == ".Source" {
        return Ok(Part::Source);
    }
    if let Some(arg) = action.strip_prefix(".Label") {
        let arg = arg.trim();
        let name = arg
            .strip_prefix('"')
            .and_then(|a| a.strip_suffix('"'))
            .filter(|n| !n.is_empty() && !n.contains('"'))
            .ok_or_else(|| format!("{{{{{action}}}}} needs a label name in double quotes"))?;
        return Ok(Part::Label(name.to_string()));
    }
    Err(format!("unknown {{{{{action}}}}}"))
}

/// `raw` under the rules of `kind` (see the module doc).
pub fn valid_name(raw: &str, kind: NameKind) -> String {
    let allowed = |c: char| match kind {
        NameKind::LogGroup => c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#'),
        NameKind::LogStream => !matches!(c, ':' | '*'),
    };
    let mut out = String::with_capacity(raw.len().min(MAX_NAME_LEN));
    for c in raw.chars() {
        let c = if allowed(c) { c } else { '_' };
        if out.len() + c.len_utf8() > MAX_NAME_LEN {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push_str(EMPTY_NAME);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Stream;

    #[test]
    fn renders_source_labels_and_text() {
        let t = NameTemplate::parse(
            "/ringtail/{{ .Label \"container_name\" }}/{{.Source}}",
            NameKind::LogGroup,
        )
        .unwrap();
        assert!(!t.is_constant());
        let o = Origin::new("web.out").with_label("container_name", "web-1");
        assert_eq!(t.render(&o, Flags::default()), "/ringtail/web-1/web.out");
        // An absent label renders empty.
        assert_eq!(
            t.render(&Origin::new("x"), Flags::default()),
            "/ringtail//x"
        );
        let s = NameTemplate::parse("{{.Label \"stream\"}}", NameKind::LogStream).unwrap();
        let flags = Flags::default().with_stream(Some(Stream::Stderr));
        assert_eq!(s.render(&o, flags), "stderr");
        assert_eq!(s.render(&o, Flags::default()), EMPTY_NAME);
        assert!(NameTemplate::parse("fixed", NameKind::LogGroup)
            .unwrap()
            .is_constant());
    }

    #[test]
    fn names_are_made_valid() {
        assert_eq!(valid_name("a b:c*é/#.", NameKind::LogGroup), "a_b_c__/#.");
        assert_eq!(valid_name("a b:c*é/#.", NameKind::LogStream), "a b_c_é/#.");
        assert_eq!(valid_name(&"é".repeat(600), NameKind::LogStream).len(), 512);
        assert_eq!(valid_name(&"x".repeat(600), NameKind::LogGroup).len(), 512);
        assert_eq!(valid_name("", NameKind::LogGroup), "ringtail");
    }

    #[test]
    fn bad_templates_say_why() {
        for (t, why) in [
            ("{{.Source", "without its }}"),
            ("{{.Name}}", "unknown {{.Name}}"),
            ("{{.Label}}", "needs a label name"),
            ("{{.Label name}}", "needs a label name"),
        ] {
            let err = NameTemplate::parse(t, NameKind::LogGroup)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{t}: {err}");
        }
    }
}
