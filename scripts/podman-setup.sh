#!/usr/bin/env bash
# Source this file (". scripts/podman-setup.sh") to get a working rootful Podman on a
# Debian machine without a Docker engine: installs podman/buildah/runc when missing and
# points CONTAINERS_CONF at a config that uses runc + cgroupfs (crun fails on hybrid
# cgroups here) with explicit ulimits (there is no CAP_SYS_RESOURCE to raise them).
# It also mounts binfmt_misc and enables the qemu handlers so foreign-arch images run.
set -euo pipefail

need=()
for tool in podman buildah runc; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
# qemu-user-static only *recommends* binfmt-support, which brings update-binfmts: check
# each on its own, since either may be present without the other.
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v update-binfmts >/dev/null 2>&1 || need+=(binfmt-support)
if ((${#need[@]})); then
  # shellcheck source=scripts/lib/install.sh
  source "$(dirname "${BASH_SOURCE[0]}")/lib/install.sh"
  apt_install "${need[@]}"
fi

VRYPT_PODMAN_DIR=${VRYPT_PODMAN_DIR:-/tmp/vrypt-podman}
mkdir -p "$VRYPT_PODMAN_DIR"
cat >"$VRYPT_PODMAN_DIR/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$VRYPT_PODMAN_DIR/containers.conf"

# Foreign architectures: binfmt_misc is not mounted at boot on these machines. The arm64
# and arm/v7 images need their qemu handlers registered; i386 runs natively on x86_64.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for arch in aarch64 arm; do
  if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$arch" ]; then
    update-binfmts --enable "qemu-$arch"
  fi
  if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$arch" ]; then
    echo "podman-setup: the qemu-$arch binfmt handler is not registered" \
      "(/proc/sys/fs/binfmt_misc/qemu-$arch missing after update-binfmts)" >&2
    return 1 2>/dev/null || exit 1
  fi
done
