//! The values a template computes with, and how Go prints them (`%v`):
//! strings as they are, `1e+06` for a large float, `[a b]` for a list,
//! `map[a:1 b:2]` for a map, `2006-01-02 15:04:05.999999999 -0700 MST`
//! for a time, `<no value>` for nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::gotime::{self, Time};
use crate::serve::loki::logql::units;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Time(Time),
    List(Arc<Vec<Value>>),
    Map(Arc<BTreeMap<String, Value>>),
}

impl Value {
    /// Go's truth: false, 0, nil, and empty strings, lists and maps are
    /// false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Time(_) => true,
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// The Go type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Time(_) => "time.Time",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
        }
    }

    /// `fmt.Sprint` of the value.
    pub fn write(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&units::go_float(*f)),
            Value::Str(s) => out.push_str(s),
            Value::Time(t) => out.push_str(&gotime::format(t, gotime::TIME_STRING)),
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write(out);
                }
                out.push(']');
            }
        }
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }

    /// From decoded JSON (`fromJson`): numbers are float64, as in Go.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => {
                Value::List(Arc::new(a.iter().map(Value::from_json).collect()))
            }
            serde_json::Value::Object(o) => Value::Map(Arc::new(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            )),
        }
    }

    /// spf13/cast's `ToInt64`: numbers truncate, strings parse (`0x` and
    /// a trailing `.0` allowed), booleans are 0/1, anything else 0.
    pub fn to_i64(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            Value::Float(f) => *f as i64,
            Value::Bool(b) => *b as i64,
            Value::Str(s) => parse_int(s).unwrap_or(0),
            _ => 0,
        }
    }

    /// spf13/cast's `ToFloat64`.
    pub fn to_f64(&self) -> f64 {
        match self {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            Value::Bool(b) => *b as i64 as f64,
            Value::Str(s) => units::parse_float(s).unwrap_or(0.0),
            _ => 0.0,
        }
    }
}

/// `strconv.ParseInt(trimZeroDecimal(s), 0, 0)`.
pub fn parse_int(s: &str) -> Option<i64> {
    let mut t = s;
    if let Some((int, frac)) = t.split_once('.') {
        if !frac.is_empty() && frac.bytes().all(|b| b == b'0') || frac.is_empty() {
            t = int;
        }
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = body.to_ascii_lowercase();
    let v = if let Some(h) = lower.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()?
    } else if let Some(o) = lower.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()?
    } else if let Some(b) = lower.strip_prefix("0b") {
        i64::from_str_radix(b, 2).ok()?
    } else if lower.len() > 1 && lower.starts_with('0') {
        i64::from_str_radix(&lower[1..], 8).ok()?
    } else {
        lower.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_go() {
        let list = Value::List(Arc::new(vec![Value::Int(1), Value::Str("a".into())]));
        assert_eq!(list.to_text(), "[1 a]");
        let map = Value::from_json(&serde_json::json!({"b": 2, "a": [true, null]}));
        assert_eq!(map.to_text(), "map[a:[true <nil>] b:2]");
        assert_eq!(Value::Float(1e6).to_text(), "1e+06");
        assert!(!Value::Str(String::new()).truthy() && Value::Int(-1).truthy());
        assert_eq!(parse_int("0x1F"), Some(31));
        assert_eq!(parse_int("3.0"), Some(3));
        assert_eq!(parse_int("3.5"), None);
        assert_eq!(Value::Str("12".into()).to_i64(), 12);
    }
}
