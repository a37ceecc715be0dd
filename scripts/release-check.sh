#!/usr/bin/env bash
# Prove the release on this machine: build every archive that dist-workspace.toml declares,
# with the pinned cargo-dist, and check that each one really serves HTTP.
#
#   scripts/release-check.sh            (from the repository root or anywhere in it)
#
# On a fresh x86_64 Debian/Ubuntu machine with rustup it first installs what is missing
# (qemu-user-static, the Debian cross glibc runtimes, cargo-zigbuild + zig, rust targets,
# nightly + rust-src where armv7 musl has no prebuilt std, the pinned cargo-dist,
# cargo-auditable and cargo-cyclonedx; scripts/lib/dist-tools.sh), then:
#   1. dist generate --check, dist plan (eight archives and the SBOM planned)
#   2. dist build for each of the eight targets from clean target directories (dist's
#      profile directories are removed first), then the global artifacts (shell installer,
#      sha256.sum, source tarball), then the SBOM with `cargo cyclonedx` as the release
#      workflow makes it; the SBOM must be CycloneDX and list mio, socket2, libc, lexopt
#   3. verifies every checksum (per-archive .sha256 and sha256.sum)
#   4. scripts/repro-check.sh: rebuilds every target twice more (a copy of the checkout and the
#      unpacked source.tar.gz, at other paths, clean target directories) and requires the same
#      binary and archive contents as step 2, and no local absolute path in any binary
#   5. unpacks each archive and runs its binary on 127.0.0.1, natively or under qemu-user:
#      --version, a GET (status line, headers, body), a pipelined HEAD+GET pair answered
#      in order, and a clean SIGTERM exit with status 0
#   6. musl binaries must be static; gnu binaries must need no glibc newer than 2.17; every
#      binary must carry cargo-auditable's `.dep-v0` section, decoding to a dependency list
#      with mio, socket2, libc and lexopt (scripts/release_check.py dep-v0)
#   7. installs with the generated shell installer from a local HTTP server (offline),
#      then runs the installed binary the same way
#   8. prints one table: target, archive size, binary size, linkage, glibc needed, HTTP
#      check, .dep-v0, reproducible, result
# Exits non-zero when anything fails; a target that could not be checked counts as failed.
# Environment: VRYPT_MIN_GLIBC (default 2.17) is the newest glibc a gnu build may need.
set -euo pipefail

readonly APP=vrypt-server
readonly MAX_GLIBC=${VRYPT_MIN_GLIBC:-2.17}
# Crates that the embedded dependency list and the SBOM must both name.
readonly DEP_CRATES=(mio socket2 libc lexopt)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/targets.sh
source "$repo/scripts/lib/targets.sh"
readonly TARGETS=("${RELEASE_TARGETS[@]}")
cd "$repo"
distrib="$repo/target/distrib"
work=$(mktemp -d "${TMPDIR:-/tmp}/release-check.XXXXXX")
started=$SECONDS
pids=()
passed=0
failed=0

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

say() { echo "release-check: $*"; }
pass() {
  echo "PASS $*"
  passed=$((passed + 1))
}
fail() {
  echo "FAIL $*"
  failed=$((failed + 1))
}
# show_log FILE: the tail of a step's log, indented, after a failure.
show_log() { tail -n 25 "$1" | sed 's/^/    | /'; }

# ---------------------------------------------------------------------------- setup

# shellcheck source=scripts/lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/install.sh"
# shellcheck source=scripts/lib/dist-tools.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/dist-tools.sh"

