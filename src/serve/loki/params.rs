//! Request parameters of the Loki API: the query string, merged with a
//! form body for POST, read into typed values with Loki's rules and
//! defaults (timestamps in every form Loki takes, durations, `limit`,
//! `direction` compared case-insensitively).

use crate::timefmt::{self, TimeRules, NANOS_PER_SEC};

use super::LokiError;

/// The parameter pairs of one request, in order.
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<(String, String)>);

/// Which end of the time range a log query reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Newest first (Loki's default).
    Backward,
    /// Oldest first.
    Forward,
}

impl Params {
    /// Parses a query string (`a=1&b=2`, percent-decoded).
    pub fn from_query(query: Option<&str>) -> Params {
        let mut p = Params::default();
        if let Some(q) = query {
            p.extend_form(q.as_bytes());
        }
        p
    }

    /// Adds the pairs of a form-encoded body (POST).
    pub fn extend_form(&mut self, body: &[u8]) {
        self.0
            .extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }

    /// The last non-empty value of `key` (an empty value counts as absent,
    /// as Grafana sometimes sends `start=`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// A required parameter.
    pub fn required(&self, key: &str) -> Result<&str, LokiError> {
        self.get(key)
            .ok_or_else(|| LokiError::bad(format!("missing parameter `{key}`")))
    }

    /// A point in time: float Unix seconds (with `.`), Unix seconds (up to
    /// 10 digits), Unix nanoseconds (more digits), or RFC 3339.
    pub fn time(&self, key: &str) -> Result<Option<u64>, LokiError> {
        self.get(key)
            .map(|v| {
                timefmt::parse_time(v, 0, TimeRules::LOKI)
                    .map_err(|e| LokiError::bad(format!("invalid parameter `{key}`: {e}")))
            })
            .transpose()
    }

    /// A duration: `5m`, `1h30m`, `500ms`, or float seconds (`14`, `0.5`).
    pub fn duration(&self, key: &str) -> Result<Option<u64>, LokiError> {
        self.get(key)
            .map(|v| {
                timefmt::parse_duration(v)
                    .map_err(|e| LokiError::bad(format!("invalid parameter `{key}`: {e}")))
            })
            .transpose()
    }

    /// The `[start, end)` range: `end` defaults to now; `start` to
    /// `end - since` when `since` is given, else `end - default_span`.
    pub fn range(&self, now: u64, default_span: u64) -> Result<(u64, u64), LokiError> {
        let end = self.time("end")?.unwrap_or(now);
        let start = match (self.time("start")?, self.duration("since")?) {
            (Some(s), _) => s,
            (None, Some(since)) => end.saturating_sub(since),
            (None, None) => end.saturating_sub(default_span),
        };
        if end < start {
            return Err(LokiError::bad(
                "the end timestamp must not be before the start time",
            ));
        }
        Ok((start, end))
    }

    /// `limit`: default 100, at most `max` (more is an error, as in Loki).
    pub fn limit(&self, max: usize) -> Result<usize, LokiError> {
        let Some(v) = self.get("limit") else {
            return Ok(100.min(max));
        };
        let n: i64 = v.trim().parse().map_err(|_| {
            LokiError::bad(format!(
                "invalid parameter `limit`: {v:?} is not a whole number"
            ))
        })?;
        if n <= 0 {
            return Err(LokiError::bad(
                "invalid parameter `limit`: it must be greater than 0",
            ));
        }
        if n as u64 > max as u64 {
            return Err(LokiError::bad(format!(
                "max entries limit per query exceeded, limit > max_entries_limit ({n} > {max})"
            )));
        }
        Ok(n as usize)
    }

    /// `direction`: `backward` (the default) or `forward`, any case.
    pub fn direction(&self) -> Result<Direction, LokiError> {
        match self.get("direction") {
            None => Ok(Direction::Backward),
            Some(d) if d.eq_ignore_ascii_case("backward") => Ok(Direction::Backward),
            Some(d) if d.eq_ignore_ascii_case("forward") => Ok(Direction::Forward),
            Some(d) => Err(LokiError::bad(format!(
                "invalid parameter `direction`: {d:?}: expected forward or backward"
            ))),
        }
    }
}

/// Loki's default step for a range: `range / 250` in whole seconds
/// (rounded down), at least one second.
pub fn default_step(start: u64, end: u64) -> u64 {
    let secs = ((end - start) / NANOS_PER_SEC / 250).max(1);
    secs * NANOS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form() {
        let p = Params::from_query(Some(
            "a=1700000000&b=1700000000.5&c=1700000000123456789&d=2023-11-14T22:13:20.25Z&e=",
        ));
        let s = 1_700_000_000 * NANOS_PER_SEC;
        assert_eq!(p.time("a").unwrap(), Some(s));
        assert_eq!(p.time("b").unwrap(), Some(s + NANOS_PER_SEC / 2));
        assert_eq!(p.time("c").unwrap(), Some(s + 123_456_789));
        assert_eq!(p.time("d").unwrap(), Some(s + NANOS_PER_SEC / 4));
        assert_eq!(p.time("e").unwrap(), None, "empty is absent");
        assert!(p.time("x").unwrap().is_none());
        let bad = Params::from_query(Some("start=yesterday"));
        assert!(bad
            .time("start")
            .unwrap_err()
            .msg
            .starts_with("invalid parameter `start`"));
    }

    #[test]
    fn ranges_limits_directions() {
        let now = 10_000 * NANOS_PER_SEC;
        let h = 3600 * NANOS_PER_SEC;
        assert_eq!(
            Params::from_query(None).range(now, h).unwrap(),
            (now - h, now)
        );
        assert_eq!(
            Params::from_query(Some("since=10m&end=5000"))
                .range(now, h)
                .unwrap(),
            (4400 * NANOS_PER_SEC, 5000 * NANOS_PER_SEC)
        );
        assert!(Params::from_query(Some("start=20&end=10"))
            .range(now, h)
            .is_err());
        assert_eq!(Params::from_query(None).limit(5000).unwrap(), 100);
        assert_eq!(Params::from_query(Some("limit=7")).limit(5000).unwrap(), 7);
        assert!(Params::from_query(Some("limit=0")).limit(5000).is_err());
        assert!(Params::from_query(Some("limit=5001"))
            .limit(5000)
            .unwrap_err()
            .msg
            .contains("5001 > 5000"));
        for (q, d) in [
            ("direction=BACKWARD", Direction::Backward),
            ("direction=Forward", Direction::Forward),
            ("", Direction::Backward),
        ] {
            assert_eq!(Params::from_query(Some(q)).direction().unwrap(), d);
        }
        assert!(Params::from_query(Some("direction=up"))
            .direction()
            .is_err());
        let p = Params::from_query(Some("match%5B%5D=%7Ba%3D%22b%22%7D&match[]=x&match=y"));
        assert_eq!(p.all("match[]").collect::<Vec<_>>(), vec!["{a=\"b\"}", "x"]);
        assert_eq!(p.get("match"), Some("y"));
    }

    #[test]
    fn default_steps() {
        let s = NANOS_PER_SEC;
        assert_eq!(default_step(0, 3600 * s), 14 * s);
        assert_eq!(default_step(0, 60 * s), s);
        assert_eq!(default_step(0, 0), s);
    }
}
