//! Range aggregations: `count_over_time({...} | json [5m])`,
//! `quantile_over_time(0.99, {...} | unwrap latency [5m]) by (route)`.
//!
//! One pass over the seqs any step's window can hold, whatever the number
//! of steps (see [`super::scan`]). Each entry is placed by its own
//! timestamp, so entries need not come in time order:
//! - counting functions (`count_over_time`, `rate`, `bytes_over_time`,
//!   `bytes_rate`, `absent_over_time`) add the entry to the contiguous run
//!   of steps whose window `(t - range, t]` holds it, in O(1) with a
//!   difference array per series (prefix sums give per-step counts);
//! - unwrapped ranges keep each series' samples, sort them by time where
//!   they are not already, and compute each window with [`super::window`].
//!
//! Labels follow Loki's sample extractor: the grouping of the function
//! (`by`/`without`), or the one `sum` passes down, is applied per entry;
//! an unwrapped label leaves the series' labels; a line with a pipeline
//! error keeps every label, so that the error reaches the answer as
//! Loki's pipeline error. `offset d` moves every window `d` back.

use rustc_hash::FxHashMap;

use super::scan::{entry_ts, scan_filter, seq_range, KeyIndex, Streams};
use super::window::{self, Sample};
use super::{pipeline_error, too_many_series, Eval, LogPlan, Series, Steps};
use crate::entry::EntryRef;
use crate::serve::loki::logql::ast::{Conversion, Grouping, RangeExpr, RangeFn};
use crate::serve::loki::logql::pipeline::{
    canonical_key, key_labels, key_push, label_filter::CompiledLabelFilter, stage_label_names,
    Hints, LineLabels, Pipeline, SampleGrouping, Scratch,
};
use crate::serve::loki::logql::units;
use crate::serve::loki::LokiError;
use crate::timefmt::NANOS_PER_SEC;

pub const ERR_SAMPLE_EXTRACTION: &str = "SampleExtractionErr";

/// One scan thread's series.
struct Acc {
    streams: Streams,
    /// On the fast path: (origin, flags) to series.
    fast_keys: KeyIndex,
    /// Per stream: its series when the pipeline is empty (`u32::MAX`:
    /// not known yet).
    stream_series: Vec<u32>,
    scratch: Scratch,
    key: Vec<u8>,
    series: FxHashMap<Box<[u8]>, u32>,
    keys: Vec<Box<[u8]>>,
    /// Difference arrays (length `n + 1`) for counting functions.
    counts: Vec<Vec<i64>>,
    bytes: Vec<Vec<i64>>,
    /// Samples for unwrapped ranges, and whether each series' are sorted.
    samples: Vec<Vec<Sample>>,
    sorted: Vec<bool>,
    /// The last [`steps_for`] answer.
    window: (u64, u64, usize, usize),
    too_many: bool,
}

