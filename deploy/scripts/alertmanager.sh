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
# (tests/servers/alertmanager.py).
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

# Keep in step with ALERTMANAGER_VERSION in tests/servers/alertmanager.py.
version="0.31.1"
cache_root="${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/envmon}"
cache="$cache_root/alertmanager-$version"
binary="$cache/bin/alertmanager"

go_bin() {
  if command -v go >/dev/null 2>&1; then
    command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then
    echo /usr/local/go/bin/go
  else
    echo "go is not installed: it builds alertmanager once (Debian: apt-get install golang-go)" >&2
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
  staging="$(mktemp -d "$cache_root/.alertmanager-$version-XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  echo "building alertmanager $version with $go (once; about a minute)" >&2
  # Two packages at a time, the machine's Go, module sources shared with the other builds.
  if ! (cd "$staging" && GOBIN="$staging" GOMODCACHE="$cache_root/gomod" GOFLAGS="-p=2 -modcacherw" \
        GOTOOLCHAIN=local "$go" install \
        -ldflags "-X github.com/prometheus/common/version.Version=$version" \
        "github.com/prometheus/alertmanager/cmd/alertmanager@v$version") >&2 \
     || [[ ! -f "$staging/alertmanager" ]]; then
    echo "could not build alertmanager $version from the Go module proxy" >&2
    exit 1
  fi
  mkdir -p "$cache/bin"
  mv "$staging/alertmanager" "$binary"
  echo "$binary"
}

ready_ok() {
  python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/-/ready", timeout=1) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
EOF
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
  local tries=0
  until ready_ok "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || true
      echo "alertmanager exited at start" >&2
      exit 1
    fi
    tries=$((tries + 1))
    if (( tries > 300 )); then
      kill -TERM "$pid" 2>/dev/null || true
      echo "alertmanager did not answer on $url/-/ready within 30 s" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "Alertmanager $version on $url (resolve_timeout $resolve_timeout), data in $dir" >&2
  # wait returns early when a trapped signal arrives: wait until alertmanager has really ended.
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
