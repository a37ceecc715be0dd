# shellcheck shell=bash
# Shared by scripts/container-check.sh and scripts/compose-check.sh (sourced, not run).
# Needs the caller's pass/fail functions.
#
# check_container_http LABEL URL CONTAINER TRIES
#   Waits (TRIES x 0.1 s, bounded) for URL to answer, then checks what a client of the
#   default image sees: "HTTP/1.1 200 OK", a "Server: vrypt" header and the body "Vrypt";
#   and that the container's log has the server's event=listening line.
check_container_http() {
  local label=$1 url=$2 container=$3 tries=$4 answer="" status body
  for _ in $(seq 1 "$tries"); do
    if answer=$(curl -sS -i --max-time 2 "$url" 2>/dev/null); then break; fi
    answer=""
    sleep 0.1
  done
  status=$(printf '%s' "$answer" | head -n 1 | tr -d '\r')
  body=$(printf '%s' "$answer" | tr -d '\r' | sed '1,/^$/d')
  if [[ "$status" == "HTTP/1.1 200 OK" && "$body" == Vrypt ]] &&
    printf '%s' "$answer" | grep -qi '^server: vrypt'; then
    pass "$label: GET $url -> '$status', body '$body'"
  else
    fail "$label: GET $url -> status '$status', body '$body'"
    podman logs "$container" 2>&1 | tail -n 5 | sed 's/^/    log: /'
  fi
  if podman logs "$container" 2>&1 | grep -q 'event=listening'; then
    pass "$label: log has $(podman logs "$container" 2>&1 | grep -m1 -o 'event=listening addr=[^ ]*')"
  else
    fail "$label: no event=listening log line"
  fi
}
