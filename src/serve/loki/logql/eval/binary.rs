//! Binary operators and `label_replace` (`pkg/logql/evaluator.go`:
//! `vectorBinop`, `resultMetric`, `MergeBinOp`, `LabelReplaceEvaluator`).
//!
//! - Between a vector and a number the operator applies to each point.
//!   A comparison filters (the point stays, with the vector's value, where
//!   it holds) unless `bool`, which gives 1 or 0.
//! - Between vectors, per step, series are matched on their labels, or
//!   only on `on (...)`, or on all but `ignoring (...)`. One-to-one
//!   matching refuses a side with two series of the same signature;
//!   `group_left`/`group_right` allow many series on that side, and copy
//!   the `group_x (...)` labels from the one side. The result's labels are
//!   the (many) left side's (only the `on` labels, or without the
//!   `ignoring` ones, for one-to-one). Errors use Loki's words.
//! - `and`, `or`, `unless` are set operations on the signatures.
//! - `x / 0` and `x % 0` are NaN, as in Loki.

use std::collections::HashMap;

use super::{Labels, Series, Value};
use crate::serve::loki::logql::ast::{BinOp, BinaryExpr, Card, LabelReplaceExpr, VectorMatching};
use crate::serve::loki::LokiError;

pub fn apply(
    b: &BinaryExpr,
    lhs: Value,
    rhs: Value,
    n: usize,
    max_series: usize,
) -> Result<Value, LokiError> {
    match (lhs, rhs) {
        (Value::Scalar(x), Value::Scalar(y)) => Ok(Value::Scalar(b.op.apply(x, y))),
        (Value::Vector(v), Value::Scalar(y)) => Ok(Value::Vector(with_scalar(b, v, y, false))),
        (Value::Scalar(x), Value::Vector(v)) => Ok(Value::Vector(with_scalar(b, v, x, true))),
        (Value::Vector(l), Value::Vector(r)) => vectors(b, l, r, n, max_series).map(Value::Vector),
    }
}

/// A vector and a number; `scalar_left` when the number is on the left.
fn with_scalar(b: &BinaryExpr, v: Vec<Series>, x: f64, scalar_left: bool) -> Vec<Series> {
    let compare = b.op.is_comparison();
    v.into_iter()
        .map(|s| Series {
            labels: s.labels,
            points: s
                .points
                .into_iter()
                .map(|p| {
                    let v = p?;
                    let r = if scalar_left {
                        b.op.apply(x, v)
                    } else {
                        b.op.apply(v, x)
                    };
                    if compare && !b.return_bool {
                        (r == 1.0).then_some(v)
                    } else {
                        Some(r)
                    }
                })
                .collect(),
        })
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect()
}

/// The labels two series are matched on.
fn signature(labels: &Labels, m: &VectorMatching) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| m.labels.iter().any(|l| l == k) == m.on)
        .cloned()
        .collect()
}

/// Loki's `resultMetric`: `many` is the left (or, for `group_right`, the
/// right) series, `one` the other.
fn result_labels(many: &Labels, one: &Labels, m: &VectorMatching) -> Labels {
    let mut out: Labels = if m.card == Card::OneToOne {
        many.iter()
            .filter(|(k, _)| m.labels.iter().any(|l| l == k) == m.on)
            .cloned()
            .collect()
    } else {
        many.clone()
    };
    for name in &m.include {
        out.retain(|(k, _)| k != name);
        if let Some((_, v)) = one.iter().find(|(k, _)| k == name) {
            if !v.is_empty() {
                out.push((name.clone(), v.clone()));
            }
        }
    }
    out.sort();
    out
}

