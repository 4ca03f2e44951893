//! The functions of unwrapped ranges, per step window, with Loki's
//! arithmetic (`pkg/logql/range_vector.go`): sums and means in time order
//! (Loki's incremental mean, its Inf guards), Welford's variance,
//! quantiles by linear interpolation between the two nearest ranks,
//! `rate_counter` by Prometheus's extrapolated rate with counter resets.
//!
//! Each step's window `(t - range, t]` is a run `[lo, hi)` of the series'
//! time-sorted samples; both ends only move forward, so finding the runs
//! is one pass. The work per function:
//! - `first`/`last`: O(1) per step; `min`/`max`: monotonic deques, O(n);
//! - `quantile`: a Fenwick tree over the samples' value ranks, O(log n)
//!   per sample entering or leaving and per step;
//! - sums, means and variances: summed window by window in time order, as
//!   Loki does, so the results match to the last bit; when that would
//!   cost more than [`DIRECT_BUDGET`] additions (long overlapping ranges
//!   over many samples), from running sums instead, which may differ from
//!   Loki's in the last digits.

use std::collections::VecDeque;

use super::Steps;
use crate::serve::loki::logql::ast::RangeFn;

/// One unwrapped value of a series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub ts: u64,
    pub seq: u64,
    pub v: f64,
}

/// Window additions a series may cost before sums switch to running sums.
pub const DIRECT_BUDGET: usize = 20_000_000;

/// The `[lo, hi)` run of each step's window.
fn runs(samples: &[Sample], steps: &Steps, range: u64) -> Vec<(usize, usize)> {
    let (mut lo, mut hi) = (0, 0);
    (0..steps.n)
        .map(|i| {
            let t = steps.at(i);
            let open = t.saturating_sub(range);
            while lo < samples.len() && samples[lo].ts <= open {
                lo += 1;
            }
            hi = hi.max(lo);
            while hi < samples.len() && samples[hi].ts <= t {
                hi += 1;
            }
            (lo, hi)
        })
        .collect()
}

/// The value of `func` at each step over time-sorted `samples`.
pub fn points(
    func: RangeFn,
    param: Option<f64>,
    samples: &[Sample],
    steps: &Steps,
    range: u64,
) -> Vec<Option<f64>> {
    let runs = runs(samples, steps, range);
    let range_secs = range as f64 / 1e9;
    let work: usize = runs.iter().map(|(lo, hi)| hi - lo).sum();
    let direct = work <= DIRECT_BUDGET;
    let values: Vec<f64> = samples.iter().map(|s| s.v).collect();
    match func {
        RangeFn::FirstOverTime => map_runs(&runs, |lo, _| values[lo]),
        RangeFn::LastOverTime => map_runs(&runs, |_, hi| values[hi - 1]),
        RangeFn::MinOverTime | RangeFn::MaxOverTime => {
            let max = func == RangeFn::MaxOverTime;
            if values.iter().any(|v| v.is_nan()) {
                return map_runs(&runs, |lo, hi| min_max(&values[lo..hi], max));
            }
            extreme(&values, &runs, max)
        }
        RangeFn::QuantileOverTime => quantiles(&values, &runs, param.unwrap_or(0.5)),
        RangeFn::RateCounter => runs
            .iter()
            .enumerate()
            .map(|(i, &(lo, hi))| {
                (hi > lo).then(|| extrapolated_rate(&samples[lo..hi], steps.at(i), range))
            })
            .collect(),
        RangeFn::SumOverTime | RangeFn::Rate => {
            let per = if func == RangeFn::Rate {
                range_secs
            } else {
                1.0
            };
            if direct {
                map_runs(&runs, |lo, hi| values[lo..hi].iter().sum::<f64>() / per)
            } else {
                let p = prefix(&values, |v| v);
                map_runs(&runs, |lo, hi| (p[hi] - p[lo]) / per)
            }
        }
        RangeFn::AvgOverTime => {
            if direct {
                map_runs(&runs, |lo, hi| mean(&values[lo..hi]))
            } else {
                let p = prefix(&values, |v| v);
                map_runs(&runs, |lo, hi| (p[hi] - p[lo]) / (hi - lo) as f64)
            }
        }
        RangeFn::StdvarOverTime | RangeFn::StddevOverTime => {
            let dev = func == RangeFn::StddevOverTime;
            let finish = |var: f64| if dev { var.sqrt() } else { var };
            if direct {
                map_runs(&runs, |lo, hi| finish(welford(&values[lo..hi])))
            } else {
                let p1 = prefix(&values, |v| v);
                let p2 = prefix(&values, |v| v * v);
                map_runs(&runs, |lo, hi| {
                    let n = (hi - lo) as f64;
                    let m = (p1[hi] - p1[lo]) / n;
                    finish(((p2[hi] - p2[lo]) / n - m * m).max(0.0))
                })
            }
        }
        // Counting functions are not computed from samples; absent only
        // needs to know a window is not empty.
        RangeFn::AbsentOverTime | RangeFn::CountOverTime => {
            map_runs(&runs, |lo, hi| (hi - lo) as f64)
        }
        RangeFn::BytesOverTime | RangeFn::BytesRate => map_runs(&runs, |_, _| f64::NAN),
    }
}

