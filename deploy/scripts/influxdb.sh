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
# (stream/influxdb.py).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
template="$here/../influxdb/influxdb.conf.template"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }

# Keep in step with INFLUXDB_VERSION in stream/influxdb.py.
version="1.8.10"
database="envmon"
cache_root="${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/envmon}"
cache="$cache_root/influxdb-$version"
binary="$cache/bin/influxd"

go_bin() {
  if command -v go >/dev/null 2>&1; then
    command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then
    echo /usr/local/go/bin/go
  else
    echo "go is not installed: it builds influxd once (Debian: apt-get install golang-go)" >&2
    exit 1
  fi
}

fetch() {
  if [[ -f "$binary" ]]; then
    echo "$binary"
    return
  fi
  local go
  go="$(go_bin)"
  mkdir -p "$cache_root"
  staging="$(mktemp -d "$cache_root/.influxdb-$version-XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  echo "building influxd $version with $go (once; about a minute)" >&2
  # The same build as stream/influxdb.py fetch: two packages at a time, the machine's Go.
  if ! (cd "$staging" && GOBIN="$staging" GOMODCACHE="$cache_root/gomod" GOFLAGS="-p=2 -modcacherw" \
        GOTOOLCHAIN=local "$go" install \
        -ldflags "-X main.version=$version -X main.branch=${version%.*} -X main.commit=v$version" \
        "github.com/influxdata/influxdb/cmd/influxd@v$version") >&2 \
     || [[ ! -f "$staging/influxd" ]]; then
    echo "could not build influxd $version from the Go module proxy" >&2
    exit 1
  fi
  mkdir -p "$cache/bin"
  mv "$staging/influxd" "$binary"
  echo "$binary"
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

ping_ok() {
  python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/ping", timeout=1) as response:
        sys.exit(0 if response.status == 204 else 1)
except OSError:
    sys.exit(1)
EOF
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
  local tries=0
  until ping_ok "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || true
      echo "influxd exited at start" >&2
      exit 1
    fi
    tries=$((tries + 1))
    if (( tries > 600 )); then
      kill -TERM "$pid" 2>/dev/null || true
      echo "influxd did not answer on $url/ping within 60 s" >&2
      exit 1
    fi
    sleep 0.1
  done
  create_database "$url"
  echo "InfluxDB $version on $url (bucket $database/autogen, org -), data in $dir" >&2
  # wait returns early when a trapped signal arrives: wait until influxd has really ended.
  local status=0
  while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" && status=0 || status=$?
  done
  return "$status"
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
