//! Tokens of LogQL, with the byte offset each starts at, and the
//! [`ParseError`] every later stage reports positions with.
//!
//! As in Loki: `#` starts a comment that runs to the end of the line;
//! strings are `"..."` with Go's escapes or `` `...` `` raw; a number
//! directly followed by letters is a duration (`5m`, `1.5h`, `300µs`)
//! when it reads as one, else bytes (`20MB`, `1KiB`); `--strict` and
//! `--keep-empty` are parser flags. Keywords are matched without regard
//! to case by the parser; identifiers keep their case.

use std::fmt;

use super::units;

/// Where and why a query did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parse error at {}:{}: {}", self.line, self.col, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// The error at byte offset `pos` of `input`.
pub fn error_at(input: &str, pos: usize, msg: String) -> ParseError {
    let mut pos = pos.min(input.len());
    while !input.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &input[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ParseError { line, col, msg }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// `=`
    Eq,
    /// `==`
    CmpEq,
    /// `!=`
    Ne,
    /// `=~`
    Re,
    /// `!~`
    Nre,
    /// `|=`
    PipeEq,
    /// `|~`
    PipeRe,
    /// `|>`
    PipePattern,
    /// `!>`
    NotPattern,
    /// `|`
    Pipe,
    Gt,
    Ge,
    Lt,
    Le,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Caret,
    Str(String),
    Ident(String),
    Number(f64),
    /// A duration literal as written (`5m`, `1.5h`); it may not parse, the
    /// parser says so where it expected one.
    Duration(String),
    /// A bytes literal as written (`20MB`).
    Bytes(String),
    /// `--strict`, `--keep-empty`, or another `--word`.
    Flag(String),
    End,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'='".into(),
            Tok::CmpEq => "'=='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Re => "'=~'".into(),
            Tok::Nre => "'!~'".into(),
            Tok::PipeEq => "'|='".into(),
            Tok::PipeRe => "'|~'".into(),
            Tok::PipePattern => "'|>'".into(),
            Tok::NotPattern => "'!>'".into(),
            Tok::Pipe => "'|'".into(),
            Tok::Gt => "'>'".into(),
            Tok::Ge => "'>='".into(),
            Tok::Lt => "'<'".into(),
            Tok::Le => "'<='".into(),
            Tok::Plus => "'+'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Star => "'*'".into(),
            Tok::Slash => "'/'".into(),
            Tok::Percent => "'%'".into(),
            Tok::Caret => "'^'".into(),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Duration(d) => format!("duration {d}"),
            Tok::Bytes(b) => format!("bytes {b}"),
            Tok::Flag(f) => format!("flag {f}"),
            Tok::End => "the end of the query".into(),
        }
    }

    /// Whether this is the keyword `word` (any case).
    pub fn is_word(&self, word: &str) -> bool {
        matches!(self, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    /// Byte offset in the input.
    pub pos: usize,
}

/// The most tokens a query may have: bounds the parser's work and depth on
/// hostile input.
pub const MAX_TOKENS: usize = 10_000;

pub fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let b = input.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if tokens.len() >= MAX_TOKENS {
            return Err(error_at(
                input,
                i,
                format!("the query has more than {MAX_TOKENS} tokens"),
            ));
        }
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let next = b.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b'[', _) => (Tok::LBracket, 1),
            (b']', _) => (Tok::RBracket, 1),
            (b',', _) => (Tok::Comma, 1),
            (b'+', _) => (Tok::Plus, 1),
            (b'-', Some(b'-')) if b.get(i + 2).is_some_and(u8::is_ascii_alphabetic) => {
                let mut j = i + 2;
                while j < b.len() && (b[j].is_ascii_alphabetic() || b[j] == b'-') {
                    j += 1;
                }
                (Tok::Flag(input[i..j].to_string()), j - i)
            }
            (b'-', _) => (Tok::Minus, 1),
            (b'*', _) => (Tok::Star, 1),
            (b'/', _) => (Tok::Slash, 1),
            (b'%', _) => (Tok::Percent, 1),
            (b'^', _) => (Tok::Caret, 1),
            (b'=', Some(b'~')) => (Tok::Re, 2),
            (b'=', Some(b'=')) => (Tok::CmpEq, 2),
            (b'=', _) => (Tok::Eq, 1),
            (b'!', Some(b'=')) => (Tok::Ne, 2),
            (b'!', Some(b'~')) => (Tok::Nre, 2),
            (b'!', Some(b'>')) => (Tok::NotPattern, 2),
            (b'|', Some(b'=')) => (Tok::PipeEq, 2),
            (b'|', Some(b'~')) => (Tok::PipeRe, 2),
            (b'|', Some(b'>')) => (Tok::PipePattern, 2),
            (b'|', _) => (Tok::Pipe, 1),
            (b'>', Some(b'=')) => (Tok::Ge, 2),
            (b'>', _) => (Tok::Gt, 1),
            (b'<', Some(b'=')) => (Tok::Le, 2),
            (b'<', _) => (Tok::Lt, 1),
            (b'"', _) => {
                let (s, len) = lex_quoted(input, i)?;
                (Tok::Str(s), len)
            }
            (b'`', _) => match input[i + 1..].find('`') {
                Some(end) => (Tok::Str(input[i + 1..i + 1 + end].to_string()), end + 2),
                None => {
                    return Err(error_at(
                        input,
                        i,
                        "unterminated `string`: expected a closing backtick".into(),
                    ))
                }
            },
            (b'0'..=b'9' | b'.', _) => lex_number(input, i)?,
            (c, _) if c.is_ascii_alphabetic() || c == b'_' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                (Tok::Ident(input[i..j].to_string()), j - i)
            }
            _ => {
                let ch = input[i..].chars().next().expect("i is a char boundary");
                return Err(error_at(input, i, format!("unexpected character {ch:?}")));
            }
        };
        tokens.push(Token { tok, pos: start });
        i += len;
    }
    tokens.push(Token {
        tok: Tok::End,
        pos: input.len(),
    });
    Ok(tokens)
}

