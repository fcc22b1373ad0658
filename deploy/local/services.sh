#!/usr/bin/env bash
# Start, stop and follow Leadline's services as background processes on a bare machine.
#
#   services.sh up       start every service that exists, return when each answers /health/ready
#   services.sh down     stop what this script started (every instance)
#   services.sh status   what runs where
#   services.sh run      follow the logs; Ctrl-C stops everything (make run)
#
# LEADLINE_SCALE=N (default 1) runs N instances of each consumer service (checkout, inventory,
# receipts, projection, orchestrator; the simulator stays one), sharing their service's database
# and consumer group. Instance 1 keeps the plain name, port, log and pid file; instance k>1 is
# `<name>-<k>` on the k-th port listed for it in LEADLINE_SERVICES (`name:port[,port…]`), else on
# port + LEADLINE_SCALE_PORT_STEP*(k-1) (step 100: checkout-2 on 8100), with its own log and pid
# file, and an orchestrator of its own ORCHESTRATOR_DATA_DIR ($RUN/orchestrator-<k>). `up` with
# a smaller scale stops the instances beyond it.
#
# $RUN/kafka.env (written by infra.sh: KAFKA_BOOTSTRAP_SERVERS, KAFKA_REPLICATION_FACTOR,
# KAFKA_MIN_INSYNC_REPLICAS) points every service at the cluster that runs. A <NAME>_DATABASE_URL
# already in the environment is kept; LEADLINE_TOPIC_PREFIX and the rest are inherited. On the
# secured profile (`make up SECURE=1`) it also names KAFKA_SECURITY_PROTOCOL, the CA file and
# LEADLINE_KAFKA_CREDENTIALS, where each service finds its own principal's password: every
# service connects as itself (KAFKA_SASL_USERNAME), the simulator as the payment provider.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN=${LEADLINE_RUN_DIR:-$ROOT/.run}
PY=${LEADLINE_PYTHON:-$ROOT/.venv/bin/python}
PG_PORT=${PG_PORT:-5433}
# name:port — the fixed, documented ports of each service's HTTP (health, metrics, API).
SERVICES=${LEADLINE_SERVICES:-"checkout:8000 inventory:8001 receipts:8002 projection:8003 orchestrator:8004 simulator:8009"}
SCALE=${LEADLINE_SCALE:-1}
PORT_STEP=${LEADLINE_SCALE_PORT_STEP:-100}
SCALABLE=" checkout inventory receipts projection orchestrator "

log() { printf '[services] %s\n' "$*" >&2; }
# shellcheck source=deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"  # pid_running, alive (zombies count as stopped)

case "$SCALE" in ''|*[!0-9]*|0) log "LEADLINE_SCALE must be a positive number, not '$SCALE'"; exit 2 ;; esac
case "$PORT_STEP" in ''|*[!0-9]*) log "LEADLINE_SCALE_PORT_STEP must be a number"; exit 2 ;; esac

if [ -f "$RUN/kafka.env" ]; then  # the cluster infra.sh runs, whatever the shell says
  # a secured cluster's kafka.env sets these; a plaintext one's must not inherit the shell's
  unset KAFKA_SECURITY_PROTOCOL KAFKA_SASL_MECHANISM KAFKA_SSL_CAFILE LEADLINE_KAFKA_CREDENTIALS
  set -a
  # shellcheck source=/dev/null
  . "$RUN/kafka.env"
  set +a
fi
CREDENTIALS_DIR=${LEADLINE_KAFKA_CREDENTIALS:-}

module_of() {  # name -> the module `python -m` runs: services.<name>, unless listed here
  case "$1" in
    simulator) echo simulators.payment_provider ;;  # an upstream stand-in, not a service
    *) echo "services.$1" ;;
  esac
}

present() {  # name:ports entries whose module has been written
  local s
  for s in $SERVICES; do
    [ -f "$ROOT/$(module_of "${s%%:*}" | tr . /)/__main__.py" ] && echo "$s"
  done
  return 0
}

scalable() { case "$SCALABLE" in *" $1 "*) return 0 ;; esac; return 1; }

principal_of() {  # name -> its Kafka principal on the secured profile (shared/kafka/acls.py)
  case "$1" in
    simulator) echo payment-provider ;;  # it plays the upstream provider, with its rights only
    *) echo "$1" ;;
  esac
}

