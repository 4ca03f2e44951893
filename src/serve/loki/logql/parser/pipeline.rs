//! Parsing the log half of LogQL: the stream selector and the pipeline
//! after it.
//!
//! ```text
//! log       = selector { stage }
//! selector  = "{" [matcher {"," matcher} [","]] "}"
//! matcher   = IDENT ("=" | "!=" | "=~" | "!~") STRING
//! stage     = LINE_OP STRING {"or" STRING}                  (|= != |~ !~ |> !>)
//!           | "|" ( "json" [extractions] | "logfmt" {FLAG} [extractions]
//!                 | "regexp" STRING | "pattern" STRING | "unpack"
//!                 | "line_format" STRING | "label_format" fmt {"," fmt}
//!                 | "decolorize" | ("drop" | "keep") named {"," named}
//!                 | label_filter
//!                 | "unwrap" [CONV "("] IDENT [")"] {"|" label_filter} )  (range functions only)
//! label_filter = and_filter {"or" and_filter}
//! and_filter   = primary {["and" | ","] primary}
//! primary      = "(" label_filter ")" | IDENT OP value
//! ```

use super::{valid_label_name, Parser};
use crate::filter::{LabelMatcher, MatchOp, REGEX_SIZE_LIMIT};
use crate::serve::loki::logql::ast::*;
use crate::serve::loki::logql::lexer::{ParseError, Tok};
use crate::serve::loki::logql::pipeline::check_stage;
use crate::serve::loki::logql::units;

/// The stage keywords, for messages and to tell a stage from a label filter.
const STAGE_WORDS: &[&str] = &[
    "json",
    "logfmt",
    "regexp",
    "pattern",
    "unpack",
    "line_format",
    "label_format",
    "decolorize",
    "drop",
    "keep",
    "unwrap",
];

