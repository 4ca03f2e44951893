//! A query request in, Loki's JSON answer out: parse, evaluate over a
//! ring snapshot ([`super::logql::eval`]), render ([`super::answer`]).
//!
//! Metric queries are evaluated at steps aligned on multiples of `step`
//! (as Loki and Prometheus align them), so the points of successive
//! refreshes fall on the same times; at most `max_points` per series.

use crate::ring::Ring;

use super::answer::{matrix_json, streams_json, vector_json};
use super::logql::eval::{logs, Eval, Steps};
use super::logql::{self, Expr};
use super::params::Direction;
use super::{LokiError, LokiLimits};

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

pub fn parse(query: &str) -> Result<Expr, LokiError> {
    logql::parse(query).map_err(|e| LokiError::bad(e.to_string()))
}

/// The steps of a range request: aligned on the step, bounded.
pub fn range_steps(
    start: u64,
    end: u64,
    step: Option<u64>,
    limits: &LokiLimits,
) -> Result<Steps, LokiError> {
    let step = step.unwrap_or_else(|| super::params::default_step(start, end));
    if step == 0 {
        return Err(LokiError::bad(
            "zero or negative query resolution step widths are not accepted: try a positive integer",
        ));
    }
    let start = start - start % step;
    let end = end - end % step;
    let n = (end - start) / step + 1;
    if n > limits.max_points {
        return Err(LokiError::bad(format!(
            "exceeded maximum resolution of {} points per timeseries: try increasing the value of the step parameter",
            limits.max_points
        )));
    }
    Ok(Steps {
        start,
        step,
        n: n as usize,
    })
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
        let streams = logs::run(
            snap,
            log,
            req.start,
            req.end,
            req.limit,
            req.direction,
            limits.max_series,
        )?;
        return Ok(streams_json(&streams));
    }
    let steps = range_steps(req.start, req.end, req.step, limits)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Flags, Origin, Stream};
    use crate::ring::{Read, ReadBatch, ReadStatus, RingConfig};
    use crate::serve::loki::logql::eval::range::steps_for;
    use crate::timefmt::NANOS_PER_SEC;
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
}