fn map_runs(runs: &[(usize, usize)], mut f: impl FnMut(usize, usize) -> f64) -> Vec<Option<f64>> {
    runs.iter()
        .map(|&(lo, hi)| (hi > lo).then(|| f(lo, hi)))
        .collect()
}

fn prefix(values: &[f64], f: impl Fn(f64) -> f64) -> Vec<f64> {
    // Neumaier-compensated running sums.
    let mut out = Vec::with_capacity(values.len() + 1);
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    out.push(0.0);
    for &v in values {
        let x = f(v);
        let t = sum + x;
        if sum.abs() >= x.abs() {
            c += (sum - t) + x;
        } else {
            c += (x - t) + sum;
        }
        sum = t;
        out.push(sum + c);
    }
    out
}

/// Loki's `avgOverTime`: an incremental mean that keeps an infinite mean
/// unless a NaN or an opposite infinity arrives.
fn mean(values: &[f64]) -> f64 {
    let (mut mean, mut count) = (0.0f64, 0.0f64);
    for &v in values {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        mean += v / count - mean / count;
    }
    mean
}

/// Welford's population variance, as Loki computes it.
fn welford(values: &[f64]) -> f64 {
    let (mut aux, mut count, mut mean) = (0.0f64, 0.0f64, 0.0f64);
    for &v in values {
        count += 1.0;
        let delta = v - mean;
        mean += delta / count;
        aux += delta * (v - mean);
    }
    aux / count
}

fn min_max(values: &[f64], max: bool) -> f64 {
    let mut m = values[0];
    for &v in values {
        if (if max { v > m } else { v < m }) || m.is_nan() {
            m = v;
        }
    }
    m
}

/// Sliding-window minimum or maximum with a monotonic deque (no NaN).
fn extreme(values: &[f64], runs: &[(usize, usize)], max: bool) -> Vec<Option<f64>> {
    let better = |a: f64, b: f64| if max { a >= b } else { a <= b };
    let mut dq: VecDeque<usize> = VecDeque::new();
    let mut next = 0;
    runs.iter()
        .map(|&(lo, hi)| {
            while next < hi {
                while dq.back().is_some_and(|&j| better(values[next], values[j])) {
                    dq.pop_back();
                }
                dq.push_back(next);
                next += 1;
            }
            while dq.front().is_some_and(|&j| j < lo) {
                dq.pop_front();
            }
            (hi > lo).then(|| values[*dq.front().expect("a non-empty window")])
        })
        .collect()
}

