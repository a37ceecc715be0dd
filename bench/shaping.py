#!/usr/bin/env python3
"""Benchmark of the load-test shaping options (issue 11), with bench.py's harness.

Same rules as bench.py: one server worker pinned to one CPU, wrk and this
script on the other, 127.0.0.1 only, medians over rounds. Figures:

  * --delay 10ms at 512 keep-alive connections: requests per second against
    Little's law (512 / 10 ms = 51,200/s), and server CPU per request against
    the same run without a delay, and against an undelayed run whose client
    pauses 10 ms before each request (the same idle sockets, no delay code);
  * --delay percentiles:p50=20ms,p90=60ms,p99=250ms at low load: wrk's p50,
    p90 and p99 against the spec plus the undelayed baseline, with 256 clients
    that pause 250 ms between requests (see PACE_MS) and, for comparison, with
    8 closed-loop clients; and the same percentiles measured per request by a
    plain-socket client;
  * a 1 GiB --body-size over keep-alive against nginx serving a 1 GiB file
    with sendfile: throughput and server CPU per MiB, side by side.

Usage: bench/shaping.py [--rounds N] [--duration S] [--server-bin PATH] [--out F]
bench/run.sh installs the tools; run it once first (or: bench/run.sh --shaping).
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the harness: servers, wrk, CPU accounting)

GIB = 1 << 30
PERCENTILES = "percentiles:p50=20ms,p90=60ms,p99=250ms"
SPEC_MS = {"p50": 20.0, "p90": 60.0, "p99": 250.0}
# wrk corrects for coordinated omission: after the run it adds, for every
# latency above the mean time between a connection's requests, samples at
# that latency minus 1, 2, ... intervals. With a spread-out delay that moves
# every percentile (p50 34 ms for a 20 ms spec at 8 closed-loop connections).
# Clients that wait PACE_MS (more than the largest delay, 250 ms) after each
# response make that interval longer than any latency, so wrk adds nothing and
# its percentiles are the server's; PACED_CONNS keeps the sample large at
# about 850 requests per second.
PACE_MS = 250
PACED_CONNS = 256
# wrk's request timeout for the 1 GiB runs, and their warm-up.
BIG_TIMEOUT_S = 30
BIG_WARMUP_S = 2
# Threads of the plain-socket latency client (one request at a time each).
RAW_CONNS = 32


class ShapedVrypt(bench.Vrypt):
    """vrypt-server with extra flags."""

    def __init__(self, ctx, port, extra, label):
        super().__init__(ctx, port, label=label)
        self.extra = extra

    def start(self, http_check=True):
        cmd = [self.binary, "--workers", "1", "--listen",
               f"{bench.HOST}:{self.port}", "--statsd", "off"] + self.extra
        self._spawn(cmd, "vrypt")
        self._wait_listening()
        if http_check:
            self.check_http()
        return self


def run_one(ctx, server, conns, duration, check=True, pace_ms=0, timeout_s=5):
    server.start(http_check=check)
    try:
        if check:
            bench.warm_up(ctx, server, conns=min(conns, 64))
        else:
            # The 1 GiB runs: the same clients for BIG_WARMUP_S first. Their first
            # seconds ramp up (socket buffers, the first pass over the body) and
            # measured 1,495 MiB/s where the steady state gives 2,652 (2026-12-02).
            bench.run_wrk(ctx, server.port, conns, BIG_WARMUP_S, timeout_s=timeout_s)
        return bench.measured_run(ctx, server, conns, duration, pace_ms=pace_ms,
                                  timeout_s=timeout_s)
    finally:
        server.stop()


def raw_latencies(port, conns, seconds):
    """Closed-loop latencies (ms) of `conns` keep-alive clients, one request at a
    time each, as measured: wrk adds coordinated-omission samples to its
    histogram, which moves every percentile above the mean of a spread-out
    distribution, so the spec is also checked against the plain measurement."""
    import socket
    import threading
    out, lock = [], threading.Lock()
    stop = time_now() + seconds

    def client():
        s = socket.create_connection((bench.HOST, port), timeout=5)
        mine = []
        while time_now() < stop:
            t = time_now()
            s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
            buf = b""
            while not buf.endswith(bench.BODY):
                chunk = s.recv(4096)
                if not chunk:
                    raise bench.BenchError("the server closed a raw-latency client")
                buf += chunk
            mine.append((time_now() - t) * 1000)
        s.close()
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    out.sort()
    return out


def time_now():
    import time
    return time.perf_counter()


def pct(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q))]


def make_big_file(ctx):
    # Readable by nginx's unprivileged worker (mkdtemp made the directory 0700).
    www = os.path.join(ctx.tmp, "www")
    os.mkdir(www)
    os.chmod(ctx.tmp, 0o711)
    os.chmod(www, 0o755)
    path = os.path.join(www, "body-1gib")
    unit = bench.BODY * (1 << 16)
    with open(path, "wb") as f:
        left = GIB
        while left:
            n = min(left, len(unit))
            f.write(unit[:n])
            left -= n
    os.chmod(path, 0o644)
    return path


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--server-bin", default=os.path.join(
        bench.REPO_DIR, "target", "release", "vrypt-server"))
    p.add_argument("--out", default=os.path.join(bench.BENCH_DIR, "results",
                                                 "shaping.md"))
    # bench/run.sh may pass bench.py's options (--static-bin ...): ignored here.
    a, _ = p.parse_known_args(argv)
    # bench.Context wants bench.py's options; fill in the ones it reads.
    args = bench.parse_args(["--server-bin", a.server_bin, "--rounds",
                             str(a.rounds), "--duration", str(a.duration),
                             "--idle-conns", "16"])
    ctx = bench.Context(args, argv)
    os.sched_setaffinity(0, {ctx.client_cpu})
    ctx.tmp = bench.tempfile.mkdtemp(prefix="vrypt-shaping-")
    runs = {k: [] for k in ("plain512", "delay512", "paced512", "plain8", "pct8", "pctpaced",
                            "vbig", "nbig", "raw")}
    try:
        big = make_big_file(ctx)
        for rnd in range(1, a.rounds + 1):
            port = bench.free_port()
            for key, extra, conns, pace in [
                ("plain512", [], 512, 0),
                ("delay512", ["--delay", "10ms"], 512, 0),
                ("paced512", [], 512, 10),
                ("plain8", [], 8, 0),
                ("pct8", ["--delay", PERCENTILES, "--seed", str(rnd)], 8, 0),
                ("pctpaced", ["--delay", PERCENTILES, "--seed", str(rnd)],
                 PACED_CONNS, PACE_MS),
            ]:
                res = run_one(ctx, ShapedVrypt(ctx, port, extra, key), conns,
                              a.duration, pace_ms=pace)
                runs[key].append(res)
                bench.log(f"   [{rnd}] {key:9} {res['rps']:>10,.0f} req/s "
                          f"{res['cpu_us']:8.2f} us CPU/req  p50 "
                          f"{res['detail']['p50_us'] / 1000:.2f} ms  p90 "
                          f"{res['detail'].get('p90_us', 0) / 1000:.2f} ms  "
                          f"p99 {res['p99_ms']:.2f} ms  errors {res['errors']}")
            raw = ShapedVrypt(ctx, port, ["--delay", PERCENTILES, "--seed",
                                          str(rnd)], "raw")
            raw.start()
            try:
                lat = raw_latencies(port, RAW_CONNS, a.duration)
            finally:
                raw.stop()
            runs["raw"].append({q: pct(lat, v) for q, v in
                                (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))})
            bench.log(f"   [{rnd}] raw {RAW_CONNS} conns, {len(lat)} requests: " + ", ".join(
                f"{q} {v:.2f} ms" for q, v in runs["raw"][-1].items()))
            vb = ShapedVrypt(ctx, port, ["--body-size", "1GiB"], "vrypt")
            # A 1 GiB answer takes about 2 s per connection here; wrk's 5 s
            # request timeout, meant for small answers, was hit now and then by
            # both servers.
            runs["vbig"].append(run_one(ctx, vb, 4, a.duration, check=False,
                                        timeout_s=BIG_TIMEOUT_S))
            nb = bench.Nginx(ctx, port, 64, body_file=big)
            runs["nbig"].append(run_one(ctx, nb, 4, a.duration, check=False,
                                        timeout_s=BIG_TIMEOUT_S))
            for key in ("vbig", "nbig"):
                r = runs[key][-1]
                bench.log(f"   [{rnd}] 1 GiB {key[0]:5} {r['mib_s']:>8,.0f} MiB/s "
                          f"{r['cpu_us_per_mib']:8.1f} us CPU/MiB  errors {r['errors']}"
                          + (f" ({bench.describe_errors(r)})" if r["errors"] else ""))
    finally:
        bench.CHILDREN.stop_all()
        bench.shutil.rmtree(ctx.tmp, ignore_errors=True)

    def med(key, field, detail=False):
        vals = [r["detail"][field] if detail else r[field] for r in runs[key]]
        return statistics.median(vals)

    little = 512 / 0.010
    rows = [
        ("--delay 10ms, 512 conns: req/s", f"{med('delay512', 'rps'):,.0f}",
         f"Little's law {little:,.0f}: {med('delay512', 'rps') / little:.3f}x"),
        ("--delay 10ms, 512 conns: CPU us/req",
         f"{med('delay512', 'cpu_us'):.2f}",
         f"undelayed {med('plain512', 'cpu_us'):.2f}: "
         f"{med('delay512', 'cpu_us') / med('plain512', 'cpu_us'):.3f}x"),
        ("--delay 10ms, 512 conns: CPU us/req against a client that paces",
         f"{med('delay512', 'cpu_us'):.2f}",
         f"undelayed, client waits 10 ms per request ({med('paced512', 'rps'):,.0f} req/s): "
         f"{med('paced512', 'cpu_us'):.2f}: "
         f"{med('delay512', 'cpu_us') / med('paced512', 'cpu_us'):.3f}x"),
        ("--delay 10ms, 512 conns: mean latency ms",
         f"{med('delay512', 'mean_us', True) / 1000:.2f}", "delay 10.00"),
        ("undelayed, 512 conns: req/s", f"{med('plain512', 'rps'):,.0f}", ""),
    ]
    base50 = med("plain8", "p50_us", True) / 1000
    for q in ("p50", "p90", "p99"):
        want = SPEC_MS[q]
        for key, how in [("pctpaced", f"{PACED_CONNS} conns pacing {PACE_MS} ms, "
                                      "wrk --latency"),
                         ("pct8", "8 conns closed loop, wrk --latency "
                                  "(coordinated-omission samples added)")]:
            got = med(key, f"{q}_us", True) / 1000
            rows.append((f"{PERCENTILES}, {how}: {q} ms", f"{got:.2f}",
                         f"spec {want:.0f} + baseline p50 {base50:.2f}: "
                         f"{(got - base50) / want:.3f}x"))
        raw = statistics.median(r[q] for r in runs["raw"])
        rows.append((f"{PERCENTILES}, {RAW_CONNS} conns, measured per request: {q} ms",
                     f"{raw:.2f}", f"spec {want:.0f}: {raw / want:.3f}x"))
    for label, field, fmt in [("throughput MiB/s", "mib_s", "{:,.0f}"),
                              ("server CPU us/MiB", "cpu_us_per_mib", "{:.1f}")]:
        v, n = med("vbig", field), med("nbig", field)
        rows.append((f"1 GiB body, 4 conns: {label}",
                     f"vrypt {fmt.format(v)}, nginx {fmt.format(n)}",
                     f"{v / n:.2f}x"))
    lines = ["# Load-test shaping benchmark", "",
             f"- Date: {bench.datetime.datetime.now(bench.datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- Command: bench/shaping.py {' '.join(argv)}",
             f"- Server: {ctx.versions['vrypt']}, one worker on CPU {ctx.server_cpu}; "
             f"wrk on CPU {ctx.client_cpu}; {ctx.versions['nginx']}",
             f"- Medians of {a.rounds} round(s) of {a.duration:g} s runs", "",
             "| Figure | Value | Against |", "|---|---:|---|"]
    lines += [f"| {a_} | {b_} | {c_} |" for a_, b_, c_ in rows]
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)
    bench.log("\n" + text)
    errors = sum(r["errors"] for key, rs in runs.items() if key != "raw" for r in rs)
    if errors:
        bench.log(f"FAIL: {errors} errors in the runs")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
