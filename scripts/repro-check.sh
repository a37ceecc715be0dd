#!/usr/bin/env bash
# Reproducible binaries: build every release archive twice more, from clean target
# directories at other absolute paths, and require the same bytes.
#
#   scripts/repro-check.sh [--results FILE] [TRIPLE...]      (default: all eight targets)
#
# Build 1 is the one scripts/release-check.sh just made with `dist build` (the archives and
# source.tar.gz in target/distrib/); release-check.sh runs this script right after it. It
# works alone too, after such a run (it sets up the same tools, skipping what is installed).
# For each target it runs the same `dist build --artifacts=local --target T` (the same
# scripts/dist-cargo.sh, RUSTFLAGS, zigbuild glibc suffix, cargo-auditable) again:
#   build 2 "clean copy": in a copy of this checkout (tracked and untracked, not ignored,
#           files) at another absolute path, with an empty target directory there;
#   build 3 "source.tar.gz": in the unpacked source.tar.gz of build 1 (what `git archive HEAD`
#           gives a user of the release), with an empty target directory there. Skipped, and
#           reported as skipped, when tracked files differ from HEAD: the tarball is HEAD.
# Builds 2 and 3 run side by side, each with its own cargo-zigbuild wrapper directory; zig's
# own cache (~/.cache/zig: the libc start files and stubs it compiles once per target) is
# shared with build 1. Then, per target:
#   - the archive of each rebuild against build 1's, member by member: names, types, modes and
#     contents, not mtimes or owners (dist stamps each member with the time it copied it, so
#     the raw .tar.xz bytes differ; the table says so). The binary must be byte-identical;
#     when it is not, the ELF sections whose contents differ are named.
#   - build 1's binary must contain none of this machine's absolute paths (the checkout,
#     $HOME, CARGO_HOME, RUSTUP_HOME, the toolchain): the rebuilds share CARGO_HOME and the
#     toolchain with build 1, so only this catches those paths, which another machine (or
#     GitHub's runner) would not reproduce.
# Prints a table and "PASS: reproducible: N of N targets ...". Exits non-zero when any target
# differs, could not be rebuilt, or leaks a path.
# --results FILE: also write one "TRIPLE<TAB>PASS|FAIL<TAB>summary" line per target.
set -euo pipefail

readonly APP=vrypt-server

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/targets.sh
source "$repo/scripts/lib/targets.sh"
readonly ALL_TARGETS=("${RELEASE_TARGETS[@]}")
cd "$repo"
# shellcheck source=scripts/lib/check.sh
source "$repo/scripts/lib/check.sh"
# shellcheck source=scripts/lib/dist-tools.sh
source "$repo/scripts/lib/dist-tools.sh"

