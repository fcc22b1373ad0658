#!/usr/bin/env bash
# Real Apache Kafka (KRaft) and real PostgreSQL on a bare machine, no Docker engine.
#
#   infra.sh up      fetch what is missing, start both, wait until they answer, create databases
#                    and the catalogue topics (RF 3 / min ISR 2 on a cluster, 1 / 1 on one node)
#   infra.sh down    stop only what this script started (by pid file), leave no process behind
#   infra.sh status  what runs where, each Kafka node on its own line
#   infra.sh fetch   fetch/install what is missing (Kafka jars, PostgreSQL, a compose client), start nothing
#   infra.sh kafka-up / kafka-down   Kafka alone, no topics: for throw-away brokers that tests
#                    start, restart and remove (LEADLINE_RUN_DIR and the ports below)
#   infra.sh kafka-node-up N         start node N (1-based) again, wait until it names itself live
#   infra.sh kafka-node-kill N       SIGKILL node N and wait until it is gone (fault tests)
#   infra.sh pg-up / pg-down         PostgreSQL alone: for a throw-away cluster (LEADLINE_RUN_DIR,
#                    PG_PORT, LEADLINE_DATABASES) that tests stop and start again
#   infra.sh pg-crash                stop it as a crash would (pg_ctl -m immediate): no checkpoint
#
# KAFKA_NODES=1 (default, unless a cluster runs from this run dir): one combined broker + controller on KAFKA_PORT (9092), controller
# KAFKA_CONTROLLER_PORT (9093). KAFKA_NODES=3: three combined nodes (ids 1..3, one static
# controller quorum) on KAFKA_PORTS="9092 9094 9096", controllers KAFKA_CONTROLLER_PORTS="9093
# 9095 9097"; internal topics replicated 3 times with min.insync.replicas 2, so losing one node
# loses no acknowledged record. Each mode keeps its own data (.run/kafka, .run/kafka-cluster);
# switching needs `down` first, and says so. `up` and `kafka-up` write $RUN/kafka.env
# (KAFKA_BOOTSTRAP_SERVERS, KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS) for services.
#
# LEADLINE_SECURE=1 (`make up SECURE=1`; unset: whichever profile runs from this run dir, else
# plaintext): the secured profile. Clients reach the brokers only over SASL_SSL with
# SCRAM-SHA-512, one principal per service (shared/kafka/acls.py), deny-by-default ACLs made from
# the topic catalogue. The controller listener takes mutual TLS only (SCRAM cannot authenticate
# it): its principal, the brokers' certificate, is a super user, reachable with the brokers' key
# alone. A throw-away CA signs one broker certificate (127.0.0.1, localhost) and is then deleted;
# passwords are random; all of it under the data dir (.run/kafka-secure, .run/kafka-secure-cluster),
# mode 600/700, made when that data dir is made and kept with it. kafka.env then also names the
# protocol and CA file (services.sh gives each service its own principal), and $RUN/operator.env
# holds the operator principal's environment for the `leadline` CLI and console. Plaintext and
# secured keep their own data; switching needs `down` first, and says so.
#
# Idempotent: `up` on a running stack does nothing; `down` on a stopped one does nothing.
# Everything lives under the git-ignored .run/ (data, logs, pids) and .cache/ (Kafka jars).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RUN=${LEADLINE_RUN_DIR:-$ROOT/.run}
CACHE=${LEADLINE_CACHE_DIR:-$ROOT/.cache}
PY=${LEADLINE_PYTHON:-$ROOT/.venv/bin/python}

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/kafka/pom.xml")
# unset: whichever mode runs from this run dir (so `status` and `up` after a cluster `up` see the
# cluster), else one node
if [ -z "${KAFKA_NODES:-}" ]; then
  KAFKA_NODES=1
  for f in "$RUN"/pids/kafka-[0-9]*.pid; do
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && KAFKA_NODES=3 && break
  done
fi
# unset: the profile of the Kafka that runs from this run dir, else plaintext
PROFILE_FILE=$RUN/pids/kafka.profile
if [ -z "${LEADLINE_SECURE:-}" ]; then
  LEADLINE_SECURE=0
  for f in "$RUN"/pids/kafka.pid "$RUN"/pids/kafka-[0-9]*.pid; do
    if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
      [ "$(cat "$PROFILE_FILE" 2>/dev/null)" = secure ] && LEADLINE_SECURE=1
      break
    fi
  done
