//! Evaluating a parsed query over a ring snapshot.
//!
//! | room | job |
//! |------|-----|
//! | [`scan`] | seq ranges, entry timestamps, the (parallel) scan |
//! | [`logs`] | log queries: entries in order, up to `limit` |
//! | [`range`] | range aggregations: `count_over_time`, unwrapped ranges |
//! | [`window`] | per-window functions over unwrapped samples |
//! | [`vector`] | vector aggregations: `sum by`, `topk`, `sort` |
//! | [`binary`] | arithmetic, comparisons, `and`/`or`/`unless`, vector matching |
//!
//! A metric expression evaluates to a [`Value`]: a scalar, or series with
//! one optional point per step ([`Steps`]). Loki's rules that cut across
//! rooms live here: a series that carries `__error__` fails the query
//! with Loki's pipeline-error message, and `sum` over a range function
//! passes its grouping down to the scan (Loki's "vector grouping
//! injection"), which is what keeps grouped queries over parsed labels
//! fast.

pub mod binary;
pub mod logs;
pub mod range;
pub mod scan;
pub mod vector;
pub mod window;

use super::ast::{AggOp, Expr, Grouping, LogExpr, RangeFn};
use super::pipeline::{Hints, Pipeline};
use crate::filter::Filter;
use crate::ring::Snapshot;
use crate::serve::loki::{LokiError, LokiLimits};

pub use scan::{entry_ts, max_event_lag, seq_range, Labels};

/// The points of a metric query: `start + i * step` for `i` in `0..n`.
#[derive(Clone, Copy, Debug)]
pub struct Steps {
    pub start: u64,
    pub step: u64,
    pub n: usize,
}

impl Steps {
    pub fn at(&self, i: usize) -> u64 {
        self.start + i as u64 * self.step
    }

    pub fn last(&self) -> u64 {
        self.at(self.n - 1)
    }
}

/// One series of a metric result: a value (or none) per step.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<Option<f64>>,
}

/// What a metric expression evaluates to.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    /// Series; in label order unless `sort`/`topk` ordered an instant
    /// vector by value.
    Vector(Vec<Series>),
}

/// The ring filter and the pipeline of a log expression.
pub struct LogPlan {
    pub filter: Filter,
    pub pipeline: Pipeline,
}

impl LogPlan {
    pub fn new(log: &LogExpr, hints: Hints) -> Result<LogPlan, LokiError> {
        let pipeline = Pipeline::compile(&log.stages, hints).map_err(LokiError::bad)?;
        let mut b = Filter::builder();
        for m in &log.matchers {
            b = b.matcher(m.compile());
        }
        for f in &pipeline.ring_filters {
            let v = &f.values[0];
            b = match f.op {
                super::ast::LineOp::Contains => b.contains(v),
                super::ast::LineOp::NotContains => b.not_contains(v),
                super::ast::LineOp::Matches => b.regex(v),
                super::ast::LineOp::NotMatches => b.not_regex(v),
                super::ast::LineOp::Pattern | super::ast::LineOp::NotPattern => {
                    unreachable!("pattern filters stay in the pipeline")
                }
            };
        }
        Ok(LogPlan {
            filter: b.build().map_err(|e| LokiError::bad(e.to_string()))?,
            pipeline,
        })
    }
}

pub fn too_many_series(max: usize) -> LokiError {
    LokiError::bad(format!(
        "the query selects more than {max} series: narrow the selector or aggregate, \
         for example sum by (source) (...)"
    ))
}

/// Loki's answer when a metric series carries a pipeline error.
pub fn pipeline_error(labels: &Labels) -> LokiError {
    let kind = labels
        .iter()
        .find(|(k, _)| k == "__error__")
        .map_or("", |(_, v)| v.as_str());
    let shown: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", super::units::go_quote(v)))
        .collect();
    LokiError::bad(format!(
        "pipeline error: '{kind}' for series: '{{{}}}'.\n\
         Use a label filter to intentionally skip this error. (e.g | __error__!=\"{kind}\").\n\
         To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n\
         The label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )",
        shown.join(", ")
    ))
}

pub struct Eval<'a> {
    pub snap: Snapshot<'a>,
    pub steps: Steps,
    pub limits: &'a LokiLimits,
}

impl Eval<'_> {
    pub fn eval(&self, e: &Expr) -> Result<Value, LokiError> {
        match e {
            Expr::Number(v) => Ok(Value::Scalar(*v)),
            Expr::Vector(v) => Ok(Value::Vector(vec![Series {
                labels: Vec::new(),
                points: vec![Some(*v); self.steps.n],
            }])),
            Expr::Range(r) => range::evaluate(self, r, None).map(Value::Vector),
            Expr::Agg(a) => {
                // Loki passes `sum`'s grouping down to a range function
                // that has none, so that the scan keeps only those labels.
                if let Expr::Range(r) = &a.expr {
                    let injectable = a.op == AggOp::Sum
                        && r.grouping.is_none()
                        && matches!(
                            r.func,
                            RangeFn::BytesOverTime
                                | RangeFn::BytesRate
                                | RangeFn::SumOverTime
                                | RangeFn::Rate
                                | RangeFn::CountOverTime
                        );
                    if injectable {
                        let g = a.grouping.clone().unwrap_or(Grouping {
                            without: false,
                            labels: Vec::new(),
                        });
                        let series = range::evaluate(self, r, Some(&g))?;
                        return Ok(Value::Vector(vector::aggregate(a, series, &self.steps)));
                    }
                }
                match self.eval(&a.expr)? {
                    Value::Vector(v) => Ok(Value::Vector(vector::aggregate(a, v, &self.steps))),
                    Value::Scalar(_) => Err(LokiError::bad(format!(
                        "{} aggregates a vector, not a number: wrap the number as vector(N)",
                        a.op.name()
                    ))),
                }
            }
            Expr::Binary(b) => {
                let lhs = self.eval(&b.lhs)?;
                let rhs = self.eval(&b.rhs)?;
                binary::apply(b, lhs, rhs, self.steps.n, self.limits.max_series)
            }
            Expr::LabelReplace(l) => match self.eval(&l.expr)? {
                Value::Vector(v) => Ok(Value::Vector(binary::label_replace(l, v)?)),
                Value::Scalar(_) => Err(LokiError::bad(
                    "label_replace takes a vector, not a number: wrap the number as vector(N)",
                )),
            },
            Expr::Log(_) => Err(LokiError::bad(
                "a log query cannot be used as a metric: wrap it as count_over_time({...}[5m])",
            )),
        }
    }
}
