#!/usr/bin/env bash
# Run a local Apache Kafka broker (KRaft, one combined broker + controller) for development.
#
#   deploy/scripts/kafka.sh fetch                        resolve the broker jars only
#   deploy/scripts/kafka.sh start [--daemon] [DIR] [PORT] format DIR if new, run the broker
#   deploy/scripts/kafka.sh stop [DIR]                   stop a --daemon broker (SIGTERM)
#   deploy/scripts/kafka.sh cluster-id                   print a new cluster id (as start does)
#
# The broker listens on 127.0.0.1:PORT (default 9092), its controller on
# 127.0.0.1:CONTROLLER_PORT (env ENVMON_KAFKA_CONTROLLER_PORT, default PORT+1), and keeps
# its data (data/), log (logs/server.log) and generated server.properties in DIR (default
# var/kafka). It runs in the foreground logging to the terminal, Ctrl-C stops it; with
# --daemon it runs in the background, logs to DIR/logs/server.log, writes DIR/kafka.pid
# and `kafka.sh stop DIR` ends it. A stop is a controlled shutdown: starting again on the
# same DIR and ports keeps every topic, record and committed offset.
# Settings: deploy/kafka/server.properties (one node, auto.create.topics.enable=false),
# with this node's id, listeners and paths put in their place.
# Jars: resolved once by Maven from deploy/kafka/pom.xml into
# ${ENVMON_KAFKA_HOME:-~/.cache/envmon/kafka-VERSION}/libs (ENVMON_KAFKA_VERSION, default
# KAFKA_VERSION of deploy/versions.env). Heap: ENVMON_KAFKA_HEAP_OPTS (default "-Xmx512m -Xms64m"). Java: $JAVA_HOME or
# the java on PATH (17 or newer). The tests do the same from Python
# (devservers/kafka.py).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
kafka_dir="$(cd "$here/../kafka" && pwd)"
pom="$kafka_dir/pom.xml"
shipped="$kafka_dir/server.properties"
log_conf="$kafka_dir/log4j2.properties"

# shellcheck source=../versions.env
source "$here/../versions.env"
version="${ENVMON_KAFKA_VERSION:-$KAFKA_VERSION}"
home="${ENVMON_KAFKA_HOME:-${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/envmon}/kafka-$version}"
libs="$home/libs"
heap_opts="${ENVMON_KAFKA_HEAP_OPTS:--Xmx512m -Xms64m}"

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }

java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    echo "java is not installed (Debian: apt-get install openjdk-17-jre-headless)" >&2
    exit 1
  fi
}

fetch() {
  if [[ -f "$libs/.complete" ]]; then
    echo "Kafka $version jars: $libs (cached)" >&2
    return
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    echo "mvn is not installed (Debian: apt-get install maven)" >&2
    exit 1
  fi
  mkdir -p "$home"
  local staging="$home/libs.tmp-$$"
  rm -rf "$staging"
  local cmd=(mvn -q -B -f "$pom" dependency:copy-dependencies
    "-DoutputDirectory=$staging" "-Dkafka.version=$version")
  echo "resolving the Kafka $version jars: ${cmd[*]}" >&2
  if ! "${cmd[@]}" >&2 || [[ ! -f "$staging/kafka_2.13-$version.jar" ]]; then
    rm -rf "$staging"
    echo "could not resolve the Kafka $version jars; the command was:" >&2
    echo "  ${cmd[*]}" >&2
    exit 1
  fi
  echo "$version" > "$staging/.complete"
  # Another process may have finished first: keep its copy.
  mv -T "$staging" "$libs" 2>/dev/null || rm -rf "$staging"
  echo "Kafka $version jars: $libs" >&2
}

# A KRaft cluster id: a Kafka Uuid, URL-safe base64 of 16 random bytes without padding.
# Like Kafka's Uuid.randomUuid (and devservers/kafka.py), never one starting with '-':
# the storage tool would take it for an option (1 format in 64 failed that way).
new_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    [[ "$id" == -* ]] || break
  done
  echo "$id"
}

render_config() {  # DIR PORT CONTROLLER_PORT
  local dir="$1" port="$2" cport="$3"
  # The installation-specific keys of the shipped file (same list as devservers/kafka.py).
  local site_keys='^[[:space:]]*(node\.id|broker\.id|process\.roles|listeners|advertised\.listeners|controller\.listener\.names|controller\.quorum\.voters|controller\.quorum\.bootstrap\.servers|listener\.security\.protocol\.map|inter\.broker\.listener\.name|log\.dirs|log\.dir|metadata\.log\.dir)[[:space:]]*[=:]'
  grep -Ev "$site_keys" "$shipped"
  cat <<EOF

# -- local node (written by deploy/scripts/kafka.sh) --
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
EOF
}

start() {
  local daemon=0 positional=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --daemon) daemon=1; shift ;;
      -h|--help) usage; exit 0 ;;
      -*) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
      *) positional+=("$1"); shift ;;
    esac
  done
  local dir="${positional[0]:-var/kafka}" port="${positional[1]:-9092}"
  local cport="${ENVMON_KAFKA_CONTROLLER_PORT:-$((port + 1))}"
  fetch
  local java
  java="$(java_bin)"
  mkdir -p "$dir/logs"
  dir="$(cd "$dir" && pwd)"
  if [[ -f "$dir/kafka.pid" ]] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
    echo "a broker is already running on $dir (pid $(cat "$dir/kafka.pid"))" >&2
    exit 1
  fi
  render_config "$dir" "$port" "$cport" > "$dir/server.properties"
  local appender=console
  [[ $daemon -eq 1 ]] && appender=file
  # shellcheck disable=SC2206 # the heap options are a space-separated list
  local jvm=("$java" $heap_opts -XX:+UseSerialGC -Djava.awt.headless=true
    "-Dkafka.logs.dir=$dir/logs" "-Dlog4j2.configurationFile=$log_conf"
    "-Denvmon.kafka.appender=$appender" -cp "$libs/*")
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(new_cluster_id)"
    echo "formatting $dir/data (cluster id $cluster_id)" >&2
    "${jvm[@]}" kafka.tools.StorageTool format \
      --cluster-id "$cluster_id" --config "$dir/server.properties" --ignore-formatted >&2
  fi
  echo "kafka $version on 127.0.0.1:$port (controller :$cport), data and logs in $dir" >&2
  if [[ $daemon -eq 1 ]]; then
    nohup "${jvm[@]}" kafka.Kafka "$dir/server.properties" > "$dir/stdout.log" 2>&1 &
    echo $! > "$dir/kafka.pid"
    echo "pid $(cat "$dir/kafka.pid"); log: $dir/logs/server.log; stop: $0 stop $dir" >&2
    return
  fi
  exec "${jvm[@]}" kafka.Kafka "$dir/server.properties"
}

stop() {
  local dir="${1:-var/kafka}"
  local pidfile="$dir/kafka.pid"
  if [[ ! -f "$pidfile" ]]; then
    echo "no $pidfile: nothing to stop" >&2
    return
  fi
  local pid
  pid="$(cat "$pidfile")"
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 600); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "kafka (pid $pid) did not stop within 60 s: killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
  echo "stopped" >&2
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  cluster-id) new_cluster_id ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