fi
case "$LEADLINE_SECURE" in
  0) PROFILE=plaintext SECURED='' ;;
  1) PROFILE=secure SECURED=-secure ;;
  *) printf '[infra] error: LEADLINE_SECURE=%s: 0 or 1\n' "$LEADLINE_SECURE" >&2; exit 2 ;;
esac
case "$KAFKA_NODES" in
  1)
    KAFKA_PORTS=${KAFKA_PORTS:-${KAFKA_PORT:-9092}}
    KAFKA_CONTROLLER_PORTS=${KAFKA_CONTROLLER_PORTS:-${KAFKA_CONTROLLER_PORT:-9093}}
    # 2 cores and everything else on the same machine: a small fixed heap is plenty for one node.
    KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
    KAFKA_DIR=$RUN/kafka$SECURED
    KAFKA_RF=1 KAFKA_MIN_ISR=1 ;;
  3)
    KAFKA_PORTS=${KAFKA_PORTS:-9092 9094 9096}
    KAFKA_CONTROLLER_PORTS=${KAFKA_CONTROLLER_PORTS:-9093 9095 9097}
    KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}  # three JVMs share the machine
    KAFKA_DIR=$RUN/kafka$SECURED-cluster
    KAFKA_RF=3 KAFKA_MIN_ISR=2 ;;
  *) printf '[infra] error: KAFKA_NODES=%s: 1 or 3 are supported\n' "$KAFKA_NODES" >&2; exit 2 ;;
esac
read -r -a BROKER_PORTS <<<"$KAFKA_PORTS"
read -r -a CONTROLLER_PORTS <<<"$KAFKA_CONTROLLER_PORTS"
if [ "${#BROKER_PORTS[@]}" != "$KAFKA_NODES" ] || [ "${#CONTROLLER_PORTS[@]}" != "$KAFKA_NODES" ]; then
  printf '[infra] error: KAFKA_NODES=%s needs as many KAFKA_PORTS (%s) and KAFKA_CONTROLLER_PORTS (%s)\n' \
    "$KAFKA_NODES" "$KAFKA_PORTS" "$KAFKA_CONTROLLER_PORTS" >&2
  exit 2
fi
# extra server.properties lines, e.g. a short broker.session.timeout.ms for a throw-away test broker
KAFKA_EXTRA_PROPERTIES=${KAFKA_EXTRA_PROPERTIES:-}
PG_PORT=${PG_PORT:-5433}
PG_USER=${PG_USER:-leadline}
PG_PASSWORD=${PG_PASSWORD:-leadline}
DATABASES=${LEADLINE_DATABASES:-"checkout inventory receipts projection orchestrator simulator"}

KAFKA_JARS=$CACHE/kafka-$KAFKA_VERSION
# the secured profile's secrets, with the data they belong to
TLS_DIR=$KAFKA_DIR/tls
CREDENTIALS=$KAFKA_DIR/credentials
BROKER_CN=leadline-broker
PG_PID_HINT=$RUN/pids/postgres.dir   # where the data dir lives (it may fall back outside .run)

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=deploy/local/lib.sh
. "$ROOT/deploy/local/lib.sh"  # pid_running, alive (zombies count as stopped)

