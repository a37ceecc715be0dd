#!/usr/bin/env python3
"""Benchmark vrypt-server against nginx on one machine.

Driven by bench/run.sh, which installs the tools and builds the server first.
Everything runs on 127.0.0.1. The servers run one worker pinned to one CPU,
the load generator (wrk) and this script on another CPU. The servers take
turns within each round, so a slow minute on a shared machine hurts both.

Figures:
  * wrk runs (keep-alive 64 and 512 connections, pipelined depth 16 at 64
    connections, a new connection per request): requests per second, server
    CPU time per request (utime+stime from /proc/PID/stat over the run, nginx
    master+worker), p99 latency. Medians over the rounds, ratio vrypt/nginx.
  * idle RSS of a freshly started server (VmRSS).
  * RSS per connection while holding many idle keep-alive connections, each of
    which has completed one request.
  * system calls per request, counted with `strace -c` over a fixed number of
    requests.
  * vrypt with StatsD on vs off, keep-alive 64 connections.
  * a 1 MiB body over keep-alive, 16 connections: vrypt with --body-file
    against nginx serving the same file with sendfile; also throughput (MiB/s
    wrk read) and server CPU time per MiB.

Only the standard library is used. Exit status: 0 when every server started
and every run was clean (the targets are reported, never enforced), 1 when a
server failed to start or a run had errors, 2 for a usage error.
"""

import argparse
import datetime
import errno
import http.client
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
WRK_LUA = os.path.join(BENCH_DIR, "wrk.lua")
NGINX_TEMPLATE = os.path.join(BENCH_DIR, "nginx.conf.in")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
IDLE_NGINX_CONNS = 1024
BODY = b"Vrypt"

# (key, label, wrk connections, pipeline depth, Connection: close)
SCENARIOS = [
    ("ka64", "keep-alive, 64 conns", 64, 1, False),
    ("ka512", "keep-alive, 512 conns", 512, 1, False),
    ("pipe16", "pipelined x16, 64 conns", 64, 16, False),
    ("close", "new conn per request, 64 conns", 64, 1, True),
]

# A 1 MiB body over keep-alive, in the same form as SCENARIOS. It runs against
# its own pair of servers (vrypt --body-file, nginx sending the same file with
# sendfile), started after the others in each round, so it is not in SCENARIOS.
# 16 connections: on loopback a 1 MiB response is memory copies, not round
# trips, so a few connections already keep the server busy; 16 keep a response
# queued while wrk's one thread reads another (in 8 KiB reads), where 64 or 512
# would only add socket-buffer memory (up to several MiB per connection) and
# queueing delay to p99 without changing what a MiB costs the server.
BIG_SCENARIO = ("body1m", "1 MiB body, keep-alive, 16 conns", 16, 1, False)
BIG_BODY_SIZE = 1 << 20  # vrypt's --body-file limit, which allows exactly 1 MiB
MIB = 1 << 20


class BenchError(Exception):
    """A server failed to start or a run could not be completed."""


class Stop(Exception):
    """SIGTERM/SIGHUP: unwind and clean up."""


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# Processes we start. Each gets its own session, so a server and everything
# it forks (nginx workers) are stopped together by process group id.


class Children:
    def __init__(self):
        self.procs = []

    def spawn(self, cmd, **kw):
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, grace=5.0):
        """Signal the process group of proc, SIGKILL it after grace seconds.

        Returns False when proc had to be killed."""
        clean = True
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                clean = False
        # Members left behind (a worker whose master died) go as well.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)
        return clean

    def stop_all(self):
        for proc in list(self.procs):
            try:
                self.stop(proc, grace=3.0)
            except Exception as exc:  # keep cleaning up the others
                log(f"warning: could not stop pid {proc.pid}: {exc}")


CHILDREN = Children()


# --------------------------------------------------------------------------
# /proc helpers


def proc_stat_ticks(pid, user_only=False):
    """utime+stime (or utime alone) of a process (all its threads), in ticks."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + (0 if user_only else int(fields[12]))


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def proc_children(pid):
    kids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(name))
    return sorted(kids)


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def http_get_once(port, timeout=3.0):
    """One GET on a fresh connection; returns (status line, body)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buf = b""
        while True:
            done = response_complete(buf)
            if done:
                break
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(errors="replace"), body


def http_client_get(port, path="/", timeout=10.0):
    """One GET with http.client on a fresh connection; returns (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def make_body_file(ctx):
    """The 1 MiB body file in the temporary directory, readable by nginx."""
    www = os.path.join(ctx.tmp, "www")
    os.mkdir(www)
    path = os.path.join(www, "body.bin")
    with open(path, "wb") as f:
        f.write(bytes(range(256)) * (BIG_BODY_SIZE // 256))
    # nginx started as root runs its worker as an unprivileged user (nobody),
    # which must reach the file; mkdtemp made the temporary directory 0700.
    os.chmod(ctx.tmp, 0o711)
    os.chmod(www, 0o755)
    os.chmod(path, 0o644)
    return path


def response_complete(buf):
    """True when buf holds one whole response with a Content-Length body."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", buf[:end + 2], re.I)
    length = int(m.group(1)) if m else 0
    return len(buf) >= end + 4 + length


# --------------------------------------------------------------------------
# Servers


