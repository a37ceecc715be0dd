# vrypt-server container image: one static musl binary on an empty (scratch) filesystem.
#
# Two ways to get the binary in, picked with the stage to build:
#
#   docker build .                       the default (last) stage, `source`: compile from this
#                                        checkout in a builder stage
#   docker build --target prebuilt .     copy dist/<arch>/vrypt-server, e.g. the release
#                                        binaries (the release workflow does this)
#
# Multi-arch: linux/amd64, linux/386, linux/arm64, linux/arm/v7, e.g.
#   docker buildx build --platform linux/amd64,linux/386,linux/arm64,linux/arm/v7 .
# The builder always runs on the build machine's own platform and cross-compiles to the
# target's musl triple, so no CPU emulation is involved in compiling.
#
# Prebuilt layout (--target prebuilt), one directory per platform, named TARGETARCH+TARGETVARIANT:
#   dist/amd64/vrypt-server   dist/386/vrypt-server   dist/arm64/vrypt-server   dist/armv7/vrypt-server
#
# Why stages and not `FROM ${BINARY}`: Buildah (Podman, and `docker compose build` against
# Podman) does not resolve a stage name given through an ARG and tries to pull it as an image
# (docker.io/library/source). Each way in is a named stage instead; BuildKit and Buildah both
# build only the stages the selected one needs. `prebuilt` comes before the builder stage, so
# `--target prebuilt` never reaches the rust image, even with a builder that builds every
# stage up to the target.

# The builder image: rust:1.95.0-slim-bookworm (its multi-arch index), pinned by digest.
# Change tag and digest together (`docker buildx imagetools inspect rust:<tag>` prints the
# digest) and keep the version equal to rust-toolchain.toml's channel: .ci/run's lint stage
# checks both. Checks on a machine without a registry pass --build-arg RUST_IMAGE=<local
# stand-in> (scripts/lib/rust-image.sh). The prebuilt path never uses it.
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082


# ---- runtime: what both ways in share ----------------------------------------------------------
FROM scratch AS runtime
# CI passes the release version and docker/metadata-action adds revision and created labels.
ARG VERSION=dev
LABEL org.opencontainers.image.title="vrypt-server" \
      org.opencontainers.image.description="Tiny, very fast HTTP/1.1 static responder for Linux" \
      org.opencontainers.image.url="https://github.com/vrypt/vrypt-server" \
      org.opencontainers.image.source="https://github.com/vrypt/vrypt-server" \
      org.opencontainers.image.documentation="https://github.com/vrypt/vrypt-server#readme" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="vrypt" \
      org.opencontainers.image.version="${VERSION}"
# Numeric ids, so runtimes can check runAsNonRoot without an /etc/passwd (there is none).
USER 65532:65532
# The admin listener (/healthz, /readyz, /metrics) on its own port: it answers 200 whatever
# --status/--body the serving port is configured with, and --max-connections does not apply.
ENV VRYPT_ADMIN_LISTEN=[::]:9901
EXPOSE 8080 9901
# The binary is PID 1: it handles SIGTERM itself (graceful drain, exit 0), so no init is needed.
# The health check is the same binary. With VRYPT_ADMIN_LISTEN set (above) it GETs
# http://127.0.0.1:9901/healthz, so a `--status 404` default backend or a `--status 503`
# maintenance page is healthy too; it gives up after 2 s, before the runtime's 3 s timeout.
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s --retries=3 \
  CMD ["/vrypt-server", "healthcheck", "--timeout", "2s"]
ENTRYPOINT ["/vrypt-server"]


# ---- prebuilt: the release binaries ------------------------------------------------------------
FROM runtime AS prebuilt
ARG TARGETARCH
ARG TARGETVARIANT
COPY dist/${TARGETARCH}${TARGETVARIANT}/vrypt-server /vrypt-server


# ---- builder: cross-compile on the build platform ----------------------------------------------
FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
ARG TARGETPLATFORM
WORKDIR /src
# Map the platform to its musl triple and install that target's standard library. Rust's musl
# targets ship musl's crt objects and libc.a ("self-contained"), so the bundled rust-lld links a
# fully static binary without any C cross toolchain (the crate has no C code).
RUN case "${TARGETPLATFORM}" in \
      linux/amd64)  triple=x86_64-unknown-linux-musl ;; \
      linux/386)    triple=i686-unknown-linux-musl ;; \
      linux/arm64*) triple=aarch64-unknown-linux-musl ;; \
      linux/arm/v7) triple=armv7-unknown-linux-musleabihf ;; \
      *) echo "unsupported platform: ${TARGETPLATFORM}" >&2; exit 1 ;; \
    esac \
 && echo "${triple}" >/triple \
 && rustup target add "${triple}"
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    triple="$(cat /triple)" \
 && cargo build --release --locked --target "${triple}" \
      --config "target.${triple}.linker='rust-lld'" \
      --config "target.${triple}.rustflags=['-Ctarget-feature=+crt-static','-Clink-self-contained=yes']" \
 && cp "target/${triple}/release/vrypt-server" /vrypt-server


# ---- source: the default final image, built from this checkout ---------------------------------
FROM runtime AS source
COPY --from=build /vrypt-server /vrypt-server
