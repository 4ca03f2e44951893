//! The syntax tree of a LogQL query, as the parser builds it and the
//! evaluator reads it. It holds what was written (strings, not compiled
//! regexes or templates): the parser has already checked that each piece
//! compiles, and [`super::pipeline`] compiles it again for a run.

use crate::filter::{LabelMatcher, MatchOp};

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A log query: which entries, through which pipeline.
    Log(LogExpr),
    /// A range aggregation: `count_over_time({...}[5m])`.
    Range(Box<RangeExpr>),
    /// A vector aggregation: `sum by (source) (...)`, `topk(3, ...)`.
    Agg(Box<AggExpr>),
    /// `a + b`, `a > bool 3`, `a and on (x) b`.
    Binary(Box<BinaryExpr>),
    /// A number literal: a scalar.
    Number(f64),
    /// `vector(1)`: a one-series vector with no labels.
    Vector(f64),
    /// `label_replace(v, "dst", "$1", "src", "(.*)")`.
    LabelReplace(Box<LabelReplaceExpr>),
}

impl Expr {
    /// Whether this is a log query (answered with streams, not samples).
    pub fn is_log(&self) -> bool {
        matches!(self, Expr::Log(_))
    }
}

/// A stream selector with its pipeline.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
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
    /// `|>`: the line matches the pattern (`<_>` for any text).
    Pattern,
    /// `!>`: the line does not match the pattern.
    NotPattern,
}

impl LineOp {
    /// Whether the operator keeps lines that do not match.
    pub fn is_negative(self) -> bool {
        matches!(
            self,
            LineOp::NotContains | LineOp::NotMatches | LineOp::NotPattern
        )
    }
}

/// One line filter as written; `|= "a" or "b"` has two values (a positive
/// filter keeps a line that matches any of them, a negative one a line
/// that matches none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineFilter {
    pub op: LineOp,
    pub values: Vec<String>,
}

/// One stage of a log pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    Line(LineFilter),
    /// `| json` (no parameters: every field) or `| json a="x.y", b`.
    Json(Vec<Extraction>),
    /// `| logfmt [--strict] [--keep-empty] [a="x", b]`.
    Logfmt {
        strict: bool,
        keep_empty: bool,
        params: Vec<Extraction>,
    },
    /// `| regexp "(?P<name>...)"`.
    Regexp(String),
    /// `| pattern "<ip> - <_>"`.
    Pattern(String),
    /// `| unpack`.
    Unpack,
    /// `| status >= 500 and method="GET"`.
    LabelFilter(LabelFilter),
    /// `| line_format "{{.msg}}"`.
    LineFormat(String),
    /// `| label_format dst=src, x="{{.y}}"`.
    LabelFormat(Vec<LabelFmt>),
    /// `| decolorize`.
    Decolorize,
    /// `| drop a, b="x"`.
    Drop(Vec<NamedMatcher>),
    /// `| keep a, b="x"`.
    Keep(Vec<NamedMatcher>),
}

/// `name="expression"` of a parser's parameter form; `| json a` is
/// `a="a"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extraction {
    pub label: String,
    pub expr: String,
}

/// A label of `drop` or `keep`: a bare name or a matcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamedMatcher {
    Name(String),
    Matcher(Matcher),
}

/// One operation of `label_format`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelFmt {
    pub dst: String,
    pub value: LabelFmtValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelFmtValue {
    /// `dst=src`: rename.
    Rename(String),
    /// `dst="{{...}}"`: a template.
    Template(String),
}

/// A comparison of a label filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn apply<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }
}

/// A label filter expression.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelFilter {
    /// `name="x"`, `name=~"re"`, ...: strings, a missing label is `""`.
    Match(Matcher),
    /// `name > 2.5`.
    Number {
        name: String,
        op: CmpOp,
        value: f64,
    },
    /// `name > 250ms`, in ns.
    Duration {
        name: String,
        op: CmpOp,
        value: i64,
    },
    /// `name > 20MB`, in bytes.
    Bytes {
        name: String,
        op: CmpOp,
        value: u64,
    },
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

/// The range functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeFn {
    CountOverTime,
    Rate,
    RateCounter,
    BytesOverTime,
    BytesRate,
    AvgOverTime,
    SumOverTime,
    MinOverTime,
    MaxOverTime,
    StdvarOverTime,
    StddevOverTime,
    QuantileOverTime,
    FirstOverTime,
    LastOverTime,
    AbsentOverTime,
}

