//! The LogQL subset ringtail answers: parsing query text into an [`Expr`].
//!
//! Grammar (Loki's precedence: `*` and `/` bind tighter than `+` and `-`):
//!
//! ```text
//! expr      = term { ("+" | "-") term }
//! term      = unary { ("*" | "/") unary }
//! unary     = "-" unary | primary
//! primary   = NUMBER | "(" expr ")" | "vector" "(" NUMBER ")"
//!           | RANGE_FN "(" log_range ")"
//!           | AGG [grouping] "(" [NUMBER ","] expr ")" [grouping]
//!           | log
//! log_range = log "[" DURATION "]" | selector "[" DURATION "]" pipeline
//! log       = selector pipeline
//! selector  = "{" matcher { "," matcher } [","] "}"
//! matcher   = IDENT ("=" | "!=" | "=~" | "!~") STRING
//! pipeline  = { ("|=" | "!=" | "|~" | "!~") STRING | "|" "drop" IDENT { "," IDENT } }
//! grouping  = ("by" | "without") "(" [IDENT { "," IDENT }] ")"
//! RANGE_FN  = count_over_time | rate | bytes_over_time | bytes_rate
//! AGG       = sum | count | min | max | avg | topk | bottomk
//! STRING    = "..." (Go escapes) | `...` (raw)
//! ```
//!
//! What this module promises:
//! - every error names the line and column (1-based, in characters) where
//!   the parser stopped, what it expected there and what it found, e.g.
//!   `parse error at 1:12: expected '}' or ',' after a matcher, found '"'`;
//! - regexes (label `=~`/`!~`, line `|~`/`!~`) are compiled while parsing,
//!   so a bad regex is a parse error at its position;
//! - a selector must hold at least one `=` or `=~` matcher that the empty
//!   value does not pass, as Loki requires (`{app=~".*"}` would select
//!   every stream);
//! - LogQL that ringtail does not implement (parsers such as `| json`,
//!   other functions) is refused with an error that says what is supported.
//!
//! Why not a crate: of the LogQL parsers on crates.io, `logql` has not been
//! released since 2022, and `logql-parser` (0.1, young, one maintainer)
//! parses the whole language, which ringtail would then have to refuse
//! piece by piece, and reports positions without what was expected. The
//! subset is small enough that a recursive-descent parser with ringtail's
//! own messages is less code than the glue.

use std::fmt;

use crate::filter::{LabelMatcher, MatchOp, REGEX_SIZE_LIMIT};
use crate::timefmt::parse_duration;

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A log query: which entries.
    Log(LogExpr),
    /// A range aggregation over a log query: `count_over_time({...}[5m])`.
    Range(RangeExpr),
    /// `sum by (source) (...)`, `topk(3, ...)`.
    Agg(AggExpr),
    /// `a + b` and the other arithmetic operators.
    Binary(Box<BinaryExpr>),
    /// A number literal: a scalar.
    Number(f64),
    /// `vector(1)`: a one-series vector with no labels.
    Vector(f64),
}

impl Expr {
    /// Whether this is a log query (answered with streams, not samples).
    pub fn is_log(&self) -> bool {
        matches!(self, Expr::Log(_))
    }
}

/// A stream selector with its pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub filters: Vec<LineFilter>,
    /// Labels removed by `| drop` stages.
    pub drops: Vec<String>,
}

/// One label matcher as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

impl Matcher {
    /// The filter's form of this matcher (its regex already parsed once).
    pub fn compile(&self) -> LabelMatcher {
        LabelMatcher::new(&self.name, self.op, &self.value)
            .expect("the parser checked the regex of every matcher")
    }
}

/// A line filter operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineOp {
    /// `|=`: the line contains the string.
    Contains,
    /// `!=`: the line does not contain the string.
    NotContains,
    /// `|~`: the line matches the regex somewhere.
    Matches,
    /// `!~`: the line does not match the regex.
    NotMatches,
}

/// One line filter as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineFilter {
    pub op: LineOp,
    pub value: String,
}

/// The range functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
}