fn vectors(
    b: &BinaryExpr,
    lhs: Vec<Series>,
    rhs: Vec<Series>,
    n: usize,
    max_series: usize,
) -> Result<Vec<Series>, LokiError> {
    let m = &b.matching;
    let lsig: Vec<Labels> = lhs.iter().map(|s| signature(&s.labels, m)).collect();
    let rsig: Vec<Labels> = rhs.iter().map(|s| signature(&s.labels, m)).collect();
    if b.op.is_set() {
        return Ok(set_op(b.op, lhs, rhs, &lsig, &rsig, n));
    }
    // The "many" side is read from; the "one" side is looked up.
    let swap = m.card == Card::OneToMany;
    let (many, many_sig, one, one_sig) = if swap {
        (&rhs, &rsig, &lhs, &lsig)
    } else {
        (&lhs, &lsig, &rhs, &rsig)
    };
    let mut out: Vec<Series> = Vec::new();
    let mut by_labels: HashMap<Labels, usize> = HashMap::new();
    let mut one_at: HashMap<&Labels, usize> = HashMap::new();
    let mut matched: HashMap<&Labels, Vec<usize>> = HashMap::new();
    for step in 0..n {
        one_at.clear();
        for (i, s) in one.iter().enumerate() {
            if s.points[step].is_none() {
                continue;
            }
            if one_at.insert(&one_sig[i], i).is_some() {
                let side = if swap { "left" } else { "right" };
                return Err(LokiError::bad(format!(
                    "found duplicate series on the {side} hand-side;many-to-many matching not \
                     allowed: matching labels must be unique on one side"
                )));
            }
        }
        matched.clear();
        for (i, s) in many.iter().enumerate() {
            let Some(mv) = s.points[step] else { continue };
            let Some(&j) = one_at.get(&many_sig[i]) else {
                continue;
            };
            let ov = one[j].points[step].expect("present at this step");
            let labels = result_labels(&s.labels, &one[j].labels, m);
            let seen = matched.entry(&many_sig[i]).or_default();
            if m.card == Card::OneToOne && !seen.is_empty() {
                return Err(LokiError::bad(
                    "multiple matches for labels: many-to-one matching must be explicit \
                     (group_left/group_right)",
                ));
            }
            let (lv, rv) = if swap { (ov, mv) } else { (mv, ov) };
            let r = b.op.apply(lv, rv);
            let value = if b.op.is_comparison() && !b.return_bool {
                if r != 1.0 {
                    continue;
                }
                lv
            } else {
                r
            };
            let next = out.len();
            let k = *by_labels.entry(labels.clone()).or_insert(next);
            if k == next {
                if out.len() >= max_series {
                    return Err(super::too_many_series(max_series));
                }
                out.push(Series {
                    labels,
                    points: vec![None; n],
                });
            }
            if m.card != Card::OneToOne && seen.contains(&k) {
                return Err(LokiError::bad(
                    "multiple matches for labels: grouping labels must ensure unique matches",
                ));
            }
            seen.push(k);
            out[k].points[step] = Some(value);
        }
    }
    out.retain(|s| s.points.iter().any(Option::is_some));
    out.sort_by(|x, y| x.labels.cmp(&y.labels));
    Ok(out)
}

fn set_op(
    op: BinOp,
    lhs: Vec<Series>,
    rhs: Vec<Series>,
    lsig: &[Labels],
    rsig: &[Labels],
    n: usize,
) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    let mut lkeep = lhs.clone();
    let mut rkeep = rhs.clone();
    for p in lkeep.iter_mut().chain(rkeep.iter_mut()) {
        p.points.iter_mut().for_each(|x| *x = None);
    }
    for step in 0..n {
        let lpresent: Vec<&Labels> = (0..lhs.len())
            .filter(|&i| lhs[i].points[step].is_some())
            .map(|i| &lsig[i])
            .collect();
        let rpresent: Vec<&Labels> = (0..rhs.len())
            .filter(|&i| rhs[i].points[step].is_some())
            .map(|i| &rsig[i])
            .collect();
        for (i, s) in lhs.iter().enumerate() {
            let Some(v) = s.points[step] else { continue };
            let in_r = rpresent.contains(&&lsig[i]);
            let keep = match op {
                BinOp::And => in_r,
                BinOp::Unless => !in_r,
                _ => true,
            };
            if keep {
                lkeep[i].points[step] = Some(v);
            }
        }
        if op == BinOp::Or {
            for (i, s) in rhs.iter().enumerate() {
                let Some(v) = s.points[step] else { continue };
                if !lpresent.contains(&&rsig[i]) {
                    rkeep[i].points[step] = Some(v);
                }
            }
        }
    }
    out.extend(lkeep);
    out.extend(rkeep);
    out.retain(|s| s.points.iter().any(Option::is_some));
    out.sort_by(|x, y| x.labels.cmp(&y.labels));
    out
}

