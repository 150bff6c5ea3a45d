#!/usr/bin/env bash
# Fetch and run a local QuestDB: a real server that speaks the InfluxDB v2 write API.
#
#   deploy/scripts/questdb.sh fetch                   print the path of the QuestDB jar
#   deploy/scripts/questdb.sh start DIR [HTTP_PORT]   run QuestDB in the foreground
#
# fetch resolves org.questdb:questdb (version pinned in deploy/versions.env) from Maven
# Central with `mvn dependency:copy-dependencies` once and keeps it in
# ${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/envmon}/questdb-<version>/.
# start writes DIR/conf/server.conf and runs the jar with the machine's Java 17 and a small
# heap (QUESTDB_HEAP, default 256m): HTTP (write API on /api/v2/write, SQL on /exec, web
# console on /) on 127.0.0.1:HTTP_PORT (default 9000), the PostgreSQL wire protocol on
# 127.0.0.1:$QUESTDB_PG_PORT only if that is set, ILP over TCP/UDP, the minimal health
# server and telemetry off. Data stays in DIR: Ctrl-C (SIGTERM) stops it cleanly and
# starting again on the same DIR finds it. The tests do the same from Python
# (devservers/questdb.py); create the readings table with its deduplication keys first
# (devservers.questdb.create_readings_table), or the first write creates one without them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/../questdb/pom.xml"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

# shellcheck source=../versions.env
source "$here/../versions.env"
version="$QUESTDB_VERSION"
cache_root="${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/envmon}"
cache="$cache_root/questdb-$version"
jar="$cache/questdb-$version.jar"

fetch() {
  if [[ -f "$jar" ]]; then
    echo "$jar"
    return
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    echo "mvn is not installed (Debian: apt-get install maven)" >&2
    exit 1
  fi
  mkdir -p "$cache_root"
  staging="$(mktemp -d "$cache_root/.questdb-$version-XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  cmd=(mvn -B -q -Dstyle.color=never -f "$pom" dependency:copy-dependencies "-DoutputDirectory=$staging"
       "-Dquestdb.version=$version"
       -DincludeScope=runtime)
  if ! "${cmd[@]}" >&2 || [[ ! -f "$staging/questdb-$version.jar" ]]; then
    echo "could not fetch QuestDB $version from Maven Central: ${cmd[*]}" >&2
    exit 1
  fi
  mkdir -p "$cache"
  mv "$staging/questdb-$version.jar" "$jar"
  echo "$jar"
}

start() {
  local dir="${1:?usage: questdb.sh start DIR [HTTP_PORT]}"
  local port="${2:-9000}"
  local jar_path
  jar_path="$(fetch)"
  local java="java"
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then java="$JAVA_HOME/bin/java"; fi
  if ! command -v "$java" >/dev/null 2>&1; then
    echo "java is not installed (Debian: apt-get install openjdk-17-jre)" >&2
    exit 1
  fi
  mkdir -p "$dir/conf"
  dir="$(cd "$dir" && pwd)"
  # The same settings as devservers/questdb.py render_config.
  {
    echo "# written by deploy/scripts/questdb.sh: a local QuestDB for development"
    echo "config.validation.strict=true"
    echo "http.net.bind.to=127.0.0.1:$port"
    echo "http.min.enabled=false"
    echo "line.tcp.enabled=false"
    echo "line.udp.enabled=false"
    echo "telemetry.enabled=false"
    echo "metrics.enabled=false"
    if [[ -n "${QUESTDB_PG_PORT:-}" ]]; then
      echo "pg.enabled=true"
      echo "pg.net.bind.to=127.0.0.1:$QUESTDB_PG_PORT"
    else
      echo "pg.enabled=false"
    fi
  } > "$dir/conf/server.conf"
  echo "QuestDB $version on http://127.0.0.1:$port, data and configuration in $dir" >&2
  exec "$java" -Xms32m "-Xmx${QUESTDB_HEAP:-256m}" -XX:+UseParallelGC -Dfile.encoding=UTF-8 \
    -cp "$jar_path" io.questdb.ServerMain -d "$dir"
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
