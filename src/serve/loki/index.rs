//! The Loki API's index side: which streams exist in a time range
//! (`labels`, `label/{name}/values`, `series`, `index/stats`) and how many
//! bytes they hold over time (`index/volume`, `index/volume_range`).
//!
//! ringtail keeps no index: each answer is one pass over the range
//! ([`scan`]) that keeps one record per distinct stream. A selector's
//! matchers and its line filters select; the rest of a pipeline (parsers,
//! label filters) does not change which streams exist and is ignored, as
//! Loki's index ignores it.
//!
//! Volumes are exact: the message bytes of the selected entries (Loki
//! reports its chunks' sizes, rounded to KiB). As in Loki, series are the
//! stream labels the selector names (or `targetLabels`), or with
//! `aggregateBy=labels` one series per label name with the value `""`;
//! each bucket keeps its `limit` largest, largest first.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use crate::entry::{EntryRef, Origin};
use crate::filter::{Filter, LabelMatcher, MatchOp};
use crate::ring::{Ring, Select};

use super::answer::{write_labels, write_secs, write_value};
use super::logql::eval::scan::{entry_ts, scan, seq_range, stream_labels, KeyIndex};
use super::logql::eval::{too_many_series, Labels, LogPlan, Series};
use super::logql::pipeline::Hints;
use super::logql::{self, Expr};
use super::query::parse;
use super::{LokiError, LokiLimits};

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
                Expr::Log(log) => filters.push(LogPlan::new(&log, Hints::all())?.filter),
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
    let seqs = seq_range(&snap, start, end.saturating_add(1));
    struct Acc {
        keys: KeyIndex,
        by_labels: FxHashMap<Labels, u32>,
        stats: Vec<StreamStat>,
    }
    let init = || Acc {
        keys: KeyIndex::default(),
        by_labels: FxHashMap::default(),
        stats: Vec::new(),
    };
    let visit = |acc: &mut Acc, e: &EntryRef<'_>| {
        let ts = entry_ts(e);
        if ts < start || ts > end {
            return;
        }
        let Acc {
            keys,
            by_labels,
            stats,
        } = acc;
        let i = keys.get(e, || {
            let labels = stream_labels(e.origin, e.flags);
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
    let parts = scan(snap, seqs.start, seqs.end, selection, init, visit);
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

/// An `index/volume` or `index/volume_range` request.
#[derive(Clone, Debug)]
pub struct VolumeRequest {
    /// A stream selector (`{}` selects every stream).
    pub query: String,
    pub start: u64,
    pub end: u64,
    /// `volume_range`'s bucket width; `None` for `volume` (one bucket).
    pub step: Option<u64>,
    /// Series kept per bucket.
    pub limit: usize,
    pub target_labels: Vec<String>,
    /// `aggregateBy=labels`.
    pub by_label_names: bool,
}

/// The matchers of a volume query: a selector, `{}`, or a log query's.
fn volume_matchers(query: &str) -> Result<Vec<logql::Matcher>, LokiError> {
    match logql::parse_selector(query, false) {
        Ok(m) => Ok(m),
        Err(selector_err) => match logql::parse(query) {
            Ok(Expr::Log(log)) => Ok(log.matchers),
            _ => Err(LokiError::bad(selector_err.to_string())),
        },
    }
}

struct VolumeSelect(Vec<LabelMatcher>);

impl Select for VolumeSelect {
    fn origin(&self, origin: &Origin) -> bool {
        self.0.iter().all(|m| {
            m.matches(
                crate::filter::entry_label(origin, Default::default(), m.name()).unwrap_or(""),
            ) || matches!(m.name(), "stream" | "level")
        })
    }

    fn entry(&self, e: &EntryRef<'_>) -> bool {
        self.0.iter().all(|m| {
            m.matches(crate::filter::entry_label(e.origin, e.flags, m.name()).unwrap_or(""))
        })
    }
}

/// Answers a volume request (see the module docs).
pub fn volume(ring: &Ring, req: &VolumeRequest, limits: &LokiLimits) -> Result<Vec<u8>, LokiError> {
    let mut matchers: Vec<LabelMatcher> = volume_matchers(&req.query)?
        .iter()
        .map(logql::Matcher::compile)
        .collect();
    let include_all = matchers.is_empty() && req.target_labels.is_empty();
    let mut names: BTreeSet<String> = matchers.iter().map(|m| m.name().to_string()).collect();
    if !req.target_labels.is_empty() {
        names = req.target_labels.iter().cloned().collect();
        for t in &req.target_labels {
            if !matchers.iter().any(|m| m.name() == t) {
                matchers.push(
                    LabelMatcher::new(t, MatchOp::Re, ".+")
                        .map_err(|e| LokiError::bad(e.to_string()))?,
                );
            }
        }
    }
    // Buckets: `[b, b + step)` on multiples of the step, the first from
    // `start`, the last to `end` (inclusive); each reported at its end.
    let (first, step, n) = match req.step {
        Some(0) => {
            return Err(LokiError::bad(
                "zero or negative query resolution step widths are not accepted: try a positive integer",
            ))
        }
        Some(step) => {
            let first = req.start - req.start % step;
            let n = (req.end - first) / step + 1;
            if n > limits.max_points {
                return Err(LokiError::bad(format!(
                    "exceeded maximum resolution of {} points per timeseries: try increasing the value of the step parameter",
                    limits.max_points
                )));
            }
            (first, step, n as usize)
        }
        None => (req.start, req.end.saturating_sub(req.start).saturating_add(1), 1),
    };
    let bucket_end =
        |i: usize| ((first + (i as u64 + 1) * step).saturating_sub(1_000_000)).min(req.end);
    let select = VolumeSelect(matchers);
    let snap = ring.snapshot();
    let seqs = seq_range(&snap, req.start, req.end.saturating_add(1));
    struct Acc {
        keys: KeyIndex,
        /// Per stream: the series it adds to.
        stream_series: Vec<Vec<u32>>,
        series: FxHashMap<Labels, u32>,
        bytes: Vec<Vec<u64>>,
    }
    let init = || Acc {
        keys: KeyIndex::default(),
        stream_series: Vec::new(),
        series: FxHashMap::default(),
        bytes: Vec::new(),
    };
    let by_names = req.by_label_names;
    let has_targets = !req.target_labels.is_empty();
    let visit = |acc: &mut Acc, e: &EntryRef<'_>| {
        let ts = entry_ts(e);
        if ts < req.start || ts > req.end {
            return;
        }
        let bucket = (((ts - first) / step) as usize).min(n - 1);
        let Acc {
            keys,
            stream_series,
            series,
            bytes,
        } = acc;
        let s = keys.get(e, || {
            let labels = stream_labels(e.origin, e.flags);
            let wanted = |k: &str| include_all || names.contains(k);
            let targets: Vec<Labels> = if by_names {
                // Every label of the stream, or only the targets.
                labels
                    .iter()
                    .filter(|(k, _)| !has_targets || wanted(k))
                    .map(|(k, _)| vec![(k.clone(), String::new())])
                    .collect()
            } else {
                vec![labels.into_iter().filter(|(k, _)| wanted(k)).collect()]
            };
            let ids = targets
                .into_iter()
                .map(|t| {
                    let next = series.len() as u32;
                    *series.entry(t).or_insert_with(|| {
                        bytes.push(vec![0; n]);
                        next
                    })
                })
                .collect();
            stream_series.push(ids);
            (stream_series.len() - 1) as u32
        }) as usize;
        for &i in &stream_series[s] {
            bytes[i as usize][bucket] += e.msg.len() as u64;
        }
    };
    let parts = scan(snap, seqs.start, seqs.end, &select, init, visit);
    let mut merged: BTreeMap<Labels, Vec<u64>> = BTreeMap::new();
    for part in parts {
        let mut by_index: Vec<(Labels, u32)> = part.series.into_iter().collect();
        by_index.sort_by_key(|(_, i)| *i);
        for (labels, i) in by_index {
            let m = merged.entry(labels).or_insert_with(|| vec![0; n]);
            for (a, b) in m.iter_mut().zip(&part.bytes[i as usize]) {
                *a += b;
            }
        }
    }
    if merged.len() > limits.max_series {
        return Err(too_many_series(limits.max_series));
    }
    // Each bucket keeps its `limit` largest series.
    let mut kept: BTreeMap<&Labels, Vec<Option<f64>>> = BTreeMap::new();
    for b in 0..n {
        let mut ranked: Vec<(&Labels, u64)> = merged
            .iter()
            .filter(|(_, v)| v[b] > 0)
            .map(|(l, v)| (l, v[b]))
            .collect();
        ranked.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(y.0)));
        for (labels, v) in ranked.into_iter().take(req.limit) {
            kept.entry(labels).or_insert_with(|| vec![None; n])[b] = Some(v as f64);
        }
    }
    let mut series: Vec<Series> = kept
        .into_iter()
        .map(|(labels, points)| Series {
            labels: labels.clone(),
            points,
        })
        .collect();
    let first_value = |s: &Series| s.points.iter().flatten().next().copied().unwrap_or(0.0);
    series.sort_by(|x, y| {
        first_value(y)
            .total_cmp(&first_value(x))
            .then_with(|| x.labels.cmp(&y.labels))
    });
    let matrix = series.iter().any(|s| s.points.iter().flatten().count() > 1);
    Ok(volume_answer(&series, &bucket_end, matrix))
}

/// A volume answer: a `matrix`, or (when every series has one point, as
/// Loki decides) a `vector`; each point at its bucket's end.
fn volume_answer(series: &[Series], bucket_end: &dyn Fn(usize) -> u64, matrix: bool) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":\"");
    out.extend_from_slice(if matrix {
        b"matrix"
    } else {
        b"vector" as &[u8]
    });
    out.extend_from_slice(b"\",\"result\":[");
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"metric\":");
        write_labels(
            &mut out,
            s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        out.extend_from_slice(if matrix {
            b",\"values\":["
        } else {
            b",\"value\":" as &[u8]
        });
        let mut first = true;
        for (b, p) in s.points.iter().enumerate() {
            let Some(v) = p else { continue };
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'[');
            write_secs(&mut out, bucket_end(b));
            out.push(b',');
            write_value(&mut out, *v);
            out.push(b']');
        }
        out.extend_from_slice(if matrix { b"]}" } else { b"}" as &[u8] });
    }
    out.extend_from_slice(b"],\"stats\":{}}}");
    out
}