/// `label_replace`: where the whole `src` value matches, `dst` becomes
/// the expanded replacement (removed when that is empty); elsewhere the
/// series is unchanged.
pub fn label_replace(l: &LabelReplaceExpr, input: Vec<Series>) -> Result<Vec<Series>, LokiError> {
    let re = regex::Regex::new(&format!("^(?:{})$", l.regex))
        .map_err(|e| LokiError::bad(format!("invalid regex in label_replace: {e}")))?;
    Ok(input
        .into_iter()
        .map(|mut s| {
            let src = s
                .labels
                .iter()
                .find(|(k, _)| *k == l.src)
                .map_or("", |(_, v)| v.as_str())
                .to_string();
            if let Some(caps) = re.captures(&src) {
                let mut value = String::new();
                caps.expand(&l.replacement, &mut value);
                s.labels.retain(|(k, _)| *k != l.dst);
                if !value.is_empty() {
                    s.labels.push((l.dst.clone(), value));
                    s.labels.sort();
                }
            }
            s
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::loki::logql::ast::Expr;

    fn series(labels: &[(&str, &str)], v: f64) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: vec![Some(v)],
        }
    }

    fn bin(op: BinOp, return_bool: bool, matching: VectorMatching) -> BinaryExpr {
        BinaryExpr {
            op,
            return_bool,
            matching,
            lhs: Expr::Number(0.0),
            rhs: Expr::Number(0.0),
        }
    }

    fn vecs(v: Value) -> Vec<(Labels, f64)> {
        match v {
            Value::Vector(v) => v
                .into_iter()
                .map(|s| (s.labels, s.points[0].unwrap()))
                .collect(),
            Value::Scalar(_) => panic!("scalar"),
        }
    }

    // Loki docs "Comparison operators" and "Many-to-one and one-to-many".
    #[test]
    fn comparisons_filter_or_give_bool() {
        let v = vec![series(&[("a", "1")], 5.0), series(&[("a", "2")], 20.0)];
        let gt = bin(BinOp::Gt, false, VectorMatching::default());
        let r = vecs(apply(&gt, Value::Vector(v.clone()), Value::Scalar(10.0), 1, 100).unwrap());
        assert_eq!(r, vec![(vec![("a".to_string(), "2".to_string())], 20.0)]);
        let gtb = bin(BinOp::Gt, true, VectorMatching::default());
        let r = vecs(apply(&gtb, Value::Vector(v.clone()), Value::Scalar(10.0), 1, 100).unwrap());
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), vec![0.0, 1.0]);
        // Scalar on the left: 10 > v keeps v's value.
        let r = vecs(apply(&gt, Value::Scalar(10.0), Value::Vector(v), 1, 100).unwrap());
        assert_eq!(r[0].1, 5.0);
        let div = bin(BinOp::Div, false, VectorMatching::default());
        assert!(vecs(
            apply(
                &div,
                Value::Vector(vec![series(&[], 1.0)]),
                Value::Scalar(0.0),
                1,
                100
            )
            .unwrap()
        )[0]
        .1
        .is_nan());
    }

    #[test]
    fn vector_matching() {
        let l = vec![
            series(&[("app", "foo"), ("status", "200")], 8.0),
            series(&[("app", "foo"), ("status", "500")], 2.0),
            series(&[("app", "bar"), ("status", "200")], 1.0),
        ];
        let r = vec![
            series(&[("app", "foo")], 10.0),
            series(&[("app", "baz")], 3.0),
        ];
        let on = VectorMatching {
            on: true,
            labels: vec!["app".into()],
            card: Card::ManyToOne,
            include: vec![],
        };
        let div = bin(BinOp::Div, false, on.clone());
        let got = vecs(
            apply(
                &div,
                Value::Vector(l.clone()),
                Value::Vector(r.clone()),
                1,
                100,
            )
            .unwrap(),
        );
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, 0.8);
        assert_eq!(got[1].1, 0.2);
        // One-to-one with two matches on the left is Loki's error.
        let one = bin(
            BinOp::Div,
            false,
            VectorMatching {
                card: Card::OneToOne,
                ..on.clone()
            },
        );
        let e = apply(
            &one,
            Value::Vector(l.clone()),
            Value::Vector(r.clone()),
            1,
            100,
        )
        .unwrap_err();
        assert!(
            e.msg.contains("many-to-one matching must be explicit"),
            "{}",
            e.msg
        );
        // group_right: the right side is the many side.
        let right = bin(
            BinOp::Mul,
            false,
            VectorMatching {
                card: Card::OneToMany,
                include: vec!["x".into()],
                ..on.clone()
            },
        );
        let ones = vec![series(&[("app", "foo"), ("x", "1")], 2.0)];
        let got = vecs(
            apply(
                &right,
                Value::Vector(ones),
                Value::Vector(l.clone()),
                1,
                100,
            )
            .unwrap(),
        );
        assert_eq!(got.len(), 2);
        assert!(got[0].0.contains(&("x".to_string(), "1".to_string())));
        // Set operations.
        let and = bin(BinOp::And, false, on.clone());
        assert_eq!(
            vecs(
                apply(
                    &and,
                    Value::Vector(l.clone()),
                    Value::Vector(r.clone()),
                    1,
                    100
                )
                .unwrap()
            )
            .len(),
            2
        );
        let unless = bin(BinOp::Unless, false, on.clone());
        assert_eq!(
            vecs(
                apply(
                    &unless,
                    Value::Vector(l.clone()),
                    Value::Vector(r.clone()),
                    1,
                    100
                )
                .unwrap()
            )
            .len(),
            1
        );
        let or = bin(BinOp::Or, false, on);
        assert_eq!(
            vecs(apply(&or, Value::Vector(l), Value::Vector(r), 1, 100).unwrap()).len(),
            4
        );
    }

    // Loki docs, "label_replace()".
    #[test]
    fn label_replace_expands() {
        let l = LabelReplaceExpr {
            expr: Expr::Number(0.0),
            dst: "foo".into(),
            replacement: "$1".into(),
            src: "service".into(),
            regex: "(.*):.*".into(),
        };
        let out = label_replace(
            &l,
            vec![
                series(&[("service", "a:c")], 1.0),
                series(&[("x", "y")], 1.0),
            ],
        )
        .unwrap();
        assert_eq!(
            out[0].labels,
            vec![
                ("foo".to_string(), "a".to_string()),
                ("service".into(), "a:c".into())
            ]
        );
        assert_eq!(
            out[1].labels,
            vec![("x".to_string(), "y".to_string())],
            "no match: unchanged"
        );
    }
}