APT_UPDATED=
apt_install() {
  [ -n "$APT_UPDATED" ] || { DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- Kafka

kafka_fetch() {
  [ -f "$KAFKA_JARS/.complete" ] && return 0
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars"
  command -v java >/dev/null || die "Java 17+ is needed to run Kafka"
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_JARS"
  rm -rf "$KAFKA_JARS.tmp"
  mvn -q -B -f "$ROOT/deploy/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_JARS.tmp" >&2
  rm -rf "$KAFKA_JARS" && mv "$KAFKA_JARS.tmp" "$KAFKA_JARS"
  touch "$KAFKA_JARS/.complete"
}

# Node n (1-based) of the configured mode. One node keeps the layout it always had (.run/kafka,
# pids/kafka.pid), so a running dev broker is still found; cluster nodes live apart from it.
node_dir() { if [ "$KAFKA_NODES" = 1 ]; then echo "$KAFKA_DIR"; else echo "$KAFKA_DIR/node-$1"; fi; }
node_pid() { if [ "$KAFKA_NODES" = 1 ]; then echo "$RUN/pids/kafka.pid"; else echo "$RUN/pids/kafka-$1.pid"; fi; }
node_log() { if [ "$KAFKA_NODES" = 1 ]; then echo "$RUN/logs/kafka.log"; else echo "$RUN/logs/kafka-$1.log"; fi; }
node_port() { echo "${BROKER_PORTS[$(($1 - 1))]}"; }
node_ids() { seq 1 "$KAFKA_NODES"; }
bootstrap() { local p out=; for p in "${BROKER_PORTS[@]}"; do out=${out:+$out,}127.0.0.1:$p; done; echo "$out"; }
# every Kafka pid file of this run dir, whichever mode started it
all_kafka_pids() { ls "$RUN"/pids/kafka.pid "$RUN"/pids/kafka-[0-9]*.pid 2>/dev/null || true; }

check_node() {
  if ! [[ "${1:-}" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt "$KAFKA_NODES" ]; then
    die "node '${1:-}': 1..$KAFKA_NODES (KAFKA_NODES=$KAFKA_NODES)"
  fi
}

kafka_listeners() {  # node n's listeners: plaintext, or the secured profile's
  local n=$1 port controller
  port=$(node_port "$n"); controller=${CONTROLLER_PORTS[$((n - 1))]}
  if [ "$PROFILE" = plaintext ]; then
    cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
    return 0
  fi
  cat <<EOF
# secured profile: clients (and the brokers among themselves) on SASL_SSL with SCRAM-SHA-512;
# the controller listener only with a client certificate the throw-away CA signed
listeners=SECURE://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=SECURE://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=SECURE:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SECURE
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.secure.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$(cat "$CREDENTIALS/broker")";
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
ssl.endpoint.identification.algorithm=https
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
# admin: infra and tests; broker: inter-broker SCRAM; CN=$BROKER_CN: the controller listener
super.users=User:admin;User:broker;User:CN=$BROKER_CN
EOF
}

kafka_config() {
  local n=$1 dir voters='' i rf=$KAFKA_RF isr=$KAFKA_MIN_ISR
  dir=$(node_dir "$n")
  for i in $(node_ids); do voters=${voters:+$voters,}$i@127.0.0.1:${CONTROLLER_PORTS[$((i - 1))]}; done
  mkdir -p "$dir"
  # the secured profile's holds the brokers' own password: readable by its owner only
  (umask 077 && cat >"$dir/server.properties") <<EOF
# generated by deploy/local/infra.sh: node $n of $KAFKA_NODES, combined broker + controller, loopback only
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
$(kafka_listeners "$n")
log.dirs=$dir/data
# Every internal topic as replicated as the cluster allows: 1 on one node (the transaction log
# included, or idempotent/transactional producers and consumer groups never become available);
# 3 on a cluster with min ISR 2, so an acks=all write is on two nodes before it is acknowledged.
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
min.insync.replicas=$isr
default.replication.factor=$rf
num.partitions=1
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
# topics come from the catalogue in schemas/, never from a typo in a producer
auto.create.topics.enable=false
$KAFKA_EXTRA_PROPERTIES
EOF
  chmod 600 "$dir/server.properties"
}

random_secret() { head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32; }

# The secured profile's secrets, made once per data dir (they live and go with it): a throw-away
# CA that signs one certificate for every broker and is deleted at once (nobody can sign another),
# and the admin and broker passwords, which format writes into the metadata log. The services'
# principals are made by `shared.kafka.acls apply` once the brokers run.
kafka_secrets() {
  [ "$PROFILE" = secure ] || return 0
  command -v openssl >/dev/null || die "openssl is needed for the secured profile (SECURE=1)"
  if ls "$KAFKA_DIR"/data/meta.properties "$KAFKA_DIR"/node-*/data/meta.properties >/dev/null 2>&1; then
    [ -s "$TLS_DIR/broker.pem" ] && [ -s "$CREDENTIALS/admin" ] && [ -s "$CREDENTIALS/broker" ] \
      || die "$KAFKA_DIR has data but lost its secrets: remove $KAFKA_DIR to start afresh"
    return 0
  fi
  mkdir -p "$TLS_DIR" "$CREDENTIALS" && chmod 700 "$TLS_DIR" "$CREDENTIALS"
  local who
  for who in admin broker; do
    [ -s "$CREDENTIALS/$who" ] || (umask 077 && random_secret >"$CREDENTIALS/$who")
  done
  [ -s "$TLS_DIR/broker.pem" ] && return 0
  log "making a throw-away CA and the brokers' certificate in $TLS_DIR"
  (
    umask 077
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -keyout ca.key -out ca.pem \
      -subj "/CN=Leadline throw-away CA $(date -u +%Y%m%dT%H%M%SZ)" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=$BROKER_CN"
    # serverAuth for clients, clientAuth for the controller listener (mutual TLS)
    printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
      'keyUsage=critical,digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth,clientAuth' \
      >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
      -extfile broker.ext -out broker.crt
    # Kafka's PEM key store: the key (PKCS#8; unencrypted, as Kafka cannot read PBES2-encrypted
    # keys and a password beside it would protect nothing more than the file mode does) + chain
    cat broker.key broker.crt ca.pem >broker.pem.tmp && mv broker.pem.tmp broker.pem
    rm -f ca.key ca.srl broker.key broker.csr broker.ext broker.crt
    chmod 644 ca.pem
  ) >/dev/null 2>&1 || die "openssl could not make the certificates in $TLS_DIR"
}

kafka_cluster_id() {
  # one id for every node of a mode: a node formatted with another never joins the quorum
  local file=$KAFKA_DIR/cluster.id
  local id=-
  if [ ! -s "$file" ]; then
    mkdir -p "$KAFKA_DIR"
    # what `StorageTool random-uuid` prints (16 random bytes, URL-safe base64, no padding)
    # without a JVM start; never with a leading '-', which command lines take for an option
    while [ "${id:0:1}" = - ]; do id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='); done
    echo "$id" >"$file.tmp" && mv "$file.tmp" "$file"
  fi
  cat "$file"
}

# The python helpers as the admin principal on the secured profile; on plaintext without any
# KAFKA_SASL_* the shell may hold (the settings refuse credentials on a plaintext connection).
py_kafka() {
  if [ "$PROFILE" = secure ]; then
    KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512 KAFKA_SASL_USERNAME=admin \
      KAFKA_SASL_PASSWORD="$(cat "$CREDENTIALS/admin")" KAFKA_SSL_CAFILE="$TLS_DIR/ca.pem" "$PY" "$@"
  else
    env -u KAFKA_SASL_USERNAME -u KAFKA_SASL_PASSWORD -u KAFKA_SASL_MECHANISM -u KAFKA_SSL_CAFILE \
      KAFKA_SECURITY_PROTOCOL=PLAINTEXT "$PY" "$@"
  fi
}

kafka_other_profile_running() {  # a Kafka of this run dir runs, started with the other profile
  local f
  for f in $(all_kafka_pids); do
    if alive "$f"; then [ "$(cat "$PROFILE_FILE" 2>/dev/null || echo plaintext)" != "$PROFILE" ]; return; fi
  done
  return 1
}

kafka_other_mode_running() {
  local f mine=' ' n
  for n in $(node_ids); do mine="$mine$(node_pid "$n") "; done
  for f in $(all_kafka_pids); do
    case "$mine" in *" $f "*) ;; *) alive "$f" && return 0 ;; esac
  done
  return 1
}

kafka_format() {  # write node n's config; format its storage unless done before
  local dir; dir=$(node_dir "$1")
  kafka_config "$1"
  [ -f "$dir/data/meta.properties" ] && return 0
  local argv=(kafka.tools.StorageTool format -t "$(kafka_cluster_id)" -c "$dir/server.properties")
  local args=$dir/format.args who
  if [ "$PROFILE" = secure ]; then  # SCRAM cannot be added later for the brokers' own principal
    for who in admin broker; do
      argv+=(--add-scram "SCRAM-SHA-512=[name=$who,password=$(cat "$CREDENTIALS/$who")]")
    done
  fi
  # the arguments from a file (mode 600), so that the passwords never show in `ps`
  (umask 077 && printf '"%s"\n' "${argv[@]}" >"$args")
  java -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.properties" -cp "$KAFKA_JARS/*" \
    "@$args" >/dev/null || { rm -f "$args"; return 1; }
  rm -f "$args"
}

# Start node n unless it runs, and return at once: a cluster node answers only once a quorum
# of controllers runs, so every node is started before any is waited for.
kafka_node_start() {
  local n=$1 dir pid port cp="$KAFKA_JARS/*"
  dir=$(node_dir "$n"); pid=$(node_pid "$n"); port=$(node_port "$n")
  if alive "$pid"; then log "kafka node $n already running (pid $(cat "$pid"))"; return 0; fi
  port_open "$port" && die "port $port is taken by a process this script did not start"
  kafka_format "$n"
  mkdir -p "$RUN/pids" "$RUN/logs"
  log "starting kafka $KAFKA_VERSION node $n of $KAFKA_NODES on 127.0.0.1:$port"
  # setsid: the broker must not die with the shell that started it (make up returns).
  # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of JVM options
  setsid nohup java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/deploy/kafka/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$dir/server.properties" \
    >>"$(node_log "$n")" 2>&1 </dev/null &
  echo $! >"$pid"
}

# Until the cluster's metadata names every node as a live (registered, unfenced) broker; with a
# node id, until it names that node, asked of the node itself: one killed moments ago is still
# named until its session expires, and other nodes may be down on purpose.
kafka_wait() {
  local args=(--bootstrap "$(bootstrap)" --brokers "$KAFKA_NODES")
  [ -n "${1:-}" ] && args=(--bootstrap "127.0.0.1:$(node_port "$1")" --node "$1")
  py_kafka -m shared.kafka.admin wait "${args[@]}" --timeout 120 && return 0
  local n
  for n in $(node_ids); do log "--- $(node_log "$n")"; tail -n 20 "$(node_log "$n")" >&2 || true; done
  die "kafka did not answer metadata requests naming ${1:+node }${1:-$KAFKA_NODES live broker(s)}"
}

kafka_env() {
  mkdir -p "$RUN"
  cat >"$RUN/kafka.env.tmp" <<EOF
KAFKA_BOOTSTRAP_SERVERS=$(bootstrap)
KAFKA_REPLICATION_FACTOR=$KAFKA_RF
KAFKA_MIN_INSYNC_REPLICAS=$KAFKA_MIN_ISR
EOF
  rm -f "$RUN/operator.env"
  if [ "$PROFILE" = secure ]; then
    # every process's; services.sh adds each one's principal from LEADLINE_KAFKA_CREDENTIALS
    cat >>"$RUN/kafka.env.tmp" <<EOF
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SSL_CAFILE=$TLS_DIR/ca.pem
LEADLINE_KAFKA_CREDENTIALS=$CREDENTIALS
EOF
    # the `leadline` CLI and console: set -a; . .run/operator.env; set +a
    (umask 077 && cat >"$RUN/operator.env") <<EOF
KAFKA_BOOTSTRAP_SERVERS=$(bootstrap)
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=SCRAM-SHA-512
KAFKA_SASL_USERNAME=operator
KAFKA_SASL_PASSWORD=$(cat "$CREDENTIALS/operator")
KAFKA_SSL_CAFILE=$TLS_DIR/ca.pem
EOF
  fi
  mv "$RUN/kafka.env.tmp" "$RUN/kafka.env"
}

# the principals of every party and the operator, and the ACLs made from the topic catalogue
# (under LEADLINE_TOPIC_PREFIX): idempotent, so on every `up`
kafka_acls() {
  [ "$PROFILE" = secure ] || return 0
  py_kafka -m shared.kafka.acls apply --bootstrap "$(bootstrap)" --credentials "$CREDENTIALS" >&2 \
    || die "the principals and ACLs could not be applied"
}

kafka_up() {
  if kafka_other_mode_running; then
    die "a Kafka of the other KAFKA_NODES mode runs from $RUN: run 'infra.sh kafka-down' (or 'down') first"
  fi
  if kafka_other_profile_running; then
    die "a Kafka of the other profile (not $PROFILE) runs from $RUN: run 'make down' (or 'infra.sh kafka-down') first, then up with SECURE=${LEADLINE_SECURE}"
  fi
  kafka_fetch
  kafka_cluster_id >/dev/null
  kafka_secrets
  mkdir -p "$RUN/pids" && echo "$PROFILE" >"$PROFILE_FILE"
  local n pids=()
  # a JVM start each: format side by side (kafka_node_start finds them formatted)
  for n in $(node_ids); do alive "$(node_pid "$n")" || { kafka_format "$n" & pids+=($!); }; done
  for n in "${pids[@]}"; do wait "$n" || die "formatting kafka storage failed"; done
  for n in $(node_ids); do kafka_node_start "$n"; done
  kafka_wait
  kafka_acls
  kafka_env
}

kafka_node_up() {
  check_node "${1:-}"
  kafka_fetch
  kafka_node_start "$1"
  kafka_wait "$1"
}

kafka_stop_pid() {  # pid file, signal
  alive "$1" || { rm -f "$1"; return 0; }
  local pid; pid=$(cat "$1")
  log "stopping $(basename "$1" .pid) (pid $pid, SIG$2)"
  kill "-$2" "$pid"
  for _ in $(seq 1 60); do pid_running "$pid" || break; sleep 0.5; done
  pid_running "$pid" && { log "kafka pid $pid did not stop in 30 s, killing"; kill -KILL "$pid"; }
  rm -f "$1"
}

kafka_node_kill() {
  check_node "${1:-}"
  local port; port=$(node_port "$1")
  kafka_stop_pid "$(node_pid "$1")" KILL
  # the leader thread turns zombie before the JVM's last threads have closed its sockets:
  # wait for the port too, or the next start finds it "taken"
  for _ in $(seq 1 60); do port_open "$port" || return 0; sleep 0.5; done
  die "port $port still open 30 s after node $1 was killed"
}

kafka_down() {
  # Every node of this run dir, whichever mode started it, all at once: one at a time, the last
  # nodes of a cluster would wait for a controller quorum that is already gone.
  local f
  for f in $(all_kafka_pids); do kafka_stop_pid "$f" TERM & done
  wait
  [ -n "$(all_kafka_pids)" ] || rm -f "$PROFILE_FILE"
}

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$d" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  return 1
}

pg_install() {
  pg_bindir >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "PostgreSQL is missing: install Debian's 'postgresql' package"
  log "installing Debian's postgresql package"
  apt_install postgresql
  pg_bindir >/dev/null || die "postgresql installed but pg_ctl not found"
}

# PostgreSQL refuses to run as root: as root we run it as the 'postgres' system user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_datadir() {
  if [ -f "$PG_PID_HINT" ]; then cat "$PG_PID_HINT"; return 0; fi
  local dir=$RUN/postgres
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    # a checkout under a folder the postgres user cannot enter: keep the cluster elsewhere
    if ! runuser -u postgres -- test -w "$dir"; then
      dir=/var/tmp/leadline-$(printf '%s' "$RUN" | cksum | cut -d' ' -f1)/postgres
      mkdir -p "$dir" && chown -R postgres: "$(dirname "$dir")"
    fi
  fi
  mkdir -p "$RUN/pids" && echo "$dir" >"$PG_PID_HINT"
  echo "$dir"
}

pg_running() {
  local bin dir; bin=$(pg_bindir) || return 1; dir=$(pg_datadir)
  [ -f "$dir/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

pg_up() {
  pg_install
  local bin dir; bin=$(pg_bindir); dir=$(pg_datadir)
  if pg_running; then log "postgres already running on 127.0.0.1:$PG_PORT"; else
    port_open "$PG_PORT" && die "port $PG_PORT is taken by a process this script did not start"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      log "initialising a PostgreSQL cluster in $dir/data"
      local pw="$dir/.pw"; printf '%s\n' "$PG_PASSWORD" >"$pw"
      [ "$(id -u)" = 0 ] && chown postgres: "$pw"
      as_pg "$bin/initdb" -D "$dir/data" -U "$PG_USER" --pwfile="$pw" -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
      rm -f "$pw"
      cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 300
shared_buffers = 256MB
EOF
    fi
    log "starting postgres on 127.0.0.1:$PG_PORT"
    # the port is given at start, not written into the cluster: PG_PORT may change between runs
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $PG_PORT" -w -t 60 start >/dev/null \
      || { tail -n 30 "$dir/postgres.log" >&2; die "postgres did not start"; }
  fi
  local db
  for db in $DATABASES; do
    PGPASSWORD=$PG_PASSWORD "$bin/psql" -qAt -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres \
      -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
      || PGPASSWORD=$PG_PASSWORD "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" \
           -d postgres -c "CREATE DATABASE \"$db\"" >&2
  done
}

pg_down() {  # [mode]: fast (default), or immediate: no checkpoint, recovery at the next start
  pg_running || return 0
  local bin dir mode=${1:-fast}; bin=$(pg_bindir); dir=$(pg_datadir)
  log "stopping postgres (-m $mode)"
  as_pg "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
}

# ---------------------------------------------------------------- compose client

# tests/unit/test_compose.py validates docker-compose.yml with `config`, which needs no daemon:
# the `docker compose` plugin where it exists, else Debian's docker-compose (1.29).
compose_client() {
  docker compose version >/dev/null 2>&1 && return 0
  docker-compose version >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { log "no compose client: install the docker compose plugin or Debian's docker-compose"; return 0; }
  log "installing Debian's docker-compose package (validates docker-compose.yml; no daemon needed)"
  # never fatal: the infrastructure is still worth starting; the compose test says what is missing
  apt_install docker-compose || log "could not install docker-compose; tests/unit/test_compose.py will fail"
}

# ---------------------------------------------------------------- commands

status() {
  local n pid label
  for n in $(node_ids); do
    pid=$(node_pid "$n")
    label=kafka-$n; [ "$KAFKA_NODES" = 1 ] && label='kafka  '
    if alive "$pid"; then
      echo "$label    running  127.0.0.1:$(node_port "$n") (pid $(cat "$pid"), Apache Kafka $KAFKA_VERSION, KRaft node $n of $KAFKA_NODES)"
    else echo "$label    stopped  127.0.0.1:$(node_port "$n")"; fi
  done
  if [ "$PROFILE" = secure ]; then
    echo "kafka      secured: SASL_SSL (SCRAM-SHA-512) with a principal per service, deny-by-default ACLs; CA $TLS_DIR/ca.pem; operator: set -a; . $RUN/operator.env; set +a"
  fi
  if kafka_other_mode_running; then echo "kafka      nodes of the other KAFKA_NODES mode run from $RUN"; fi
  if pg_running; then
    echo "postgres   running  postgresql://$PG_USER@127.0.0.1:$PG_PORT/ (databases: $DATABASES)"
  else echo "postgres   stopped"; fi
}

topics() {
  KAFKA_REPLICATION_FACTOR=$KAFKA_RF KAFKA_MIN_INSYNC_REPLICAS=$KAFKA_MIN_ISR \
    py_kafka -m shared.kafka.admin ensure-topics --bootstrap "$(bootstrap)"
}

case "${1:-}" in
  # `up` fetches too, so `make test` on a fresh clone needs no step before it
  up) compose_client; pg_up; kafka_up; topics ;;
  down) kafka_down; pg_down ;;
  status) status ;;
  fetch) kafka_fetch; pg_install; compose_client ;;
  kafka-up) kafka_up ;;
  kafka-down) kafka_down ;;
  kafka-node-up) kafka_node_up "${2:-}" ;;
  kafka-node-kill) kafka_node_kill "${2:-}" ;;
  pg-up) pg_up ;;
  pg-down) pg_down ;;
  pg-crash) pg_down immediate ;;
  *) echo "usage: $0 up|down|status|fetch|kafka-up|kafka-down|kafka-node-up N|kafka-node-kill N|pg-up|pg-down|pg-crash" >&2; exit 2 ;;
esac
