#!/usr/bin/env bash
# Build and run a local InfluxDB 1.8: the v2 write API and Flux queries envmon speaks.
#
#   deploy/scripts/influxdb.sh fetch                              print the path of influxd
#   deploy/scripts/influxdb.sh start DIR [HTTP_PORT [RPC_PORT]]   run InfluxDB in the foreground
#
# fetch builds influxd 1.8.10 once with `go install` from the Go module proxy (about a
# minute; Debian: apt-get install golang-go) and keeps it in
# ${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/envmon}/influxdb-1.8.10/bin/, the module
# sources in .../envmon/gomod/. start renders deploy/influxdb/influxdb.conf.template into
# DIR/influxdb.conf and runs influxd on 127.0.0.1: HTTP on HTTP_PORT (default 8086), the
# backup RPC service on RPC_PORT (default 8088), data, WAL and meta in DIR, reporting,
# monitoring, continuous queries and authentication off, Flux on. Once /ping answers it
# creates the database envmon. Write with influxdb-client to bucket "envmon/autogen", org
# "-", any token; query with Flux on the same URL. Ctrl-C (SIGTERM) stops it cleanly and
# starting again on the same DIR finds the data. The tests do the same from Python
# (devservers/influxdb.py).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
template="$here/../influxdb/influxdb.conf.template"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

# shellcheck source=../versions.env
source "$here/../versions.env"
version="$INFLUXDB_VERSION"
database="envmon"
cache="${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/envmon}/influxdb-$version"
binary="$cache/bin/influxd"
# shellcheck source=go-server.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-server.sh"

# The same build as devservers/influxdb.py fetch.
fetch() {
  go_fetch influxd "github.com/influxdata/influxdb/cmd/influxd@v$version" \
    "-X main.version=$version -X main.branch=${version%.*} -X main.commit=v$version"
}

# Print the template with each ${NAME} replaced, the value escaped for a TOML string.
render() {
  local text name value
  text="$(cat "$template")"
  while [[ $# -gt 0 ]]; do
    name="$1" value="$2"
    shift 2
    value="${value//\\/\\\\}"
    value="${value//\"/\\\"}"
    text="${text//"\${$name}"/"$value"}"
  done
  printf '%s\n' "$text"
}

create_database() {
  python3 - "$1" "$database" <<'EOF'
import json, sys, urllib.parse, urllib.request
url, database = sys.argv[1:]
body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{database}"'}).encode()
with urllib.request.urlopen(urllib.request.Request(url + "/query", data=body), timeout=30) as r:
    answer = json.loads(r.read())
errors = [result["error"] for result in answer.get("results", []) if "error" in result]
if errors:
    sys.exit(f"CREATE DATABASE {database}: {errors[0]}")
EOF
}

start() {
  local dir="${1:?usage: influxdb.sh start DIR [HTTP_PORT [RPC_PORT]]}"
  local port="${2:-8086}"
  local rpc_port="${3:-8088}"
  local influxd
  influxd="$(fetch)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  render VERSION "$version" DIR "$dir" HOST 127.0.0.1 HTTP_PORT "$port" RPC_PORT "$rpc_port" \
    LOG_LEVEL "${ENVMON_INFLUXDB_LOG_LEVEL:-warn}" > "$dir/influxdb.conf"
  # influxd lets INFLUXDB_* variables override its configuration: not here.
  while read -r name; do unset "$name"; done < <(compgen -e | grep '^INFLUXDB_' || true)
  local url="http://127.0.0.1:$port"
  "$influxd" run -config "$dir/influxdb.conf" &
  local pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
  run_until_ready influxd "$pid" "$url/ping" 204 60
  create_database "$url"
  echo "InfluxDB $version on $url (bucket $database/autogen, org -), data in $dir" >&2
  wait_for "$pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
