#!/bin/bash
# Entry point of localhost/leadline-postgres (the subset of the official image's contract that
# docker-compose.yml uses). Other commands (psql for postgres-init) run as they are.
set -euo pipefail

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
  user=${POSTGRES_USER:-postgres}
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --no-locale \
    --auth-local=trust --auth-host=scram-sha-256 >&2
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  # other containers reach it over the compose network, always with a password
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  db=${POSTGRES_DB:-$user}
  if [ "$db" != postgres ]; then
    # sockets only: nothing may connect before the database exists
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >&2
    createdb -U "$user" "$db"
    pg_ctl -D "$PGDATA" -m fast -w stop >&2
  fi
fi
exec "$@"
