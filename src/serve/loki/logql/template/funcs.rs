//! The functions a LogQL template may call: Go's builtins, the Sprig
//! functions Loki registers, and Loki's own (`pkg/logql/log/fmt.go`),
//! each with the semantics of its source (Sprig's byte-based `trunc` and
//! `substr`, Go's `strings.Title`, `cast`'s string-to-number rules, ...).
//! [`NAMES`] is the list; the docs of Loki's template functions describe
//! each.
//!
//! Where Go's template engine would refuse an argument of the wrong type
//! (an int where a function takes a string), these functions convert it:
//! label values are strings, so the difference shows only with literals.

use std::sync::Arc;

use base64::Engine as _;

use super::exec::Exec;
use super::gotime::{self, Time};
use super::value::Value;
use crate::serve::loki::logql::units;
use crate::timefmt::now_ns;

/// Every function name a template may use.
pub const NAMES: &[&str] = &[
    // Go builtins.
    "and",
    "or",
    "not",
    "len",
    "index",
    "slice",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "js",
    "urlquery",
    // Loki.
    "__line__",
    "__timestamp__",
    "ToLower",
    "ToUpper",
    "Replace",
    "Trim",
    "TrimLeft",
    "TrimRight",
    "TrimPrefix",
    "TrimSuffix",
    "TrimSpace",
    "regexReplaceAll",
    "regexReplaceAllLiteral",
    "count",
    "urldecode",
    "urlencode",
    "bytes",
    "duration",
    "duration_seconds",
    "unixEpochMillis",
    "unixEpochNanos",
    "toDateInZone",
    "unixToTime",
    "alignLeft",
    "alignRight",
    "b64dec",
    // Sprig.
    "b64enc",
    "lower",
    "upper",
    "title",
    "trunc",
    "substr",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "indent",
    "nindent",
    "replace",
    "repeat",
    "trim",
    "trimAll",
    "trimSuffix",
    "trimPrefix",
    "int",
    "float64",
    "add",
    "sub",
    "mul",
    "div",
    "mod",
    "addf",
    "subf",
    "mulf",
    "divf",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "fromJson",
    "date",
    "toDate",
    "now",
    "unixEpoch",
    "default",
];

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn arity_min(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() < n {
        return Err(format!(
            "wrong number of args for {name}: want at least {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn s(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Nil => String::new(),
        v => v.to_text(),
    }
}

fn string(v: String) -> Value {
    Value::Str(v)
}

fn time_arg(v: &Value) -> Result<Time, String> {
    match v {
        Value::Time(t) => Ok(t.clone()),
        other => Err(format!(
            "wrong type for value; expected time.Time; got {}",
            other.type_name()
        )),
    }
}

/// Sprig's `empty`: the zero value of its type.
fn empty(v: &Value) -> bool {
    !v.truthy() && !matches!(v, Value::Time(_))
}

fn regex(re: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(re)
        .size_limit(crate::filter::REGEX_SIZE_LIMIT)
        .dfa_size_limit(crate::filter::REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("error parsing regexp: {e}"))
}

pub fn call(ex: &mut Exec<'_>, name: &str, args: Vec<Value>) -> Result<Value, String> {
    let a = &args;
    Ok(match name {
        // ---- Go builtins ----
        "not" => {
            arity(name, a, 1)?;
            Value::Bool(!a[0].truthy())
        }
        "len" => {
            arity(name, a, 1)?;
            Value::Int(match &a[0] {
                Value::Str(s) => s.len(),
                Value::List(l) => l.len(),
                Value::Map(m) => m.len(),
                other => return Err(format!("len of type {}", other.type_name())),
            } as i64)
        }
        "index" => {
            arity_min(name, a, 1)?;
            let mut v = a[0].clone();
            for k in &a[1..] {
                v = match (&v, k) {
                    (Value::Map(m), k) => m.get(&s(k)).cloned().unwrap_or(Value::Nil),
                    (Value::List(l), Value::Int(i)) => l
                        .get(*i as usize)
                        .cloned()
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    (Value::Str(st), Value::Int(i)) => Value::Int(
                        *st.as_bytes()
                            .get(*i as usize)
                            .ok_or_else(|| format!("index out of range: {i}"))?
                            as i64,
                    ),
                    (v, _) => return Err(format!("can't index item of type {}", v.type_name())),
                };
            }
            v
        }
        "slice" => {
            arity_min(name, a, 1)?;
            let idx: Vec<i64> = a[1..].iter().map(Value::to_i64).collect();
            match &a[0] {
                Value::Str(st) => {
                    let (i, j) = (
                        *idx.first().unwrap_or(&0) as usize,
                        *idx.get(1).unwrap_or(&(st.len() as i64)) as usize,
                    );
                    if i > j || j > st.len() {
                        return Err(format!("index out of range: {j}"));
                    }
                    string(String::from_utf8_lossy(&st.as_bytes()[i..j]).into_owned())
                }
                Value::List(l) => {
                    let (i, j) = (
                        *idx.first().unwrap_or(&0) as usize,
                        *idx.get(1).unwrap_or(&(l.len() as i64)) as usize,
                    );
                    if i > j || j > l.len() {
                        return Err(format!("index out of range: {j}"));
                    }
                    Value::List(Arc::new(l[i..j].to_vec()))
                }
                v => return Err(format!("can't slice item of type {}", v.type_name())),
            }
        }
        "print" => string(sprint(a)),
        "println" => {
            let mut out: Vec<String> = a.iter().map(Value::to_text).collect::<Vec<_>>();
            out.push(String::new());
            string(out.join(" ").trim_end_matches(' ').to_string() + "\n")
        }
        "printf" => {
            arity_min(name, a, 1)?;
            string(sprintf(&s(&a[0]), &a[1..]))
        }
        "eq" => {
            arity_min(name, a, 2)?;
            let mut any = false;
            for b in &a[1..] {
                if compare(&a[0], b)? == std::cmp::Ordering::Equal {
                    any = true;
                }
            }
            Value::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(name, a, 2)?;
            let o = compare(&a[0], &a[1])?;
            if name != "ne" && matches!(a[0], Value::Bool(_) | Value::Nil) {
                return Err("invalid type for comparison".into());
            }
            use std::cmp::Ordering::*;
            Value::Bool(match name {
                "ne" => o != Equal,
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            })
        }
        "html" => string(
            sprint(a)
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&#34;")
                .replace('\'', "&#39;"),
        ),
        "js" => {
            let mut out = String::new();
            for c in sprint(a).chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    '"' => out.push_str("\\\""),
                    '<' => out.push_str("\\u003C"),
                    '>' => out.push_str("\\u003E"),
                    '&' => out.push_str("\\u0026"),
                    '=' => out.push_str("\\u003D"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
                    c => out.push(c),
                }
            }
            string(out)
        }
        "urlquery" | "urlencode" => {
            let text = if name == "urlencode" {
                arity(name, a, 1)?;
                s(&a[0])
            } else {
                sprint(a)
            };
            string(form_urlencoded::byte_serialize(text.as_bytes()).collect())
        }
        // ---- Loki ----
        "__line__" => {
            arity(name, a, 0)?;
            string(String::from_utf8_lossy(ex.line).into_owned())
        }
        "__timestamp__" => {
            arity(name, a, 0)?;
            Value::Time(Time::from_unix_nanos(ex.ts_ns as i128))
        }
        "ToLower" | "lower" => {
            arity(name, a, 1)?;
            string(s(&a[0]).to_lowercase())
        }
        "ToUpper" | "upper" => {
            arity(name, a, 1)?;
            string(s(&a[0]).to_uppercase())
        }
        "Replace" => {
            arity(name, a, 4)?;
            let n = a[3].to_i64();
            let (src, old, new) = (s(&a[0]), s(&a[1]), s(&a[2]));
            string(if n < 0 {
                src.replace(&old, &new)
            } else {
                src.replacen(&old, &new, n as usize)
            })
        }
        "Trim" | "trimAll" => {
            arity(name, a, 2)?;
            let (src, cut) = if name == "Trim" {
                (s(&a[0]), s(&a[1]))
            } else {
                (s(&a[1]), s(&a[0]))
            };
            string(src.trim_matches(|c| cut.contains(c)).to_string())
        }
        "TrimLeft" => {
            arity(name, a, 2)?;
            let cut = s(&a[1]);
            string(s(&a[0]).trim_start_matches(|c| cut.contains(c)).to_string())
        }
        "TrimRight" => {
            arity(name, a, 2)?;
            let cut = s(&a[1]);
            string(s(&a[0]).trim_end_matches(|c| cut.contains(c)).to_string())
        }
        "TrimPrefix" | "trimPrefix" => {
            arity(name, a, 2)?;
            let (src, p) = if name == "TrimPrefix" {
                (s(&a[0]), s(&a[1]))
            } else {
                (s(&a[1]), s(&a[0]))
            };
            string(
                src.strip_prefix(p.as_str())
                    .map(str::to_string)
                    .unwrap_or(src.clone()),
            )
        }
        "TrimSuffix" | "trimSuffix" => {
            arity(name, a, 2)?;
            let (src, p) = if name == "TrimSuffix" {
                (s(&a[0]), s(&a[1]))
            } else {
                (s(&a[1]), s(&a[0]))
            };
            string(
                src.strip_suffix(p.as_str())
                    .map(str::to_string)
                    .unwrap_or(src.clone()),
            )
        }
        "TrimSpace" | "trim" => {
            arity(name, a, 1)?;
            string(s(&a[0]).trim().to_string())
        }
        "regexReplaceAll" | "regexReplaceAllLiteral" => {
            arity(name, a, 3)?;
            let re = regex(&s(&a[0]))?;
            let (src, repl) = (s(&a[1]), s(&a[2]));
            let out = if name == "regexReplaceAll" {
                re.replace_all(&src, repl.as_str()).into_owned()
            } else {
                re.replace_all(&src, regex::NoExpand(&repl)).into_owned()
            };
            ex.bounded(string(out))?
        }
        "count" => {
            arity(name, a, 2)?;
            Value::Int(regex(&s(&a[0]))?.find_iter(&s(&a[1])).count() as i64)
        }
        "urldecode" => {
            arity(name, a, 1)?;
            string(query_unescape(&s(&a[0]))?)
        }
        "bytes" => {
            arity(name, a, 1)?;
            Value::Float(units::parse_bytes(&s(&a[0])).map_err(|e| e.to_string())? as f64)
        }
        "duration" | "duration_seconds" => {
            arity(name, a, 1)?;
            Value::Float(units::go_duration(&s(&a[0])).map_err(|e| e.to_string())? as f64 / 1e9)
        }
        "unixEpochMillis" => {
            arity(name, a, 1)?;
            string((time_arg(&a[0])?.unix_nanos().div_euclid(1_000_000)).to_string())
        }
        "unixEpochNanos" => {
            arity(name, a, 1)?;
            string(time_arg(&a[0])?.unix_nanos().to_string())
        }
        "unixEpoch" => {
            arity(name, a, 1)?;
            string(time_arg(&a[0])?.secs.to_string())
        }
        "toDateInZone" => {
            arity(name, a, 3)?;
            let zone = s(&a[1]);
            let (off, zname) = known_zone(&zone);
            Value::Time(gotime::parse(&s(&a[0]), &s(&a[2]), off, &zname).unwrap_or_else(Time::zero))
        }
        "toDate" => {
            arity(name, a, 2)?;
            Value::Time(gotime::parse(&s(&a[0]), &s(&a[1]), 0, "UTC").unwrap_or_else(Time::zero))
        }
        "unixToTime" => {
            arity(name, a, 1)?;
            let e = s(&a[0]);
            let i: i64 = e.parse().map_err(|_| {
                format!(
                    "unable to parse time '{e}': strconv.ParseInt: parsing {}: invalid syntax",
                    units::go_quote(&e)
                )
            })?;
            let ns: i128 = match e.len() {
                5 => i as i128 * 86_400 * 1_000_000_000,
                10 => i as i128 * 1_000_000_000,
                13 => i as i128 * 1_000_000,
                16 => i as i128 * 1_000,
                19 => i as i128,
                _ => return Err(format!("unable to parse time '{e}': %!w(<nil>)")),
            };
            Value::Time(Time::from_unix_nanos(ns))
        }
        "alignLeft" | "alignRight" => {
            arity(name, a, 2)?;
            let count = a[0].to_i64();
            let src = s(&a[1]);
            let chars: Vec<char> = src.chars().collect();
            let l = chars.len() as i64;
            if count < 0 || count == l {
                string(src)
            } else if count > l {
                if count as usize > ex.max_output {
                    return Err(format!("alignment {count} exceeds the output bound"));
                }
                let pad = " ".repeat((count - l) as usize);
                string(if name == "alignLeft" {
                    src + &pad
                } else {
                    pad + &src
                })
            } else if name == "alignLeft" {
                string(chars[..count as usize].iter().collect())
            } else {
                string(chars[(l - count) as usize..].iter().collect())
            }
        }
        "b64dec" => {
            arity(name, a, 1)?;
            let mut v = s(&a[0]);
            let rem = v.len() % 4;
            if rem != 0 && rem != 1 {
                v.push_str(&"=".repeat(4 - rem));
            }
            string(
                match base64::engine::general_purpose::STANDARD.decode(v.as_bytes()) {
                    Ok(d) => String::from_utf8_lossy(&d).into_owned(),
                    Err(e) => go_base64_error(&e),
                },
            )
        }
        "b64enc" => {
            arity(name, a, 1)?;
            string(base64::engine::general_purpose::STANDARD.encode(s(&a[0]).as_bytes()))
        }
        // ---- Sprig ----
        "title" => {
            arity(name, a, 1)?;
            string(title(&s(&a[0])))
        }
        "trunc" => {
            arity(name, a, 2)?;
            let (c, st) = (a[0].to_i64(), s(&a[1]));
            let l = st.len() as i64;
            let b = st.as_bytes();
            string(if c < 0 && l + c > 0 {
                String::from_utf8_lossy(&b[(l + c) as usize..]).into_owned()
            } else if c >= 0 && l > c {
                String::from_utf8_lossy(&b[..c as usize]).into_owned()
            } else {
                st
            })
        }
        "substr" => {
            arity(name, a, 3)?;
            let (start, end, st) = (a[0].to_i64(), a[1].to_i64(), s(&a[2]));
            let b = st.as_bytes();
            let l = b.len() as i64;
            let piece = if start < 0 {
                b.get(..end.max(0) as usize)
            } else if end < 0 || end > l {
                b.get(start as usize..)
            } else {
                b.get(start as usize..end as usize)
            };
            let piece =
                piece.ok_or_else(|| format!("slice bounds out of range [{start}:{end}]"))?;
            string(String::from_utf8_lossy(piece).into_owned())
        }
        "contains" => {
            arity(name, a, 2)?;
            Value::Bool(s(&a[1]).contains(&s(&a[0])))
        }
        "hasPrefix" => {
            arity(name, a, 2)?;
            Value::Bool(s(&a[1]).starts_with(&s(&a[0])))
        }
        "hasSuffix" => {
            arity(name, a, 2)?;
            Value::Bool(s(&a[1]).ends_with(&s(&a[0])))
        }
        "indent" | "nindent" => {
            arity(name, a, 2)?;
            let n = a[0].to_i64().max(0) as usize;
            let src = s(&a[1]);
            if n.saturating_mul(src.lines().count() + 1) > ex.max_output {
                return Err(format!("indent {n} exceeds the output bound"));
            }
            let pad = " ".repeat(n);
            let out = pad.clone() + &src.replace('\n', &format!("\n{pad}"));
            ex.bounded(string(if name == "nindent" {
                format!("\n{out}")
            } else {
                out
            }))?
        }
        "replace" => {
            arity(name, a, 3)?;
            let (old, new, src) = (s(&a[0]), s(&a[1]), s(&a[2]));
            let grows = if old.is_empty() {
                src.len() + 1
            } else {
                src.len() / old.len()
            };
            if grows.saturating_mul(new.len()) > ex.max_output {
                return Err("the replacement exceeds the output bound".into());
            }
            string(src.replace(&old, &new))
        }
        "repeat" => {
            arity(name, a, 2)?;
            let (n, st) = (a[0].to_i64(), s(&a[1]));
            if n < 0 {
                return Err("strings: negative Repeat count".into());
            }
            if (n as usize).saturating_mul(st.len()) > ex.max_output {
                return Err(format!("repeat {n} exceeds the output bound"));
            }
            string(st.repeat(n as usize))
        }
        "int" => {
            arity(name, a, 1)?;
            Value::Int(a[0].to_i64())
        }
        "float64" => {
            arity(name, a, 1)?;
            Value::Float(a[0].to_f64())
        }
        "add" => Value::Int(a.iter().map(Value::to_i64).fold(0i64, i64::wrapping_add)),
        "mul" => {
            arity_min(name, a, 1)?;
            Value::Int(a.iter().map(Value::to_i64).fold(1i64, i64::wrapping_mul))
        }
        "sub" | "div" | "mod" => {
            arity(name, a, 2)?;
            let (x, y) = (a[0].to_i64(), a[1].to_i64());
            Value::Int(match name {
                "sub" => x.wrapping_sub(y),
                _ if y == 0 => return Err("runtime error: integer divide by zero".into()),
                "div" => x.wrapping_div(y),
                _ => x.wrapping_rem(y),
            })
        }
        "max" | "min" => {
            arity_min(name, a, 1)?;
            let it = a.iter().map(Value::to_i64);
            Value::Int(if name == "max" { it.max() } else { it.min() }.expect("one argument"))
        }
        "addf" | "subf" | "mulf" | "divf" | "maxf" | "minf" => {
            arity_min(name, a, 1)?;
            let mut it = a.iter().map(Value::to_f64);
            let first = it.next().expect("one argument");
            let v = if name == "addf" {
                it.fold(first, |x, y| x + y)
            } else if name == "subf" {
                it.fold(first, |x, y| x - y)
            } else if name == "mulf" {
                it.fold(first, |x, y| x * y)
            } else if name == "divf" {
                let mut acc = first;
                for y in it {
                    if y == 0.0 {
                        return Err("decimal division by 0".into());
                    }
                    acc /= y;
                }
                acc
            } else if name == "maxf" {
                it.fold(first, f64::max)
            } else {
                it.fold(first, f64::min)
            };
            Value::Float(v)
        }
        "ceil" => {
            arity(name, a, 1)?;
            Value::Float(a[0].to_f64().ceil())
        }
        "floor" => {
            arity(name, a, 1)?;
            Value::Float(a[0].to_f64().floor())
        }
        "round" => {
            arity_min(name, a, 2)?;
            let round_on = a.get(2).map_or(0.5, Value::to_f64);
            let pow = 10f64.powf(a[1].to_i64() as f64);
            let digit = pow * a[0].to_f64();
            let frac = digit.fract();
            let r = if frac >= round_on {
                digit.ceil()
            } else {
                digit.floor()
            };
            Value::Float(r / pow)
        }
        "fromJson" => {
            arity(name, a, 1)?;
            match serde_json::from_str::<serde_json::Value>(&s(&a[0])) {
                Ok(v) => Value::from_json(&v),
                Err(_) => string(String::new()),
            }
        }
        "date" => {
            arity(name, a, 2)?;
            let t = match &a[1] {
                Value::Time(t) => t.clone(),
                Value::Int(secs) => Time::from_unix_nanos(*secs as i128 * 1_000_000_000),
                _ => Time::from_unix_nanos(now_ns() as i128),
            };
            string(gotime::format(&t, &s(&a[0])))
        }
        "now" => {
            arity(name, a, 0)?;
            Value::Time(Time::from_unix_nanos(now_ns() as i128))
        }
        "default" => {
            arity_min(name, a, 1)?;
            match a.get(1) {
                Some(g) if !empty(g) => g.clone(),
                _ => a[0].clone(),
            }
        }
        _ => return Err(format!("function {name:?} not defined")),
    })
}

/// A zone for `toDateInZone`: UTC and Local (UTC here); any other name is
/// UTC too, as Go falls back when it cannot load a zone.
fn known_zone(_zone: &str) -> (i32, String) {
    (0, "UTC".into())
}

fn go_base64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => {
            format!("illegal base64 data at input byte {at}")
        }
        _ => "illegal base64 data at input byte 0".into(),
    }
}

