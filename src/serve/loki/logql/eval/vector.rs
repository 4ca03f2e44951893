//! Vector aggregations, step by step (`pkg/logql/evaluator.go`,
//! `VectorAggEvaluator`): `sum`, `count`, `min`, `max`, `avg` (Loki's
//! incremental mean), `stddev`/`stdvar` (Welford), `topk`/`bottomk`, and
//! `sort`/`sort_desc`.
//!
//! `by (...)` keeps the listed labels, `without (...)` drops them; no
//! grouping is `by ()`. `topk`/`bottomk` keep, per step and group, the `k`
//! series with the highest (lowest) values, with their own labels. Ties
//! at the cut go to the series whose labels sort first (Loki's heap keeps
//! an arbitrary one; a deterministic choice keeps refreshes stable); NaN
//! counts as the lowest value. For an instant query `topk` and
//! `sort_desc` list the series highest first, `bottomk` and `sort` lowest
//! first, as Loki does; range results stay in label order.

use std::collections::BTreeMap;

use super::{Labels, Series, Steps};
use crate::serve::loki::logql::ast::{AggExpr, AggOp, Grouping};

fn group_key(labels: &Labels, grouping: &Option<Grouping>) -> Labels {
    match grouping {
        None => Vec::new(),
        Some(g) => labels
            .iter()
            .filter(|(k, _)| g.labels.iter().any(|l| l == k) != g.without)
            .cloned()
            .collect(),
    }
}

#[derive(Clone, Copy, Default)]
struct Acc {
    value: f64,
    mean: f64,
    count: u32,
}

/// A vector aggregation over every step.
pub fn aggregate(a: &AggExpr, input: Vec<Series>, steps: &Steps) -> Vec<Series> {
    let n = steps.n;
    match a.op {
        AggOp::Topk | AggOp::Bottomk | AggOp::Sort | AggOp::SortDesc => {
            return select(a, input, n);
        }
        _ => {}
    }
    let mut groups: BTreeMap<Labels, Vec<Acc>> = BTreeMap::new();
    for s in &input {
        let accs = groups
            .entry(group_key(&s.labels, &a.grouping))
            .or_insert_with(|| vec![Acc::default(); n]);
        for (acc, p) in accs.iter_mut().zip(&s.points) {
            let Some(v) = *p else { continue };
            if acc.count == 0 {
                *acc = Acc {
                    value: if matches!(a.op, AggOp::Stddev | AggOp::Stdvar) {
                        0.0
                    } else {
                        v
                    },
                    mean: v,
                    count: 1,
                };
                continue;
            }
            acc.count += 1;
            match a.op {
                AggOp::Sum => acc.value += v,
                AggOp::Avg => {
                    if acc.mean.is_infinite() {
                        if v.is_infinite() && (acc.mean > 0.0) == (v > 0.0) {
                            continue;
                        }
                        if !v.is_infinite() && !v.is_nan() {
                            continue;
                        }
                    }
                    acc.mean += (v - acc.mean) / acc.count as f64;
                }
                AggOp::Max if acc.value < v || acc.value.is_nan() => acc.value = v,
                AggOp::Min if acc.value > v || acc.value.is_nan() => acc.value = v,
                AggOp::Stddev | AggOp::Stdvar => {
                    let delta = v - acc.mean;
                    acc.mean += delta / acc.count as f64;
                    acc.value += delta * (v - acc.mean);
                }
                _ => {}
            }
        }
    }
    groups
        .into_iter()
        .map(|(labels, accs)| Series {
            labels,
            points: accs
                .iter()
                .map(|acc| {
                    (acc.count > 0).then(|| match a.op {
                        AggOp::Avg => acc.mean,
                        AggOp::Count => acc.count as f64,
                        AggOp::Stddev => (acc.value / acc.count as f64).sqrt(),
                        AggOp::Stdvar => acc.value / acc.count as f64,
                        _ => acc.value,
                    })
                })
                .collect(),
        })
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect()
}

