#!/usr/bin/env bash
# Build and run a local Prometheus Alertmanager for envmon's optional forwarder.
#
#   deploy/scripts/alertmanager.sh fetch                 print the path of the alertmanager binary
#   deploy/scripts/alertmanager.sh start DIR [PORT]      run Alertmanager in the foreground
#
# fetch builds Alertmanager 0.31.1 once with `go install` from the Go module proxy (about a
# minute on two cores; Debian: apt-get install golang-go) and keeps it in
# ${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/envmon}/alertmanager-0.31.1/bin/, the module
# sources in .../envmon/gomod/. Later releases do not build this way: their module lacks the
# embedded web UI. start writes DIR/alertmanager.yml (one route to a receiver that sends
# nothing; resolve_timeout from ENVMON_ALERTMANAGER_RESOLVE_TIMEOUT, default 5m) and runs
# Alertmanager on 127.0.0.1:PORT (default 9093) with clustering off and its silences and
# notification log in DIR/data. Post alerts to http://127.0.0.1:PORT/api/v2/alerts; the UI is on
# the same URL. Ctrl-C (SIGTERM) stops it cleanly. The tests do the same from Python
# (devservers/alertmanager.py).
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../versions.env
source "$here/../versions.env"
version="$ALERTMANAGER_VERSION"
cache="${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/envmon}/alertmanager-$version"
binary="$cache/bin/alertmanager"
# shellcheck source=go-server.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-server.sh"

fetch() {
  go_fetch alertmanager "github.com/prometheus/alertmanager/cmd/alertmanager@v$version" \
    "-X github.com/prometheus/common/version.Version=$version"
}

start() {
  local dir="${1:?usage: alertmanager.sh start DIR [PORT]}"
  local port="${2:-9093}"
  local resolve_timeout="${ENVMON_ALERTMANAGER_RESOLVE_TIMEOUT:-5m}"
  local alertmanager
  alertmanager="$(fetch)"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  cat > "$dir/alertmanager.yml" <<EOF
# Written by deploy/scripts/alertmanager.sh: alerts are kept and shown, never sent on.
global:
  resolve_timeout: $resolve_timeout
route:
  receiver: "null"
receivers:
  - name: "null"
EOF
  local url="http://127.0.0.1:$port"
  "$alertmanager" --config.file="$dir/alertmanager.yml" --storage.path="$dir/data" \
    --web.listen-address="127.0.0.1:$port" --cluster.listen-address= \
    --log.level="${ENVMON_ALERTMANAGER_LOG_LEVEL:-warn}" &
  local pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
  run_until_ready alertmanager "$pid" "$url/-/ready" 200 30
  echo "Alertmanager $version on $url (resolve_timeout $resolve_timeout), data in $dir" >&2
  wait_for "$pid"
}

case "${1:-}" in
  fetch) fetch ;;
  start) shift; start "$@" ;;
  -h|--help|help) usage ;;
  *) usage >&2; exit 2 ;;
esac
