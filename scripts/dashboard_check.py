"""Check the Grafana dashboard of docker-compose.yml against the metrics vrypt-server sends.

    python3 scripts/dashboard_check.py static PROVISIONING_DIR README.md
    /usr/bin/python3 scripts/dashboard_check.py render PROVISIONING_DIR README.md

Run by scripts/compose-check.sh, which reports each mode as one PASS or FAIL. Prints what it
checked, one "problem: ..." line per problem, and exits 1 when there is any.

Both modes take the StatsD lines vrypt-server sends from the README's Metrics section
(`vrypt.NAME:<n>|c` / `|g`) and derive what Etsy StatsD (default legacy namespace, as in the
graphite-statsd image) makes of them in Graphite: a counter X becomes stats.X (per second) and
stats_counts.X (per flush), a gauge X becomes stats.gauges.X.

static: every target uses the provisioned Graphite data source and the $prefix variable, and
names only metrics that exist; the request rate comes from the requests counter (its per-second
rate adds up across servers), never from the rps gauge (one server's value, overwritten by the
next); no panel mixes response classes with connection-level counters (parse errors, timeouts,
accept errors: a malformed request is counted in both, so plotting them together counts it
twice); every response class and every connection-level counter is plotted somewhere; panel
ids are unique and panels do not overlap.

render: evaluates every target with Debian's graphite-web (its own render functions, in
process) against whisper files holding known values for every metric, and compares each
panel's series with EXPECTED below, e.g. "Error responses / s" must be 4xx + 5xx only.
"""

import json
import os
import re
import sys
import tempfile
import time

PREFIX = "vrypt"
CONNECTION_LEVEL = ("parse_errors", "timeouts", "accept_errors")

# Known per-second rates (counters) and values (gauges) for the render mode. 100 requests/s,
# 2 more refused as malformed (parse errors, answered 4xx): the classes add up to 102. The
# rps gauge is deliberately not 100, so a panel that still used it would show.
FIXTURE = {
    "requests": 100, "responses.2xx": 88, "responses.3xx": 0, "responses.4xx": 9,
    "responses.5xx": 5, "bytes_sent": 12345, "connections.accepted": 4,
    "connections.closed": 3, "timeouts": 1, "parse_errors": 2, "accept_errors": 0,
    "rps": 999, "connections.open": 6,
    # Lines sent only with --fault or --delay (the dashboard does not plot them).
    "faults.reset": 0, "delayed": 0, "delay_us": 0,
}
# Panel title -> {series name: value}: what the dashboard is meant to show for FIXTURE.
EXPECTED = {
    "Requests / s": {"requests/s": 100},
    "Open connections": {"open": 6},
    "Error responses / s": {"4xx+5xx/s": 14},
    "Sent": {"bytes/s": 12345},
    "Requests per second": {"requests/s": 100},
    "Responses per second by status class": {"2xx": 88, "3xx": 0, "4xx": 9, "5xx": 5},
    "Connections": {"open": 6, "accepted/s": 4, "closed/s": 3},
    "Connection-level errors per second": {"parse_errors": 2, "timeouts": 1, "accept_errors": 0},
}
FLUSH_S = 10

problems = []


def problem(msg):
    problems.append(msg)
    print("problem:", msg)


def statsd_lines(readme):
    """{name: "c" or "g"} of the lines the README says vrypt-server sends (prefix removed)."""
    text = open(readme).read()
    found = dict(re.findall(r"`vrypt\.([a-z0-9_.]+):<n>\\\|([cg])`", text))
    if not found:
        problem(f"no `vrypt.NAME:<n>|c` lines found in {readme}")
    return found


def graphite_names(lines):
    """The Graphite paths StatsD makes of those lines, with the prefix as $prefix."""
    names = set()
    for name, kind in lines.items():
        if kind == "c":
            names |= {f"stats.$prefix.{name}", f"stats_counts.$prefix.{name}"}
        else:
            names.add(f"stats.gauges.$prefix.{name}")
    return names


def metric_paths(target):
    """Metric paths in a Graphite target, brace lists expanded: a path starts at a word
    beginning with "stats" and runs over [A-Za-z0-9_.$*-] and {...} groups."""
    paths = []
    for m in re.finditer(r"(?<![\w.'])stats(?:[\w.$*-]|\{[^}]*\})*", target):
        expanded = [""]
        for part in re.split(r"(\{[^}]*\})", m.group(0)):
            alts = part[1:-1].split(",") if part.startswith("{") else [part]
            expanded = [e + a.strip() for e in expanded for a in alts]
        paths.extend(expanded)
    return paths


def load(provisioning):
    ds = open(os.path.join(provisioning, "datasources/graphite.yml")).read()
    uid = re.search(r"^\s*uid:\s*(\S+)", ds, re.M).group(1)
    dash = json.load(open(os.path.join(provisioning, "dashboards/vrypt.json")))
    return uid, dash


