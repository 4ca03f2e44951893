//! Evaluating LogQL over a ring snapshot, and rendering Loki's JSON answers.
//!
//! How the work is bounded:
//! - **Log queries** read only as far as they must: `backward` (Loki's
//!   default) reads newest first from the end time with the ring's reverse
//!   cursor and stops at `limit`; `forward` seeks to the start time and
//!   stops at `limit` or the end time.
//! - **Metric queries** read the range once, whatever the number of steps:
//!   the snapshot is seeked to the first entry any step's window can hold,
//!   then read forward once. Each entry adds to the steps whose window
//!   `(step - range, step]` holds it; because times are sorted that is a
//!   contiguous run of steps, recorded in O(1) with a difference array per
//!   series (prefix sums turn it into per-step counts at the end). Long
//!   ranges are split between threads, one cursor each.
//! - **Metadata** (labels, label values, series, index stats) is one pass
//!   over the time range that keeps one record per distinct label set.
//!
//! The label set of an entry is [`crate::filter::entry_labels`]: `source`,
//! `stream` and `level` (from the entry's flags) and its origin's labels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::thread;

use rustc_hash::FxHashMap;

use crate::entry::{EntryRef, Origin};
use crate::filter::{entry_labels, Filter};
use crate::format::json_str;
use crate::ring::{Read, ReadBatch, ReadStatus, Ring, Select, Snapshot};
use crate::timefmt::NANOS_PER_SEC;

use super::logql::{
    self, AggExpr, AggOp, BinOp, Expr, Grouping, LineOp, LogExpr, RangeExpr, RangeFn,
};
use super::params::Direction;
use super::{LokiError, LokiLimits};

/// A label set, sorted by name.
pub type Labels = Vec<(String, String)>;

/// A `query_range` request, parameters already read.
#[derive(Clone, Debug)]
pub struct RangeRequest {
    pub query: String,
    /// Start, ns (inclusive).
    pub start: u64,
    /// End, ns (exclusive for log queries; the last step for metric queries).
    pub end: u64,
    /// Step, ns; `None` for Loki's default.
    pub step: Option<u64>,
    pub limit: usize,
    pub direction: Direction,
}

/// A `query` (instant) request.
#[derive(Clone, Debug)]
pub struct InstantRequest {
    pub query: String,
    /// The evaluation time, ns.
    pub time: u64,
    pub limit: usize,
    pub direction: Direction,
}

/// Answers `query_range`: `streams` for a log query, `matrix` for a
/// metric query. Returns the JSON body.
pub fn query_range(
    ring: &Ring,
    req: &RangeRequest,
    limits: &LokiLimits,
) -> Result<Vec<u8>, LokiError> {
    let expr = parse(&req.query)?;
    let snap = ring.snapshot();
    if let Expr::Log(log) = &expr {
        let streams = log_query(snap, log, req.start, req.end, req.limit, req.direction)?;
        return Ok(streams_json(&streams));
    }
    let step = req
        .step
        .unwrap_or_else(|| super::params::default_step(req.start, req.end));
    if step == 0 {
        return Err(LokiError::bad(
            "zero or negative query resolution step widths are not accepted: try a positive integer",
        ));
    }
    // Align on the step, as Loki and Prometheus do, so that the points of
    // successive refreshes fall on the same times.
    let start = req.start - req.start % step;
    let end = req.end - req.end % step;
    let n = (end - start) / step + 1;
    if n > limits.max_points {
        return Err(LokiError::bad(format!(
            "exceeded maximum resolution of {} points per timeseries: try increasing the value of the step parameter",
            limits.max_points
        )));
    }
    let steps = Steps {
        start,
        step,
        n: n as usize,
    };
    let value = Eval {
        snap,
        steps,
        limits,
    }
    .eval(&expr)?;
    Ok(matrix_json(&steps, value))
}

/// Answers `query` (instant): a `vector` (or `scalar`) at one time. A log
/// query is a 400, as in Loki.
pub fn query_instant(
    ring: &Ring,
    req: &InstantRequest,
    limits: &LokiLimits,
) -> Result<Vec<u8>, LokiError> {
    let expr = parse(&req.query)?;
    if expr.is_log() {
        return Err(LokiError::bad(
            "log queries are not supported as an instant query type, please change your query to a range query type",
        ));
    }
    let steps = Steps {
        start: req.time,
        step: 1,
        n: 1,
    };
    let value = Eval {
        snap: ring.snapshot(),
        steps,
        limits,
    }
    .eval(&expr)?;
    Ok(vector_json(req.time, value))
}

fn parse(query: &str) -> Result<Expr, LokiError> {
    logql::parse(query).map_err(|e| LokiError::bad(e.to_string()))
}

/// The filter of a log expression: its matchers and line filters.
pub fn log_filter(log: &LogExpr) -> Result<Filter, LokiError> {
    let mut b = Filter::builder();
    for m in &log.matchers {
        b = b.matcher(m.compile());
    }
    for f in &log.filters {
        b = match f.op {
            LineOp::Contains => b.contains(&f.value),
            LineOp::NotContains => b.not_contains(&f.value),
            LineOp::Matches => b.regex(&f.value),
            LineOp::NotMatches => b.not_regex(&f.value),
        };
    }
    b.build().map_err(|e| LokiError::bad(e.to_string()))
}

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
    Vector(Vec<Series>),
}

struct Eval<'a> {
    snap: Snapshot<'a>,
    steps: Steps,
    limits: &'a LokiLimits,
}

