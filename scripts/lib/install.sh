# shellcheck shell=bash
# Installing what a check script needs, in one place (sourced, not run).
#
# apt_install [--no-recommends] PACKAGE...
#   Debian packages, non-interactive, as root (sudo when not root), waiting up to 10 min
#   for a dpkg lock another process holds; `apt-get update` runs once per process.
#   Progress is discarded; apt's errors still reach stderr.
# pip_install ARG...
#   `pip install -q` for root, also on Pythons marked externally managed.
# apt_missing PACKAGE...
#   Prints (one line, space separated) the packages dpkg does not have installed.
# apt_install_no_start [--no-recommends] PACKAGE...
#   apt_install for packages that ship a service (prometheus, nginx, ...): while it runs, a
#   policy-rc.d that answers 101 keeps invoke-rc.d and deb-systemd-invoke from starting
#   anything, so the install leaves no system-wide daemon behind. An existing
#   /usr/sbin/policy-rc.d is left alone (and decides); the temporary one is removed again.

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
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || return
    _vrypt_apt_updated=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${extra[@]}" "$@" >/dev/null
}

pip_install() {
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@" >/dev/null 2>&1 ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@" >/dev/null
}

apt_missing() {
  local pkg missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  echo "${missing[*]}"
}

apt_install_no_start() {
  local sudo=() policy=/usr/sbin/policy-rc.d ours=0 rc=0
  ((EUID == 0)) || sudo=(sudo)
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# Temporary, from vrypt-server scripts/lib/install.sh: start no service.\nexit 101\n' |
      "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    ours=1
  fi
  apt_install "$@" || rc=$?
  if ((ours)); then "${sudo[@]}" rm -f "$policy"; fi
  return "$rc"
}