results=""
targets=()
while (($#)); do
  case "$1" in
    --results)
      results=${2:?--results needs a file}
      shift 2
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      [[ " ${ALL_TARGETS[*]} " == *" $1 "* ]] || die "unknown target '$1' (one of: ${ALL_TARGETS[*]})"
      targets+=("$1")
      shift
      ;;
  esac
done
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")

distrib="$repo/target/distrib"
work=$(mktemp -d "${TMPDIR:-/tmp}/repro-check.XXXXXX")
started=$SECONDS
trap 'rm -rf "$work"' EXIT
checker="$repo/scripts/release_check.py"

dist_tools_setup "$repo" "$work/shim" "${targets[@]}" || die "setup: the dist tools could not be installed"

# ------------------------------------------------------------------- the two other trees

# Build 2: the checkout as it is (so uncommitted work is compared too), at another path.
copy="$work/clean/$APP"
mkdir -p "$copy"
git -C "$repo" ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do
    if [ -e "$repo/$f" ] || [ -L "$repo/$f" ]; then printf '%s\0' "$f"; fi
  done | (cd "$repo" && xargs -0 cp -P --parents -t "$copy")
[ -f "$copy/Cargo.toml" ] || die "could not copy the checkout to $copy"

# Build 3: the release's source tarball, when it is the source build 1 was made from.
source_tree=""
source_skip=""
if [ ! -f "$distrib/source.tar.gz" ]; then
  # The release publishes it: a build that no longer makes it is a failure, not a skip.
  die "no $distrib/source.tar.gz (dist build --artifacts=global makes it)"
elif ! git -C "$repo" diff --quiet HEAD --; then
  source_skip="tracked files differ from HEAD, and source.tar.gz is HEAD: commit, then rerun"
else
  mkdir -p "$work/source"
  # As a user would unpack it: git archive stores files as 0664, root's tar keeps that, but
  # dist copies README.md and LICENSE into the archive with their modes, so apply the umask
  # as a git checkout does.
  tar --no-same-permissions -xzf "$distrib/source.tar.gz" -C "$work/source"
  source_tree=$(find "$work/source" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  [ -f "$source_tree/Cargo.toml" ] || die "source.tar.gz has no Cargo.toml under one top directory"
fi

# build_all LABEL TREE: `dist build` of each target in TREE, one after the other, each into
# TREE/target (empty at first); leaves $work/LABEL.TRIPLE.{status,log}.
build_all() {
  local label=$1 tree=$2 t t0
  for t in "${targets[@]}"; do
    t0=$SECONDS
    if (cd "$tree" && CARGO="$tree/scripts/dist-cargo.sh" CARGO_TARGET_DIR="$tree/target" \
      CARGO_ZIGBUILD_CACHE_DIR="$work/$label.zigbuild" \
      dist build --artifacts=local --target "$t" --output-format=json) \
      >"$work/$label.$t.json" 2>"$work/$label.$t.log"; then
      echo ok >"$work/$label.$t.status"
      info "$label: built $t ($((SECONDS - t0)) s)"
    else
      echo failed >"$work/$label.$t.status"
      info "$label: dist build --target $t failed ($((SECONDS - t0)) s)"
    fi
  done
}

info "rebuilding ${#targets[@]} targets: clean copy at $copy${source_tree:+, source.tar.gz at $source_tree}"
build_all clean "$copy" &
clean_pid=$!
source_pid=""
if [ -n "$source_tree" ]; then
  build_all source "$source_tree" &
  source_pid=$!
fi
wait "$clean_pid" || true
[ -z "$source_pid" ] || wait "$source_pid" || true
build_secs=$((SECONDS - started))

# -------------------------------------------------------------------------- compare

# compare LABEL TREE TRIPLE: prints "same" or what differs, for the table and the details.
compare() {
  local label=$1 tree=$2 t=$3 verdict
  if [ "$(cat "$work/$label.$t.status" 2>/dev/null)" != ok ]; then
    echo "dist build failed: $(tail -n 3 "$work/$label.$t.log" | tr '\n' ' ')"
    return 1
  fi
  verdict=$(python3 "$checker" archive-diff "$distrib/$APP-$t.tar.xz" \
    "$tree/target/distrib/$APP-$t.tar.xz" 2>&1) || {
    echo "$verdict"
    return 1
  }
  echo "$verdict"
}

# Absolute paths of this machine that a build could write into a binary.
needles=("$repo" "$HOME/" "${CARGO_HOME:-$HOME/.cargo}" "${RUSTUP_HOME:-$HOME/.rustup}"
  "$(rustc --print sysroot)")
declare -A SHA CLEAN SOURCE PATHS RESULT
identical=0
source_identical=0
compared=0
raw_differs=0
# note VERDICT: count the archive comparisons whose raw .tar.xz bytes differed.
note() {
  compared=$((compared + 1))
  [[ "$1" != *"raw .tar.xz differs"* ]] || raw_differs=$((raw_differs + 1))
}
for t in "${targets[@]}"; do
  archive="$distrib/$APP-$t.tar.xz"
  SHA[$t]=-
  PATHS[$t]=-
  problems=()
  if [ ! -f "$archive" ]; then
    CLEAN[$t]=-
    SOURCE[$t]=-
    RESULT[$t]=FAIL
    fail "$t: no build-1 archive $archive"
    continue
  fi
  mkdir -p "$work/bin1/$t"
  tar -xJf "$archive" -C "$work/bin1/$t"
  bin="$work/bin1/$t/$APP-$t/$APP"
  SHA[$t]=$(sha256sum "$bin" | cut -c1-16)

  if verdict=$(compare clean "$copy" "$t"); then
    CLEAN[$t]=same
    identical=$((identical + 1))
    note "$verdict"
  else
    CLEAN[$t]=DIFF
    problems+=("clean copy: $verdict")
  fi

  if [ -n "$source_skip" ]; then
    SOURCE[$t]=skipped
  elif verdict=$(compare source "$source_tree" "$t"); then
    SOURCE[$t]=same
    source_identical=$((source_identical + 1))
    note "$verdict"
  else
    SOURCE[$t]=DIFF
    problems+=("source.tar.gz: $verdict")
  fi

  if verdict=$(python3 "$checker" leaks "$bin" "${needles[@]}"); then
    PATHS[$t]=none
  else
    PATHS[$t]=LEAK
    problems+=("$verdict")
  fi

  if ((${#problems[@]} == 0)); then
    RESULT[$t]=PASS
    pass "$t: reproducible (binary sha256 ${SHA[$t]}..., no local paths)"
  else
    RESULT[$t]=FAIL
    fail "$t: not reproducible: $(printf '%s; ' "${problems[@]}" | sed 's/; $//')"
  fi
done

n=${#targets[@]}
if ((identical == n)); then
  pass "reproducible: $identical of $n targets identical across two clean builds"
else
  fail "reproducible: only $identical of $n targets identical across two clean builds"
fi
if [ -n "$source_skip" ]; then
  skip "source.tar.gz builds: $source_skip"
elif ((source_identical == n)); then
  pass "source.tar.gz: $source_identical of $n targets identical to build 1"
else
  fail "source.tar.gz: only $source_identical of $n targets identical to build 1"
fi

echo
printf '%-31s %-18s %-10s %-14s %-11s %s\n' target "binary sha256" "clean copy" "source.tar.gz" "local paths" result
printf '%-31s %-18s %-10s %-14s %-11s %s\n' ------ ------------- ---------- ------------- ----------- ------
for t in "${targets[@]}"; do
  printf '%-31s %-18s %-10s %-14s %-11s %s\n' "$t" "${SHA[$t]}" "${CLEAN[$t]}" "${SOURCE[$t]}" \
    "${PATHS[$t]}" "${RESULT[$t]}"
done
echo
info "archives compared member by member (names, types, modes, contents; not mtimes or" \
  "owners): the raw .tar.xz bytes differed in $raw_differs of $compared identical pairs"
info "repro-check: rebuilds took $build_secs s, $((SECONDS - started)) s in all"

if [ -n "$results" ]; then
  : >"$results"
  for t in "${targets[@]}"; do
    printf '%s\t%s\t%s\n' "$t" "${RESULT[$t]}" \
      "clean copy ${CLEAN[$t]}, source.tar.gz ${SOURCE[$t]}, local paths ${PATHS[$t]}" >>"$results"
  done
fi
check_summary repro-check
