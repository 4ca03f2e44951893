//! The LogQL parser: query text in, [`Expr`] out, or a [`ParseError`] that
//! names the line and column where it stopped, what it expected there and
//! what it found (`parse error at 1:12: expected '}' or ',' after a
//! matcher, found '"'`).
//!
//! Grammar (Loki's precedence, loosest first: `or`; `and` `unless`;
//! comparisons; `+ -`; `* / %`; `^`, right-associative):
//!
//! ```text
//! expr      = operand { BINOP modifiers operand }          (by precedence)
//! modifiers = ["bool"] [("on" | "ignoring") "(" labels ")"
//!                       [("group_left" | "group_right") ["(" labels ")"]]]
//! operand   = ("-" | "+") operand | primary
//! primary   = NUMBER | "(" expr ")" | log
//!           | "vector" "(" NUMBER ")"
//!           | RANGE_FN "(" [NUMBER ","] log_range ")" [grouping]
//!           | AGG [grouping] "(" [NUMBER ","] expr ")" [grouping]
//!           | "label_replace" "(" expr "," STR "," STR "," STR "," STR ")"
//! log_range = ["("] selector [range] pipeline [unwrap] [")"] [range]
//! range     = "[" DURATION "]" ["offset" DURATION]
//! log       = selector pipeline                             (parser/pipeline.rs)
//! grouping  = ("by" | "without") "(" [labels] ")"
//! ```
//!
//! What it promises beyond the grammar:
//! - every piece that compiles (regexes, patterns, templates, JSON paths)
//!   is compiled while parsing, so a bad one is an error at its position;
//! - a selector must hold at least one `=` or `=~` matcher that the empty
//!   value does not pass, as Loki requires;
//! - Loki's rules on where grouping, `unwrap` and parameters are allowed
//!   are checked here with Loki's wording;
//! - what ringtail does not implement (`approx_topk`, `ip()` filters, ...)
//!   is refused by name;
//! - depth and token count are bounded, so hostile text costs little.
//!
//! Why not a crate: of the LogQL parsers on crates.io, `logql` has not been
//! released since 2022 and `logql-parser` (0.1, young) reports positions
//! without what was expected. A recursive-descent parser with ringtail's
//! own messages is also where Loki's many small rules live.

mod pipeline;

use super::ast::*;
use super::lexer::{error_at, lex, ParseError, Tok, Token};
use super::units;
use crate::timefmt::parse_duration;

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

/// Loki's (and Prometheus's) label names.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The deepest nesting of parentheses, aggregations and label filters.
const MAX_DEPTH: usize = 64;

