"""One result line per check, for the Python check scripts (imported, not run).

    sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
    from checks import CHECKS, Group, free_port, wait_until

- CHECKS.ok(name, condition, detail) prints "PASS: name" or "FAIL: name: detail"
  and counts it; CHECKS.skip(name, why) prints "SKIP: ..." (never a pass);
  CHECKS.info(text) prints "INFO: ..."; CHECKS.summary(title) prints the
  totals and the failed names and returns the exit code (1 when one failed).
- Group: many assertions on one subject reported as one line, each failing
  assertion still named.
- free_port(): a free TCP port on 127.0.0.1.
- wait_until(probe, timeout, interval): calls probe() until it returns
  something truthy (returned) or the time is up (None); bounded in time and
  in count.

Same line format as scripts/lib/check.sh.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Checks:
    """Counts results and prints one line per check."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.skipped: list[str] = []
        self.passed = 0
        self.started = time.monotonic()

    def ok(self, name: str, condition: Any, detail: str = "") -> bool:
        if condition:
            self.passed += 1
            print(f"PASS: {name}", flush=True)
        else:
            self.failed.append(name)
            print(f"FAIL: {name}{': ' + detail if detail else ''}", flush=True)
        return bool(condition)

    def fail(self, name: str, detail: str) -> None:
        self.ok(name, False, detail)

    def skip(self, name: str, why: str) -> None:
        self.skipped.append(name)
        print(f"SKIP: {name}: {why}", flush=True)

    @staticmethod
    def info(text: str) -> None:
        print(f"INFO: {text}", flush=True)

    def summary(self, title: str) -> int:
        took = time.monotonic() - self.started
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        if self.failed:
            print(f"FAIL: {title}: {len(self.failed)} of {self.passed + len(self.failed)} checks failed"
                  f"{skipped} ({took:.1f}s):")
            for name in self.failed:
                print(f"  - {name}")
            return 1
        print(f"PASS: {title}: all {self.passed} checks passed{skipped} ({took:.1f}s)")
        return 0


CHECKS = Checks()


class Group:
    """Many assertions on one subject, reported as one line (each failing
    assertion is still named)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.results: list[tuple[str, bool, str]] = []

    def ok(self, name: str, condition: Any, detail: str = "") -> None:
        self.results.append((name, bool(condition), detail))

    def report(self) -> None:
        failed = [(n, d) for n, c, d in self.results if not c]
        if not failed:
            CHECKS.ok(f"{self.title}: {len(self.results)} assertions", True)
        for name, detail in failed:
            CHECKS.fail(f"{self.title}: {name}", detail)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(probe: Callable[[], T], timeout: float, interval: float = 0.1) -> T | None:
    """probe() until truthy; None after `timeout` seconds (at most
    timeout/interval + 1 calls)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    return None
