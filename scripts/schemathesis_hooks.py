"""Schemathesis hooks for `scripts/test-all`'s run against a live daemon.

`api/openapi.yaml` states what the server accepts as far as JSON Schema can.
Three things it can only name or describe, and this file supplies them to
the generator, so that every request schemathesis sends as "valid" really
is valid and every 400 it gets is a finding:

- Grammars that are not regular: LogQL (`format: logql`, `logql-log`,
  `logql-metric`) and Rust regular expressions (`format: rust-regex`).
  The strategies below build values from pieces the server's grammar
  takes; they never produce all of LogQL, only valid LogQL.
- Dependencies between parameters that the spec describes in prose:
  `start <= end`, at most 11000 points per series for a `step`, `since <
  until`, `after < before - 1`, `after` at most the newest seq, and the
  `source` that text lines and NDJSON objects without one need. The
  `map_case` hook repairs positive cases that break one, the way a client
  reading the descriptions would; negative cases are left alone.
- NDJSON request bodies: a serializer writes one object per line.

The daemon's URL and token come from RINGTAIL_URL and RINGTAIL_TOKEN.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from datetime import datetime

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

NS = 1_000_000_000

# ---------------------------------------------------------------------------
# LogQL

LABEL_NAMES = st.sampled_from(["source", "stream", "level", "app", "job", "host"]) | st.from_regex(
    r"\A[a-z_][a-z0-9_]{0,8}\Z"
)
# Values stay inside a plain double-quoted string: no quote, no backslash.
PLAIN = st.from_regex(r"\A[a-zA-Z0-9 ._:/-]{0,10}\Z")
NONEMPTY = st.from_regex(r"\A[a-zA-Z0-9._:/-]{1,10}\Z")


def _regex_piece() -> st.SearchStrategy[str]:
    # Each piece is valid alone and in any sequence (RE2 and Rust regex).
    return st.sampled_from([".*", ".+", "a", "b", "web", "[a-z]+", r"\\d+", "(x|y)", "0?", "-"])


REGEX = st.lists(_regex_piece(), min_size=0, max_size=4).map("".join)


@st.composite
def selector(draw) -> str:
    # Loki wants one matcher that the empty value does not pass.
    first = draw(
        st.one_of(
            st.builds(lambda n, v: f'{n}="{v}"', LABEL_NAMES, NONEMPTY),
            st.builds(lambda n: f'{n}=~".+"', LABEL_NAMES),
        )
    )
    more = draw(
        st.lists(
            st.one_of(
                st.builds(lambda n, v: f'{n}="{v}"', LABEL_NAMES, PLAIN),
                st.builds(lambda n, v: f'{n}!="{v}"', LABEL_NAMES, PLAIN),
                st.builds(lambda n, r: f'{n}=~"{r}"', LABEL_NAMES, REGEX),
                st.builds(lambda n, r: f'{n}!~"{r}"', LABEL_NAMES, REGEX),
            ),
            max_size=2,
        )
    )
    return "{" + ", ".join([first, *more]) + "}"


LINE_FILTER = st.one_of(
    st.builds(lambda v: f'|= "{v}"', PLAIN),
    st.builds(lambda v: f'!= "{v}"', PLAIN),
    st.builds(lambda r: f'|~ "{r}"', REGEX),
    st.builds(lambda r: f'!~ "{r}"', REGEX),
)
# Stages that never fail a log query (a parser error only labels the entry).
STAGE = st.sampled_from(
    [
        "| json",
        "| logfmt",
        "| decolorize",
        '| line_format "{{.source}} {{__line__}}"',
        "| label_format origin=source",
        "| drop level",
        "| keep source, stream",
        '| level="info"',
        '| source=~"w.*"',
    ]
)


@st.composite
def log_query(draw) -> str:
    parts = [draw(selector())]
    parts += draw(st.lists(LINE_FILTER, max_size=2))
    parts += draw(st.lists(STAGE, max_size=2))
    return " ".join(parts)


@st.composite
def filtered_log_query(draw) -> str:
    # Inside a metric: selector and line filters only, so no series can
    # carry a pipeline error (which Loki answers with a 400).
    return " ".join([draw(selector()), *draw(st.lists(LINE_FILTER, max_size=2))])


RANGE = st.sampled_from(["30s", "1m", "5m", "1h"])


@st.composite
def metric_query(draw) -> str:
    fn = draw(st.sampled_from(["count_over_time", "rate", "bytes_over_time", "bytes_rate", "absent_over_time"]))
    inner = f"{fn}({draw(filtered_log_query())} [{draw(RANGE)}])"
    return draw(
        st.sampled_from(
            [
                inner,
                f"sum by (source) ({inner})",
                f"topk(3, {inner})",
                f"sum({inner}) * 2",
                f"count({inner}) > bool 0",
                "vector(1)",
                "vector(1)+vector(1)",
            ]
        )
    )


schemathesis.openapi.format("logql-log", log_query())
schemathesis.openapi.format("logql-metric", metric_query())
schemathesis.openapi.format("logql", st.one_of(log_query(), metric_query()))
schemathesis.openapi.format("rust-regex", REGEX)


# ---------------------------------------------------------------------------
# NDJSON bodies


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(v).encode() + b"\n" for v in items)


# ---------------------------------------------------------------------------
# Times, as the server reads them (only the forms the spec's patterns spell)

UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS,
         "d": 86400 * NS, "w": 7 * 86400 * NS, "y": 365 * 86400 * NS}
UNIT_PART = re.compile(r"([0-9]+)(ns|us|µs|ms|s|m|h|d|w|y)")


def _float_secs(v: str) -> int:
    whole, _, frac = v.partition(".")
    return int(whole or "0") * NS + int((frac + "000000000")[:9])


def _units(v: str) -> int | None:
    parts = UNIT_PART.findall(v)
    if not parts or "".join(n + u for n, u in parts) != v:
        return None
    return sum(int(n) * UNITS[u] for n, u in parts)


def _rfc3339(v: str) -> int | None:
    m = re.fullmatch(r"(.{19})(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})", v)
    if not m:
        return None
    offset = "+00:00" if m.group(3) == "Z" else m.group(3)
    dt = datetime.fromisoformat(m.group(1) + offset)
    return int(dt.timestamp()) * NS + (int((m.group(2)[1:] + "000000000")[:9]) if m.group(2) else 0)


def loki_time(v) -> int | None:
    v = str(v or "").strip()
    if not v:
        return None
    if v.isdigit():
        return int(v) * NS if len(v) <= 10 else int(v)
    if "." in v and not any(c in v for c in "Tt:"):
        return _float_secs(v)
    return _rfc3339(v)


def ringtail_time(v, now: int) -> int | None:
    v = str(v or "").strip()
    if not v:
        return None
    if v.isdigit():
        n = int(v)
        return n * NS if len(v) <= 10 else n * 1_000_000 if len(v) == 13 else n
    if "." in v and not any(c in v for c in "Tt:"):
        return _float_secs(v)
    if v.lower() == "now":
        return now
    ago = _units(v)
    if ago is not None:
        return now - ago
    return _rfc3339(v)


def duration(v) -> int | None:
    v = str(v or "").strip()
    if not v:
        return None
    if all(c.isdigit() or c == "." for c in v):
        return _float_secs(v)
    return _units(v)


# ---------------------------------------------------------------------------
# The newest seq (an upper bound for `after`; seqs only grow)

_newest = [0]


def newest_seq() -> int:
    url = os.environ.get("RINGTAIL_URL", "http://127.0.0.1:7464") + "/api/v1/stats"
    req = urllib.request.Request(url)
    token = os.environ.get("RINGTAIL_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        stats = json.load(r)
    _newest[0] = max(_newest[0], stats["ring"]["next_seq"] - 1)
    return _newest[0]


# ---------------------------------------------------------------------------
# Dependencies between parameters


def _loki(case, path: str) -> None:
    q = case.query
    if q is None:
        return
    now = time.time_ns()
    default = 6 * 3600 * NS if any(p in path for p in ("/labels", "/label/", "/series", "/index/stats")) else 3600 * NS
    end = loki_time(q.get("end"))
    start = loki_time(q.get("start"))
    if start is not None and start > (end if end is not None else now):
        if end is not None:
            q["start"], q["end"] = q["end"], q["start"]
            start, end = end, start
        else:
            q.pop("start")
            start = None
    end_v = end if end is not None else now
    since = duration(q.get("since"))
    start_v = start if start is not None else max(0, end_v - (since if since is not None else default))
    if path.endswith("/query_range") or path.endswith("/volume_range"):
        step = duration(q.get("step"))
        if step is None:
            step = max(1, (end_v - start_v) // NS // 250) * NS
        if step == 0 or (end_v - (start_v - start_v % step)) // step + 1 > 10_000:
            q["step"] = f"{(end_v - start_v) // NS // 10_000 + 1}s"


def _entries(case) -> None:
    q = case.query
    if q is None:
        return
    now = time.time_ns()
    since, until = ringtail_time(q.get("since"), now), ringtail_time(q.get("until"), now)
    if since is not None and until is not None and since >= until:
        if since == until:
            q.pop("until")
        else:
            q["since"], q["until"] = q["until"], q["since"]
    after, before = q.get("after"), q.get("before")
    if after is not None and before is not None and int(after) + 1 >= int(before):
        q.pop("before")
    if after is not None and int(after) > _newest[0] and int(after) > newest_seq():
        q["after"] = _newest[0]


def _ingest(case) -> None:
    q = case.query if case.query is not None else {}
    source = q.get("source")
    if isinstance(source, str) and len(source.encode()) > 255:
        q["source"] = source.encode()[:255].decode(errors="ignore")
    needs_source = (case.media_type or "").startswith("text/") or (
        isinstance(case.body, dict) and not case.body.get("source")
    )
    if needs_source and not q.get("source"):
        q["source"] = "schemathesis"
    if isinstance(case.body, dict) and isinstance(case.body.get("source"), str):
        b = case.body["source"].encode()
        if len(b) > 255:
            case.body["source"] = b[:255].decode(errors="ignore")
    case.query = q


@schemathesis.hook
def map_case(ctx, case):
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return case
    path = case.operation.path
    if path.startswith("/loki/"):
        _loki(case, path)
    elif path == "/api/v1/entries" and case.method.upper() == "GET":
        _entries(case)
    elif path == "/api/v1/entries":
        _ingest(case)
    return case


# ---------------------------------------------------------------------------
# Negative cases that are not negative on the wire


@schemathesis.hook
def filter_case(ctx, case):
    """Drops negative cases whose only "violation" cannot reach the server.

    A query string carries text: a negative case that puts a non-string
    item (null, a number, an object) into a text array such as `match[]`
    is sent as some text (null as an empty value), which the spec allows
    (empty matches are skipped). The server then rightly accepts it and
    schemathesis would report a schema-violating request accepted.
    """
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.NEGATIVE:
        return True
    for key, value in (case.query or {}).items():
        items = value if isinstance(value, list) else [value]
        if key in ("match", "match[]") and any(not isinstance(v, str) or v == "" for v in items):
            return False
    return True