pub(super) struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Parser<'a>, ParseError> {
        Ok(Parser {
            input,
            tokens: lex(input)?,
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

    fn peek_nth(&self, n: usize) -> &Tok {
        &self.tokens[(self.at + n).min(self.tokens.len() - 1)].tok
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.at].clone();
        if t.tok != Tok::End {
            self.at += 1;
        }
        t
    }

    fn at_word(&self, word: &str) -> bool {
        self.peek_tok().is_word(word)
    }

    /// An error at the next token: "expected X, found Y".
    fn expected(&self, what: &str) -> ParseError {
        let t = self.peek();
        self.error_at(
            t.pos,
            format!("expected {what}, found {}", t.tok.describe()),
        )
    }

    /// Like [`expected`](Self::expected), for the token just consumed.
    fn expected_prev(&self, what: &str) -> ParseError {
        let t = &self.tokens[self.at.saturating_sub(1)];
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

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // ---- binary operators, by precedence ----

    fn expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let e = self.binary_level(0)?;
        self.leave();
        Ok(e)
    }

    /// The operator at the next token, if it belongs to `level` (0 is the
    /// loosest).
    fn binop_at(&self, level: usize) -> Option<BinOp> {
        let t = self.peek_tok();
        let op = match t {
            Tok::Ident(_) if t.is_word("or") => BinOp::Or,
            Tok::Ident(_) if t.is_word("and") => BinOp::And,
            Tok::Ident(_) if t.is_word("unless") => BinOp::Unless,
            Tok::CmpEq => BinOp::Eq,
            Tok::Ne => BinOp::Ne,
            Tok::Gt => BinOp::Gt,
            Tok::Ge => BinOp::Ge,
            Tok::Lt => BinOp::Lt,
            Tok::Le => BinOp::Le,
            Tok::Plus => BinOp::Add,
            Tok::Minus => BinOp::Sub,
            Tok::Star => BinOp::Mul,
            Tok::Slash => BinOp::Div,
            Tok::Percent => BinOp::Mod,
            Tok::Caret => BinOp::Pow,
            _ => return None,
        };
        let op_level = match op {
            BinOp::Or => 0,
            BinOp::And | BinOp::Unless => 1,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le => 2,
            BinOp::Add | BinOp::Sub => 3,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 4,
            BinOp::Pow => 5,
        };
        (op_level == level).then_some(op)
    }

    fn binary_level(&mut self, level: usize) -> Result<Expr, ParseError> {
        if level == 6 {
            return self.unary();
        }
        let mut lhs = self.binary_level(level + 1)?;
        while let Some(op) = self.binop_at(level) {
            let op_pos = self.next().pos;
            let (return_bool, matching) = self.bin_modifiers(op)?;
            // `^` is right-associative: its right side may hold more `^`.
            let rhs = if op == BinOp::Pow {
                self.enter()?;
                let r = self.binary_level(level)?;
                self.leave();
                r
            } else {
                self.binary_level(level + 1)?
            };
            lhs = self.binary(op, return_bool, matching, lhs, rhs, op_pos)?;
        }
        Ok(lhs)
    }

    fn bin_modifiers(&mut self, op: BinOp) -> Result<(bool, VectorMatching), ParseError> {
        let mut return_bool = false;
        if self.at_word("bool") {
            let pos = self.next().pos;
            if !op.is_comparison() {
                return Err(self.error_at(
                    pos,
                    format!(
                        "bool modifier can only be used on comparison operators, not '{}'",
                        op.as_str()
                    ),
                ));
            }
            return_bool = true;
        }
        let mut matching = VectorMatching::default();
        let on = self.at_word("on");
        if on || self.at_word("ignoring") {
            self.next();
            matching.on = on;
            matching.labels = self.label_list()?;
            let left = self.at_word("group_left");
            if left || self.at_word("group_right") {
                let pos = self.next().pos;
                if op.is_set() {
                    return Err(self.error_at(
                        pos,
                        format!("no grouping allowed for '{}' operation", op.as_str()),
                    ));
                }
                matching.card = if left {
                    Card::ManyToOne
                } else {
                    Card::OneToMany
                };
                if *self.peek_tok() == Tok::LParen {
                    matching.include = self.label_list()?;
                }
            }
        }
        Ok((return_bool, matching))
    }

    /// `"(" [label {"," label}] ")"`.
    fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(Tok::LParen, "'(' and a list of label names")?;
        let mut labels = Vec::new();
        loop {
            match self.peek_tok().clone() {
                Tok::RParen => {
                    self.next();
                    return Ok(labels);
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
    }

    fn binary(
        &self,
        op: BinOp,
        return_bool: bool,
        matching: VectorMatching,
        lhs: Expr,
        rhs: Expr,
        pos: usize,
    ) -> Result<Expr, ParseError> {
        if lhs.is_log() || rhs.is_log() {
            return Err(self.error_at(
                pos,
                format!(
                    "'{}' needs metric expressions or numbers on both sides, not a log query: \
                     wrap it as count_over_time({{...}}[5m])",
                    op.as_str()
                ),
            ));
        }
        if op.is_set() {
            for side in [&lhs, &rhs] {
                if let Expr::Number(n) = side {
                    return Err(self.error_at(
                        pos,
                        format!(
                            "'{}' is a set operation between vectors; {n} is a number: \
                             write vector({n})",
                            op.as_str()
                        ),
                    ));
                }
            }
        }
        Ok(match (lhs, rhs) {
            // Loki folds literal arithmetic and comparisons (to 0 or 1).
            (Expr::Number(a), Expr::Number(b)) => Expr::Number(op.apply(a, b)),
            (lhs, rhs) => Expr::Binary(Box::new(BinaryExpr {
                op,
                return_bool,
                matching,
                lhs,
                rhs,
            })),
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if matches!(self.peek_tok(), Tok::Minus | Tok::Plus) {
            let negative = *self.peek_tok() == Tok::Minus;
            let pos = self.next().pos;
            self.enter()?;
            let inner = self.unary()?;
            self.leave();
            if !negative {
                return match inner {
                    Expr::Log(_) => Err(self.error_at(pos, "a log query cannot take a sign")),
                    e => Ok(e),
                };
            }
            return match inner {
                Expr::Number(n) => Ok(Expr::Number(-n)),
                Expr::Log(_) => Err(self.error_at(pos, "a log query cannot be negated")),
                e => Ok(Expr::Binary(Box::new(BinaryExpr {
                    op: BinOp::Mul,
                    return_bool: false,
                    matching: VectorMatching::default(),
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
            Tok::LBrace => Ok(Expr::Log(self.log_expr(false)?.0)),
            Tok::Ident(name) => self.call(&name, t.pos),
            _ => Err(self.expected(
                "a stream selector '{...}', a function such as count_over_time or sum, or a number",
            )),
        }
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<Expr, ParseError> {
        let lower = name.to_ascii_lowercase();
        if lower == "vector" {
            self.next();
            self.expect(Tok::LParen, "'(' after vector")?;
            let sign = match self.peek_tok() {
                Tok::Minus => {
                    self.next();
                    -1.0
                }
                Tok::Plus => {
                    self.next();
                    1.0
                }
                _ => 1.0,
            };
            let n = match self.next().tok {
                Tok::Number(n) => sign * n,
                _ => return Err(self.expected_prev("a number inside vector(...)")),
            };
            self.expect(Tok::RParen, "')' after the number of vector(...)")?;
            return Ok(Expr::Vector(n));
        }
        if let Some(func) = RangeFn::from_name(&lower) {
            self.next();
            return self.range_call(func, pos);
        }
        if let Some(op) = AggOp::from_name(&lower) {
            self.next();
            return self.aggregation(op);
        }
        if lower == "label_replace" {
            self.next();
            return self.label_replace();
        }
        Err(self.error_at(pos, unsupported_name(name)))
    }

    fn range_call(&mut self, func: RangeFn, pos: usize) -> Result<Expr, ParseError> {
        let name = func.name();
        self.enter()?;
        self.expect(Tok::LParen, &format!("'(' after {name}"))?;
        let mut param = None;
        if let Tok::Number(n) = *self.peek_tok() {
            let ppos = self.next().pos;
            if func != RangeFn::QuantileOverTime {
                return Err(self.error_at(
                    ppos,
                    format!("parameter {n} not supported for operation {name}"),
                ));
            }
            param = Some(n);
            self.expect(Tok::Comma, "',' after the parameter")?;
        } else if func == RangeFn::QuantileOverTime {
            return Err(self
                .expected("the quantile, as in quantile_over_time(0.99, {...} | unwrap x [5m])"));
        }
        let (log, unwrap, range_ns, offset_ns) = self.log_range()?;
        self.expect(Tok::RParen, &format!("')' to close {name}(...)"))?;
        let grouping = self.maybe_grouping()?;
        self.leave();
        if grouping.is_some() && !func.allows_grouping() {
            return Err(self.error_at(pos, format!("grouping not allowed for {name} aggregation")));
        }
        match (func.needs_unwrap(), &unwrap) {
            (Some(true), None) => {
                return Err(self.error_at(
                    pos,
                    format!(
                        "invalid aggregation {name} without unwrap: add `| unwrap label` \
                         before the range, as in {name}({{...}} | logfmt | unwrap latency [5m])"
                    ),
                ))
            }
            (Some(false), Some(_)) => {
                return Err(self.error_at(pos, format!("invalid aggregation {name} with unwrap")))
            }
            _ => {}
        }
        Ok(Expr::Range(Box::new(RangeExpr {
            func,
            param,
            log,
            unwrap,
            range_ns,
            offset_ns,
            grouping,
        })))
    }

    /// The log part of a range function, with its range and offset:
    /// `{...} | ... [5m] offset 1h`, `{...}[5m] | ...`, `({...} | ...)[5m]`.
    fn log_range(&mut self) -> Result<(LogExpr, Option<Unwrap>, u64, u64), ParseError> {
        let paren = *self.peek_tok() == Tok::LParen;
        if paren {
            self.next();
        }
        if *self.peek_tok() != Tok::LBrace {
            return Err(self.expected("a stream selector '{...}' with a range such as [5m]"));
        }
        let mut range = self.maybe_range()?;
        let (log, unwrap) = {
            let pos = self.peek().pos;
            let matchers = self.selector_matchers()?;
            self.check_selective(&matchers, pos)?;
            if range.is_none() {
                range = self.maybe_range()?;
            }
            let (stages, unwrap) = self.pipeline(true)?;
            (LogExpr { matchers, stages }, unwrap)
        };
        if range.is_none() {
            range = self.maybe_range()?;
        }
        if paren {
            self.expect(Tok::RParen, "')' after the log query")?;
            if range.is_none() {
                range = self.maybe_range()?;
            }
        }
        let Some((range_ns, offset_ns)) = range else {
            return Err(self.expected("a range such as [5m] after the log query"));
        };
        Ok((log, unwrap, range_ns, offset_ns))
    }

    /// `[5m]` and an optional `offset 1h`, both in ns.
    fn maybe_range(&mut self) -> Result<Option<(u64, u64)>, ParseError> {
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
        let mut offset = 0;
        if self.at_word("offset") {
            self.next();
            let t = self.next();
            let (neg, t) = match t.tok {
                Tok::Minus => (true, self.next()),
                _ => (false, t),
            };
            let Tok::Duration(d) = &t.tok else {
                return Err(self.expected_prev("a duration after offset, such as 1h"));
            };
            let v = units::logql_duration(d).map_err(|e| self.error_at(t.pos, e.to_string()))?;
            if neg || v < 0 {
                return Err(self.error_at(
                    t.pos,
                    "a negative offset would read the future: ringtail takes offsets of zero or more",
                ));
            }
            offset = v as u64;
        }
        Ok(Some((ns, offset)))
    }

    fn aggregation(&mut self, op: AggOp) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut grouping = self.maybe_grouping()?;
        self.expect(Tok::LParen, &format!("'(' after {}", op.name()))?;
        let mut k = None;
        if let Tok::Number(n) = *self.peek_tok() {
            // `sum(2, ...)` is Loki's error too; `sum(2)` is not a parameter.
            if *self.peek_nth(1) == Tok::Comma {
                let t = self.next();
                self.next();
                if !matches!(op, AggOp::Topk | AggOp::Bottomk) {
                    return Err(self.error_at(
                        t.pos,
                        format!("unsupported parameter for operation {}({n},", op.name()),
                    ));
                }
                if n.fract() != 0.0 || n > 1e9 {
                    return Err(self.error_at(
                        t.pos,
                        format!(
                            "invalid parameter {}({n},: a whole number is needed",
                            op.name()
                        ),
                    ));
                }
                if n <= 0.0 {
                    return Err(self.error_at(
                        t.pos,
                        format!(
                            "invalid parameter (must be greater than 0) {}({n}: \
                             {}'s first argument must be a whole number from 1",
                            op.name(),
                            op.name()
                        ),
                    ));
                }
                k = Some(n as usize);
            }
        }
        if matches!(op, AggOp::Topk | AggOp::Bottomk) && k.is_none() {
            return Err(self.expected(&format!(
                "the number of series, as in {}(5, ...)",
                op.name()
            )));
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
        } else if self.at_word("by") || self.at_word("without") {
            return Err(self.error_at(self.peek().pos, "a grouping may be given only once"));
        }
        self.leave();
        Ok(Expr::Agg(Box::new(AggExpr {
            op,
            grouping,
            k,
            expr: inner,
        })))
    }

    fn label_replace(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        self.expect(Tok::LParen, "'(' after label_replace")?;
        let expr_pos = self.peek().pos;
        let expr = self.expr()?;
        if expr.is_log() {
            return Err(self.error_at(
                expr_pos,
                "label_replace needs a metric expression, not a log query",
            ));
        }
        let mut args = Vec::with_capacity(4);
        let mut regex_pos = 0;
        for what in ["destination label", "replacement", "source label", "regex"] {
            self.expect(Tok::Comma, &format!("',' before the {what}"))?;
            let t = self.next();
            let Tok::Str(s) = t.tok else {
                return Err(self.expected_prev(&format!("the {what} as a quoted string")));
            };
            regex_pos = t.pos;
            args.push(s);
        }
        self.expect(Tok::RParen, "')' to close label_replace(...)")?;
        self.leave();
        let regex = args.pop().expect("four arguments");
        let src = args.pop().expect("four arguments");
        let replacement = args.pop().expect("four arguments");
        let dst = args.pop().expect("four arguments");
        if let Err(e) = regex::Regex::new(&format!("^(?:{regex})$")) {
            return Err(self.error_at(regex_pos, format!("invalid regex in label_replace: {e}")));
        }
        if !valid_label_name(&dst) {
            return Err(self.error_at(
                expr_pos,
                format!("invalid destination label name in label_replace: {dst:?}"),
            ));
        }
        Ok(Expr::LabelReplace(Box::new(LabelReplaceExpr {
            expr,
            dst,
            replacement,
            src,
            regex,
        })))
    }

    fn maybe_grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let without = if self.at_word("by") {
            false
        } else if self.at_word("without") {
            true
        } else {
            return Ok(None);
        };
        self.next();
        let labels = self.label_list()?;
        Ok(Some(Grouping { without, labels }))
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
}

/// The message for an identifier that is not a function ringtail knows.
fn unsupported_name(name: &str) -> String {
    const REFUSED: &[(&str, &str)] = &[
        (
            "approx_topk",
            "approx_topk is not supported by ringtail: topk gives the exact answer",
        ),
        (
            "count_min_sketch",
            "count_min_sketch is an internal Loki operation, not supported by ringtail",
        ),
        (
            "first_over_time_with_timestamp",
            "first_over_time_with_timestamp is not supported by ringtail",
        ),
    ];
    if let Some((_, msg)) = REFUSED.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        return msg.to_string();
    }
    let ranges: Vec<&str> = RangeFn::ALL.iter().map(|f| f.name()).collect();
    let aggs: Vec<&str> = AggOp::ALL.iter().map(|o| o.name()).collect();
    format!(
        "unknown function or keyword '{name}': expected a stream selector '{{...}}', a range \
         function ({}), an aggregation ({}), label_replace or vector",
        ranges.join(", "),
        aggs.join(", ")
    )
}

#[cfg(test)]
mod tests;
