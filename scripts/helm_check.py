#!/usr/bin/env python3
"""Offline proof of the vrypt-server Helm chart, with the real Helm library.

Run through scripts/helm-check.sh, which installs the pinned tools and
builds the static server binary first. There is no helm binary and no
cluster here; instead:

1. Chart.yaml appVersion must equal the crate version in Cargo.toml.
2. `helm lint --strict` (helm-python-sdk, i.e. Helm v4's Go library) for the
   defaults and every ci/*-values.yaml file, at every Kubernetes version.
3. Render each scenario per Kubernetes version and validate the objects with
   `kubernetes-validate --strict` for that version.
4. Assert on the rendered objects: probes on the admin port, no preStop
   hook, grace period = shutdownDelay + shutdownTimeout + 5 s, the init
   container running the server image's `sysctl` subcommand and the only
   privileged container, every other container "restricted", backlog env
   equal to somaxconn, the main Service without any metrics port, the
   metrics Service, the ServiceMonitor, the helm test pod.
5. Values the chart must refuse are refused (schema and template checks);
   every duration spelling the server accepts renders, and the server
   binary parses what was rendered.
6. The Pod Security lookup for real: Helm's `lookup` against a stub
   Kubernetes API server on 127.0.0.1 that serves the release namespace
   with or without a `pod-security.kubernetes.io/enforce` label.
7. Package the chart and render the package; `helm show readme` of the
   package prints the chart README; Chart.yaml's icon is the repository's
   helm/vrypt-server/icon.svg, an SVG document.
8. Under Podman: a FROM scratch image holding the static server binary;
   the rendered init container (`vrypt-server sysctl ...`) runs in it,
   `--privileged`, in a private network namespace shaped like a pod; the
   values are read back as UID 65532 in that namespace, the host's stay
   unchanged, failures print one line. Then the real server runs in that
   namespace with the rendered container's args and env: every probe path
   answers 2xx, the serving port answers the configured status, the listen
   backlog equals the pod's somaxconn, the helm test commands pass, and
   SIGTERM shows the shutdown delay (/readyz 503 while still serving).

Scenarios: every ci/*-values.yaml (chart-testing also installs these on
kind in GitHub Actions) and every ci/render-only/*-values.yaml (rendered and
validated here only: an image digest kind could not pull, a LoadBalancer
kind cannot provide). Core kinds are validated by kubernetes-validate; the
HTTPRoute against the Gateway API v1 schema compiled in the pinned npm
package @kubernetes-models/gateway-api (run with node), plus a check that
every field it sets is a field of the API (that package's type
declarations), since the compiled schema, like a CRD, ignores unknown ones.

Prints one PASS/FAIL/SKIP/INFO line per check; exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_python
import yaml
from helm_python import _native
from helm_python import chart as helm
from helm_python.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
# pylint: disable-next=wrong-import-position
from e2e import FAILURES, PASSES, SKIPS, check, say, skip, wait_for

ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = ROOT / "helm" / "vrypt-server"
RELEASE = "ci"
NAMESPACE = "vrypt"
# Oldest version the chart supports (Chart.yaml kubeVersion), the last
# without the preStop sleep action (the chart no longer needs it), and two
# newer ones. All are bundled by kubernetes-validate 1.37.0 (1.25 ... 1.37).
KUBE_VERSIONS = ("1.25", "1.29", "1.31", "1.35")
MONITORING_API = "monitoring.coreos.com/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
# Kinds without a schema in kubernetes-validate (CRDs), checked otherwise.
CRD_KINDS = ("ServiceMonitor", "HTTPRoute")
RENDER_ONLY_DIR = CHART_DIR / "ci" / "render-only"
ICON_FILE = CHART_DIR / "icon.svg"
ICON_URL = "https://raw.githubusercontent.com/vrypt/vrypt-server/main/helm/vrypt-server/icon.svg"
# npm packages of scripts/helm-check-node, installed by scripts/helm-check.sh.
NODE_DIR = Path(os.environ.get("HELM_CHECK_NODE", ""))
GATEWAY_TYPES_DIR = NODE_DIR / "node_modules" / "@kubernetes-models" / "gateway-api" / "gateway.networking.k8s.io" / "v1"
# Labels of every object, and the chart's own ones commonLabels cannot replace.
CHART_LABELS = ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by")
CRATE_VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
CHART_META = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
SERVER_IMAGE = f"ghcr.io/vrypt/vrypt-server:{CRATE_VERSION}"
SERVER_UID = 65532
# The release image's ENV (Dockerfile), which every container of the image
# starts with unless its env replaces it.
IMAGE_ENV = {"VRYPT_ADMIN_LISTEN": "[::]:9901"}
GRACE_MARGIN_SECONDS = 5
PSA_LABEL = "pod-security.kubernetes.io/enforce"
# Headers the server manages (spec: refused by --header, case-insensitive).
MANAGED_HEADERS = ("Content-Length", "Transfer-Encoding", "Connection", "Date", "Content-Type")
# The server's duration grammar (every duration flag), at most 365 days.
DURATION_RE = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ms|s|m|h)?$")
DURATION_SCALE_MS = {"": 1000.0, "s": 1000.0, "ms": 1.0, "m": 60000.0, "h": 3600000.0}
MAX_DURATION_MS = 365 * 86400 * 1000.0
# Sysctls the "baseline"/"restricted" Pod Security levels allow in pod
# securityContext.sysctls (Kubernetes 1.29+ policy).
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}


# --- results (one line each, through scripts/lib/e2e.py) -------------------

class Checks:
    """The shared check/skip/say of scripts/lib/e2e.py, with a detail that is
    printed only when the check fails."""

    started = time.monotonic()

    @staticmethod
    def ok(name: str, condition: Any, detail: str = "") -> bool:
        return bool(check(bool(condition), name if condition or not detail else f"{name}: {detail}"))

    @classmethod
    def fail(cls, name: str, detail: str) -> None:
        cls.ok(name, False, detail)

    @staticmethod
    def skip(name: str, why: str) -> None:
        skip(f"{name}: {why}")

    @staticmethod
    def info(text: str) -> None:
        say("INFO", text)

    @classmethod
    def summary(cls, title: str) -> int:
        took = time.monotonic() - cls.started
        skipped = f", {len(SKIPS)} skipped" if SKIPS else ""
        if FAILURES:
            say("FAIL", f"{title}: {len(FAILURES)} of {len(PASSES) + len(FAILURES)} checks failed{skipped} "
                        f"({took:.1f}s):")
            for name in FAILURES:
                print(f"  - {name[:200]}")
            return 1
        say("PASS", f"{title}: all {len(PASSES)} checks passed{skipped} ({took:.1f}s)")
        return 0


CHECKS = Checks


class Group:
    """Many assertions on one render, reported as one line (each failing
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


def settle(what: str, probe: Callable[[], Any], timeout: float) -> bool:
    """wait_for (bounded in time), as a yes/no."""
    try:
        wait_for(what, probe, timeout, interval=0.1)
    except RuntimeError:
        return False
    return True


# --- values and rendering ---------------------------------------------------

def merge(base: Any, override: Any) -> Any:
    """Helm's coalescing: maps merge, a null in the override deletes."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Render:
    """One rendered release: objects by (kind, name), plus NOTES.txt."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(files.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(doc)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.kinds(kind)
        if len(found) != 1:
            raise AssertionError(f"expected one {kind}, found {len(found)}")
        return found[0]

    def named(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [o for o in self.kinds(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def workload(self) -> dict[str, Any]:
        found = self.kinds("Deployment") + self.kinds("DaemonSet")
        if len(found) != 1:
            raise AssertionError(f"expected one workload, found {len(found)}")
        return found[0]

    def main_service(self) -> dict[str, Any]:
        return self.named("Service", f"{RELEASE}-vrypt-server") or {}

    def metrics_service(self) -> dict[str, Any] | None:
        return self.named("Service", f"{RELEASE}-vrypt-server-metrics")

    def test_pod(self) -> dict[str, Any] | None:
        pods = self.kinds("Pod")
        return pods[0] if pods else None

    def yaml_text(self) -> str:
        return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in self.objects)


def render_options(kube: str, api_versions: tuple[str, ...], upgrade: bool = False) -> str:
    # Chart.render() in helm-python-sdk 0.2.2 exposes no capabilities, but
    # the library's render options take kube_version and api_versions
    # (unknown option keys are rejected, so these are honoured): this is
    # `helm template --kube-version ... --api-versions ...`.
    return json.dumps({
        "name": RELEASE,
        "namespace": NAMESPACE,
        "is_install": not upgrade,
        "is_upgrade": upgrade,
        "kube_version": f"v{kube}.0",
        "api_versions": list(api_versions),
    })


class Chart:
    """The chart loaded once through the Helm library."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chart = helm.Chart.load(path)
        self.defaults = yaml.safe_load((path / "values.yaml").read_text())

    def render(self, values: dict[str, Any], kube: str, api_versions: tuple[str, ...] = ()) -> Render:
        """Offline, like `helm template`: `lookup` returns nothing."""
        raw = _native.call_string("helm_render", self.chart._raw(), json.dumps(values),
                                  render_options(kube, api_versions))
        return Render(json.loads(raw))

    def render_against(self, cfg: Config, values: dict[str, Any], kube: str, upgrade: bool = False) -> Render:
        """Cluster-aware, like `helm install/upgrade`: `lookup` asks the API
        server `cfg` points at (helm-python-sdk Config.render, with the same
        options as render())."""
        raw = _native.call_string("helm_render_with_config", cfg._raw(), self.chart._raw(), json.dumps(values),
                                  render_options(kube, (), upgrade))
        return Render(json.loads(raw))

    def merged(self, values: dict[str, Any]) -> dict[str, Any]:
        return merge(self.defaults, values)


def error_reason(exc: Exception) -> str:
    """The interesting line of a Helm render error."""
    lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip()]
    if lines and lines[0].startswith("values don't meet"):
        return " / ".join(lines[2:5])
    return lines[0] if lines else repr(exc)


# --- durations, as the server parses them -----------------------------------

def duration_text(value: Any) -> str:
    """What the chart must hand the server for a duration value."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a duration")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.9f}".rstrip("0")
    return str(value)


def duration_ms(value: Any) -> float:
    text = duration_text(value)
    m = DURATION_RE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration")
    number = text[:len(text) - len(m.group(3) or "")]
    return float(number) * DURATION_SCALE_MS[m.group(3) or ""]


def expected_grace(values: dict[str, Any]) -> int:
    if values.get("terminationGracePeriodSeconds") is not None:
        return int(values["terminationGracePeriodSeconds"])
    total = duration_ms(values["server"]["shutdownDelay"]) + duration_ms(values["server"]["shutdownTimeout"])
    return math.ceil(total / 1000) + GRACE_MARGIN_SECONDS


# --- Pod Security "restricted" ----------------------------------------------

def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Violations of the Pod Security Standard "restricted" (which includes
    "baseline"), as `container: reason` strings."""
    spec = pod["spec"]
    psc = spec.get("securityContext") or {}
    out = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            out.append(f"pod: {field}")
    for sysctl in psc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            out.append(f"pod: unsafe sysctl {sysctl['name']}")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            out.append(f"pod: volume type {sorted(kinds)}")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    containers = [("init", c) for c in spec.get("initContainers") or []]
    containers += [("", c) for c in spec["containers"]]
    for _, c in containers:
        name = c["name"]
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation not false")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            out.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile {seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities add {caps['add']}")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{name}: hostPort")
    return out


# --- helpers on rendered pods -------------------------------------------------

def pod_spec(render: Render) -> dict[str, Any]:
    return render.workload()["spec"]["template"]["spec"]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    for c in spec["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env") or []}


def container_port(c: dict[str, Any], port: Any) -> int | None:
    """A probe's or Service's port (a number or a container port name)."""
    if isinstance(port, int):
        return port
    for p in c.get("ports") or []:
        if p["name"] == port:
            return int(p["containerPort"])
    return None


def init_container(spec: dict[str, Any]) -> dict[str, Any] | None:
    inits = [c for c in spec.get("initContainers") or [] if c["name"] == "sysctl"]
    return inits[0] if inits else None


def init_sysctls(spec: dict[str, Any]) -> dict[str, str] | None:
    """The sysctls the init container sets, parsed from its args
    (`sysctl NAME=VALUE...`)."""
    init = init_container(spec)
    if init is None:
        return None
    args = init.get("args") or []
    if args[:1] != ["sysctl"]:
        return {}
    return dict(a.split("=", 1) for a in args[1:])


def expected_init_sysctls(values: dict[str, Any]) -> dict[str, str]:
    sic = values["sysctlInitContainer"]
    if not sic["enabled"]:
        return {}
    return {k: str(v) for k, v in (sic.get("sysctls") or {}).items() if v is not None}


def expected_backlog(values: dict[str, Any]) -> str | None:
    if values["server"].get("backlog"):
        return str(values["server"]["backlog"])
    init = expected_init_sysctls(values)
    if "net.core.somaxconn" in init:
        return init["net.core.somaxconn"]
    for sysctl in values.get("podSysctls") or []:
        if sysctl["name"] == "net.core.somaxconn":
            return sysctl["value"]
    return None


def expected_test_urls(values: dict[str, Any]) -> dict[str, str]:
    """helm test containers -> the URL each must get 2xx/3xx from."""
    out = {}
    status = values["response"].get("status") or 200
    path = values["server"]["healthPath"] or ("/" if status < 400 else "")
    if path:
        out["http"] = f"http://{RELEASE}-vrypt-server.{NAMESPACE}.svc:{values['service']['port']}{path}"
    if values["metricsService"]["enabled"]:
        out["admin"] = (f"http://{RELEASE}-vrypt-server-metrics.{NAMESPACE}.svc:"
                        f"{values['metricsService']['port']}/readyz")
    return out


def expected_image(image: dict[str, Any], default_tag: str) -> str:
    """The chart's image rule: a digest wins over the tag."""
    if image.get("digest"):
        return f"{image['repository']}@{image['digest']}"
    return f"{image['repository']}:{image.get('tag') or default_tag}"


def pod_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return (spec.get("initContainers") or []) + spec["containers"]


def named_port(spec: dict[str, Any], name: Any) -> int | None:
    """A NetworkPolicy's port (a number or a container port name of any
    container in the pod)."""
    if isinstance(name, int):
        return name
    for c in pod_containers(spec):
        for port in c.get("ports") or []:
            if port.get("name") == name:
                return int(port["containerPort"])
    return None


def test_pod_peer() -> dict[str, Any]:
    return {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE,
                                            "app.kubernetes.io/name": "vrypt-server-test"}}}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def image_pinned(ref: str) -> bool:
    if "@sha256:" in ref:
        return True
    tag = ref.rsplit("/", 1)[-1].partition(":")[2]
    return bool(tag) and tag != "latest"


