#!/usr/bin/env python3
"""Forwarder figures: a ringtail forwarding to a second, local ringtail over
the Loki push API (protobuf + snappy), on loopback.

    python3 benches/forward.py [--lines N] [--rounds R] [--outage S] [--rate L]

1. Throughput, paired runs: per round, a sender ringtail ingests N lines
   (`ringtail run -- seq`, fd passing, at full speed) once without a
   forwarder and once with `--forward loki=` to a receiver ringtail
   (alternating which goes first). Reports the ingest time (until the
   sender's ring holds every line), the forwarding time (until the
   receiver holds every line), medians over rounds, the slowdown of ingest
   caused by the forwarder and the sender's CPU per forwarded line.
2. Outage: the sender ingests L lines/s while its backend is down for S
   seconds, then the receiver starts; reports the time from the backend's
   return until the forwarder has caught up with ingest, what was lost
   (nothing while the ring holds the backlog: the receiver must end with
   exactly the lines ingested) and the sender's memory outside the ring's
   mapping at the start and the end of the outage (what the forwarder
   holds does not grow with the backlog).

Needs a release build (`cargo build --release`; `--ringtail PATH` for
another). Loopback only; everything lives in a temporary directory.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.load(r)


def stored(port):
    """Lines ingested by the daemon on `port` (its own log excluded)."""
    ring = get_json(port, "/api/v1/stats")["ring"]
    return ring["appended_total"] - ring["self_log_total"]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_outside_largest_mapping_kib(pid):
    """Resident memory of the process minus its largest mapping (the ring)."""
    sizes = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Rss:"):
                sizes.append(int(line.split()[1]))
    return sum(sizes) - max(sizes)


class Daemon:
    def __init__(self, binary, tmp, name, extra, port=None):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.log_sock = os.path.join(self.dir, "log.sock")
        args = [
            binary, "serve",
            "--socket-log", self.log_sock,
            "--socket-query", os.path.join(self.dir, "query.sock"),
            "--http", f"127.0.0.1:{self.port}",
            "--kmsg", "off",
        ] + extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr"), "w"))
        deadline = time.time() + 60
        while True:
            try:
                get_json(self.port, "/api/v1/stats")
                break
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    sys.exit(f"{name} did not start: see {self.dir}/stderr")
                time.sleep(0.02)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_until(what, cond, timeout=600):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.005)
    return time.time()


def ring_flags(lines):
    # Room for every line (91 bytes each, padded) with a margin.
    return ["--max-lines", str(lines + 100_000), "--max-bytes", f"{(lines + 100_000) * 160}"]


def forward_args(tmp, url, tag):
    """The sender's flags for one Loki forwarder to `url`, with the
    `--in-flight` and `--batch-delay` of the command line."""
    path = os.path.join(tmp, f"forward-{tag}.toml")
    with open(path, "w") as f:
        f.write(f'[[forward]]\nname = "loki"\nloki = "{url}"\n'
                f'in-flight = {ARGS.in_flight}\nbatch-delay = "{ARGS.batch_delay}"\n')
    return ["--config", path]


def paired_runs(binary, tmp, n, rounds, tag, ingest):
    """Per round, a run without and a run with the forwarder, in
    alternating order: a receiver, a sender (forwarding to it or not), and
    `ingest(sender)` writing `n` lines. Yields (round, mode, seconds until
    the sender stored them, seconds until the receiver had them or None,
    sender CPU seconds)."""
    for r in range(rounds):
        for mode in (["plain", "forward"] if r % 2 == 0 else ["forward", "plain"]):
            receiver = Daemon(binary, tmp, f"{tag}recv-{r}-{mode}", ring_flags(n))
            extra = ring_flags(n)
            if mode == "forward":
                extra += forward_args(tmp, f"http://127.0.0.1:{receiver.port}",
                                      f"{tag}{r}-{mode}")
            sender = Daemon(binary, tmp, f"{tag}send-{r}-{mode}", extra)
            base = stored(sender.port)
            cpu0 = cpu_seconds(sender.proc.pid)
            t0 = time.time()
            ingest(sender)
            t_ingest = wait_until("ingest", lambda: stored(sender.port) - base >= n) - t0
            t_all = None
            if mode == "forward":
                t_all = wait_until("forwarding", lambda: stored(receiver.port) >= n) - t0
            cpu = cpu_seconds(sender.proc.pid) - cpu0
            sender.stop()
            receiver.stop()
            yield r, mode, t_ingest, t_all, cpu


def throughput(binary, tmp, n, rounds):
    plain, fwd_ingest, fwd_total, cpu_per_line = [], [], [], []

    def flat_out(sender):
        subprocess.run([binary, "run", "--socket-log", sender.log_sock, "-n", "app", "--",
                        "seq", "-f", "%090g", "1", str(n)],
                       check=True, stdout=subprocess.DEVNULL)

    for r, mode, t_ingest, t_all, cpu in paired_runs(binary, tmp, n, rounds, "", flat_out):
        if mode == "forward":
            fwd_ingest.append(t_ingest)
            fwd_total.append(t_all)
            cpu_per_line.append(cpu * 1e6 / n)
            print(f"round {r}: with forwarder: ingest {t_ingest:.3f} s "
                  f"({n / t_ingest / 1e6:.2f} M lines/s), all forwarded {t_all:.3f} s "
                  f"({n / t_all / 1e6:.2f} M lines/s), sender CPU {cpu:.2f} s", flush=True)
        else:
            plain.append(t_ingest)
            print(f"round {r}: without: ingest {t_ingest:.3f} s "
                  f"({n / t_ingest / 1e6:.2f} M lines/s)", flush=True)
    mp, mf, mt = statistics.median(plain), statistics.median(fwd_ingest), statistics.median(fwd_total)
    print(f"throughput, {n} lines, {rounds} paired rounds (medians): ingest without forwarder "
          f"{mp:.3f} s ({n / mp / 1e6:.2f} M/s), with {mf:.3f} s ({n / mf / 1e6:.2f} M/s): "
          f"ingest slowed by {(mf / mp - 1) * 100:+.1f} %; every line at the receiver after "
          f"{mt:.3f} s ({n / mt / 1e6:.2f} M/s forwarded); sender CPU "
          f"{statistics.median(cpu_per_line):.2f} us per line (ingest + forwarding)")


def paced(binary, tmp, rate, seconds, rounds):
    """Ingest paced at `rate` lines/s for `seconds`, with and without the
    forwarder, interleaved: whether the ingest still reaches its rate, and
    how long after the last line is stored the receiver has every line."""
    n = rate * seconds
    ingest = {"plain": [], "forward": []}
    behind, cpu_per_line = [], []

    def at_rate(sender):
        producer(binary, sender.log_sock, rate, seconds).wait()

    for r, mode, t_ingest, t_all, cpu in paired_runs(binary, tmp, n, rounds, "p", at_rate):
        ingest[mode].append(t_ingest)
        line = f"paced round {r} {mode}: {n} lines stored in {t_ingest:.3f} s " \
               f"({n / t_ingest / 1e6:.2f} M lines/s)"
        if mode == "forward":
            behind.append(t_all - t_ingest)
            cpu_per_line.append(cpu * 1e6 / n)
            line += f"; every line at the receiver {t_all - t_ingest:.3f} s later, " \
                    f"sender CPU {cpu * 1e6 / n:.2f} us per line"
        print(line, flush=True)
    mp, mf = statistics.median(ingest["plain"]), statistics.median(ingest["forward"])
    print(f"paced at {rate / 1e6:.2f} M lines/s for {seconds} s, {rounds} paired rounds (medians): "
          f"ingest {mp:.3f} s without forwarder, {mf:.3f} s with ({(mf / mp - 1) * 100:+.1f} %); "
          f"the receiver had every line {statistics.median(behind):.3f} s after the last was "
          f"stored; sender CPU {statistics.median(cpu_per_line):.2f} us per line "
          f"(ingest + forwarding)")


def producer(binary, sock, rate, seconds):
    """`ringtail run` of a paced generator: `rate` lines/s for `seconds`."""
    gen = (
        "import sys,time\n"
        f"rate={rate}; secs={seconds}; batch=rate//100\n"
        "t0=time.time(); i=0\n"
        "out=sys.stdout.buffer\n"
        "while i < rate*secs:\n"
        "    out.write(b''.join(b'%090d\\n' % (i+k) for k in range(batch)))\n"
        "    out.flush(); i += batch\n"
        "    ahead = t0 + i/rate - time.time()\n"
        "    if ahead > 0: time.sleep(ahead)\n"
    )
    return subprocess.Popen([binary, "run", "--socket-log", sock, "-n", "app", "--",
                             sys.executable, "-c", gen], stdout=subprocess.DEVNULL)


def outage(binary, tmp, rate, seconds, after):
    total = rate * (seconds + after)
    port = free_port()
    sender = Daemon(binary, tmp, "outage-send",
                    ring_flags(total) + forward_args(tmp, f"http://127.0.0.1:{port}", "outage"))
    base = stored(sender.port)
    gen = producer(binary, sender.log_sock, rate, seconds + after)
    time.sleep(2)
    mem_start = rss_outside_largest_mapping_kib(sender.proc.pid)
    time.sleep(seconds - 2)
    mem_end = rss_outside_largest_mapping_kib(sender.proc.pid)
    backlog = stored(sender.port) - base
    # The backend comes back on the port the forwarder has been retrying.
    receiver = Daemon(binary, tmp, "outage-recv", ring_flags(total), port=port)
    t_back = time.time()

    def caught_up():
        return stored(sender.port) - base - stored(receiver.port) < rate // 10

    t_caught = wait_until("catch-up", caught_up, timeout=600) - t_back
    gen.wait()
    wait_until("ingest done", lambda: stored(sender.port) - base >= total)
    # The forwarder ships the whole ring, the sender's own log included.
    def everything():
        return get_json(sender.port, "/api/v1/stats")["ring"]["appended_total"]
    wait_until("every line forwarded", lambda: stored(receiver.port) >= everything())
    # Anything sent twice would arrive now.
    time.sleep(2)
    ingested = everything()
    got = stored(receiver.port)
    sinks = get_json(sender.port, "/api/v1/stats")["sinks"]
    print(f"outage: {seconds} s down at {rate} lines/s, {backlog} lines of backlog; after the "
          f"backend returned, caught up (lag < 0.1 s of ingest) in {t_caught:.2f} s; "
          f"sender's ring {ingested} (its own log included), received {got} "
          f"({got - ingested:+d}); forwarder: {json.dumps(sinks)}; "
          f"sender memory outside the ring: {mem_start} KiB 2 s into the outage, {mem_end} KiB at its end")
    sender.stop()
    receiver.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ringtail", default=os.path.join(ROOT, "target/release/ringtail"))
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--outage", type=int, default=60)
    ap.add_argument("--rate", type=int, default=100_000)
    ap.add_argument("--after", type=int, default=30,
                    help="seconds of ingest after the backend returns")
    ap.add_argument("--skip-outage", action="store_true")
    ap.add_argument("--paced", type=int, default=0, metavar="RATE",
                    help="also ingest paced at RATE lines/s for --paced-seconds, with and "
                         "without the forwarder")
    ap.add_argument("--paced-seconds", type=int, default=5)
    ap.add_argument("--in-flight", type=int, default=1,
                    help="the forwarder's in-flight (pushes on their way at once)")
    ap.add_argument("--batch-delay", default="1s",
                    help="the forwarder's batch-delay (how long a small batch waits for more; "
                         "the last batch of a run waits this long)")
    global ARGS
    a = ARGS = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"load: {open('/proc/loadavg').read().strip()}")
        throughput(a.ringtail, tmp, a.lines, a.rounds)
        if a.paced:
            paced(a.ringtail, tmp, a.paced, a.paced_seconds, a.rounds)
        if not a.skip_outage:
            outage(a.ringtail, tmp, a.rate, a.outage, a.after)
        print(f"load: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
