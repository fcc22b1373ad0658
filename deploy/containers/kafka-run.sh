#!/bin/bash
# Entry point of localhost/leadline-kafka: KAFKA_* variables become server.properties by the
# apache/kafka image's rule (drop KAFKA_, lower-case, `___` -> `-`, `__` -> `_`, `_` -> `.`),
# the log directory is formatted once with CLUSTER_ID, then the broker replaces this shell.
set -euo pipefail

props=/opt/kafka/config/server.properties
: "${CLUSTER_ID:?set CLUSTER_ID (a Kafka cluster id, e.g. from kafka-storage random-uuid)}"

: >"$props"
while IFS='=' read -r name value; do
  case $name in
    # JVM and launcher settings, not broker properties
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key=${name#KAFKA_}
  key=${key,,}
  key=${key//___/-}
  key=${key//__/$'\x01'}
  key=${key//_/.}
  key=${key//$'\x01'/_}
  printf '%s=%s\n' "$key" "$value" >>"$props"
done < <(env)

cp="/opt/kafka/libs/*"
log4j=-Dlog4j2.configurationFile=/opt/kafka/log4j2.properties
# --ignore-formatted: a restart with the volume kept reuses the log directory as it is
java -Xmx128m "$log4j" -cp "$cp" kafka.tools.StorageTool format --ignore-formatted \
  -t "$CLUSTER_ID" -c "$props" >&2

# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m} -XX:+UseG1GC -Djava.awt.headless=true \
  ${KAFKA_OPTS:-} "$log4j" -cp "$cp" kafka.Kafka "$props"
