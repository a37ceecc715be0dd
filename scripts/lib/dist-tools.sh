# shellcheck shell=bash
# The tools `dist build` needs on this kind of machine, and the environment it runs in
# (sourced, not run; used by scripts/release-check.sh and scripts/repro-check.sh).
#
# cargo_install_pinned CRATE VERSION
#   `cargo install --locked CRATE --version VERSION`, unless `cargo install --list` already
#   has exactly that version.
# dist_tools_setup REPO SHIMDIR TRIPLE...
#   Everything the dist builds of those targets need, at pinned versions: cargo-zigbuild and
#   zig (scripts/build-target.sh --setup, which also adds the rust targets, or nightly +
#   rust-src where a target has no prebuilt std), cargo-dist (cargo-dist-version in
#   REPO/dist-workspace.toml), cargo-auditable and cargo-cyclonedx. Puts pip's script
#   directories on PATH. Where the toolchain has no armv7-musl std, puts a `rustup` shim in
#   SHIMDIR first on PATH: dist runs `rustup target add` before each cross build, which
#   fails for that target there, and scripts/dist-cargo.sh builds its std instead.
#   Returns non-zero, with the reason on stderr, when something could not be set up.

# cargo-auditable: the latest release when this was written (the generated workflow installs
# its latest release too). cargo-cyclonedx: the version dist 0.34.0 installs in the workflow.
readonly DIST_AUDITABLE_VERSION=0.7.7
readonly DIST_CYCLONEDX_VERSION=0.5.5

cargo_install_pinned() {
  local crate=$1 version=$2 installed
  installed=$(cargo install --list) || return
  if grep -qxF "$crate v$version:" <<<"$installed"; then
    return 0
  fi
  echo "install: cargo install --locked $crate --version $version" >&2
  cargo install --locked --quiet "$crate" --version "$version" >&2
}

dist_tools_setup() {
  local repo=$1 shimdir=$2 dir want sysroot real_rustup
  shift 2
  "$repo/scripts/build-target.sh" --setup "$@" || return
  # pip put cargo-zigbuild here (see build-target.sh); this shell needs it on PATH too.
  for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
    "$(python3 -m site --user-base)/bin"; do
    case ":$PATH:" in *":$dir:"*) ;; *) export PATH="$PATH:$dir" ;; esac
  done

  want=$(sed -n 's/^cargo-dist-version *= *"\(.*\)"/\1/p' "$repo/dist-workspace.toml")
  if [ -z "$want" ]; then
    echo "dist-tools: no cargo-dist-version in $repo/dist-workspace.toml" >&2
    return 1
  fi
  if [ "$(dist --version 2>/dev/null)" != "cargo-dist $want" ]; then
    echo "dist-tools: compiling cargo-dist $want (about 10 minutes on 2 cores)" >&2
    cargo_install_pinned cargo-dist "$want" || return
  fi
  cargo_install_pinned cargo-auditable "$DIST_AUDITABLE_VERSION" || return
  cargo_install_pinned cargo-cyclonedx "$DIST_CYCLONEDX_VERSION" || return
  if [ "$(dist --version 2>/dev/null)" != "cargo-dist $want" ]; then
    echo "dist-tools: dist --version is not 'cargo-dist $want' after the install" >&2
    return 1
  fi

  sysroot=$(cd "$repo" && rustc --print sysroot)
  if [ ! -d "$sysroot/lib/rustlib/armv7-unknown-linux-musleabihf/lib" ]; then
    real_rustup=$(command -v rustup)
    mkdir -p "$shimdir"
    cat >"$shimdir/rustup" <<SHIM
#!/bin/sh
if [ "\$1 \$2 \$3" = "target add armv7-unknown-linux-musleabihf" ]; then exit 0; fi
exec "$real_rustup" "\$@"
SHIM
    chmod +x "$shimdir/rustup"
    case ":$PATH:" in *":$shimdir:"*) ;; *) export PATH="$shimdir:$PATH" ;; esac
    echo "dist-tools: armv7-unknown-linux-musleabihf has no prebuilt std here;" \
      "dist-cargo.sh builds it with nightly" >&2
  fi
}
