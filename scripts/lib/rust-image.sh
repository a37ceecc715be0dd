# shellcheck shell=bash
# The base image of the Dockerfile's from-source builder stage, on a machine without a
# registry (sourced, not run). Needs scripts/lib/install.sh, a working rootful Podman
# (scripts/podman-setup.sh), rustup and cargo.
#
# rust_builder_image REPO_DIR
#   Makes sure an image for the `build` stage is in Podman's local storage, so that
#   `podman build` and `docker compose build` run the real from-source path with no pull:
#   docker.io/library/rust:<version>-slim-bookworm, <version> being the tag of the Dockerfile's
#   ARG RUST_IMAGE (which pins that tag by digest, and a digest cannot be had without a
#   registry): callers pass `--build-arg RUST_IMAGE=$RUST_BUILDER_IMAGE`.
#   - When that image is already there (pulled on a machine that has a registry), it is used
#     as it is.
#   - Otherwise a stand-in is tagged with that name: Debian 12 from the Debian mirror
#     (mmdebstrap, with gcc, libc6-dev and ca-certificates: what the official image adds to
#     debian:bookworm-slim), this machine's rustup and its Rust toolchain of that version (host
#     and x86_64 musl std, no docs) under /usr/local/{rustup,cargo} with the official image's
#     environment, and the crates of Cargo.lock vendored with a source replacement in
#     $CARGO_HOME/config.toml, so the build needs no network at all.
#     The Debian + toolchain part is kept as localhost/vrypt-rust-standin:<rustc version>
#     (the root filesystem tarball is cached in ~/.cache/vrypt-rust-standin); the vendored
#     crates are added on every call, as Cargo.lock may have changed.
#   Sets RUST_BUILDER_IMAGE (the name) and RUST_BUILDER_STANDIN (1 when the stand-in was
#   tagged, 0 when the real image is used). Logs go to stderr; returns non-zero on failure.
#   The stand-in holds the standard libraries this machine's toolchain has (at least x86_64
#   musl); the checks build linux/amd64 with it.
# rust_builder_image_cleanup
#   Removes the official name from the stand-in again (the stand-in itself stays cached).

RUST_BUILDER_IMAGE=""
RUST_BUILDER_STANDIN=0

_rust_image_log() { echo "rust-image: $*" >&2; }

rust_builder_image() {
  local repo=$1 version ver toolchain tc sysroot base cache work
  version=$(sed -n 's|^ARG RUST_IMAGE=docker.io/library/rust:\([0-9.]*\)-slim-bookworm@sha256:[0-9a-f]*$|\1|p' \
    "$repo/Dockerfile" | head -n 1)
  [ -n "$version" ] || {
    _rust_image_log "no ARG RUST_IMAGE=docker.io/library/rust:<version>-slim-bookworm@sha256:<digest> in $repo/Dockerfile"
    return 1
  }
  RUST_BUILDER_IMAGE=docker.io/library/rust:$version-slim-bookworm
  if podman image exists "$RUST_BUILDER_IMAGE" &&
    [ "$(podman image inspect --format '{{index .Labels "org.vrypt.standin"}}' "$RUST_BUILDER_IMAGE")" != true ]; then
    _rust_image_log "using $RUST_BUILDER_IMAGE from local storage"
    return 0
  fi

  # This machine's toolchain for that version (1.95 would mean any 1.95.x), with the musl std.
  ver=$(cd "$repo" && rustc --version | awk '{print $2}')
  case "$ver" in
    "$version" | "$version".*) toolchain=$(cd "$repo" && rustup show active-toolchain | awk '{print $1}') ;;
    *)
      _rust_image_log "rustup toolchain install $version (the active rustc is $ver)"
      rustup toolchain install "$version" --profile minimal >&2 || return
      toolchain=$version
      ver=$(rustup run "$toolchain" rustc --version | awk '{print $2}')
      ;;
  esac
  sysroot=$(rustup run "$toolchain" rustc --print sysroot) || return
  if [ ! -d "$sysroot/lib/rustlib/x86_64-unknown-linux-musl/lib" ]; then
    _rust_image_log "rustup target add --toolchain $toolchain x86_64-unknown-linux-musl"
    rustup target add --toolchain "$toolchain" x86_64-unknown-linux-musl >&2 || return
  fi
  tc=$ver-x86_64-unknown-linux-gnu
  base=localhost/vrypt-rust-standin:$ver

  work=$(mktemp -d /tmp/vrypt-rust-image.XXXXXX)
  if ! podman image exists "$base"; then
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/vrypt-rust-standin
    if [ ! -s "$cache/bookworm-gcc.tar" ]; then
      if ! command -v mmdebstrap >/dev/null 2>&1 && ! apt_install --no-recommends mmdebstrap; then
        _rust_image_log "installing mmdebstrap failed"
        rm -rf "$work"
        return 1
      fi
      mkdir -p "$cache"
      _rust_image_log "mmdebstrap bookworm (gcc libc6-dev ca-certificates) -> $cache/bookworm-gcc.tar"
      # (mmdebstrap picks the output format from the file name: keep .tar at the end.)
      if mmdebstrap --quiet --format=tar --variant=apt --include=gcc,libc6-dev,ca-certificates \
        bookworm "$cache/bookworm-gcc.part.tar" >&2; then
        mv "$cache/bookworm-gcc.part.tar" "$cache/bookworm-gcc.tar"
      else
        rm -rf "$cache/bookworm-gcc.part.tar"
        _rust_image_log "mmdebstrap failed"
        rm -rf "$work"
        return 1
      fi
    fi
    mkdir -p "$work/base/usr/local/rustup/toolchains/$tc" "$work/base/usr/local/cargo/bin"
    # Hard links where /tmp and the toolchain share a file system (no 600 MB copy), else copies.
    for d in bin lib libexec etc; do
      [ -d "$sysroot/$d" ] || continue
      cp -al "$sysroot/$d" "$work/base/usr/local/rustup/toolchains/$tc/" 2>/dev/null ||
        cp -a "$sysroot/$d" "$work/base/usr/local/rustup/toolchains/$tc/"
    done
    cp "$(command -v rustup)" "$work/base/usr/local/cargo/bin/rustup"
    for p in cargo rustc rustdoc; do ln -s rustup "$work/base/usr/local/cargo/bin/$p"; done
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n\n[overrides]\n' \
      "$tc" >"$work/base/usr/local/rustup/settings.toml"
    cat >"$work/base/Containerfile" <<EOF