/// Loki's `Quantile`: rank `q * (n - 1)` interpolated between its floor
/// and the next rank; `-Inf` below 0, `+Inf` above 1.
fn quantiles(values: &[f64], runs: &[(usize, usize)], q: f64) -> Vec<Option<f64>> {
    // Rank the samples by value (ties by position) for the Fenwick tree.
    let mut by_value: Vec<usize> = (0..values.len()).collect();
    // Ties are broken by position: a total order, so the unstable sort
    // gives the one answer the stable sort would, sooner.
    by_value.sort_unstable_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    let mut rank_of = vec![0usize; values.len()];
    for (r, &i) in by_value.iter().enumerate() {
        rank_of[i] = r;
    }
    let mut tree = Fenwick::new(values.len());
    let (mut in_lo, mut in_hi) = (0, 0);
    runs.iter()
        .map(|&(lo, hi)| {
            while in_hi < hi {
                tree.add(rank_of[in_hi], 1);
                in_hi += 1;
            }
            while in_lo < lo {
                tree.add(rank_of[in_lo], -1);
                in_lo += 1;
            }
            let n = hi.saturating_sub(lo);
            if n == 0 {
                return None;
            }
            if q < 0.0 {
                return Some(f64::NEG_INFINITY);
            }
            if q > 1.0 {
                return Some(f64::INFINITY);
            }
            let rank = q * (n - 1) as f64;
            let lower = rank.floor().max(0.0) as usize;
            let upper = (lower + 1).min(n - 1);
            let weight = rank - rank.floor();
            let a = values[by_value[tree.kth(lower)]];
            let b = values[by_value[tree.kth(upper)]];
            Some(a * (1.0 - weight) + b * weight)
        })
        .collect()
}

/// Counts per value rank, with prefix sums and k-th element in O(log n).
struct Fenwick {
    tree: Vec<i64>,
}

impl Fenwick {
    fn new(n: usize) -> Fenwick {
        Fenwick {
            tree: vec![0; n + 1],
        }
    }

    fn add(&mut self, i: usize, d: i64) {
        let mut i = i + 1;
        while i < self.tree.len() {
            self.tree[i] += d;
            i += i & i.wrapping_neg();
        }
    }

    /// The rank holding the `k`-th (0-based) counted element.
    fn kth(&self, k: usize) -> usize {
        let mut pos = 0;
        let mut rem = k as i64 + 1;
        let mut step = (self.tree.len()).next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && self.tree[next] < rem {
                pos = next;
                rem -= self.tree[next];
            }
            step >>= 1;
        }
        pos
    }
}

