//! The value syntaxes LogQL borrows from Go and Prometheus, read and
//! written exactly as Loki does, because their texts reach the user:
//!
//! | what | where Loki uses it | here |
//! |------|--------------------|------|
//! | Go durations (`1.5h`, `300ms`, `-2m`) | label filters, `unwrap duration()`, template `duration` | [`go_duration`] |
//! | Prometheus durations (`1h30m`, `2d`, `1w`) | `offset`, duration literals | [`prom_duration`] |
//! | humanized bytes (`20MB`, `1.5 KiB`, `3k`) | label filters, `unwrap bytes()`, template `bytes` | [`parse_bytes`] |
//! | Go's `strconv.ParseFloat` | numeric label filters, `unwrap` | [`parse_float`] |
//! | Go's `%v` of a float (`1e+06`, `0.5`) | template output | [`go_float`] |
//!
//! Error texts are Go's (`time: unknown unit "x" in duration "1x"`): they
//! end up in `__error_details__`, where a user compares them with Loki's.

use std::fmt;

/// A value that did not convert; `Display` is Go's message for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvError(pub String);

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Go's `strconv.Quote` for the texts that appear in messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.ParseDuration`, in ns: `[-+]?([0-9]*(\.[0-9]*)?unit)+` with
/// units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`.
pub fn go_duration(orig: &str) -> Result<i64, ConvError> {
    let invalid = || ConvError(format!("time: invalid duration {}", go_quote(orig)));
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Whole part.
        let mut i = 0;
        let mut v: u64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add((b[i] - b'0') as u64))
                .filter(|&v| v <= 1 << 63)
                .ok_or_else(invalid)?;
            i += 1;
        }
        let pre = i > 0;
        // Fraction: digits past what fits are ignored, as in Go.
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            let mut overflow = false;
            while i < b.len() && b[i].is_ascii_digit() {
                if !overflow {
                    match f
                        .checked_mul(10)
                        .and_then(|y| y.checked_add((b[i] - b'0') as u64))
                        .filter(|&y| y <= 1 << 63)
                    {
                        Some(y) => {
                            f = y;
                            scale *= 10.0;
                        }
                        None => overflow = true,
                    }
                }
                i += 1;
            }
            post = i > start;
        }
        if !pre && !post {
            return Err(invalid());
        }
        let rest = &s[i..];
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(ConvError(format!(
                "time: missing unit in duration {}",
                go_quote(orig)
            )));
        }
        let unit_text = &rest[..unit_len];
        let unit: u64 = match unit_text {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(ConvError(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(unit_text),
                    go_quote(orig)
                )))
            }
        };
        s = &rest[unit_len..];
        if v > (1u64 << 63) / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > 1 << 63 {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(v)
            .filter(|&t| t <= 1 << 63)
            .ok_or_else(invalid)?;
    }
    if neg {
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Prometheus's `model.ParseDuration`, in ns: `0`, or units in the order
/// `y w d h m s ms`, each at most once, whole numbers only.
pub fn prom_duration(s: &str) -> Result<u64, ConvError> {
    let bad = || ConvError(format!("not a valid duration string: {}", go_quote(s)));
    if s.is_empty() {
        return Err(ConvError("empty duration string".into()));
    }
    if s == "0" {
        return Ok(0);
    }
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000_000_000),
        ("w", 7 * 86_400_000_000_000),
        ("d", 86_400_000_000_000),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    let b = s.as_bytes();
    let (mut i, mut next_unit, mut total) = (0usize, 0usize, 0u64);
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        let n: u64 = s[start..i].parse().map_err(|_| bad())?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let at = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        let mult = UNITS[next_unit + at].1;
        next_unit += at + 1;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// A LogQL duration literal: Prometheus's syntax first, Go's as a fallback
/// (so `1.5h` and `300µs` work too), as Loki's lexer reads it. Negative
/// values are allowed where Go allows them.
pub fn logql_duration(s: &str) -> Result<i64, ConvError> {
    match prom_duration(s) {
        Ok(ns) => i64::try_from(ns).map_err(|_| ConvError(format!("duration {s} is too long"))),
        Err(_) => go_duration(s),
    }
}

/// `go-humanize`'s `ParseBytes`: a decimal number (`,` ignored) and an
/// optional unit, any case: `b`, `k`/`kb` (1000), `ki`/`kib` (1024), and the
/// same for `m`, `g`, `t`, `p`, `e`.
pub fn parse_bytes(s: &str) -> Result<u64, ConvError> {
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(s.len());
    let num: String = s[..digits].chars().filter(|&c| c != ',').collect();
    let f: f64 = parse_float(&num)?;
    let unit = s[digits..].trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        "p" | "pb" => 1_000_000_000_000_000,
        "pi" | "pib" => 1 << 50,
        "e" | "eb" => 1_000_000_000_000_000_000,
        "ei" | "eib" => 1 << 60,
        _ => return Err(ConvError(format!("unhandled size name: {unit}"))),
    };
    let v = f * mult as f64;
    if v >= u64::MAX as f64 {
        return Err(ConvError(format!("too large: {s}")));
    }
    Ok(v as u64)
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal text: signs, `.5`, `5.`,
/// exponents, `inf`/`infinity`/`nan` in any case; Go's message otherwise.
pub fn parse_float(s: &str) -> Result<f64, ConvError> {
    let err = || {
        ConvError(format!(
            "strconv.ParseFloat: parsing {}: invalid syntax",
            go_quote(s)
        ))
    };
    // Rust accepts the same decimal forms; refuse what Go refuses and Rust
    // would take (nothing but digits, sign, dot, exponent and the words).
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    // Called once per unwrapped line: no lowercased copy for the words.
    if ["inf", "infinity", "nan"]
        .iter()
        .any(|w| body.eq_ignore_ascii_case(w))
    {
        return s.parse::<f64>().map_err(|_| err());
    }
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(err());
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err(ConvError(format!(
            "strconv.ParseFloat: parsing {}: value out of range",
            go_quote(s)
        ))),
        Ok(v) => Ok(v),
        Err(_) => Err(err()),
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`, which `%v` and template
/// output use: the shortest digits that read back, in exponent form
/// (`1e+06`, `1.5e-05`) when the decimal exponent is below -4 or at least
/// 6, as Go decides for the shortest form.
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "1.5e-5".
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("exponent");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
        return out;
    }
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = (exp + 1) as usize;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// A sample value as Loki writes it in answers (`strconv.FormatFloat(v,
/// 'f', -1, 64)`): plain decimal, shortest round trip, `NaN`, `+Inf`, `-Inf`.
pub fn sample_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(go_duration("300ms").unwrap(), 300_000_000);
        assert_eq!(go_duration("-2m3s").unwrap(), -123_000_000_000);
        assert_eq!(go_duration("1h0.5m").unwrap(), 3_630_000_000_000);
        assert_eq!(go_duration("0").unwrap(), 0);
        assert_eq!(go_duration(".5s").unwrap(), 500_000_000);
        assert_eq!(go_duration("10µs").unwrap(), 10_000);
        assert_eq!(
            go_duration("1").unwrap_err().to_string(),
            "time: missing unit in duration \"1\""
        );
        assert_eq!(
            go_duration("1d").unwrap_err().to_string(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        assert_eq!(
            go_duration("abc").unwrap_err().to_string(),
            "time: invalid duration \"abc\""
        );
        assert!(go_duration("").is_err() && go_duration(".s").is_err());
        assert!(go_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn prom_durations() {
        assert_eq!(prom_duration("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(prom_duration("2d").unwrap(), 172_800_000_000_000);
        assert_eq!(prom_duration("1y1ms").unwrap(), 31_536_000_001_000_000);
        assert!(prom_duration("30m1h").is_err(), "units in order");
        assert!(prom_duration("1.5h").is_err());
        assert_eq!(logql_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(logql_duration("1w").unwrap(), 604_800_000_000_000);
    }

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("20MB").unwrap(), 20_000_000);
        assert_eq!(parse_bytes("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_bytes("42 mb").unwrap(), 42_000_000);
        assert_eq!(parse_bytes("1,024").unwrap(), 1024);
        assert_eq!(parse_bytes("3k").unwrap(), 3000);
        assert_eq!(parse_bytes("7").unwrap(), 7);
        assert_eq!(
            parse_bytes("5 lb").unwrap_err().to_string(),
            "unhandled size name: lb"
        );
        assert_eq!(
            parse_bytes("MB").unwrap_err().to_string(),
            "strconv.ParseFloat: parsing \"\": invalid syntax"
        );
    }

    #[test]
    fn floats_read_and_written_as_go_does() {
        assert_eq!(parse_float("2.5e3").unwrap(), 2500.0);
        assert_eq!(parse_float("-.5").unwrap(), -0.5);
        assert!(parse_float("NaN").unwrap().is_nan());
        assert_eq!(parse_float("+Inf").unwrap(), f64::INFINITY);
        assert_eq!(
            parse_float("12ms").unwrap_err().to_string(),
            "strconv.ParseFloat: parsing \"12ms\": invalid syntax"
        );
        assert!(parse_float("").is_err() && parse_float("0x10").is_err());
        for (v, s) in [
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (3.0, "3"),
            (-2.25, "-2.25"),
            (1e21, "1e+21"),
            (123456789.0, "1.23456789e+08"),
            (100.0, "100"),
        ] {
            assert_eq!(go_float(v), s, "{v}");
        }
        assert_eq!(sample_value(2.0), "2");
        assert_eq!(sample_value(1e21), "1000000000000000000000");
        assert_eq!(sample_value(f64::NEG_INFINITY), "-Inf");
    }
}
