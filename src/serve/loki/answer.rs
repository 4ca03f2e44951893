//! Loki's JSON answers: the envelope, `streams`, `matrix`, `vector` and
//! `scalar`, written straight into a byte buffer (a log answer can be
//! megabytes; building a `serde_json::Value` first would double it).

use crate::format::json_str;
use crate::timefmt::NANOS_PER_SEC;

use super::logql::eval::logs::LogStreams;
use super::logql::eval::{Labels, Series, Steps, Value};

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
    out.extend_from_slice(super::logql::units::sample_value(v).as_bytes());
    out.push(b'"');
}

pub fn streams_json(streams: &LogStreams) -> Vec<u8> {
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

pub fn matrix_json(steps: &Steps, value: Value) -> Vec<u8> {
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

pub fn vector_json(time: u64, value: Value) -> Vec<u8> {
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

    const S: u64 = NANOS_PER_SEC;

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
