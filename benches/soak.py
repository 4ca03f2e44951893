#!/usr/bin/env python3
"""Soak benchmark: ringtail under steady ingest while readers come and go.

What it does, for --minutes (default 10):
- starts `ringtail serve` on loopback in a temp dir (or --binary PATH);
- ingests at a fixed rate (--rate lines/s over --sources fds passed on the
  memlogd ingest socket, numbered 100-byte lines), paced by a token bucket;
- keeps up to --clients readers coming and going, each living 2-10 s:
  SSE (`GET /api/v1/follow`, `Accept: text/event-stream`), `curl -N`-style
  NDJSON follow, query-socket follow (memlogd mode 1) and a Loki client
  (`query_range` and `count_over_time`, as Grafana polls); --stuck of them
  connect and then stop reading until they leave;
- one "ledger" reader follows the query socket for the whole run and counts
  what it sees (it may be lapped: it reads in Python);
- samples once a second: RSS, peak RSS, open fds, /healthz latency, the
  ring's appended total;
- prints a summary (and --json-out FILE): lines written vs stored (lost must
  be 0), RSS before/with stuck clients/after they left, fds, /healthz
  latency percentiles, client counts.

Python 3 standard library only. Run as:
    cargo build --release
    python3 benches/soak.py --minutes 10 --rate 150000
"""

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

LINE = 100


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def http_get(base, path, timeout=10):
    with urllib.request.urlopen(base + path, timeout=timeout) as r:
        return r.read()


class Stop:
    def __init__(self):
        self.event = threading.Event()

    def __bool__(self):
        return self.event.is_set()


