# shellcheck shell=bash
# Installing what a check script needs, in one place (sourced, not run).
#
# apt_install [--no-recommends] PACKAGE...
#   Debian packages, non-interactive, as root (sudo when not root), waiting up to 10 min
#   for a dpkg lock another process holds; `apt-get update` runs once per process.
#   Progress is discarded; apt's errors still reach stderr.
# pip_install ARG...
#   `pip install -q` for root, also on Pythons marked externally managed.

_vrypt_apt_updated=0
apt_install() {
  local sudo=() extra=()
  ((EUID == 0)) || sudo=(sudo)
  if [ "${1:-}" = --no-recommends ]; then
    extra=(--no-install-recommends)
    shift
  fi
  echo "install: apt-get install $*" >&2
  if ((_vrypt_apt_updated == 0)); then
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    _vrypt_apt_updated=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${extra[@]}" "$@" >/dev/null
}

pip_install() {
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@" >/dev/null 2>&1 ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@" >/dev/null
}
