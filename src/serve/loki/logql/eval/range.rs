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
//! Per line, the cost is the pipeline and finding the line's series. For
//! `| json` alone with every field kept (no grouping, or `without`), a
//! plain line (flat, clean keys, no escapes: [`json::plain_members`]) is
//! read in place, its series key built from the line without the label
//! set the general pipeline fills; any other line takes the general path,
//! which decides suffixes and errors. Samples are appended in scan order
//! and given to their series in the merge.
//!
//! Labels follow Loki's sample extractor: the grouping of the function
//! (`by`/`without`), or the one `sum` passes down, is applied per entry;
//! an unwrapped label leaves the series' labels; a line with a pipeline
//! error keeps every label, so that the error reaches the answer as
//! Loki's pipeline error. `offset d` moves every window `d` back.

use std::ops::Range;

use rustc_hash::FxHashMap;

use super::scan::{entry_ts, scan_filter, seq_range, KeyIndex, Streams};
use super::window::{self, Sample};
use super::{pipeline_error, too_many_series, Eval, LogPlan, Series, Steps};
use crate::entry::EntryRef;
use crate::serve::loki::logql::ast::{Conversion, Grouping, RangeExpr, RangeFn};
use crate::serve::loki::logql::pipeline::{
    canonical_key, json, key_labels, key_push, key_push_bytes, label_filter::CompiledLabelFilter,
    stage_label_names, Hints, LineLabels, Pipeline, SampleGrouping, Scratch,
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
    /// [`json::plain_members`]'s spans, reused.
    members: Vec<(Range<u32>, Range<u32>)>,
    key: Vec<u8>,
    series: FxHashMap<Box<[u8]>, u32>,
    keys: Vec<Box<[u8]>>,
    /// Difference arrays (length `n + 1`) for counting functions.
    counts: Vec<Vec<i64>>,
    bytes: Vec<Vec<i64>>,
    /// Samples for unwrapped ranges in scan order, and the series of each:
    /// appended in one place rather than to a vector per series, whose
    /// tails, one per series, cost a cache (and TLB) miss a line; they go
    /// to their series once, in the merge.
    samples: Vec<Sample>,
    sample_series: Vec<u32>,
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
    /// `| json` alone, every field extracted, no filter after `unwrap`:
    /// plain lines skip the general pipeline.
    json_all: bool,
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
            members: Vec::new(),
            key: Vec::new(),
            series: FxHashMap::default(),
            keys: Vec::new(),
            counts: Vec::new(),
            bytes: Vec::new(),
            samples: Vec::new(),
            sample_series: Vec::new(),
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
        if p.unwrap.is_none() {
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
        if p.json_all {
            let mut members = std::mem::take(&mut self.members);
            let done = self.visit_plain_json(p, e, t, i0, i1, s, &mut members);
            self.members = members;
            if done {
                return;
            }
        }
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
            match convert(*conv, text) {
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
        self.record(p, e, t, i0, i1, value, line_len);
    }

    /// What [`visit_pipeline`](Self::visit_pipeline) does for a line of a
    /// `| json` pipeline (every field extracted) that
    /// [`json::plain_members`] takes, without [`LineLabels`]: the labels
    /// are the stream's and the members, read in place. `false` when the
    /// line is not that simple (nothing was recorded): the general path
    /// then runs, and decides errors, suffixes and the rest.
    #[allow(clippy::too_many_arguments)]
    fn visit_plain_json(
        &mut self,
        p: &Plan<'_>,
        e: &EntryRef<'_>,
        t: u64,
        i0: usize,
        i1: usize,
        s: usize,
        members: &mut Vec<(Range<u32>, Range<u32>)>,
    ) -> bool {
        if !json::plain_members(e.msg, members) {
            return false;
        }
        // Bytes throughout: the members are ASCII (`plain_members` checked).
        let line = e.msg;
        let at = |r: &Range<u32>| &line[r.start as usize..r.end as usize];
        let base = &self.streams.labels[s];
        let base_get = |name: &[u8]| {
            base.iter()
                .find(|(k, v)| k.as_bytes() == name && !v.is_empty())
                .map(|(_, v)| v.as_bytes())
        };
        // A member named like a stream label gets the `_extracted` suffix.
        if members.iter().any(|(n, _)| base_get(at(n)).is_some()) {
            return false;
        }
        let member = |name: &[u8]| {
            members
                .iter()
                .find(|(n, _)| at(n) == name)
                .map(|(_, v)| at(v))
        };
        let mut value = 0.0;
        if let Some((label, conv, _)) = &p.unwrap {
            // A stream label of that name: the general path reads it.
            let Some(v) = member(label.as_bytes()) else {
                return false;
            };
            if v.is_empty() {
                return true;
            }
            match std::str::from_utf8(v).map(|v| convert(*conv, v)) {
                Ok(Ok(v)) => value = v,
                // The line gets the error: the general path sets it.
                _ => return false,
            }
        }
        // `SampleGrouping::for_each` over these labels: the stream's
        // (none is overridden), then the members in line order.
        self.key.clear();
        let key = &mut self.key;
        let g = &p.grouping;
        match &g.groups {
            _ if g.no_labels => {}
            Some(names) if !g.without => {
                for name in names {
                    let name = name.as_bytes();
                    if let Some(v) = member(name).or_else(|| base_get(name)) {
                        key_push_bytes(key, name, v);
                    }
                }
            }
            groups => {
                let keep = |k: &[u8]| {
                    groups
                        .as_ref()
                        .is_none_or(|g| !g.iter().any(|n| n.as_bytes() == k))
                };
                for (k, v) in base.iter() {
                    if !v.is_empty() && keep(k.as_bytes()) {
                        key_push(key, k, v);
                    }
                }
                for (n, v) in members.iter() {
                    let k = at(n);
                    if keep(k) {
                        key_push_bytes(key, k, at(v));
                    }
                }
            }
        }
        self.record(p, e, t, i0, i1, value, e.msg.len());
        true
    }

    /// Counts the line, or keeps its sample, in the series of `self.key`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn record(
        &mut self,
        p: &Plan<'_>,
        e: &EntryRef<'_>,
        t: u64,
        i0: usize,
        i1: usize,
        value: f64,
        line_len: usize,
    ) {
        let Some(i) = self.series_of_key(p) else {
            return;
        };
        if p.unwrap.is_some() {
            self.samples.push(Sample {
                ts: t,
                seq: e.seq,
                v: value,
            });
            self.sample_series.push(i as u32);
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

/// An unwrapped label's value as a number.
fn convert(conv: Conversion, text: &str) -> Result<f64, units::ConvError> {
    match conv {
        Conversion::Float => units::parse_float(text),
        Conversion::Duration => units::go_duration(text).map(|ns| ns as f64 / 1e9),
        Conversion::Bytes => units::parse_bytes(text).map(|b| b as f64),
    }
}

/// Evaluates a range aggregation; `inject` is the grouping of a `sum`
/// around it (Loki passes it down when the function has none).
pub fn evaluate(
    ev: &Eval<'_>,
    r: &RangeExpr,
    inject: Option<&Grouping>,
) -> Result<Vec<Series>, LokiError> {
    evaluate_with(ev, r, inject, true)
}

/// [`evaluate`]; `plain_json`: whether plain JSON lines may skip the
/// general pipeline (tests compare both ways).
fn evaluate_with(
    ev: &Eval<'_>,
    r: &RangeExpr,
    inject: Option<&Grouping>,
    plain_json: bool,
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
        json_all: plain_json && log.pipeline.is_json_all() && post.is_empty(),
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
    // Per part: its samples, their series, and each series' index here.
    let mut part_samples: Vec<(Vec<Sample>, Vec<u32>, Vec<usize>)> = Vec::new();
    for part in parts {
        let Acc {
            keys: pkeys,
            counts: pcounts,
            bytes: pbytes,
            samples: psamples,
            sample_series,
            ..
        } = part;
        let mut pcounts = pcounts.into_iter();
        let mut pbytes = pbytes.into_iter();
        let mut global = Vec::with_capacity(pkeys.len());
        for k in pkeys {
            // Keys were built in the order labels came; series are by
            // label set.
            let k = canonical_key(&k);
            let (c, b) = (pcounts.next(), pbytes.next());
            match index.get(&k) {
                Some(&i) => {
                    if let (Some(c), Some(m)) = (c, counts.get_mut(i)) {
                        m.iter_mut().zip(&c).for_each(|(a, b)| *a += b);
                    }
                    if let (Some(b), Some(m)) = (b, bytes.get_mut(i)) {
                        m.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    }
                    global.push(i);
                }
                None => {
                    index.insert(k.clone(), keys.len());
                    global.push(keys.len());
                    keys.push(k);
                    counts.extend(c);
                    bytes.extend(b);
                }
            }
        }
        part_samples.push((psamples, sample_series, global));
    }
    if keys.len() > ev.limits.max_series {
        return Err(too_many_series(ev.limits.max_series));
    }
    // Each series' samples in seq order (parts in order, each in scan
    // order), and whether that is time order too.
    let mut samples: Vec<Vec<Sample>> = Vec::new();
    let mut sorted: Vec<bool> = Vec::new();
    if plan.unwrap.is_some() {
        let mut len = vec![0usize; keys.len()];
        for (_, series, global) in &part_samples {
            series.iter().for_each(|&s| len[global[s as usize]] += 1);
        }
        samples = len.iter().map(|&n| Vec::with_capacity(n)).collect();
        sorted = vec![true; keys.len()];
        let mut last = vec![(0u64, 0u64); keys.len()];
        for (psamples, series, global) in part_samples {
            for (x, s) in psamples.into_iter().zip(series) {
                let i = global[s as usize];
                if last[i] > (x.ts, x.seq) {
                    sorted[i] = false;
                }
                last[i] = (x.ts, x.seq);
                samples[i].push(x);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Flags, Origin};
    use crate::ring::{Ring, RingConfig};
    use crate::serve::loki::logql::{ast::Expr, parser};
    use crate::serve::loki::LokiLimits;
    use crate::timefmt::{now_ns, NANOS_PER_SEC};

    /// Lines read in place (plain JSON) and lines left to the general
    /// pipeline (clashes, duplicates, nesting, escapes, errors) give the
    /// same series, values and errors either way.
    #[test]
    fn plain_json_lines_match_the_pipeline() {
        let ring = Ring::open(&RingConfig::new(1024)).unwrap();
        let h = ring
            .origin(
                Origin::new("app")
                    .with_label("job", "x")
                    .with_label("empty", ""),
            )
            .unwrap();
        let lines = [
            r#"{"level":"info","latency_ms":12,"msg":"ok"}"#,
            r#"{"level":"info","latency_ms":"7.5","ok":true,"list":[1,2],"n":null}"#,
            r#"{"level":"info", "latency_ms" : 1e3 , "msg":"ok"}"#,
            r#"{"job":"other","latency_ms":3}"#,
            r#"{"level":"warn","level":"x","latency_ms":4}"#,
            r#"{"a":{"b":"c"},"latency_ms":5}"#,
            r#"{"msg":"caf\u00e9","latency_ms":6}"#,
            r#"{"msg":"café","latency_ms":6}"#,
            r#"{"m\"k":"v","latency_ms":1}"#,
            r#"{"1x":"v","a.b":"w","latency_ms":2}"#,
            r#"{"latency_ms":"","level":"info"}"#,
            r#"{"level":"info"}"#,
            r#"{"level":"info","latency_ms":9} trailing"#,
            r#"{"empty":"e","latency_ms":8}"#,
        ];
        for l in lines {
            ring.append(&h, Flags::default(), l.as_bytes());
        }
        // Lines that end in a pipeline error (the last one when unwrapped).
        let bad = ring.origin(Origin::new("bad")).unwrap();
        for l in [
            r#"{"level":"info","latency_ms":9"#,
            "not json",
            r#"{"latency_ms":"abc"}"#,
        ] {
            ring.append(&bad, Flags::default(), l.as_bytes());
        }
        let limits = LokiLimits::default();
        let ev = Eval {
            snap: ring.snapshot(),
            steps: Steps {
                start: now_ns() + NANOS_PER_SEC,
                step: NANOS_PER_SEC,
                n: 3,
            },
            limits: &limits,
        };
        let by = |without: bool, labels: &[&str]| Grouping {
            without,
            labels: labels.iter().map(|l| l.to_string()).collect(),
        };
        for (q, inject) in [
            (r#"count_over_time({source="app"} | json [1h])"#, None),
            (r#"bytes_over_time({source="app"} | json [1h])"#, None),
            // `sum without (...)`/`sum by (...)` pass their grouping down.
            (
                r#"count_over_time({source="app"} | json [1h])"#,
                Some(by(true, &["msg", "level"])),
            ),
            (
                r#"count_over_time({source="app"} | json [1h])"#,
                Some(by(false, &["level", "job"])),
            ),
            (
                r#"quantile_over_time(0.5, {source="app"} | json | unwrap latency_ms [1h])"#,
                None,
            ),
            (
                r#"sum_over_time({source="app"} | json | unwrap latency_ms [1h])"#,
                Some(by(true, &["msg"])),
            ),
            (
                r#"max_over_time({source="app"} | json | unwrap latency_ms [1h]) by (level)"#,
                None,
            ),
            (r#"count_over_time({source=~"app|bad"} | json [1h])"#, None),
            (
                r#"quantile_over_time(0.5, {source=~"app|bad"} |= "latency_ms" | json | unwrap latency_ms [1h])"#,
                None,
            ),
        ] {
            let Expr::Range(r) = parser::parse(q).unwrap() else {
                panic!("{q}: not a range aggregation");
            };
            let got = |plain| {
                evaluate_with(&ev, &r, inject.as_ref(), plain)
                    .map(|v| format!("{v:?}"))
                    .map_err(|e| e.to_string())
            };
            let general = got(false);
            if q.contains("bad") {
                assert!(general.is_err(), "{q}: {general:?}");
            } else {
                assert!(
                    general.as_ref().is_ok_and(|v| v.len() > 2),
                    "{q}: {general:?}"
                );
            }
            assert_eq!(got(true), general, "{q}");
        }
    }
}