setup() {
  local need=()
  command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
  # Runtime glibc of each foreign architecture, for qemu -L and the i686 loader.
  [ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || need+=(libc6-arm64-cross)
  [ -e /usr/arm-linux-gnueabihf/lib/libc.so.6 ] || need+=(libc6-armhf-cross)
  [ -e /usr/i686-linux-gnu/lib/ld-linux.so.2 ] || need+=(libc6-i386-cross)
  command -v xz >/dev/null 2>&1 || need+=(xz-utils)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v git >/dev/null 2>&1 || need+=(git)
  ((${#need[@]} == 0)) || apt_install --no-recommends "${need[@]}"

  # cargo-zigbuild + zig, the rust targets (nightly + rust-src where armv7 musl has no
  # prebuilt std), the pinned cargo-dist, cargo-auditable and cargo-cyclonedx, and the
  # rustup shim for armv7 musl where needed (scripts/lib/dist-tools.sh).
  if ! dist_tools_setup "$repo" "$work/shim" "${TARGETS[@]}"; then
    fail "setup: the dist tools could not be installed"
    exit 1
  fi
  # dist builds every target through this wrapper: glibc 2.17 via zigbuild for gnu, and
  # --remap-path-prefix for all (reproducible binaries).
  export CARGO="$repo/scripts/dist-cargo.sh"
  pass "setup ($((SECONDS - started)) s)"
}

# --------------------------------------------------------------------- HTTP checker

write_http_checker() {
  cat >"$work/http_check.py" <<'PY'
"""Check one vrypt-server on 127.0.0.1:PORT; print "ok" or the first problem, exit 0/1."""
import re
import socket
import sys
import time
from email.utils import parsedate_to_datetime

PORT = int(sys.argv[1])
BODY = b"Vrypt"
DATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
                  r"|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


class Bad(Exception):
    pass


def read_response(sock, buf, head):
    """Read one response from sock (after the bytes in buf); HEAD responses have no body."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise Bad("connection closed before the end of the headers")
        buf += chunk
    head_bytes, buf = buf.split(b"\r\n\r\n", 1)
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or name != name.strip():
            raise Bad(f"malformed header line {line!r}")
        if name.lower() in headers:
            raise Bad(f"duplicate header {name}")
        headers[name.lower()] = value.strip()
    length = int(headers.get("content-length", "-1"))
    want = 0 if head else length
    while len(buf) < want:
        chunk = sock.recv(65536)
        if not chunk:
            raise Bad("connection closed inside the body")
        buf += chunk
    return lines[0], headers, buf[:want], buf[want:]


def check(what, status, headers, body, head):
    if status != "HTTP/1.1 200 OK":
        raise Bad(f"{what}: status line {status!r}")
    expect = {"server": "vrypt", "content-type": "text/plain", "content-length": str(len(BODY))}
    for name, value in expect.items():
        if headers.get(name) != value:
            raise Bad(f"{what}: {name}: {headers.get(name)!r}, want {value!r}")
    date = headers.get("date", "")
    if not DATE.match(date) or abs(parsedate_to_datetime(date).timestamp() - time.time()) > 300:
        raise Bad(f"{what}: bad Date {date!r}")
    if body != (b"" if head else BODY):
        raise Bad(f"{what}: body {body!r}")


def main():
    with socket.create_connection(("127.0.0.1", PORT), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, body, rest = read_response(sock, b"", head=False)
        check("GET /", status, headers, body, head=False)
        if rest:
            raise Bad(f"GET /: {len(rest)} unexpected bytes after the response")
        # Two requests in one segment: the HEAD answer (no body) must come first.
        sock.sendall(b"HEAD /first HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                     b"GET /second?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n")
        status, headers, body, rest = read_response(sock, b"", head=True)
        check("pipelined HEAD", status, headers, body, head=True)
        status, headers, body, rest = read_response(sock, rest, head=False)
        check("pipelined GET", status, headers, body, head=False)
        sock.settimeout(0.3)
        try:
            extra = rest + sock.recv(65536)
        except socket.timeout:
            extra = rest
        if extra:
            raise Bad(f"pipelined pair: {len(extra)} unexpected bytes after the 2nd response")
    print("ok")


try:
    main()
except (Bad, OSError, ValueError) as e:
    print(e)
    sys.exit(1)
PY
}

# runner_for TRIPLE: the command prefix that runs a binary of TRIPLE on this x86_64 host.
runner_for() {
  case "$1" in
    x86_64-*) ;;
    i686-unknown-linux-musl) ;; # static i386 code runs natively
    i686-unknown-linux-gnu) echo /usr/i686-linux-gnu/lib/ld-linux.so.2 --library-path /usr/i686-linux-gnu/lib ;;
    aarch64-unknown-linux-gnu) echo qemu-aarch64-static -L /usr/aarch64-linux-gnu ;;
    aarch64-unknown-linux-musl) echo qemu-aarch64-static ;;
    armv7-unknown-linux-gnueabihf) echo qemu-arm-static -L /usr/arm-linux-gnueabihf ;;
    armv7-unknown-linux-musleabihf) echo qemu-arm-static ;;
    *) return 1 ;;
  esac
}

# serve_check LABEL LOG CMD...: run the server CMD on an ephemeral 127.0.0.1 port, check its
# answers, stop it with SIGTERM. Prints "ok" or what went wrong; returns non-zero on failure.
serve_check() {
  local label=$1 log=$2 pid port="" rc verdict i
  shift 2
  local version
  if ! version=$("$@" --version 2>&1) || [ "$version" != "$APP $app_version" ]; then
    echo "--version printed '$version'"
    return 1
  fi
  : >"$log"
  "$@" --listen 127.0.0.1:0 --workers 1 --statsd off 2>"$log" &
  pid=$!
  pids+=("$pid")
  for ((i = 0; i < 300; i++)); do
    port=$(sed -n 's/.*event=listening addr=127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "no event=listening line within 30 s ($label)"
    return 1
  fi
  if ! verdict=$(python3 "$work/http_check.py" "$port" 2>&1); then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$verdict"
    return 1
  fi
  kill -TERM "$pid"
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "still running 15 s after SIGTERM"
    return 1
  fi
  rc=0
  wait "$pid" || rc=$?
  if ((rc != 0)); then
    echo "exit status $rc after SIGTERM"
    return 1
  fi
  echo "ok"
}

# ------------------------------------------------------------------- the target checks

human() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }

declare -A BUILT ARCHIVE_SIZE BIN_SIZE LINKAGE GLIBC HTTP DEPS REPRO REPRO_WHY RESULT WHY

check_target() {
  local t=$1
  local archive="$distrib/$APP-$t.tar.xz" dir="$work/unpack/$t" bin verdict runner
  local problems=()
  ARCHIVE_SIZE[$t]=-
  BIN_SIZE[$t]=-
  LINKAGE[$t]=-
  GLIBC[$t]=-
  HTTP[$t]=-
  DEPS[$t]=-
  if [ "${BUILT[$t]}" != yes ]; then
    RESULT[$t]=FAIL
    WHY[$t]="dist build failed"
    return
  fi
  if [ ! -f "$archive" ]; then
    RESULT[$t]=FAIL
    WHY[$t]="no archive $archive"
    return
  fi
  ARCHIVE_SIZE[$t]=$(human "$(stat -c %s "$archive")")

  # 3. checksum of this archive, as a user would run it.
  if ! (cd "$distrib" && sha256sum --status -c "$APP-$t.tar.xz.sha256"); then
    problems+=("checksum mismatch")
  fi

  # 4./5. unpack, inspect, run.
  mkdir -p "$dir"
  tar -xJf "$archive" -C "$dir"
  bin="$dir/$APP-$t/$APP"
  if [ ! -x "$bin" ]; then
    RESULT[$t]=FAIL
    WHY[$t]="archive has no $APP-$t/$APP"
    return
  fi
  BIN_SIZE[$t]=$(human "$(stat -c %s "$bin")")
  if readelf -lW "$bin" | grep -q 'INTERP'; then
    LINKAGE[$t]=dynamic
  elif readelf -hW "$bin" | grep -q 'Type: *DYN'; then
    LINKAGE[$t]=static-pie
  else
    LINKAGE[$t]=static
  fi
  case "$t" in
    *-musl*)
      if [ "${LINKAGE[$t]}" = dynamic ] || readelf -dW "$bin" | grep -q '(NEEDED)'; then
        problems+=("musl build is not static")
      fi
      ;;
    *-gnu*)
      local needed
      needed=$(readelf -VW "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
      GLIBC[$t]=${needed:-none}
      if [ -z "$needed" ]; then
        problems+=("no GLIBC symbol versions found")
      elif [ "$(printf '%s\n%s\n' "$needed" "$MAX_GLIBC" | sort -V | tail -n 1)" != "$MAX_GLIBC" ]; then
        problems+=("needs glibc $needed > $MAX_GLIBC")
      fi
      ;;
  esac
  # The dependency list cargo-auditable embedded, read back from the binary users get.
  if verdict=$(python3 "$repo/scripts/release_check.py" dep-v0 "$bin" "${DEP_CRATES[@]}"); then
    DEPS[$t]=ok
  else
    DEPS[$t]=FAIL
    problems+=("dep-v0: $verdict")
  fi
  if [ "${REPRO[$t]:-FAIL}" != PASS ]; then
    problems+=("not reproducible: ${REPRO_WHY[$t]:-repro-check.sh gave no result}")
  fi
  read -r -a runner <<<"$(runner_for "$t")"
  if verdict=$(serve_check "$t" "$work/$t.server.log" "${runner[@]}" "$bin"); then
    HTTP[$t]=ok
  else
    HTTP[$t]=FAIL
    problems+=("HTTP: $verdict")
  fi
  if ((${#problems[@]} == 0)); then
    RESULT[$t]=PASS
  else
    RESULT[$t]=FAIL
    WHY[$t]=$(printf '%s; ' "${problems[@]}")
  fi
}

# ------------------------------------------------------------------------------ main

app_version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
say "setup"
setup

# 1. The checked-in workflow matches dist-workspace.toml, and the plan is sound.
if dist generate --check >"$work/generate.log" 2>&1; then
  pass "dist generate --check: .github/workflows/release.yml is up to date"
else
  fail "dist generate --check: run 'dist generate' and commit the result"
  show_log "$work/generate.log"
fi
if dist plan >"$work/plan.log" 2>&1; then
  pass "dist plan ($(grep -c '\.tar\.xz$' "$work/plan.log") archives planned)"
  planned=$(grep -o "$APP-[a-z0-9_]*-[a-z0-9_-]*\.tar\.xz" "$work/plan.log" | sed "s/^$APP-//; s/\.tar\.xz$//" | sort -u | tr '\n' ' ')
  listed=$(printf '%s\n' "${TARGETS[@]}" | sort | tr '\n' ' ')
  if [ "$planned" = "$listed" ]; then
    pass "dist plan's targets are scripts/lib/targets.sh's"
  else
    fail "dist plan's targets ($planned) are not scripts/lib/targets.sh's ($listed)"
  fi
  if grep -qx " *$APP\.cdx\.xml" "$work/plan.log"; then
    pass "dist plan lists the SBOM $APP.cdx.xml (cargo-cyclonedx = true)"
  else
    fail "dist plan does not list $APP.cdx.xml: is cargo-cyclonedx = true in dist-workspace.toml?"
  fi
else
  fail "dist plan"
  show_log "$work/plan.log"
fi

# 2. Build each target's archive, then the global artifacts from their manifests. Build 1 of
# the reproducibility check (step 4), so from clean target directories: remove what earlier
# dist-profile builds left (other profiles are left alone).
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
rm -rf "$distrib" "$target_dir/dist"
for t in "${TARGETS[@]}"; do rm -rf "${target_dir:?}/$t/dist"; done
mkdir -p "$work/manifests"
for t in "${TARGETS[@]}"; do
  t0=$SECONDS
  if dist build --artifacts=local --target "$t" --output-format=json \
    >"$work/manifests/$t-dist-manifest.json" 2>"$work/$t.build.log"; then
    BUILT[$t]=yes
    say "built $t ($((SECONDS - t0)) s)"
  else
    BUILT[$t]=no
    echo "FAIL dist build --target $t"
    show_log "$work/$t.build.log"
  fi
done
mkdir -p "$distrib"
for t in "${TARGETS[@]}"; do
  [ "${BUILT[$t]}" != yes ] || cp "$work/manifests/$t-dist-manifest.json" "$distrib/"
done
if dist build --artifacts=global --output-format=json >"$work/global.json" 2>"$work/global.log"; then
  pass "dist build --artifacts=global (installer, sha256.sum, source tarball)"
else
  fail "dist build --artifacts=global"
  show_log "$work/global.log"
fi
# The SBOM, made the way the release workflow's global job makes it (dist 0.34 leaves this to
# the workflow): `cargo cyclonedx`, then the file moves into target/distrib/.
rm -f "$repo/$APP.cdx.xml"
verdict=""
if cargo cyclonedx -v >"$work/cyclonedx.log" 2>&1 && mv "$repo/$APP.cdx.xml" "$distrib/" &&
  verdict=$(python3 "$repo/scripts/release_check.py" sbom "$distrib/$APP.cdx.xml" "${DEP_CRATES[@]}"); then
  pass "SBOM $APP.cdx.xml: $verdict"
else
  fail "SBOM: cargo cyclonedx did not give a CycloneDX $APP.cdx.xml listing ${DEP_CRATES[*]}${verdict:+: $verdict}"
  show_log "$work/cyclonedx.log"
fi

# 3. sha256.sum must cover all eight archives and match them.
sums_ok=1
for t in "${TARGETS[@]}"; do
  grep -q " \*\?$APP-$t\.tar\.xz\$" "$distrib/sha256.sum" 2>/dev/null || sums_ok=0
done
if ((sums_ok)) && (cd "$distrib" && sha256sum --status --strict -c sha256.sum); then
  pass "sha256.sum lists and matches all ${#TARGETS[@]} archives"
else
  fail "sha256.sum is missing archives or does not match"
fi

# 4. Reproducible binaries: two more clean builds of every target, compared with build 1.
if "$repo/scripts/repro-check.sh" --results "$work/repro.tsv" "${TARGETS[@]}"; then
  pass "reproducible builds (scripts/repro-check.sh)"
else
  fail "reproducible builds (scripts/repro-check.sh)"
fi
if [ -f "$work/repro.tsv" ]; then
  while IFS=$'\t' read -r t result why; do
    REPRO[$t]=$result
    REPRO_WHY[$t]=$why
  done <"$work/repro.tsv"
fi

# 5./6. Every archive, one by one.
write_http_checker
for t in "${TARGETS[@]}"; do
  check_target "$t"
  if [ "${RESULT[$t]}" = PASS ]; then
    pass "$t"
  else
    fail "$t: ${WHY[$t]}"
    [ "${HTTP[$t]}" != FAIL ] || [ ! -f "$work/$t.server.log" ] || show_log "$work/$t.server.log"
  fi
done

# 7. The shell installer, fetching from a local server only (the download URL is overridden):
# once as this machine is, once with an `ldd` that reports glibc 2.12, where it must fall back
# to the static musl archive.
# install_check LABEL WANT_ARCHIVE [PATH_PREFIX]: run the installer, check what it fetched and
# that the installed binary serves HTTP.
install_check() {
  local label=$1 want=$2 path_prefix=${3:-} prefix="$work/install-$1" fetched verdict
  : >"$work/http.log"
  if ! PATH="$path_prefix${path_prefix:+:}$PATH" \
    VRYPT_SERVER_DOWNLOAD_URL="http://127.0.0.1:$http_port" \
    VRYPT_SERVER_UNMANAGED_INSTALL="$prefix" \
    timeout 120 sh "$installer" </dev/null >"$work/install-$label.log" 2>&1; then
    fail "shell installer ($label) did not complete"
    show_log "$work/install-$label.log"
    install_result=FAIL
    return
  fi
  sleep 0.2 # let the server log the request
  fetched=$(grep -ao "GET /$APP-[^ ]*\.tar\.xz" "$work/http.log" | head -n 1 | sed 's/^GET \///')
  if [ "$fetched" != "$want" ]; then
    fail "shell installer ($label) fetched '${fetched:-nothing}', want $want"
  elif [ ! -x "$prefix/$APP" ]; then
    fail "shell installer ($label) left no $prefix/$APP"
  elif ! verdict=$(serve_check "installed-$label" "$work/installed-$label.log" "$prefix/$APP"); then
    fail "shell installer ($label): installed binary: $verdict"
  else
    pass "shell installer ($label): fetched $fetched from 127.0.0.1; installed binary serves HTTP"
    return
  fi
  install_result=FAIL
}

installer="$distrib/$APP-installer.sh"
install_result=PASS
http_port=""
if [ -f "$installer" ]; then
  # Created here, not by the background job's redirection: the loop below may read it first.
  : >"$work/http.stdout"
  python3 -u -m http.server --bind 127.0.0.1 0 --directory "$distrib" >"$work/http.stdout" 2>>"$work/http.log" &
  http_pid=$!
  pids+=("$http_pid")
  for ((i = 0; i < 100; i++)); do
    http_port=$(sed -n 's/.*port \([0-9][0-9]*\).*/\1/p' "$work/http.stdout" | head -n 1)
    [ -n "$http_port" ] && break
    sleep 0.1
  done
fi
if [ -z "$http_port" ]; then
  install_result=FAIL
  fail "shell installer: no $installer or no local HTTP server for it"
else
  install_check glibc "$APP-x86_64-unknown-linux-gnu.tar.xz"
  mkdir -p "$work/old-glibc"
  printf '#!/bin/sh\necho "ldd (GNU libc) 2.12"\n' >"$work/old-glibc/ldd"
  chmod +x "$work/old-glibc/ldd"
  install_check old-glibc "$APP-x86_64-unknown-linux-musl.tar.xz" "$work/old-glibc"
  kill "$http_pid" 2>/dev/null || true
  wait "$http_pid" 2>/dev/null || true
fi

# 8. The table.
echo
row() { printf '%-31s %11s %11s %-10s %-6s %-4s %-6s %-8s %s\n' "$@"; }
row target archive binary linkage glibc HTTP dep-v0 repro result
row ------ ------- ------ ------- ----- ---- ------ ----- ------
for t in "${TARGETS[@]}"; do
  repro=${REPRO[$t]:-FAIL}
  [ "$repro" != PASS ] || repro=same
  row "$t" "${ARCHIVE_SIZE[$t]}" "${BIN_SIZE[$t]}" "${LINKAGE[$t]}" "${GLIBC[$t]}" \
    "${HTTP[$t]}" "${DEPS[$t]}" "$repro" "${RESULT[$t]}"
done
row "shell installer (2 runs)" - - - - - - - "$install_result"
echo
say "runtime $((SECONDS - started)) s"
echo "release-check: $passed passed, $failed failed"
((failed == 0))