/// Prometheus's extrapolated rate of a counter, as Loki's `rate_counter`.
fn extrapolated_rate(s: &[Sample], window_end: u64, range: u64) -> f64 {
    if s.len() < 2 {
        return 0.0;
    }
    let range_end = window_end as f64;
    let range_start = range_end - range as f64;
    let mut result = s[s.len() - 1].v - s[0].v;
    let mut last = 0.0;
    for x in s {
        if x.v < last {
            result += last;
        }
        last = x.v;
    }
    let first_t = s[0].ts as f64;
    let last_t = s[s.len() - 1].ts as f64;
    let mut to_start = (first_t - range_start) / 1e9;
    let mut to_end = (range_end - last_t) / 1e9;
    let sampled = (last_t - first_t) / 1e9;
    let avg = sampled / (s.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    let mut to_zero = to_start;
    if result > 0.0 && s[0].v >= 0.0 {
        to_zero = sampled * (s[0].v / result);
    }
    if to_zero < to_start {
        to_start = to_zero;
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let extrapolate = sampled + to_start + to_end;
    result *= extrapolate / sampled;
    result / (range as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(vs: &[(u64, f64)]) -> Vec<Sample> {
        vs.iter()
            .enumerate()
            .map(|(i, &(ts, v))| Sample {
                ts,
                seq: i as u64,
                v,
            })
            .collect()
    }

    fn at(func: RangeFn, param: Option<f64>, s: &[Sample], t: u64, range: u64) -> Option<f64> {
        points(
            func,
            param,
            s,
            &Steps {
                start: t,
                step: 1,
                n: 1,
            },
            range,
        )[0]
    }

    /// Every function against a plain per-window definition, over windows
    /// that slide across the samples.
    #[test]
    fn windows_match_the_definitions() {
        let vs: Vec<(u64, f64)> = (0..200u64)
            .map(|i| (i * 3 + (i % 4), ((i * 37) % 23) as f64 - 5.5))
            .collect();
        let s = samples(&vs);
        let steps = Steps {
            start: 20,
            step: 7,
            n: 80,
        };
        for range in [5u64, 30, 100] {
            for func in [
                RangeFn::SumOverTime,
                RangeFn::AvgOverTime,
                RangeFn::MinOverTime,
                RangeFn::MaxOverTime,
                RangeFn::FirstOverTime,
                RangeFn::LastOverTime,
                RangeFn::StdvarOverTime,
                RangeFn::QuantileOverTime,
            ] {
                let got = points(func, Some(0.9), &s, &steps, range);
                for (i, g) in got.iter().enumerate() {
                    let t = steps.at(i);
                    let w: Vec<f64> = vs
                        .iter()
                        .filter(|(ts, _)| *ts > t.saturating_sub(range) && *ts <= t)
                        .map(|x| x.1)
                        .collect();
                    let want = (!w.is_empty()).then(|| match func {
                        RangeFn::SumOverTime => w.iter().sum(),
                        RangeFn::AvgOverTime => mean(&w),
                        RangeFn::MinOverTime => w.iter().cloned().fold(f64::INFINITY, f64::min),
                        RangeFn::MaxOverTime => w.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                        RangeFn::FirstOverTime => w[0],
                        RangeFn::LastOverTime => w[w.len() - 1],
                        RangeFn::StdvarOverTime => welford(&w),
                        _ => {
                            let mut sorted = w.clone();
                            sorted.sort_by(f64::total_cmp);
                            let rank = 0.9 * (sorted.len() - 1) as f64;
                            let lo = rank.floor() as usize;
                            let hi = (lo + 1).min(sorted.len() - 1);
                            let wt = rank - rank.floor();
                            sorted[lo] * (1.0 - wt) + sorted[hi] * wt
                        }
                    });
                    assert_eq!(*g, want, "{func:?} range {range} step {t}");
                }
            }
        }
    }

    // pkg/logql/range_vector_test.go and the Prometheus definition.
    #[test]
    fn quantile_edges_and_counter_rates() {
        let s = samples(&[(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]);
        assert_eq!(
            at(RangeFn::QuantileOverTime, Some(0.5), &s, 4, 10),
            Some(2.5)
        );
        assert_eq!(
            at(RangeFn::QuantileOverTime, Some(-1.0), &s, 4, 10),
            Some(f64::NEG_INFINITY)
        );
        assert_eq!(
            at(RangeFn::QuantileOverTime, Some(2.0), &s, 4, 10),
            Some(f64::INFINITY)
        );
        assert_eq!(
            at(RangeFn::StddevOverTime, None, &s, 4, 10),
            Some(1.25f64.sqrt())
        );
        // A counter that resets: 0 1 2 0 1 over 4 s, 1 s apart.
        let s = samples(&[
            (1_000_000_000, 0.0),
            (2_000_000_000, 1.0),
            (3_000_000_000, 2.0),
            (4_000_000_000, 0.0),
            (5_000_000_000, 1.0),
        ]);
        let r = at(RangeFn::RateCounter, None, &s, 5_000_000_000, 5_000_000_000).unwrap();
        // An increase of 3 (1 - 0, plus 2 at the reset) over the 4 s
        // sampled; the start is not extrapolated past zero, the end is the
        // last sample: 3 / 5 s.
        assert!((r - 0.6).abs() < 1e-12, "{r}");
        let one = samples(&[(1, 5.0)]);
        assert_eq!(at(RangeFn::RateCounter, None, &one, 1, 10), Some(0.0));
    }

    #[test]
    fn running_sums_stay_close() {
        let v: Vec<f64> = (0..1000).map(|i| (i as f64).sin() * 1e3).collect();
        let p = prefix(&v, |x| x);
        let direct: f64 = v[100..900].iter().sum();
        assert!((p[900] - p[100] - direct).abs() < 1e-9);
    }
}