impl RangeFn {
    pub const ALL: [RangeFn; 15] = [
        RangeFn::CountOverTime,
        RangeFn::Rate,
        RangeFn::RateCounter,
        RangeFn::BytesOverTime,
        RangeFn::BytesRate,
        RangeFn::AvgOverTime,
        RangeFn::SumOverTime,
        RangeFn::MinOverTime,
        RangeFn::MaxOverTime,
        RangeFn::StdvarOverTime,
        RangeFn::StddevOverTime,
        RangeFn::QuantileOverTime,
        RangeFn::FirstOverTime,
        RangeFn::LastOverTime,
        RangeFn::AbsentOverTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RangeFn::CountOverTime => "count_over_time",
            RangeFn::Rate => "rate",
            RangeFn::RateCounter => "rate_counter",
            RangeFn::BytesOverTime => "bytes_over_time",
            RangeFn::BytesRate => "bytes_rate",
            RangeFn::AvgOverTime => "avg_over_time",
            RangeFn::SumOverTime => "sum_over_time",
            RangeFn::MinOverTime => "min_over_time",
            RangeFn::MaxOverTime => "max_over_time",
            RangeFn::StdvarOverTime => "stdvar_over_time",
            RangeFn::StddevOverTime => "stddev_over_time",
            RangeFn::QuantileOverTime => "quantile_over_time",
            RangeFn::FirstOverTime => "first_over_time",
            RangeFn::LastOverTime => "last_over_time",
            RangeFn::AbsentOverTime => "absent_over_time",
        }
    }

    pub fn from_name(name: &str) -> Option<RangeFn> {
        RangeFn::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether Loki accepts `by`/`without` on this function.
    pub fn allows_grouping(self) -> bool {
        matches!(
            self,
            RangeFn::AvgOverTime
                | RangeFn::StddevOverTime
                | RangeFn::StdvarOverTime
                | RangeFn::QuantileOverTime
                | RangeFn::MaxOverTime
                | RangeFn::MinOverTime
                | RangeFn::FirstOverTime
                | RangeFn::LastOverTime
        )
    }

    /// Whether the function takes an unwrapped range (`Some(true)`), a
    /// plain one (`Some(false)`), or either.
    pub fn needs_unwrap(self) -> Option<bool> {
        match self {
            RangeFn::CountOverTime | RangeFn::BytesOverTime | RangeFn::BytesRate => Some(false),
            RangeFn::Rate | RangeFn::AbsentOverTime => None,
            _ => Some(true),
        }
    }
}

/// How `unwrap` reads a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// A float (`strconv.ParseFloat`).
    Float,
    /// `duration()` / `duration_seconds()`: a Go duration, in seconds.
    Duration,
    /// `bytes()`: humanized bytes.
    Bytes,
}

/// `| unwrap [conv(]label[)]` and the label filters after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Unwrap {
    pub label: String,
    pub conversion: Conversion,
    pub post_filters: Vec<LabelFilter>,
}

/// A range aggregation.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeExpr {
    pub func: RangeFn,
    /// `quantile_over_time`'s φ.
    pub param: Option<f64>,
    pub log: LogExpr,
    pub unwrap: Option<Unwrap>,
    /// The window, ns.
    pub range_ns: u64,
    /// `offset`, ns.
    pub offset_ns: u64,
    /// `by`/`without` after the function, where Loki allows it.
    pub grouping: Option<Grouping>,
}

/// The vector aggregation operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Count,
    Min,
    Max,
    Avg,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
}

impl AggOp {
    pub const ALL: [AggOp; 11] = [
        AggOp::Sum,
        AggOp::Count,
        AggOp::Min,
        AggOp::Max,
        AggOp::Avg,
        AggOp::Stddev,
        AggOp::Stdvar,
        AggOp::Topk,
        AggOp::Bottomk,
        AggOp::Sort,
        AggOp::SortDesc,
    ];

    pub fn from_name(name: &str) -> Option<AggOp> {
        AggOp::ALL.into_iter().find(|o| o.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Count => "count",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Avg => "avg",
            AggOp::Stddev => "stddev",
            AggOp::Stdvar => "stdvar",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
            AggOp::Sort => "sort",
            AggOp::SortDesc => "sort_desc",
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
    /// Loki treats a missing grouping as `by ()`.
    pub grouping: Option<Grouping>,
    /// `k` of `topk`/`bottomk`.
    pub k: Option<usize>,
    pub expr: Expr,
}

/// Binary operators, in Loki's precedence classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Unless,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le
        )
    }

    /// `and`, `or`, `unless`: defined between vectors only.
    pub fn is_set(self) -> bool {
        matches!(self, BinOp::Or | BinOp::And | BinOp::Unless)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Unless => "unless",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
        }
    }

    /// Applies an arithmetic operator as Loki does: `x / 0` and `x % 0`
    /// are NaN (Loki guards them), the rest is IEEE arithmetic. For a
    /// comparison: 1 when it holds, else 0.
    pub fn apply(self, a: f64, b: f64) -> f64 {
        let truth = |t: bool| if t { 1.0 } else { 0.0 };
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div if b == 0.0 => f64::NAN,
            BinOp::Div => a / b,
            BinOp::Mod if b == 0.0 => f64::NAN,
            BinOp::Mod => go_mod(a, b),
            BinOp::Pow => a.powf(b),
            BinOp::Eq => truth(a == b),
            BinOp::Ne => truth(a != b),
            BinOp::Gt => truth(a > b),
            BinOp::Ge => truth(a >= b),
            BinOp::Lt => truth(a < b),
            BinOp::Le => truth(a <= b),
            BinOp::Or | BinOp::And | BinOp::Unless => f64::NAN,
        }
    }
}

/// Go's `math.Mod`: the result has the sign of `a` (as Rust's `%`).
fn go_mod(a: f64, b: f64) -> f64 {
    a % b
}

/// Which side has more series in a vector match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Card {
    OneToOne,
    /// `group_left`.
    ManyToOne,
    /// `group_right`.
    OneToMany,
}

/// `on (...)` / `ignoring (...)` and `group_left/right (...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorMatching {
    /// `on` (true) or `ignoring` (false).
    pub on: bool,
    pub labels: Vec<String>,
    pub card: Card,
    /// The labels `group_x (...)` copies from the "one" side.
    pub include: Vec<String>,
}

impl Default for VectorMatching {
    fn default() -> VectorMatching {
        VectorMatching {
            on: false,
            labels: Vec::new(),
            card: Card::OneToOne,
            include: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BinaryExpr {
    pub op: BinOp,
    /// `bool`: comparisons give 0/1 instead of filtering.
    pub return_bool: bool,
    pub matching: VectorMatching,
    pub lhs: Expr,
    pub rhs: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LabelReplaceExpr {
    pub expr: Expr,
    pub dst: String,
    pub replacement: String,
    pub src: String,
    pub regex: String,
}