impl Eval<'_> {
    fn eval(&self, e: &Expr) -> Result<Value, LokiError> {
        match e {
            Expr::Number(v) => Ok(Value::Scalar(*v)),
            Expr::Vector(v) => Ok(Value::Vector(vec![Series {
                labels: Vec::new(),
                points: vec![Some(*v); self.steps.n],
            }])),
            Expr::Range(r) => self.range(r).map(Value::Vector),
            Expr::Agg(a) => match self.eval(&a.expr)? {
                Value::Vector(v) => Ok(Value::Vector(aggregate(a, v, self.steps.n))),
                Value::Scalar(_) => Err(LokiError::bad(format!(
                    "{} aggregates a vector, not a number: wrap the number as vector(N)",
                    a.op.name()
                ))),
            },
            Expr::Binary(b) => Ok(binary(b.op, self.eval(&b.lhs)?, self.eval(&b.rhs)?)),
            Expr::Log(_) => Err(LokiError::bad(
                "a log query cannot be used as a metric: wrap it as count_over_time({...}[5m])",
            )),
        }
    }

    /// A range aggregation in one pass (see the module docs).
    fn range(&self, r: &RangeExpr) -> Result<Vec<Series>, LokiError> {
        let filter = log_filter(&r.log)?;
        let steps = self.steps;
        let range = r.range_ns;
        let with_bytes = matches!(r.func, RangeFn::BytesOverTime | RangeFn::BytesRate);
        // Windows are (step - range, step]: the first entry that counts is
        // just after the first step's window opens.
        let lo = (steps.start.saturating_sub(range)).saturating_add(1);
        let hi = steps.last();
        let from = self.snap.seek_time(lo);
        let to = self.snap.seek_time(hi.saturating_add(1));
        let drops = &r.log.drops;
        let init = || RangeAcc::new(steps.n, with_bytes);
        let visit = |acc: &mut RangeAcc, e: &EntryRef<'_>| {
            let t = e.time;
            if t > hi {
                return;
            }
            // Entries come in time order and many share their steps: work
            // the steps out (two divisions) only when the time leaves the
            // interval the last answer holds for.
            if t < acc.window.0 || t >= acc.window.1 {
                acc.window = steps_for(&steps, range, t);
            }
            let (_, _, i0, i1) = acc.window;
            if i0 > i1 {
                return;
            }
            let s = acc.series_for(e, drops);
            let series = &mut acc.series[s];
            series.counts[i0] += 1;
            series.counts[i1 + 1] -= 1;
            if with_bytes {
                let len = e.msg.len() as i64;
                series.bytes[i0] += len;
                series.bytes[i1 + 1] -= len;
            }
        };
        let parts = scan_filter(self.snap, from, to, &filter, init, visit);
        // Merge the parts by label set.
        let mut merged: BTreeMap<Labels, AccSeries> = BTreeMap::new();
        for part in parts {
            for s in part.series {
                match merged.get_mut(&s.labels) {
                    Some(m) => m.add(&s),
                    None => {
                        merged.insert(s.labels.clone(), s);
                    }
                }
            }
        }
        if merged.len() > self.limits.max_series {
            return Err(too_many_series(self.limits.max_series));
        }
        let range_secs = range as f64 / NANOS_PER_SEC as f64;
        let mut out = Vec::with_capacity(merged.len());
        for (labels, s) in merged {
            let mut points = Vec::with_capacity(steps.n);
            let (mut count, mut bytes) = (0i64, 0i64);
            for i in 0..steps.n {
                count += s.counts[i];
                if with_bytes {
                    bytes += s.bytes[i];
                }
                points.push((count > 0).then(|| match r.func {
                    RangeFn::CountOverTime => count as f64,
                    RangeFn::Rate => count as f64 / range_secs,
                    RangeFn::BytesOverTime => bytes as f64,
                    RangeFn::BytesRate => bytes as f64 / range_secs,
                }));
            }
            out.push(Series { labels, points });
        }
        Ok(out)
    }
}

fn too_many_series(max: usize) -> LokiError {
    LokiError::bad(format!(
        "the query selects more than {max} series: narrow the selector or aggregate, \
         for example sum by (source) (...)"
    ))
}

/// Difference arrays of one label set (length `n + 1`).
struct AccSeries {
    labels: Labels,
    counts: Vec<i64>,
    bytes: Vec<i64>,
}

impl AccSeries {
    fn add(&mut self, other: &AccSeries) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        for (a, b) in self.bytes.iter_mut().zip(&other.bytes) {
            *a += b;
        }
    }
}

struct RangeAcc {
    /// The last [`steps_for`] answer.
    window: (u64, u64, usize, usize),
    keys: KeyIndex,
    by_labels: HashMap<Labels, u32>,
    series: Vec<AccSeries>,
    n: usize,
    with_bytes: bool,
}

impl RangeAcc {
    fn new(n: usize, with_bytes: bool) -> RangeAcc {
        RangeAcc {
            window: (1, 0, 1, 0),
            keys: KeyIndex::default(),
            by_labels: HashMap::new(),
            series: Vec::new(),
            n,
            with_bytes,
        }
    }

    #[inline]
    fn series_for(&mut self, e: &EntryRef<'_>, drops: &[String]) -> usize {
        let RangeAcc {
            keys,
            by_labels,
            series,
            n,
            with_bytes,
            ..
        } = self;
        keys.get(e, || {
            let labels = label_set(e.origin, e.flags, drops);
            *by_labels.entry(labels.clone()).or_insert_with(|| {
                series.push(AccSeries {
                    labels,
                    counts: vec![0; *n + 1],
                    bytes: if *with_bytes {
                        vec![0; *n + 1]
                    } else {
                        Vec::new()
                    },
                });
                (series.len() - 1) as u32
            })
        }) as usize
    }
}