/// Go's `url.QueryUnescape`.
fn query_unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => out.push(v),
                    None => {
                        let bad: String = s[i..].chars().take(3).collect();
                        return Err(format!("invalid URL escape {}", units::go_quote(&bad)));
                    }
                }
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's deprecated `strings.Title`: upper-cases each letter that starts a
/// word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_');
    }
    out
}

/// Go's template comparison of basic values.
fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => Ok(x.partial_cmp(y).unwrap_or(Ordering::Less)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Nil, Value::Nil) => Ok(Ordering::Equal),
        _ => Err("incompatible types for comparison".into()),
    }
}

/// `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !matches!(v, Value::Str(_)) && !matches!(a[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        v.write(&mut out);
    }
    out
}

/// `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %f %e %g %x
/// %X %o %b %c %t %%`, with flags `-+# 0`, width and precision (`*` too).
/// A value of the wrong kind prints as Go does: `%!d(string=abc)`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = format.chars().peekable();
    let mut argi = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut sharp, mut zero, mut space) =
            (false, false, false, false, false);
        while let Some(&f) = it.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '#' => sharp = true,
                '0' => zero = true,
                ' ' => space = true,
                _ => break,
            }
            it.next();
        }
        let num = |it: &mut std::iter::Peekable<std::str::Chars<'_>>,
                   argi: &mut usize|
         -> Option<usize> {
            if it.peek() == Some(&'*') {
                it.next();
                let v = args.get(*argi).map(Value::to_i64);
                *argi += 1;
                return v.map(|v| v.clamp(0, 1 << 20) as usize);
            }
            let mut n: Option<usize> = None;
            while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
                n = Some((n.unwrap_or(0) * 10 + d as usize).min(1 << 20));
                it.next();
            }
            n
        };
        let width = num(&mut it, &mut argi);
        let mut prec = None;
        if it.peek() == Some(&'.') {
            it.next();
            prec = Some(num(&mut it, &mut argi).unwrap_or(0));
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argi) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        argi += 1;
        let bad = |arg: &Value| format!("%!{verb}({}={})", arg.type_name(), arg.to_text());
        let sign = |neg: bool| {
            if neg {
                "-"
            } else if plus {
                "+"
            } else if space {
                " "
            } else {
                ""
            }
        };
        let body: String = match (verb, arg) {
            ('v', Value::Float(f)) if prec.is_some() => {
                format!("{}{:.*}", sign(*f < 0.0), prec.unwrap_or(0), f.abs())
            }
            ('v', v) => {
                let t = v.to_text();
                if plus && matches!(v, Value::Int(_) | Value::Float(_)) && !t.starts_with('-') {
                    format!("+{t}")
                } else {
                    t
                }
            }
            ('s', v) => {
                let t = if let Value::Str(s) = v {
                    s.clone()
                } else {
                    v.to_text()
                };
                match prec {
                    Some(p) => t.chars().take(p).collect(),
                    None => t,
                }
            }
            ('q', Value::Str(st)) => units::go_quote(st),
            ('q', Value::Int(i)) => {
                format!("'{}'", char::from_u32(*i as u32).unwrap_or('\u{FFFD}'))
            }
            ('d', Value::Int(i)) => format!("{}{}", sign(*i < 0), i.unsigned_abs()),
            ('t', Value::Bool(b)) => b.to_string(),
            ('c', Value::Int(i)) => char::from_u32(*i as u32).unwrap_or('\u{FFFD}').to_string(),
            ('x' | 'X' | 'o' | 'b', Value::Int(i)) => {
                let mag = i.unsigned_abs();
                let digits = match verb {
                    'x' => format!("{mag:x}"),
                    'X' => format!("{mag:X}"),
                    'o' => format!("{mag:o}"),
                    _ => format!("{mag:b}"),
                };
                let prefix = match (sharp, verb) {
                    (true, 'x') => "0x",
                    (true, 'X') => "0X",
                    (true, 'o') => "0",
                    (true, 'b') => "0b",
                    _ => "",
                };
                format!("{}{prefix}{digits}", sign(*i < 0))
            }
            ('x' | 'X', Value::Str(st)) => {
                let h: String = st.bytes().map(|b| format!("{b:02x}")).collect();
                if verb == 'X' {
                    h.to_uppercase()
                } else {
                    h
                }
            }
            ('f' | 'F', Value::Float(f)) => {
                format!("{}{:.*}", sign(*f < 0.0), prec.unwrap_or(6), f.abs())
            }
            ('e' | 'E', Value::Float(f)) => {
                let t = go_exp(f.abs(), prec.unwrap_or(6));
                let t = if verb == 'E' { t.to_uppercase() } else { t };
                format!("{}{t}", sign(*f < 0.0))
            }
            ('g' | 'G', Value::Float(f)) => {
                let t = match prec {
                    None => units::go_float(f.abs()),
                    Some(p) => {
                        let p = p.max(1);
                        let exp = if *f == 0.0 {
                            0
                        } else {
                            f.abs().log10().floor() as i32
                        };
                        if exp < -4 || exp >= p as i32 {
                            go_exp(f.abs(), p - 1)
                        } else {
                            let s = format!("{:.*}", (p as i32 - 1 - exp).max(0) as usize, f.abs());
                            if s.contains('.') {
                                s.trim_end_matches('0').trim_end_matches('.').to_string()
                            } else {
                                s
                            }
                        }
                    }
                };
                format!("{}{t}", sign(*f < 0.0))
            }
            (_, v) => bad(v),
        };
        let len = body.chars().count();
        match width {
            Some(w) if w > len => {
                let pad = w - len;
                if minus {
                    out.push_str(&body);
                    out.push_str(&" ".repeat(pad));
                } else if zero
                    && matches!(verb, 'd' | 'f' | 'F' | 'e' | 'g' | 'x' | 'X' | 'o' | 'b')
                {
                    let (sgn, digits) = match body.chars().next() {
                        Some(c @ ('-' | '+' | ' ')) => (c.to_string(), body[1..].to_string()),
                        _ => (String::new(), body.clone()),
                    };
                    out.push_str(&sgn);
                    out.push_str(&"0".repeat(pad));
                    out.push_str(&digits);
                } else {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(&body);
                }
            }
            _ => out.push_str(&body),
        }
    }
    if argi < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[argi..]
            .iter()
            .map(|v| format!("{}={}", v.type_name(), v.to_text()))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

