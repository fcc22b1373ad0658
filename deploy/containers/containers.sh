#!/usr/bin/env bash
# Leadline as containers with podman and no Docker engine, no registry (issue 11).
#
#   containers.sh install  apt: podman runc mmdebstrap ...; the venv: podman-compose (pinned)
#   containers.sh images   base (mmdebstrap, once), python, leadline, kafka, postgres; cached
#   containers.sh up       the compose stack in dependency order; returns when every service is healthy
#   containers.sh smoke    one order over HTTP, `confirmed` within a deadline
#   containers.sh down     remove the stack: containers, network, volumes (images stay cached)
#   containers.sh check    install, images, up, smoke; down always (make containers)
#   containers.sh ps       the stack's containers;  containers.sh logs  logs of every container
#
# Why it is not `podman-compose up`: with no systemd, podman never runs health checks by itself,
# and podman-compose 1.6 ignores `condition: service_healthy` on podman < 4.6 (Debian has 4.3).
# So each stage starts with --no-deps and this script runs `podman healthcheck run` itself.
#
# Host ports: compose's defaults (127.0.0.1:18000.., 19092, 15432) never collide with `make up`;
# override with CHECKOUT_HOST_PORT etc. COMPOSE_PROJECT_NAME separates stacks (the test uses its
# own). Secrets are random per stack, kept in .run/containers/<project>.env until `down`.
#
# LEADLINE_SECURE=1 (`make containers SECURE=1`): the secured Kafka profile on top, from
# docker-compose.secure.yml: SASL/SCRAM over TLS, a principal per service, ACLs; its passwords
# random per stack too (<project>.secure.env). The stack's `down` removes both.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/deploy/containers
PY=${LEADLINE_PYTHON:-$ROOT/.venv/bin/python}
CACHE=${LEADLINE_CACHE_DIR:-$ROOT/.cache}
STATE=$ROOT/.run/containers
# Every podman call (podman-compose's included) reads this: runc, cgroupfs, file events, ulimits.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-leadline-containers}
PROJECT=$COMPOSE_PROJECT_NAME
PODMAN_COMPOSE_VERSION=1.6.0
# The proxy's CA is lent to builds that reach the network, never copied into an image.
CA_BUNDLE=${LEADLINE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
DEADLINE=${CONTAINERS_DEADLINE:-300}   # seconds each stage may take to become healthy

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/kafka/pom.xml")
BASE_IMAGE=localhost/leadline-debian:bookworm
PYTHON_IMAGE=localhost/leadline-python:3.11
export LEADLINE_IMAGE=${LEADLINE_IMAGE:-localhost/leadline:local}
export KAFKA_IMAGE=${KAFKA_IMAGE:-localhost/leadline-kafka:$KAFKA_VERSION}
export POSTGRES_IMAGE=${POSTGRES_IMAGE:-localhost/leadline-postgres:15}
DEBIAN_MIRRORS=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)
# the order they come up in; one-shots run to completion between the two groups
INFRA="kafka postgres"
ONESHOTS="postgres-init topics"
SERVICES="checkout inventory receipts projection orchestrator simulator"

log() { printf '[containers] %s\n' "$*" >&2; }
die() { printf '[containers] error: %s\n' "$*" >&2; exit 1; }

SECURE=${LEADLINE_SECURE:-0}
COMPOSE=("$ROOT/.venv/bin/podman-compose" -f "$ROOT/docker-compose.yml")
[ "$SECURE" = 1 ] && COMPOSE+=(-f "$ROOT/docker-compose.secure.yml")
COMPOSE+=(-p "$PROJECT")
# Container ids go to /dev/null; stderr is kept but for two known complaints: podman cannot
# reach systemd to schedule the compose file's health checks (that is why wait_healthy runs
# them), and `down` after a stage that failed half-way names containers never created.
compose() { "${COMPOSE[@]}" "$@" 2>&1 >/dev/null | known_noise >&2; }
known_noise() {
  grep -v -e 'unable to get systemd connection' -e 'failed to connect to syslog' \
    -e 'no container with name or ID' || true
}

# ---------------------------------------------------------------- install

apt_missing() {  # the packages among "$@" that dpkg does not have
  local p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done
}

