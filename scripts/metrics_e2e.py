#!/usr/bin/python3
"""End-to-end check of vrypt-server's StatsD output through real daemons.

    vrypt-server --statsd--> Etsy statsd (node) --line protocol--> carbon-cache
        --whisper files + cache query--> graphite-web /render (json, png)

Everything listens on 127.0.0.1 on free ports (never 8125) and lives in a
temporary directory. Each daemon is started here and stopped by its own PID.
A known number of requests is sent at a steady pace; then the render API must
show exactly that many in stats_counts.vrypt.requests, a per-second rate in
stats.vrypt.requests that multiplies back to the same number, a plausible
stats.gauges.vrypt.rps, and a PNG chart.

Run by scripts/metrics-e2e.sh, which installs the daemons first. Standard
library only; run with /usr/bin/python3 (Debian's graphite needs it anyway).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from e2e import FAILURES, Daemons, check, free_port, read_response, say, tcp_open, term_raises_exit, wait_for  # noqa: E402

# ---------------------------------------------------------------------------
# Configuration files.


def write_carbon_conf(root, ports, retention):
    conf = os.path.join(root, "carbon")
    storage = os.path.join(root, "storage")
    for d in (conf, storage, os.path.join(storage, "whisper"), os.path.join(root, "log"), os.path.join(root, "run")):
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(conf, "carbon.conf"), "w") as f:
        f.write(f"""[cache]
STORAGE_DIR = {storage}/
LOCAL_DATA_DIR = {storage}/whisper/
WHITELISTS_DIR = {storage}/lists/
CONF_DIR = {conf}/
LOG_DIR = {root}/log/
PID_DIR = {root}/run/
USER =
DATABASE = whisper
ENABLE_LOGROTATION = False
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = inf
MAX_CREATES_PER_MINUTE = inf
MIN_TIMESTAMP_RESOLUTION = 1
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {ports['carbon_line']}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {ports['carbon_pickle']}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {ports['carbon_query']}
USE_FLOW_CONTROL = True
LOG_UPDATES = False
LOG_CREATES = False
LOG_LISTENER_CONN_SUCCESS = False
CACHE_WRITE_STRATEGY = sorted
WHISPER_AUTOFLUSH = False
WHISPER_FALLOCATE_CREATE = False
""")
    # Retention must be no coarser than statsd's flush interval, or flushes
    # landing in one slot overwrite each other.
    with open(os.path.join(conf, "storage-schemas.conf"), "w") as f:
        f.write(
            "[carbon]\npattern = ^carbon\\.\nretentions = 60s:1d\n\n"
            f"[everything]\npattern = .*\nretentions = {retention}\n"
        )
    # Counts roll up by sum, rates and gauges by average.
    with open(os.path.join(conf, "storage-aggregation.conf"), "w") as f:
        f.write(
            "[counts]\npattern = ^stats_counts\\.\nxFilesFactor = 0\naggregationMethod = sum\n\n"
            "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n"
        )
    return os.path.join(conf, "carbon.conf")


def write_statsd_conf(root, ports, flush_ms):
    path = os.path.join(root, "statsd-config.js")
    cfg = {
        "graphiteHost": "127.0.0.1",
        "graphitePort": ports["carbon_line"],
        "address": "127.0.0.1",
        "port": ports["statsd_udp"],
        "mgmt_address": "127.0.0.1",
        "mgmt_port": ports["statsd_mgmt"],
        "flushInterval": flush_ms,
        "backends": ["./backends/graphite"],
        # The legacy namespace (statsd's default, also in the graphite-statsd image) gives
        # stats.<counter> (per second), stats_counts.<counter> and stats.gauges.<gauge>.
        "graphite": {"legacyNamespace": True},
    }
    with open(path, "w") as f:
        f.write("(" + json.dumps(cfg, indent=2) + ")\n")
    return path


def write_graphite_settings(root, ports):
    """A local settings module for Debian's graphite-web, loaded through
    GRAPHITE_SETTINGS_MODULE so nothing under /etc is touched."""
    mod = os.path.join(root, "pymod")
    os.makedirs(mod, exist_ok=True)
    os.makedirs(os.path.join(root, "log", "webapp"), exist_ok=True)
    storage = os.path.join(root, "storage")
    with open(os.path.join(mod, "vrypt_e2e_graphite.py"), "w") as f:
        f.write(f"""SECRET_KEY = "vrypt-e2e-throwaway"
GRAPHITE_ROOT = "/usr/share/graphite-web"
STATIC_ROOT = "/usr/share/graphite-web/static"
CONF_DIR = {root!r}
STORAGE_DIR = {storage!r}
WHISPER_DIR = {os.path.join(storage, 'whisper')!r}
INDEX_FILE = {os.path.join(storage, 'index')!r}
LOG_DIR = {os.path.join(root, 'log', 'webapp')!r}
LOG_ROTATION = False
DEFAULT_XFILES_FACTOR = 0
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
CARBONLINK_HOSTS = ["127.0.0.1:{ports['carbon_query']}:a"]
DATABASES = {{"default": {{"NAME": {os.path.join(root, 'graphite.db')!r}, "ENGINE": "django.db.backends.sqlite3",
                          "USER": "", "PASSWORD": "", "HOST": "", "PORT": ""}}}}