/// `topk`, `bottomk`, `sort`, `sort_desc`: series keep their labels.
fn select(a: &AggExpr, mut input: Vec<Series>, n: usize) -> Vec<Series> {
    input.sort_by(|x, y| x.labels.cmp(&y.labels));
    let high_first = matches!(a.op, AggOp::Topk | AggOp::SortDesc);
    let k = match a.op {
        AggOp::Topk | AggOp::Bottomk => a.k.unwrap_or(1),
        _ => usize::MAX,
    };
    let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
    for (i, s) in input.iter().enumerate() {
        groups
            .entry(group_key(&s.labels, &a.grouping))
            .or_default()
            .push(i);
    }
    // keep[m * n + step]: series m keeps its point at `step`.
    let mut keep = vec![false; input.len() * n];
    let mut ranked: Vec<(f64, usize)> = Vec::new();
    let order = |x: &(f64, usize), y: &(f64, usize)| {
        // NaN is the lowest value; ties keep label order (stable sort).
        let c = match (x.0.is_nan(), y.0.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => x.0.partial_cmp(&y.0).expect("no NaN"),
        };
        if high_first {
            c.reverse()
        } else {
            c
        }
    };
    for members in groups.values() {
        for step in 0..n {
            ranked.clear();
            ranked.extend(
                members
                    .iter()
                    .filter_map(|&m| input[m].points[step].map(|v| (v, m))),
            );
            ranked.sort_by(order);
            for &(_, m) in ranked.iter().take(k) {
                keep[m * n + step] = true;
            }
        }
    }
    for (s, keep) in input.iter_mut().zip(keep.chunks(n.max(1))) {
        for (p, &kept) in s.points.iter_mut().zip(keep) {
            if !kept {
                *p = None;
            }
        }
    }
    input.retain(|s| s.points.iter().any(Option::is_some));
    if n == 1 {
        // An instant vector lists the selection in value order.
        let mut with_values: Vec<(f64, Series)> = input
            .into_iter()
            .map(|s| (s.points[0].unwrap_or(f64::NAN), s))
            .collect();
        with_values.sort_by(|x, y| order(&(x.0, 0), &(y.0, 0)));
        return with_values.into_iter().map(|(_, s)| s).collect();
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::loki::logql::ast::Expr;

    fn s(name: &str, points: &[Option<f64>]) -> Series {
        Series {
            labels: vec![("n".into(), name.into()), ("g".into(), "x".into())],
            points: points.to_vec(),
        }
    }

    fn agg(op: AggOp, k: Option<usize>, grouping: Option<Grouping>) -> AggExpr {
        AggExpr {
            op,
            grouping,
            k,
            expr: Expr::Number(0.0),
        }
    }

    #[test]
    fn reductions() {
        let input = vec![s("a", &[Some(1.0), None]), s("b", &[Some(3.0), Some(4.0)])];
        let steps = Steps {
            start: 0,
            step: 1,
            n: 2,
        };
        let one = |op| {
            aggregate(&agg(op, None, None), input.clone(), &steps)[0]
                .points
                .clone()
        };
        assert_eq!(one(AggOp::Sum), vec![Some(4.0), Some(4.0)]);
        assert_eq!(one(AggOp::Count), vec![Some(2.0), Some(1.0)]);
        assert_eq!(one(AggOp::Avg), vec![Some(2.0), Some(4.0)]);
        assert_eq!(one(AggOp::Min), vec![Some(1.0), Some(4.0)]);
        assert_eq!(one(AggOp::Stdvar), vec![Some(1.0), Some(0.0)]);
        assert_eq!(one(AggOp::Stddev), vec![Some(1.0), Some(0.0)]);
        let by = Some(Grouping {
            without: false,
            labels: vec!["n".into()],
        });
        assert_eq!(
            aggregate(&agg(AggOp::Sum, None, by), input, &steps).len(),
            2
        );
    }

    #[test]
    fn topk_ties_and_instant_order() {
        let steps = Steps {
            start: 0,
            step: 1,
            n: 1,
        };
        let input = vec![
            s("c", &[Some(2.0)]),
            s("a", &[Some(2.0)]),
            s("b", &[Some(5.0)]),
            s("d", &[Some(f64::NAN)]),
        ];
        let top = aggregate(&agg(AggOp::Topk, Some(2), None), input.clone(), &steps);
        let names: Vec<&str> = top.iter().map(|s| s.labels[0].1.as_str()).collect();
        assert_eq!(names, vec!["b", "a"], "a tie goes to the first labels");
        let bottom = aggregate(&agg(AggOp::Bottomk, Some(1), None), input.clone(), &steps);
        assert_eq!(bottom[0].labels[0].1, "d", "NaN is the lowest");
        let sorted = aggregate(&agg(AggOp::Sort, None, None), input, &steps);
        let names: Vec<&str> = sorted.iter().map(|s| s.labels[0].1.as_str()).collect();
        assert_eq!(names, vec!["d", "a", "c", "b"]);
    }
}