impl RangeFn {
    fn from_name(name: &str) -> Option<RangeFn> {
        Some(match name {
            "count_over_time" => RangeFn::CountOverTime,
            "rate" => RangeFn::Rate,
            "bytes_over_time" => RangeFn::BytesOverTime,
            "bytes_rate" => RangeFn::BytesRate,
            _ => return None,
        })
    }
}

/// A range aggregation.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeExpr {
    pub func: RangeFn,
    pub log: LogExpr,
    /// The window, ns.
    pub range_ns: u64,
}

/// The vector aggregation operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Count,
    Min,
    Max,
    Avg,
    Topk,
    Bottomk,
}

impl AggOp {
    fn from_name(name: &str) -> Option<AggOp> {
        Some(match name {
            "sum" => AggOp::Sum,
            "count" => AggOp::Count,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "avg" => AggOp::Avg,
            "topk" => AggOp::Topk,
            "bottomk" => AggOp::Bottomk,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Count => "count",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Avg => "avg",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
        }
    }
}

/// `by (a, b)` or `without (a, b)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

/// A vector aggregation.
#[derive(Clone, Debug, PartialEq)]
pub struct AggExpr {
    pub op: AggOp,
    pub grouping: Option<Grouping>,
    /// `k` of `topk`/`bottomk`.
    pub k: Option<usize>,
    pub expr: Box<Expr>,
}

/// Arithmetic operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    /// Applies the operator (IEEE semantics: `x / 0` is infinite or NaN,
    /// as in Prometheus and Loki).
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BinaryExpr {
    pub op: BinOp,
    pub lhs: Expr,
    pub rhs: Expr,
}

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

/// Parses a whole query.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let mut p = Parser::new(input)?;
    let expr = p.expr()?;
    p.expect_end()?;
    Ok(expr)
}

/// Parses a stream selector alone (`{app="web", env!="dev"}`), as the
/// `match[]` parameter of `series` and the labels of a pushed stream are
/// written. `require_selective` applies Loki's rule that a query selector
/// must not select everything.
pub fn parse_selector(input: &str, require_selective: bool) -> Result<Vec<Matcher>, ParseError> {
    let mut p = Parser::new(input)?;
    let start = p.peek().pos;
    let matchers = p.selector_matchers()?;
    if require_selective {
        p.check_selective(&matchers, start)?;
    }
    p.expect_end()?;
    Ok(matchers)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// `=`
    Eq,
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
    /// `|`
    Pipe,
    Plus,
    Minus,
    Star,
    Slash,
    Str(String),
    Ident(String),
    Number(f64),
    /// A number immediately followed by a unit: `5m`, `1h30m`, `500ms`.
    Duration(String),
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'='".into(),
            Tok::Ne => "'!='".into(),
            Tok::Re => "'=~'".into(),
            Tok::Nre => "'!~'".into(),
            Tok::PipeEq => "'|='".into(),
            Tok::PipeRe => "'|~'".into(),
            Tok::Pipe => "'|'".into(),
            Tok::Plus => "'+'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Star => "'*'".into(),
            Tok::Slash => "'/'".into(),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Duration(d) => format!("duration {d}"),
            Tok::End => "the end of the query".into(),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    /// Byte offset in the input.
    pos: usize,
}