FUNCTION_PLUGINS = []
""")
    return mod


# ---------------------------------------------------------------------------
# Load: a paced HTTP/1.1 keep-alive client.


def send_load(port, total, rate, conns):
    """Sends exactly `total` requests at about `rate` per second over `conns`
    keep-alive connections (round robin); returns (ok_count, seconds)."""
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append([s, b""])
    request = b"GET /e2e HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: vrypt-metrics-e2e\r\n\r\n"
    ok = 0
    start = time.monotonic()
    for i in range(total):
        # Request i is due at start + i / rate; sleep until then.
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        entry = socks[i % conns]
        entry[0].sendall(request)
        resp, entry[1], _ = read_response(entry[0], entry[1])
        ok += resp.status == 200
    took = time.monotonic() - start
    for s, _ in socks:
        s.close()
    return ok, took


# ---------------------------------------------------------------------------
# Graphite render API.


def render(web_port, target, since, fmt="json", extra=()):
    """Fetches `target` (a name or a list of names) from `since` (epoch seconds)
    until now; json gives the non-null values of the first series, other
    formats (content type, body)."""
    targets = [target] if isinstance(target, str) else list(target)
    q = urllib.parse.urlencode(
        [("target", t) for t in targets]
        + [("from", str(int(since))), ("until", "now"), ("format", fmt)]
        + list(extra)
    )
    url = f"http://127.0.0.1:{web_port}/render?{q}"
    with urllib.request.urlopen(url, timeout=20) as r:
        body = r.read()
        if fmt != "json":
            return r.headers.get("Content-Type", ""), body
    series = json.loads(body)
    if not series:
        return []
    return [v for v, _ts in series[0]["datapoints"] if v is not None]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="path to vrypt-server")
    ap.add_argument("--statsd-js", required=True, help="path to statsd's stats.js")
    ap.add_argument("--name", default="e2e", help="variant name for the messages")
    ap.add_argument("--flush-ms", type=int, default=1000, help="statsd flushInterval")
    ap.add_argument("--retention", default="1s:1h,1m:7d", help="carbon retentions for stats")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--artifacts", help="directory to copy the PNG chart and daemon logs to")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    term_raises_exit()

    flush_s = args.flush_ms / 1000.0
    root = tempfile.mkdtemp(prefix=f"vrypt-metrics-{args.name}-")
    logdir = os.path.join(root, "log")
    os.makedirs(logdir)
    daemons = Daemons(logdir)
    ports = {
        "carbon_line": free_port(),
        "carbon_pickle": free_port(),
        "carbon_query": free_port(),
        "statsd_udp": free_port(socket.SOCK_DGRAM),
        "statsd_mgmt": free_port(),
        "web": free_port(),
        "vrypt": free_port(),
    }
    say("INFO", f"[{args.name}] workdir {root} ports {ports}")
    t_begin = time.monotonic()
    try:
        carbon_conf = write_carbon_conf(root, ports, args.retention)
        daemons.start(
            "carbon-cache",
            ["/usr/bin/carbon-cache", f"--config={carbon_conf}", f"--pidfile={root}/run/carbon.pid",
             f"--logdir={logdir}", "--nodaemon", "start"],
        )
        statsd_conf = write_statsd_conf(root, ports, args.flush_ms)
        daemons.start("statsd", ["node", args.statsd_js, statsd_conf], cwd=os.path.dirname(args.statsd_js))
        pymod = write_graphite_settings(root, ports)
        env = dict(os.environ, PYTHONPATH=pymod, GRAPHITE_SETTINGS_MODULE="vrypt_e2e_graphite",
                   DJANGO_SETTINGS_MODULE="graphite.settings")
        daemons.start("graphite-web", ["/usr/bin/python3", "-m", "django", "runserver", "--noreload",
                                       f"127.0.0.1:{ports['web']}"], env=env, cwd=root)

        def carbon_up():
            daemons.alive("carbon-cache")
            return tcp_open(ports["carbon_line"])

        def statsd_up():
            daemons.alive("statsd")
            with socket.create_connection(("127.0.0.1", ports["statsd_mgmt"]), timeout=2) as s:
                s.sendall(b"health\n")
                return b"up" in s.recv(100)

        def web_up():
            daemons.alive("graphite-web")
            return render(ports["web"], "stats.nothing", time.time() - 60) == []

        wait_for("carbon-cache", carbon_up, 60)
        wait_for("statsd", statsd_up, 30)
        wait_for("graphite-web", web_up, 60)
        say("INFO", f"[{args.name}] daemons up after {time.monotonic() - t_begin:.1f}s")

        since = time.time() - 5
        vrypt = daemons.start(
            "vrypt-server",
            [args.binary, "--listen", f"127.0.0.1:{ports['vrypt']}", "--workers", "2",
             "--statsd", f"127.0.0.1:{ports['statsd_udp']}", "--statsd-interval", "1s"],
        )

        def vrypt_up():
            # The log line, not a probe connection: that would be counted.
            daemons.alive("vrypt-server")
            with open(os.path.join(logdir, "vrypt-server.log"), "rb") as f:
                return b"event=listening" in f.read()

        wait_for("vrypt-server", vrypt_up, 20)

        ok, took = send_load(ports["vrypt"], args.requests, args.rate, args.conns)
        achieved = args.requests / took
        check(ok == args.requests, f"[{args.name}] {ok}/{args.requests} requests answered 200 "
                                   f"in {took:.1f}s ({achieved:.0f} req/s, target {args.rate:.0f})")

        # Wait for vrypt's next push, statsd's next flush and carbon's cache.
        def all_counted():
            n = sum(render(ports["web"], "stats_counts.vrypt.requests", since))
            return n >= args.requests and n

        try:
            wait_for("stats_counts.vrypt.requests", all_counted, 3 * flush_s + 30)
        except RuntimeError as e:
            say("INFO", str(e))
        # One more flush: nothing may be counted twice.
        time.sleep(flush_s + 2)

        counts = render(ports["web"], "stats_counts.vrypt.requests", since)
        check(sum(counts) == args.requests,
              f"[{args.name}] sum(stats_counts.vrypt.requests) = {sum(counts):g}, sent {args.requests}")
        ok2xx = sum(render(ports["web"], "stats_counts.vrypt.responses.2xx", since))
        check(ok2xx == args.requests, f"[{args.name}] sum(stats_counts.vrypt.responses.2xx) = {ok2xx:g}")
        accepted = sum(render(ports["web"], "stats_counts.vrypt.connections.accepted", since))
        check(accepted == args.conns, f"[{args.name}] sum(stats_counts.vrypt.connections.accepted) = {accepted:g}, "
                                      f"opened {args.conns}")
        rates = render(ports["web"], "stats.vrypt.requests", since)
        check(abs(sum(rates) * flush_s - args.requests) < 0.5,
              f"[{args.name}] sum(stats.vrypt.requests) x {flush_s:g}s = {sum(rates) * flush_s:.1f}")

        rps = render(ports["web"], "stats.gauges.vrypt.rps", since)
        busy = [v for v in rps if v > 0]
        near = [v for v in busy if 0.5 * achieved <= v <= 1.5 * achieved]
        check(bool(near) and max(rps) <= 3 * args.rate,
              f"[{args.name}] stats.gauges.vrypt.rps: {len(rps)} points, non-zero {sorted(round(v) for v in busy)}, "
              f"{len(near)} within 50% of the achieved {achieved:.0f} req/s, max <= 3x target")
        open_now = render(ports["web"], "stats.gauges.vrypt.connections.open", since)
        check(bool(open_now) and open_now[-1] == 0, f"[{args.name}] stats.gauges.vrypt.connections.open "
                                                    f"ends at {open_now[-1] if open_now else None}")

        ctype, png = render(ports["web"], ["stats.gauges.vrypt.rps", "stats.vrypt.requests"], since, fmt="png",
                            extra=[("width", "800"), ("height", "400"), ("title", f"vrypt-server ({args.name})")])
        check(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000 and ctype.startswith("image/png"),
              f"[{args.name}] format=png gives a PNG chart ({len(png)} bytes, {ctype})")
        with open(os.path.join(root, f"vrypt-{args.name}.png"), "wb") as f:
            f.write(png)

        t = time.monotonic()
        os.kill(vrypt.pid, signal.SIGTERM)
        try:
            code = vrypt.wait(15)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, f"[{args.name}] vrypt-server exits 0 on SIGTERM in {time.monotonic() - t:.1f}s (code {code})")
    except (SystemExit, KeyboardInterrupt) as e:  # a signal: report, clean up, pass it on
        check(False, f"[{args.name}] interrupted ({type(e).__name__} {e})")
        raise
    except Exception as e:  # report, clean up, fail
        check(False, f"[{args.name}] {type(e).__name__}: {e}")
        for name in ("vrypt-server", "statsd", "carbon-cache", "graphite-web"):
            print(f"--- last lines of {name} log ---\n{daemons.tail(name)}", file=sys.stderr)
    finally:
        daemons.stop_all()
        if args.artifacts:
            os.makedirs(args.artifacts, exist_ok=True)
            for f in os.listdir(root):
                if f.endswith(".png"):
                    shutil.copy(os.path.join(root, f), args.artifacts)
            for f in os.listdir(logdir):
                if os.path.isfile(os.path.join(logdir, f)):
                    shutil.copy(os.path.join(logdir, f), os.path.join(args.artifacts, f"{args.name}-{f}"))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    say("INFO", f"[{args.name}] took {time.monotonic() - t_begin:.1f}s")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