# Exports service $1's own principal when the broker is secured (in the subshell that starts
# it: the password goes into its environment, never onto a command line `ps` shows).
export_identity() {
  unset LEADLINE_KAFKA_CREDENTIALS KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD
  [ "${KAFKA_SECURITY_PROTOCOL:-PLAINTEXT}" = SASL_SSL ] || return 0
  local who file
  who=$(principal_of "$1"); file=$CREDENTIALS_DIR/$who
  [ -s "$file" ] || { log "no Kafka credentials for $who in '$CREDENTIALS_DIR': run 'make up SECURE=1'"; return 1; }
  export KAFKA_SASL_USERNAME=$who
  KAFKA_SASL_PASSWORD=$(cat "$file") && export KAFKA_SASL_PASSWORD
}

instances() {  # "<instance> <service> <k> <port>" for every instance LEADLINE_SCALE asks for
  local s name ports k port n
  for s in $(present); do
    name=${s%%:*}; IFS=, read -ra ports <<<"${s#*:}"
    n=1; if scalable "$name"; then n=$SCALE; fi
    for k in $(seq 1 "$n"); do
      port=${ports[k - 1]:-$((ports[0] + PORT_STEP * (k - 1)))}
      if [ "$k" = 1 ]; then echo "$name $name 1 $port"; else echo "$name-$k $name $k $port"; fi
    done
  done
}

service_pidfiles() {  # every pid file of a service instance under $RUN (never infra's)
  local f base s
  for f in "$RUN"/pids/*.pid; do
    [ -e "$f" ] || continue
    base=$(basename "$f" .pid)
    for s in $(present); do
      case "$base" in "${s%%:*}" | "${s%%:*}"-[0-9]*) echo "$f"; break ;; esac
    done
  done
  return 0
}

wanted() {  # instance name -> is it one LEADLINE_SCALE asks for
  local inst rest
  while read -r inst rest; do [ "$inst" = "$1" ] && return 0; done < <(instances)
  return 1
}

wait_ready() {  # name port pidfile
  for _ in $(seq 1 120); do
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

stop_pidfile() {  # pidfile: TERM, then KILL after 10 s; the pid file goes either way
  local pid
  if alive "$1"; then
    pid=$(cat "$1"); log "stopping $(basename "$1" .pid) (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 40); do pid_running "$pid" || break; sleep 0.25; done
    pid_running "$pid" && kill -KILL "$pid"
  fi
  rm -f "$1"
}

up() {
  mkdir -p "$RUN/pids" "$RUN/logs"
  local f inst name k port pid upper dburl
  for f in $(service_pidfiles); do  # scaled down since the last `up`
    inst=$(basename "$f" .pid)
    wanted "$inst" || { log "$inst is beyond LEADLINE_SCALE=$SCALE"; stop_pidfile "$f"; }
  done
  while read -r inst name k port; do
    pid=$RUN/pids/$inst.pid
    if alive "$pid"; then log "$inst already running (pid $(cat "$pid"))"; continue; fi
    log "starting $inst on 127.0.0.1:$port"
    upper=$(echo "$name" | tr "[:lower:]" "[:upper:]")
    dburl=${upper}_DATABASE_URL
    local extra=()
    # instance 1 keeps whatever data dir it had; each further one needs its own (datadir.py)
    [ "$name" = orchestrator ] && [ "$k" != 1 ] && extra+=("ORCHESTRATOR_DATA_DIR=$RUN/orchestrator-$k")
    (export_identity "$name" || exit 1
     exec env "LEADLINE_ENV=${LEADLINE_ENV:-local}" "${upper}_HTTP_PORT=$port" \
        "$dburl=${!dburl:-postgresql://leadline:leadline@127.0.0.1:$PG_PORT/$name}" \
        ${extra[@]+"${extra[@]}"} \
        setsid nohup "$PY" -m "$(module_of "$name")" >>"$RUN/logs/$inst.log" 2>&1 </dev/null) &
    echo $! >"$pid"
  done < <(instances)
  while read -r inst name k port; do
    wait_ready "$inst" "$port" "$RUN/pids/$inst.pid"
  done < <(instances)
}

down() {
  local f
  for f in $(service_pidfiles); do stop_pidfile "$f"; done
}

status() {
  local inst name k port f
  while read -r inst name k port; do
    if alive "$RUN/pids/$inst.pid"; then
      printf '%-16s running  http://127.0.0.1:%s  (health: /health/ready, metrics: /metrics)\n' "$inst" "$port"
    else printf '%-16s stopped\n' "$inst"; fi
  done < <(instances)
  for f in $(service_pidfiles); do  # started by an `up` with a larger LEADLINE_SCALE
    inst=$(basename "$f" .pid)
    if ! wanted "$inst" && alive "$f"; then
      printf '%-16s running  (pid %s; beyond LEADLINE_SCALE=%s: "up" stops it, "down" too)\n' "$inst" "$(cat "$f")" "$SCALE"
    fi
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