/// The steps whose window `(step - range, step]` holds an entry at time
/// `t`, as `(from, until, first, last)`: steps `first..=last` (none when
/// `first > last`), an answer that holds for every time in `from..until`.
fn steps_for(steps: &Steps, range: u64, t: u64) -> (u64, u64, usize, usize) {
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

/// The owned label set of an entry, without the dropped labels.
pub(super) fn label_set(origin: &Origin, flags: crate::entry::Flags, drops: &[String]) -> Labels {
    entry_labels(origin, flags)
        .into_iter()
        .filter(|(k, _)| !drops.iter().any(|d| d == k))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Maps an entry's (origin, stream and level bits) to a small index; a
/// small direct-mapped cache in front of the map answers most entries
/// without hashing (a source's lines come in runs, with a few flag
/// combinations).
///
/// The origin is keyed by address: a cursor keeps each origin it resolved
/// alive (and at the same address) for its whole life, so the address
/// identifies the origin within one scan.
pub(super) struct KeyIndex {
    map: FxHashMap<(usize, u8), u32>,
    /// `(address, bits, index)`; address 0 is never an origin's.
    cache: [(usize, u8, u32); KEY_CACHE],
}

const KEY_CACHE: usize = 16;

impl Default for KeyIndex {
    fn default() -> KeyIndex {
        KeyIndex {
            map: FxHashMap::default(),
            cache: [(0, 0, 0); KEY_CACHE],
        }
    }
}

impl KeyIndex {
    #[inline]
    pub(super) fn get(&mut self, e: &EntryRef<'_>, add: impl FnOnce() -> u32) -> u32 {
        let addr = e.origin as *const Origin as usize;
        let bits = e.flags.bits() >> 2;
        // Origins are at least 8-byte aligned; mix in the flag bits.
        let slot = ((addr >> 4) ^ (addr >> 9) ^ (bits as usize).wrapping_mul(7)) % KEY_CACHE;
        let c = self.cache[slot];
        if c.0 == addr && c.1 == bits {
            return c.2;
        }
        let idx = match self.map.get(&(addr, bits)) {
            Some(&i) => i,
            None => {
                let i = add();
                self.map.insert((addr, bits), i);
                i
            }
        };
        self.cache[slot] = (addr, bits, idx);
        idx
    }
}

/// A filter's origin decisions alone, for a scan whose filter decides
/// nothing per entry: the reader then skips the per-entry call.
struct OriginOnly<'a>(&'a Filter);

impl Select for OriginOnly<'_> {
    fn origin(&self, origin: &Origin) -> bool {
        self.0.origin(origin)
    }

    #[inline]
    fn entry(&self, _: &EntryRef<'_>) -> bool {
        true
    }
}