impl Parser<'_> {
    /// A selector and its pipeline; `unwrap` is allowed inside a range
    /// function only.
    pub(super) fn log_expr(
        &mut self,
        allow_unwrap: bool,
    ) -> Result<(LogExpr, Option<Unwrap>), ParseError> {
        let pos = self.peek().pos;
        let matchers = self.selector_matchers()?;
        self.check_selective(&matchers, pos)?;
        let (stages, unwrap) = self.pipeline(allow_unwrap)?;
        Ok((LogExpr { matchers, stages }, unwrap))
    }

    pub(super) fn selector_matchers(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.expect(Tok::LBrace, "'{' to start a stream selector")?;
        let mut matchers = Vec::new();
        loop {
            match self.peek_tok().clone() {
                Tok::RBrace => {
                    self.next();
                    break;
                }
                Tok::Ident(_) => {
                    let m = self.matcher()?;
                    matchers.push(m);
                    match self.peek_tok() {
                        Tok::Comma => {
                            self.next();
                        }
                        Tok::RBrace => {}
                        _ => return Err(self.expected("'}' or ',' after a matcher")),
                    }
                }
                _ => {
                    return Err(self.expected(if matchers.is_empty() {
                        "a label matcher such as source=\"web\""
                    } else {
                        "a label matcher or '}'"
                    }))
                }
            }
        }
        Ok(matchers)
    }

    /// `name op "value"`, its regex checked.
    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        let name_tok = self.next();
        let Tok::Ident(name) = name_tok.tok else {
            return Err(self.expected_prev("a label name"));
        };
        self.check_label_name(&name, name_tok.pos)?;
        let op = match self.next().tok {
            Tok::Eq => MatchOp::Eq,
            Tok::Ne => MatchOp::Ne,
            Tok::Re => MatchOp::Re,
            Tok::Nre => MatchOp::Nre,
            _ => return Err(self.expected_prev("'=', '!=', '=~' or '!~' after a label name")),
        };
        let t = self.next();
        let Tok::Str(value) = t.tok else {
            return Err(self.expected_prev("a quoted value"));
        };
        if let Err(e) = LabelMatcher::new(&name, op, &value) {
            return Err(self.error_at(t.pos, format!("{e}")));
        }
        Ok(Matcher { name, op, value })
    }

    fn check_label_name(&self, name: &str, pos: usize) -> Result<(), ParseError> {
        if valid_label_name(name) {
            Ok(())
        } else {
            Err(self.error_at(
                pos,
                format!("invalid label name {name:?}: use letters, digits and '_'"),
            ))
        }
    }

    pub(super) fn pipeline(
        &mut self,
        allow_unwrap: bool,
    ) -> Result<(Vec<Stage>, Option<Unwrap>), ParseError> {
        let mut stages = Vec::new();
        loop {
            let op = match self.peek_tok() {
                Tok::PipeEq => LineOp::Contains,
                Tok::Ne => LineOp::NotContains,
                Tok::PipeRe => LineOp::Matches,
                Tok::Nre => LineOp::NotMatches,
                Tok::PipePattern => LineOp::Pattern,
                Tok::NotPattern => LineOp::NotPattern,
                Tok::Pipe => {
                    let pipe_pos = self.next().pos;
                    if self.at_word("unwrap") {
                        if !allow_unwrap {
                            return Err(self.error_at(
                                self.peek().pos,
                                "unwrap belongs in a range function over the log query, as in \
                                 sum_over_time({...} | logfmt | unwrap bytes [5m])",
                            ));
                        }
                        let unwrap = self.unwrap()?;
                        return Ok((stages, Some(unwrap)));
                    }
                    let stage_pos = self.peek().pos;
                    let stage = self.stage(pipe_pos)?;
                    if let Err(msg) = check_stage(&stage) {
                        return Err(self.error_at(stage_pos, msg));
                    }
                    stages.push(stage);
                    continue;
                }
                _ => break,
            };
            self.next();
            let filter = self.line_filter(op)?;
            stages.push(Stage::Line(filter));
        }
        Ok((stages, None))
    }

    fn line_filter(&mut self, op: LineOp) -> Result<LineFilter, ParseError> {
        let mut values = Vec::new();
        loop {
            if self.at_word("ip") && *self.peek_nth(1) == Tok::LParen {
                return Err(self.error_at(
                    self.peek().pos,
                    "ip() filters are not supported by ringtail: match addresses with a regex, \
                     as in |~ `10\\.0\\.`",
                ));
            }
            let t = self.next();
            let Tok::Str(value) = t.tok else {
                return Err(self.expected_prev("a quoted string after the line filter"));
            };
            let checked = match op {
                LineOp::Matches | LineOp::NotMatches => regex::bytes::RegexBuilder::new(&value)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map(|_| ())
                    .map_err(|e| format!("bad regular expression: {e}")),
                LineOp::Pattern | LineOp::NotPattern => {
                    crate::serve::loki::logql::pipeline::pattern::Pattern::parse_filter(&value)
                        .map(|_| ())
                }
                _ => Ok(()),
            };
            if let Err(msg) = checked {
                return Err(self.error_at(t.pos, msg));
            }
            values.push(value);
            if self.at_word("or") && matches!(self.peek_nth(1), Tok::Str(_)) {
                self.next();
                continue;
            }
            return Ok(LineFilter { op, values });
        }
    }

    /// One stage after `|` (the `|` consumed).
    fn stage(&mut self, pipe_pos: usize) -> Result<Stage, ParseError> {
        let t = self.peek().clone();
        let word = match &t.tok {
            Tok::Ident(w) => w.to_ascii_lowercase(),
            Tok::LParen => return Ok(Stage::LabelFilter(self.label_filter()?)),
            Tok::End => {
                return Err(self.error_at(
                    pipe_pos,
                    "expected a pipeline stage after '|', found the end of the query",
                ))
            }
            _ => {
                return Err(self.expected(
                    "a pipeline stage after '|': a parser (json, logfmt, pattern, regexp, \
                     unpack), a label filter, line_format, label_format, drop, keep or decolorize",
                ))
            }
        };
        // A label filter starts with a label name and an operator.
        let is_filter = matches!(
            self.peek_nth(1),
            Tok::Eq
                | Tok::Ne
                | Tok::Re
                | Tok::Nre
                | Tok::CmpEq
                | Tok::Gt
                | Tok::Ge
                | Tok::Lt
                | Tok::Le
        );
        if is_filter || !STAGE_WORDS.contains(&word.as_str()) {
            if !is_filter {
                return Err(self.error_at(t.pos, unknown_stage(&word)));
            }
            return Ok(Stage::LabelFilter(self.label_filter()?));
        }
        self.next();
        Ok(match word.as_str() {
            "json" => Stage::Json(self.extractions()?),
            "logfmt" => {
                let (mut strict, mut keep_empty) = (false, false);
                while let Tok::Flag(f) = self.peek_tok().clone() {
                    let pos = self.next().pos;
                    match f.as_str() {
                        "--strict" => strict = true,
                        "--keep-empty" => keep_empty = true,
                        _ => {
                            return Err(self.error_at(
                                pos,
                                format!(
                                "unknown logfmt flag {f}: the flags are --strict and --keep-empty"
                            ),
                            ))
                        }
                    }
                }
                Stage::Logfmt {
                    strict,
                    keep_empty,
                    params: self.extractions()?,
                }
            }
            "regexp" => Stage::Regexp(self.string_arg("regexp", "(?P<name>...)")?),
            "pattern" => Stage::Pattern(self.string_arg("pattern", "<ip> - <_>")?),
            "unpack" => Stage::Unpack,
            "line_format" => Stage::LineFormat(self.string_arg("line_format", "{{.label}}")?),
            "label_format" => Stage::LabelFormat(self.label_formats()?),
            "decolorize" => Stage::Decolorize,
            "drop" => Stage::Drop(self.named_matchers("drop")?),
            "keep" => Stage::Keep(self.named_matchers("keep")?),
            _ => unreachable!("STAGE_WORDS lists the words above and unwrap"),
        })
    }

    fn string_arg(&mut self, stage: &str, example: &str) -> Result<String, ParseError> {
        match self.next().tok {
            Tok::Str(s) => Ok(s),
            _ => Err(self.expected_prev(&format!(
                "a quoted argument after {stage}, as in | {stage} \"{example}\""
            ))),
        }
    }

    /// The parameter form of json and logfmt: `a="expr", b` (may be empty).
    fn extractions(&mut self) -> Result<Vec<Extraction>, ParseError> {
        let mut out = Vec::new();
        while let Tok::Ident(label) = self.peek_tok().clone() {
            if self.at_word("or") || self.at_word("and") {
                break;
            }
            let pos = self.next().pos;
            self.check_label_name(&label, pos)?;
            let expr = if *self.peek_tok() == Tok::Eq {
                self.next();
                match self.next().tok {
                    Tok::Str(s) => s,
                    _ => {
                        return Err(self.expected_prev(
                            "a quoted expression, as in | json first_server=\"servers[0]\"",
                        ))
                    }
                }
            } else {
                label.clone()
            };
            out.push(Extraction { label, expr });
            if *self.peek_tok() == Tok::Comma {
                self.next();
                if !matches!(self.peek_tok(), Tok::Ident(_)) {
                    return Err(self.expected("another label after ','"));
                }
            } else {
                break;
            }
        }
        Ok(out)
    }

    fn label_formats(&mut self) -> Result<Vec<LabelFmt>, ParseError> {
        let mut out: Vec<LabelFmt> = Vec::new();
        loop {
            let t = self.next();
            let Tok::Ident(dst) = t.tok else {
                return Err(self.expected_prev("a label name, as in | label_format dst=src"));
            };
            self.check_label_name(&dst, t.pos)?;
            if dst == "__error__" {
                return Err(self.error_at(t.pos, "__error__ cannot be formatted"));
            }
            if out.iter().any(|f| f.dst == dst) {
                return Err(self.error_at(
                    t.pos,
                    format!(
                        "multiple label name '{dst}' not allowed in a single format operation: \
                         use two stages, | label_format {dst}=a | label_format {dst}=\"...\""
                    ),
                ));
            }
            self.expect(Tok::Eq, "'=' after the label name")?;
            let v = self.next();
            let value = match v.tok {
                Tok::Ident(src) => LabelFmtValue::Rename(src),
                Tok::Str(tmpl) => LabelFmtValue::Template(tmpl),
                _ => {
                    return Err(self.expected_prev(
                        "a label to rename from or a quoted template, as in dst=src or dst=\"{{.src}}\"",
                    ))
                }
            };
            out.push(LabelFmt { dst, value });
            if *self.peek_tok() == Tok::Comma {
                self.next();
            } else {
                return Ok(out);
            }
        }
    }

    fn named_matchers(&mut self, stage: &str) -> Result<Vec<NamedMatcher>, ParseError> {
        let mut out = Vec::new();
        loop {
            let Tok::Ident(name) = self.peek_tok().clone() else {
                return Err(self.expected(&format!("a label name after {stage}")));
            };
            if matches!(self.peek_nth(1), Tok::Eq | Tok::Ne | Tok::Re | Tok::Nre) {
                out.push(NamedMatcher::Matcher(self.matcher()?));
            } else {
                let pos = self.next().pos;
                self.check_label_name(&name, pos)?;
                out.push(NamedMatcher::Name(name));
            }
            if *self.peek_tok() == Tok::Comma {
                self.next();
            } else {
                return Ok(out);
            }
        }
    }

    /// `unwrap [conv(]label[)]` and the label filters after it.
    fn unwrap(&mut self) -> Result<Unwrap, ParseError> {
        self.next();
        let t = self.next();
        let Tok::Ident(first) = t.tok else {
            return Err(self.expected_prev("the label to unwrap, as in | unwrap latency"));
        };
        let (label, conversion) = if *self.peek_tok() == Tok::LParen {
            let conversion = match first.to_ascii_lowercase().as_str() {
                "bytes" => Conversion::Bytes,
                "duration" | "duration_seconds" => Conversion::Duration,
                _ => {
                    return Err(self.error_at(
                        t.pos,
                        format!(
                            "unknown unwrap conversion {first}(): the conversions are \
                             bytes(), duration() and duration_seconds()"
                        ),
                    ))
                }
            };
            self.next();
            let l = self.next();
            let Tok::Ident(label) = l.tok else {
                return Err(self.expected_prev("a label name"));
            };
            self.check_label_name(&label, l.pos)?;
            self.expect(Tok::RParen, "')' after the label")?;
            (label, conversion)
        } else {
            self.check_label_name(&first, t.pos)?;
            (first, Conversion::Float)
        };
        let mut post_filters = Vec::new();
        while *self.peek_tok() == Tok::Pipe {
            let pos = self.next().pos;
            let is_filter = *self.peek_tok() == Tok::LParen
                || matches!(
                    self.peek_nth(1),
                    Tok::Eq
                        | Tok::Ne
                        | Tok::Re
                        | Tok::Nre
                        | Tok::CmpEq
                        | Tok::Gt
                        | Tok::Ge
                        | Tok::Lt
                        | Tok::Le
                );
            if !is_filter {
                return Err(self.error_at(
                    pos,
                    "only label filters may follow unwrap (such as | __error__=\"\"): move \
                     other stages before it",
                ));
            }
            post_filters.push(self.label_filter()?);
        }
        Ok(Unwrap {
            label,
            conversion,
            post_filters,
        })
    }

    // ---- label filters ----

    fn label_filter(&mut self) -> Result<LabelFilter, ParseError> {
        self.enter()?;
        let mut lhs = self.label_filter_and()?;
        while self.at_word("or") {
            self.next();
            let rhs = self.label_filter_and()?;
            lhs = LabelFilter::Or(Box::new(lhs), Box::new(rhs));
        }
        self.leave();
        Ok(lhs)
    }

    fn label_filter_and(&mut self) -> Result<LabelFilter, ParseError> {
        let mut lhs = self.label_filter_primary()?;
        loop {
            let joined = if self.at_word("and") || *self.peek_tok() == Tok::Comma {
                // `,` also separates the arguments of label_replace and the
                // like: only take it when a predicate follows.
                if *self.peek_tok() == Tok::Comma && !self.predicate_at(1) {
                    break;
                }
                self.next();
                true
            } else {
                // Juxtaposition: `| a="1" b="2"`.
                self.predicate_at(0)
            };
            if !joined {
                break;
            }
            let rhs = self.label_filter_primary()?;
            lhs = LabelFilter::And(Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    /// Whether a predicate (`name OP ...`, possibly after `(`s) starts `n`
    /// tokens ahead.
    fn predicate_at(&self, mut n: usize) -> bool {
        while *self.peek_nth(n) == Tok::LParen {
            n += 1;
        }
        match self.peek_nth(n) {
            t @ Tok::Ident(_) => {
                !t.is_word("or")
                    && !t.is_word("and")
                    && matches!(
                        self.peek_nth(n + 1),
                        Tok::Eq
                            | Tok::Ne
                            | Tok::Re
                            | Tok::Nre
                            | Tok::CmpEq
                            | Tok::Gt
                            | Tok::Ge
                            | Tok::Lt
                            | Tok::Le
                    )
            }
            _ => false,
        }
    }

    fn label_filter_primary(&mut self) -> Result<LabelFilter, ParseError> {
        if *self.peek_tok() == Tok::LParen {
            self.next();
            let f = self.label_filter()?;
            self.expect(Tok::RParen, "')' to close the label filter")?;
            return Ok(f);
        }
        let name_tok = self.next();
        let Tok::Ident(name) = name_tok.tok else {
            return Err(self.expected_prev("a label filter such as status >= 500"));
        };
        self.check_label_name(&name, name_tok.pos)?;
        let op_tok = self.next();
        let value_tok = self.peek().clone();
        let cmp = match op_tok.tok {
            Tok::Eq | Tok::CmpEq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Re | Tok::Nre => {
                let op = if op_tok.tok == Tok::Re {
                    MatchOp::Re
                } else {
                    MatchOp::Nre
                };
                let t = self.next();
                let Tok::Str(value) = t.tok else {
                    return Err(self.expected_prev("a quoted regex"));
                };
                if let Err(e) = LabelMatcher::new(&name, op, &value) {
                    return Err(self.error_at(t.pos, format!("{e}")));
                }
                return Ok(LabelFilter::Match(Matcher { name, op, value }));
            }
            _ => {
                return Err(self.expected_prev(
                    "a comparison after the label name: =, !=, =~, !~, ==, >, >=, < or <=",
                ))
            }
        };
        // Strings take the matcher operators only.
        if let Tok::Str(value) = &value_tok.tok {
            if op_tok.tok != Tok::Eq && op_tok.tok != Tok::Ne {
                return Err(self.error_at(
                    value_tok.pos,
                    format!(
                        "'{}' compares numbers, durations or bytes; a string takes =, !=, =~ or !~",
                        cmp.as_str()
                    ),
                ));
            }
            self.next();
            let op = if op_tok.tok == Tok::Eq {
                MatchOp::Eq
            } else {
                MatchOp::Ne
            };
            return Ok(LabelFilter::Match(Matcher {
                name,
                op,
                value: value.clone(),
            }));
        }
        if value_tok.tok.is_word("ip") {
            return Err(self.error_at(
                value_tok.pos,
                "ip() label filters are not supported by ringtail: use a regex matcher, \
                 as in addr=~\"10\\\\.0\\\\..*\"",
            ));
        }
        let negative = match self.peek_tok() {
            Tok::Minus => {
                self.next();
                true
            }
            Tok::Plus => {
                self.next();
                false
            }
            _ => false,
        };
        let t = self.next();
        Ok(match t.tok {
            Tok::Number(n) => LabelFilter::Number {
                name,
                op: cmp,
                value: if negative { -n } else { n },
            },
            Tok::Duration(d) => {
                let v = units::logql_duration(&d).map_err(|e| {
                    self.error_at(t.pos, format!("bad duration {d:?} in a label filter: {e}"))
                })?;
                LabelFilter::Duration {
                    name,
                    op: cmp,
                    value: if negative { -v } else { v },
                }
            }
            Tok::Bytes(b) if !negative => LabelFilter::Bytes {
                name,
                op: cmp,
                value: units::parse_bytes(&b).map_err(|e| self.error_at(t.pos, e.to_string()))?,
            },
            _ => {
                return Err(self.expected_prev(
                    "a value to compare with: a quoted string, a number, a duration such as 250ms \
                     or bytes such as 20MB",
                ))
            }
        })
    }
}

fn unknown_stage(word: &str) -> String {
    match word {
        "ip" => "ip() filters are not supported by ringtail".to_string(),
        _ => format!(
            "unknown pipeline stage '| {word}': expected a parser (json, logfmt, pattern, regexp, \
             unpack), a label filter such as {word}=\"value\", line_format, label_format, drop, \
             keep or decolorize"
        ),
    }
}