struct Plan<'a> {
    steps: Steps,
    /// `steps.last()`.
    last_step: u64,
    /// No pipeline and no unwrap: an entry's series is its stream's.
    fast: bool,
    range: u64,
    log: LogPlan,
    grouping: SampleGrouping,
    unwrap: Option<(&'a str, Conversion, Vec<CompiledLabelFilter>)>,
    with_bytes: bool,
    max_series: usize,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            streams: Streams::default(),
            fast_keys: KeyIndex::default(),
            stream_series: Vec::new(),
            scratch: Scratch::new(),
            key: Vec::new(),
            series: FxHashMap::default(),
            keys: Vec::new(),
            counts: Vec::new(),
            bytes: Vec::new(),
            samples: Vec::new(),
            sorted: Vec::new(),
            window: (1, 0, 1, 0),
            too_many: false,
        }
    }

    /// The series of the key in `self.key`.
    fn series_of_key(&mut self, p: &Plan<'_>) -> Option<usize> {
        if let Some(&i) = self.series.get(self.key.as_slice()) {
            return Some(i as usize);
        }
        if self.series.len() >= p.max_series {
            self.too_many = true;
            return None;
        }
        let i = self.keys.len();
        let k: Box<[u8]> = self.key.as_slice().into();
        self.series.insert(k.clone(), i as u32);
        self.keys.push(k);
        if p.unwrap.is_some() {
            self.samples.push(Vec::new());
            self.sorted.push(true);
        } else {
            self.counts.push(vec![0; p.steps.n + 1]);
            if p.with_bytes {
                self.bytes.push(vec![0; p.steps.n + 1]);
            }
        }
        Some(i)
    }

    /// One entry: the counting fast path inline (entries whose stream
    /// labels are their labels: one series per stream, found in the
    /// per-origin cache), everything else in [`visit_pipeline`].
    #[inline(always)]
    fn visit(&mut self, p: &Plan<'_>, e: &EntryRef<'_>) {
        let t = entry_ts(e);
        if t > p.last_step {
            return;
        }
        if t < self.window.0 || t >= self.window.1 {
            self.window = steps_for(&p.steps, p.range, t);
        }
        let (_, _, i0, i1) = self.window;
        if i0 > i1 {
            return;
        }
        if p.fast {
            let i = match self.fast_keys.get_cached(e) {
                Some(i) => i,
                None => match self.fast_series(p, e) {
                    Some(i) => i,
                    None => return,
                },
            } as usize;
            self.count(p, i, i0, i1, e.msg.len());
            return;
        }
        self.visit_pipeline(p, e, t, i0, i1);
    }

    /// The series of an entry on the fast path, first time its (origin,
    /// flags) is seen.
    #[cold]
    fn fast_series(&mut self, p: &Plan<'_>, e: &EntryRef<'_>) -> Option<u32> {
        let s = self.streams.index(e);
        if self.stream_series.len() <= s {
            self.stream_series.resize(s + 1, u32::MAX);
        }
        if self.stream_series[s] == u32::MAX {
            self.key.clear();
            let base = &self.streams.labels[s];
            let mut l = LineLabels::new(base, &mut self.scratch);
            let key = &mut self.key;
            p.grouping.for_each(&mut l, |k, v| key_push(key, k, v));
            self.stream_series[s] = self.series_of_key(p)? as u32;
        }
        let i = self.stream_series[s];
        self.fast_keys.get(e, || i);
        Some(i)
    }

    #[inline(never)]
    fn visit_pipeline(&mut self, p: &Plan<'_>, e: &EntryRef<'_>, t: u64, i0: usize, i1: usize) {
        let s = self.streams.index(e);
        let base = &self.streams.labels[s];
        let mut l = LineLabels::new(base, &mut self.scratch);
        if !p.log.pipeline.run(e.msg, t, &mut l) {
            return;
        }
        let mut value = 0.0;
        if let Some((label, conv, post)) = &p.unwrap {
            let Some(text) = l.get(label).filter(|v| !v.is_empty()) else {
                return;
            };
            let parsed = match conv {
                Conversion::Float => units::parse_float(text),
                Conversion::Duration => units::go_duration(text).map(|ns| ns as f64 / 1e9),
                Conversion::Bytes => units::parse_bytes(text).map(|b| b as f64),
            };
            match parsed {
                Ok(v) => value = v,
                Err(err) => l.set_error(ERR_SAMPLE_EXTRACTION, Some(&err.to_string())),
            }
            if !post.iter().all(|f| f.run(&mut l)) {
                return;
            }
        }
        let line_len = Pipeline::final_line(e.msg, &l).len();
        self.key.clear();
        let key = &mut self.key;
        p.grouping.for_each(&mut l, |k, v| key_push(key, k, v));
        let Some(i) = self.series_of_key(p) else {
            return;
        };
        if p.unwrap.is_some() {
            let samples = &mut self.samples[i];
            if samples
                .last()
                .is_some_and(|last| (last.ts, last.seq) > (t, e.seq))
            {
                self.sorted[i] = false;
            }
            samples.push(Sample {
                ts: t,
                seq: e.seq,
                v: value,
            });
        } else {
            self.count(p, i, i0, i1, line_len);
        }
    }

    #[inline]
    fn count(&mut self, p: &Plan<'_>, i: usize, i0: usize, i1: usize, len: usize) {
        let c = &mut self.counts[i];
        c[i0] += 1;
        c[i1 + 1] -= 1;
        if p.with_bytes {
            let b = &mut self.bytes[i];
            b[i0] += len as i64;
            b[i1 + 1] -= len as i64;
        }
    }
}