/// `%e` with Go's two-digit exponent.
fn go_exp(f: f64, prec: usize) -> String {
    let s = format!("{f:.prec$e}");
    let (m, e) = s.split_once('e').expect("exponent");
    let e: i32 = e.parse().expect("exponent");
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_like_go() {
        let v = |s: &str| Value::Str(s.into());
        assert_eq!(
            sprintf("The IP address was %s", &[v("129.168.1.1")]),
            "The IP address was 129.168.1.1"
        );
        assert_eq!(sprintf("%-10.3s|", &[v("abcdef")]), "abc       |");
        assert_eq!(
            sprintf(
                "%5d|%-4d|%05d",
                &[Value::Int(42), Value::Int(7), Value::Int(-3)]
            ),
            "   42|7   |-0003"
        );
        assert_eq!(
            sprintf(
                "%.2f %e %g",
                &[
                    Value::Float(1.23456),
                    Value::Float(1234.5),
                    Value::Float(1e-7)
                ]
            ),
            "1.23 1.234500e+03 1e-07"
        );
        assert_eq!(sprintf("%d", &[v("x")]), "%!d(string=x)");
        assert_eq!(sprintf("%s %s", &[v("a")]), "a %!s(MISSING)");
        assert_eq!(
            sprintf(
                "%x %q %v%%",
                &[Value::Int(255), v("q\""), Value::Bool(true)]
            ),
            "ff \"q\\\"\" true%"
        );
        assert_eq!(sprintf("a", &[Value::Int(1)]), "a%!(EXTRA int=1)");
    }

    #[test]
    fn helpers() {
        assert_eq!(title("hello world-wide_web"), "Hello World-Wide_web");
        assert_eq!(query_unescape("a+b%20c").unwrap(), "a b c");
        assert!(query_unescape("%zz").is_err());
        assert_eq!(
            sprint(&[
                Value::Int(1),
                Value::Int(2),
                Value::Str("a".into()),
                Value::Int(3)
            ]),
            "1 2a3"
        );
    }
}