/// Runs `scan` with the lightest selection that is equivalent to `filter`.
fn scan_filter<A, I, V>(
    snap: Snapshot<'_>,
    from: u64,
    to: u64,
    filter: &Filter,
    init: I,
    visit: V,
) -> Vec<A>
where
    A: Send,
    I: Fn() -> A + Sync,
    V: Fn(&mut A, &EntryRef<'_>) + Sync,
{
    if filter.decides_by_origin() {
        scan(snap, from, to, &OriginOnly(filter), init, visit)
    } else {
        scan(snap, from, to, filter, init, visit)
    }
}

/// Below this many entries a scan stays on one thread (few in unit tests,
/// so that they cover the split between threads).
const PARALLEL_MIN: u64 = if cfg!(test) { 64 } else { 200_000 };
/// Entries per read.
const READ_BATCH: u64 = 4096;

/// Reads seqs `from..to` of the snapshot once, calling `visit` with every
/// entry `select` takes; long ranges are split between threads, each with
/// its own accumulator. Entries the ring evicted meanwhile are skipped.
fn scan<A, S, I, V>(snap: Snapshot<'_>, from: u64, to: u64, select: &S, init: I, visit: V) -> Vec<A>
where
    A: Send,
    S: Select + Sync,
    I: Fn() -> A + Sync,
    V: Fn(&mut A, &EntryRef<'_>) + Sync,
{
    let total = to.saturating_sub(from);
    let threads = if total >= PARALLEL_MIN {
        thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4) as u64
    } else {
        1
    };
    if threads <= 1 {
        let mut acc = init();
        scan_part(snap, from, to, select, &mut acc, &visit);
        return vec![acc];
    }
    let chunk = total.div_ceil(threads);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (a, b) = (from + i * chunk, (from + (i + 1) * chunk).min(to));
                let (init, visit) = (&init, &visit);
                scope.spawn(move || {
                    let mut acc = init();
                    scan_part(snap, a, b, select, &mut acc, visit);
                    acc
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scan thread panicked"))
            .collect()
    })
}

fn scan_part<A, S: Select>(
    snap: Snapshot<'_>,
    from: u64,
    to: u64,
    select: &S,
    acc: &mut A,
    visit: &impl Fn(&mut A, &EntryRef<'_>),
) {
    let mut cursor = snap.cursor_from(from, select);
    let mut batch = ReadBatch::new();
    while cursor.position() < to {
        let max = (to - cursor.position()).min(READ_BATCH) as usize;
        if cursor.read(&mut batch, max) != ReadStatus::More {
            break;
        }
        for r in batch.iter() {
            // A cursor that was lapped jumps ahead and may read past `to`:
            // those entries belong to the next part.
            if let Read::Entry(e) = r {
                if e.seq < to {
                    visit(acc, &e);
                }
            }
        }
    }
}

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

/// A vector aggregation, step by step.
fn aggregate(a: &AggExpr, input: Vec<Series>, n: usize) -> Vec<Series> {
    if matches!(a.op, AggOp::Topk | AggOp::Bottomk) {
        return top_k(a, input, n);
    }
    let mut groups: BTreeMap<Labels, (Vec<f64>, Vec<u32>)> = BTreeMap::new();
    for s in &input {
        let (acc, cnt) = groups
            .entry(group_key(&s.labels, &a.grouping))
            .or_insert_with(|| (vec![0.0; n], vec![0; n]));
        for (i, p) in s.points.iter().enumerate() {
            let Some(v) = *p else { continue };
            acc[i] = match a.op {
                AggOp::Sum | AggOp::Avg => acc[i] + v,
                AggOp::Count => acc[i] + 1.0,
                AggOp::Min if cnt[i] == 0 || v < acc[i] => v,
                AggOp::Max if cnt[i] == 0 || v > acc[i] => v,
                _ => acc[i],
            };
            cnt[i] += 1;
        }
    }
    groups
        .into_iter()
        .map(|(labels, (acc, cnt))| Series {
            labels,
            points: acc
                .iter()
                .zip(&cnt)
                .map(|(&v, &c)| (c > 0).then(|| if a.op == AggOp::Avg { v / c as f64 } else { v }))
                .collect(),
        })
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect()
}

/// `topk`/`bottomk`: per step and group, the k series with the highest
/// (lowest) values keep their point; the series keep their labels.
fn top_k(a: &AggExpr, mut input: Vec<Series>, n: usize) -> Vec<Series> {
    let k = a.k.unwrap_or(1);
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
    for members in groups.values() {
        for step in 0..n {
            ranked.clear();
            ranked.extend(
                members
                    .iter()
                    .filter_map(|&m| input[m].points[step].map(|v| (v, m))),
            );
            ranked.sort_by(|x, y| {
                let ord = x.0.total_cmp(&y.0);
                if a.op == AggOp::Topk {
                    ord.reverse()
                } else {
                    ord
                }
            });
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
    input
}

/// Arithmetic: scalar with scalar, element-wise with a scalar, and
/// vector with vector matched on identical label sets.
fn binary(op: BinOp, lhs: Value, rhs: Value) -> Value {
    let map = |v: Vec<Series>, f: &dyn Fn(f64) -> f64| {
        v.into_iter()
            .map(|s| Series {
                labels: s.labels,
                points: s.points.into_iter().map(|p| p.map(f)).collect(),
            })
            .collect()
    };
    match (lhs, rhs) {
        (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(op.apply(a, b)),
        (Value::Vector(v), Value::Scalar(b)) => Value::Vector(map(v, &|x| op.apply(x, b))),
        (Value::Scalar(a), Value::Vector(v)) => Value::Vector(map(v, &|x| op.apply(a, x))),
        (Value::Vector(l), Value::Vector(r)) => {
            let by_labels: HashMap<&Labels, &Series> = r.iter().map(|s| (&s.labels, s)).collect();
            Value::Vector(
                l.iter()
                    .filter_map(|s| {
                        let other = by_labels.get(&s.labels)?;
                        let points: Vec<_> = s
                            .points
                            .iter()
                            .zip(&other.points)
                            .map(|(a, b)| Some(op.apply((*a)?, (*b)?)))
                            .collect();
                        points.iter().any(Option::is_some).then(|| Series {
                            labels: s.labels.clone(),
                            points,
                        })
                    })
                    .collect(),
            )
        }
    }
}

/// A log query's answer: per label set, `(time, message)` in answer order.
type LogStreams = Vec<(Labels, Vec<(u64, Vec<u8>)>)>;

/// One stream of a log query answer while it is read.
struct StreamOut {
    labels: Labels,
    /// `(time, range in the message buffer)`, in answer order.
    entries: Vec<(u64, std::ops::Range<usize>)>,
}

struct LogAcc {
    keys: KeyIndex,
    by_labels: HashMap<Labels, u32>,
    streams: Vec<StreamOut>,
    bytes: Vec<u8>,
    taken: usize,
}

/// Reads a log query's entries: the first `limit` from the end
/// (`backward`) or from the start (`forward`) of `[start, end)`.
fn log_query(
    snap: Snapshot<'_>,
    log: &LogExpr,
    start: u64,
    end: u64,
    limit: usize,
    direction: Direction,
) -> Result<LogStreams, LokiError> {
    let filter = log_filter(log)?;
    let start_seq = snap.seek_time(start);
    let end_seq = snap.seek_time(end);
    let mut acc = LogAcc {
        keys: KeyIndex::default(),
        by_labels: HashMap::new(),
        streams: Vec::new(),
        bytes: Vec::new(),
        taken: 0,
    };
    let take = |acc: &mut LogAcc, e: &EntryRef<'_>| {
        let LogAcc {
            keys,
            by_labels,
            streams,
            ..
        } = acc;
        let s = keys.get(e, || {
            let labels = label_set(e.origin, e.flags, &log.drops);
            *by_labels.entry(labels.clone()).or_insert_with(|| {
                streams.push(StreamOut {
                    labels,
                    entries: Vec::new(),
                });
                (streams.len() - 1) as u32
            })
        }) as usize;
        let at = acc.bytes.len();
        acc.bytes.extend_from_slice(e.msg);
        acc.streams[s].entries.push((e.time, at..acc.bytes.len()));
        acc.taken += 1;
    };
    let mut batch = ReadBatch::new();
    match direction {
        Direction::Forward => {
            let mut cursor = snap.cursor_from(start_seq, &filter);
            'read: while cursor.position() < end_seq && acc.taken < limit {
                let max = (end_seq - cursor.position()).min(READ_BATCH) as usize;
                if cursor.read(&mut batch, max) != ReadStatus::More {
                    break;
                }
                for r in batch.iter() {
                    if let Read::Entry(e) = r {
                        if e.seq >= end_seq {
                            break 'read;
                        }
                        take(&mut acc, &e);
                        if acc.taken == limit {
                            break 'read;
                        }
                    }
                }
            }
        }
        Direction::Backward => {
            let mut cursor = snap.rev_before(end_seq, &filter);
            'read: while cursor.position() > start_seq && acc.taken < limit {
                let max = (cursor.position() - start_seq).min(READ_BATCH) as usize;
                if cursor.read(&mut batch, max) != ReadStatus::More {
                    break;
                }
                for r in batch.iter() {
                    if let Read::Entry(e) = r {
                        if e.seq < start_seq {
                            break 'read;
                        }
                        take(&mut acc, &e);
                        if acc.taken == limit {
                            break 'read;
                        }
                    }
                }
            }
        }
    }
    let bytes = acc.bytes;
    Ok(acc
        .streams
        .into_iter()
        .map(|s| {
            let entries = s
                .entries
                .into_iter()
                .map(|(t, r)| (t, bytes[r].to_vec()))
                .collect();
            (s.labels, entries)
        })
        .collect())
}

/// The selection of a metadata request: everything, one selector, or any
/// of several (`series` takes several `match[]`).
pub enum Selection {
    All,
    One(Box<Filter>),
    Any(Vec<Filter>),
}

impl Select for Selection {
    fn origin(&self, origin: &Origin) -> bool {
        match self {
            Selection::All => true,
            Selection::One(f) => f.origin(origin),
            Selection::Any(fs) => fs.iter().any(|f| f.origin(origin)),
        }
    }

    fn entry(&self, e: &EntryRef<'_>) -> bool {
        match self {
            Selection::All => true,
            Selection::One(f) => f.entry(e),
            Selection::Any(fs) => fs.iter().any(|f| f.origin(e.origin) && f.entry(e)),
        }
    }
}

impl Selection {
    /// Parses selectors (`{app="web"}`, or a whole log query with line
    /// filters); none selects everything.
    pub fn parse<'a>(selectors: impl IntoIterator<Item = &'a str>) -> Result<Selection, LokiError> {
        let mut filters = Vec::new();
        for s in selectors {
            match parse(s)? {
                Expr::Log(log) => filters.push(log_filter(&log)?),
                _ => {
                    return Err(LokiError::bad(format!(
                        "expected a stream selector such as {{source=\"web\"}}, found the metric query {s:?}"
                    )))
                }
            }
        }
        Ok(match filters.len() {
            0 => Selection::All,
            1 => Selection::One(Box::new(filters.pop().expect("one filter"))),
            _ => Selection::Any(filters),
        })
    }
}

/// What one label set holds in a time range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStat {
    pub labels: Labels,
    pub entries: u64,
    pub bytes: u64,
}

/// Every label set with entries in `[start, end]` that `selection` takes,
/// with their entry and byte counts, sorted by labels.
pub fn stream_stats(
    ring: &Ring,
    selection: &Selection,
    start: u64,
    end: u64,
    limits: &LokiLimits,
) -> Result<Vec<StreamStat>, LokiError> {
    let snap = ring.snapshot();
    let from = snap.seek_time(start);
    let to = snap.seek_time(end.saturating_add(1));
    struct Acc {
        keys: KeyIndex,
        by_labels: HashMap<Labels, u32>,
        stats: Vec<StreamStat>,
    }
    let init = || Acc {
        keys: KeyIndex::default(),
        by_labels: HashMap::new(),
        stats: Vec::new(),
    };
    let visit = |acc: &mut Acc, e: &EntryRef<'_>| {
        let Acc {
            keys,
            by_labels,
            stats,
        } = acc;
        let i = keys.get(e, || {
            let labels = label_set(e.origin, e.flags, &[]);
            *by_labels.entry(labels.clone()).or_insert_with(|| {
                stats.push(StreamStat {
                    labels,
                    entries: 0,
                    bytes: 0,
                });
                (stats.len() - 1) as u32
            })
        }) as usize;
        stats[i].entries += 1;
        stats[i].bytes += e.msg.len() as u64;
    };
    let parts = scan(snap, from, to, selection, init, visit);
    let mut merged: BTreeMap<Labels, (u64, u64)> = BTreeMap::new();
    for part in parts {
        for s in part.stats {
            let m = merged.entry(s.labels).or_default();
            m.0 += s.entries;
            m.1 += s.bytes;
        }
    }
    if merged.len() > limits.max_series {
        return Err(too_many_series(limits.max_series));
    }
    Ok(merged
        .into_iter()
        .map(|(labels, (entries, bytes))| StreamStat {
            labels,
            entries,
            bytes,
        })
        .collect())
}

