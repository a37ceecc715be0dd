#!/usr/bin/env bash
# End-to-end check of the Prometheus endpoint with a real Prometheus (Debian's `prometheus`):
#
#   load --> vrypt-server --status 404 (main port)
#            vrypt-server --admin-listen /metrics <--scrape every 1 s-- prometheus --> /api/v1/query
#
# Installs what is missing (Debian prometheus, which brings promtool, without its recommended
# node exporter and without starting its service), builds the release binary, then runs
# scripts/prometheus_e2e.py: `promtool check metrics` on the exposition, every family with its
# HELP/TYPE, admin requests and scrapes not counted, and after a known load (5,000 requests
# over keep-alive connections + 200 on new connections) Prometheus's HTTP API must give exactly
# the requests answered in vrypt_requests_total, all of them in vrypt_responses_total{class="4xx"},
# the connections and bytes, vrypt_connections_open, vrypt_build_info and up == 1.
# Our own prometheus runs with a temp config and storage dir; everything listens on 127.0.0.1
# free ports and every process is stopped by PID.
#
# Environment: VRYPT_BIN (skip the build, use this binary), VRYPT_PROM_STATUS (the server's
# --status, default 404), VRYPT_PROM_ARTIFACTS (copy the expositions, config and logs there,
# default target/prometheus-e2e).
# Runtime here: about 20 s with everything installed (+ ~10 s for the apt install).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

START=$SECONDS
STATUS=${VRYPT_PROM_STATUS:-404}
ARTIFACTS=${VRYPT_PROM_ARTIFACTS:-target/prometheus-e2e}
LIMIT=170 # seconds for the check itself, after installs and the build

fail() {
  echo "FAIL: $*"
  exit 1
}

# shellcheck source=scripts/lib/install.sh
source scripts/lib/install.sh
# shellcheck source=scripts/lib/vrypt-bin.sh
source scripts/lib/vrypt-bin.sh

# --- Debian packages -------------------------------------------------------
read -r -a missing <<<"$(apt_missing prometheus python3)"
if ((${#missing[@]})); then
  echo "INFO: installing ${missing[*]}"
  apt_install_no_start --no-recommends "${missing[@]}"
fi
for tool in /usr/bin/python3 /usr/bin/prometheus /usr/bin/promtool; do
  [ -x "$tool" ] || fail "$tool is missing after the install"
done
echo "INFO: $(/usr/bin/prometheus --version 2>&1 | head -n 1)"
# A system-wide prometheus (one the machine had before) uses its own port and storage and
# cannot meet ours; say so, leave it alone.
if pgrep -x prometheus >/dev/null; then
  echo "INFO: a prometheus not started by this check is running (pids $(pgrep -x prometheus | tr '\n' ' ')); ours uses its own port and storage"
fi

# --- the binary ---------------------------------------------------------------
BIN=$(vrypt_bin) || fail "no vrypt-server binary"
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$VERSION" ] || fail "no version in Cargo.toml"
echo "INFO: setup took $((SECONDS - START)) s; binary $BIN (version $VERSION)"

# --- the check ------------------------------------------------------------------
# In the background, so a signal to this script stops it (and its daemons) at once.
child=
# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child"
    wait "$child" 2>/dev/null
  fi
}
trap cleanup EXIT
trap 'echo "FAIL: prometheus end-to-end interrupted by a signal"; exit 143' TERM INT

T0=$SECONDS
timeout --kill-after=10 "$LIMIT" /usr/bin/python3 scripts/prometheus_e2e.py --binary "$BIN" --version "$VERSION" \
  --status "$STATUS" --deadline $((LIMIT - 20)) --artifacts "$ARTIFACTS" &
child=$!
status=0
wait "$child" || status=$?
child=

if [ "$status" = 0 ]; then
  echo "PASS: prometheus end-to-end (--status $STATUS) in $((SECONDS - T0)) s ($((SECONDS - START)) s with setup); files in $ARTIFACTS"
else
  echo "FAIL: prometheus end-to-end (exit $status); expositions and logs in $ARTIFACTS"
fi
exit "$status"
