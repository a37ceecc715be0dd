"""Shared by the end-to-end checks (scripts/metrics_e2e.py, scripts/prometheus_e2e.py).

Standard library only. Imported, not run:

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
    from e2e import Daemons, check, free_port, ...

- say / check / skip: one "PASS: ...", "FAIL: ...", "SKIP: ..." or "INFO: ..." line each;
  checks are collected in PASSES or FAILURES, skipped ones in SKIPS (a skip is never a pass).
- free_port: a free 127.0.0.1 port (TCP or UDP).
- wait_for: polls a probe until it gives something truthy, bounded by a timeout.
- Daemons: processes started here, each with its own log file, stopped by PID.
- read_response / http_get: a small HTTP/1.1 client that counts what it reads.
"""

import os
import signal
import socket
import subprocess
import time

PASSES = []
FAILURES = []
SKIPS = []


def say(kind, msg):
    print(f"{kind}: {msg}", flush=True)


def check(ok, msg):
    say("PASS" if ok else "FAIL", msg)
    (PASSES if ok else FAILURES).append(msg)
    return ok


def skip(msg):
    say("SKIP", msg)
    SKIPS.append(msg)


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, probe, timeout, interval=0.2):
    """Calls probe() until it returns something truthy and returns that; raises
    RuntimeError after `timeout` seconds. OSError and ValueError count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            result = probe()
            if result:
                return result
        except (OSError, ValueError) as e:
            last_error = e
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{what}: not reached within {timeout:.0f}s (last error: {last_error})")
        time.sleep(interval)


def tcp_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def term_raises_exit():
    """SIGTERM (from `timeout` or CI's stage limit) raises SystemExit, so `finally:`
    blocks still stop the daemons. Only the first one: `timeout` signals its child and
    then the whole process group, and a second SystemExit would cut the cleanup short."""

    def handler(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


class Daemons:
    """Processes started here, stopped in reverse order by PID."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.procs = []

    def log_path(self, name):
        return os.path.join(self.logdir, f"{name}.log")

    def start(self, name, argv, **kw):
        log = open(self.log_path(name), "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **kw)
        self.procs.append((name, proc, log))
        say("INFO", f"started {name} pid={proc.pid}")
        return proc

    def alive(self, name):
        for n, proc, _ in self.procs:
            if n == name and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_path(name)}")

    def stop(self, name, timeout=10):
        for n, proc, log in self.procs:
            if n != name:
                continue
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()
            return proc.returncode
        return None

    def stop_all(self):
        for name, _, _ in reversed(self.procs):
            self.stop(name)

    def tail(self, name, lines=30):
        try:
            with open(self.log_path(name), "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value (last one wins)
        self.body = body


MAX_HEAD = 64 * 1024


def read_response(sock, buf, head_only=False):
    """Reads one Content-Length framed response from sock, `buf` holding bytes
    already read. Returns (Response, rest_of_buffer, bytes_received_here).
    Bounded: a head of at most MAX_HEAD bytes, the body by its Content-Length,
    each recv by the socket's timeout."""
    got = 0
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise RuntimeError(f"no end of the response head in {len(buf)} bytes")
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before a full response head")
        got += len(chunk)
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode(errors="replace")
    if "content-length" not in headers:
        raise RuntimeError("response without Content-Length")
    length = 0 if head_only else int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed in the middle of a body")
        got += len(chunk)
        rest += chunk
    return Response(status, headers, rest[:length]), rest[length:], got


def http_get(port, path, method="GET", timeout=5):
    """One request on a fresh connection to 127.0.0.1:port (Connection: close); the Response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        resp, _, _ = read_response(s, b"", head_only=method == "HEAD")
        return resp
