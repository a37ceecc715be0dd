# shellcheck shell=bash
# The eight release targets, as dist-workspace.toml lists them (release-check.sh fails when
# `dist plan` disagrees). Sourced by the build, release and reproducibility scripts.
# shellcheck disable=SC2034  # used by the scripts that source this file
readonly RELEASE_TARGETS=(
  x86_64-unknown-linux-gnu x86_64-unknown-linux-musl
  i686-unknown-linux-gnu i686-unknown-linux-musl
  aarch64-unknown-linux-gnu aarch64-unknown-linux-musl
  armv7-unknown-linux-gnueabihf armv7-unknown-linux-musleabihf
)