# --- per-render assertions ----------------------------------------------------

def check_render(ok: Callable[..., None], values: dict[str, Any], render: Render,
                 apis: tuple[str, ...] = ()) -> None:
    """Assertions that hold for every scenario."""
    workload = render.workload()
    spec = pod_spec(render)
    srv = values["server"]
    ok(f"workload kind is {values['kind']}", workload["kind"] == values["kind"])
    server = container(spec, "server")
    image = expected_image(values["image"], CRATE_VERSION)
    ok(f"server image {image} (the appVersion tag unless a tag or digest is set)", server["image"] == image,
       server["image"])

    # Security: privileged only in the sysctl init container; the rest is
    # restricted-compliant, and the server container is locked down fully.
    violations = restricted_violations(render.workload()["spec"]["template"])
    offenders = {v.split(":")[0] for v in violations}
    expected = {"sysctl"} if expected_init_sysctls(values) else set()
    ok("only the sysctl init container breaks Pod Security 'restricted'", offenders == expected,
       "; ".join(violations))
    privileged = [c["name"] for c in pod_containers(spec)
                  if (c.get("securityContext") or {}).get("privileged")]
    ok("privileged only in the init container", privileged == (["sysctl"] if expected else []), str(privileged))
    sc = server["securityContext"]
    psc = spec["securityContext"]
    ok("server container restricted settings",
       sc.get("runAsNonRoot") is True and sc.get("runAsUser") == SERVER_UID and sc.get("runAsGroup") == SERVER_UID
       and sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
       and sc.get("capabilities", {}).get("drop") == ["ALL"] and sc.get("seccompProfile") == {"type": "RuntimeDefault"}
       and psc.get("runAsNonRoot") is True and psc.get("seccompProfile") == {"type": "RuntimeDefault"},
       json.dumps(sc))
    ok("no API token and no service links", spec.get("automountServiceAccountToken") is False
       and spec.get("enableServiceLinks") is False)

    # Ports, admin listener and probes: all probes on the admin port.
    env = env_of(server)
    ok("container ports http and admin", server["ports"] == [
        {"name": "http", "containerPort": srv["port"], "protocol": "TCP"},
        {"name": "admin", "containerPort": srv["adminPort"], "protocol": "TCP"}], json.dumps(server["ports"]))
    ok("VRYPT_PORT", env.get("VRYPT_PORT") == str(srv["port"]))
    ok(f"VRYPT_ADMIN_LISTEN {srv['adminHost']}:{srv['adminPort']}",
       env.get("VRYPT_ADMIN_LISTEN") == f"{srv['adminHost']}:{srv['adminPort']}", str(env.get("VRYPT_ADMIN_LISTEN")))
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (server.get(probe) or {}).get("httpGet") or {}
        ok(f"{probe} GET {path} on the admin port",
           get.get("path") == path and container_port(server, get.get("port")) == srv["adminPort"], json.dumps(get))
    ok("health path", env.get("VRYPT_HEALTH_PATH") == (srv["healthPath"] or None), str(env.get("VRYPT_HEALTH_PATH")))
    status = values["response"].get("status")
    ok("VRYPT_STATUS", env.get("VRYPT_STATUS") == (str(status) if status else None))

    # Shutdown: the server's own delay instead of a preStop hook, and a
    # grace period computed from both durations.
    ok("no lifecycle hooks (no preStop sleep on any version)", "lifecycle" not in server)
    ok("VRYPT_SHUTDOWN_DELAY", env.get("VRYPT_SHUTDOWN_DELAY") == duration_text(srv["shutdownDelay"]),
       str(env.get("VRYPT_SHUTDOWN_DELAY")))
    ok("VRYPT_SHUTDOWN_TIMEOUT", env.get("VRYPT_SHUTDOWN_TIMEOUT") == duration_text(srv["shutdownTimeout"]),
       str(env.get("VRYPT_SHUTDOWN_TIMEOUT")))
    grace = spec["terminationGracePeriodSeconds"]
    needed = (duration_ms(srv["shutdownDelay"]) + duration_ms(srv["shutdownTimeout"])) / 1000
    ok(f"terminationGracePeriodSeconds {grace} = ceil(delay + timeout = {needed:g}s) + {GRACE_MARGIN_SECONDS}",
       grace == expected_grace(values) and grace > needed)

    # Sysctls: the server image's own subcommand; the backlog follows somaxconn.
    want_init = expected_init_sysctls(values)
    got_init = init_sysctls(spec)
    if want_init:
        init = init_container(spec) or {}
        isc = init.get("securityContext")
        ok("init container sets exactly the configured sysctls", got_init == want_init,
           f"got {got_init}, want {want_init}")
        ok("init container runs the server image: args sysctl NAME=VALUE..., no command, no shell",
           init.get("image") == server["image"] and "command" not in init
           and init.get("args") == ["sysctl", *[f"{k}={v}" for k, v in sorted(want_init.items())]]
           and init.get("imagePullPolicy") == server["imagePullPolicy"], json.dumps(init.get("args")))
        ok("init container privileged root, read-only rootfs",
           isc == {"privileged": True, "runAsNonRoot": False, "runAsUser": 0, "readOnlyRootFilesystem": True},
           json.dumps(isc))
        req = init["resources"]["requests"]
        ok("init container tiny requests", req == {"cpu": "10m", "memory": "8Mi"}, json.dumps(req))
    extra_inits = [c["name"] for c in values.get("extraInitContainers") or []]
    ok(f"init containers: {'sysctl, ' if want_init else ''}then extraInitContainers {extra_inits}",
       [c["name"] for c in spec.get("initContainers") or []] == (["sysctl"] if want_init else []) + extra_inits,
       json.dumps([c["name"] for c in spec.get("initContainers") or []]))
    want_pod_sysctls = values.get("podSysctls") or []
    ok("pod securityContext.sysctls as configured", (psc.get("sysctls") or []) == want_pod_sysctls)
    ok(f"VRYPT_BACKLOG follows somaxconn ({expected_backlog(values)})",
       env.get("VRYPT_BACKLOG") == expected_backlog(values), str(env.get("VRYPT_BACKLOG")))

    # StatsD.
    exporter = values["statsdExporter"]["enabled"]
    sidecar = f"127.0.0.1:{values['statsdExporter']['statsdPort']}"
    statsd = values["statsd"]["target"] or (sidecar if exporter else "off")
    ok(f"VRYPT_STATSD {statsd}", env.get("VRYPT_STATSD") == statsd)
    names = [c["name"] for c in spec["containers"]]
    want_names = ["server"] + (["statsd-exporter"] if exporter else []) + [c["name"] for c in
                                                                           values.get("extraContainers") or []]
    ok(f"containers {want_names}", names == want_names, str(names))
    if exporter:
        want = expected_image(values["statsdExporter"]["image"], "")
        ok(f"exporter image {want}", container(spec, "statsd-exporter")["image"] == want)
    volumes = [v["name"] for v in spec.get("volumes") or []]
    ok("extraVolumes in the pod, extraVolumeMounts in the server container",
       all(v["name"] in volumes for v in values.get("extraVolumes") or [])
       and all(m in (server.get("volumeMounts") or []) for m in values.get("extraVolumeMounts") or []),
       f"volumes {volumes}, mounts {server.get('volumeMounts')}")
    for field in ("revisionHistoryLimit", "minReadySeconds"):
        want = values.get(field)
        ok(f"{field} {want if want is not None else 'not set (Kubernetes default)'}",
           workload["spec"].get(field) == want, str(workload["spec"].get(field)))

    # Services: the main one has the serving port only, whatever its type;
    # the metrics Service (ClusterIP) has the admin port (and the exporter).
    svc = render.main_service()
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    selector = workload["spec"]["selector"]["matchLabels"]
    ok("Service selects the pods", all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
       and selector == svc["spec"]["selector"])
    ok("main Service: only the http port (no admin or metrics port on it)",
       [(p["name"], p["targetPort"], p["port"]) for p in svc["spec"]["ports"]]
       == [("http", "http", values["service"]["port"])], json.dumps(svc["spec"]["ports"]))
    msvc = render.metrics_service()
    if values["metricsService"]["enabled"]:
        want_ports = [("admin", "admin", values["metricsService"]["port"])]
        if exporter:
            want_ports.append(("exporter", "exporter", values["statsdExporter"]["metricsPort"]))
        ok("metrics Service: ClusterIP, admin (+ exporter) ports, not-ready pods included",
           msvc is not None and msvc["spec"]["type"] == "ClusterIP"
           and [(p["name"], p["targetPort"], p["port"]) for p in msvc["spec"]["ports"]] == want_ports
           and msvc["spec"]["selector"] == selector and msvc["spec"].get("publishNotReadyAddresses") is True
           and msvc["metadata"]["labels"].get("app.kubernetes.io/component") == "metrics",
           json.dumps(msvc))
        ok("admin Service port targets the admin container port",
           container_port(server, "admin") == srv["adminPort"])
    else:
        ok("no metrics Service", msvc is None)
    ok("no Service other than main and metrics", len(render.kinds("Service")) == 1 + (msvc is not None))

    check_metadata(ok, values, render)
    check_network_policy(ok, values, render)
    check_ingress(ok, values, render)
    check_http_route(ok, values, render, GATEWAY_API in apis)
    check_notes_access(ok, values, render)

    # The helm test pod: the healthcheck subcommand, per URL that must be 2xx.
    test = render.test_pod()
    want_urls = expected_test_urls(values)
    if want_urls:
        got_urls = {c["name"]: c["args"][2] for c in test["spec"]["containers"]} if test else {}
        ok("helm test pod runs the server image's healthcheck per URL", test is not None
           and test["metadata"]["annotations"].get("helm.sh/hook") == "test" and got_urls == want_urls
           and all(c["image"] == server["image"] and c["args"][:2] == ["healthcheck", "--url"]
                   for c in test["spec"]["containers"]), f"got {got_urls}, want {want_urls}")
        ok("helm test pod is restricted", restricted_violations(test) == [], "; ".join(restricted_violations(test)))
        labels = test["metadata"]["labels"]
        ok("helm test pod does not carry the workload's selector labels",
           not all(labels.get(k) == v for k, v in selector.items()), json.dumps(labels))
        ok(f"helm test pod runs {image}", all(c["image"] == image for c in test["spec"]["containers"]))
    else:
        ok("no helm test pod (nothing must answer 2xx)", test is None)
    images = [c["image"] for c in (spec.get("initContainers") or []) + spec["containers"]]
    ok("every image pinned", all(image_pinned(i) for i in images), str(images))
    ok("NOTES.txt rendered", f"vrypt-server {CRATE_VERSION} is installed" in render.notes
       and "/healthz" in render.notes and "/readyz" in render.notes)


