#!/usr/bin/env bash
# Benchmark vrypt-server against nginx on this machine (Linux, 2+ CPUs).
#
#   bench/run.sh [--rounds N] [--duration S] [--quick] [--server-bin PATH]
#                [--idle-conns N] [--strace-requests N] [--out FILE] [--shaping]
#
# --shaping runs bench/shaping.py instead: --delay at 512 connections against
# Little's law, a percentiles: spec against wrk's latency percentiles, and a
# 1 GiB --body-size against nginx sending a 1 GiB file (bench/results/shaping.md).
#
# Installs wrk, nginx, strace and python3 from Debian when missing, builds
# `cargo build --release` (unless --server-bin is given), then runs
# bench/bench.py, which prints the result table and writes it as markdown to
# bench/results/latest.md (--quick: bench/results/quick.md).
#
# Runtime on a 2-CPU machine: about 7 minutes by default (3 rounds of 10 s
# runs), about 35 s with --quick (a smoke test of the harness), plus the build.
# Exit status: 0 when every server started and every run was clean; 1 when a
# server failed to start or a run had errors (wrk socket errors or non-2xx
# answers count); 2 for a bad option. The issue's targets are printed as
# PASS/MISS next to the figures and never change the exit status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
  sed -n '2,23s/^# \{0,1\}//p' "$0"
}

server_bin=""
script=bench/bench.py
args=()
# Shown in the results file as the command that produced them.
export BENCH_COMMAND="bench/run.sh${*:+ $*}"
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help)
      usage
      exit 0
      ;;
    --quick)
      args+=("$1")
      shift
      ;;
    --shaping)
      # The load-test shaping figures (--delay, --body-size) instead.
      script=bench/shaping.py
      shift
      ;;
    --rounds | --duration | --idle-conns | --strace-requests | --out | \
      --server-cpu | --client-cpu)
      if [ $# -lt 2 ]; then
        echo "bench/run.sh: $1 needs a value" >&2
        exit 2
      fi
      args+=("$1" "$2")
      shift 2
      ;;
    --server-bin)
      if [ $# -lt 2 ]; then
        echo "bench/run.sh: $1 needs a value" >&2
        exit 2
      fi
      server_bin=$2
      shift 2
      ;;
    *)
      echo "bench/run.sh: unknown option: $1 (see --help)" >&2
      exit 2
      ;;
  esac
done

# --- tools -----------------------------------------------------------------
have() { command -v "$1" >/dev/null 2>&1; }

missing=()
have wrk || missing+=(wrk)
have nginx || [ -x /usr/sbin/nginx ] || missing+=(nginx)
have strace || missing+=(strace)
have python3 || missing+=(python3)
have taskset || missing+=(util-linux)

if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    have sudo || {
      echo "FAIL: need root or sudo to install: ${missing[*]}" >&2
      exit 1
    }
    sudo=(sudo)
  fi
  echo "installing from Debian: ${missing[*]}"
  # Installing nginx must not start the distribution's service on port 80.
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    added_policy=1
  fi
  apt=(apt-get -o DPkg::Lock::Timeout=600 -q)
  status=0
  { "${sudo[@]}" "${apt[@]}" update &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y \
      --no-install-recommends "${missing[@]}"; } || status=$?
  if [ "$added_policy" = 1 ]; then
    "${sudo[@]}" rm -f "$policy"
  fi
  if [ "$status" != 0 ]; then
    echo "FAIL: apt-get install ${missing[*]} failed" >&2
    exit 1
  fi
fi

# --- server ----------------------------------------------------------------
if [ -z "$server_bin" ]; then
  have cargo || {
    echo "FAIL: cargo not found (install Rust: https://rustup.rs)" >&2
    exit 1
  }
  echo "building: cargo build --release"
  cargo build --release
  server_bin="${CARGO_TARGET_DIR:-target}/release/vrypt-server"
  # The static musl build (what the images ship) for the idle-RSS figure: a glibc
  # build's RSS includes ~1.3 MiB of shared libc.so pages.
  if [ "$(uname -m)" = x86_64 ]; then
    rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl ||
      rustup target add x86_64-unknown-linux-musl
    echo "building: cargo build --release --target x86_64-unknown-linux-musl (static)"
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
      CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C link-self-contained=yes" \
      cargo build --release --target x86_64-unknown-linux-musl
    args+=(--static-bin "${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/vrypt-server")
  fi
fi

# --- run -------------------------------------------------------------------
# bench.py stops every process it started when it gets SIGTERM; forward
# INT/TERM/HUP to it and wait for it to finish cleaning up.
python3 "$script" --server-bin "$server_bin" "${args[@]}" &
bench_pid=$!
trap 'kill -TERM "$bench_pid" 2>/dev/null || true' INT TERM HUP
rc=0
wait "$bench_pid" || rc=$?
while kill -0 "$bench_pid" 2>/dev/null; do
  rc=0
  wait "$bench_pid" || rc=$?
done
exit "$rc"
