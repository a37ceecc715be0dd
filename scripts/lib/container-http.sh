# shellcheck shell=bash
# Shared by scripts/container-check.sh and scripts/compose-check.sh (sourced, not run).
# Needs scripts/lib/check.sh (pass, fail, wait_until) and curl.
#
# check_http LABEL URL CODE [BODY]
#   One GET of URL (2 s limit): passes when the status code is CODE and, when given, the body
#   is exactly BODY (trailing newlines aside).
# check_container_http LABEL URL CONTAINER TIMEOUT [CODE [BODY]]
#   Waits (at most TIMEOUT seconds, polling every 0.1 s) for URL to answer at all, then checks
#   what a client of the image sees: "HTTP/1.1 CODE ..." (default 200), a "Server: vrypt" header
#   and the body BODY (default "Vrypt"); and that the container's log has the server's
#   event=listening line.

# _http_fetch URL: sets http_answer (status line, headers, body; CRs removed), http_status
# (the status line), http_code and http_body. Fails when nothing came back.
_http_fetch() {
  local raw
  http_answer="" http_status="" http_code="" http_body=""
  raw=$(curl -sS -i --max-time 2 "$1" 2>/dev/null) || return 1
  http_answer=$(printf '%s' "$raw" | tr -d '\r')
  http_status=$(printf '%s\n' "$http_answer" | head -n 1)
  http_code=$(printf '%s\n' "$http_status" | awk '{print $2}')
  http_body=$(printf '%s\n' "$http_answer" | sed '1,/^$/d')
}

check_http() {
  local label=$1 url=$2 code=$3 want_body="" body_ok=1
  _http_fetch "$url" || true
  if (($# >= 4)); then
    want_body=" and body '$4'"
    [ "$http_body" = "$4" ] || body_ok=0
  fi
  if [ "$http_code" = "$code" ] && ((body_ok)); then
    pass "$label: GET $url -> '$http_status', body '$http_body'"
  else
    fail "$label: GET $url -> status '$http_status', body '$http_body' (want $code$want_body)"
  fi
}

check_container_http() {
  local label=$1 url=$2 container=$3 timeout=$4 code=${5:-200} body=${6-Vrypt}
  wait_until "$timeout" 0.1 _http_fetch "$url" || true
  if [ "$http_code" = "$code" ] && [[ "$http_status" == "HTTP/1.1 $code "* ]] &&
    [ "$http_body" = "$body" ] && printf '%s\n' "$http_answer" | grep -qi '^server: vrypt'; then
    pass "$label: GET $url -> '$http_status', body '$http_body'"
  else
    fail "$label: GET $url -> status '$http_status', body '$http_body' (want $code, '$body')"
    podman logs "$container" 2>&1 | tail -n 5 | sed 's/^/    log: /'
  fi
  if podman logs "$container" 2>&1 | grep -q 'event=listening'; then
    pass "$label: log has $(podman logs "$container" 2>&1 | grep -m1 -o 'event=listening addr=[^ ]*')"
  else
    fail "$label: no event=listening log line"
  fi
}
