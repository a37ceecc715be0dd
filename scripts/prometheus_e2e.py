#!/usr/bin/python3
"""End-to-end check of vrypt-server's Prometheus endpoint with a real Prometheus.

    load --> vrypt-server main port (--status 404)
             vrypt-server admin port /metrics <--every 1 s-- prometheus --> /api/v1/query

Everything listens on 127.0.0.1 free ports and lives in a temporary directory;
each process is started here and stopped by its own PID. The checks:

1. the exposition: /metrics answers 200 with the 0.0.4 content type, `promtool
   check metrics` finds no problem, every family of the interface has its
   # HELP and # TYPE (counter/gauge as specified), all four response classes,
   vrypt_build_info{version=<Cargo.toml>} 1, vrypt_ready 1, a plausible
   process_start_time_seconds;
2. admin traffic is not counted: after direct admin requests (/metrics,
   /healthz, /readyz, an unknown path, a POST) and several Prometheus scrapes,
   every serving counter is still 0;
3. a known load: KEEPALIVE requests over CONNS keep-alive connections (pipelined
   in batches) plus FRESH requests on a new connection each; every response is
   counted as it arrives. Prometheus must then report exactly that many
   requests, all of them in the configured status class, the connections
   opened, the bytes received, vrypt_connections_open equal to the connections
   still held and then 0 after they close, up == 1 -- and the count must stay
   exact over further scrapes.

Run by scripts/prometheus-e2e.sh, which installs Prometheus first. Standard
library only.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from e2e import FAILURES, PASSES, SKIPS, Daemons, check, free_port, http_get, read_response, say, term_raises_exit, wait_for  # noqa: E402

JOB = "vrypt-admin"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The interface (i10 spec): family -> type.
FAMILIES = {
    "vrypt_requests_total": "counter",
    "vrypt_responses_total": "counter",
    "vrypt_sent_bytes_total": "counter",
    "vrypt_connections_accepted_total": "counter",
    "vrypt_connections_closed_total": "counter",
    "vrypt_connections_open": "gauge",
    "vrypt_parse_errors_total": "counter",
    "vrypt_timeouts_total": "counter",
    "vrypt_accept_errors_total": "counter",
    "vrypt_ready": "gauge",
    "vrypt_build_info": "gauge",
    "process_start_time_seconds": "gauge",
}
# The counters of the serving port: all of them 0 before any load.
SERVING_COUNTERS = [
    "vrypt_requests_total",
    "vrypt_sent_bytes_total",
    "vrypt_connections_accepted_total",
    "vrypt_connections_closed_total",
    "vrypt_parse_errors_total",
    "vrypt_timeouts_total",
    "vrypt_accept_errors_total",
]
CLASSES = ["2xx", "3xx", "4xx", "5xx"]

# ---------------------------------------------------------------------------
# The text exposition format 0.0.4, as far as this check needs it.

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+-?\d+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """Returns (helps, types, samples): samples as {(name, frozenset(labels)): value}."""
    helps, types, samples = {}, {}, {}
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            helps[name] = doc
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            types[name] = kind.strip()
        elif line.startswith("#"):
            continue
        else:
            m = SAMPLE.match(line)
            if not m:
                raise ValueError(f"not a sample line: {line!r}")
            labels = frozenset(LABEL.findall(m.group(2) or ""))
            samples[(m.group(1), labels)] = float(m.group(3))
    return helps, types, samples


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def fetch_metrics(admin_port):
    resp = http_get(admin_port, "/metrics")
    return resp, resp.body.decode()


# ---------------------------------------------------------------------------
# Prometheus.


def write_prometheus_conf(root, admin_port):
    path = os.path.join(root, "prometheus.yml")
    with open(path, "w") as f:
        f.write(f"""# Written by scripts/prometheus_e2e.py: scrape vrypt-server's admin listener every second.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {JOB}
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{admin_port}"]
""")
    return path


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path, **params):
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()

    def query(self, promql):
        """An instant query; a list of (labels, value)."""
        _, body = self.get("/api/v1/query", query=promql)
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise ValueError(f"query {promql!r}: {doc}")
        data = doc["data"]
        if data["resultType"] != "vector":
            raise ValueError(f"query {promql!r}: result type {data['resultType']}")
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def one(self, promql):
        """The value of a query that must give exactly one series, else None."""
        result = self.query(promql)
        return result[0][1] if len(result) == 1 else None


# ---------------------------------------------------------------------------
# Load: a bounded HTTP/1.1 client that counts what it gets.


class Tally:
    def __init__(self):
        self.sent = 0
        self.answered = 0
        self.statuses = {}
        self.bytes = 0
        self.connections = 0

    def got(self, resp, nbytes):
        self.answered += 1
        self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
        self.bytes += nbytes


REQUEST = b"GET /prometheus-e2e?i=%d HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: vrypt-prometheus-e2e\r\n\r\n"
REQUEST_CLOSE = (b"GET /prometheus-e2e/fresh HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: vrypt-prometheus-e2e\r\n"
                 b"Connection: close\r\n\r\n")


def connect(port, tally):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tally.connections += 1
    return s


def keepalive_load(port, total, conns, batch, tally):
    """`total` requests over `conns` keep-alive connections, round robin, `batch`
    pipelined requests at a time. Returns the open sockets (the caller closes them)."""
    socks = [[connect(port, tally), b""] for _ in range(conns)]
    i = 0
    while i < total:
        entry = socks[(i // batch) % conns]
        n = min(batch, total - i)
        entry[0].sendall(b"".join(REQUEST % (i + k) for k in range(n)))
        tally.sent += n
        for _ in range(n):
            resp, entry[1], got = read_response(entry[0], entry[1])
            tally.got(resp, got)
        i += n
    for s, rest in socks:
        if rest:
            raise RuntimeError(f"{len(rest)} unexpected bytes after the last response")
    return [s for s, _ in socks]


def fresh_load(port, total, tally):
    """`total` requests, each on a new connection: even ones ask for
    Connection: close and read to EOF, odd ones close after the response."""
    for i in range(total):
        with connect(port, tally) as s:
            s.sendall(REQUEST_CLOSE if i % 2 == 0 else REQUEST % i)
            tally.sent += 1
            resp, rest, got = read_response(s, b"")
            if i % 2 == 0:
                while len(rest) <= 65536:  # read to EOF; anything here is an error anyway
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
                    rest += chunk
            if rest:
                raise RuntimeError(f"{len(rest)} unexpected bytes after a response")
            tally.got(resp, got)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="path to vrypt-server")
    ap.add_argument("--prometheus", default="prometheus")
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--version", required=True, help="the crate version vrypt_build_info must carry")
    ap.add_argument("--status", type=int, default=404, help="the server's --status")
    ap.add_argument("--keepalive", type=int, default=5000, help="requests over keep-alive connections")
    ap.add_argument("--conns", type=int, default=4, help="keep-alive connections")
    ap.add_argument("--batch", type=int, default=10, help="pipelined requests per write")
    ap.add_argument("--fresh", type=int, default=200, help="requests on a new connection each")
    ap.add_argument("--deadline", type=float, default=150, help="seconds for the whole check")
    ap.add_argument("--artifacts", help="directory to copy the expositions and logs to")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    term_raises_exit()

    t0 = time.monotonic()
    deadline = t0 + args.deadline

    def left(cap):
        """A wait's bound: `cap` seconds, but never past the overall deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"overall deadline of {args.deadline:.0f}s reached")
        return min(cap, remaining)

    klass = f"{args.status // 100}xx"
    root = tempfile.mkdtemp(prefix="vrypt-prometheus-e2e-")
    logdir = os.path.join(root, "log")
    os.makedirs(logdir)
    daemons = Daemons(logdir)
    ports = {"vrypt": free_port(), "admin": free_port(), "prometheus": free_port()}
    say("INFO", f"workdir {root} ports {ports}")
    held = []
    try:
        # --- the server -----------------------------------------------------------------
        wall_before_start = time.time()
        daemons.start("vrypt-server", [
            args.binary, "--listen", f"127.0.0.1:{ports['vrypt']}", "--admin-listen", f"127.0.0.1:{ports['admin']}",
            "--statsd", "off", "--status", str(args.status), "--workers", "2",
        ])

        def admin_up():
            daemons.alive("vrypt-server")
            return http_get(ports["admin"], "/healthz", timeout=1).status == 200

        wait_for("vrypt-server admin /healthz", admin_up, left(20))

        # --- 1. the exposition ----------------------------------------------------------
        resp, text = fetch_metrics(ports["admin"])
        with open(os.path.join(root, "metrics-before.txt"), "w") as f:
            f.write(text)
        check(resp.status == 200 and resp.headers.get("content-type") == CONTENT_TYPE,
              f"admin GET /metrics -> {resp.status}, Content-Type: {resp.headers.get('content-type')}")

        def promtool(label, text):
            p = subprocess.run([args.promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                               timeout=left(30))
            out = (p.stdout + p.stderr).decode(errors="replace").strip()
            check(p.returncode == 0 and not out,
                  f"promtool check metrics ({label}, {len(text.splitlines())} lines): exit {p.returncode}"
                  + (f", says: {out}" if out else ", no problems"))

        promtool("before load", text)
        helps, types, samples = parse_exposition(text)
        wrong = [f"{n} (TYPE {types.get(n)}, HELP {'yes' if helps.get(n) else 'no'})"
                 for n, kind in FAMILIES.items() if types.get(n) != kind or not helps.get(n)]
        check(not wrong, f"all {len(FAMILIES)} families have # HELP and the specified # TYPE"
                         + (f"; wrong: {', '.join(wrong)}" if wrong else ""))
        missing = [c for c in CLASSES if sample(samples, "vrypt_responses_total", **{"class": c}) is None]
        check(not missing, "vrypt_responses_total has the classes " + ", ".join(CLASSES)
                           + (f"; missing {missing}" if missing else ""))
        info = [(dict(lb), v) for (n, lb), v in samples.items() if n == "vrypt_build_info"]
        check(len(info) == 1 and info[0][1] == 1 and info[0][0].get("version") == args.version,
              f"vrypt_build_info: {info} (want version=\"{args.version}\" value 1)")
        check(sample(samples, "vrypt_ready") == 1, f"vrypt_ready = {sample(samples, 'vrypt_ready')}")
        start = sample(samples, "process_start_time_seconds")
        check(start is not None and wall_before_start - 2 <= start <= time.time() + 1,
              f"process_start_time_seconds = {start} (server started at {wall_before_start:.1f})")

        # --- 2. admin traffic is not counted (direct requests) --------------------------
        seen = {}
        for _ in range(10):
            for method, path in [("GET", "/metrics"), ("HEAD", "/metrics"), ("GET", "/healthz"),
                                 ("GET", "/readyz"), ("GET", "/no-such-admin-path"), ("POST", "/metrics")]:
                key = f"{method} {path}"
                seen.setdefault(key, set()).add(http_get(ports["admin"], path, method=method).status)
        want = {"GET /metrics": {200}, "HEAD /metrics": {200}, "GET /healthz": {200}, "GET /readyz": {200},
                "GET /no-such-admin-path": {404}, "POST /metrics": {405}}
        check(seen == want, "60 direct admin requests: "
                            + ", ".join(f"{k} -> {'/'.join(map(str, sorted(v)))}" for k, v in seen.items()))
        _, text = fetch_metrics(ports["admin"])
        _, _, samples = parse_exposition(text)
        nonzero = {n: sample(samples, n) for n in SERVING_COUNTERS if sample(samples, n) != 0}
        nonzero.update({f"responses {c}": sample(samples, "vrypt_responses_total", **{"class": c})
                        for c in CLASSES if sample(samples, "vrypt_responses_total", **{"class": c}) != 0})
        if sample(samples, "vrypt_connections_open") != 0:
            nonzero["vrypt_connections_open"] = sample(samples, "vrypt_connections_open")
        check(not nonzero, "after 61 admin requests every serving counter and vrypt_connections_open is 0"
                           + (f"; not 0: {nonzero}" if nonzero else ""))

        # --- Prometheus -----------------------------------------------------------------
        conf = write_prometheus_conf(root, ports["admin"])
        p = subprocess.run([args.promtool, "check", "config", conf], capture_output=True, timeout=left(30))
        check(p.returncode == 0, f"promtool check config: exit {p.returncode}"
                                 + ("" if p.returncode == 0 else f": {(p.stdout + p.stderr).decode().strip()}"))
        daemons.start("prometheus", [
            args.prometheus, f"--config.file={conf}", f"--storage.tsdb.path={root}/data",
            f"--web.listen-address=127.0.0.1:{ports['prometheus']}", "--log.level=info",
        ], cwd=root)
        prom = Prometheus(ports["prometheus"])

        def prom_ready():
            daemons.alive("prometheus")
            return prom.get("/-/ready")[0] == 200

        wait_for("prometheus /-/ready", prom_ready, left(30))
        say("INFO", f"prometheus ready after {time.monotonic() - t0:.1f}s")

        def scrapes():
            """Successful scrapes of the admin listener so far."""
            return prom.one(f'count_over_time(up{{job="{JOB}"}}[1h])') or 0

        wait_for("3 scrapes of the admin listener", lambda: scrapes() >= 3, left(20))
        _, body = prom.get("/api/v1/targets")
        targets = json.loads(body)["data"]["activeTargets"]
        check(len(targets) == 1 and targets[0]["health"] == "up" and not targets[0]["lastError"]
              and targets[0]["scrapeUrl"] == f"http://127.0.0.1:{ports['admin']}/metrics",
              "prometheus target: " + "; ".join(f"{t['scrapeUrl']} health={t['health']} lastError={t['lastError']!r}"
                                                for t in targets))
        up = prom.one(f'up{{job="{JOB}"}}')
        check(up == 1, f'up{{job="{JOB}"}} = {up}')
        before = prom.one("vrypt_requests_total")
        check(before == 0, f"after {scrapes():.0f} scrapes (and the direct admin requests) prometheus has "
                           f"vrypt_requests_total = {before}")

        # --- 3. a known load ------------------------------------------------------------
        tally = Tally()
        t_load = time.monotonic()
        held = keepalive_load(ports["vrypt"], args.keepalive, args.conns, args.batch, tally)
        fresh_load(ports["vrypt"], args.fresh, tally)
        took = time.monotonic() - t_load
        total = args.keepalive + args.fresh
        check(tally.sent == total and tally.answered == total and tally.statuses == {args.status: total},
              f"load: {tally.sent} sent ({args.keepalive} over {args.conns} keep-alive connections, pipelined "
              f"by {args.batch}, + {args.fresh} on a new connection each), {tally.answered} answered in "
              f"{took:.2f}s, statuses {tally.statuses}, {tally.bytes} bytes")
        n = tally.answered

        def counted():
            v = prom.one("vrypt_requests_total")
            if v is not None and v > n:
                raise RuntimeError(f"vrypt_requests_total = {v:g}, more than the {n} requests answered")
            return v == n

        t_wait = time.monotonic()
        try:
            wait_for("vrypt_requests_total == requests answered", counted, left(30))
        except RuntimeError as e:
            say("INFO", str(e))
        got = prom.one("vrypt_requests_total")
        check(got == n, f"prometheus /api/v1/query?query=vrypt_requests_total = {got} "
                        f"(requests answered {n}; {time.monotonic() - t_wait:.1f}s after the load)")

        by_class = {r[0].get("class"): r[1] for r in prom.query("vrypt_responses_total")}
        want_classes = {c: (n if c == klass else 0) for c in CLASSES}
        check(by_class == want_classes, f"vrypt_responses_total by class = {by_class} (want {want_classes})")
        accepted = prom.one("vrypt_connections_accepted_total")
        check(accepted == tally.connections,
              f"vrypt_connections_accepted_total = {accepted} (connections opened to the main port: "
              f"{tally.connections}; the admin connections are not counted)")
        sent = prom.one("vrypt_sent_bytes_total")
        check(sent == tally.bytes, f"vrypt_sent_bytes_total = {sent} (bytes the client received: {tally.bytes})")
        errors = {q: prom.one(q) for q in ("vrypt_parse_errors_total", "vrypt_timeouts_total",
                                           "vrypt_accept_errors_total")}
        check(all(v == 0 for v in errors.values()), f"no errors counted: {errors}")

        def open_is(k):
            return lambda: prom.one("vrypt_connections_open") == k

        try:
            wait_for(f"vrypt_connections_open == {len(held)}", open_is(len(held)), left(10))
        except RuntimeError as e:
            say("INFO", str(e))
        v = prom.one("vrypt_connections_open")
        check(v == len(held), f"vrypt_connections_open = {v} while the {len(held)} keep-alive connections are held")
        for s in held:
            s.close()
        held = []
        try:
            wait_for("vrypt_connections_open == 0", open_is(0), left(10))
        except RuntimeError as e:
            say("INFO", str(e))
        v = prom.one("vrypt_connections_open")
        closed = prom.one("vrypt_connections_closed_total")
        check(v == 0 and closed == tally.connections,
              f"after closing them: vrypt_connections_open = {v}, vrypt_connections_closed_total = {closed}")
        info = prom.query("vrypt_build_info")
        check(len(info) == 1 and info[0][1] == 1 and info[0][0].get("version") == args.version
              and info[0][0].get("job") == JOB,
              f"vrypt_build_info in prometheus: {info}")
        check(prom.one("vrypt_ready") == 1, f"vrypt_ready in prometheus = {prom.one('vrypt_ready')}")

        # The scrapes go on; none of them may add to the count.
        mark = scrapes()
        wait_for("3 more scrapes", lambda: scrapes() >= mark + 3, left(20))
        still = prom.one("vrypt_requests_total")
        peak = prom.one("max_over_time(vrypt_requests_total[1h])")
        check(still == n and peak == n,
              f"after {scrapes():.0f} scrapes in all: vrypt_requests_total = {still}, its maximum over the run "
              f"= {peak} (requests answered {n}): scrapes are not counted")
        check(prom.one(f'up{{job="{JOB}"}}') == 1 and prom.one(f'min_over_time(up{{job="{JOB}"}}[1h])') == 1,
              f'up{{job="{JOB}"}} is 1 and was 1 at every scrape')

        resp, text = fetch_metrics(ports["admin"])
        with open(os.path.join(root, "metrics-after.txt"), "w") as f:
            f.write(text)
        promtool("after load", text)
        _, _, samples = parse_exposition(text)
        direct = sample(samples, "vrypt_requests_total")
        check(direct == n, f"direct /metrics after the load: vrypt_requests_total = {direct}")

        # --- shutdown -------------------------------------------------------------------
        t = time.monotonic()
        vrypt = daemons.procs[0][1]
        vrypt.terminate()
        try:
            code = vrypt.wait(left(15))
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f"vrypt-server exits 0 on SIGTERM in {time.monotonic() - t:.1f}s (code {code})")
    except (SystemExit, KeyboardInterrupt) as e:  # a signal: report, clean up, pass it on
        check(False, f"interrupted ({type(e).__name__} {e})")
        raise
    except Exception as e:  # report, clean up, fail
        check(False, f"{type(e).__name__}: {e}")
        for name in ("vrypt-server", "prometheus"):
            print(f"--- last lines of the {name} log ---\n{daemons.tail(name)}", file=sys.stderr)
    finally:
        for s in held:
            s.close()
        daemons.stop_all()
        if args.artifacts:
            os.makedirs(args.artifacts, exist_ok=True)
            for d in (root, logdir):
                for f in os.listdir(d):
                    if f.endswith((".txt", ".log", ".yml")):
                        shutil.copy(os.path.join(d, f), args.artifacts)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    say("INFO", f"took {time.monotonic() - t0:.1f}s")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    code = main()
    say("SUMMARY", f"prometheus end-to-end: {len(PASSES)} passed, {len(FAILURES)} failed, {len(SKIPS)} skipped")
    sys.exit(code)