def check_metadata(ok: Callable[..., None], values: dict[str, Any], render: Render) -> None:
    """commonLabels on every object and pod, next to the chart's labels;
    commonAnnotations on every object (an object's own win); selectors
    untouched."""
    common_labels = values.get("commonLabels") or {}
    common_annotations = values.get("commonAnnotations") or {}
    pods = [("pod template", render.workload()["spec"]["template"]["metadata"])]
    bad = []
    for obj in render.objects:
        meta = obj["metadata"]
        what = f"{obj['kind']} {meta['name']}"
        labels = meta.get("labels") or {}
        missing = [k for k in CHART_LABELS if k not in labels]
        if missing:
            bad.append(f"{what}: no {missing}")
        if obj["kind"] == "Pod":
            want_name = "vrypt-server-test"
        else:
            want_name = "vrypt-server"
        if labels.get("app.kubernetes.io/name") != want_name or labels.get("app.kubernetes.io/instance") != RELEASE:
            bad.append(f"{what}: name/instance labels {labels}")
        if any(labels.get(k) != v for k, v in common_labels.items()):
            bad.append(f"{what}: commonLabels missing in {labels}")
        annotations = meta.get("annotations") or {}
        for key, value in common_annotations.items():
            if key not in annotations:
                bad.append(f"{what}: commonAnnotation {key} missing")
            elif annotations[key] != value and not key.startswith("helm.sh/hook"):
                own = object_own_annotations(values, obj)
                if own.get(key) != annotations[key]:
                    bad.append(f"{what}: annotation {key}={annotations[key]!r}")
    for what, meta in pods:
        labels = meta.get("labels") or {}
        if any(labels.get(k) != v for k, v in common_labels.items()):
            bad.append(f"{what}: commonLabels missing in {labels}")
    selector = render.workload()["spec"]["selector"]["matchLabels"]
    if set(selector) != {"app.kubernetes.io/name", "app.kubernetes.io/instance"}:
        bad.append(f"workload selector {selector}")
    ok(f"every object carries the chart's labels{', commonLabels' if common_labels else ''}"
       f"{', commonAnnotations' if common_annotations else ''}; selectors unchanged", not bad, "; ".join(bad))


