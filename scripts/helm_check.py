#!/usr/bin/env python3
"""Offline proof of the vrypt-server Helm chart, with the real Helm library.

Run through scripts/helm-check.sh, which installs the pinned tools first.
There is no helm binary and no cluster here; instead:

1. Chart.yaml appVersion must equal the crate version in Cargo.toml.
2. `helm lint --strict` (helm-python-sdk, i.e. Helm v4's Go library) for the
   defaults and every ci/*-values.yaml file, at every Kubernetes version.
3. Render each scenario per Kubernetes version and validate the objects with
   `kubernetes-validate --strict` for that version.
4. Assert on the rendered objects: init container present/absent and the
   only privileged container, every other container "restricted", sysctl
   commands exactly as configured, backlog env equal to somaxconn, HPA/PDB/
   DaemonSet/exporter/ServiceMonitor shapes, the helm test pod.
5. Values the chart must refuse are refused (schema and template checks).
6. Package the chart and render the package.
7. Under Podman: run the rendered init container command, privileged, in a
   fresh network namespace shaped like a pod, read the sysctls back from an
   unprivileged container in that namespace, check the host did not change,
   check failures are loud; then run the real server binary in that
   namespace with the rendered environment and read its listen backlog.

Prints one PASS/FAIL/INFO line per check; exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path
from collections.abc import Callable
from typing import Any

import helm_python
import yaml
from helm_python import _native
from helm_python import chart as helm

ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = ROOT / "helm" / "vrypt-server"
RELEASE = "ci"
NAMESPACE = "vrypt"
# Oldest version the chart supports (Chart.yaml kubeVersion), the last
# without the preStop sleep action, and two newer ones. All are bundled by
# kubernetes-validate 1.37.0 (it has 1.25 ... 1.37).
KUBE_VERSIONS = ("1.25", "1.29", "1.31", "1.35")
MONITORING_API = "monitoring.coreos.com/v1"
CRATE_VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
CHART_META = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
SERVER_IMAGE = f"ghcr.io/vrypt/vrypt-server:{CRATE_VERSION}"
SERVER_UID = 65532
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


class Checks:
    """Counts results and prints one line per check."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0

    def ok(self, name: str, condition: bool, detail: str = "") -> bool:
        if condition:
            self.passed += 1
            print(f"PASS {name}", flush=True)
        else:
            self.failed.append(name)
            print(f"FAIL {name}{': ' + detail if detail else ''}", flush=True)
        return condition

    def fail(self, name: str, detail: str) -> None:
        self.ok(name, False, detail)

    @staticmethod
    def info(text: str) -> None:
        print(f"INFO {text}", flush=True)


CHECKS = Checks()


class Group:
    """Many assertions on one render, reported as one line (each failing
    assertion is still named)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.results: list[tuple[str, bool, str]] = []

    def ok(self, name: str, condition: bool, detail: str = "") -> None:
        self.results.append((name, bool(condition), detail))

    def report(self) -> None:
        failed = [(n, d) for n, c, d in self.results if not c]
        if not failed:
            CHECKS.ok(f"{self.title}: {len(self.results)} assertions", True)
        for name, detail in failed:
            CHECKS.fail(f"{self.title}: {name}", detail)


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

    def workload(self) -> dict[str, Any]:
        found = self.kinds("Deployment") + self.kinds("DaemonSet")
        if len(found) != 1:
            raise AssertionError(f"expected one workload, found {len(found)}")
        return found[0]

    def test_pod(self) -> dict[str, Any]:
        return self.one("Pod")

    def yaml_text(self) -> str:
        return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in self.objects)


class Chart:
    """The chart loaded once through the Helm library."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chart = helm.Chart.load(path)
        self.defaults = yaml.safe_load((path / "values.yaml").read_text())

    def render(self, values: dict[str, Any], kube: str, api_versions: tuple[str, ...] = ()) -> Render:
        # Chart.render() in helm-python-sdk 0.2.2 exposes no capabilities, but
        # the library's render options take kube_version and api_versions
        # (unknown option keys are rejected, so these are honoured): this is
        # `helm template --kube-version ... --api-versions ...`.
        opts = {
            "name": RELEASE,
            "namespace": NAMESPACE,
            "is_install": True,
            "kube_version": f"v{kube}.0",
            "api_versions": list(api_versions),
        }
        raw = _native.call_string("helm_render", self.chart._raw(), json.dumps(values), json.dumps(opts))
        return Render(json.loads(raw))

    def merged(self, values: dict[str, Any]) -> dict[str, Any]:
        return merge(self.defaults, values)


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


