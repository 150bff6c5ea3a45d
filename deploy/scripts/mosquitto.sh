#!/usr/bin/env bash
# Start a local Mosquitto for development with envmon's shipped configuration.
#
#   deploy/scripts/mosquitto.sh [--port PORT] [--dir DIR] [--daemon]
#
# Listens on 127.0.0.1:PORT (default 1883) and keeps its persistence database, its log and
# the generated configuration in DIR (default var/mosquitto). The durability and queue
# settings of deploy/mosquitto/mosquitto.conf are kept; its listener, paths,
# authentication and logging lines are replaced (anonymous clients are allowed: this is
# for a developer's machine). Stop it with Ctrl-C (or `kill $(cat DIR/mosquitto.pid)` with
# --daemon): on SIGTERM Mosquitto saves its sessions and queued messages, and starting it
# again on the same DIR resumes them. The tests do the same from Python
# (devservers/mosquitto.py).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shipped="$here/../mosquitto/mosquitto.conf"
port=1883
dir="var/mosquitto"
daemon=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --daemon) daemon=1; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done

binary="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
if [[ ! -x "$binary" ]]; then
  echo "mosquitto is not installed (Debian: apt-get install mosquitto mosquitto-clients)" >&2
  exit 1
fi

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
conf="$dir/mosquitto.conf"

# The site-specific keys of the shipped file (same list as devservers/mosquitto.py).
site_keys='^(listener|port|bind_address|persistence_location|password_file|acl_file|allow_anonymous|cafile|capath|certfile|keyfile|require_certificate|use_identity_as_username|tls_version|log_dest|pid_file|user|include_dir)([[:space:]]|$)'
{
  grep -Ev "$site_keys" "$shipped"
  echo
  echo "# -- local broker (written by deploy/scripts/mosquitto.sh) --"
  echo "listener $port 127.0.0.1"
  echo "allow_anonymous true"
  echo "persistence_location $dir/"
  if [[ $daemon -eq 1 ]]; then
    echo "log_dest file $dir/mosquitto.log"
    echo "pid_file $dir/mosquitto.pid"
  else
    echo "log_dest stdout"
  fi
  # As root, Mosquitto switches to the 'mosquitto' user, which cannot write to DIR.
  if [[ $(id -u) -eq 0 ]]; then echo "user root"; fi
} > "$conf"

echo "mosquitto on 127.0.0.1:$port, data and configuration in $dir" >&2
if [[ $daemon -eq 1 ]]; then
  exec "$binary" -c "$conf" -d
fi
exec "$binary" -c "$conf"