/// Evaluates a range aggregation; `inject` is the grouping of a `sum`
/// around it (Loki passes it down when the function has none).
pub fn evaluate(
    ev: &Eval<'_>,
    r: &RangeExpr,
    inject: Option<&Grouping>,
) -> Result<Vec<Series>, LokiError> {
    // Loki's sample extractor: grouping, then the unwrapped label.
    let grouping = r.grouping.as_ref().or(inject);
    let (mut groups, mut without, mut no_labels) = match grouping {
        Some(g) => {
            let mut labels = g.labels.clone();
            labels.sort();
            labels.dedup();
            (Some(labels), g.without, !g.without && g.labels.is_empty())
        }
        None => (None, false, false),
    };
    if r.func == RangeFn::AbsentOverTime {
        no_labels = true;
    }
    let mut stage_labels = stage_label_names(&r.log.stages);
    let mut post = Vec::new();
    if let Some(u) = &r.unwrap {
        let g = groups.get_or_insert_with(Vec::new);
        if g.is_empty() || without {
            without = true;
            g.push(u.label.clone());
            g.sort();
        }
        for f in &u.post_filters {
            crate::serve::loki::logql::pipeline::label_filter::names(f, &mut stage_labels);
            post.push(CompiledLabelFilter::compile(f).map_err(LokiError::bad)?);
        }
    }
    let hints = Hints::for_metric(
        &stage_labels,
        groups.as_deref().unwrap_or(&[]),
        without,
        no_labels,
        r.unwrap.as_ref().map(|u| u.label.as_str()),
    );
    // The windows of the shifted steps: (t - offset - range, t - offset].
    let steps = Steps {
        start: ev.steps.start.saturating_sub(r.offset_ns),
        ..ev.steps
    };
    let log = LogPlan::new(&r.log, hints)?;
    let plan = Plan {
        steps,
        last_step: steps.last(),
        fast: log.pipeline.is_empty() && r.unwrap.is_none(),
        range: r.range_ns,
        log,
        grouping: SampleGrouping {
            groups,
            without,
            no_labels,
        },
        unwrap: r
            .unwrap
            .as_ref()
            .map(|u| (u.label.as_str(), u.conversion, post)),
        with_bytes: matches!(r.func, RangeFn::BytesOverTime | RangeFn::BytesRate),
        max_series: ev.limits.max_series,
    };
    // The first entry that counts is just after the first window opens.
    let lo = steps.start.saturating_sub(r.range_ns).saturating_add(1);
    let seqs = seq_range(&ev.snap, lo, steps.last().saturating_add(1));
    let parts = scan_filter(
        ev.snap,
        seqs.start,
        seqs.end,
        &plan.log.filter,
        Acc::new,
        |acc: &mut Acc, e: &EntryRef<'_>| acc.visit(&plan, e),
    );
    if parts.iter().any(|p| p.too_many) {
        return Err(too_many_series(ev.limits.max_series));
    }
    // Merge the parts (in seq order) by key.
    let mut index: FxHashMap<Box<[u8]>, usize> = FxHashMap::default();
    let mut keys: Vec<Box<[u8]>> = Vec::new();
    let mut counts: Vec<Vec<i64>> = Vec::new();
    let mut bytes: Vec<Vec<i64>> = Vec::new();
    let mut samples: Vec<Vec<Sample>> = Vec::new();
    let mut sorted: Vec<bool> = Vec::new();
    for part in parts {
        let Acc {
            keys: pkeys,
            counts: pcounts,
            bytes: pbytes,
            samples: psamples,
            sorted: psorted,
            ..
        } = part;
        let mut pcounts = pcounts.into_iter();
        let mut pbytes = pbytes.into_iter();
        let mut psamples = psamples.into_iter();
        let mut psorted = psorted.into_iter();
        for k in pkeys {
            // Keys were built in the order labels came; series are by
            // label set.
            let k = canonical_key(&k);
            let (c, b, s, so) = (
                pcounts.next(),
                pbytes.next(),
                psamples.next(),
                psorted.next(),
            );
            match index.get(&k) {
                Some(&i) => {
                    if let (Some(c), Some(m)) = (c, counts.get_mut(i)) {
                        m.iter_mut().zip(&c).for_each(|(a, b)| *a += b);
                    }
                    if let (Some(b), Some(m)) = (b, bytes.get_mut(i)) {
                        m.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    }
                    if let Some(s) = s {
                        let m = &mut samples[i];
                        if m.last()
                            .zip(s.first())
                            .is_some_and(|(a, b)| (a.ts, a.seq) > (b.ts, b.seq))
                            || so == Some(false)
                        {
                            sorted[i] = false;
                        }
                        m.extend(s);
                    }
                }
                None => {
                    index.insert(k.clone(), keys.len());
                    keys.push(k);
                    counts.extend(c);
                    bytes.extend(b);
                    samples.extend(s);
                    sorted.extend(so);
                }
            }
        }
    }
    if keys.len() > ev.limits.max_series {
        return Err(too_many_series(ev.limits.max_series));
    }
    let range_secs = r.range_ns as f64 / NANOS_PER_SEC as f64;
    let n = steps.n;
    let mut out: Vec<Series> = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        let points: Vec<Option<f64>> = if plan.unwrap.is_some() {
            let s = &mut samples[i];
            if !sorted[i] {
                s.sort_unstable_by_key(|x| (x.ts, x.seq));
            }
            window::points(r.func, r.param, s, &steps, r.range_ns)
        } else {
            let mut points = Vec::with_capacity(n);
            let (mut count, mut total) = (0i64, 0i64);
            for j in 0..n {
                count += counts[i][j];
                if plan.with_bytes {
                    total += bytes[i][j];
                }
                points.push((count > 0).then(|| match r.func {
                    RangeFn::Rate => count as f64 / range_secs,
                    RangeFn::BytesOverTime => total as f64,
                    RangeFn::BytesRate => total as f64 / range_secs,
                    _ => count as f64,
                }));
            }
            points
        };
        let labels = key_labels(k);
        if points.iter().any(Option::is_some) && labels.iter().any(|(k, _)| k == "__error__") {
            return Err(pipeline_error(&labels));
        }
        out.push(Series { labels, points });
    }
    if r.func == RangeFn::AbsentOverTime {
        return Ok(absent(r, out, n));
    }
    out.retain(|s| s.points.iter().any(Option::is_some));
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(out)
}

