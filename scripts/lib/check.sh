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
