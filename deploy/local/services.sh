#!/usr/bin/env bash
# Start, stop and follow Leadline's services as background processes on a bare machine.
#
#   services.sh up       start every service that exists, return when each answers /health/ready
#   services.sh down     stop what this script started
#   services.sh status   what runs where
#   services.sh run      follow the logs; Ctrl-C stops everything (make run)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN=${LEADLINE_RUN_DIR:-$ROOT/.run}
PY=${LEADLINE_PYTHON:-$ROOT/.venv/bin/python}
PG_PORT=${PG_PORT:-5433}
# name:port — the fixed, documented ports of each service's HTTP (health, metrics, API).
SERVICES=${LEADLINE_SERVICES:-"checkout:8000 inventory:8001 receipts:8002 projection:8003 orchestrator:8004 simulator:8009"}

log() { printf '[services] %s\n' "$*" >&2; }
# shellcheck source=deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"  # pid_running, alive (zombies count as stopped)

module_of() {  # name -> the module `python -m` runs: services.<name>, unless listed here
  case "$1" in
    simulator) echo simulators.payment_provider ;;  # an upstream stand-in, not a service
    *) echo "services.$1" ;;
  esac
}

present() {  # name:port pairs whose module has been written
  local s
  for s in $SERVICES; do
    [ -f "$ROOT/$(module_of "${s%%:*}" | tr . /)/__main__.py" ] && echo "$s"
  done
  return 0
}

wait_ready() {  # name port pidfile
  local i
  for i in $(seq 1 120); do
    alive "$3" || { tail -n 30 "$RUN/logs/$1.log" >&2; log "$1 exited during start-up"; return 1; }
    "$PY" - "$2" <<'PYEOF' && return 0
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health/ready", timeout=2)
except Exception:
    sys.exit(1)
PYEOF
    sleep 0.5
  done
  log "$1 did not become ready on port $2"; return 1
}

up() {
  mkdir -p "$RUN/pids" "$RUN/logs"
  local s name port pid
  for s in $(present); do
    name=${s%%:*}; port=${s##*:}; pid=$RUN/pids/$name.pid
    if alive "$pid"; then log "$name already running (pid $(cat "$pid"))"; continue; fi
    log "starting $name on 127.0.0.1:$port"
    local upper; upper=$(echo "$name" | tr a-z A-Z)
    env "LEADLINE_ENV=${LEADLINE_ENV:-local}" "${upper}_HTTP_PORT=$port" \
        "${upper}_DATABASE_URL=postgresql://leadline:leadline@127.0.0.1:$PG_PORT/$name" \
        setsid nohup "$PY" -m "$(module_of "$name")" >>"$RUN/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$pid"
  done
  for s in $(present); do
    name=${s%%:*}; port=${s##*:}
    wait_ready "$name" "$port" "$RUN/pids/$name.pid"
  done
}

down() {
  local f pid
  for f in "$RUN"/pids/*.pid; do
    [ -e "$f" ] || continue
    case "$(basename "$f")" in kafka.pid) continue ;; esac
    if alive "$f"; then
      pid=$(cat "$f"); log "stopping $(basename "$f" .pid) (pid $pid)"
      kill -TERM "$pid"
      for _ in $(seq 1 40); do pid_running "$pid" || break; sleep 0.25; done
      pid_running "$pid" && kill -KILL "$pid"
    fi
    rm -f "$f"
  done
}

status() {
  local s name port
  for s in $(present); do
    name=${s%%:*}; port=${s##*:}
    if alive "$RUN/pids/$name.pid"; then
      printf '%-10s running  http://127.0.0.1:%s  (health: /health/ready, metrics: /metrics)\n' "$name" "$port"
    else printf '%-10s stopped\n' "$name"; fi
  done
}

run() {
  status
  echo
  echo "Checkout HTTP entry point: http://127.0.0.1:8000  (OpenAPI: http://127.0.0.1:8000/docs)"
  echo "Following logs under $RUN/logs — Ctrl-C stops everything."
  tail -n 20 -F "$RUN"/logs/*.log &
  FOLLOWER=$!
  # ignore further signals (and a closed pipe, e.g. `make run | tee`) while stopping everything
  trap 'trap "" INT TERM PIPE; kill "$FOLLOWER" 2>/dev/null; echo; make -C "$ROOT" down; exit 0' INT TERM
  wait
}

case "${1:-}" in
  up) up ;; down) down ;; status) status ;; run) run ;;
  *) echo "usage: $0 up|down|status|run" >&2; exit 2 ;;
esac