class Producer(threading.Thread):
    """Writes numbered lines to fds registered on the ingest socket."""

    def __init__(self, log_sock, sources, rate, stop):
        super().__init__(daemon=True)
        self.stop, self.rate = stop, rate
        self.writers = []
        reg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        reg.connect(log_sock)
        for i in range(sources):
            ours, theirs = socket.socketpair()
            socket.send_fds(reg, [f"soak-{i}".encode()], [theirs.fileno()])
            theirs.close()
            ours.setblocking(True)
            self.writers.append(ours)
        reg.close()
        self.written = 0
        self.behind_s = 0.0

    def run(self):
        n = 0
        tick = 0.01
        per_tick = max(1, int(self.rate * tick))
        start = time.monotonic()
        while not self.stop:
            due = start + (n / self.rate)
            now = time.monotonic()
            if due > now:
                time.sleep(min(due - now, tick))
                continue
            self.behind_s = max(self.behind_s, now - due)
            w = self.writers[(n // per_tick) % len(self.writers)]
            chunk = bytearray()
            for k in range(n, n + per_tick):
                head = f"soak line {k:012d} ".encode()
                chunk += head + b"x" * (LINE - len(head)) + b"\n"
            w.sendall(chunk)
            n += per_tick
            self.written = n
        for w in self.writers:
            w.close()


class Ledger(threading.Thread):
    """Follows the query socket for the whole run, counting what arrives."""

    def __init__(self, query_sock, stop):
        super().__init__(daemon=True)
        self.stop = stop
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(query_sock)
        self.s.sendall(b"\x01")
        self.soak = self.ringtail_lines = self.other = 0

    def run(self):
        buf = b""
        self.s.settimeout(0.5)
        while True:
            try:
                data = self.s.recv(1 << 20)
            except socket.timeout:
                if self.stop.done_ledger:
                    break
                continue
            if not data:
                break
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if b'"source":"soak-' in line:
                    self.soak += 1
                elif b'"source":"ringtail"' in line:
                    self.ringtail_lines += 1
                else:
                    self.other += 1
        self.s.close()


def client(kind, stuck, base, query_sock, lifetime, counts, lock):
    """One reader for `lifetime` seconds; `stuck` ones stop reading."""
    deadline = time.monotonic() + lifetime
    got = 0
    try:
        if kind == "query-socket":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(query_sock)
            s.sendall(b"\x01")
        elif kind in ("sse", "curl-n"):
            host, port = base[len("http://"):].split(":")
            s = socket.create_connection((host, int(port)))
            accept = "text/event-stream" if kind == "sse" else "*/*"
            s.sendall(
                f"GET /api/v1/follow HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\n\r\n".encode()
            )
        else:  # loki: poll as Grafana does
            while time.monotonic() < deadline:
                q = urllib.parse.quote('sum by (source) (count_over_time({source=~"soak.*"}[1m]))')
                http_get(base, f"/loki/api/v1/query?query={q}")
                q = urllib.parse.quote('{source="soak-0"} |= "7"')
                http_get(base, f"/loki/api/v1/query_range?query={q}&limit=100")
                got += 2
                time.sleep(1)
            s = None
        if s is not None:
            s.settimeout(0.2)
            while time.monotonic() < deadline:
                if stuck:
                    time.sleep(0.2)
                    continue
                try:
                    d = s.recv(1 << 20)
                except socket.timeout:
                    continue
                if not d:
                    break
                got += len(d)
            s.close()
        with lock:
            counts[kind + (" stuck" if stuck else "")] = counts.get(kind + (" stuck" if stuck else ""), 0) + 1
    except Exception as e:  # a refusal (503) or reset is an answer, counted
        with lock:
            counts["errors"] = counts.get("errors", 0) + 1
            counts.setdefault("error kinds", {}).setdefault(type(e).__name__, 0)
            counts["error kinds"][type(e).__name__] += 1


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/ringtail")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=int, default=150_000, help="lines per second")
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--max-lines", type=int, default=100_000)
    ap.add_argument("--clients", type=int, default=25, help="readers at once at most")
    ap.add_argument("--stuck", type=float, default=0.3, help="share of readers that stop reading")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    random.seed(a.seed)

    d = tempfile.mkdtemp(prefix="ringtail-soak-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_sock, query_sock = f"{d}/log.sock", f"{d}/query.sock"
    err = open(f"{d}/stderr", "w")
    daemon = subprocess.Popen(
        [a.binary, "serve", "--socket-log", log_sock, "--socket-query", query_sock,
         "--http", f"127.0.0.1:{port}", "--max-lines", str(a.max_lines)],
        stdout=subprocess.DEVNULL, stderr=err)
    try:
        for _ in range(200):
            try:
                http_get(base, "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        else:
            sys.exit(f"the daemon did not serve {base}/healthz; see {d}/stderr")
        stop = Stop()
        stop.done_ledger = False
        before = proc_status(daemon.pid)
        ring0 = json.loads(http_get(base, "/api/v1/stats"))["ring"]
        appended0, selflog0 = ring0["appended_total"], ring0["self_log_total"]
        ledger = Ledger(query_sock, stop)
        ledger.start()
        producer = Producer(log_sock, a.sources, a.rate, stop)
        producer.start()

        counts, lock = {}, threading.Lock()
        live = []
        samples = []
        kinds = ["sse", "curl-n", "query-socket", "loki"]
        end = time.monotonic() + a.minutes * 60
        churn_end = end - min(30, a.minutes * 60 / 4)  # then let the stuck ones leave
        next_sample = time.monotonic()
        while time.monotonic() < end:
            live = [t for t in live if t.is_alive()]
            now = time.monotonic()
            if now < churn_end and len(live) < a.clients:
                kind = random.choice(kinds)
                stuck = kind != "loki" and random.random() < a.stuck
                t = threading.Thread(target=client, daemon=True, args=(
                    kind, stuck, base, query_sock, random.uniform(2, 10), counts, lock))
                t.start()
                live.append(t)
            if now >= next_sample:
                st = proc_status(daemon.pid)
                t0 = time.monotonic()
                http_get(base, "/healthz")
                st["healthz_ms"] = (time.monotonic() - t0) * 1000
                st["clients"] = len(live)
                st["t"] = round(now - (end - a.minutes * 60), 1)
                samples.append(st)
                next_sample += 1
            time.sleep(0.02)

        stop.event.set()
        producer.join()
        # Everything written is stored once the daemon has read the fds dry.
        for _ in range(600):
            ring = json.loads(http_get(base, "/api/v1/stats"))["ring"]
            appended = ring["appended_total"] - appended0 - (ring["self_log_total"] - selflog0)
            if appended >= producer.written:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        stop.done_ledger = True
        ledger.join(timeout=5)
        after = proc_status(daemon.pid)
        stats = json.loads(http_get(base, "/api/v1/stats"))
        appended = stats["ring"]["appended_total"] - appended0
        selflog = stats["ring"]["self_log_total"] - selflog0
        stored_soak = appended - selflog
        healthz = [s["healthz_ms"] for s in samples]
        with_clients = [s["VmRSS"] for s in samples if s["t"] < (churn_end - (end - a.minutes * 60))]
        result = {
            "minutes": a.minutes, "rate": a.rate, "sources": a.sources, "max_lines": a.max_lines,
            "written": producer.written,
            "stored": stored_soak,
            "lost": producer.written - stored_soak,
            "selflog_entries": selflog,
            "ledger_saw": ledger.soak,
            "ledger_ringtail_lines": ledger.ringtail_lines,
            "producer_max_behind_s": round(producer.behind_s, 3),
            "rss_before_mb": round(before["VmRSS"] / 2**20, 1),
            "rss_with_clients_max_mb": round(max(with_clients or [0]) / 2**20, 1),
            "rss_after_mb": round(after["VmRSS"] / 2**20, 1),
            "peak_rss_mb": round(after["VmHWM"] / 2**20, 1),
            "fds_before": before["fds"], "fds_max": max(s["fds"] for s in samples), "fds_after": after["fds"],
            "healthz_ms": {"p50": round(statistics.median(healthz), 2), "p99": round(pct(healthz, 99), 2),
                           "max": round(max(healthz), 2)},
            "clients": counts,
            "http_gap_entries": stats["http"]["gap_entries_total"],
        }
        print(json.dumps(result, indent=2))
        if a.json_out:
            with open(a.json_out, "w") as f:
                json.dump({"summary": result, "samples": samples}, f)
        if result["lost"] != 0:
            sys.exit(f"LOST {result['lost']} lines")
    finally:
        daemon.terminate()
        daemon.wait(10)
        err.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    import urllib.parse  # noqa: E402 (used by the Loki client)
    main()
