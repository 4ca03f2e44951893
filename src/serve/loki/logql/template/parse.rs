//! Go `text/template` source to a tree: text, `{{ actions }}` with `{{-`
//! and `-}}` trimming, `{{/* comments */}}`, pipelines (`a | b c`),
//! variables (`$x := ...`, `$x = ...`), `if`/`else if`/`else`, `range`
//! (with `$i, $v :=`, `else`, `break`, `continue`), `with`, parenthesised
//! pipelines and field chains (`.a.b`, `$x.a`, `(f x).a`). `define`,
//! `template` and `block` are refused: they are how Go templates recurse,
//! and a LogQL template has no other templates to call.

use super::value::Value;

/// The deepest nesting of blocks and parentheses.
pub const MAX_NESTING: usize = 64;

#[derive(Clone, Debug)]
pub enum Node {
    Text(Vec<u8>),
    /// `{{ pipeline }}`: prints the value unless it declares a variable.
    Action(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Break,
    Continue,
}

#[derive(Clone, Debug)]
pub struct Pipeline {
    /// `$a, $b :=` (or `=` when `assign`).
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Command>,
    /// Byte offset of the action, for messages.
    pub pos: usize,
}

#[derive(Clone, Debug)]
pub struct Command {
    pub args: Vec<Operand>,
}

#[derive(Clone, Debug)]
pub enum Operand {
    /// `.`, `.a.b`.
    Dot(Vec<String>),
    /// `$`, `$x`, `$x.a`.
    Var(String, Vec<String>),
    /// A function by name.
    Func(String),
    Literal(Value),
    /// `(pipeline)` and the fields read from its value.
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Num(Value),
    Pipe,
    LParen,
    RParen,
    /// `.a.b` directly after `)`.
    Fields(Vec<String>),
    Declare,
    Assign,
    Comma,
}

/// What went wrong where; shown as Go shows it (`template: line:1:7: ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

pub fn position(src: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(src.len());
    while !src.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &src[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

struct Parser<'a> {
    src: &'a str,
    /// `(start of action, its tokens, trim before, trim after)` and text.
    items: Vec<Item>,
    at: usize,
    depth: usize,
}

#[derive(Debug)]
enum Item {
    Text(Vec<u8>),
    Action { pos: usize, toks: Vec<(Tok, usize)> },
}

pub fn parse(src: &str) -> Result<Vec<Node>, TemplateError> {
    let items = split(src)?;
    let mut p = Parser {
        src,
        items,
        at: 0,
        depth: 0,
    };
    let (nodes, end) = p.list()?;
    if let Some((word, pos)) = end {
        return Err(p.err(pos, &format!("unexpected {{{{{word}}}}}")));
    }
    Ok(nodes)
}

/// Splits the source into text and lexed actions, applying trim markers
/// and dropping comments.
fn split(src: &str) -> Result<Vec<Item>, TemplateError> {
    let b = src.as_bytes();
    let mut items = Vec::new();
    let mut i = 0;
    let mut text = Vec::new();
    let mut trim_next = false;
    while i < b.len() {
        let Some(open) = src[i..].find("{{").map(|p| i + p) else {
            text.extend_from_slice(&b[i..]);
            break;
        };
        text.extend_from_slice(&b[i..open]);
        let mut j = open + 2;
        let trim_before =
            b.get(j) == Some(&b'-') && b.get(j + 1).is_some_and(u8::is_ascii_whitespace);
        if trim_before {
            j += 2;
        }
        if trim_next {
            let n = text.len() - text.trim_ascii_start().len();
            text.drain(..n);
        }
        if trim_before {
            let keep = text.trim_ascii_end().len();
            text.truncate(keep);
        }
        if !text.is_empty() {
            items.push(Item::Text(std::mem::take(&mut text)));
        }
        text.clear();
        // Comment?
        let k = j + (src[j..].len() - src[j..].trim_start().len());
        if src[k..].starts_with("/*") {
            let Some(end) = src[k + 2..].find("*/").map(|p| k + 2 + p + 2) else {
                return Err(err_at(src, open, "unclosed comment"));
            };
            let rest = &src[end..];
            let (close_len, trim_after) =
                if rest.trim_start().starts_with("-}}") && rest.len() > rest.trim_start().len() {
                    (rest.len() - rest.trim_start().len() + 3, true)
                } else if rest.starts_with("}}") {
                    (2, false)
                } else {
                    return Err(err_at(src, end, "comment ends before closing delimiter"));
                };
            trim_next = trim_after;
            i = end + close_len;
            continue;
        }
        let (toks, end, trim_after) = lex_action(src, j)?;
        items.push(Item::Action { pos: open, toks });
        trim_next = trim_after;
        i = end;
    }
    if trim_next {
        let n = text.len() - text.trim_ascii_start().len();
        text.drain(..n);
    }
    if !text.is_empty() {
        items.push(Item::Text(text));
    }
    Ok(items)
}

fn err_at(src: &str, pos: usize, msg: &str) -> TemplateError {
    let (line, col) = position(src, pos);
    TemplateError {
        line,
        col,
        msg: msg.to_string(),
    }
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Reads `.a.b` style field names starting at a `.`.
fn fields(src: &str, mut i: usize) -> (Vec<String>, usize) {
    let b = src.as_bytes();
    let mut out = Vec::new();
    while i < b.len()
        && b[i] == b'.'
        && b.get(i + 1)
            .is_some_and(|c| ident_char(*c) && !c.is_ascii_digit())
    {
        let start = i + 1;
        i = start;
        while i < b.len() && ident_char(b[i]) {
            i += 1;
        }
        out.push(src[start..i].to_string());
    }
    (out, i)
}

/// Lexes one action from `i` (after `{{` and a trim marker) to its `}}`.
#[allow(clippy::type_complexity)]
fn lex_action(src: &str, mut i: usize) -> Result<(Vec<(Tok, usize)>, usize, bool), TemplateError> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            // ` -}}` closes with a trim.
            if b[i..].starts_with(b" -}}")
                || (b[i].is_ascii_whitespace() && b[i + 1..].starts_with(b"-}}"))
            {
                return Ok((toks, i + 4, true));
            }
            i += 1;
        }
        if i >= b.len() {
            return Err(err_at(src, i, "unclosed action"));
        }
        if b[i..].starts_with(b"}}") {
            return Ok((toks, i + 2, false));
        }
        let start = i;
        let c = b[i];
        let tok = match c {
            b'|' => {
                i += 1;
                Tok::Pipe
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                if b.get(i) == Some(&b'.') {
                    let (f, j) = fields(src, i);
                    if !f.is_empty() {
                        toks.push((Tok::RParen, start));
                        toks.push((Tok::Fields(f), i));
                        i = j;
                        continue;
                    }
                }
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let (f, j) = fields(src, i);
                i = if f.is_empty() { i + 1 } else { j };
                Tok::Dot(f)
            }
            b'$' => {
                let s = i + 1;
                i = s;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                let name = src[s..i].to_string();
                let (f, j) = fields(src, i);
                i = j;
                Tok::Var(name, f)
            }
            b'"' => {
                let (s, j) = quoted(src, i)?;
                i = j;
                Tok::Str(s)
            }
            b'`' => {
                let Some(end) = src[i + 1..].find('`') else {
                    return Err(err_at(src, i, "unterminated raw quoted string"));
                };
                let s = src[i + 1..i + 1 + end].to_string();
                i += end + 2;
                Tok::Str(s)
            }
            b'\'' => {
                let mut chars = src[i + 1..].chars();
                let (ch, len) = match chars.next() {
                    Some('\\') => match chars.next() {
                        Some('n') => ('\n', 2),
                        Some('t') => ('\t', 2),
                        Some('\\') => ('\\', 2),
                        Some('\'') => ('\'', 2),
                        _ => return Err(err_at(src, i, "bad character constant")),
                    },
                    Some(c) => (c, c.len_utf8()),
                    None => return Err(err_at(src, i, "unterminated character constant")),
                };
                if src.as_bytes().get(i + 1 + len) != Some(&b'\'') {
                    return Err(err_at(src, i, "unterminated character constant"));
                }
                i += len + 2;
                Tok::Num(Value::Int(ch as i64))
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric()
                        || matches!(b[j], b'.' | b'_')
                        || (matches!(b[j], b'+' | b'-')
                            && matches!(b[j - 1], b'e' | b'E' | b'p' | b'P')))
                {
                    j += 1;
                }
                let text = &src[i..j];
                let v = number(text)
                    .ok_or_else(|| err_at(src, i, &format!("bad number syntax: {text:?}")))?;
                i = j;
                Tok::Num(v)
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                Tok::Ident(src[start..i].to_string())
            }
            _ => {
                let ch = src[i..].chars().next().expect("char boundary");
                return Err(err_at(src, i, &format!("unexpected {ch:?} in command")));
            }
        };
        toks.push((tok, start));
    }
}