/// A number (`12`, `1.5`, `1e3`), a duration (`5m`, `1h30m`, `1.5h`) or
/// bytes (`20MB`).
fn lex_number(input: &str, i: usize) -> Result<(Tok, usize), ParseError> {
    let b = input.as_bytes();
    let mut j = i;
    while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
        j += 1;
    }
    let unit_start = |j: usize| input[j..].starts_with('µ') || b[j].is_ascii_alphabetic();
    let is_exponent = j < b.len()
        && (b[j] == b'e' || b[j] == b'E')
        && (b.get(j + 1).is_some_and(u8::is_ascii_digit)
            || (matches!(b.get(j + 1), Some(b'+' | b'-'))
                && b.get(j + 2).is_some_and(u8::is_ascii_digit)));
    if j < b.len() && !is_exponent && unit_start(j) {
        // A duration or bytes: digits, dots and unit letters, repeated.
        let mut k = j;
        while k < b.len() {
            if b[k].is_ascii_alphanumeric() || b[k] == b'.' {
                k += 1;
            } else if input[k..].starts_with('µ') {
                k += 'µ'.len_utf8();
            } else {
                break;
            }
        }
        let text = &input[i..k];
        let tok = if units::logql_duration(text).is_ok() {
            Tok::Duration(text.to_string())
        } else if units::parse_bytes(text).is_ok() {
            Tok::Bytes(text.to_string())
        } else {
            Tok::Duration(text.to_string())
        };
        return Ok((tok, k - i));
    }
    if is_exponent {
        j += 1;
        if matches!(b[j], b'+' | b'-') {
            j += 1;
        }
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
    }
    let text = &input[i..j];
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() => Ok((Tok::Number(n), j - i)),
        _ => Err(error_at(input, i, format!("bad number {text:?}"))),
    }
}

