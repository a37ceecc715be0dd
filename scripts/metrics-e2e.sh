#!/usr/bin/env bash
# End-to-end metrics check with the real daemons:
#   vrypt-server --statsd--> Etsy statsd (npm) --> carbon-cache (Debian) --> graphite-web /render
#
# Installs what is missing (Debian graphite-carbon, python3-whisper, graphite-web,
# nodejs/npm, starting none of their services; npm statsd@0.9.0 into a cache directory),
# builds the release binary,
# then runs two variants through scripts/metrics_e2e.py:
#   fast            statsd flushInterval 1 s, carbon retention 1s:1h,1m:7d, 5,000 requests at 1,000/s
#   graphite-statsd the graphite-statsd image's timing: flushInterval 10 s, retention 10s:6h,1m:7d,
#                   5,000 requests at 350/s (so the load spans a whole flush)
# Each variant checks the render API (json) against the requests sent and fetches a PNG chart.
# Everything listens on 127.0.0.1 free ports (never 8125); every daemon is stopped by PID.
#
# Environment: VRYPT_BIN (skip the build, use this binary), VRYPT_E2E_CACHE (npm cache dir,
# default ~/.cache/vrypt-metrics-e2e), VRYPT_E2E_ARTIFACTS (copy PNGs and daemon logs there,
# default target/metrics-e2e), VRYPT_E2E_VARIANTS (default "fast graphite-statsd").
# Runtime here: about 75 s with everything installed (+ ~60 s for the apt install, ~2 s npm).
set -euo pipefail

cd "$(dirname "$0")/.."

STATSD_VERSION=0.9.0
CACHE=${VRYPT_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vrypt-metrics-e2e}
ARTIFACTS=${VRYPT_E2E_ARTIFACTS:-target/metrics-e2e}
VARIANTS=${VRYPT_E2E_VARIANTS:-fast graphite-statsd}
START=$SECONDS

fail() {
    echo "FAIL: $*"
    exit 1
}

# shellcheck source=scripts/lib/install.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/install.sh"
# shellcheck source=scripts/lib/vrypt-bin.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/vrypt-bin.sh"

# --- Debian packages -------------------------------------------------------
read -r -a missing <<<"$(apt_missing graphite-carbon python3-whisper graphite-web python3 nodejs npm)"
# A node/npm installed some other way (nvm, tarball) is fine.
if command -v node >/dev/null && command -v npm >/dev/null; then
    filtered=()
    for pkg in "${missing[@]}"; do
        case $pkg in nodejs | npm) ;; *) filtered+=("$pkg") ;; esac
    done
    missing=("${filtered[@]}")
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "INFO: installing ${missing[*]}"
    apt_install_no_start --no-recommends "${missing[@]}"
fi
for tool in /usr/bin/python3 /usr/bin/carbon-cache node npm; do
    command -v "$tool" >/dev/null || fail "$tool is missing after the install"
done
/usr/bin/python3 -c 'import django, whisper, cairo, graphite' || fail "graphite-web's Python modules do not import"

# --- statsd from npm, pinned ------------------------------------------------
STATSD_JS=$CACHE/node_modules/statsd/stats.js
have=$(node -p "require('$CACHE/node_modules/statsd/package.json').version" 2>/dev/null || true)
if [ "$have" != "$STATSD_VERSION" ]; then
    echo "INFO: installing npm statsd@$STATSD_VERSION into $CACHE"
    mkdir -p "$CACHE"
    npm install --prefix "$CACHE" --no-audit --no-fund --omit=optional --loglevel=error \
        "statsd@$STATSD_VERSION" >/dev/null
fi
[ -f "$STATSD_JS" ] || fail "statsd $STATSD_VERSION not found at $STATSD_JS"

# --- the binary ---------------------------------------------------------------
BIN=$(vrypt_bin) || fail "no vrypt-server binary"
echo "INFO: setup took $((SECONDS - START)) s; binary $BIN"

# --- the variants -------------------------------------------------------------
status=0
for variant in $VARIANTS; do
    case $variant in
        fast) args=(--flush-ms 1000 --retention "1s:1h,1m:7d" --requests 5000 --rate 1000) ;;
        graphite-statsd) args=(--flush-ms 10000 --retention "10s:6h,1m:7d" --requests 5000 --rate 350) ;;
        *) fail "unknown variant $variant" ;;
    esac
    if ! /usr/bin/python3 scripts/metrics_e2e.py --name "$variant" --binary "$BIN" --statsd-js "$STATSD_JS" \
        --artifacts "$ARTIFACTS" "${args[@]}"; then
        status=1
    fi
done

if [ "$status" = 0 ]; then
    echo "PASS: metrics end-to-end ($VARIANTS) in $((SECONDS - START)) s; charts in $ARTIFACTS"
else
    echo "FAIL: metrics end-to-end; daemon logs in $ARTIFACTS"
fi
exit "$status"