/// A Go number literal: decimal, `0x` hex, `0o`/`0` octal, `0b`, floats
/// with exponents, `_` separators.
fn number(text: &str) -> Option<Value> {
    let t: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    let lower = body.to_ascii_lowercase();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bn) = lower.strip_prefix("0b") {
        i64::from_str_radix(bn, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|c| c.is_ascii_digit())
    {
        i64::from_str_radix(&lower[1..], 8).ok()
    } else if lower.bytes().all(|c| c.is_ascii_digit()) {
        lower.parse::<i64>().ok()
    } else {
        None
    };
    if let Some(v) = int {
        return Some(Value::Int(if neg { -v } else { v }));
    }
    let f: f64 = body.parse().ok()?;
    if !f.is_finite()
        || body
            .chars()
            .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E'))
    {
        return None;
    }
    Some(Value::Float(if neg { -f } else { f }))
}

/// A Go interpreted string literal starting at `i`.
fn quoted(src: &str, i: usize) -> Result<(String, usize), TemplateError> {
    let mut out = String::new();
    let mut chars = src[i + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1 + off + 1)),
            '\n' => break,
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                let hex = |chars: &mut std::str::CharIndices<'_>, n: usize| -> Option<char> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        v = v * 16 + chars.next()?.1.to_digit(16)?;
                    }
                    char::from_u32(v)
                };
                let d = match e {
                    'n' => Some('\n'),
                    't' => Some('\t'),
                    'r' => Some('\r'),
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'v' => Some('\u{b}'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    'x' => hex(&mut chars, 2),
                    'u' => hex(&mut chars, 4),
                    'U' => hex(&mut chars, 8),
                    _ => None,
                };
                match d {
                    Some(d) => out.push(d),
                    None => {
                        return Err(err_at(
                            src,
                            i,
                            &format!("invalid syntax in string: unknown escape \\{e}"),
                        ))
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(err_at(src, i, "unterminated quoted string"))
}

impl Parser<'_> {
    fn err(&self, pos: usize, msg: &str) -> TemplateError {
        err_at(self.src, pos, msg)
    }

    /// Nodes up to an `{{else}}`/`{{end}}` (returned with its position) or
    /// the end of the source.
    #[allow(clippy::type_complexity)]
    fn list(&mut self) -> Result<(Vec<Node>, Option<(String, usize)>), TemplateError> {
        let mut nodes = Vec::new();
        while self.at < self.items.len() {
            let i = self.at;
            self.at += 1;
            match &self.items[i] {
                Item::Text(t) => nodes.push(Node::Text(t.clone())),
                Item::Action { pos, toks } => {
                    let pos = *pos;
                    let toks = toks.clone();
                    let word = match toks.first() {
                        Some((Tok::Ident(w), _)) => w.as_str(),
                        None => return Err(self.err(pos, "missing value for command")),
                        _ => "",
                    };
                    match word {
                        "end" | "else" => {
                            if word == "end" && toks.len() > 1 {
                                return Err(self.err(pos, "unexpected tokens after end"));
                            }
                            // Keep `else if` tokens for the caller.
                            self.at -= 1;
                            return Ok((nodes, Some((word.to_string(), pos))));
                        }
                        "if" | "range" | "with" => nodes.push(self.block(word, pos, &toks[1..])?),
                        "break" | "continue" => nodes.push(if word == "break" {
                            Node::Break
                        } else {
                            Node::Continue
                        }),
                        "define" | "template" | "block" => {
                            return Err(self.err(
                                pos,
                                &format!("{{{{{word}}}}} is not supported in LogQL templates"),
                            ))
                        }
                        _ => nodes.push(Node::Action(self.pipeline(&toks, pos)?)),
                    }
                }
            }
        }
        Ok((nodes, None))
    }

    fn block(
        &mut self,
        word: &str,
        pos: usize,
        toks: &[(Tok, usize)],
    ) -> Result<Node, TemplateError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.err(pos, &format!("blocks nest deeper than {MAX_NESTING}")));
        }
        let pipe = self.pipeline(toks, pos)?;
        if pipe.cmds.is_empty() {
            return Err(self.err(pos, &format!("missing value for {word}")));
        }
        let (body, end) = self.list()?;
        let Some((end_word, end_pos)) = end else {
            return Err(self.err(
                pos,
                &format!("unexpected EOF: {{{{{word}}}}} has no {{{{end}}}}"),
            ));
        };
        let otherwise = if end_word == "else" {
            let Item::Action {
                toks: else_toks, ..
            } = &self.items[self.at]
            else {
                unreachable!("list stopped at an action")
            };
            let else_toks = else_toks.clone();
            self.at += 1;
            if else_toks.len() > 1 {
                // `{{else if ...}}` / `{{else with ...}}`: a nested block
                // that shares this one's `{{end}}`.
                let Some((Tok::Ident(w), _)) = else_toks.get(1) else {
                    return Err(self.err(end_pos, "unexpected tokens after else"));
                };
                if w != word || word == "range" {
                    return Err(self.err(end_pos, &format!("expected end; found else {w}")));
                }
                let nested = self.block(word, end_pos, &else_toks[2..])?;
                self.depth -= 1;
                return Ok(match word {
                    "if" => Node::If {
                        cond: pipe,
                        then: body,
                        otherwise: vec![nested],
                    },
                    _ => Node::With {
                        pipe,
                        body,
                        otherwise: vec![nested],
                    },
                });
            }
            let (otherwise, end) = self.list()?;
            match end {
                Some((w, _)) if w == "end" => self.at += 1,
                Some((_, p)) => return Err(self.err(p, "expected end; found else")),
                None => {
                    return Err(self.err(
                        pos,
                        &format!("unexpected EOF: {{{{{word}}}}} has no {{{{end}}}}"),
                    ))
                }
            }
            otherwise
        } else {
            self.at += 1;
            Vec::new()
        };
        self.depth -= 1;
        Ok(match word {
            "if" => Node::If {
                cond: pipe,
                then: body,
                otherwise,
            },
            "range" => Node::Range {
                pipe,
                body,
                otherwise,
            },
            _ => Node::With {
                pipe,
                body,
                otherwise,
            },
        })
    }

    fn pipeline(&mut self, toks: &[(Tok, usize)], pos: usize) -> Result<Pipeline, TemplateError> {
        let mut i = 0;
        let mut decl = Vec::new();
        let mut assign = false;
        // `$a := `, `$a, $b := `, `$a = `.
        let mut j = 0;
        let mut names = Vec::new();
        while let Some((Tok::Var(name, f), _)) = toks.get(j) {
            if !f.is_empty() {
                break;
            }
            names.push(name.clone());
            j += 1;
            match toks.get(j) {
                Some((Tok::Comma, _)) => j += 1,
                _ => break,
            }
        }
        match toks.get(j) {
            Some((Tok::Declare, _)) if !names.is_empty() => {
                decl = names;
                i = j + 1;
            }
            Some((Tok::Assign, _)) if names.len() == 1 => {
                decl = names;
                assign = true;
                i = j + 1;
            }
            _ => {}
        }
        if decl.len() > 2 {
            return Err(self.err(pos, "too many declarations in command"));
        }
        let mut cmds = Vec::new();
        let mut args = Vec::new();
        while i < toks.len() {
            let (t, tpos) = &toks[i];
            i += 1;
            match t {
                Tok::Pipe => {
                    if args.is_empty() {
                        return Err(self.err(*tpos, "missing command before |"));
                    }
                    cmds.push(Command {
                        args: std::mem::take(&mut args),
                    });
                }
                Tok::LParen => {
                    // Find the matching `)`.
                    let mut level = 1;
                    let start = i;
                    while i < toks.len() && level > 0 {
                        match toks[i].0 {
                            Tok::LParen => level += 1,
                            Tok::RParen => level -= 1,
                            _ => {}
                        }
                        i += 1;
                    }
                    if level > 0 {
                        return Err(self.err(*tpos, "unclosed left paren"));
                    }
                    self.depth += 1;
                    if self.depth > MAX_NESTING {
                        return Err(self.err(
                            *tpos,
                            &format!("parentheses nest deeper than {MAX_NESTING}"),
                        ));
                    }
                    let inner = self.pipeline(&toks[start..i - 1], *tpos)?;
                    self.depth -= 1;
                    if inner.cmds.is_empty() {
                        return Err(self.err(*tpos, "missing value in parentheses"));
                    }
                    let fields = match toks.get(i) {
                        Some((Tok::Fields(f), _)) => {
                            i += 1;
                            f.clone()
                        }
                        _ => Vec::new(),
                    };
                    args.push(Operand::Sub(Box::new(inner), fields));
                }
                Tok::RParen => return Err(self.err(*tpos, "unexpected right paren")),
                Tok::Dot(f) => args.push(Operand::Dot(f.clone())),
                Tok::Var(n, f) => args.push(Operand::Var(n.clone(), f.clone())),
                Tok::Ident(name) => args.push(match name.as_str() {
                    "true" => Operand::Literal(Value::Bool(true)),
                    "false" => Operand::Literal(Value::Bool(false)),
                    "nil" => Operand::Literal(Value::Nil),
                    _ => Operand::Func(name.clone()),
                }),
                Tok::Str(s) => args.push(Operand::Literal(Value::Str(s.clone()))),
                Tok::Num(v) => args.push(Operand::Literal(v.clone())),
                Tok::Fields(_) | Tok::Declare | Tok::Assign | Tok::Comma => {
                    return Err(self.err(*tpos, "unexpected token in command"))
                }
            }
        }
        if !args.is_empty() {
            cmds.push(Command { args });
        } else if !cmds.is_empty() {
            return Err(self.err(pos, "missing command after |"));
        }
        if !decl.is_empty() && cmds.is_empty() {
            return Err(self.err(pos, "missing value for declaration"));
        }
        Ok(Pipeline {
            decl,
            assign,
            cmds,
            pos,
        })
    }
}