def static(provisioning, readme):
    uid, dash = load(provisioning)
    known = graphite_names(statsd_lines(readme))
    ids, boxes, plotted = set(), [], {}
    for p in dash["panels"]:
        title = p["title"]
        if title in plotted:
            problem(f"panel title {title!r} used twice")
        if p["id"] in ids:
            problem(f"panel id {p['id']} used twice")
        ids.add(p["id"])
        g = p["gridPos"]
        for other, og in boxes:
            if g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"] and \
                    g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]:
                problem(f"panels {other!r} and {title!r} overlap")
        boxes.append((title, g))
        paths = []
        for t in p.get("targets", []):
            if t.get("datasource", p.get("datasource", {})).get("uid") != uid:
                problem(f"{title!r}: target {t['refId']} does not use data source uid {uid!r}")
            target = t.get("target", "")
            found = metric_paths(target)
            if not found or any("$prefix" not in f for f in found):
                problem(f"{title!r}: target {target!r} names no $prefix metric")
            for f in found:
                if f not in known:
                    problem(f"{title!r}: {f} is not a metric StatsD makes of vrypt-server's lines")
            paths += found
        plotted[title] = paths
        leaf = {f.rsplit(".", 1)[-1] for f in paths}
        if any(".responses." in f for f in paths) and leaf & set(CONNECTION_LEVEL):
            problem(f"{title!r} mixes response classes with {sorted(leaf & set(CONNECTION_LEVEL))} "
                    "(a malformed request is counted in both)")
        if "request" in title.lower() and paths != ["stats.$prefix.requests"]:
            problem(f"{title!r} plots {paths}, want the requests counter's rate stats.$prefix.requests")
        print(f"  {title:40} {' '.join(paths)}")
    everything = [f for paths in plotted.values() for f in paths]
    if "stats.gauges.$prefix.rps" in everything:
        problem("the rps gauge is plotted (several servers overwrite one gauge): use stats.$prefix.requests")
    for name in ["responses." + c for c in ("2xx", "3xx", "4xx", "5xx")] + list(CONNECTION_LEVEL):
        if f"stats.$prefix.{name}" not in everything:
            problem(f"stats.$prefix.{name} is plotted nowhere")
    if sorted(plotted) != sorted(EXPECTED):
        problem(f"panels {sorted(plotted)} differ from the ones this check knows {sorted(EXPECTED)}")
    print(f"  dashboard {dash['title']!r}: {len(plotted)} panels, data source uid {uid!r}, "
          f"{len(known)} Graphite names known from the README")


def render(provisioning, readme):
    uid, dash = load(provisioning)
    lines = statsd_lines(readme)
    missing = set(FIXTURE) ^ set(lines)
    if missing:
        problem(f"FIXTURE and the README's StatsD lines differ in {sorted(missing)}")
        return
    root = tempfile.mkdtemp(prefix="vrypt-dashboard-check.")
    whisper_dir = os.path.join(root, "whisper")
    os.makedirs(os.path.join(root, "pymod"))
    os.makedirs(os.path.join(root, "log"))
    with open(os.path.join(root, "pymod", "vrypt_dashboard_graphite.py"), "w") as f:
        f.write(f"SECRET_KEY = 'vrypt-dashboard-check'\nGRAPHITE_ROOT = '/usr/share/graphite-web'\n"
                f"STORAGE_DIR = {root!r}\nWHISPER_DIR = {whisper_dir!r}\nSTANDARD_DIRS = [{whisper_dir!r}]\n"
                f"INDEX_FILE = {os.path.join(root, 'index')!r}\nLOG_DIR = {os.path.join(root, 'log')!r}\n"
                "CARBONLINK_HOSTS = []\nFUNCTION_PLUGINS = []\n"
                f"DATABASES = {{'default': {{'NAME': {os.path.join(root, 'graphite.db')!r}, "
                "'ENGINE': 'django.db.backends.sqlite3'}}\n")
    sys.path.insert(0, os.path.join(root, "pymod"))
    os.environ["GRAPHITE_SETTINGS_MODULE"] = "vrypt_dashboard_graphite"
    os.environ["DJANGO_SETTINGS_MODULE"] = "graphite.settings"
    import django
    import whisper
    django.setup()
    from datetime import datetime, timezone
    from graphite.render.evaluator import evaluateTarget

    now = int(time.time())
    points = lambda v: [(now - FLUSH_S * i, v) for i in range(1, 30)]
    for name, kind in lines.items():
        paths = {f"stats.gauges.{PREFIX}.{name}": FIXTURE[name]} if kind == "g" else \
            {f"stats.{PREFIX}.{name}": FIXTURE[name], f"stats_counts.{PREFIX}.{name}": FIXTURE[name] * FLUSH_S}
        for path, value in paths.items():
            wsp = os.path.join(whisper_dir, *path.split(".")) + ".wsp"
            os.makedirs(os.path.dirname(wsp), exist_ok=True)
            whisper.create(wsp, [(FLUSH_S, 360)], xFilesFactor=0)
            whisper.update_many(wsp, points(value))
    at = lambda t: datetime.fromtimestamp(t, timezone.utc)
    context = {"startTime": at(now - 300), "endTime": at(now), "now": at(now), "localOnly": True,
               "data": [], "prefetched": {}, "tzinfo": timezone.utc, "xFilesFactor": 0}
    for p in dash["panels"]:
        got = {}
        for t in p.get("targets", []):
            target = t["target"].replace("$prefix", PREFIX)
            try:
                series = evaluateTarget(dict(context), target)
            except Exception as e:  # graphite raises whatever its parser or function raised
                problem(f"{p['title']!r}: graphite-web cannot evaluate {target!r}: {e}")
                continue
            for s in series:
                values = [v for v in s if v is not None]
                got[s.name] = round(values[-1], 6) if values else None
        want = EXPECTED.get(p["title"])
        verdict = "ok" if got == want else "differs"
        print(f"  {p['title']:40} {json.dumps(got)} ({verdict})")
        if got != want:
            problem(f"{p['title']!r} shows {got}, want {want}")


def main():
    mode, provisioning, readme = sys.argv[1:4]
    {"static": static, "render": render}[mode](provisioning, readme)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
