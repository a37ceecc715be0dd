# shellcheck shell=bash
# The vrypt-server binary a check script runs (sourced, not run).
#
# vrypt_bin
#   Prints the binary's path: $VRYPT_BIN when set, else it builds the release binary
#   (`cargo build --release --locked`, build output on stderr) and prints this workspace's
#   target/release/vrypt-server. Returns non-zero when the build fails or no executable is there.
vrypt_bin() {
  local bin target
  if [ -n "${VRYPT_BIN:-}" ]; then
    bin=$VRYPT_BIN
  else
    cargo build --release --locked --quiet >&2 || return
    target=$(cargo metadata --format-version 1 --no-deps |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') || return
    bin=$target/release/vrypt-server
  fi
  if [ ! -x "$bin" ]; then
    echo "no vrypt-server binary at $bin" >&2
    return 1
  fi
  echo "$bin"
}
