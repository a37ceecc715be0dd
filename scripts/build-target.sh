#!/usr/bin/env bash
# Build the release binary of vrypt-server for one Linux target on this machine (x86_64
# Debian or Ubuntu), after installing whatever that build needs and is missing.
#
#   scripts/build-target.sh <triple>            build; the LAST line of stdout is the
#                                               absolute path of the binary
#   scripts/build-target.sh --setup <triple>... only install what those builds need
#
# Triples: x86_64-unknown-linux-gnu x86_64-unknown-linux-musl i686-unknown-linux-gnu
# i686-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl
# armv7-unknown-linux-gnueabihf armv7-unknown-linux-musleabihf
#
# Every target is linked by cargo-zigbuild (zig ships the libcs and linkers for all of them,
# so no cross gcc is needed), exactly as `dist build` does through scripts/dist-cargo.sh:
# - *-linux-gnu*: linked against glibc 2.17 (override with VRYPT_MIN_GLIBC);
# - *-musl*: fully static (`+crt-static`, `-Clink-self-contained=yes`, as dist does);
# - armv7-unknown-linux-musleabihf when `rustup target add` cannot fetch its rust-std
#   (some mirrors lack it): nightly with rust-src and `-Zbuild-std`.
# Idempotent: installed tools at the pinned versions are left alone. Logs go to stderr.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/targets.sh
source "$repo/scripts/lib/targets.sh"
readonly ALL_TARGETS=("${RELEASE_TARGETS[@]}")
# cargo-zigbuild and ziglang (zig) pins, one file for every place that installs them.
readonly ZIGBUILD_REQUIREMENTS=$repo/.ci/requirements-zigbuild.txt
ZIGBUILD_VERSION=$(sed -n 's/^cargo-zigbuild==\([^ ]*\)$/\1/p' "$ZIGBUILD_REQUIREMENTS")
ZIG_VERSION=$(sed -n 's/^ziglang==\([^ ]*\)$/\1/p' "$ZIGBUILD_REQUIREMENTS")
readonly ZIGBUILD_VERSION ZIG_VERSION

log() { echo "build-target: $*" >&2; }
die() {
  echo "build-target: FAIL: $*" >&2
  exit 1
}

# shellcheck source=scripts/lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/install.sh"

ensure_host_tools() {
  local need=()
  command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
  command -v readelf >/dev/null 2>&1 || need+=(binutils)
  ((${#need[@]} == 0)) || apt_install --no-recommends "${need[@]}"
  command -v rustup >/dev/null 2>&1 ||
    die "rustup is required (https://rustup.rs); Debian's rustc cannot add targets"
}

# cargo-zigbuild and zig (the ziglang wheel) from PyPI, both at the pinned versions.
ensure_zigbuild() {
  [ -n "$ZIGBUILD_VERSION" ] && [ -n "$ZIG_VERSION" ] ||
    die "no cargo-zigbuild== or ziglang== pin in $ZIGBUILD_REQUIREMENTS"
  local have="" zig=""
  have=$(cargo-zigbuild --version 2>/dev/null || true)
  zig=$(python3 -c 'import importlib.metadata as m; print(m.version("ziglang"))' 2>/dev/null || true)
  if [ "$have" != "cargo-zigbuild $ZIGBUILD_VERSION" ] || [ "$zig" != "$ZIG_VERSION" ]; then
    log "pip install cargo-zigbuild==$ZIGBUILD_VERSION ziglang==$ZIG_VERSION (found: ${have:-none}, ziglang ${zig:-none})"
    # Debian's own python marks itself externally managed; this is a build tool, not an app.
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check \
      --requirement "$ZIGBUILD_REQUIREMENTS" >&2
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash >/dev/null 2>&1 || true; fi
  fi
  # pip puts console scripts in the interpreter's scripts dir (or the user's, when it is not
  # root), which may not be on PATH.
  local dir
  for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
    "$(python3 -m site --user-base)/bin"; do
    case ":$PATH:" in *":$dir:"*) ;; *) export PATH="$PATH:$dir" ;; esac
  done
  have=$(cargo-zigbuild --version 2>/dev/null || true)
  [ "$have" = "cargo-zigbuild $ZIGBUILD_VERSION" ] || die "cargo-zigbuild not usable after install"
}

# has_rust_std TRIPLE: the active toolchain ships a standard library for TRIPLE.
has_rust_std() {
  local sysroot
  sysroot=$(cd "$repo" && rustc --print sysroot 2>/dev/null) || return 1
  [ -d "$sysroot/lib/rustlib/$1/lib" ]
}

ensure_rust_target() {
  local triple=$1
  has_rust_std "$triple" && return 0
  log "rustup target add $triple"
  if [ "$triple" != armv7-unknown-linux-musleabihf ]; then
    rustup target add "$triple" >&2 || die "rustup target add $triple failed"
    return 0
  fi
  if RUST_BACKTRACE=0 rustup target add "$triple" >/dev/null 2>&1; then
    return 0
  fi
  # No prebuilt rust-std on this mirror: build std from source with nightly.
  log "no rust-std for $triple here: installing nightly with rust-src for -Zbuild-std"
  if rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup component add rust-src --toolchain nightly >&2
  else
    rustup toolchain install nightly --profile minimal --component rust-src >&2
  fi
}

setup() {
  local triple
  ensure_host_tools
  ensure_zigbuild
  for triple in "$@"; do
    ensure_rust_target "$triple"
  done
}

# target_dir: where cargo puts build output (honours CARGO_TARGET_DIR and cargo config).
target_dir() {
  (cd "$repo" && cargo metadata --format-version 1 --no-deps) |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

build() {
  local triple=$1 flags="" bin
  case "$triple" in
    *-musl*) flags="-Ctarget-feature=+crt-static -Clink-self-contained=yes" ;;
  esac
  log "building $triple"
  (cd "$repo" && RUSTFLAGS="${RUSTFLAGS:-} $flags" \
    "$repo/scripts/dist-cargo.sh" zigbuild --release --locked --target "$triple" >&2) ||
    die "cargo zigbuild for $triple failed"
  bin="$(target_dir)/$triple/release/vrypt-server"
  [ -x "$bin" ] || die "no binary at $bin"
  case "$triple" in
    *-musl*)
      if readelf -lW "$bin" | grep -q 'INTERP'; then
        die "$bin is dynamically linked; musl builds must be static"
      fi
      ;;
  esac
  log "built $bin"
  echo "$bin"
}

valid_target() {
  local t
  for t in "${ALL_TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
  return 1
}

main() {
  local setup_only=0 triple
  if [ "${1:-}" = --setup ]; then
    setup_only=1
    shift
  fi
  if [ $# -eq 0 ] || { ((setup_only == 0)) && [ $# -ne 1 ]; }; then
    echo "usage: $0 <triple> | $0 --setup <triple>..." >&2
    echo "triples: ${ALL_TARGETS[*]}" >&2
    exit 2
  fi
  for triple in "$@"; do
    valid_target "$triple" || die "unknown target '$triple' (one of: ${ALL_TARGETS[*]})"
  done
  setup "$@"
  if ((setup_only == 0)); then
    build "$1"
  fi
}

main "$@"
