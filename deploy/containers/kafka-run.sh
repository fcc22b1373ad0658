#!/bin/bash
# Entry point of localhost/leadline-kafka: KAFKA_* variables become server.properties by the
# apache/kafka image's rule (drop KAFKA_, lower-case, `___` -> `-`, `__` -> `_`, `_` -> `.`),
# the log directory is formatted once with CLUSTER_ID, then the broker replaces this shell.
#
# The secured profile (docker-compose.secure.yml) sets LEADLINE_* variables, read here only:
#   LEADLINE_TLS_DIR    a throw-away CA signs the broker's key pair there on the first start
#                       (kept in its volume), and is deleted: ca.pem is for the clients, the
#                       PKCS12 key store (password KAFKA_SSL_KEYSTORE_PASSWORD) for this user only
#   LEADLINE_TLS_NAMES  the certificate's names, as keytool's san=... takes them
#   LEADLINE_SCRAM_ADMIN, LEADLINE_SCRAM_BROKER   the super users' SCRAM-SHA-512 passwords, put
#                       into the metadata log when the log directory is formatted; the admin's
#                       also into config/health.properties, for the compose health check
set -euo pipefail

home=${LEADLINE_KAFKA_HOME:-/opt/kafka}
props=$home/config/server.properties
: "${CLUSTER_ID:?set CLUSTER_ID (a Kafka cluster id, e.g. from kafka-storage random-uuid)}"
umask 077 # on the secured profile the properties hold the brokers' own password

make_tls() { # dir names password
  local dir=$1 names=$2 pass=$3 tmp rc=0
  tmp=$(mktemp -d "$dir/.making.XXXXXX")
  (
    cd "$tmp"
    keytool -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity 825 -ext bc:c \
      -ext ku:c=keyCertSign,cRLSign -dname "CN=Leadline throw-away CA $(date -u +%Y%m%dT%H%M%SZ)" \
      -keystore ca.p12 -storetype PKCS12 -storepass "$pass"
    keytool -exportcert -rfc -alias ca -keystore ca.p12 -storepass "$pass" -file ca.pem
    keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 825 \
      -dname "CN=leadline-broker" -keystore broker.p12 -storetype PKCS12 -storepass "$pass"
    keytool -certreq -alias broker -keystore broker.p12 -storepass "$pass" -file broker.csr
    # serverAuth for the clients, clientAuth for the controller listener (mutual TLS)
    keytool -gencert -alias ca -keystore ca.p12 -storepass "$pass" -infile broker.csr -rfc \
      -outfile broker.crt -validity 825 -ext "san=$names" -ext eku=serverAuth,clientAuth \
      -ext ku:c=digitalSignature,keyEncipherment
    keytool -importcert -noprompt -alias ca -file ca.pem -keystore broker.p12 -storepass "$pass"
    keytool -importcert -alias broker -file broker.crt -keystore broker.p12 -storepass "$pass"
    chmod 644 ca.pem
    mv ca.pem broker.p12 "$dir/"
  ) >"$tmp.log" 2>&1 || { rc=$?; cat "$tmp.log" >&2; }
  rm -rf "$tmp" "$tmp.log" # the CA's key with it: nobody can sign another certificate
  return "$rc"
}

format_args=()
if [ -n "${LEADLINE_TLS_DIR:-}" ]; then
  : "${KAFKA_SSL_KEYSTORE_PASSWORD:?set KAFKA_SSL_KEYSTORE_PASSWORD for the secured profile}"
  : "${LEADLINE_SCRAM_ADMIN:?set LEADLINE_SCRAM_ADMIN}" "${LEADLINE_SCRAM_BROKER:?set LEADLINE_SCRAM_BROKER}"
  if [ ! -s "$LEADLINE_TLS_DIR/broker.p12" ]; then
    echo "making a throw-away CA and the broker's key store in $LEADLINE_TLS_DIR" >&2
    make_tls "$LEADLINE_TLS_DIR" "${LEADLINE_TLS_NAMES:-dns:localhost,ip:127.0.0.1}" \
      "$KAFKA_SSL_KEYSTORE_PASSWORD" || { echo "keytool could not make them" >&2; exit 1; }
  fi
  format_args+=(--add-scram "SCRAM-SHA-512=[name=admin,password=$LEADLINE_SCRAM_ADMIN]")
  format_args+=(--add-scram "SCRAM-SHA-512=[name=broker,password=$LEADLINE_SCRAM_BROKER]")
  cat >"$home/config/health.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$LEADLINE_SCRAM_ADMIN";
ssl.truststore.type=PEM
ssl.truststore.location=$LEADLINE_TLS_DIR/ca.pem
EOF
fi

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

cp="$home/libs/*"
log4j=-Dlog4j2.configurationFile=$home/log4j2.properties
# --ignore-formatted: a restart with the volume kept reuses the log directory as it is. The
# arguments from a file, so that the SCRAM passwords never show in `ps`; its stdout names every
# SCRAM record it writes (salts, keys), not for the container log: errors still go out.
args=$(mktemp)
printf '"%s"\n' kafka.tools.StorageTool format --ignore-formatted -t "$CLUSTER_ID" -c "$props" \
  ${format_args[@]+"${format_args[@]}"} >"$args"
java -Xmx128m "$log4j" -cp "$cp" "@$args" >/dev/null || { rm -f "$args"; exit 1; }
rm -f "$args"

# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM flags
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m} -XX:+UseG1GC -Djava.awt.headless=true \
  ${KAFKA_OPTS:-} "$log4j" -cp "$cp" kafka.Kafka "$props"
