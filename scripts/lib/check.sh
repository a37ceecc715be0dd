# shellcheck shell=bash
# One result line per check, for the shell check scripts (sourced, not run);
# the same line format as scripts/lib/e2e.py for the Python ones.
#
# pass MSG...   "PASS: MSG"
# fail MSG...   "FAIL: MSG", counted in CHECK_FAILED; the script goes on
# skip MSG...   "SKIP: MSG", counted in CHECK_SKIPPED (a skip is never a pass)
# info MSG...   "INFO: MSG"
# die MSG...    "FAIL: MSG" and exit 1, for a setup step the rest depends on
# check_summary NAME
#   "PASS: NAME: N passed" or "FAIL: NAME: N failed, ..." with the skip count;
#   returns 1 when a check failed.
# expect GOT WANT WHAT
#   pass "WHAT: GOT" when GOT equals WANT, else fail with both.
# free_port [N]
#   N (default 1) distinct TCP ports on 127.0.0.1 that were free a moment ago, space separated.
# now_ms
#   Wall clock in milliseconds.
# wait_until TIMEOUT INTERVAL CMD [ARG...]
#   Runs CMD until it exits 0, every INTERVAL seconds, for at most TIMEOUT (whole) seconds (and
#   at most TIMEOUT/INTERVAL+1 tries); returns 0 as soon as it succeeds, 1 when time is up. CMD
#   itself must be bounded (curl --max-time, timeout ...).

CHECK_PASSED=0
CHECK_FAILED=0
CHECK_SKIPPED=0

pass() {
  CHECK_PASSED=$((CHECK_PASSED + 1))
  echo "PASS: $*"
}

fail() {
  CHECK_FAILED=$((CHECK_FAILED + 1))
  echo "FAIL: $*"
}

skip() {
  CHECK_SKIPPED=$((CHECK_SKIPPED + 1))
  echo "SKIP: $*"
}

info() { echo "INFO: $*"; }

die() {
  echo "FAIL: $*"
  exit 1
}

check_summary() {
  local skipped=""
  ((CHECK_SKIPPED == 0)) || skipped=", $CHECK_SKIPPED skipped"
  if ((CHECK_FAILED == 0)); then
    echo "PASS: $1: $CHECK_PASSED passed$skipped"
  else
    echo "FAIL: $1: $CHECK_FAILED failed, $CHECK_PASSED passed$skipped"
    return 1
  fi
}

expect() {
  if [ "$1" = "$2" ]; then pass "$3: $1"; else fail "$3: got '$1', want '$2'"; fi
}

free_port() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

wait_until() {
  local timeout=$1 interval=$2 deadline tries i
  shift 2
  deadline=$(($(now_ms) + ${timeout%.*} * 1000))
  tries=$(awk -v t="$timeout" -v i="$interval" 'BEGIN { print int(t / i) + 1 }')
  for ((i = 0; i < tries; i++)); do
    "$@" && return 0
    (($(now_ms) < deadline)) || return 1
    sleep "$interval"
  done
  return 1
}