/// The label names of a set of streams, sorted.
pub fn label_names(stats: &[StreamStat]) -> Vec<&str> {
    let names: BTreeSet<&str> = stats
        .iter()
        .flat_map(|s| s.labels.iter().map(|(k, _)| k.as_str()))
        .collect();
    names.into_iter().collect()
}

/// The values label `name` takes in a set of streams, sorted.
pub fn label_values<'a>(stats: &'a [StreamStat], name: &str) -> Vec<&'a str> {
    let values: BTreeSet<&str> = stats
        .iter()
        .filter_map(|s| {
            s.labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        })
        .collect();
    values.into_iter().collect()
}

// ---- JSON ----

const ENVELOPE_START: &[u8] = b"{\"status\":\"success\",\"data\":{\"resultType\":\"";
const ENVELOPE_END: &[u8] = b"],\"stats\":{}}}";

fn envelope(out: &mut Vec<u8>, result_type: &str) {
    out.extend_from_slice(ENVELOPE_START);
    out.extend_from_slice(result_type.as_bytes());
    out.extend_from_slice(b"\",\"result\":[");
}

/// `{"k":"v",...}`.
pub fn write_labels<'a>(out: &mut Vec<u8>, labels: impl IntoIterator<Item = (&'a str, &'a str)>) {
    out.push(b'{');
    for (i, (k, v)) in labels.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, k.as_bytes());
        out.push(b':');
        json_str(out, v.as_bytes());
    }
    out.push(b'}');
}

fn labels_iter(labels: &Labels) -> impl Iterator<Item = (&str, &str)> {
    labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// A time as a JSON number of Unix seconds, exact to the ns
/// (`1700000000`, `1700000000.25`).
pub fn write_secs(out: &mut Vec<u8>, ns: u64) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(ns / NANOS_PER_SEC).as_bytes());
    let frac = ns % NANOS_PER_SEC;
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push(b'.');
        out.extend_from_slice(digits.trim_end_matches('0').as_bytes());
    }
}

