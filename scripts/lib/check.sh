# shellcheck shell=bash
# Reporting, ports and bounded waits for the check scripts (sourced, not run).
#
# pass MSG... / fail MSG... / skip MSG... / info MSG...
#   One "PASS: ", "FAIL: " or "SKIP: " line, or a "----- " heading. fail counts into
#   $failures and skip into $skips; a skipped check is never reported as PASS.
# expect GOT WANT WHAT
#   pass "WHAT: GOT" when GOT equals WANT, else fail with both.
# check_summary NAME
#   Prints "NAME: N s, F failure(s), S skipped" (N since this file was sourced) and returns
#   non-zero when anything failed.
# free_port [N]
#   N (default 1) distinct TCP ports on 127.0.0.1 that were free a moment ago, space separated.
# now_ms
#   Wall clock in milliseconds.
# wait_until TIMEOUT INTERVAL CMD [ARG...]
#   Runs CMD until it exits 0, every INTERVAL seconds, for at most TIMEOUT (whole) seconds (and at most
#   TIMEOUT/INTERVAL+1 tries); returns 0 as soon as it succeeds, 1 when time is up. CMD itself
#   must be bounded (curl --max-time, timeout ...).

failures=0
skips=0
_vrypt_check_started=$SECONDS

pass() { echo "PASS: $*"; }
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
skip() {
  echo "SKIP: $*"
  skips=$((skips + 1))
}
info() { echo "----- $*"; }

expect() {
  if [ "$1" = "$2" ]; then pass "$3: $1"; else fail "$3: got '$1', want '$2'"; fi
}

check_summary() {
  echo "$1: $((SECONDS - _vrypt_check_started)) s, $failures failure(s), $skips skipped"
  ((failures == 0))
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