def init_sysctls(spec: dict[str, Any]) -> dict[str, str] | None:
    """The sysctls the init container's script sets, parsed from the script."""
    inits = [c for c in spec.get("initContainers") or [] if c["name"] == "sysctl"]
    if not inits:
        return None
    script = inits[0]["command"][2]
    return {k: v for k, v in re.findall(r"^apply '([^']+)' '([^']*)'$", script, re.M)}


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


def image_pinned(ref: str) -> bool:
    if "@sha256:" in ref:
        return True
    tag = ref.rsplit("/", 1)[-1].partition(":")[2]
    return bool(tag) and tag != "latest"


# --- per-render assertions ----------------------------------------------------

def check_render(ok: Callable[..., None], kube: str, values: dict[str, Any], render: Render) -> None:
    """Assertions that hold for every scenario."""
    workload = render.workload()
    spec = pod_spec(render)
    ok(f"workload kind is {values['kind']}", workload["kind"] == values["kind"])
    server = container(spec, "server")
    ok("server image defaults to the appVersion tag", server["image"] == SERVER_IMAGE, server["image"])

    # Security: privileged only in the sysctl init container; the rest is
    # restricted-compliant, and the server container is locked down fully.
    violations = restricted_violations(render.workload()["spec"]["template"])
    offenders = {v.split(":")[0] for v in violations}
    expected = {"sysctl"} if expected_init_sysctls(values) else set()
    ok("only the sysctl init container breaks Pod Security 'restricted'", offenders == expected,
       "; ".join(violations))
    privileged = [c["name"] for c in (spec.get("initContainers") or []) + spec["containers"]
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

    # Serving port and probes.
    port = values["server"]["port"]
    ok("container port http", server["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = (server.get(probe) or {}).get("httpGet") or {}
        ok(f"{probe} GET / on the serving port", get.get("path") == "/" and get.get("port") == "http")
    env = env_of(server)
    ok("VRYPT_PORT", env.get("VRYPT_PORT") == str(port))

    # Shutdown: grace period longer than preStop sleep + server drain.
    shutdown = values["server"]["shutdownTimeoutSeconds"]
    ok("VRYPT_SHUTDOWN_TIMEOUT", env.get("VRYPT_SHUTDOWN_TIMEOUT") == f"{shutdown}s")
    pre_stop = ((server.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
    want_pre_stop = values["server"]["preStopSleepSeconds"] if tuple(map(int, kube.split("."))) >= (1, 30) else 0
    ok(f"preStop sleep {want_pre_stop}s", pre_stop == want_pre_stop)
    grace = spec["terminationGracePeriodSeconds"]
    ok(f"terminationGracePeriodSeconds {grace} > preStop {pre_stop} + shutdown {shutdown}",
       grace > pre_stop + shutdown)

    # Sysctls and the backlog that follows net.core.somaxconn.
    want_init = expected_init_sysctls(values)
    got_init = init_sysctls(spec)
    if want_init:
        init = spec["initContainers"][0]
        isc = init["securityContext"]
        ok("init container sets exactly the configured sysctls", got_init == want_init,
           f"got {got_init}, want {want_init}")
        ok("init container privileged root, read-only rootfs",
           isc == {"privileged": True, "runAsNonRoot": False, "runAsUser": 0, "readOnlyRootFilesystem": True},
           json.dumps(isc))
        ok("init container command is /bin/sh -c script", init["command"][:2] == ["/bin/sh", "-c"]
           and "set -eu" in init["command"][2])
        ok("init container image pinned", image_pinned(init["image"]), init["image"])
        req = init["resources"]["requests"]
        ok("init container tiny requests", req == {"cpu": "10m", "memory": "8Mi"}, json.dumps(req))
    else:
        ok("no init container", not spec.get("initContainers"))
    want_pod_sysctls = values.get("podSysctls") or []
    ok("pod securityContext.sysctls as configured", (psc.get("sysctls") or []) == want_pod_sysctls)
    ok(f"VRYPT_BACKLOG follows somaxconn ({expected_backlog(values)})",
       env.get("VRYPT_BACKLOG") == expected_backlog(values), str(env.get("VRYPT_BACKLOG")))

    # Metrics.
    exporter = values["statsdExporter"]["enabled"]
    sidecar = f"127.0.0.1:{values['statsdExporter']['statsdPort']}"
    statsd = values["statsd"]["target"] or (sidecar if exporter else "off")
    ok(f"VRYPT_STATSD {statsd}", env.get("VRYPT_STATSD") == statsd)
    names = [c["name"] for c in spec["containers"]]
    ok("containers", names == (["server", "statsd-exporter"] if exporter else ["server"]), str(names))

    # Service and the helm test pod.
    svc = render.one("Service")
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    ok("Service selects the pods", all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
       and workload["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"])
    http = [p for p in svc["spec"]["ports"] if p["name"] == "http"]
    ok("Service http port", len(http) == 1 and http[0]["targetPort"] == "http"
       and http[0]["port"] == values["service"]["port"])
    test = render.test_pod()
    tc = test["spec"]["containers"][0]
    url = f"http://{svc['metadata']['name']}.{NAMESPACE}.svc:{values['service']['port']}/"
    ok("helm test pod runs the server image's healthcheck against the Service",
       test["metadata"]["annotations"].get("helm.sh/hook") == "test" and tc["image"] == server["image"]
       and tc["args"][:3] == ["healthcheck", "--url", url], json.dumps(tc.get("args")))
    ok("helm test pod is restricted", restricted_violations(test) == [], "; ".join(restricted_violations(test)))
    images = [c["image"] for c in (spec.get("initContainers") or []) + spec["containers"]]
    ok("every image pinned", all(image_pinned(i) for i in images), str(images))
    ok("NOTES.txt rendered", f"vrypt-server {CRATE_VERSION} is installed" in render.notes)


def check_scenario(ok: Callable[..., None], label: str, values: dict[str, Any], render: Render,
                   with_monitoring: bool) -> None:
    """Assertions specific to one ci values file."""
    workload = render.workload()
    spec = pod_spec(render)
    hpas, pdbs, monitors = render.kinds("HorizontalPodAutoscaler"), render.kinds("PodDisruptionBudget"), \
        render.kinds("ServiceMonitor")
    if label in ("default", "init-off", "sysctls"):
        ok("Deployment replicas 2, PDB maxUnavailable 1, no HPA",
           workload["spec"].get("replicas") == 2 and len(pdbs) == 1
           and pdbs[0]["spec"].get("maxUnavailable") == 1 and not hpas)
        tsc = spec.get("topologySpreadConstraints") or []
        ok("topology spread over nodes with the pod selector",
           len(tsc) == 1 and tsc[0]["labelSelector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
           and tsc[0]["whenUnsatisfiable"] == "ScheduleAnyway")
    if label == "default":
        ok("sysctl defaults", init_sysctls(spec) == {
            "net.core.somaxconn": "65535", "net.ipv4.tcp_max_syn_backlog": "65535",
            "net.ipv4.ip_local_port_range": "1024 65535", "net.ipv4.tcp_tw_reuse": "1",
            "net.ipv4.tcp_fin_timeout": "15"})
        ok("VRYPT_BACKLOG 65535", env_of(container(spec, "server")).get("VRYPT_BACKLOG") == "65535")
        ok("NOTES explain where the init container is forbidden and how to turn it off",
           "GKE Autopilot" in render.notes and "sysctlInitContainer.enabled=false" in render.notes)
    if label == "init-off":
        ok("whole pod passes Pod Security 'restricted'", restricted_violations(workload["spec"]["template"]) == [])
        ok("no VRYPT_BACKLOG without a somaxconn", "VRYPT_BACKLOG" not in env_of(container(spec, "server")))
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
        ok("VRYPT_STATSD_TAGS", env_of(container(spec, "server")).get("VRYPT_STATSD_TAGS") == "cluster:ci")
        svc = render.one("Service")
        metrics = [p for p in svc["spec"]["ports"] if p["name"] == "metrics"]
        ok("Service metrics port 9102", metrics == [{"name": "metrics", "port": 9102, "targetPort": "metrics",
                                                     "protocol": "TCP"}])
        cm = render.one("ConfigMap")
        ok("exporter mapping ConfigMap mounted", "vrypt.responses.*" in cm["data"]["mapping.yaml"]
           and exporter["volumeMounts"][0]["mountPath"] == "/etc/statsd-exporter"
           and spec["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"])
        if with_monitoring:
            sm = monitors[0] if len(monitors) == 1 else {}
            ok("ServiceMonitor when monitoring.coreos.com/v1 exists",
               sm.get("apiVersion") == MONITORING_API
               and sm["spec"]["endpoints"][0]["port"] == "metrics"
               and sm["spec"]["endpoints"][0]["interval"] == "30s"
               and all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
               and sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
               and sm["metadata"]["labels"].get("release") == "prometheus")
        else:
            ok("no ServiceMonitor without monitoring.coreos.com/v1, NOTES warn",
               not monitors and "no ServiceMonitor" in render.notes)
    if label == "sysctls":
        ok("custom sysctls, tcp_tw_reuse dropped", init_sysctls(spec) == {
            "net.core.somaxconn": "32768", "net.ipv4.tcp_max_syn_backlog": "8192",
            "net.ipv4.ip_local_port_range": "10000 60999", "net.ipv4.tcp_fin_timeout": "30",
            "net.ipv4.tcp_keepalive_time": "600", "net.ipv4.tcp_syncookies": "1"})
        ok("VRYPT_BACKLOG 32768", env_of(container(spec, "server")).get("VRYPT_BACKLOG") == "32768")
    if label != "metrics":
        ok("no exporter, ConfigMap or ServiceMonitor", not render.kinds("ConfigMap") and not monitors)


# --- the steps ----------------------------------------------------------------

def check_versions() -> None:
    app = str(CHART_META["appVersion"])
    CHECKS.ok(f"Chart.yaml appVersion {app!r} == Cargo.toml version {CRATE_VERSION!r}", app == CRATE_VERSION)
    CHECKS.ok("Chart.yaml apiVersion v2", CHART_META["apiVersion"] == "v2")


def scenario_values() -> dict[str, dict[str, Any]]:
    scenarios = {}
    for path in sorted((CHART_DIR / "ci").glob("*-values.yaml")):
        scenarios[path.name.removesuffix("-values.yaml")] = yaml.safe_load(path.read_text()) or {}
    return scenarios


def check_lint(scenarios: dict[str, dict[str, Any]]) -> None:
    for kube in KUBE_VERSIONS:
        for label, values in scenarios.items():
            report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube}.0")
            problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
            CHECKS.ok(f"helm lint --strict {label} k8s {kube}", not problems, json.dumps(problems))


def kubernetes_validate(kube: str, files: list[Path], objects: int) -> None:
    """`kubernetes-validate --strict` for one version: every object but the
    ServiceMonitor (a CRD without a bundled schema, checked field by field
    in check_scenario) must pass."""
    proc = run(["kubernetes-validate", "--strict", "-k", kube, *map(str, files)], timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [line for line in lines if line.startswith("ERROR")]
    warns = [line for line in lines if line.startswith("WARN") and "kind ServiceMonitor" not in line]
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


def check_renders(ch: Chart, scenarios: dict[str, dict[str, Any]], out: Path) -> dict[str, Render]:
    """Render every scenario for every version, validate and assert."""
    latest: dict[str, Render] = {}
    for kube in KUBE_VERSIONS:
        files, objects = [], 0
        for label, values in scenarios.items():
            merged = ch.merged(values)
            variants = [(label, False)]
            if label == "metrics":
                variants.append(("metrics+monitoring-api", True))
            for name, monitoring in variants:
                apis = (MONITORING_API,) if monitoring else ()
                try:
                    render = ch.render(values, kube, apis)
                except Exception as exc:  # pylint: disable=broad-except
                    CHECKS.fail(f"render {name} k8s {kube}", str(exc))
                    continue
                path = out / f"k8s-{kube}" / f"{name}.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(render.yaml_text())
                files.append(path)
                objects += len([o for o in render.objects if o["kind"] != "ServiceMonitor"])
                group = Group(f"render {name} k8s {kube}")
                try:
                    check_render(group.ok, kube, merged, render)
                    check_scenario(group.ok, label, merged, render, monitoring)
                except (AssertionError, KeyError, IndexError, TypeError) as exc:
                    group.ok("object shape", False, repr(exc))
                group.report()
                latest[name] = render
        kubernetes_validate(kube, files, objects)
    check_validator_catches(latest["default"], out)
    return latest


def check_extra_cases(ch: Chart) -> None:
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
    render = ch.render({"server": {"shutdownTimeoutSeconds": 30}, "terminationGracePeriodSeconds": None}, "1.29")
    CHECKS.ok("shutdown 30s on k8s 1.29: grace period 35, no preStop",
              pod_spec(render)["terminationGracePeriodSeconds"] == 35)
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
              "runAsUser" not in json.dumps(pods) and all(restricted_violations(p) == [] for p in pods))
    render = ch.render({"image": {"digest": "sha256:" + "a" * 64}}, kube)
    CHECKS.ok("image digest wins over the tag",
              container(pod_spec(render), "server")["image"] == "ghcr.io/vrypt/vrypt-server@sha256:" + "a" * 64)
    render = ch.render({"extraArgs": ["--workers", "2"], "extraEnv": [{"name": "X", "value": "1"}],
                        "response": {"status": 204, "headers": ["X-A: 1", "X-B: 2"], "serverHeader": False}}, kube)
    server = container(pod_spec(render), "server")
    env = env_of(server)
    CHECKS.ok("extraArgs, extraEnv and response settings reach the server",
              server["args"] == ["--workers", "2"] and env.get("X") == "1" and env.get("VRYPT_STATUS") == "204"
              and env.get("VRYPT_HEADER") == "X-A: 1\nX-B: 2" and env.get("VRYPT_NO_SERVER_HEADER") == "1")

    refused = {
        "non-net sysctl in the init container (would change the node)":
            {"sysctlInitContainer": {"sysctls": {"vm.swappiness": "10"}}},
        "shell metacharacters in a sysctl value":
            {"sysctlInitContainer": {"sysctls": {"net.core.somaxconn": "1'; id '"}}},
        "unknown top-level key": {"replicas": 3},
        "unpinned init image": {"sysctlInitContainer": {"image": {"tag": "latest"}}},
        "sysctls in podSecurityContext": {"podSecurityContext": {"sysctls": []}},
        "HPA with a DaemonSet": {"kind": "DaemonSet", "autoscaling": {"enabled": True}},
        "ServiceMonitor without exporter": {"serviceMonitor": {"enabled": True}},
        "grace period not above the shutdown timeout": {"terminationGracePeriodSeconds": 15},
    }
    for name, values in refused.items():
        try:
            ch.render(values, kube)
        except Exception as exc:  # pylint: disable=broad-except
            CHECKS.ok(f"refused: {name}", True)
            lines = [line.strip(" -") for line in str(exc).splitlines() if line.strip()]
            reason = " / ".join(lines[2:4]) if lines[0].startswith("values don't meet") else lines[0]
            CHECKS.info(f"  -> {reason[:200]}")
        else:
            CHECKS.fail(f"refused: {name}", "rendered without error")


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
    packaged = helm.Chart.load(archive)
    same = packaged.render({}, name=RELEASE, namespace=NAMESPACE) == ch.chart.render({}, name=RELEASE,
                                                                                   namespace=NAMESPACE)
    CHECKS.ok("package renders identically to the chart directory", same)
    CHECKS.info(f"package {archive} {archive.stat().st_size} bytes {helm.digest(archive)}")


# --- Podman: the init container command for real ------------------------------

def run(cmd: list[str], timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def host_sysctl(name: str) -> str:
    return " ".join(Path("/proc/sys", name.replace(".", "/")).read_text().split())


class PodmanPod:
    """A container that only holds a private network namespace, like a pod's
    sandbox; init and app containers join it with --network=container:."""

    def __init__(self, image: str, name: str) -> None:
        self.image, self.name = image, name
        proc = run(["podman", "run", "-d", "--rm", "--name", name, "--network=private", "--read-only",
                    "--user", f"{SERVER_UID}:{SERVER_UID}", image, "sleep", "120"])
        if proc.returncode != 0:
            raise RuntimeError(f"podman run failed: {proc.stderr.strip()}")
        self.pid = int(run(["podman", "inspect", "-f", "{{.State.Pid}}", name]).stdout.strip())

    def join(self, cmd: list[str], privileged: bool) -> subprocess.CompletedProcess[str]:
        flags = ["--privileged", "--user", "0"] if privileged else \
            ["--user", f"{SERVER_UID}:{SERVER_UID}", "--cap-drop=ALL", "--security-opt=no-new-privileges"]
        return run(["podman", "run", "--rm", "--read-only", f"--network=container:{self.name}", *flags,
                    self.image, *cmd])

    def read(self, names: list[str]) -> dict[str, str]:
        paths = ["/proc/sys/" + n.replace(".", "/") for n in names]
        proc = self.join(["cat", *paths], privileged=False)
        values = [" ".join(line.split()) for line in proc.stdout.splitlines()]
        return dict(zip(names, values, strict=False))

    def close(self) -> None:
        run(["podman", "rm", "-f", "-t", "0", self.name])


def build_busybox_image(work: Path, tag: str) -> bool:
    """FROM scratch + Debian's static busybox, like the pinned busybox image:
    /bin/sh and every applet, nothing else."""
    rootfs = work / "rootfs" / "bin"
    rootfs.mkdir(parents=True)
    busybox = Path("/bin/busybox")
    (rootfs / "busybox").write_bytes(busybox.read_bytes())
    (rootfs / "busybox").chmod(0o755)
    for applet in run([str(busybox), "--list"]).stdout.split():
        if applet != "busybox":
            (rootfs / applet).symlink_to("busybox")
    (work / "Containerfile").write_text("FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\n")
    proc = run(["podman", "build", "--layers=false", "-q", "-t", tag, str(work)], timeout=120)
    return CHECKS.ok(f"podman build {tag} (FROM scratch + static busybox)", proc.returncode == 0, proc.stderr[-500:])


def server_in_pod(pod: PodmanPod, binary: Path, env: dict[str, str], backlog: str, label: str) -> None:
    """Run the real server in the pod's network namespace, as uid 65532, with
    the rendered environment; read its listen backlog, run the helm test's
    healthcheck command, then SIGTERM it."""
    netns = f"--net=/proc/{pod.pid}/ns/net"
    env = {k: v for k, v in env.items() if v is not None}  # HOST_IP comes from the downward API
    env["PATH"] = "/usr/bin:/bin"
    cmd = ["nsenter", netns, "setpriv", f"--reuid={SERVER_UID}", f"--regid={SERVER_UID}", "--clear-groups",
           str(binary)]
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
        try:
            listening = False
            for _ in range(50):
                log.seek(0)
                if "event=listening" in log.read() or proc.poll() is not None:
                    listening = proc.poll() is None
                    break
                time.sleep(0.1)
            log.seek(0)
            CHECKS.ok(f"{label}: server starts with the rendered env in the pod netns", listening, log.read()[-800:])
            if not listening:
                return
            port = env["VRYPT_PORT"]
            ss = run(["nsenter", netns, "ss", "-Hltn", f"sport = :{port}"]).stdout.split("\n")
            queues = {line.split()[2] for line in ss if line.strip()}
            CHECKS.ok(f"{label}: listen backlog (ss Send-Q) is {backlog} = pod somaxconn (VRYPT_BACKLOG "
                      f"{env.get('VRYPT_BACKLOG')})", queues == {backlog},
                      str(ss))
            hc = run(["nsenter", netns, "setpriv", f"--reuid={SERVER_UID}", f"--regid={SERVER_UID}",
                      "--clear-groups", str(binary), "healthcheck", "--url", f"http://127.0.0.1:{port}/",
                      "--timeout", "5s"])
            CHECKS.ok(f"{label}: healthcheck subcommand (helm test command) exits 0", hc.returncode == 0,
                      hc.stderr)
            start = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            took = time.monotonic() - start
            shutdown = float(env["VRYPT_SHUTDOWN_TIMEOUT"].rstrip("s"))
            CHECKS.ok(f"{label}: SIGTERM -> exit 0 in {took:.2f}s (< shutdown timeout {shutdown:.0f}s)",
                      code == 0 and took < shutdown, f"exit {code}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def check_podman(ch: Chart, renders: dict[str, Render], binary: Path | None) -> None:
    tag = f"localhost/vrypt-helm-check-busybox:{os.getpid()}"
    rmem_before = host_sysctl("net.core.rmem_max")
    with tempfile.TemporaryDirectory(prefix="vrypt-helm-podman-") as tmp:
        if not build_busybox_image(Path(tmp), tag):
            return
        try:
            for label in ("default", "sysctls"):
                spec = pod_spec(renders[label])
                init = spec["initContainers"][0]
                want = init_sysctls(spec) or {}
                names = sorted(want)
                host_before = {n: host_sysctl(n) for n in names}
                pod = PodmanPod(tag, f"vrypt-helm-check-{label}-{os.getpid()}")
                try:
                    fresh = pod.read(names)
                    CHECKS.info(f"{label}: fresh netns before init {fresh}")
                    proc = pod.join(init["command"], privileged=True)
                    CHECKS.ok(f"{label}: rendered init command exits 0 under podman --privileged",
                              proc.returncode == 0, proc.stderr.strip())
                    CHECKS.ok(f"{label}: init command reports every sysctl",
                              proc.stdout.count("vrypt-sysctl: ") == len(names), proc.stdout)
                    got = pod.read(names)
                    CHECKS.ok(f"{label}: unprivileged container in the pod netns reads back {len(got)} sysctls "
                              "as configured", got == want, f"got {got}, want {want}")
                    changed = sorted(n for n in names if fresh[n] != want[n])
                    CHECKS.ok(f"{label}: init really changed the netns ({len(changed)} of {len(names)} differed "
                              "from a fresh netns)", len(changed) >= len(names) - 1, str(changed))
                    host_after = {n: host_sysctl(n) for n in names}
                    CHECKS.ok(f"{label}: host sysctls unchanged", host_after == host_before,
                              f"{host_before} -> {host_after}")
                    if binary is not None:
                        server = container(spec, "server")
                        server_in_pod(pod, binary, env_of(server), env_of(server)["VRYPT_BACKLOG"], label)
                finally:
                    pod.close()

            # Control: the same server env in a pod whose init container did
            # not run gets the kernel's cap, the namespace's default somaxconn.
            if binary is not None:
                pod = PodmanPod(tag, f"vrypt-helm-check-control-{os.getpid()}")
                try:
                    default_somaxconn = pod.read(["net.core.somaxconn"])["net.core.somaxconn"]
                    server = container(pod_spec(renders["default"]), "server")
                    server_in_pod(pod, binary, env_of(server), default_somaxconn, "control, init not run")
                finally:
                    pod.close()

            # Failure must be loud: without privileges (read-only /proc/sys),
            # and with a net.* sysctl that is not per network namespace (the
            # kernel refuses it outside the host's namespace).
            unprivileged = pod_spec(renders["default"])["initContainers"][0]["command"]
            global_sysctl = pod_spec(ch.render(
                {"sysctlInitContainer": {"sysctls": {"net.core.rmem_max": "8388608"}}},
                KUBE_VERSIONS[-1]))["initContainers"][0]["command"]
            cases = (("without --privileged", unprivileged, False, "cannot set net."),
                     ("with non-namespaced net.core.rmem_max", global_sysctl, True, "cannot set net.core.rmem_max"))
            for name, command, privileged, message in cases:
                pod = PodmanPod(tag, f"vrypt-helm-check-fail-{os.getpid()}")
                try:
                    proc = pod.join(command, privileged=privileged)
                    CHECKS.ok(f"init command {name} exits non-zero with a message",
                              proc.returncode != 0 and f"vrypt-sysctl: {message}" in proc.stderr,
                              f"exit {proc.returncode}: {proc.stderr}")
                    last = (proc.stderr.strip().splitlines() or [""])[-1]
                    CHECKS.info(f"  -> {last}")
                finally:
                    pod.close()
            CHECKS.ok("host net.core.rmem_max unchanged", host_sysctl("net.core.rmem_max") == rmem_before)
        finally:
            run(["podman", "rmi", "-f", tag])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="keep renders and the package here")
    parser.add_argument("--server-binary", type=Path, default=None,
                        help="vrypt-server binary to run in the pod netns (skipped when not given)")
    parser.add_argument("--no-podman", action="store_true", help="skip the Podman checks (counts as failure)")
    args = parser.parse_args()

    started = time.monotonic()
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
        CHECKS.ok(f"ci values files: {', '.join(scenarios)}",
                  {"default", "init-off", "daemonset", "hpa-pdb", "metrics", "sysctls"} <= set(scenarios))
        check_lint(scenarios)
        renders = check_renders(ch, scenarios, out)
        check_extra_cases(ch)
        check_package(ch, out)
        if args.no_podman:
            CHECKS.fail("podman checks", "skipped by --no-podman")
        else:
            check_podman(ch, renders, args.server_binary)
        if args.out:
            CHECKS.info(f"renders and package kept in {out}")
    took = time.monotonic() - started
    if CHECKS.failed:
        print(f"FAIL helm-check: {len(CHECKS.failed)} of {CHECKS.passed + len(CHECKS.failed)} checks failed "
              f"({took:.1f}s):")
        for name in CHECKS.failed:
            print(f"  - {name}")
        return 1
    print(f"PASS helm-check: all {CHECKS.passed} checks passed ({took:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