def object_own_annotations(values: dict[str, Any], obj: dict[str, Any]) -> dict[str, str]:
    """The annotations an object takes from its own value (they win over
    commonAnnotations)."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    if kind == "Service":
        section = "metricsService" if name.endswith("-metrics") else "service"
        return values[section].get("annotations") or {}
    own = {"ServiceAccount": "serviceAccount", "Ingress": "ingress", "HTTPRoute": "httpRoute"}.get(kind)
    return (values[own].get("annotations") or {}) if own else {}


def check_network_policy(ok: Callable[..., None], values: dict[str, Any], render: Render) -> None:
    """Every port the NetworkPolicy names is a container port of the pod (a
    wrong name would silently allow nothing), with the configured peers."""
    policies = render.kinds("NetworkPolicy")
    npv = values["networkPolicy"]
    if not npv["enabled"]:
        ok("no NetworkPolicy", not policies)
        return
    if len(policies) != 1:
        ok("one NetworkPolicy", False, str(len(policies)))
        return
    spec = pod_spec(render)
    np_spec = policies[0]["spec"]
    workload_selector = render.workload()["spec"]["selector"]["matchLabels"]
    ok("NetworkPolicy selects the workload's pods (Ingress only)",
       np_spec["podSelector"] == {"matchLabels": workload_selector} and np_spec["policyTypes"] == ["Ingress"],
       json.dumps(np_spec["podSelector"]))
    rules = np_spec.get("ingress") or []
    resolved = [[(p.get("port"), named_port(spec, p.get("port")), p.get("protocol")) for p in r.get("ports") or []]
                for r in rules]
    unresolved = [name for rule in resolved for name, number, _ in rule if number is None]
    ok("every NetworkPolicy port names a container port of the pod", not unresolved and rules,
       f"no container port named {unresolved}")
    want_admin = [srv_port for srv_port in [values["server"]["adminPort"]]]
    if values["statsdExporter"]["enabled"]:
        want_admin.append(values["statsdExporter"]["metricsPort"])
    ports = [[number for _, number, _ in rule] for rule in resolved]
    ok(f"NetworkPolicy rules: serving port {values['server']['port']}, admin port(s) {want_admin}, TCP",
       ports == [[values["server"]["port"]], want_admin]
       and all(proto == "TCP" for rule in resolved for _, _, proto in rule), str(resolved))
    test = render.test_pod()
    for rule, key in zip(rules, ("http", "admin"), strict=False):
        peers = npv[key]["from"] or []
        if peers:
            want = [*peers, test_pod_peer()]
            ok(f"NetworkPolicy {key} peers: networkPolicy.{key}.from and the helm test pod",
               rule.get("from") == want and (test is None or selects(test_pod_peer()["podSelector"],
                                                                       test["metadata"]["labels"])),
               json.dumps(rule.get("from")))
        else:
            ok(f"NetworkPolicy {key} port open to every source (networkPolicy.{key}.from empty)", "from" not in rule)
    pod_labels = render.workload()["spec"]["template"]["metadata"]["labels"]
    ok("NetworkPolicy selects the pods, not the helm test pod",
       selects(np_spec["podSelector"], pod_labels) and (test is None or not selects(np_spec["podSelector"],
                                                                                  test["metadata"]["labels"])))


def check_ingress(ok: Callable[..., None], values: dict[str, Any], render: Render) -> None:
    ingresses = render.kinds("Ingress")
    iv = values["ingress"]
    if not iv["enabled"]:
        ok("no Ingress", not ingresses)
        return
    if len(ingresses) != 1:
        ok("one Ingress", False, str(len(ingresses)))
        return
    spec = ingresses[0]["spec"]
    svc = render.main_service()
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    backends = [path["backend"]["service"] for rule in spec["rules"] for path in rule["http"]["paths"]]
    ok("Ingress backends: the main Service, by a port name it has",
       backends and all(b["name"] == svc["metadata"]["name"] and b["port"].get("name") in svc_ports
                        for b in backends), json.dumps(backends))
    ok(f"Ingress ingressClassName {iv['className'] or '(cluster default)'}",
       spec.get("ingressClassName") == (iv["className"] or None), str(spec.get("ingressClassName")))
    got = [(r.get("host", ""), [(p["path"], p["pathType"]) for p in r["http"]["paths"]]) for r in spec["rules"]]
    want = [(h.get("host", ""), [(p["path"], p.get("pathType", "Prefix")) for p in h["paths"]]) for h in iv["hosts"]]
    ok("Ingress hosts and paths as configured", got == want, str(got))
    ok("Ingress tls as configured", spec.get("tls") == (iv["tls"] or None), json.dumps(spec.get("tls")))


def check_http_route(ok: Callable[..., None], values: dict[str, Any], render: Render, api: bool) -> None:
    routes = render.kinds("HTTPRoute")
    hv = values["httpRoute"]
    if not (hv["enabled"] and api):
        ok("no HTTPRoute" + (" without gateway.networking.k8s.io/v1, NOTES warn" if hv["enabled"] else ""),
           not routes and (not hv["enabled"] or "no HTTPRoute" in render.notes))
        return
    if len(routes) != 1:
        ok("one HTTPRoute", False, str(len(routes)))
        return
    spec = routes[0]["spec"]
    svc = render.main_service()
    svc_ports = {p["port"] for p in svc["spec"]["ports"]}
    backends = [b for rule in spec["rules"] for b in rule["backendRefs"]]
    ok("HTTPRoute backendRefs: the main Service, by a port it has",
       backends and all(b.get("kind", "Service") == "Service" and b["name"] == svc["metadata"]["name"]
                        and b["port"] in svc_ports for b in backends), json.dumps(backends))
    ok("HTTPRoute parentRefs, hostnames, matches, filters, timeouts as configured",
       spec["parentRefs"] == hv["parentRefs"] and spec.get("hostnames", []) == hv["hostnames"]
       and spec["rules"][0].get("matches", []) == hv["matches"]
       and spec["rules"][0].get("filters", []) == hv["filters"]
       and spec["rules"][0].get("timeouts", {}) == hv["timeouts"], json.dumps(spec))


def check_notes_access(ok: Callable[..., None], values: dict[str, Any], render: Render) -> None:
    """NOTES.txt tells how to reach the server, by Service type (and
    through the Ingress)."""
    kind = values["service"]["type"]
    needle = {"ClusterIP": "port-forward service/", "NodePort": "{.spec.ports[0].nodePort}",
              "LoadBalancer": "{.status.loadBalancer.ingress[0].ip}"}[kind]
    others = [n for k, n in {"ClusterIP": "port-forward service/", "NodePort": "nodePort}",
                             "LoadBalancer": "loadBalancer.ingress"}.items() if k != kind]
    ok(f"NOTES: how to reach a {kind} Service", needle in render.notes and not any(o in render.notes for o in others))
    if values["ingress"]["enabled"]:
        scheme = "https" if values["ingress"]["tls"] else "http"
        urls = [f"{scheme}://{h.get('host') or 'ADDRESS-OF-YOUR-INGRESS-CONTROLLER'}{p['path']}"
                for h in values["ingress"]["hosts"] for p in h["paths"]]
        ok(f"NOTES: the Ingress URLs {urls}", all(f"curl -i {u}\n" in render.notes for u in urls))


def check_scenario(ok: Callable[..., None], label: str, values: dict[str, Any], render: Render,
                   with_monitoring: bool) -> None:
    """Assertions specific to one ci values file."""
    workload = render.workload()
    spec = pod_spec(render)
    server = container(spec, "server")
    env = env_of(server)
    hpas, pdbs, monitors = render.kinds("HorizontalPodAutoscaler"), render.kinds("PodDisruptionBudget"), \
        render.kinds("ServiceMonitor")
    if label in ("default", "init-off", "sysctls", "status-404", "status-503"):
        ok("Deployment replicas 2, PDB maxUnavailable 1, no HPA",
           workload["spec"].get("replicas") == 2 and len(pdbs) == 1
           and pdbs[0]["spec"].get("maxUnavailable") == 1 and not hpas)
        tsc = spec.get("topologySpreadConstraints") or []
        ok("topology spread over nodes with the pod selector",
           len(tsc) == 1 and tsc[0]["labelSelector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
           and tsc[0]["whenUnsatisfiable"] == "ScheduleAnyway")
    if label == "default":
        ok("sysctl defaults: no outbound-only sysctls", init_sysctls(spec) == {
            "net.core.somaxconn": "65535", "net.ipv4.tcp_max_syn_backlog": "65535",
            "net.ipv4.tcp_fin_timeout": "15"}, str(init_sysctls(spec)))
        ok("VRYPT_BACKLOG 65535", env.get("VRYPT_BACKLOG") == "65535")
        ok("shutdown defaults: delay 5s, timeout 10s, grace 20",
           env.get("VRYPT_SHUTDOWN_DELAY") == "5s" and env.get("VRYPT_SHUTDOWN_TIMEOUT") == "10s"
           and spec["terminationGracePeriodSeconds"] == 20)
        ok("admin listener [::]:9901", env.get("VRYPT_ADMIN_LISTEN") == "[::]:9901")
        ok("NOTES explain where the init container is forbidden and how to turn it off",
           "GKE Autopilot" in render.notes and "sysctlInitContainer.enabled=false" in render.notes)
    if label == "init-off":
        ok("whole pod passes Pod Security 'restricted'", restricted_violations(workload["spec"]["template"]) == [])
        ok("no VRYPT_BACKLOG without a somaxconn", "VRYPT_BACKLOG" not in env)
    if label == "daemonset":
        ok("DaemonSet without replicas, HPA, PDB or spread constraints",
           "replicas" not in workload["spec"] and not hpas and not pdbs and not spec.get("topologySpreadConstraints"))
        ok("DaemonSet updateStrategy", workload["spec"].get("updateStrategy", {}).get("type") == "RollingUpdate")
    if label == "hpa-pdb":
        ok("Deployment leaves replicas to the HPA", "replicas" not in workload["spec"])
        hpa = hpas[0] if len(hpas) == 1 else {}
        ok("autoscaling/v2 HPA on the Deployment",
           hpa.get("apiVersion") == "autoscaling/v2"
           and hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": workload["metadata"]["name"]}
           and hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 6
           and [m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]] == [60, 80])
        ok("PDB minAvailable 1 only", len(pdbs) == 1 and pdbs[0]["spec"].get("minAvailable") == 1
           and "maxUnavailable" not in pdbs[0]["spec"]
           and pdbs[0]["spec"]["selector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"])
    if label == "metrics":
        exporter = container(spec, "statsd-exporter")
        ok("exporter image pinned prom/statsd-exporter",
           exporter["image"] == "docker.io/prom/statsd-exporter:v0.28.0")
        ok("exporter listens for StatsD on pod loopback UDP 9125",
           "--statsd.listen-udp=127.0.0.1:9125" in exporter["args"] and "--statsd.listen-tcp=" in exporter["args"])
        ok("exporter container port 'exporter' 9102",
           exporter["ports"] == [{"name": "exporter", "containerPort": 9102, "protocol": "TCP"}])
        ok("VRYPT_STATSD_TAGS", env.get("VRYPT_STATSD_TAGS") == "cluster:ci")
        cm = render.one("ConfigMap")
        ok("exporter mapping ConfigMap mounted", "vrypt.responses.*" in cm["data"]["mapping.yaml"]
           and exporter["volumeMounts"][0]["mountPath"] == "/etc/statsd-exporter"
           and spec["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"])
        if with_monitoring:
            sm = monitors[0] if len(monitors) == 1 else {}
            endpoints = sm.get("spec", {}).get("endpoints", [])
            selected = [s["metadata"]["name"] for s in render.kinds("Service")
                        if all(s["metadata"]["labels"].get(k) == v
                               for k, v in sm.get("spec", {}).get("selector", {}).get("matchLabels", {}).items())]
            ok("ServiceMonitor when monitoring.coreos.com/v1 exists",
               sm.get("apiVersion") == MONITORING_API
               and sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
               and sm["metadata"]["labels"].get("release") == "prometheus", json.dumps(sm))
            ok("ServiceMonitor scrapes /metrics on the admin port, then the exporter",
               [(e["port"], e["path"], e["interval"]) for e in endpoints]
               == [("admin", "/metrics", "30s"), ("exporter", "/metrics", "30s")], json.dumps(endpoints))
            ok("ServiceMonitor selects the metrics Service only", selected == [f"{RELEASE}-vrypt-server-metrics"],
               str(selected))
        else:
            ok("no ServiceMonitor without monitoring.coreos.com/v1, NOTES warn",
               not monitors and "no ServiceMonitor" in render.notes)
    if label == "sysctls":
        ok("custom sysctls, tcp_fin_timeout dropped", init_sysctls(spec) == {
            "net.core.somaxconn": "32768", "net.ipv4.tcp_max_syn_backlog": "8192",
            "net.ipv4.tcp_keepalive_time": "600", "net.ipv4.tcp_syncookies": "1"}, str(init_sysctls(spec)))
        ok("VRYPT_BACKLOG 32768", env.get("VRYPT_BACKLOG") == "32768")
    if label == "status-404":
        ok("404 default backend: status, body, /healthz on the serving port",
           env.get("VRYPT_STATUS") == "404" and env.get("VRYPT_BODY") == "default backend - 404"
           and env.get("VRYPT_HEALTH_PATH") == "/healthz")
    if label == "status-503":
        ok("503 maintenance: status, Retry-After, durations 1.5 and 500ms, grace 7",
           env.get("VRYPT_STATUS") == "503" and env.get("VRYPT_HEADER") == "Retry-After: 120"
           and env.get("VRYPT_SHUTDOWN_DELAY") == "1.5" and env.get("VRYPT_SHUTDOWN_TIMEOUT") == "500ms"
           and spec["terminationGracePeriodSeconds"] == 7)
        ok("503: the helm test checks only the admin port", list(expected_test_urls(values)) == ["admin"])
    if label == "networkpolicy":
        ok("networkpolicy: one NetworkPolicy, three http peers, two admin peers",
           [len(r.get("from") or []) for r in render.one("NetworkPolicy")["spec"]["ingress"]] == [3, 2])
    if label == "ingress":
        ok("ingress: NodePort Service, Ingress class nginx with TLS for vrypt.example.com",
           render.main_service()["spec"]["type"] == "NodePort"
           and render.one("Ingress")["spec"]["ingressClassName"] == "nginx"
           and render.one("Ingress")["spec"]["tls"] == [{"secretName": "vrypt-example-tls",
                                                         "hosts": ["vrypt.example.com"]}])
    if label == "extras":
        inits = [c["name"] for c in spec["initContainers"]]
        sidecar = container(spec, "sidecar")
        ok("extras: init containers sysctl then version; sidecar on 8081 with the server image (tpl), "
           "both restricted; scratch volume in server and sidecar; revisionHistoryLimit 3, minReadySeconds 5",
           inits == ["sysctl", "version"] and sidecar["image"] == server["image"] == SERVER_IMAGE
           and spec["initContainers"][1]["image"] == SERVER_IMAGE
           and sidecar["ports"] == [{"name": "sidecar", "containerPort": 8081, "protocol": "TCP"}]
           and {"name": "scratch", "mountPath": "/scratch"} in sidecar["volumeMounts"]
           and {"name": "scratch", "mountPath": "/scratch"} in server["volumeMounts"]
           and workload["spec"]["revisionHistoryLimit"] == 3 and workload["spec"]["minReadySeconds"] == 5,
           json.dumps(spec)[:600])
        labelled = [o["kind"] for o in render.objects if (o["metadata"].get("labels") or {}).get("team") == "edge"]
        ok(f"extras: commonLabels on all {len(render.objects)} objects ({', '.join(labelled)})",
           len(labelled) == len(render.objects))
    if label == "digest":
        digest = values["image"]["digest"]
        refs = [c["image"] for c in pod_containers(spec) if c["name"] != "statsd-exporter"]
        refs += [c["image"] for c in (render.test_pod() or {"spec": {"containers": []}})["spec"]["containers"]]
        ok(f"digest: {len(refs)} server-image references by digest, the exporter by its own",
           refs and all(r == f"ghcr.io/vrypt/vrypt-server@{digest}" for r in refs)
           and container(spec, "statsd-exporter")["image"]
           == f"docker.io/prom/statsd-exporter@{values['statsdExporter']['image']['digest']}", str(refs))
    if label == "loadbalancer":
        svc = render.main_service()["spec"]
        ok("loadbalancer: LoadBalancer with Local traffic policy and source ranges, http port only",
           svc["type"] == "LoadBalancer" and svc["externalTrafficPolicy"] == "Local"
           and svc["loadBalancerSourceRanges"] == ["203.0.113.0/24"] and [p["name"] for p in svc["ports"]] == ["http"])
    if label not in ("metrics", "digest"):
        ok("no exporter, ConfigMap or ServiceMonitor", not render.kinds("ConfigMap") and not monitors)


# --- the steps ----------------------------------------------------------------

def run(cmd: list[str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def check_versions() -> None:
    app = str(CHART_META["appVersion"])
    CHECKS.ok(f"Chart.yaml appVersion {app!r} == Cargo.toml version {CRATE_VERSION!r}", app == CRATE_VERSION)
    CHECKS.ok("Chart.yaml apiVersion v2", CHART_META["apiVersion"] == "v2")
    check_icon()


def check_icon() -> None:
    """Chart.yaml's icon is this repository's icon.svg as served from main,
    and that file is an SVG document (XML, <svg> root with a viewBox)."""
    icon = CHART_META.get("icon", "")
    prefix = "https://raw.githubusercontent.com/vrypt/vrypt-server/main/"
    in_repo = ROOT / icon.removeprefix(prefix) if icon.startswith(prefix) else None
    CHECKS.ok(f"Chart.yaml icon {icon} is {ICON_FILE.relative_to(ROOT)} on main",
              icon == ICON_URL and in_repo == ICON_FILE and ICON_FILE.is_file(), str(in_repo))
    try:
        root = ET.parse(ICON_FILE).getroot()
    except (OSError, ET.ParseError) as exc:
        CHECKS.fail("icon.svg is well-formed XML", str(exc))
        return
    view_box = (root.get("viewBox") or "").split()
    shapes = [e for e in root.iter() if e.tag.split("}")[-1] in ("path", "rect", "circle", "polygon", "ellipse")]
    CHECKS.ok(f"icon.svg is an SVG document (<svg> root, viewBox {' '.join(view_box)}, {len(shapes)} shapes, "
              f"{ICON_FILE.stat().st_size} bytes)",
              root.tag == "{http://www.w3.org/2000/svg}svg" and len(view_box) == 4 and shapes
              and ICON_FILE.stat().st_size < 64 * 1024, root.tag)


def scenario_values() -> dict[str, dict[str, Any]]:
    """ci/*-values.yaml, then ci/render-only/*-values.yaml, by name."""
    scenarios = {}
    for path in sorted((CHART_DIR / "ci").glob("*-values.yaml")) + sorted(RENDER_ONLY_DIR.glob("*-values.yaml")):
        name = path.name.removesuffix("-values.yaml")
        if name in scenarios:
            raise SystemExit(f"helm_check: two values files named {name}")
        scenarios[name] = yaml.safe_load(path.read_text()) or {}
    return scenarios


def check_lint(scenarios: dict[str, dict[str, Any]]) -> None:
    for kube in KUBE_VERSIONS:
        for label, values in scenarios.items():
            report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube}.0")
            problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
            CHECKS.ok(f"helm lint --strict {label} k8s {kube}", not problems, json.dumps(problems))


def kubernetes_validate(kube: str, files: list[Path], objects: int) -> None:
    """`kubernetes-validate --strict` for one version: every object but the
    CRDs without a bundled schema (the ServiceMonitor, checked field by field
    in check_scenario; the HTTPRoute, checked by check_gateway_routes) must
    pass."""
    proc = run(["kubernetes-validate", "--strict", "-k", kube, *map(str, files)], timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [line for line in lines if line.startswith("ERROR")]
    warns = [line for line in lines if line.startswith("WARN")
             and not any(f"kind {kind}" in line for kind in CRD_KINDS)]
    passed = [line for line in lines if line.startswith("INFO") and " passed for resource " in line]
    CHECKS.ok(f"kubernetes-validate --strict -k {kube}: {len(passed)} of {objects} objects in {len(files)} renders",
              proc.returncode == 0 and not errors and not warns and len(passed) == objects,
              "\n".join(errors + warns) or (proc.stdout + proc.stderr)[-2000:])


def check_validator_catches(render: Render, out: Path) -> None:
    """Guard against a validator that passes everything: an unknown field
    deep in the pod template must fail --strict."""
    broken = copy.deepcopy(render.workload())
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsRoot"] = False
    path = out / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    proc = run(["kubernetes-validate", "--strict", "-k", KUBE_VERSIONS[-1], str(path)], timeout=60)
    CHECKS.ok("kubernetes-validate --strict rejects an unknown field (self-test)",
              proc.returncode != 0 and "runAsRoot" in proc.stdout + proc.stderr, proc.stdout + proc.stderr)


# --- Gateway API: the HTTPRoute against the v1 schema ---------------------------

class GatewayTypes:
    """The fields of each Gateway API v1 type, read from the pinned npm
    package's TypeScript declarations (`declare class NAME ... { "field"?:
    TYPE; ... }`, generated from the same CRD schema as its validators).
    The validators, like the API server's CRD schema, accept unknown
    fields; these lists find them."""

    PREFIX = "IIoK8sSigsGatewayApiApisV1"
    CLASS = re.compile(r"^export declare class (\w+) ")
    FIELD = re.compile(r'^    "([A-Za-z0-9]+)"\??: (.*?);?$')

    def __init__(self, directory: Path) -> None:
        self.fields: dict[str, dict[str, str]] = {}
        for path in sorted(directory.glob("*.d.ts")):
            current: dict[str, str] | None = None
            depth = 0
            for line in path.read_text().splitlines():
                m = self.CLASS.match(line)
                if m:
                    current = self.fields.setdefault(m.group(1), {})
                    continue
                if current is None:
                    continue
                if depth:  # inside an inline object type (a string map)
                    depth += line.count("{") - line.count("}")
                    continue
                if line.startswith("}"):
                    current = None
                    continue
                f = self.FIELD.match(line)
                if f:
                    current[f.group(1)] = f.group(2)
                    depth = f.group(2).count("{") - f.group(2).count("}")

    def unknown(self, value: Any, type_name: str, where: str) -> list[str]:
        """Paths of fields in `value` that type `type_name` does not have."""
        type_name = type_name.strip()
        if type_name.startswith("Array<") and type_name.endswith(">"):
            inner = type_name[len("Array<"):-1]
            return [u for i, item in enumerate(value if isinstance(value, list) else [])
                    for u in self.unknown(item, inner, f"{where}[{i}]")]
        name = type_name.removeprefix(self.PREFIX)
        fields = self.fields.get(name)
        if fields is None or not isinstance(value, dict):
            return []  # a scalar, an enum, a string map, or metadata
        out = []
        for key, item in value.items():
            if key not in fields:
                out.append(f"{where}.{key}")
            else:
                out.extend(self.unknown(item, fields[key], f"{where}.{key}"))
        return out


def gateway_validate(routes: list[dict[str, Any]]) -> list[str | None]:
    """Each route through the compiled Gateway API v1 schema (node)."""
    proc = run(["node", str(NODE_DIR / "validate-httproute.mjs")], input=json.dumps(routes), timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"node validate-httproute.mjs: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def check_gateway_routes(routes: dict[str, dict[str, Any]]) -> None:
    """Every rendered HTTPRoute is valid Gateway API v1, with no field the
    API does not have; and both checks reject a broken route (self-test)."""
    if not (NODE_DIR / "validate-httproute.mjs").is_file() or not GATEWAY_TYPES_DIR.is_dir():
        CHECKS.fail("Gateway API schema", f"HELM_CHECK_NODE={NODE_DIR} has no validate-httproute.mjs or "
                                          "@kubernetes-models/gateway-api (run scripts/helm-check.sh)")
        return
    types = GatewayTypes(GATEWAY_TYPES_DIR)
    CHECKS.ok(f"Gateway API v1 type declarations read ({len(types.fields)} types, HTTPRoute fields "
              f"{sorted(types.fields.get('HTTPRoute', {}))})",
              {"apiVersion", "kind", "metadata", "spec"} <= set(types.fields.get("HTTPRoute", {}))
              and "backendRefs" in types.fields.get("HTTPRouteRule", {}))
    CHECKS.ok(f"HTTPRoutes rendered: {', '.join(routes)}", bool(routes))
    names = list(routes)
    try:
        results = gateway_validate([routes[n] for n in names])
    except (RuntimeError, ValueError) as exc:
        CHECKS.fail("Gateway API schema (node)", str(exc))
        return
    for name, error in zip(names, results, strict=True):
        CHECKS.ok(f"{name}: HTTPRoute valid against the Gateway API v1 schema", error is None, str(error))
        unknown = types.unknown(routes[name], "HTTPRoute", "HTTPRoute")
        CHECKS.ok(f"{name}: every HTTPRoute field is a Gateway API v1 field", not unknown, ", ".join(unknown))

    # Self-tests: each check must reject what it is there to reject.
    sample = routes[names[0]]
    broken = {
        "path match type 'Prefix' (Ingress spelling)": ("spec", "rules", 0, "matches", 0, "path", "type", "Prefix"),
        "backend port 70000": ("spec", "rules", 0, "backendRefs", 0, "port", 70000),
        "hostname with an underscore": ("spec", "hostnames", ["bad_host.example.com"]),
    }
    variants = []
    for steps in broken.values():
        route = copy.deepcopy(sample)
        node: Any = route
        for step in steps[:-2]:
            node = node.setdefault(step, {}) if isinstance(step, str) else node[step]
        node[steps[-2]] = steps[-1]
        variants.append(route)
    results = gateway_validate(variants)
    for (what, _), error in zip(broken.items(), results, strict=True):
        CHECKS.ok(f"Gateway API schema rejects a route with a {what} (self-test)", error is not None,
                  "accepted")
    route = copy.deepcopy(sample)
    route["spec"]["rules"][0]["backendRef"] = route["spec"]["rules"][0].pop("backendRefs")
    unknown = types.unknown(route, "HTTPRoute", "HTTPRoute")
    CHECKS.ok("unknown-field check finds a misspelt rules[0].backendRef (self-test)",
              unknown == ["HTTPRoute.spec.rules[0].backendRef"], str(unknown))


def check_renders(ch: Chart, scenarios: dict[str, dict[str, Any]], out: Path) -> dict[str, Render]:
    """Render every scenario for every version, validate and assert."""
    latest: dict[str, Render] = {}
    routes: dict[str, dict[str, Any]] = {}
    for kube in KUBE_VERSIONS:
        files, objects = [], 0
        for label, values in scenarios.items():
            merged = ch.merged(values)
            # The CRD-backed objects render only where the cluster serves
            # their API: each such scenario with and without it.
            variants: list[tuple[str, tuple[str, ...]]] = [(label, ())]
            if label == "metrics":
                variants.append(("metrics+monitoring-api", (MONITORING_API,)))
            if label == "httproute":
                variants.append(("httproute+gateway-api", (GATEWAY_API,)))
            for name, apis in variants:
                monitoring = MONITORING_API in apis
                try:
                    render = ch.render(values, kube, apis)
                except helm_python.HelmError as exc:
                    CHECKS.fail(f"render {name} k8s {kube}", str(exc))
                    continue
                path = out / f"k8s-{kube}" / f"{name}.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(render.yaml_text())
                files.append(path)
                objects += len([o for o in render.objects if o["kind"] not in CRD_KINDS])
                for route in render.kinds("HTTPRoute"):
                    routes[f"{name} k8s {kube}"] = route
                group = Group(f"render {name} k8s {kube}")
                try:
                    check_render(group.ok, merged, render, apis)
                    check_scenario(group.ok, label, merged, render, monitoring)
                except (AssertionError, KeyError, IndexError, TypeError, ValueError) as exc:
                    group.ok("object shape", False, repr(exc))
                group.report()
                latest[name] = render
        kubernetes_validate(kube, files, objects)
    check_validator_catches(latest["default"], out)
    check_gateway_routes(routes)
    return latest


def expect_refused(ch: Chart, name: str, values: dict[str, Any], needle: str = "") -> None:
    """The render must fail (schema or template), with `needle` in the
    message when given."""
    try:
        ch.render(values, KUBE_VERSIONS[-1])
    except helm_python.HelmError as exc:
        reason = error_reason(exc)
        if CHECKS.ok(f"refused: {name}", needle in str(exc), f"message lacks {needle!r}: {reason}"):
            CHECKS.info(f"  -> {reason[:240]}")
    else:
        CHECKS.fail(f"refused: {name}", "rendered without error")


def check_extra_cases(ch: Chart, binary: Path | None) -> None:
    """Value combinations beyond the ci files, and values that must fail."""
    kube = KUBE_VERSIONS[-1]
    cases = {
        "podSysctls somaxconn": ({"sysctlInitContainer": {"enabled": False},
                                  "podSysctls": [{"name": "net.core.somaxconn", "value": "4096"}]}, "4096"),
        "init wins over podSysctls": ({"podSysctls": [{"name": "net.core.somaxconn", "value": "4096"}]}, "65535"),
        "explicit server.backlog": ({"server": {"backlog": 1024}}, "1024"),
        "somaxconn dropped": ({"sysctlInitContainer": {"sysctls": {"net.core.somaxconn": None}}}, None),
    }
    for name, (values, want) in cases.items():
        render = ch.render(values, kube)
        got = env_of(container(pod_spec(render), "server")).get("VRYPT_BACKLOG")
        CHECKS.ok(f"backlog case '{name}': VRYPT_BACKLOG={want}", got == want, str(got))
    for pdb, want in (({"minAvailable": "50%"}, {"minAvailable": "50%"}),
                      ({"maxUnavailable": 0}, {"maxUnavailable": 0})):
        spec = ch.render({"podDisruptionBudget": pdb}, kube).one("PodDisruptionBudget")["spec"]
        CHECKS.ok(f"PDB {pdb} renders {want}", {k: v for k, v in spec.items() if k != "selector"} == want, str(spec))
    openshift = {"sysctlInitContainer": {"enabled": False},
                 "podSecurityContext": {"runAsUser": None, "runAsGroup": None},
                 "securityContext": {"runAsUser": None, "runAsGroup": None}}
    render = ch.render(openshift, kube)
    pods = [render.workload()["spec"]["template"], render.test_pod()]
    CHECKS.ok("OpenShift values (UID left to the SCC): no runAsUser, still 'restricted'",
              "runAsUser" not in json.dumps(pods) and all(restricted_violations(p) == [] for p in pods if p))
    render = ch.render({"image": {"digest": "sha256:" + "a" * 64}}, kube)
    spec = pod_spec(render)
    CHECKS.ok("image digest wins over the tag, in the server and the init container",
              container(spec, "server")["image"] == "ghcr.io/vrypt/vrypt-server@sha256:" + "a" * 64
              and (init_container(spec) or {}).get("image") == container(spec, "server")["image"])
    render = ch.render({"extraArgs": ["--workers", "2"], "extraEnv": [{"name": "X", "value": "1"}],
                        "response": {"status": 204, "headers": ["X-A: 1", "Server: edge", "x-date-ish: 2"],
                                     "serverHeader": False}}, kube)
    server = container(pod_spec(render), "server")
    env = env_of(server)
    CHECKS.ok("extraArgs, extraEnv and response settings reach the server (own Server header when serverHeader "
              "is false)",
              server["args"] == ["--workers", "2"] and env.get("X") == "1" and env.get("VRYPT_STATUS") == "204"
              and env.get("VRYPT_HEADER") == "X-A: 1\nServer: edge\nx-date-ish: 2"
              and env.get("VRYPT_NO_SERVER_HEADER") == "1")

    # A LoadBalancer with everything metrics-related on: nothing but the
    # serving port on the load balancer.
    render = ch.render({"service": {"type": "LoadBalancer"}, "statsdExporter": {"enabled": True},
                        "serviceMonitor": {"enabled": True, "scrapeExporter": True}}, kube, (MONITORING_API,))
    lb, msvc = render.main_service(), render.metrics_service() or {}
    CHECKS.ok("service.type=LoadBalancer: only http on the LB, admin and exporter on the ClusterIP metrics Service",
              lb["spec"]["type"] == "LoadBalancer" and [p["name"] for p in lb["spec"]["ports"]] == ["http"]
              and msvc.get("spec", {}).get("type") == "ClusterIP"
              and [p["name"] for p in msvc["spec"]["ports"]] == ["admin", "exporter"],
              json.dumps([lb["spec"], msvc.get("spec")]))
    render = ch.render({"metricsService": {"enabled": False}, "response": {"status": 404}}, kube)
    CHECKS.ok("status 404 without metrics Service or health path: no helm test pod, no metrics Service",
              render.test_pod() is None and render.metrics_service() is None)

    # Durations: every spelling the server accepts, for every duration value.
    shutdown_forms: list[Any] = ["10", "10s", "1.5s", "500ms", "2m", "1h", "0", ".5", "1.", "0.25s", 10, 1.5, 0,
                                 0.00001]
    timeout_forms: list[Any] = ["10", "10s", "1.5s", "500ms", "2m", "1h", ".5", "1.", "10ms", 10, 1.5, 0.01]
    fields = [("server.shutdownDelay", shutdown_forms), ("server.shutdownTimeout", shutdown_forms),
              ("server.headerTimeout", timeout_forms), ("server.idleTimeout", timeout_forms),
              ("server.bodyTimeout", timeout_forms), ("server.writeTimeout", timeout_forms),
              ("statsd.interval", timeout_forms)]
    env_names = {"server.shutdownDelay": "VRYPT_SHUTDOWN_DELAY", "server.shutdownTimeout": "VRYPT_SHUTDOWN_TIMEOUT",
                 "server.headerTimeout": "VRYPT_HEADER_TIMEOUT", "server.idleTimeout": "VRYPT_IDLE_TIMEOUT",
                 "server.bodyTimeout": "VRYPT_BODY_TIMEOUT", "server.writeTimeout": "VRYPT_WRITE_TIMEOUT",
                 "statsd.interval": "VRYPT_STATSD_INTERVAL"}
    rendered_texts: set[str] = set()
    for field, forms in fields:
        section, key = field.split(".")
        bad = []
        for form in forms:
            values = {section: {key: form}}
            try:
                render = ch.render(values, kube)
            except helm_python.HelmError as exc:
                bad.append(f"{form!r}: {error_reason(exc)}")
                continue
            spec = pod_spec(render)
            got = env_of(container(spec, "server")).get(env_names[field])
            merged = ch.merged(values)
            if got != duration_text(form):
                bad.append(f"{form!r} rendered {got!r}")
            if spec["terminationGracePeriodSeconds"] != expected_grace(merged):
                bad.append(f"{form!r}: grace {spec['terminationGracePeriodSeconds']} != {expected_grace(merged)}")
            rendered_texts.add(duration_text(form))
        CHECKS.ok(f"{field} accepts {len(forms)} duration spellings ({', '.join(map(repr, forms))})", not bad,
                  "; ".join(bad))
    CHECKS.ok("grace period 1.5 + 500ms -> 7, 2m + 1h -> 3725, 0 + 0 -> 5",
              [pod_spec(ch.render({"server": {"shutdownDelay": d, "shutdownTimeout": t}}, kube))
               ["terminationGracePeriodSeconds"] for d, t in ((1.5, "500ms"), ("2m", "1h"), (0, 0))] == [7, 3725, 5])
    for form in ("", "5d", "10 s", "-1", "1e3", "s", "1.5.5", "ms", "1h30m", -1, 31536001, True):
        expect_refused(ch, f"server.shutdownDelay {form!r}", {"server": {"shutdownDelay": form}})
    for form in ("5d", "10 s", "1e3", "-1s"):
        expect_refused(ch, f"server.idleTimeout {form!r}", {"server": {"idleTimeout": form}})
    expect_refused(ch, "statsd.interval ''", {"statsd": {"interval": ""}})
    expect_refused(ch, "server.headerTimeout '5ms' (server minimum 10ms)", {"server": {"headerTimeout": "5ms"}},
                   "minimum of 10ms")
    expect_refused(ch, "server.writeTimeout 0 (server minimum 10ms)", {"server": {"writeTimeout": 0}},
                   "minimum of 10ms")
    expect_refused(ch, "statsd.interval '1ms'", {"statsd": {"interval": "1ms"}}, "minimum of 10ms")
    expect_refused(ch, "server.shutdownTimeout '8761h' (over 365 days)", {"server": {"shutdownTimeout": "8761h"}},
                   "365 days")
    expect_refused(ch, "grace period not above shutdownDelay + shutdownTimeout", {"terminationGracePeriodSeconds": 15},
                   "must be larger than server.shutdownDelay + server.shutdownTimeout")
    expect_refused(ch, "grace period 2 for 1.5 + 500ms",
                   {"terminationGracePeriodSeconds": 2, "server": {"shutdownDelay": 1.5, "shutdownTimeout": "500ms"}},
                   "(1.5 + 500ms = 2s)")
    CHECKS.ok("grace period 16 for 5s + 10s accepted",
              pod_spec(ch.render({"terminationGracePeriodSeconds": 16}, kube))["terminationGracePeriodSeconds"] == 16)
    check_durations_with_server(binary, sorted(rendered_texts))

    # Statuses and headers.
    for status in (200, 404, 503, 599):
        CHECKS.ok(f"status {status} accepted", env_of(container(pod_spec(
            ch.render({"response": {"status": status}}, kube)), "server")).get("VRYPT_STATUS") == str(status))
    for status in (99, 199, 600, 999):
        expect_refused(ch, f"status {status}", {"response": {"status": status}}, "/response/status")
    spellings = [h for name in MANAGED_HEADERS for h in (f"{name}: x", f"{name.lower()}: x", f"{name.upper()}:x")]
    for header in spellings:
        expect_refused(ch, f"managed header {header!r}", {"response": {"headers": ["X-Ok: 1", header]}},
                       "/response/headers/1")
    for header in ("Server: x", "server: x", "SERVER:x"):
        expect_refused(ch, f"{header!r} while the server sends its own Server header",
                       {"response": {"headers": [header]}}, "/response/headers/0")
    for header in ("Bad Name: x", "X-A", "X-A: a\r\nX-B: b"):
        expect_refused(ch, f"malformed header {header!r}", {"response": {"headers": [header]}})

    # commonLabels/commonAnnotations against an object's own labels and
    # annotations (the object's win; no duplicate keys), tpl in extraVolumes.
    render = ch.render({"commonLabels": {"team": "edge", "tier": "common"},
                        "commonAnnotations": {"owner": "common", "only": "common"},
                        "service": {"labels": {"tier": "svc"}, "annotations": {"owner": "svc"}},
                        "extraVolumes": [{"name": "body", "configMap": {
                            "name": '{{ include "vrypt-server.fullname" . }}-body'}}]}, kube)
    meta = render.main_service()["metadata"]
    CHECKS.ok("service.labels/annotations win over commonLabels/commonAnnotations, both present",
              meta["labels"].get("tier") == "svc" and meta["labels"].get("team") == "edge"
              and meta["annotations"] == {"owner": "svc", "only": "common"}, json.dumps(meta))
    volumes = pod_spec(render).get("volumes") or []
    CHECKS.ok("extraVolumes go through tpl (a ConfigMap named after the release)",
              {"name": "body", "configMap": {"name": f"{RELEASE}-vrypt-server-body"}} in volumes, json.dumps(volumes))
    render = ch.render({"commonAnnotations": {"helm.sh/hook": "pre-install", "x": "1"}}, kube)
    CHECKS.ok("commonAnnotations cannot turn the helm test pod into another hook",
              (render.test_pod() or {})["metadata"]["annotations"]["helm.sh/hook"] == "test")
    render = ch.render({"sysctlInitContainer": {"enabled": False},
                        "extraInitContainers": [{"name": "first", "image": "{{ include \"vrypt-server.image\" . }}"}]},
                       kube)
    inits = pod_spec(render).get("initContainers") or []
    CHECKS.ok("extraInitContainers without the sysctl init container: only them",
              [c["name"] for c in inits] == ["first"] and inits[0]["image"] == SERVER_IMAGE, json.dumps(inits))
    render = ch.render({"networkPolicy": {"enabled": True}, "statsdExporter": {"enabled": True}}, kube)
    rules = render.one("NetworkPolicy")["spec"]["ingress"]
    CHECKS.ok("NetworkPolicy defaults: both ports open to every source, the exporter port in the admin rule",
              [[p["port"] for p in r["ports"]] for r in rules] == [["http"], ["admin", "exporter"]]
              and all("from" not in r for r in rules), json.dumps(rules))
    render = ch.render({"ingress": {"enabled": True, "hosts": [{"paths": [{"path": "/"}]}]}}, kube)
    rule = render.one("Ingress")["spec"]["rules"][0]
    CHECKS.ok("Ingress host left out: a rule for every host, pathType Prefix by default",
              "host" not in rule and rule["http"]["paths"][0]["pathType"] == "Prefix", json.dumps(rule))

    refused = {
        "httpRoute without parentRefs": ({"httpRoute": {"enabled": True}}, "httpRoute.parentRefs"),
        "ingress without hosts": ({"ingress": {"enabled": True, "hosts": []}}, "ingress.hosts"),
        "ingress path without a leading slash":
            ({"ingress": {"enabled": True, "hosts": [{"paths": [{"path": "api"}]}]}}, ""),
        "ingress pathType 'PathPrefix' (Gateway API spelling)":
            ({"ingress": {"enabled": True, "hosts": [{"paths": [{"path": "/", "pathType": "PathPrefix"}]}]}}, ""),
        "commonLabels replacing app.kubernetes.io/name (would break selectors)":
            ({"commonLabels": {"app.kubernetes.io/name": "other"}}, "invalid propertyName 'app.kubernetes.io/name'"),
        "ingress.labels replacing helm.sh/chart": ({"ingress": {"labels": {"helm.sh/chart": "x"}}}, ""),
        "extraContainers named server": ({"extraContainers": [{"name": "server", "image": "x:1"}]}, "is taken"),
        "two extraInitContainers with one name":
            ({"extraInitContainers": [{"name": "a", "image": "x:1"}, {"name": "a", "image": "x:1"}]}, "is taken"),
        "extra container without a name": ({"extraContainers": [{"image": "x:1"}]}, ""),
        "networkPolicy peer with a misspelt key":
            ({"networkPolicy": {"enabled": True, "http": {"from": [{"podSelectr": {}}]}}}, "podSelectr"),
        "networkPolicy ipBlock without cidr":
            ({"networkPolicy": {"enabled": True, "admin": {"from": [{"ipBlock": {}}]}}}, ""),
        "revisionHistoryLimit -1": ({"revisionHistoryLimit": -1}, ""),
        "minReadySeconds '5'": ({"minReadySeconds": "5"}, ""),
        "httpRoute parentRef port 0": ({"httpRoute": {"parentRefs": [{"name": "gw", "port": 0}]}}, ""),
        "httpRoute.timeouts with an unknown key": ({"httpRoute": {"timeouts": {"idle": "10s"}}}, ""),
        "non-net sysctl in the init container (would change the node)":
            ({"sysctlInitContainer": {"sysctls": {"vm.swappiness": "10"}}}, ""),
        "shell metacharacters in a sysctl value":
            ({"sysctlInitContainer": {"sysctls": {"net.core.somaxconn": "1'; id '"}}}, ""),
        "a second image for the init container (removed)":
            ({"sysctlInitContainer": {"image": {"repository": "busybox", "tag": "1.37.0"}}}, ""),
        "the old preStopSleepSeconds": ({"server": {"preStopSleepSeconds": 5}}, ""),
        "the old shutdownTimeoutSeconds": ({"server": {"shutdownTimeoutSeconds": 10}}, ""),
        "unknown top-level key": ({"replicas": 3}, ""),
        "unpinned exporter image": ({"statsdExporter": {"image": {"tag": "latest"}}}, ""),
        "sysctls in podSecurityContext": ({"podSecurityContext": {"sysctls": []}}, ""),
        "HPA with a DaemonSet": ({"kind": "DaemonSet", "autoscaling": {"enabled": True}}, "kind=Deployment"),
        "ServiceMonitor without the metrics Service":
            ({"serviceMonitor": {"enabled": True}, "metricsService": {"enabled": False}}, "metricsService.enabled"),
        "ServiceMonitor scraping an exporter that is off":
            ({"serviceMonitor": {"enabled": True, "scrapeExporter": True}}, "statsdExporter.enabled"),
        "admin port equal to the serving port": ({"server": {"adminPort": 8080}}, "own port"),
        "exporter port equal to the admin port":
            ({"statsdExporter": {"enabled": True, "metricsPort": 9901}}, "own port"),
        "loopback admin host (the kubelet probes the pod IP)": ({"server": {"adminHost": "127.0.0.1"}}, "loopback"),
        "health path without a leading slash": ({"server": {"healthPath": "healthz"}}, ""),
    }
    for name, (values, needle) in refused.items():
        expect_refused(ch, name, values, needle)


def check_durations_with_server(binary: Path | None, texts: list[str]) -> None:
    """Every duration text the chart rendered above is one the server binary
    parses: `vrypt-server healthcheck --timeout TEXT` against a closed port
    fails to connect (exit 1), it does not refuse the value (exit 2). The
    healthcheck --timeout minimum is 1ms, so zero is left to the unit tests."""
    if binary is None:
        CHECKS.skip("server binary parses every rendered duration", "no --server-binary given")
        return
    bad = []
    tried = [t for t in texts if duration_ms(t) >= 1]
    for text in tried:
        proc = run([str(binary), "healthcheck", "--url", "http://127.0.0.1:1/", "--timeout", text], timeout=10)
        if proc.returncode != 1 or "invalid value" in proc.stderr:
            bad.append(f"{text!r}: exit {proc.returncode} {proc.stderr.strip()}")
    CHECKS.ok(f"server binary parses all {len(tried)} rendered non-zero duration texts "
              f"({', '.join(tried)})", not bad, "; ".join(bad))
    proc = run([str(binary), "healthcheck", "--url", "http://127.0.0.1:1/", "--timeout", "5d"], timeout=10)
    CHECKS.ok("server binary refuses '5d' as the chart does (control)", proc.returncode == 2
              and "invalid value for --timeout" in proc.stderr, f"exit {proc.returncode}: {proc.stderr.strip()}")


def check_package(ch: Chart, out: Path) -> None:
    archive = Path(helm.package(CHART_DIR, destination=out))
    CHECKS.ok(f"helm package -> {archive.name}",
              archive.name == f"vrypt-server-{CHART_META['version']}.tgz" and archive.is_file())
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    CHECKS.ok("package holds schema, NOTES and test pod, not ci/ values",
              "vrypt-server/values.schema.json" in names and "vrypt-server/templates/NOTES.txt" in names
              and "vrypt-server/templates/tests/test-connection.yaml" in names
              and not any("/ci/" in n for n in names), str(names))
    CHECKS.ok("package holds README.md, not icon.svg", "vrypt-server/README.md" in names
              and "vrypt-server/icon.svg" not in names, str(names))
    shown = helm_python.show(str(archive), output_format="readme")
    readme = (CHART_DIR / "README.md").read_text()
    CHECKS.ok(f"`helm show readme {archive.name}` prints helm/vrypt-server/README.md ({len(shown)} characters, "
              f"install line for {CHART_META['version']})",
              shown.strip() == readme.strip() and f"oci://ghcr.io/vrypt/charts/vrypt-server --version "
              f"{CHART_META['version']}" in shown, shown[:300])
    packaged = helm.Chart.load(archive)
    same = packaged.render({}, name=RELEASE, namespace=NAMESPACE) == ch.chart.render({}, name=RELEASE,
                                                                                   namespace=NAMESPACE)
    CHECKS.ok("package renders identically to the chart directory", same)
    CHECKS.info(f"package {archive} {archive.stat().st_size} bytes {helm.digest(archive)}")


# --- Pod Security lookup against a stub API server -----------------------------

class StubKubeAPI:
    """The smallest Kubernetes API server Helm's `lookup "v1" "Namespace"`
    works against, on 127.0.0.1 over plain HTTP: the core group's discovery
    document (/api/v1) and GET /api/v1/namespaces/NAME. Anything else is a
    404 Status, like a real server for an unknown object. Records the paths
    it was asked for."""

    def __init__(self) -> None:
        self.namespaces: dict[str, dict[str, str]] = {}
        self.requests: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server calls it by this name
                path = self.path.split("?", 1)[0]
                stub.requests.append(path)
                code, body = stub.answer(path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if path == "/api/v1":
            return 200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
                 "verbs": ["get", "list", "watch"]}]}
        m = re.fullmatch(r"/api/v1/namespaces/([a-z0-9-]+)", path)
        if m and m.group(1) in self.namespaces:
            return 200, {"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": m.group(1), "labels": self.namespaces[m.group(1)]}}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                     "message": f"{path} not found"}

    def kubeconfig(self) -> str:
        host, port = self.server.server_address[:2]
        return yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "stub",
            "clusters": [{"name": "stub", "cluster": {"server": f"http://{host}:{port}"}}],
            "users": [{"name": "stub", "user": {"token": "stub"}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": NAMESPACE}}],
        })

    def __enter__(self) -> StubKubeAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def check_pod_security_lookup(ch: Chart) -> None:
    """Helm's real `lookup` (helm-python-sdk Config.render, i.e. the library's
    cluster-aware render that `helm install` and `helm upgrade` use) against
    the stub API server: the release namespace with each enforce level."""
    kube = KUBE_VERSIONS[-1]
    ns_path = f"/api/v1/namespaces/{NAMESPACE}"
    cases = [
        # name, namespace labels (None: no such namespace), values, upgrade, refused level
        ("enforce=restricted, install", {PSA_LABEL: "restricted"}, {}, False, "restricted"),
        ("enforce=baseline, install", {PSA_LABEL: "baseline"}, {}, False, "baseline"),
        ("enforce=restricted, upgrade", {PSA_LABEL: "restricted"}, {}, True, "restricted"),
        ("enforce=privileged", {PSA_LABEL: "privileged"}, {}, False, ""),
        ("no Pod Security label", {"team": "web"}, {}, False, ""),
        ("restricted only as warn/audit", {"pod-security.kubernetes.io/warn": "restricted",
                                           "pod-security.kubernetes.io/audit": "restricted"}, {}, False, ""),
        ("namespace does not exist yet (--create-namespace)", None, {}, False, ""),
        ("enforce=restricted with the init container off (podSysctls)", {PSA_LABEL: "restricted"},
         {"sysctlInitContainer": {"enabled": False},
          "podSysctls": [{"name": "net.ipv4.tcp_fin_timeout", "value": "15"}]}, False, ""),
    ]
    with StubKubeAPI() as api, Config(kubeconfig_content=api.kubeconfig(), namespace=NAMESPACE) as cfg:
        for name, labels, values, upgrade, level in cases:
            api.namespaces.clear()
            if labels is not None:
                api.namespaces[NAMESPACE] = labels
            api.requests.clear()
            init_on = ch.merged(values)["sysctlInitContainer"]["enabled"]
            try:
                render = ch.render_against(cfg, values, kube, upgrade)
            except helm_python.HelmError as exc:
                message = str(exc)
                if level:
                    CHECKS.ok(f"PSA lookup, {name}: refused with the way out",
                              f'enforces the "{level}" Pod Security level' in message
                              and f"namespace {NAMESPACE}" in message and "sysctlInitContainer.enabled=false" in message
                              and "podSysctls" in message, message)
                    CHECKS.info(f"  -> {error_reason(exc)[:300]}")
                else:
                    CHECKS.fail(f"PSA lookup, {name}: renders", message)
            else:
                if level:
                    CHECKS.fail(f"PSA lookup, {name}: refused", "rendered without error")
                else:
                    CHECKS.ok(f"PSA lookup, {name}: renders", render.workload()["kind"] == "Deployment")
            asked = ns_path in api.requests
            CHECKS.ok(f"PSA lookup, {name}: the chart {'asked' if init_on else 'did not ask'} the API server for "
                      f"{ns_path}", asked == init_on, str(api.requests))
    CHECKS.ok("offline render (helm template, lint): lookup empty, nothing refused",
              ch.render({}, kube).workload()["kind"] == "Deployment")


# --- Podman and network namespaces: the pod for real ---------------------------

def host_sysctl(name: str) -> str:
    return " ".join(Path("/proc/sys", name.replace(".", "/")).read_text().split())


# An HTTP client run inside a network namespace (through nsenter): GET each
# URL on a new connection, print [[status, body], ...] as JSON.
HTTP_CLIENT = r"""
import http.client, json, sys
out = []
for url in sys.argv[1:]:
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.rpartition(":")
    try:
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=5)
        conn.request("GET", "/" + path)
        resp = conn.getresponse()
        out.append([resp.status, resp.read().decode("utf-8", "replace")])
        conn.close()
    except OSError as exc:
        out.append([0, repr(exc)])
print(json.dumps(out))
"""


class NetNs:
    """A private network namespace shaped like a pod's sandbox (loopback up,
    nothing else): `ip netns add`, joined by Podman with --network ns:PATH
    and by host processes with nsenter."""

    def __init__(self, name: str) -> None:
        self.name, self.path = name, f"/run/netns/{name}"
        for cmd in (["ip", "netns", "add", name], ["ip", "-n", name, "link", "set", "lo", "up"]):
            proc = run(cmd)
            if proc.returncode != 0:
                self.close()
                raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")

    def enter(self, cmd: list[str], uid: int | None = None) -> list[str]:
        prefix = ["nsenter", f"--net={self.path}"]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        return prefix + cmd

    def read(self, names: list[str]) -> dict[str, str]:
        """The sysctls as an unprivileged process of the pod sees them."""
        paths = ["/proc/sys/" + n.replace(".", "/") for n in names]
        proc = run(self.enter(["cat", *paths], uid=SERVER_UID))
        values = [" ".join(line.split()) for line in proc.stdout.splitlines()]
        return dict(zip(names, values, strict=False))

    def get(self, urls: list[str]) -> list[tuple[int, str]]:
        proc = run(self.enter([sys.executable, "-c", HTTP_CLIENT, *urls]), timeout=30)
        try:
            return [(int(s), b) for s, b in json.loads(proc.stdout)]
        except (ValueError, TypeError):
            return [(0, proc.stderr.strip())] * len(urls)

    def podman(self, image: str, args: list[str], privileged: bool) -> subprocess.CompletedProcess[str]:
        """The init container: the image's entrypoint with `args`, as the
        rendered securityContext says (privileged root, read-only rootfs)."""
        flags = ["--privileged", "--user", "0"] if privileged else \
            ["--user", f"{SERVER_UID}:{SERVER_UID}", "--cap-drop=ALL", "--security-opt=no-new-privileges"]
        return run(["podman", "run", "--rm", "--read-only", f"--network=ns:{self.path}", *flags, image, *args])

    def close(self) -> None:
        run(["ip", "netns", "delete", self.name])


def build_server_image(work: Path, binary: Path, tag: str) -> bool:
    """What the Dockerfile makes: FROM scratch, the static binary as
    /vrypt-server, its entrypoint, UID 65532. No pull, no shell."""
    (work / "vrypt-server").write_bytes(binary.read_bytes())
    (work / "vrypt-server").chmod(0o755)
    (work / "Containerfile").write_text(
        "FROM scratch\nCOPY vrypt-server /vrypt-server\nUSER 65532:65532\nENTRYPOINT [\"/vrypt-server\"]\n")
    proc = run(["podman", "build", "--layers=false", "-q", "-t", tag, str(work)], timeout=120)
    return CHECKS.ok(f"podman build {tag} (FROM scratch + static vrypt-server, entrypoint /vrypt-server)",
                     proc.returncode == 0, proc.stderr[-500:])


def service_target(render: Render, url: str, server: dict[str, Any]) -> str:
    """A helm test URL (http://SERVICE.NS.svc:PORT/path) as the pod sees it:
    127.0.0.1 and the container port the Service's targetPort names."""
    m = re.fullmatch(r"http://([^.]+)\.[^.]+\.svc:(\d+)(/.*)", url)
    if not m:
        return url
    svc = render.named("Service", m.group(1)) or {"spec": {"ports": []}}
    for p in svc["spec"]["ports"]:
        if p["port"] == int(m.group(2)):
            return f"http://127.0.0.1:{container_port(server, p['targetPort'])}{m.group(3)}"
    return url


def server_in_pod(ns: NetNs, binary: Path, render: Render, values: dict[str, Any], backlog: str,
                  label: str) -> None:
    """Run the real server in the pod's network namespace, as UID 65532, with
    the rendered container's args and env. Every probe path must answer 2xx,
    the serving port the configured status; then the helm test commands,
    the listen backlog, and SIGTERM with the shutdown delay."""
    server = container(pod_spec(render), "server")
    env = {k: v for k, v in env_of(server).items() if v is not None}  # HOST_IP comes from the downward API
    env["PATH"] = "/usr/bin:/bin"
    srv = values["server"]
    status = values["response"].get("status") or 200
    with tempfile.TemporaryFile("w+") as log:
        def log_text() -> str:
            log.seek(0)
            return log.read()

        proc = subprocess.Popen(ns.enter([str(binary), *(server.get("args") or [])], uid=SERVER_UID), env=env,
                                stdout=log, stderr=log, start_new_session=True)
        try:
            admin = f"http://127.0.0.1:{srv['adminPort']}"
            # Like the startup probe: bounded retries until the admin port answers.
            settle("admin /healthz", lambda: proc.poll() is not None or ns.get([f"{admin}/healthz"])[0][0] == 200, 5)
            listening = proc.poll() is None and "event=listening" in log_text()
            CHECKS.ok(f"{label}: server starts with the rendered args and env in the pod netns", listening,
                      log_text()[-800:])
            if not listening:
                return

            # Probes as the kubelet sends them: httpGet path on the port the
            # probe names, resolved through the container's ports.
            probes = []
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                get = server[probe]["httpGet"]
                probes.append((probe, f"http://127.0.0.1:{container_port(server, get['port'])}{get['path']}"))
            main = f"http://127.0.0.1:{srv['port']}/"
            answers = ns.get([url for _, url in probes] + [main])
            for (probe, url), (code, body) in zip(probes, answers, strict=False):
                CHECKS.ok(f"{label}: {probe} GET {url} -> {code} (2xx)", 200 <= code < 300, body[:200])
            code, body = answers[-1]
            CHECKS.ok(f"{label}: serving port GET / -> {code} (response.status {status})", code == status, body[:200])
            if srv["healthPath"]:
                (code, body), = ns.get([f"http://127.0.0.1:{srv['port']}{srv['healthPath']}"])
                CHECKS.ok(f"{label}: health path {srv['healthPath']} on the serving port -> {code} {body.strip()!r}",
                          code == 200 and body == "ok\n")
            (code, body), = ns.get([f"{admin}/metrics"])
            CHECKS.ok(f"{label}: admin /metrics -> {code} with vrypt_requests_total", code == 200
                      and "vrypt_requests_total" in body, body[:300])

            ss = run(ns.enter(["ss", "-Hltn", f"sport = :{srv['port']}"])).stdout.split("\n")
            queues = {line.split()[2] for line in ss if line.strip()}
            CHECKS.ok(f"{label}: listen backlog (ss Send-Q) is {backlog} = pod somaxconn (VRYPT_BACKLOG "
                      f"{env.get('VRYPT_BACKLOG')})", queues == {backlog}, str(ss))

            # helm test: each test container's command, with the Service
            # name resolved as the cluster would (Service port -> targetPort).
            test = render.test_pod()
            for c in (test or {}).get("spec", {}).get("containers", []):
                args = list(c["args"])
                args[2] = service_target(render, args[2], server)
                hc = run(ns.enter([str(binary), *args], uid=SERVER_UID))
                CHECKS.ok(f"{label}: helm test container {c['name']} ({c['args'][2]} as {args[2]}) exits 0",
                          hc.returncode == 0, hc.stderr.strip())
            hc = run(ns.enter([str(binary), "healthcheck"], uid=SERVER_UID), env=env)
            CHECKS.ok(f"{label}: `vrypt-server healthcheck` with the rendered env (no --url) exits 0",
                      hc.returncode == 0, hc.stderr.strip())

            # SIGTERM: for the delay, /readyz 503 while / still serves new
            # connections; then a drain and exit 0 within the grace period.
            delay = duration_ms(srv["shutdownDelay"]) / 1000
            drain = duration_ms(srv["shutdownTimeout"]) / 1000
            grace = pod_spec(render)["terminationGracePeriodSeconds"]
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            settle("event=shutdown_started", lambda: "event=shutdown_started" in log_text() or proc.poll() is not None,
                   2)
            if delay >= 1:
                during = ns.get([f"{admin}/readyz", f"{admin}/healthz", main])
                CHECKS.ok(f"{label}: during shutdownDelay /readyz -> 503, /healthz -> 200, / -> {status} "
                          "(new connection)", [c for c, _ in during] == [503, 200, status], str(during))
            code = proc.wait(timeout=delay + drain + 10)
            took = time.monotonic() - start
            logged = re.search(r"event=shutdown_delay delay_ms=(\d+)", log_text())
            want_ms = round(delay * 1000)
            CHECKS.ok(f"{label}: SIGTERM -> exit {code} after {took:.2f}s (delay {delay:g}s, drain <= {drain:g}s, "
                      f"grace {grace}s), log delay_ms={logged.group(1) if logged else None}",
                      code == 0 and delay - 0.2 <= took < min(delay + drain + 1, grace)
                      and (logged is not None and int(logged.group(1)) == want_ms if want_ms else True),
                      log_text()[-600:])
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class ExtraContainers:
    """The rendered extraInitContainers (under Podman, in order, after the
    sysctl init container) and extraContainers (the server binary with
    their args and env, as UID 65532, in the pod's network namespace) of a
    pod whose extra containers all run the server image; the sidecars run
    while the server is checked, then get SIGTERM."""

    def __init__(self, ns: NetNs, tag: str, binary: Path, spec: dict[str, Any], label: str) -> None:
        self.ns, self.tag, self.binary, self.spec, self.label = ns, tag, binary, spec, label
        self.procs: list[tuple[subprocess.Popen[bytes], Any]] = []

    def __enter__(self) -> ExtraContainers:
        server_image = container(self.spec, "server")["image"]
        for c in (self.spec.get("initContainers") or [])[1:]:
            if c["image"] != server_image:
                CHECKS.skip(f"{self.label}: init container {c['name']}", f"image {c['image']} is not the server's")
                continue
            proc = self.ns.podman(self.tag, c.get("args") or [], privileged=False)
            CHECKS.ok(f"{self.label}: extra init container {c['name']} ({' '.join(c.get('args') or [])}) exits 0 "
                      "under podman, unprivileged", proc.returncode == 0, proc.stderr.strip())
        for c in self.spec["containers"]:
            if c["name"] in ("server", "statsd-exporter"):
                continue
            if c["image"] != server_image:
                CHECKS.skip(f"{self.label}: container {c['name']}", f"image {c['image']} is not the server's")
                continue
            env = {**IMAGE_ENV, **env_of(c), "PATH": "/usr/bin:/bin"}
            log = tempfile.TemporaryFile()
            proc = subprocess.Popen(self.ns.enter([str(self.binary), *(c.get("args") or [])], uid=SERVER_UID),
                                    env=env, stdout=log, stderr=log, start_new_session=True)
            self.procs.append((proc, log))
            port = (c.get("ports") or [{}])[0].get("containerPort")
            url = f"http://127.0.0.1:{port}/"
            up = port is not None and settle(f"{c['name']} on {port}", lambda u=url: self.ns.get([u])[0][0] == 200, 5)
            answer = self.ns.get([url])[0] if up else (0, self.log_text(log))
            CHECKS.ok(f"{self.label}: sidecar {c['name']} ({' '.join(c.get('args') or [])}) serves {url} next to "
                      "the server", up and proc.poll() is None, str(answer)[:300])
        return self

    @staticmethod
    def log_text(log: Any) -> str:
        log.seek(0)
        return log.read().decode("utf-8", "replace")

    def __exit__(self, *exc: object) -> None:
        for proc, log in self.procs:
            running = proc.poll() is None
            if running:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            CHECKS.ok(f"{self.label}: sidecar ran alongside the server until SIGTERM and exited {code}",
                      running and code == 0, self.log_text(log)[-300:])
            log.close()


def check_sysctl_failures(tag: str, rendered_args: list[str]) -> None:
    """The subcommand fails loudly: non-zero exit and exactly one line on
    stderr, for each way it can go wrong in a pod."""
    verb = rendered_args[:1]  # ["sysctl"], as rendered
    cases = (
        ("the rendered args without --privileged (read-only /proc/sys)", rendered_args, False, 1),
        ("an unknown name net.ipv4.no_such_sysctl", [*verb, "net.ipv4.no_such_sysctl=1"], True, 1),
        ("a non-net.* name kernel.shmmax", [*verb, "kernel.shmmax=68719476736"], True, 2),
        ("net.core.rmem_max, not per network namespace", [*verb, "net.core.rmem_max=8388608"], True, 1),
    )
    for name, args, privileged, want_code in cases:
        ns = NetNs(f"vrypt-helm-fail-{os.getpid()}")
        try:
            proc = ns.podman(tag, args, privileged)
            lines = proc.stderr.strip().splitlines()
            CHECKS.ok(f"sysctl with {name}: exit {proc.returncode}, one line on stderr",
                      proc.returncode == want_code and len(lines) == 1 and "sysctl" in proc.stderr,
                      f"exit {proc.returncode}, stderr {proc.stderr!r}")
            CHECKS.info(f"  -> {lines[-1] if lines else ''}")
        finally:
            ns.close()


def check_podman(renders: dict[str, Render], values: dict[str, dict[str, Any]], binary: Path | None) -> None:
    if binary is None:
        CHECKS.skip("Podman and server checks", "no --server-binary given")
        return
    tag = f"localhost/vrypt-helm-check:{os.getpid()}"
    rmem_before = host_sysctl("net.core.rmem_max")
    with tempfile.TemporaryDirectory(prefix="vrypt-helm-podman-") as tmp:
        if not build_server_image(Path(tmp), binary, tag):
            return
        try:
            for label in ("default", "sysctls", "status-404", "status-503", "extras"):
                spec = pod_spec(renders[label])
                init = init_container(spec) or {}
                want = init_sysctls(spec) or {}
                names = sorted(want)
                host_before = {n: host_sysctl(n) for n in names}
                ns = NetNs(f"vrypt-helm-{label}-{os.getpid()}")
                try:
                    fresh = ns.read(names)
                    CHECKS.info(f"{label}: fresh netns before init {fresh}")
                    proc = ns.podman(tag, init["args"], privileged=True)
                    CHECKS.ok(f"{label}: rendered init container (sysctl, {len(names)} values) exits 0 under "
                              "podman --privileged in the pod netns", proc.returncode == 0, proc.stderr.strip())
                    CHECKS.ok(f"{label}: init container prints each sysctl as read back",
                              proc.stdout.splitlines() == [f"{n} = {want[n]}" for n in names], proc.stdout)
                    got = ns.read(names)
                    CHECKS.ok(f"{label}: UID {SERVER_UID} in the pod netns reads back {len(got)} sysctls as "
                              "configured", got == want, f"got {got}, want {want}")
                    changed = sorted(n for n in names if fresh[n] != want[n])
                    CHECKS.ok(f"{label}: init really changed the netns ({len(changed)} of {len(names)} differed "
                              "from a fresh netns)", len(changed) >= len(names) - 1, str(changed))
                    host_after = {n: host_sysctl(n) for n in names}
                    CHECKS.ok(f"{label}: host sysctls unchanged", host_after == host_before,
                              f"{host_before} -> {host_after}")
                    with ExtraContainers(ns, tag, binary, spec, label):
                        server_in_pod(ns, binary, renders[label], values[label],
                                      env_of(container(spec, "server"))["VRYPT_BACKLOG"], label)
                finally:
                    ns.close()

            # Control: the same server env in a pod whose init container did
            # not run gets the kernel's cap, the namespace's default somaxconn.
            ns = NetNs(f"vrypt-helm-control-{os.getpid()}")
            try:
                default_somaxconn = ns.read(["net.core.somaxconn"])["net.core.somaxconn"]
                server_in_pod(ns, binary, renders["default"], values["default"], default_somaxconn,
                              "control, init not run")
            finally:
                ns.close()
            check_sysctl_failures(tag, init_container(pod_spec(renders["default"]))["args"])
            CHECKS.ok("host net.core.rmem_max unchanged", host_sysctl("net.core.rmem_max") == rmem_before)
        finally:
            run(["podman", "rmi", "-f", tag])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="keep renders and the package here")
    parser.add_argument("--server-binary", type=Path, default=None,
                        help="static vrypt-server binary for the image and the pod netns (SKIP without it)")
    args = parser.parse_args()

    # Helm logs template fail() calls at INFO; the expected failures below
    # would be noise. Only warnings and errors reach stderr.
    logging.basicConfig(level=logging.WARNING, format="helm: %(message)s")
    helm_python.enable_logging(logging.WARNING, logging.getLogger("helm"))
    with tempfile.TemporaryDirectory(prefix="vrypt-helm-check-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        check_versions()
        ch = Chart(CHART_DIR)
        scenarios = scenario_values()
        CHECKS.ok(f"values files: {', '.join(scenarios)}",
                  {"default", "init-off", "daemonset", "hpa-pdb", "metrics", "sysctls", "status-404",
                   "status-503", "networkpolicy", "ingress", "httproute", "extras", "digest",
                   "loadbalancer"} <= set(scenarios))
        check_lint(scenarios)
        renders = check_renders(ch, scenarios, out)
        check_extra_cases(ch, args.server_binary)
        check_pod_security_lookup(ch)
        check_package(ch, out)
        check_podman(renders, {k: ch.merged(v) for k, v in scenarios.items()}, args.server_binary)
        if args.out:
            CHECKS.info(f"renders and package kept in {out}")
    return CHECKS.summary("helm-check")


if __name__ == "__main__":
    sys.exit(main())