install() {
  # runc, not crun: crun refuses the hybrid cgroup layout of our machines. netavark +
  # aardvark-dns: containers find each other by service name (netavark sets the network up with
  # iptables, only recommended by its package: without it every run fails "netavark: No such file
  # or directory"). catatonit: compose's `init: true`.
  local missing
  missing=$(apt_missing podman runc mmdebstrap uidmap slirp4netns fuse-overlayfs netavark iptables \
    aardvark-dns catatonit)
  if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || die "missing Debian packages (install them as root): $missing"
    log "installing from Debian: $missing"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
  fi
  if ! "$ROOT/.venv/bin/podman-compose" --version 2>/dev/null | grep -q "version $PODMAN_COMPOSE_VERSION"; then
    [ -x "$PY" ] || die "no project venv at $PY: run make setup"
    log "installing podman-compose==$PODMAN_COMPOSE_VERSION into the project venv"
    "$PY" -m pip install -q "podman-compose==$PODMAN_COMPOSE_VERSION" >&2
  fi
  preflight
}

# Containers may not raise RLIMIT_NOFILE (or NPROC) above the host's hard limit: runc then fails
# every start with "error setting rlimits ... operation not permitted". containers.conf pins
# soft = hard; refuse early, with the reason, on a host whose hard limits are lower.
preflight() {
  local want have kind
  for kind in nofile nproc; do
    want=$(sed -n "s/.*\"$kind=\([0-9]*\):.*/\1/p" "$CONTAINERS_CONF")
    if [ "$kind" = nofile ]; then have=$(ulimit -Hn); else have=$(ulimit -Hu); fi
    [ "$have" = unlimited ] || [ "$have" -ge "$want" ] \
      || die "$CONTAINERS_CONF asks for $kind=$want but this host's hard limit is $have: lower it there"
  done
  [ "$(podman info --format '{{.Host.OCIRuntime.Name}}')" = runc ] \
    || die "podman does not use runc with $CONTAINERS_CONF"
}

# ---------------------------------------------------------------- images

exists() { podman image exists "$1"; }

base_image() {
  if exists "$BASE_IMAGE"; then log "$BASE_IMAGE: cached"; return 0; fi
  log "$BASE_IMAGE: Debian bookworm minbase from Debian's packages (mmdebstrap, no registry)"
  mkdir -p "$CACHE/containers"
  local tar=$CACHE/containers/debian-bookworm.partial.tar
  rm -rf "$tar"
  # a file, not a pipe: a failed mmdebstrap must not leave a half-imported image behind
  mmdebstrap --variant=minbase --format=tar --quiet \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    bookworm "$tar" "${DEBIAN_MIRRORS[@]}"
  podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tar" "$BASE_IMAGE" >/dev/null
  rm -f "$tar"
}