FROM localhost/vrypt-rust-standin:rootfs-$ver
COPY usr/local/ /usr/local/
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo RUST_VERSION=$ver \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.vrypt.standin=true \\
      org.vrypt.standin.description="local stand-in for rust:$version-slim-bookworm (scripts/lib/rust-image.sh)"
EOF
    _rust_image_log "building $base (Debian 12 + rustc $ver)"
    if ! podman import -q "$cache/bookworm-gcc.tar" "localhost/vrypt-rust-standin:rootfs-$ver" >/dev/null ||
      ! podman build -q --layers=false -t "$base" "$work/base" >/dev/null; then
      podman rmi "localhost/vrypt-rust-standin:rootfs-$ver" >/dev/null 2>&1
      _rust_image_log "building $base failed"
      rm -rf "$work"
      return 1
    fi
    podman rmi "localhost/vrypt-rust-standin:rootfs-$ver" >/dev/null
  fi

  # The crates of this Cargo.lock, vendored, and cargo told to take them from there.
  mkdir -p "$work/vendor"
  if ! (cd "$repo" && cargo vendor --locked --versioned-dirs "$work/vendor/vendor" >/dev/null 2>"$work/vendor.log"); then
    _rust_image_log "cargo vendor failed: $(tail -n 3 "$work/vendor.log")"
    rm -rf "$work"
    return 1
  fi
  printf '[source.crates-io]\nreplace-with = "vendored"\n\n[source.vendored]\ndirectory = "/usr/local/cargo/vendor"\n' \
    >"$work/vendor/config.toml"
  cat >"$work/vendor/Containerfile" <<EOF
FROM $base
COPY vendor/ /usr/local/cargo/vendor/
COPY config.toml /usr/local/cargo/config.toml
EOF
  # A stand-in layer left from an earlier run: drop the name, or the old image would linger
  # untagged (it goes too when no build cache still uses it).
  if podman image exists "$RUST_BUILDER_IMAGE"; then
    podman rmi "$RUST_BUILDER_IMAGE" >/dev/null 2>&1 || podman untag "$RUST_BUILDER_IMAGE" "$RUST_BUILDER_IMAGE"
  fi
  if ! podman build -q --layers=false -t "$RUST_BUILDER_IMAGE" "$work/vendor" >/dev/null; then
    _rust_image_log "adding the vendored crates to $base failed"
    rm -rf "$work"
    return 1
  fi
  rm -rf "$work"
  RUST_BUILDER_STANDIN=1
  _rust_image_log "tagged the stand-in as $RUST_BUILDER_IMAGE ($base + vendored crates)"
}

rust_builder_image_cleanup() {
  if ((RUST_BUILDER_STANDIN)) && [ -n "$RUST_BUILDER_IMAGE" ]; then
    # Only the per-run layer carries this name; removing it leaves the cached stand-in. When
    # intermediate build images still depend on it, at least the official name goes.
    podman rmi "$RUST_BUILDER_IMAGE" >/dev/null 2>&1 ||
      podman untag "$RUST_BUILDER_IMAGE" "$RUST_BUILDER_IMAGE" >/dev/null 2>&1 || true
    RUST_BUILDER_STANDIN=0
  fi
}