/// A double-quoted string with Go's escapes (what Loki accepts).
fn lex_quoted(input: &str, start: usize) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = input[start + 1..].char_indices();
    let at = |off: usize| start + 1 + off;
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => return Ok((out, off + 2)),
            '\n' => {
                return Err(error_at(
                    input,
                    at(off),
                    "newline in a \"string\": write \\n, or use a `backtick` string".into(),
                ))
            }
            '\\' => {
                let Some((eoff, e)) = chars.next() else { break };
                let hex = |chars: &mut std::str::CharIndices<'_>, n: usize| -> Option<u32> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        v = v * 16 + chars.next()?.1.to_digit(16)?;
                    }
                    Some(v)
                };
                let decoded = match e {
                    'a' => Some('\u{7}'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\u{b}'),
                    '\\' => Some('\\'),
                    '"' => Some('"'),
                    '\'' => Some('\''),
                    'x' => hex(&mut chars, 2).and_then(char::from_u32),
                    'u' => hex(&mut chars, 4).and_then(char::from_u32),
                    'U' => hex(&mut chars, 8).and_then(char::from_u32),
                    '0'..='7' => {
                        let mut v = e.to_digit(8).expect("octal digit");
                        let mut ok = true;
                        for _ in 0..2 {
                            match chars.next().and_then(|(_, d)| d.to_digit(8)) {
                                Some(d) => v = v * 8 + d,
                                None => ok = false,
                            }
                        }
                        if ok && v <= 255 {
                            char::from_u32(v)
                        } else {
                            None
                        }
                    }
                    _ => {
                        return Err(error_at(
                            input,
                            at(eoff) - 1,
                            format!(
                                "unknown escape \\{e} in a \"string\": write \\\\{e} for a \
                                 backslash (regexes often need it), or use a `backtick` string"
                            ),
                        ))
                    }
                };
                match decoded {
                    Some(d) => out.push(d),
                    None => {
                        return Err(error_at(
                            input,
                            at(eoff) - 1,
                            format!("bad escape \\{e} in a \"string\""),
                        ))
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(error_at(
        input,
        start,
        "unterminated \"string\": expected a closing '\"'".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(q: &str) -> Vec<Tok> {
        lex(q).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers_durations_bytes_and_flags() {
        assert_eq!(
            toks("5m 1.5h 20MB 1e3 2 300µs --strict -1"),
            vec![
                Tok::Duration("5m".into()),
                Tok::Duration("1.5h".into()),
                Tok::Bytes("20MB".into()),
                Tok::Number(1000.0),
                Tok::Number(2.0),
                Tok::Duration("300µs".into()),
                Tok::Flag("--strict".into()),
                Tok::Minus,
                Tok::Number(1.0),
                Tok::End
            ]
        );
        assert_eq!(toks("5x")[0], Tok::Duration("5x".into()));
        assert_eq!(
            toks("a>=1 b<2 c==3 |> !> d%e^f"),
            vec![
                Tok::Ident("a".into()),
                Tok::Ge,
                Tok::Number(1.0),
                Tok::Ident("b".into()),
                Tok::Lt,
                Tok::Number(2.0),
                Tok::Ident("c".into()),
                Tok::CmpEq,
                Tok::Number(3.0),
                Tok::PipePattern,
                Tok::NotPattern,
                Tok::Ident("d".into()),
                Tok::Percent,
                Tok::Ident("e".into()),
                Tok::Caret,
                Tok::Ident("f".into()),
                Tok::End
            ]
        );
    }

    #[test]
    fn positions_count_characters() {
        let e = error_at("é\n  ab", 5, "x".into());
        assert_eq!((e.line, e.col), (2, 3));
        assert!(lex("a ☃")
            .unwrap_err()
            .to_string()
            .starts_with("parse error at 1:3"));
    }
}
