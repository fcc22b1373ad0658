#!/usr/bin/env bash
# The test suite on testcontainers, with no Docker engine: podman serves its Docker-compatible
# API on a socket, and the tests' `infra` fixture starts Kafka and PostgreSQL from the images
# `containers.sh images` builds (Maven Central's Kafka jars, Debian's PostgreSQL).
#
#   testcontainers.sh [pytest arguments]     default: tests/integration
#
# What the settings answer: Ryuk (the reaper) would be one more image from a registry, and
# testcontainers removes its containers itself on a normal exit; this machine looks like a
# container to testcontainers' detection, which would then look for a gateway podman's API
# does not describe, so the containers are reached on the host's loopback.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/containers/containers.conf}
SOCKET_DIR=${LEADLINE_PODMAN_SOCKET_DIR:-$ROOT/.run/podman}
SOCKET=$SOCKET_DIR/podman.sock

log() { printf '[testcontainers] %s\n' "$*" >&2; }

bash "$ROOT/deploy/containers/containers.sh" install
bash "$ROOT/deploy/containers/containers.sh" images

mkdir -p "$SOCKET_DIR"
export DOCKER_HOST=unix://$SOCKET
if ! docker info >/dev/null 2>&1; then
  log "starting podman's API on $SOCKET"
  rm -f "$SOCKET"
  podman system service --time=0 "unix://$SOCKET" >"$SOCKET_DIR/service.log" 2>&1 &
  service=$!
  trap 'kill "$service" 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { cat "$SOCKET_DIR/service.log" >&2; log "podman's API did not answer"; exit 1; }
fi

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/kafka/pom.xml")
[ $# -gt 0 ] || set -- tests/integration
# without KAFKA_BOOTSTRAP_SERVERS / POSTGRES_DSN the fixture takes the testcontainers path
env -u KAFKA_BOOTSTRAP_SERVERS -u POSTGRES_DSN \
  TESTCONTAINERS_RYUK_DISABLED=true \
  TESTCONTAINERS_CONNECTION_MODE=docker_host \
  TC_HOST=127.0.0.1 \
  LEADLINE_KAFKA_IMAGE="${KAFKA_IMAGE:-localhost/leadline-kafka:$KAFKA_VERSION}" \
  LEADLINE_POSTGRES_IMAGE="${POSTGRES_IMAGE:-localhost/leadline-postgres:15}" \
  "$ROOT/.venv/bin/python" -m pytest -p no:cacheprovider "$@"