build() {  # tag containerfile context [podman build options]
  local tag=$1 file=$2 context=$3
  shift 3
  local old out=$STATE/build-${file##*/}.log
  old=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  log "$tag: building (cached layers are reused)"
  mkdir -p "$STATE"
  podman build --layers --pull=never --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -t "$tag" -f "$file" "$@" "$context" >"$out" 2>&1 \
    || { tail -n 40 "$out" >&2; die "$tag: build failed (whole log: $out)"; }
  # the image this tag named before a rebuild is left dangling: remove it (and only it)
  if [ -n "$old" ] && [ "$old" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]; then
    podman rmi "$old" >/dev/null 2>&1 || true
  fi
}

kafka_context() {  # the official jars infra.sh runs (same pom, same cache) + kafka-tools
  local jars=$CACHE/kafka-$KAFKA_VERSION tools=$CACHE/containers/kafka-tools-$KAFKA_VERSION
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars"
  if [ ! -f "$jars/.complete" ]; then
    log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $jars"
    rm -rf "$jars.tmp"
    mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$jars.tmp" >&2
    rm -rf "$jars" && mv "$jars.tmp" "$jars" && touch "$jars/.complete"
  fi
  if [ ! -f "$tools/.complete" ]; then
    # the apache/kafka image's health probe (kafka-broker-api-versions.sh) lives in kafka-tools
    log "fetching org.apache.kafka:kafka-tools:$KAFKA_VERSION (the broker-api-versions probe)"
    rm -rf "$tools" && mkdir -p "$tools"
    mvn -q -B dependency:copy -Dartifact="org.apache.kafka:kafka-tools:$KAFKA_VERSION" \
      -DoutputDirectory="$tools" >&2
    touch "$tools/.complete"
  fi
  local ctx=$CACHE/containers/kafka-context
  rm -rf "$ctx" && mkdir -p "$ctx/libs" "$ctx/tools"
  cp -p "$jars"/*.jar "$ctx/libs/" && cp -p "$tools"/*.jar "$ctx/tools/"
  cp -p "$ROOT/deploy/kafka/log4j2.properties" "$HERE/kafka-run.sh" \
    "$HERE/kafka-broker-api-versions.sh" "$ctx/"
  echo "$ctx"
}

images() {
  base_image
  build "$PYTHON_IMAGE" "$HERE/python.Containerfile" "$HERE"
  # PyPI through the proxy: the CA bundle as a build secret, a tmpfs for the RUN steps only
  build "$LEADLINE_IMAGE" "$ROOT/deploy/Dockerfile" "$ROOT" \
    --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --secret "id=ca-bundle,src=$CA_BUNDLE"
  build "$KAFKA_IMAGE" "$HERE/kafka.Containerfile" "$(kafka_context)"
  build "$POSTGRES_IMAGE" "$HERE/postgres.Containerfile" "$HERE"
}

# ---------------------------------------------------------------- the stack

secrets() {  # the stack's secrets: random once per stack, exported for compose and smoke
  mkdir -p "$STATE"
  local file=$STATE/$PROJECT.env
  if [ ! -f "$file" ]; then
    (umask 077 && "$PY" -c 'import secrets
print("AUTH_JWT_SECRET=" + secrets.token_urlsafe(48))
print("POSTGRES_PASSWORD=" + secrets.token_urlsafe(24))' >"$file")
  fi
  if [ "$SECURE" = 1 ] && [ ! -f "$STATE/$PROJECT.secure.env" ]; then
    # the key store's password, and one per principal (KAFKA_PASSWORD_ADMIN, ..._CHECKOUT, ...)
    (umask 077 && "$PY" -c 'import secrets
from shared.kafka.acls import PRINCIPALS, password_variable
print("KAFKA_KEYSTORE_PASSWORD=" + secrets.token_urlsafe(24))
for name in ("admin", "broker", *PRINCIPALS):
    print(password_variable(name) + "=" + secrets.token_urlsafe(24))' >"$STATE/$PROJECT.secure.env")
  fi
  set -a
  # shellcheck disable=SC1090
  . "$file"
  # shellcheck disable=SC1090
  [ "$SECURE" != 1 ] || . "$STATE/$PROJECT.secure.env"
  set +a
}

container() {  # service -> its container's name ('' when there is none)
  podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n1
}

state() { podman inspect --format '{{.State.Status}}' "$1" 2>/dev/null || echo missing; }

dump() {  # the last lines of a container's log, for the reader of a failure
  printf '\n----- %s (%s) -----\n' "$1" "$(state "$1")" >&2
  podman logs --tail 60 "$1" >&2 2>&1 || true
}

wait_healthy() {  # services...: poll their health checks together until all pass, or fail
  local end=$((SECONDS + DEADLINE)) pending=("$@") waiting broken svc ctr
  while [ ${#pending[@]} -gt 0 ]; do
    waiting=() broken=()
    for svc in "${pending[@]}"; do
      ctr=$(container "$svc")
      if [ -n "$ctr" ] && podman healthcheck run "$ctr" >/dev/null 2>&1; then
        log "$svc: healthy"
        continue
      fi
      case $(state "$ctr") in
        running | created | initialized | starting) waiting+=("$svc") ;;
        *) broken+=("$svc") ;;
      esac
    done
    pending=("${waiting[@]}")
    if [ ${#broken[@]} -gt 0 ] || { [ ${#pending[@]} -gt 0 ] && [ "$SECONDS" -ge "$end" ]; }; then
      for svc in "${broken[@]}" "${pending[@]}"; do dump "$(container "$svc")"; done
      die "not healthy within ${DEADLINE}s: ${broken[*]} ${pending[*]}"
    fi
    [ ${#pending[@]} -eq 0 ] || sleep 1
  done
}

wait_completed() {  # one-shot services...: each must exit 0
  local svc ctr code
  for svc in "$@"; do
    ctr=$(container "$svc")
    [ -n "$ctr" ] || die "$svc: no container"
    code=$(timeout "$DEADLINE" podman wait "$ctr") || { dump "$ctr"; die "$svc: did not finish"; }
    [ "$code" = 0 ] || { dump "$ctr"; die "$svc: exited with $code"; }
    log "$svc: completed"
  done
}

up() {
  secrets
  for image in "$LEADLINE_IMAGE" "$KAFKA_IMAGE" "$POSTGRES_IMAGE"; do
    exists "$image" || die "$image is missing: run $0 images"
  done
  # shellcheck disable=SC2086
  {
    compose up -d --no-build --no-deps $INFRA
    wait_healthy $INFRA
    # one at a time: under podman 4.3 a container's name lookups can go unanswered for ~40 s
    # while another container of the network starts or stops (aardvark-dns 1.4 drops queries
    # while it reloads), and a one-shot has nobody to restart it
    for svc in $ONESHOTS; do
      compose up -d --no-build --no-deps "$svc"
      wait_completed "$svc"
    done
    compose up -d --no-build --no-deps $SERVICES
    wait_healthy $SERVICES
  }
  operator_env
  log "stack $PROJECT is up: checkout on http://127.0.0.1:${CHECKOUT_HOST_PORT:-18000}"
}

operator_env() {  # the `leadline` CLI's environment for this stack, from this host
  local file=$STATE/$PROJECT.operator.env ca=$STATE/$PROJECT.ca.pem svc port var
  local server=postgresql://${POSTGRES_USER:-leadline}@127.0.0.1:${POSTGRES_HOST_PORT:-15432}
  (
    umask 077
    {
      echo "KAFKA_BOOTSTRAP_SERVERS=localhost:${KAFKA_HOST_PORT:-19092}"
      echo "PGPASSWORD=$POSTGRES_PASSWORD"
      for svc in checkout:18000 inventory:18001 receipts:18002 projection:18003 \
        orchestrator:18004 simulator:18009; do
        port=${svc#*:} svc=${svc%:*} var=${svc^^}_HOST_PORT
        echo "${svc^^}_HTTP_PORT=${!var:-$port}"
        echo "${svc^^}_DATABASE_URL=$server/$svc"
      done
      if [ "$SECURE" = 1 ]; then  # the operator principal, over the host listener's TLS
        podman cp "$(container kafka):/var/lib/kafka/tls/ca.pem" "$ca"
        echo "KAFKA_SECURITY_PROTOCOL=SASL_SSL"
        echo "KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
        echo "KAFKA_SASL_USERNAME=operator"
        echo "KAFKA_SASL_PASSWORD=$KAFKA_PASSWORD_OPERATOR"
        echo "KAFKA_SSL_CAFILE=$ca"
      fi
    } >"$file"
  )
  log "the leadline CLI against this stack: set -a; . $file; set +a"
}

smoke() {
  secrets
  "$PY" "$HERE/smoke.py" --checkout "http://127.0.0.1:${CHECKOUT_HOST_PORT:-18000}" \
    --timeout "${SMOKE_DEADLINE:-120}"
}

down() {
  if [ -x "$ROOT/.venv/bin/podman-compose" ] && [ -n "$(ours)" ]; then
    log "removing stack $PROJECT (containers, network, volumes)"
    # podman-compose stops every container at once; the services' graceful shutdown (leave
    # the group, flush the producer, commit) needs Kafka and PostgreSQL, so they stop first
    local group svc names
    for group in "$SERVICES" "$INFRA"; do
      names=$(for svc in $group; do container "$svc"; done)
      # shellcheck disable=SC2086
      [ -z "$names" ] || podman stop -t 15 $names 2>&1 >/dev/null | known_noise >&2
    done
    # compose interpolates the whole file first; the secrets' values do not matter to `down`
    # shellcheck disable=SC2046  # one KEY=unused word per secret the secured profile names
    env AUTH_JWT_SECRET="${AUTH_JWT_SECRET:-unused}" POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-unused}" \
      $(sed -n 's/.*\${\(KAFKA_[A-Z_]*\):?.*/\1=unused/p' "$ROOT/docker-compose.secure.yml" | sort -u) \
      "${COMPOSE[@]}" down -v -t 15 2>&1 >/dev/null | known_noise >&2 || true
  fi
  # whatever compose missed (a container created outside a stage that failed half-way)
  local left
  left=$(ours)
  # shellcheck disable=SC2086
  [ -z "$left" ] || podman rm -f -t 5 $left 2>&1 >/dev/null | known_noise >&2
  podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman volume rm -f >/dev/null
  podman network ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman network rm -f >/dev/null
  rm -f "$STATE/$PROJECT".{env,secure.env,operator.env,ca.pem}
}

ours() { podman ps -aq --filter "label=io.podman.compose.project=$PROJECT"; }

logs() {
  local ctr
  for ctr in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'); do
    dump "$ctr"
  done
}

check() {
  install
  local started=$SECONDS
  images
  log "images ready in $((SECONDS - started))s"
  down
  trap 'down' EXIT
  up
  smoke
  log "end to end in $((SECONDS - started))s"
}

main() {
  case "${1:-}" in
    install) install ;;
    images) preflight && images ;;
    up) up ;;
    smoke) smoke ;;
    down) down ;;
    check) check ;;
    ps) podman ps -a --filter "label=io.podman.compose.project=$PROJECT" ;;
    logs) logs ;;
    *) echo "usage: $0 install|images|up|smoke|down|check|ps|logs" >&2; exit 2 ;;
  esac
}

# one line, parsed whole before it runs: editing this file never disturbs a running stage
main "$@"; exit
