#!/usr/bin/env bash
# The `cargo` that `dist build` runs (dist honours the CARGO environment variable).
#
# Why it exists: dist builds a target of the host's own architecture with plain `cargo build`
# and every other Linux target with `cargo zigbuild --target <triple>`. Neither pins the glibc
# version: the binaries then need whatever glibc the build machine has (GLIBC_2.34 from Debian 12
# or Ubuntu 22.04). dist has no setting for that (its `min-glibc-version` only tells the
# installer what to expect), but cargo-zigbuild links against any glibc version named as a
# suffix of the triple. So for every `*-linux-gnu*` build this wrapper runs
#   cargo zigbuild --target <triple>.<VRYPT_MIN_GLIBC, default 2.17>
# which writes to the same target/<triple>/ directory dist expects. Everything else (`cargo
# metadata`, `cargo -vV`, musl builds) goes to the real cargo unchanged, with one exception:
#
# armv7-unknown-linux-musleabihf on a toolchain that has no rust-std for it (some mirrors lack
# it; GitHub's runners have it) is built with nightly `-Zbuild-std`, and zig supplies musl's
# start files (`-Clink-self-contained=no`), since the self-contained ones come with rust-std.
#
# Reproducible binaries: every build also gets `--remap-path-prefix` for the three absolute
# directories whose paths rustc could write into a binary (panic locations, `file!()`): this
# checkout (-> /build/vrypt-server), CARGO_HOME, where the crates.io sources are (-> /cargo),
# and the toolchain's rust-src, compiled by -Zbuild-std (-> /rustc/<commit>, the path the
# prebuilt std already carries). The same source, toolchain and tools then give the same bytes
# wherever the checkout, CARGO_HOME, RUSTUP_HOME and the target dir are; release-check.sh checks it.
# (Cargo's `trim-paths` would do this, but it is not stable; RUSTFLAGS is what dist passes on.)
#
# Used by .github/build-setup.yml (GitHub release workflow) and scripts/release-check.sh.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
real_cargo=${VRYPT_REAL_CARGO:-cargo}
min_glibc=${VRYPT_MIN_GLIBC:-2.17}
# cargo-zigbuild runs "$CARGO" itself: it must find the real cargo, not this wrapper.
unset CARGO

args=("$@")
subcommand_index=-1
target_index=-1
for i in "${!args[@]}"; do
  case "${args[i]}" in
    build | zigbuild) if ((subcommand_index < 0)); then subcommand_index=$i; fi ;;
    --target) target_index=$((i + 1)) ;;
  esac
done

if ((subcommand_index < 0 || target_index < 0 || target_index >= ${#args[@]})); then
  exec "$real_cargo" "$@"
fi

target=${args[target_index]}
case "$target" in
  *-linux-gnu*.[0-9]*)
    # A glibc version is already given; just make sure zig links it.
    args[subcommand_index]=zigbuild
    ;;
  *-linux-gnu*)
    args[subcommand_index]=zigbuild
    args[target_index]="$target.$min_glibc"
    ;;
  armv7-unknown-linux-musleabihf)
    sysroot=$(rustc --print sysroot)
    if [ ! -d "$sysroot/lib/rustlib/$target/lib" ]; then
      echo "dist-cargo: no rust-std for $target in $sysroot; using nightly -Zbuild-std" >&2
      export RUSTUP_TOOLCHAIN=nightly
      rustflags=${RUSTFLAGS:-}
      export RUSTFLAGS="${rustflags//-Clink-self-contained=yes/} -Clink-self-contained=no"
      args[subcommand_index]=zigbuild
      args+=("-Zbuild-std=std,panic_abort")
    fi
    ;;
esac

# After the case above: RUSTUP_TOOLCHAIN decides which sysroot this build uses.
sysroot=$(rustc --print sysroot)
commit=$(rustc -vV | sed -n 's/^commit-hash: //p')
remap=(
  "$repo=/build/vrypt-server"
  "${CARGO_HOME:-$HOME/.cargo}=/cargo"
  "$sysroot/lib/rustlib/src/rust=/rustc/${commit:-unknown}"
)
rustflags=${RUSTFLAGS:-}
for pair in "${remap[@]}"; do
  # RUSTFLAGS is split at whitespace: a path containing any cannot be passed this way.
  case "$pair" in
    *[[:space:]]*)
      echo "dist-cargo: cannot remap '$pair': the path contains whitespace" >&2
      exit 1
      ;;
  esac
  rustflags+=" --remap-path-prefix=$pair"
done
export RUSTFLAGS="${rustflags# }"

echo "dist-cargo: RUSTFLAGS=$RUSTFLAGS $real_cargo ${args[*]}" >&2
exec "$real_cargo" "${args[@]}"