class Server:
    """A server under test, pinned to one CPU, in its own process group."""

    label = "server"

    def __init__(self, ctx, port, body_file=None):
        self.ctx = ctx
        self.port = port
        self.proc = None
        self.logfile = None
        # Serves this file (the 1 MiB scenario) instead of BODY.
        self.body_file = body_file

    def pids(self):
        """Processes whose CPU time and memory belong to this server."""
        return [self.proc.pid]

    def cpu_ticks(self, user_only=False):
        return sum(proc_stat_ticks(p, user_only) for p in self.pids())

    def rss_kib(self):
        return sum(proc_rss_kib(p) for p in self.pids())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, what):
        if not self.alive():
            raise BenchError(f"{self.label} died during {what}; log tail:\n"
                             f"{tail(self.logfile)}")

    def _spawn(self, cmd, name):
        self.logfile = os.path.join(self.ctx.tmp, f"{name}-{self.port}.log")
        with open(self.logfile, "wb") as out:
            self.proc = CHILDREN.spawn(
                ["taskset", "-c", str(self.ctx.server_cpu)] + cmd,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def _wait_listening(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise BenchError(
                    f"{self.label} exited at start (status "
                    f"{self.proc.returncode}); log tail:\n{tail(self.logfile)}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise BenchError(f"{self.label} did not listen on {HOST}:{self.port} "
                         f"within {timeout:.0f}s; log tail:\n{tail(self.logfile)}")

    def log_tail(self):
        return tail(self.logfile)

    def check_http(self):
        if self.body_file:
            self.check_body_file()
            return
        try:
            status, body = http_get_once(self.port)
        except OSError as exc:
            raise BenchError(f"{self.label}: GET / failed: {exc}") from exc
        if not status.startswith("HTTP/1.1 200") or body != BODY:
            raise BenchError(f"{self.label}: GET / answered {status!r} "
                             f"body {body[:40]!r}, expected 200 {BODY!r}")

    def check_body_file(self):
        """GET / must answer 200 with exactly the bytes of the body file."""
        with open(self.body_file, "rb") as f:
            want = f.read()
        try:
            status, body = http_client_get(self.port)
        except (OSError, http.client.HTTPException) as exc:
            raise BenchError(f"{self.label} (1 MiB body): GET / failed: "
                             f"{exc}") from exc
        if status != 200 or len(body) != BIG_BODY_SIZE or body != want:
            what = ("a body that differs from the file" if status == 200
                    and len(body) == BIG_BODY_SIZE else
                    f"a {len(body):,}-byte body {body[:60]!r}")
            raise BenchError(
                f"{self.label} (1 MiB body): GET / answered {status} with "
                f"{what}, expected 200 with the {BIG_BODY_SIZE:,} bytes of "
                f"{self.body_file}; log tail:\n{self.log_tail()}")

    def stop(self):
        if self.proc is not None:
            if not CHILDREN.stop(self.proc):
                log(f"warning: {self.label} did not exit within 5s of SIGTERM "
                    "and was killed")
            self.proc = None


class Nginx(Server):
    label = "nginx"

    def __init__(self, ctx, port, worker_connections, body_file=None):
        super().__init__(ctx, port, body_file)
        self.worker_connections = worker_connections
        self.worker = None
        self.prefix = None

    def pids(self):
        return [self.proc.pid, self.worker]

    def log_tail(self):
        return tail(self.logfile) + tail(os.path.join(self.prefix, "error.log"))

    def location(self):
        """The body of `location /` in the config."""
        if not self.body_file:
            return '            return 200 "Vrypt";\n'
        # The body file for every URI. With sendfile the kernel sends the file's
        # page-cache pages; tcp_nopush (TCP_CORK, only used with sendfile) sends
        # the header in the same segment as the file's start. The rewrite maps
        # every URI to the file without try_files' extra stat.
        root, name = os.path.split(self.body_file)
        return (f"            root {root};\n"
                "            sendfile on;\n"
                "            tcp_nopush on;\n"
                f"            rewrite ^ /{name} break;\n")

    def start(self, http_check=True):
        prefix = tempfile.mkdtemp(prefix="nginx-", dir=self.ctx.tmp)
        self.prefix = prefix
        with open(NGINX_TEMPLATE) as f:
            conf = f.read()
        temp_paths = "".join(
            f"    {name}_temp_path {prefix}/{name}_temp;\n"
            for name in ("proxy", "fastcgi", "uwsgi", "scgi")
            if f"--without-http_{name}_module" not in self.ctx.nginx_build)
        conf = (conf.replace("@PREFIX@", prefix)
                .replace("@LISTEN@", f"{HOST}:{self.port}")
                .replace("@WORKER_CONNECTIONS@", str(self.worker_connections))
                .replace("@TEMP_PATHS@\n", temp_paths)
                .replace("@LOCATION@\n", self.location()))
        conf_path = os.path.join(prefix, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        self._spawn([self.ctx.nginx, "-p", prefix + "/", "-c", conf_path,
                     "-e", os.path.join(prefix, "error.log")], "nginx")
        self._wait_listening()
        deadline = time.monotonic() + 10
        while True:
            kids = proc_children(self.proc.pid)
            if kids:
                self.worker = kids[0]
                break
            if time.monotonic() > deadline:
                raise BenchError("nginx started no worker process")
            time.sleep(0.02)
        if http_check:
            self.check_http()
        return self


class Vrypt(Server):
    label = "vrypt"

    def __init__(self, ctx, port, statsd="off", binary=None, label=None,
                 body_file=None):
        super().__init__(ctx, port, body_file)
        self.statsd = statsd
        self.binary = binary or ctx.server_bin
        if statsd != "off":
            self.label = "vrypt+statsd"
        if label:
            self.label = label

    def start(self, http_check=True):
        cmd = [self.binary, "--workers", "1", "--listen", f"{HOST}:{self.port}",
               "--statsd", self.statsd]
        if self.body_file:
            cmd += ["--body-file", self.body_file]
        self._spawn(cmd, "vrypt")
        self._wait_listening()
        if http_check:
            self.check_http()
        return self


class UdpSink:
    """Receives and discards StatsD datagrams, counting them."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(0.2)
        self.addr = f"{HOST}:{self.sock.getsockname()[1]}"
        self.datagrams = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.datagrams += 1
            self.bytes += len(data)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


# --------------------------------------------------------------------------
# Load


def run_wrk(ctx, port, conns, duration, pipeline=1, close=False, stop_after=0,
            pace_ms=0, timeout_s=5):
    """Run wrk on the client CPU; returns the BENCHJSON dict from wrk.lua."""
    cmd = ["taskset", "-c", str(ctx.client_cpu), ctx.wrk, "-t1",
           f"-c{conns}", f"-d{duration}s", "--timeout", f"{timeout_s}s", "--latency",
           "-s", WRK_LUA]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://{HOST}:{port}/")
    env = dict(os.environ, BENCH_PIPELINE=str(pipeline),
               BENCH_STOP_AFTER=str(stop_after), BENCH_PACE_MS=str(pace_ms))
    errpath = os.path.join(ctx.tmp, "wrk.stderr")
    with open(errpath, "wb") as err:
        proc = CHILDREN.spawn(cmd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=err, env=env,
                              text=True)
    # wrk ends by itself after -d; the timer is a last resort.
    watchdog = threading.Timer(duration + 30, proc.kill)
    watchdog.start()
    out = []
    try:
        for line in proc.stdout:
            out.append(line)
            if line.startswith("BENCHSTOP"):
                proc.send_signal(signal.SIGINT)
        proc.wait()
    finally:
        watchdog.cancel()
        CHILDREN.stop(proc)
    text = "".join(out)
    result = None
    for line in out:
        if line.startswith("BENCHJSON "):
            result = json.loads(line[len("BENCHJSON "):])
    if proc.returncode != 0 or result is None:
        raise BenchError(f"wrk failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                         f"{text[-800:]}{tail(errpath)}")
    result["socket_errors"] = sum(result[k] for k in
                                  ("connect", "read", "write", "timeout"))
    return result


def measured_run(ctx, server, conns, duration, pipeline=1, close=False, pace_ms=0,
                 timeout_s=5):
    """One wrk run against server with its CPU time measured over the run."""
    server.check_alive("the previous run")
    before = server.cpu_ticks()
    user_before = server.cpu_ticks(user_only=True)
    res = run_wrk(ctx, server.port, conns, duration, pipeline, close, pace_ms=pace_ms,
                  timeout_s=timeout_s)
    after = server.cpu_ticks()
    user_after = server.cpu_ticks(user_only=True)
    server.check_alive("the run")
    seconds = res["duration_us"] / 1e6
    reqs = res["requests"]
    mib = res["bytes"] / MIB  # every byte wrk read, headers included
    cpu_us = (after - before) / CLK_TCK * 1e6
    return {
        "rps": reqs / seconds if seconds else 0.0,
        "cpu_us": cpu_us / reqs if reqs else None,
        "mib_s": mib / seconds if seconds else 0.0,
        "cpu_us_per_mib": cpu_us / mib if mib else None,
        # User-space share: what the server's own code costs, without the kernel's
        # TCP work (which dominates on loopback and is the same for both servers).
        "user_us": ((user_after - user_before) / CLK_TCK * 1e6 / reqs
                    if reqs else None),
        "p99_ms": res["p99_us"] / 1000.0,
        "requests": reqs,
        "bytes": res["bytes"],
        "errors": res["socket_errors"] + res["status"],
        "detail": res,
    }


def describe_errors(res):
    d = res["detail"]
    return (f"{d['status']} non-2xx/3xx, socket errors: connect {d['connect']}, "
            f"read {d['read']}, write {d['write']}, timeout {d['timeout']}")


# --------------------------------------------------------------------------
# Idle keep-alive connections


def hold_idle(port, count, time_limit, max_pending=256):
    """Open count connections, complete one request on each, keep them open.

    Returns (open sockets, number that failed). Bounded by time_limit seconds.
    """
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sel = selectors.DefaultSelector()
    bufs = {}
    ready, failed, started, pending = [], 0, 0, 0
    deadline = time.monotonic() + time_limit

    def drop(sock):
        nonlocal failed, pending
        sel.unregister(sock)
        bufs.pop(sock, None)
        sock.close()
        failed += 1
        pending -= 1

    try:
        while len(ready) + failed < count and time.monotonic() < deadline:
            while pending < max_pending and started < count:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                started += 1
                rc = sock.connect_ex((HOST, port))
                if rc not in (0, errno.EINPROGRESS):
                    sock.close()
                    failed += 1
                    continue
                sel.register(sock, selectors.EVENT_WRITE, "connect")
                bufs[sock] = b""
                pending += 1
            for key, _ in sel.select(timeout=0.2):
                sock = key.fileobj
                if key.data == "connect":
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        drop(sock)
                        continue
                    try:
                        sock.send(request)
                    except OSError:
                        drop(sock)
                        continue
                    sel.modify(sock, selectors.EVENT_READ, "read")
                    continue
                try:
                    chunk = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    drop(sock)
                    continue
                if not chunk:
                    drop(sock)
                    continue
                bufs[sock] += chunk
                if response_complete(bufs[sock]):
                    ok = bufs.pop(sock).startswith(b"HTTP/1.1 200")
                    sel.unregister(sock)
                    pending -= 1
                    if ok:
                        ready.append(sock)
                    else:
                        sock.close()
                        failed += 1
        for key in list(sel.get_map().values()):
            key.fileobj.close()
            failed += 1
    except BaseException:
        close_all(ready)
        raise
    finally:
        sel.close()
    return ready, failed


def still_open(socks):
    alive = 0
    for sock in socks:
        try:
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                continue
        except BlockingIOError:
            alive += 1
        except OSError:
            continue
    return alive


def close_all(socks):
    for sock in socks:
        sock.close()


def memory_phase(ctx, results):
    log("== memory: idle RSS and RSS per idle keep-alive connection")
    mem = results["memory"]
    # Idle RSS of a freshly started server: one TCP connect to see that it
    # listens, no request. nginx preallocates its connection array, so it gets
    # a common worker_connections (1024) here rather than the 11k it needs to
    # hold the idle connections below.
    makers = [lambda p: Nginx(ctx, p, IDLE_NGINX_CONNS), lambda p: Vrypt(ctx, p)]
    if ctx.static_bin:
        # The static musl build is what the container images and musl tarballs ship;
        # it maps no shared libc, so its RSS is only its own pages.
        makers.append(lambda p: Vrypt(ctx, p, binary=ctx.static_bin,
                                      label="vrypt-static"))
    for make in makers:
        srv = make(free_port())
        try:
            srv.start(http_check=False)
            time.sleep(0.5)
            srv.check_alive("the idle RSS measurement")
            entry = {"rss_kib": srv.rss_kib()}
            if isinstance(srv, Nginx):
                entry["worker_kib"] = proc_rss_kib(srv.worker)
            mem[srv.label] = entry
            extra = (f" (worker alone {entry['worker_kib']} KiB)"
                     if "worker_kib" in entry else "")
            log(f"   {srv.label}: idle RSS {entry['rss_kib']} KiB{extra}")
        finally:
            srv.stop()

    n = ctx.idle_conns
    for make in (lambda p: Nginx(ctx, p, ctx.nginx_conns),
                 lambda p: Vrypt(ctx, p)):
        srv = make(free_port())
        socks = []
        try:
            srv.start()
            # Warm up (first connections and requests), then the baseline.
            warm, _ = hold_idle(srv.port, 64, 10)
            close_all(warm)
            time.sleep(0.5)
            base = srv.rss_kib()
            started = time.monotonic()
            socks, failed = hold_idle(srv.port, n, ctx.idle_time_limit)
            took = time.monotonic() - started
            time.sleep(1.0)
            srv.check_alive("the idle-connection test")
            held = srv.rss_kib()
            alive = still_open(socks)
            entry = mem[srv.label]
            entry.update(base_kib=base, held_kib=held, conns=len(socks),
                         alive=alive, failed=failed, seconds=took)
            if socks:
                entry["per_conn_bytes"] = (held - base) * 1024 / len(socks)
            log(f"   {srv.label}: {len(socks)}/{n} idle connections in "
                f"{took:.1f}s, {alive} still open; RSS {base} -> {held} KiB, "
                f"{entry.get('per_conn_bytes', 0):.0f} bytes per connection")
            if failed or alive != n:
                ctx.errors.append(
                    f"{srv.label}: idle connections: {failed} of {n} failed, "
                    f"{alive} still open when measured")
        finally:
            close_all(socks)
            srv.stop()


# --------------------------------------------------------------------------
# System calls per request


def parse_strace_summary(path):
    """Parse `strace -c` output into {syscall: calls} (without 'total')."""
    calls = {}
    col_end = None
    with open(path) as f:
        for line in f:
            if col_end is None:
                idx = line.find("calls")
                if idx >= 0 and "syscall" in line:
                    col_end = idx + len("calls")
                continue
            if line.startswith("---") or not line.strip():
                continue
            name = line.split()[-1]
            field = line[max(0, col_end - 10):col_end].strip()
            if not field.isdigit():
                continue
            if name != "total":
                calls[name] = calls.get(name, 0) + int(field)
    if col_end is None:
        raise BenchError(f"could not read strace summary {path}:\n{tail(path)}")
    return calls


def strace_run(ctx, server, pipeline):
    out = os.path.join(ctx.tmp, f"strace-{server.label}-{pipeline}.txt")
    # With -f, "-p PID" attaches every thread of PID.
    cmd = [ctx.strace, "-c", "-f", "-o", out]
    for pid in server.pids():
        cmd += ["-p", str(pid)]
    errpath = out + ".stderr"
    with open(errpath, "wb") as err:
        tracer = CHILDREN.spawn(["taskset", "-c", str(ctx.client_cpu)] + cmd,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 10
        expected = len(server.pids())  # one "attached" line per -p
        while True:
            if tracer.poll() is not None:
                raise BenchError(f"strace exited early: {tail(errpath)}")
            if tail(errpath, 10000).count("attached") >= expected:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"strace did not attach: {tail(errpath)}")
            time.sleep(0.05)
        time.sleep(0.3)
        res = run_wrk(ctx, server.port, 8, ctx.strace_time_limit, pipeline,
                      stop_after=ctx.strace_requests)
    finally:
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)
            try:
                tracer.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        CHILDREN.stop(tracer)
    server.check_alive("strace")
    calls = parse_strace_summary(out)
    reqs = res["requests"]
    if reqs < ctx.strace_requests:
        raise BenchError(f"{server.label}: only {reqs} of {ctx.strace_requests} "
                         f"requests within {ctx.strace_time_limit}s under strace")
    errors = res["socket_errors"] + res["status"]
    if errors:
        ctx.errors.append(f"{server.label} strace run (pipeline {pipeline}): "
                          f"{errors} errors")
    total = sum(calls.values())
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:5]
    return {"per_req": total / reqs, "requests": reqs, "calls": total,
            "top": [(name, n / reqs) for name, n in top]}


def syscall_phase(ctx, results):
    log(f"== system calls per request (strace -c, {ctx.strace_requests} "
        f"requests on 8 connections)")
    for make in (lambda p: Nginx(ctx, p, ctx.nginx_conns),
                 lambda p: Vrypt(ctx, p)):
        srv = make(free_port())
        try:
            srv.start()
            run_wrk(ctx, srv.port, 8, 1, 1, stop_after=1000)  # warm up
            for key, depth in (("keepalive", 1), ("pipelined", 16)):
                r = strace_run(ctx, srv, depth)
                results["syscalls"].setdefault(srv.label, {})[key] = r
                top = ", ".join(f"{n} {v:.2f}" for n, v in r["top"][:4])
                log(f"   {srv.label} {key}: {r['per_req']:.2f} per request "
                    f"({top})")
        finally:
            srv.stop()


# --------------------------------------------------------------------------
# Load rounds


def warm_up(ctx, server, conns=64):
    if ctx.warmup > 0:
        res = run_wrk(ctx, server.port, conns, ctx.warmup)
        if res["socket_errors"] or res["status"]:
            ctx.errors.append(f"{server.label} warm-up: {describe_errors(res)}")


def record(ctx, results, rnd, key, label, server, res):
    results["runs"].append({"round": rnd, "scenario": key,
                            "server": server.label, **{
                                k: res[k] for k in ("rps", "cpu_us", "user_us", "p99_ms",
                                                    "requests", "errors", "mib_s",
                                                    "cpu_us_per_mib", "bytes")}})
    cpu = f"{res['cpu_us']:.2f}" if res["cpu_us"] is not None else "-"
    mib = f"  {res['mib_s']:,.0f} MiB/s" if key == BIG_SCENARIO[0] else ""
    log(f"   [{rnd}] {label:<32} {server.label:<13} {res['rps']:>10,.0f} req/s "
        f"{cpu:>7} us CPU/req  p99 {res['p99_ms']:.2f} ms{mib}")
    if res["errors"]:
        ctx.errors.append(f"round {rnd} {label} {server.label}: "
                          f"{describe_errors(res)}")


def load_rounds(ctx, results):
    log(f"== load: {ctx.rounds} round(s) of {ctx.duration}s runs, servers "
        f"interleaved (server CPU {ctx.server_cpu}, wrk CPU {ctx.client_cpu})")
    body_file = make_body_file(ctx)
    for rnd in range(1, ctx.rounds + 1):
        nginx = Nginx(ctx, free_port(), ctx.nginx_conns)
        vrypt = Vrypt(ctx, free_port())
        try:
            nginx.start()
            vrypt.start()
            warm_up(ctx, nginx)
            warm_up(ctx, vrypt)
            order = [nginx, vrypt] if rnd % 2 else [vrypt, nginx]
            for key, label, conns, depth, close in SCENARIOS:
                for srv in order:
                    time.sleep(0.3)
                    res = measured_run(ctx, srv, conns, ctx.duration, depth,
                                       close)
                    record(ctx, results, rnd, key, label, srv, res)
        finally:
            nginx.stop()
        # StatsD on vs off, vrypt only, back to back.
        sink = UdpSink()
        vrypt_on = Vrypt(ctx, free_port(), statsd=sink.addr)
        try:
            vrypt_on.start()
            warm_up(ctx, vrypt_on)
            order = [vrypt, vrypt_on] if rnd % 2 else [vrypt_on, vrypt]
            for srv in order:
                time.sleep(0.3)
                res = measured_run(ctx, srv, 64, ctx.duration)
                record(ctx, results, rnd, "statsd", "StatsD on/off, ka 64",
                       srv, res)
        finally:
            vrypt.stop()
            vrypt_on.stop()
            sink.close()
        results["statsd_datagrams"] += sink.datagrams
        if sink.datagrams == 0:
            ctx.errors.append(f"round {rnd}: vrypt with --statsd {sink.addr} "
                              "sent no StatsD datagram")
        big_round(ctx, results, rnd, body_file)


def big_round(ctx, results, rnd, body_file):
    """The 1 MiB body scenario: its own nginx and vrypt, interleaved."""
    key, label, conns, depth, close = BIG_SCENARIO
    nginx = Nginx(ctx, free_port(), ctx.nginx_conns, body_file=body_file)
    vrypt = Vrypt(ctx, free_port(), body_file=body_file)
    try:
        nginx.start()
        vrypt.start()
        warm_up(ctx, nginx, conns)
        warm_up(ctx, vrypt, conns)
        order = [nginx, vrypt] if rnd % 2 else [vrypt, nginx]
        for srv in order:
            time.sleep(0.3)
            res = measured_run(ctx, srv, conns, ctx.duration, depth, close)
            record(ctx, results, rnd, key, label, srv, res)
            # wrk counts every byte it read, so whole 1 MiB responses make at
            # least this many.
            if res["bytes"] < res["requests"] * BIG_BODY_SIZE:
                ctx.errors.append(
                    f"round {rnd} {label} {srv.label}: wrk read "
                    f"{res['bytes']:,} bytes for {res['requests']:,} "
                    f"responses, less than {BIG_BODY_SIZE:,} each")
    finally:
        nginx.stop()
        vrypt.stop()


# --------------------------------------------------------------------------
# Report


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec, unit=""):
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def verdict(value, target, higher_is_better, strict=False):
    """PASS/MISS text; a miss says by how much."""
    if value is None:
        return "n/a"
    ok = (value >= target if higher_is_better else
          (value < target if strict else value <= target))
    if ok:
        return "PASS"
    if higher_is_better:
        return f"MISS ({(1 - value / target) * 100:.0f}% short)"
    return f"MISS ({(value / target - 1) * 100:.0f}% over)"


def build_table(ctx, results):
    runs = results["runs"]

    def med(scenario, server, field):
        return median([r[field] for r in runs
                       if r["scenario"] == scenario and r["server"] == server])

    rows = []  # (figure, nginx, vrypt, ratio, target, result)
    for key, label, _, _, _ in SCENARIOS + [BIG_SCENARIO]:
        n_rps, v_rps = med(key, "nginx", "rps"), med(key, "vrypt", "rps")
        n_cpu, v_cpu = med(key, "nginx", "cpu_us"), med(key, "vrypt", "cpu_us")
        n_p99, v_p99 = med(key, "nginx", "p99_ms"), med(key, "vrypt", "p99_ms")
        r_rps = v_rps / n_rps if n_rps and v_rps is not None else None
        r_cpu = v_cpu / n_cpu if n_cpu and v_cpu is not None else None
        r_p99 = v_p99 / n_p99 if n_p99 and v_p99 is not None else None
        keepalive = key.startswith("ka")
        if keepalive:
            t_rps, res_rps = ">= 1.00x", verdict(r_rps, 1.0, True)
            t_cpu, res_cpu = "<= 0.80x", verdict(r_cpu, 0.8, False)
            t_p99, res_p99 = "<= 1.00x", verdict(r_p99, 1.0, False)
        elif key == "pipe16":
            t_rps, res_rps = ">= 3.00x", verdict(r_rps, 3.0, True)
            t_cpu = res_cpu = t_p99 = res_p99 = ""
        else:
            t_rps = res_rps = t_cpu = res_cpu = t_p99 = res_p99 = ""
        big = key == BIG_SCENARIO[0]
        rows.append((f"{label}: req/s", fmt(n_rps, ",.0f"), fmt(v_rps, ",.0f"),
                     fmt(r_rps, ".2f", "x"), t_rps, res_rps))
        if big:
            n_mib, v_mib = med(key, "nginx", "mib_s"), med(key, "vrypt", "mib_s")
            rows.append((f"{label}: throughput MiB/s", fmt(n_mib, ",.0f"),
                         fmt(v_mib, ",.0f"),
                         fmt(v_mib / n_mib if n_mib and v_mib is not None
                             else None, ".2f", "x"), "", ""))
        rows.append((f"{label}: server CPU us/req", fmt(n_cpu, ".2f"),
                     fmt(v_cpu, ".2f"), fmt(r_cpu, ".2f", "x"), t_cpu, res_cpu))
        n_usr, v_usr = med(key, "nginx", "user_us"), med(key, "vrypt", "user_us")
        rows.append((f"{label}: of which user-space us/req", fmt(n_usr, ".2f"),
                     fmt(v_usr, ".2f"),
                     fmt(v_usr / n_usr if n_usr and v_usr is not None else None,
                         ".2f", "x"), "", ""))
        if big:
            n_cm = med(key, "nginx", "cpu_us_per_mib")
            v_cm = med(key, "vrypt", "cpu_us_per_mib")
            rows.append((f"{label}: server CPU us/MiB", fmt(n_cm, ",.0f"),
                         fmt(v_cm, ",.0f"),
                         fmt(v_cm / n_cm if n_cm and v_cm is not None else None,
                             ".2f", "x"), "", ""))
        rows.append((f"{label}: p99 latency ms", fmt(n_p99, ".2f"),
                     fmt(v_p99, ".2f"), fmt(r_p99, ".2f", "x"), t_p99, res_p99))

    mem = results["memory"]
    n_mem, v_mem = mem.get("nginx", {}), mem.get("vrypt", {})
    v_idle = v_mem.get("rss_kib")
    nginx_idle = "n/a"
    if "rss_kib" in n_mem:
        nginx_idle = f"{n_mem['rss_kib']:,} (worker {n_mem['worker_kib']:,})"
    ratio = (f"{v_idle / n_mem['rss_kib']:.2f}x"
             if v_idle and n_mem.get("rss_kib") else "n/a")
    rows.append(("idle RSS, fresh start, KiB (glibc build)", nginx_idle,
                 fmt(v_idle, ",d"), ratio, "< 1536 KiB",
                 verdict(v_idle, 1536, False, strict=True)))
    s_idle = mem.get("vrypt-static", {}).get("rss_kib")
    if s_idle is not None:
        s_ratio = (f"{s_idle / n_mem['rss_kib']:.2f}x"
                   if n_mem.get("rss_kib") else "n/a")
        rows.append(("idle RSS, fresh start, KiB (static musl build)", nginx_idle,
                     fmt(s_idle, ",d"), s_ratio, "< 1536 KiB",
                     verdict(s_idle, 1536, False, strict=True)))
    n_pc, v_pc = n_mem.get("per_conn_bytes"), v_mem.get("per_conn_bytes")
    rows.append((f"RSS per idle keep-alive conn ({ctx.idle_conns:,} conns), KiB",
                 fmt(n_pc and n_pc / 1024, ".3f"),
                 fmt(v_pc and v_pc / 1024, ".3f"),
                 fmt(v_pc / n_pc if n_pc and v_pc is not None else None, ".2f",
                     "x"),
                 "<= 0.30 KiB",
                 verdict(v_pc and v_pc / 1024, 0.3, False)))

    sc = results["syscalls"]
    for key, label, target, limit, strict in (
            ("keepalive", "keep-alive", "~2 (<= 2.5)", 2.5, False),
            ("pipelined", "pipelined x16", "< 1", 1.0, True)):
        n_s = sc.get("nginx", {}).get(key, {}).get("per_req")
        v_s = sc.get("vrypt", {}).get(key, {}).get("per_req")
        rows.append((f"syscalls per request, {label} (8 conns)",
                     fmt(n_s, ".2f"), fmt(v_s, ".2f"),
                     fmt(v_s / n_s if n_s and v_s is not None else None, ".2f",
                         "x"),
                     target, verdict(v_s, limit, False, strict=strict)))

    off = med("statsd", "vrypt", "rps")
    on = med("statsd", "vrypt+statsd", "rps")
    r_on = on / off if off and on is not None else None
    rows.append(("StatsD on vs off (vrypt, ka 64): req/s", f"off {fmt(off, ',.0f')}",
                 f"on {fmt(on, ',.0f')}", fmt(r_on, ".3f", "x") + " on/off",
                 ">= 0.98x", verdict(r_on, 0.98, True)))
    return rows


def markdown_table(rows):
    head = ("Figure", "nginx", "vrypt", "vrypt/nginx", "Target", "Result")
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---", "---:", "---:", "---:", "---", "---"]) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def text_table(rows):
    head = ("Figure", "nginx", "vrypt", "vrypt/nginx", "Target", "Result")
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(6)]
    right = {1, 2, 3}

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out)


def write_markdown(ctx, results, rows, path):
    m = ctx.machine
    lines = [
        "# vrypt-server benchmark results",
        "",
        f"- Date: {results['date']}",
        f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['mem']}, "
        f"kernel {m['kernel']}, {m['os']}",
        f"- Load average at start: {m['loadavg']}",
        f"- Versions: {ctx.versions['vrypt']}; {ctx.versions['nginx']}; "
        f"{ctx.versions['wrk']}",
        f"- Settings: {ctx.rounds} round(s), {ctx.duration}s per run, "
        f"servers on CPU {ctx.server_cpu} with 1 worker, wrk (1 thread) on CPU "
        f"{ctx.client_cpu}; {ctx.idle_conns:,} idle connections; "
        f"{ctx.strace_requests:,} requests per strace run"
        + (" (--quick: smoke test, figures are not meaningful)" if ctx.quick
           else ""),
        f"- Command: `{ctx.command}` (took {results['elapsed']:.0f}s)",
        "",
    ]
    if busy(m):
        lines += [f"**The machine was busy when this ran (load average "
                  f"{m['loadavg'].split()[0]} at start): the figures are "
                  f"noisy; rerun on a quiet machine.**", ""]
    lines += [
        markdown_table(rows),
        "",
        "Medians over the rounds; ratios are vrypt/nginx. CPU time is utime+stime "
        "from /proc/PID/stat over each run (nginx: master+worker). p99 is read "
        "from wrk's latency histogram, which includes wrk's coordinated-"
        "omission correction (for pipelined runs latency is per batch of 16). Idle RSS is "
        "VmRSS of a server that has not served a request yet (nginx: "
        f"master+worker with worker_connections {IDLE_NGINX_CONNS}, worker "
        "alone in brackets). RSS per connection is the "
        "growth of VmRSS while holding the idle connections, each of which "
        "completed one request, divided by their number (kernel socket memory "
        "is not in RSS). System calls are counted by `strace -c -f` on every "
        "thread of the server over a fixed number of requests. The 1 MiB body "
        "runs against a second pair of servers started for it: vrypt with "
        f"`--body-file` of a {BIG_BODY_SIZE:,}-byte file, nginx serving the same "
        "file for every URI with `sendfile on; tcp_nopush on;` (otherwise the "
        "same config); MiB/s is every byte wrk read (headers included) per "
        "second, and CPU us/MiB the server's CPU time per MiB of it.",
        "",
        "## System calls per request, by call",
        "",
    ]
    for label, per in sorted(results["syscalls"].items()):
        for key, r in sorted(per.items()):
            top = ", ".join(f"`{n}` {v:.3f}" for n, v in r["top"])
            lines.append(f"- {label}, {key}: {r['per_req']:.3f} total; {top}")
    lines += ["", "## Memory", ""]
    for label, e in sorted(results["memory"].items()):
        if "held_kib" in e:
            lines.append(
                f"- {label}: RSS {e['base_kib']:,} KiB after warm-up, "
                f"{e['held_kib']:,} KiB holding {e['conns']:,} connections "
                f"({e['alive']:,} still open when measured, opened in "
                f"{e['seconds']:.1f}s)")
    lines += ["", "## Every run", "",
              "| Round | Scenario | Server | req/s | MiB/s | CPU us/req | p99 ms "
              "| errors |",
              "|---:|---|---|---:|---:|---:|---:|---:|"]
    labels = {k: lbl for k, lbl, _, _, _ in SCENARIOS + [BIG_SCENARIO]}
    labels["statsd"] = "StatsD on/off, ka 64"
    for r in results["runs"]:
        lines.append(f"| {r['round']} | {labels[r['scenario']]} | {r['server']} "
                     f"| {r['rps']:,.0f} | {r['mib_s']:,.1f} "
                     f"| {fmt(r['cpu_us'], '.2f')} "
                     f"| {r['p99_ms']:.2f} | {r['errors']} |")
    lines.append("")
    lines.append(f"StatsD datagrams received during the StatsD runs: "
                 f"{results['statsd_datagrams']}.")
    if ctx.errors:
        lines += ["", "## Errors", ""] + [f"- {e}" for e in ctx.errors]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


# --------------------------------------------------------------------------
# Set-up


def cmd_output(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{cmd[0]}: {exc}"
    return (p.stdout + p.stderr).strip()


def first_line(text):
    return (text.splitlines() or ["unknown version"])[0]


def machine_info():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    osname = platform.system()
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "mem": mem,
            "kernel": platform.release(), "os": osname, "loadavg": loadavg}


def busy(machine):
    """True when other work was running as the benchmark started."""
    return float(machine["loadavg"].split()[0]) > 0.5


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Benchmark vrypt-server against nginx (see bench/run.sh).")
    p.add_argument("--rounds", type=int, help="rounds of interleaved runs "
                   "(default 3, --quick 1)")
    p.add_argument("--duration", type=float, help="seconds per wrk run "
                   "(default 10, --quick 1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 round, 1 s runs, 1,000 idle connections")
    p.add_argument("--idle-conns", type=int,
                   help="idle keep-alive connections (default 10000)")
    p.add_argument("--strace-requests", type=int,
                   help="requests per strace run (default 20000)")
    p.add_argument("--static-bin", default=None,
                   help="a static musl build of vrypt-server; its idle RSS is "
                        "reported too")
    p.add_argument("--server-bin", default=os.path.join(
        REPO_DIR, "target", "release", "vrypt-server"))
    p.add_argument("--out", help="markdown output (default "
                   "bench/results/latest.md, --quick: bench/results/quick.md; "
                   "a run with errors writes bench/results/failed.md)")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    a = p.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.duration = a.duration or (1 if a.quick else 10)
    a.idle_conns = a.idle_conns or (1000 if a.quick else 10000)
    a.strace_requests = a.strace_requests or (5000 if a.quick else 20000)
    a.out = a.out or os.path.join(
        BENCH_DIR, "results", "quick.md" if a.quick else "latest.md")
    if a.rounds < 1 or a.duration <= 0 or a.idle_conns < 1 \
            or a.strace_requests < 1:
        p.error("--rounds, --duration, --idle-conns and --strace-requests "
                "must be positive")
    if a.duration != int(a.duration):
        p.error("--duration must be whole seconds (wrk takes whole seconds)")
    a.duration = int(a.duration)
    return a


class Context:
    def __init__(self, args, argv):
        self.quick = args.quick
        self.rounds = args.rounds
        self.duration = args.duration
        self.idle_conns = args.idle_conns
        self.idle_time_limit = 60
        self.strace_requests = args.strace_requests
        self.strace_time_limit = 60
        self.warmup = 1
        self.server_bin = os.path.abspath(args.server_bin)
        self.static_bin = (os.path.abspath(args.static_bin)
                           if args.static_bin else None)
        self.server_cpu = args.server_cpu
        self.client_cpu = args.client_cpu
        self.command = os.environ.get(
            "BENCH_COMMAND", " ".join(["bench/bench.py"] + argv))
        self.errors = []
        self.tmp = None
        self.machine = machine_info()
        self.nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.wrk = shutil.which("wrk") or "wrk"
        self.strace = shutil.which("strace") or "strace"
        self.nginx_build = cmd_output([self.nginx, "-V"])
        self.versions = {
            "nginx": first_line(cmd_output([self.nginx, "-v"])),
            "wrk": first_line(cmd_output([self.wrk, "-v"]))
            .split(" Copyright")[0],
            "vrypt": first_line(cmd_output([self.server_bin, "--version"])),
        }
        # Descriptors: the 10k idle connections need as many in this process
        # (the client) and in the server, which inherits the limit.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = self.idle_conns + 512
        if hard != resource.RLIM_INFINITY and hard < want:
            log(f"warning: RLIMIT_NOFILE hard limit {hard} < {want}; "
                f"holding {hard - 512} idle connections instead")
            self.idle_conns = max(1, hard - 512)
            want = hard
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        self.nginx_conns = self.idle_conns + 1024


def main(argv):
    args = parse_args(argv)
    for tool in ("nginx", "wrk", "strace", "taskset"):
        if not shutil.which(tool) and not (tool == "nginx" and
                                           os.path.exists("/usr/sbin/nginx")):
            log(f"FAIL: {tool} not found (bench/run.sh installs it)")
            return 1
    if not os.access(args.server_bin, os.X_OK):
        log(f"FAIL: server binary {args.server_bin} not found "
            "(cargo build --release)")
        return 1
    ctx = Context(args, argv)
    cpus = os.sched_getaffinity(0)
    if ctx.server_cpu not in cpus or ctx.client_cpu not in cpus:
        log(f"warning: CPUs {ctx.server_cpu}/{ctx.client_cpu} not both "
            f"available (have {sorted(cpus)}); server and client share CPU "
            f"{min(cpus)}, figures are not comparable to a 2-CPU run")
        ctx.server_cpu = ctx.client_cpu = min(cpus)
    # This script (the idle-connection client, the StatsD sink) runs on the
    # client CPU with wrk.
    os.sched_setaffinity(0, {ctx.client_cpu})

    def on_signal(signum, _frame):
        raise Stop(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    results = {"runs": [], "memory": {}, "syscalls": {}, "statsd_datagrams": 0,
               "date": datetime.datetime.now(datetime.timezone.utc)
               .strftime("%Y-%m-%d %H:%M UTC")}
    m = ctx.machine
    log(f"vrypt-server benchmark: {ctx.versions['vrypt']} vs "
        f"{ctx.versions['nginx']}, {ctx.versions['wrk']}")
    log(f"machine: {m['nproc']} CPUs, {m['cpu']}, kernel {m['kernel']}, "
        f"load average {m['loadavg']}")
    if busy(m):
        log("warning: the machine is busy (load average "
            f"{m['loadavg'].split()[0]}): expect noisy figures")
    started = time.monotonic()
    fatal = None
    try:
        ctx.tmp = tempfile.mkdtemp(prefix="vrypt-bench-")
        memory_phase(ctx, results)
        syscall_phase(ctx, results)
        load_rounds(ctx, results)
    except BenchError as exc:
        fatal = str(exc)
    except (KeyboardInterrupt, Stop) as exc:
        fatal = f"interrupted ({exc or 'SIGINT'})"
    finally:
        CHILDREN.stop_all()
        if ctx.tmp:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
    if fatal:
        ctx.errors.append(fatal)
    results["elapsed"] = time.monotonic() - started

    rows = build_table(ctx, results)
    log("")
    log(f"Results ({results['date']}, medians of {ctx.rounds} round(s), "
        f"{ctx.duration}s runs):")
    log(text_table(rows))
    # A failed run does not replace the figures of the last good one.
    out = os.path.abspath(args.out if not ctx.errors else
                          os.path.join(BENCH_DIR, "results", "failed.md"))
    write_markdown(ctx, results, rows, out)
    log(f"\nwritten: {os.path.relpath(out)} ({results['elapsed']:.0f}s)")
    if ctx.errors:
        log("\nFAIL: the benchmark had errors:")
        for e in ctx.errors:
            log(f"  - {e}")
        return 1
    log("PASS: every server started and every run was clean "
        "(targets above are reported, not enforced)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
