# Shared by the scripts that build a server from the Go module proxy and run it in the
# foreground (influxdb.sh, alertmanager.sh); sourced, not run. Each script sets `version`,
# `cache`, `binary` and calls:
#
#   go_fetch NAME MODULE@VERSION LDFLAGS   build NAME once into $binary, print its path
#   http_ok URL STATUS                     exit 0 if GET URL answers STATUS within 1 s
#   run_until_ready NAME PID URL STATUS SECONDS
#                                          wait until URL answers, or fail naming NAME
#   wait_for PID                           wait until PID has really ended; its status
#
# Builds share ${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/envmon}/gomod (module
# sources), use two packages at a time and the machine's Go (Debian: golang-go).

cache_root="${ENVMON_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/envmon}"

go_bin() {
  if command -v go >/dev/null 2>&1; then
    command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then
    echo /usr/local/go/bin/go
  else
    echo "go is not installed: it builds $1 once (Debian: apt-get install golang-go)" >&2
    exit 1
  fi
}

go_fetch() {
  local name="$1" module="$2" ldflags="$3"
  if [[ -f "$binary" ]]; then
    echo "$binary"
    return
  fi
  local go
  go="$(go_bin "$name")"
  # global, not local: the EXIT trap below runs after this function has returned
  mkdir -p "$cache_root"
  staging="$(mktemp -d "$cache_root/.$name-$version-XXXXXX")"
  trap 'rm -rf "$staging"' EXIT
  echo "building $name $version with $go (once; about a minute)" >&2
  if ! (cd "$staging" && GOBIN="$staging" GOMODCACHE="$cache_root/gomod" GOFLAGS="-p=2 -modcacherw" \
        GOTOOLCHAIN=local "$go" install -ldflags "$ldflags" "$module") >&2 \
     || [[ ! -f "$staging/$name" ]]; then
    echo "could not build $name $version from the Go module proxy" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$binary")"
  mv "$staging/$name" "$binary"
  echo "$binary"
}

http_ok() {
  python3 - "$1" "$2" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=1) as response:
        sys.exit(0 if response.status == int(sys.argv[2]) else 1)
except OSError:
    sys.exit(1)
PY
}

run_until_ready() {
  local name="$1" pid="$2" url="$3" status="$4" seconds="$5" tries=0
  until http_ok "$url" "$status"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || true
      echo "$name exited at start" >&2
      exit 1
    fi
    tries=$((tries + 1))
    if (( tries > seconds * 10 )); then
      kill -TERM "$pid" 2>/dev/null || true
      echo "$name did not answer on $url within $seconds s" >&2
      exit 1
    fi
    sleep 0.1
  done
}

wait_for() {
  # wait returns early when a trapped signal arrives: wait until the process has really ended.
  local pid="$1" status=0
  while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" && status=0 || status=$?
  done
  return "$status"
}