/// The most tokens a query may have: bounds the parser's work and depth on
/// hostile input.
const MAX_TOKENS: usize = 10_000;
/// The deepest nesting of parentheses and aggregations.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Parser<'a>, ParseError> {
        let tokens = lex(input)?;
        Ok(Parser {
            input,
            tokens,
            at: 0,
            depth: 0,
        })
    }

    fn error_at(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        error_at(self.input, pos, msg.into())
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.at]
    }

    fn peek_tok(&self) -> &Tok {
        &self.tokens[self.at].tok
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.at].clone();
        if t.tok != Tok::End {
            self.at += 1;
        }
        t
    }

    /// An error at the next token: "expected X, found Y".
    fn expected(&self, what: &str) -> ParseError {
        let t = self.peek();
        self.error_at(
            t.pos,
            format!("expected {what}, found {}", t.tok.describe()),
        )
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Token, ParseError> {
        if *self.peek_tok() == tok {
            Ok(self.next())
        } else {
            Err(self.expected(what))
        }
    }

    fn expect_end(&self) -> Result<(), ParseError> {
        match self.peek_tok() {
            Tok::End => Ok(()),
            Tok::LBracket => Err(self.error_at(
                self.peek().pos,
                "a range such as [5m] belongs inside a range function: \
                 count_over_time({...}[5m]), rate, bytes_over_time or bytes_rate",
            )),
            _ => Err(self.expected("an operator or the end of the query")),
        }
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                self.peek().pos,
                format!("the query nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut lhs = self.term()?;
        loop {
            let op = match self.peek_tok() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                _ => break,
            };
            let op_pos = self.next().pos;
            let rhs = self.term()?;
            lhs = self.binary(op, lhs, rhs, op_pos)?;
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek_tok() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                _ => break,
            };
            let op_pos = self.next().pos;
            let rhs = self.unary()?;
            lhs = self.binary(op, lhs, rhs, op_pos)?;
        }
        Ok(lhs)
    }

    fn binary(&self, op: BinOp, lhs: Expr, rhs: Expr, pos: usize) -> Result<Expr, ParseError> {
        if lhs.is_log() || rhs.is_log() {
            return Err(self.error_at(
                pos,
                "arithmetic needs metric expressions or numbers on both sides, \
                 not a log query: wrap it as count_over_time({...}[5m])",
            ));
        }
        Ok(match (lhs, rhs) {
            (Expr::Number(a), Expr::Number(b)) => Expr::Number(op.apply(a, b)),
            (lhs, rhs) => Expr::Binary(Box::new(BinaryExpr { op, lhs, rhs })),
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if *self.peek_tok() == Tok::Minus {
            let pos = self.next().pos;
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return match inner {
                Expr::Number(n) => Ok(Expr::Number(-n)),
                Expr::Log(_) => Err(self.error_at(pos, "a log query cannot be negated")),
                e => Ok(Expr::Binary(Box::new(BinaryExpr {
                    op: BinOp::Mul,
                    lhs: Expr::Number(-1.0),
                    rhs: e,
                }))),
            };
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Number(n) => {
                self.next();
                Ok(Expr::Number(n))
            }
            Tok::LParen => {
                self.next();
                let e = self.expr()?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::LBrace => Ok(Expr::Log(self.log_expr()?)),
            Tok::Ident(name) => self.call(&name, t.pos),
            _ => Err(self.expected(
                "a stream selector '{...}', a function such as count_over_time or sum, or a number",
            )),
        }
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<Expr, ParseError> {
        if name == "vector" {
            self.next();
            self.expect(Tok::LParen, "'(' after vector")?;
            let n = match self.next() {
                Token {
                    tok: Tok::Number(n),
                    ..
                } => n,
                Token {
                    tok: Tok::Minus, ..
                } => match self.next().tok {
                    Tok::Number(n) => -n,
                    _ => return Err(self.expected_prev("a number")),
                },
                _ => return Err(self.expected_prev("a number inside vector(...)")),
            };
            self.expect(Tok::RParen, "')' after the number of vector(...)")?;
            return Ok(Expr::Vector(n));
        }
        if let Some(func) = RangeFn::from_name(name) {
            self.next();
            self.expect(Tok::LParen, &format!("'(' after {name}"))?;
            let range = self.log_range(func)?;
            self.expect(Tok::RParen, &format!("')' to close {name}(...)"))?;
            return Ok(Expr::Range(range));
        }
        if let Some(op) = AggOp::from_name(name) {
            self.next();
            return self.aggregation(op);
        }
        Err(self.error_at(pos, unsupported_name(name)))
    }

    /// Like [`expected`](Self::expected), for the token just consumed.
    fn expected_prev(&self, what: &str) -> ParseError {
        let t = &self.tokens[self.at.saturating_sub(1)];
        self.error_at(
            t.pos,
            format!("expected {what}, found {}", t.tok.describe()),
        )
    }

    fn log_range(&mut self, func: RangeFn) -> Result<RangeExpr, ParseError> {
        let (matchers, selector_pos) = {
            let pos = self.peek().pos;
            if *self.peek_tok() != Tok::LBrace {
                return Err(self.expected("a stream selector '{...}' with a range such as [5m]"));
            }
            (self.selector_matchers()?, pos)
        };
        self.check_selective(&matchers, selector_pos)?;
        // Loki takes the range right after the selector or after the pipeline.
        let mut range_ns = self.maybe_range()?;
        let (filters, drops) = self.pipeline()?;
        if range_ns.is_none() {
            range_ns = self.maybe_range()?;
        }
        let Some(range_ns) = range_ns else {
            return Err(self.expected("a range such as [5m] after the log query"));
        };
        Ok(RangeExpr {
            func,
            log: LogExpr {
                matchers,
                filters,
                drops,
            },
            range_ns,
        })
    }

    fn maybe_range(&mut self) -> Result<Option<u64>, ParseError> {
        if *self.peek_tok() != Tok::LBracket {
            return Ok(None);
        }
        self.next();
        let t = self.next();
        let ns = match &t.tok {
            Tok::Duration(d) => {
                parse_duration(d).map_err(|e| self.error_at(t.pos, e.to_string()))?
            }
            Tok::Number(_) => {
                return Err(self.error_at(
                    t.pos,
                    "a range needs a unit: write [5m], [30s], [1h] or [500ms]",
                ))
            }
            _ => return Err(self.expected_prev("a duration such as 5m")),
        };
        if ns == 0 {
            return Err(self.error_at(t.pos, "the range must be longer than zero"));
        }
        self.expect(Tok::RBracket, "']' after the range")?;
        Ok(Some(ns))
    }

    fn aggregation(&mut self, op: AggOp) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut grouping = self.maybe_grouping()?;
        self.expect(Tok::LParen, &format!("'(' after {}", op.name()))?;
        let mut k = None;
        if matches!(op, AggOp::Topk | AggOp::Bottomk) {
            let t = self.next();
            match t.tok {
                Tok::Number(n) if n >= 1.0 && n.fract() == 0.0 && n <= 1e6 => k = Some(n as usize),
                Tok::Number(_) => {
                    return Err(self.error_at(
                        t.pos,
                        format!(
                            "{}'s first argument must be a whole number from 1",
                            op.name()
                        ),
                    ))
                }
                _ => {
                    return Err(self.expected_prev(&format!(
                        "the number of series, as in {}(5, ...)",
                        op.name()
                    )))
                }
            }
            self.expect(Tok::Comma, "',' after the number of series")?;
        }
        let inner_pos = self.peek().pos;
        let inner = self.expr()?;
        if inner.is_log() {
            return Err(self.error_at(
                inner_pos,
                format!(
                    "{} needs a metric expression such as count_over_time({{...}}[5m]), \
                     not a log query",
                    op.name()
                ),
            ));
        }
        self.expect(Tok::RParen, &format!("')' to close {}(...)", op.name()))?;
        if grouping.is_none() {
            grouping = self.maybe_grouping()?;
        } else if matches!(self.peek_tok(), Tok::Ident(w) if w == "by" || w == "without") {
            return Err(self.error_at(self.peek().pos, "a grouping may be given only once"));
        }
        self.depth -= 1;
        Ok(Expr::Agg(AggExpr {
            op,
            grouping,
            k,
            expr: Box::new(inner),
        }))
    }

    fn maybe_grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let without = match self.peek_tok() {
            Tok::Ident(w) if w == "by" => false,
            Tok::Ident(w) if w == "without" => true,
            _ => return Ok(None),
        };
        self.next();
        self.expect(Tok::LParen, "'(' after by/without")?;
        let mut labels = Vec::new();
        loop {
            match self.peek_tok().clone() {
                Tok::RParen => {
                    self.next();
                    break;
                }
                Tok::Ident(name) => {
                    self.next();
                    labels.push(name);
                    match self.peek_tok() {
                        Tok::Comma => {
                            self.next();
                        }
                        Tok::RParen => {}
                        _ => return Err(self.expected("',' or ')' after a label name")),
                    }
                }
                _ => return Err(self.expected("a label name or ')'")),
            }
        }
        Ok(Some(Grouping { without, labels }))
    }

    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let pos = self.peek().pos;
        let matchers = self.selector_matchers()?;
        self.check_selective(&matchers, pos)?;
        let (filters, drops) = self.pipeline()?;
        Ok(LogExpr {
            matchers,
            filters,
            drops,
        })
    }

    fn check_selective(&self, matchers: &[Matcher], pos: usize) -> Result<(), ParseError> {
        if matchers.iter().any(|m| m.compile().is_selective()) {
            Ok(())
        } else {
            Err(self.error_at(
                pos,
                "queries require at least one regexp or equality matcher that does not have an \
                 empty-compatible value: {source=~\".*\"} would select every stream, \
                 {source=~\".+\"} selects every stream that has a source",
            ))
        }
    }

    fn selector_matchers(&mut self) -> Result<Vec<Matcher>, ParseError> {
        self.expect(Tok::LBrace, "'{' to start a stream selector")?;
        let mut matchers = Vec::new();
        loop {
            match self.peek_tok().clone() {
                Tok::RBrace => {
                    self.next();
                    break;
                }
                Tok::Ident(name) => {
                    let name_pos = self.next().pos;
                    if !valid_label_name(&name) {
                        return Err(self.error_at(
                            name_pos,
                            format!("invalid label name {name:?}: use letters, digits and '_'"),
                        ));
                    }
                    let op = match self.next().tok {
                        Tok::Eq => MatchOp::Eq,
                        Tok::Ne => MatchOp::Ne,
                        Tok::Re => MatchOp::Re,
                        Tok::Nre => MatchOp::Nre,
                        _ => {
                            return Err(
                                self.expected_prev("'=', '!=', '=~' or '!~' after a label name")
                            )
                        }
                    };
                    let t = self.next();
                    let Tok::Str(value) = t.tok else {
                        return Err(self.expected_prev("a quoted value"));
                    };
                    if let Err(e) = LabelMatcher::new(&name, op, &value) {
                        return Err(self.error_at(t.pos, format!("{e}")));
                    }
                    matchers.push(Matcher { name, op, value });
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

    fn pipeline(&mut self) -> Result<(Vec<LineFilter>, Vec<String>), ParseError> {
        let mut filters = Vec::new();
        let mut drops = Vec::new();
        loop {
            let op = match self.peek_tok() {
                Tok::PipeEq => LineOp::Contains,
                Tok::Ne => LineOp::NotContains,
                Tok::PipeRe => LineOp::Matches,
                Tok::Nre => LineOp::NotMatches,
                Tok::Pipe => {
                    self.next();
                    self.pipeline_stage(&mut drops)?;
                    continue;
                }
                _ => break,
            };
            self.next();
            let t = self.next();
            let Tok::Str(value) = t.tok else {
                return Err(self.expected_prev("a quoted string after the line filter"));
            };
            if matches!(op, LineOp::Matches | LineOp::NotMatches) {
                if let Err(e) = regex::bytes::RegexBuilder::new(&value)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                {
                    return Err(self.error_at(t.pos, format!("bad regular expression: {e}")));
                }
            }
            filters.push(LineFilter { op, value });
        }
        Ok((filters, drops))
    }

    fn pipeline_stage(&mut self, drops: &mut Vec<String>) -> Result<(), ParseError> {
        let t = self.next();
        match &t.tok {
            Tok::Ident(w) if w == "drop" => loop {
                let name = self.next();
                let Tok::Ident(name) = name.tok else {
                    return Err(self.expected_prev("a label name after drop"));
                };
                drops.push(name);
                if *self.peek_tok() == Tok::Comma {
                    self.next();
                } else {
                    return Ok(());
                }
            },
            Tok::Ident(w) => Err(self.error_at(
                t.pos,
                format!(
                    "the pipeline stage `| {w}` is not supported by ringtail: it supports line \
                     filters (|= \"text\", != \"text\", |~ \"regex\", !~ \"regex\") and `| drop label`"
                ),
            )),
            _ => Err(self.expected_prev("a pipeline stage such as drop after '|'")),
        }
    }
}

/// The message for an identifier that is not a supported function.
fn unsupported_name(name: &str) -> String {
    const KNOWN: &[&str] = &[
        "avg_over_time",
        "sum_over_time",
        "max_over_time",
        "min_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "quantile_over_time",
        "first_over_time",
        "last_over_time",
        "absent_over_time",
        "rate_counter",
        "stddev",
        "stdvar",
        "sort",
        "sort_desc",
        "label_replace",
        "sum_over_time",
    ];
    if KNOWN.contains(&name) {
        format!(
            "{name} is not supported by ringtail: it supports count_over_time, rate, \
             bytes_over_time, bytes_rate, sum, count, min, max, avg, topk, bottomk and vector"
        )
    } else {
        format!(
            "unknown function or keyword '{name}': expected a stream selector '{{...}}', \
             count_over_time, rate, bytes_over_time, bytes_rate, sum, count, min, max, avg, \
             topk, bottomk or vector"
        )
    }
}

/// Loki's (and Prometheus's) label names.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn error_at(input: &str, pos: usize, msg: String) -> ParseError {
    let before = &input[..pos.min(input.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ParseError { line, col, msg }
}

fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
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
            // A comment runs to the end of the line, as in Loki.
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        let two = |second: u8| b.get(i + 1) == Some(&second);
        let (tok, len) = match c {
            b'{' => (Tok::LBrace, 1),
            b'}' => (Tok::RBrace, 1),
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b',' => (Tok::Comma, 1),
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Minus, 1),
            b'*' => (Tok::Star, 1),
            b'/' => (Tok::Slash, 1),
            b'=' if two(b'~') => (Tok::Re, 2),
            b'=' if two(b'=') => {
                return Err(error_at(
                    input,
                    i,
                    "comparison operators such as '==' are not supported by ringtail".into(),
                ))
            }
            b'=' => (Tok::Eq, 1),
            b'!' if two(b'=') => (Tok::Ne, 2),
            b'!' if two(b'~') => (Tok::Nre, 2),
            b'|' if two(b'=') => (Tok::PipeEq, 2),
            b'|' if two(b'~') => (Tok::PipeRe, 2),
            b'|' => (Tok::Pipe, 1),
            b'"' => {
                let (s, len) = lex_quoted(input, i)?;
                (Tok::Str(s), len)
            }
            b'`' => match input[i + 1..].find('`') {
                Some(end) => (Tok::Str(input[i + 1..i + 1 + end].to_string()), end + 2),
                None => {
                    return Err(error_at(
                        input,
                        i,
                        "unterminated `string`: expected a closing backtick".into(),
                    ))
                }
            },
            b'0'..=b'9' | b'.' => lex_number(input, i)?,
            c if c.is_ascii_alphabetic() || c == b'_' => {
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

/// A number (`12`, `1.5`, `1e3`) or a duration (`5m`, `1h30m`, `500ms`).
fn lex_number(input: &str, i: usize) -> Result<(Tok, usize), ParseError> {
    let b = input.as_bytes();
    let mut j = i;
    while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
        j += 1;
    }
    if j < b.len() && b[j].is_ascii_alphabetic() && !(b[j] == b'e' || b[j] == b'E') {
        // A duration: digits and units, repeated (1h30m).
        while j < b.len() && b[j].is_ascii_alphanumeric() {
            j += 1;
        }
        return Ok((Tok::Duration(input[i..j].to_string()), j - i));
    }
    if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
        let mut k = j + 1;
        if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
            k += 1;
        }
        if k < b.len() && b[k].is_ascii_digit() {
            j = k;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
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

    #[test]
    fn selectors_and_line_filters() {
        let e = parse(r#"{source="web", app!="x", env=~"prod|stage", zone!~`a.*`} |= "GET" != `health` |~ "\\d+" !~ "(?i)bot""#)
            .unwrap();
        let Expr::Log(l) = e else { panic!("{e:?}") };
        assert_eq!(
            l.matchers,
            vec![
                m("source", MatchOp::Eq, "web"),
                m("app", MatchOp::Ne, "x"),
                m("env", MatchOp::Re, "prod|stage"),
                m("zone", MatchOp::Nre, "a.*"),
            ]
        );
        let ops: Vec<_> = l.filters.iter().map(|f| (f.op, f.value.as_str())).collect();
        assert_eq!(
            ops,
            vec![
                (LineOp::Contains, "GET"),
                (LineOp::NotContains, "health"),
                (LineOp::Matches, r"\d+"),
                (LineOp::NotMatches, "(?i)bot"),
            ]
        );
        // Trailing comma, whitespace and comments.
        assert!(parse("{ a = \"b\" , } # all of a\n").is_ok());
    }

    #[test]
    fn metric_queries() {
        let e = parse(r#"sum by (source) (count_over_time({source=~".+"}[1m]))"#).unwrap();
        let Expr::Agg(a) = e else { panic!() };
        assert_eq!(a.op, AggOp::Sum);
        assert_eq!(
            a.grouping,
            Some(Grouping {
                without: false,
                labels: vec!["source".into()]
            })
        );
        let Expr::Range(r) = *a.expr else { panic!() };
        assert_eq!(r.func, RangeFn::CountOverTime);
        assert_eq!(r.range_ns, 60_000_000_000);

        // Grouping after the arguments; range after the pipeline or before it.
        let e = parse(r#"max(rate({a="b"} |= "x" [5m])) without (stream)"#).unwrap();
        let Expr::Agg(a) = e else { panic!() };
        assert!(a.grouping.unwrap().without);
        let e1 = parse(r#"bytes_rate({a="b"}[1h30m] |= "x")"#).unwrap();
        let Expr::Range(r) = e1 else { panic!() };
        assert_eq!(r.range_ns, 5_400_000_000_000);
        assert_eq!(r.log.filters.len(), 1);

        let e = parse(r#"topk(3, sum by (source) (bytes_over_time({a="b"}[10s])))"#).unwrap();
        let Expr::Agg(a) = e else { panic!() };
        assert_eq!((a.op, a.k), (AggOp::Topk, Some(3)));

        // Grafana's volume query.
        let e = parse(
            r#"sum by (level, detected_level) (count_over_time({source="web"} |= "x" | drop __error__, __error_details__ [2s]))"#,
        )
        .unwrap();
        let Expr::Agg(a) = e else { panic!() };
        let Expr::Range(r) = *a.expr else { panic!() };
        assert_eq!(r.log.drops, vec!["__error__", "__error_details__"]);
    }

    #[test]
    fn arithmetic() {
        let e = parse("vector(1)+vector(1)").unwrap();
        assert_eq!(
            e,
            Expr::Binary(Box::new(BinaryExpr {
                op: BinOp::Add,
                lhs: Expr::Vector(1.0),
                rhs: Expr::Vector(1.0),
            }))
        );
        assert_eq!(parse("1 + 2 * 3").unwrap(), Expr::Number(7.0));
        assert_eq!(parse("(1 + 2) * 3").unwrap(), Expr::Number(9.0));
        assert_eq!(parse("-2 - -1").unwrap(), Expr::Number(-1.0));
        assert_eq!(parse("10 / 4").unwrap(), Expr::Number(2.5));
        let e = parse(r#"sum(rate({a="b"}[1m])) / 2 + 1"#).unwrap();
        let Expr::Binary(b) = e else { panic!() };
        assert_eq!(b.op, BinOp::Add);
    }

    #[test]
    fn strings() {
        let one = |q: &str| match parse(q).unwrap() {
            Expr::Log(l) => l.filters[0].value.clone(),
            e => panic!("{e:?}"),
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
        assert!(err(r#"{a="b"} | json"#)
            .starts_with("parse error at 1:11: the pipeline stage `| json` is not supported"));
        assert!(err(r#"avg_over_time({a="b"}[1m])"#).contains("not supported by ringtail"));
        assert!(err("frobnicate(1)").starts_with("parse error at 1:1: unknown function"));
        assert!(err(r#"{a="b"} |~ "(""#).starts_with("parse error at 1:12: bad regular expression"));
        assert!(err(r#"{a=~"("}"#).starts_with("parse error at 1:5:"));
        assert!(err(r#"{a="b"} |= "\d""#).contains("unknown escape \\d"));
        assert!(err(r#"{a="b"} |= "open"#).contains("unterminated"));
        assert!(err(r#"sum({a="b"})"#).contains("needs a metric expression"));
        assert!(err(r#"{a="b"} + 1"#).contains("not a log query"));
        assert!(err(r#"rate({a="b"}[5])"#).contains("needs a unit"));
        assert!(err(r#"rate({a="b"}[5x])"#).contains("duration"));
        assert!(err(r#"topk(0, rate({a="b"}[5m]))"#).contains("whole number"));
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
    }
}