/// A sample value as Prometheus writes it: a JSON string, shortest
/// round-trip decimal, `NaN`, `+Inf`, `-Inf`.
pub fn write_value(out: &mut Vec<u8>, v: f64) {
    out.push(b'"');
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else {
        out.extend_from_slice(format!("{v}").as_bytes());
    }
    out.push(b'"');
}

fn streams_json(streams: &LogStreams) -> Vec<u8> {
    let size: usize = streams
        .iter()
        .map(|(_, e)| e.iter().map(|(_, m)| m.len() + 32).sum::<usize>() + 128)
        .sum();
    let mut out = Vec::with_capacity(size + 128);
    envelope(&mut out, "streams");
    let mut num = itoa::Buffer::new();
    for (i, (labels, entries)) in streams.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"stream\":");
        write_labels(&mut out, labels_iter(labels));
        out.extend_from_slice(b",\"values\":[");
        for (j, (t, msg)) in entries.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"[\"");
            out.extend_from_slice(num.format(*t).as_bytes());
            out.extend_from_slice(b"\",");
            json_str(&mut out, msg);
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(ENVELOPE_END);
    out
}

fn matrix_json(steps: &Steps, value: Value) -> Vec<u8> {
    let series = match value {
        Value::Vector(v) => v,
        Value::Scalar(x) => vec![Series {
            labels: Vec::new(),
            points: vec![Some(x); steps.n],
        }],
    };
    let mut out = Vec::with_capacity(256 + series.len() * (64 + steps.n * 24));
    envelope(&mut out, "matrix");
    let mut first = true;
    for s in series
        .iter()
        .filter(|s| s.points.iter().any(Option::is_some))
    {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(b"{\"metric\":");
        write_labels(&mut out, labels_iter(&s.labels));
        out.extend_from_slice(b",\"values\":[");
        let mut first_point = true;
        for (i, p) in s.points.iter().enumerate() {
            let Some(v) = p else { continue };
            if !first_point {
                out.push(b',');
            }
            first_point = false;
            out.push(b'[');
            write_secs(&mut out, steps.at(i));
            out.push(b',');
            write_value(&mut out, *v);
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(ENVELOPE_END);
    out
}

fn vector_json(time: u64, value: Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    match value {
        Value::Scalar(x) => {
            // Prometheus's scalar result is the bare sample, not a list.
            out.extend_from_slice(ENVELOPE_START);
            out.extend_from_slice(b"scalar\",\"result\":[");
            write_secs(&mut out, time);
            out.push(b',');
            write_value(&mut out, x);
        }
        Value::Vector(series) => {
            envelope(&mut out, "vector");
            let mut first = true;
            for s in &series {
                let Some(v) = s.points[0] else { continue };
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(b"{\"metric\":");
                write_labels(&mut out, labels_iter(&s.labels));
                out.extend_from_slice(b",\"value\":[");
                write_secs(&mut out, time);
                out.push(b',');
                write_value(&mut out, v);
                out.extend_from_slice(b"]}");
            }
        }
    }
    out.extend_from_slice(ENVELOPE_END);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Flags, Stream};
    use crate::ring::RingConfig;
    use std::sync::Arc;

    const S: u64 = NANOS_PER_SEC;

    fn limits() -> LokiLimits {
        LokiLimits::default()
    }

    fn json(v: &[u8]) -> serde_json::Value {
        serde_json::from_slice(v).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(v)))
    }

    /// A ring with `web` (stdout, info) and `db` (stderr, error) entries.
    fn ring_with(lines: &[(&str, &str)]) -> (Arc<Ring>, u64, u64) {
        let ring = Arc::new(Ring::open(&RingConfig::new(1024)).unwrap());
        let web = ring
            .origin(Origin::new("web").with_label("app", "nginx"))
            .unwrap();
        let db = ring.origin(Origin::new("db")).unwrap();
        let t0 = crate::timefmt::now_ns();
        for (src, msg) in lines {
            let (h, flags) = if *src == "web" {
                (
                    &web,
                    Flags::default()
                        .with_stream(Some(Stream::Stdout))
                        .with_level(Some(crate::entry::Level::Info)),
                )
            } else {
                (
                    &db,
                    Flags::default()
                        .with_stream(Some(Stream::Stderr))
                        .with_level(Some(crate::entry::Level::Error)),
                )
            };
            ring.append(h, flags, msg.as_bytes());
        }
        let t1 = crate::timefmt::now_ns();
        (ring, t0, t1 + 1)
    }

    fn range(ring: &Ring, q: &str, start: u64, end: u64, step: Option<u64>) -> serde_json::Value {
        let req = RangeRequest {
            query: q.into(),
            start,
            end,
            step,
            limit: 100,
            direction: Direction::Backward,
        };
        json(&query_range(ring, &req, &limits()).unwrap())
    }

    #[test]
    fn health_check_vector_sum() {
        let ring = Ring::open(&RingConfig::new(16)).unwrap();
        let req = InstantRequest {
            query: "vector(1)+vector(1)".into(),
            time: 4_000_000_000 * S,
            limit: 100,
            direction: Direction::Backward,
        };
        let body = query_instant(&ring, &req, &limits()).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[4000000000,"2"]}],"stats":{}}}"#
        );
        let req = InstantRequest {
            query: "1+1".into(),
            ..req
        };
        let v = json(&query_instant(&ring, &req, &limits()).unwrap());
        assert_eq!(v["data"]["resultType"], "scalar");
        assert_eq!(v["data"]["result"][1], "2");
    }

    #[test]
    fn log_queries_both_directions() {
        let (ring, t0, t1) = ring_with(&[
            ("web", "GET /a"),
            ("db", "slow query"),
            ("web", "GET /b"),
            ("web", "POST /c"),
        ]);
        let v = range(&ring, r#"{source=~"web|db"} |= "GET""#, t0, t1, None);
        let streams = v["data"]["result"].as_array().unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(
            streams[0]["stream"],
            serde_json::json!({"app":"nginx","level":"info","source":"web","stream":"stdout"})
        );
        let lines: Vec<_> = streams[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[1].as_str().unwrap())
            .collect();
        assert_eq!(lines, vec!["GET /b", "GET /a"], "backward: newest first");
        let req = RangeRequest {
            query: r#"{level="error"} or {source="web"}"#.into(),
            start: t0,
            end: t1,
            step: None,
            limit: 2,
            direction: Direction::Forward,
        };
        assert!(query_range(&ring, &req, &limits()).is_err());
        let req = RangeRequest {
            query: r#"{source=~".+"} != "slow""#.into(),
            ..req
        };
        let v = json(&query_range(&ring, &req, &limits()).unwrap());
        let values = &v["data"]["result"][0]["values"];
        assert_eq!(values.as_array().unwrap().len(), 2, "limit 2");
        assert_eq!(values[0][1], "GET /a", "forward: oldest first");
        assert_eq!(values[1][1], "GET /b");
        // The end is exclusive, the start inclusive.
        let v = range(&ring, r#"{source="db"}"#, t1, t1 + S, None);
        assert_eq!(v["data"]["result"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn instant_log_query_is_refused() {
        let (ring, _, t1) = ring_with(&[("web", "x")]);
        let req = InstantRequest {
            query: r#"{source="web"}"#.into(),
            time: t1,
            limit: 10,
            direction: Direction::Backward,
        };
        let e = query_instant(&ring, &req, &limits()).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
    }

    /// Reference evaluation: for every step, count entries in its window
    /// with a plain loop, per label set.
    #[test]
    fn one_pass_buckets_match_the_per_step_definition() {
        let ring = Ring::open(&RingConfig::new(4096)).unwrap();
        let a = ring.origin(Origin::new("a")).unwrap();
        let b = ring.origin(Origin::new("b")).unwrap();
        for i in 0..600 {
            let h = if i % 3 == 0 { &a } else { &b };
            ring.append(h, Flags::default(), &vec![b'x'; i % 7 + 1]);
        }
        let snap = ring.snapshot();
        let mut all = Vec::new();
        let mut batch = ReadBatch::new();
        let mut c = snap.cursor(crate::ring::All);
        while c.read(&mut batch, 1000) == ReadStatus::More {
            for r in batch.iter() {
                if let Read::Entry(e) = r {
                    all.push((e.time, e.origin.source.clone(), e.msg.len()));
                }
            }
        }
        let (first, last) = (all[0].0, all[all.len() - 1].0);
        let span = last - first;
        for (step, range_ns) in [
            (span / 37 + 1, span / 5 + 1),
            (span / 10 + 1, span / 40 + 1),
            (span / 3 + 1, span * 2),
            (1 + span / 250, 1 + span / 250),
        ] {
            for func in ["count_over_time", "bytes_over_time"] {
                let q = format!(r#"sum by (source) ({func}({{source=~"a|b"}}[{range_ns}ns]))"#);
                let start = first + span / 7;
                let end = last;
                let req = RangeRequest {
                    query: q.clone(),
                    start,
                    end,
                    step: Some(step),
                    limit: 100,
                    direction: Direction::Backward,
                };
                let v = json(&query_range(&ring, &req, &limits()).unwrap());
                let aligned = start - start % step;
                let n = ((end - end % step) - aligned) / step + 1;
                for src in ["a", "b"] {
                    let mut expected = Vec::new();
                    for i in 0..n {
                        let s = aligned + i * step;
                        let in_window = all.iter().filter(|(t, o, _)| {
                            o == src && *t > s.saturating_sub(range_ns) && *t <= s
                        });
                        let value: usize = if func == "count_over_time" {
                            in_window.count()
                        } else {
                            in_window.map(|e| e.2).sum()
                        };
                        if value > 0 {
                            expected.push((s as f64 / S as f64, value.to_string()));
                        }
                    }
                    // JSON numbers come back as f64: compare times to the µs.
                    let got: Vec<(f64, String)> = v["data"]["result"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|r| r["metric"]["source"] == src)
                        .flat_map(|r| r["values"].as_array().unwrap().clone())
                        .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
                        .collect();
                    assert_eq!(got.len(), expected.len(), "{q} step {step}");
                    for (g, e) in got.iter().zip(&expected) {
                        assert!(
                            (g.0 - e.0).abs() < 1e-6 && g.1 == e.1,
                            "{q} step {step}: {g:?} != {e:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn step_intervals_hold_where_they_say() {
        let direct = |steps: &Steps, range: u64, t: u64| -> Option<(usize, usize)> {
            let hits: Vec<usize> = (0..steps.n)
                .filter(|&i| steps.at(i) >= t && steps.at(i) < t + range)
                .collect();
            Some((*hits.first()?, *hits.last()?))
        };
        for (start, step, n, range) in [
            (100u64, 10u64, 7usize, 25u64),
            (100, 10, 7, 3),
            (100, 10, 7, 10),
            (100, 10, 7, 1000),
            (100, 1, 1, 5),
            (5, 7, 4, 50),
        ] {
            let steps = Steps { start, step, n };
            for t in 0..start + step * n as u64 + 2 * range {
                let (from, until, first, last) = steps_for(&steps, range, t);
                assert!(from <= t && t < until, "{t} outside {from}..{until}");
                for u in from..until.min(t + 3 * step + range) {
                    let want = direct(&steps, range, u);
                    let got = (first <= last).then_some((first, last));
                    assert_eq!(got, want, "steps {steps:?} range {range} t {t} u {u}");
                }
            }
        }
    }

    #[test]
    fn aggregations_and_arithmetic() {
        let mut lines = Vec::new();
        for _ in 0..3 {
            lines.push(("web", "hit"));
        }
        lines.push(("db", "hit"));
        let (ring, t0, t1) = ring_with(&lines);
        let end = t1 + S;
        let at = |q: &str| {
            let req = InstantRequest {
                query: q.into(),
                time: end,
                limit: 10,
                direction: Direction::Backward,
            };
            json(&query_instant(&ring, &req, &limits()).unwrap())["data"]["result"].clone()
        };
        let base = r#"count_over_time({source=~".+"}[1h])"#;
        assert_eq!(at(&format!("sum({base})"))[0]["value"][1], "4");
        assert_eq!(at(&format!("count({base})"))[0]["value"][1], "2");
        assert_eq!(at(&format!("max({base})"))[0]["value"][1], "3");
        assert_eq!(at(&format!("min({base})"))[0]["value"][1], "1");
        assert_eq!(at(&format!("avg({base})"))[0]["value"][1], "2");
        let by_level = at(&format!("sum by (level) ({base})"));
        assert_eq!(by_level[0]["metric"], serde_json::json!({"level": "error"}));
        assert_eq!(by_level[1]["metric"], serde_json::json!({"level": "info"}));
        let without = at(&format!("sum without (app, level, stream) ({base})"));
        assert_eq!(without[0]["metric"], serde_json::json!({"source": "db"}));
        let top = at(&format!("topk(1, {base})"));
        assert_eq!(top.as_array().unwrap().len(), 1);
        assert_eq!(top[0]["metric"]["source"], "web");
        let bottom = at(&format!("bottomk(1, {base})"));
        assert_eq!(bottom[0]["metric"]["source"], "db");
        assert_eq!(at(&format!("sum({base}) * 2 - 1"))[0]["value"][1], "7");
        assert_eq!(
            at(&format!(
                "sum by (source) ({base}) / sum by (source) ({base})"
            ))
            .as_array()
            .unwrap()
            .len(),
            2
        );
        let rate = at(r#"sum(rate({source="web"}[1m]))"#);
        assert_eq!(rate[0]["value"][1], "0.05");
        let bytes = at(r#"sum(bytes_over_time({source="web"}[1m]))"#);
        assert_eq!(bytes[0]["value"][1], "9");
        // A drop merges the streams it makes equal.
        let dropped =
            at(r#"count_over_time({source=~".+"} | drop source, app, level, stream [1h])"#);
        assert_eq!(dropped[0]["metric"], serde_json::json!({}));
        assert_eq!(dropped[0]["value"][1], "4");
        // Nothing in range: an empty result, not an error.
        let req = RangeRequest {
            query: base.into(),
            start: t0 - 10 * 3600 * S,
            end: t0 - 9 * 3600 * S,
            step: None,
            limit: 10,
            direction: Direction::Backward,
        };
        let v = json(&query_range(&ring, &req, &limits()).unwrap());
        assert_eq!(v["data"]["resultType"], "matrix");
        assert_eq!(v["data"]["result"], serde_json::json!([]));
    }

    #[test]
    fn matrix_points_are_aligned_and_bounded() {
        let (ring, _, t1) = ring_with(&[("web", "x")]);
        let v = range(&ring, "vector(3)", 1001 * S + 7, 1060 * S + 5, Some(10 * S));
        let values = v["data"]["result"][0]["values"].as_array().unwrap().clone();
        let times: Vec<u64> = values.iter().map(|p| p[0].as_u64().unwrap()).collect();
        assert_eq!(times, vec![1000, 1010, 1020, 1030, 1040, 1050, 1060]);
        assert_eq!(values[0][1], "3");
        let req = RangeRequest {
            query: "vector(1)".into(),
            start: 0,
            end: t1,
            step: Some(S),
            limit: 10,
            direction: Direction::Backward,
        };
        let e = query_range(&ring, &req, &limits()).unwrap_err();
        assert!(e.msg.contains("maximum resolution"), "{}", e.msg);
        let req = RangeRequest {
            step: Some(0),
            ..req
        };
        assert!(query_range(&ring, &req, &limits()).is_err());
    }

    #[test]
    fn metadata() {
        let (ring, t0, t1) = ring_with(&[("web", "GET"), ("db", "x"), ("web", "GET")]);
        let all = stream_stats(&ring, &Selection::All, t0, t1, &limits()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(label_names(&all), vec!["app", "level", "source", "stream"]);
        assert_eq!(label_values(&all, "source"), vec!["db", "web"]);
        let web = Selection::parse([r#"{source="web"}"#]).unwrap();
        let s = stream_stats(&ring, &web, t0, t1, &limits()).unwrap();
        assert_eq!((s.len(), s[0].entries, s[0].bytes), (1, 2, 6));
        let both = Selection::parse([r#"{source="web"}"#, r#"{level="error"}"#]).unwrap();
        assert_eq!(
            stream_stats(&ring, &both, t0, t1, &limits()).unwrap().len(),
            2
        );
        assert!(Selection::parse(["sum(rate({a=\"b\"}[1m]))"]).is_err());
    }

    #[test]
    fn number_and_time_rendering() {
        let text = |v: f64| {
            let mut o = Vec::new();
            write_value(&mut o, v);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(text(2.0), "\"2\"");
        assert_eq!(text(0.25), "\"0.25\"");
        assert_eq!(text(1.0 / 3.0), "\"0.3333333333333333\"");
        assert_eq!(text(f64::NAN), "\"NaN\"");
        assert_eq!(text(f64::INFINITY), "\"+Inf\"");
        assert_eq!(text(-f64::INFINITY), "\"-Inf\"");
        let secs = |ns: u64| {
            let mut o = Vec::new();
            write_secs(&mut o, ns);
            String::from_utf8(o).unwrap()
        };
        assert_eq!(secs(1_700_000_000 * S), "1700000000");
        assert_eq!(secs(1_700_000_000 * S + 250_000_000), "1700000000.25");
        assert_eq!(secs(5), "0.000000005");
    }
}