/// `absent_over_time`: 1 at the steps where no series has a point, with
/// the labels of the selector's equality matchers (a name matched twice,
/// or not by `=`, is left out), as Loki's `absentLabels`.
fn absent(r: &RangeExpr, series: Vec<Series>, n: usize) -> Vec<Series> {
    let points: Vec<Option<f64>> = (0..n)
        .map(|j| (!series.iter().any(|s| s.points[j].is_some())).then_some(1.0))
        .collect();
    if points.iter().all(Option::is_none) {
        return Vec::new();
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut excluded: Vec<&str> = Vec::new();
    for m in &r.log.matchers {
        if m.op == crate::filter::MatchOp::Eq && !labels.iter().any(|(k, _)| *k == m.name) {
            labels.push((m.name.clone(), m.value.clone()));
        } else {
            excluded.push(&m.name);
        }
    }
    labels.retain(|(k, _)| !excluded.contains(&k.as_str()));
    labels.sort();
    vec![Series { labels, points }]
}

/// The steps whose window `(step - range, step]` holds an entry at time
/// `t`, as `(from, until, first, last)`: steps `first..=last` (none when
/// `first > last`), an answer that holds for every time in `from..until`.
pub fn steps_for(steps: &Steps, range: u64, t: u64) -> (u64, u64, usize, usize) {
    // The first step at or after t.
    let (mut from, mut until, first) = if t <= steps.start {
        (0, steps.start + 1, 0)
    } else {
        let i = (t - steps.start).div_ceil(steps.step);
        (
            steps.start + (i - 1) * steps.step + 1,
            (steps.start + i * steps.step).saturating_add(1),
            i as usize,
        )
    };
    // The last step before t + range.
    let reach = t.saturating_add(range - 1);
    if reach < steps.start {
        until = until.min(steps.start - (range - 1));
        return (from, until, 1, 0);
    }
    let k = (reach - steps.start) / steps.step;
    let last = if k >= steps.n as u64 - 1 {
        from = from.max(steps.last().saturating_sub(range - 1));
        steps.n - 1
    } else {
        from = from.max(steps.at(k as usize).saturating_sub(range - 1));
        until = until.min(steps.at(k as usize + 1).saturating_sub(range - 1));
        k as usize
    };
    (from, until, first, last)
}
