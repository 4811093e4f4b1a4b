#!/usr/bin/env bash
# Starts a local pollchat cluster: one redis-server and N pollchat instances joined by
# --backplane, on consecutive ports, and prints how to connect. Ctrl-C stops everything it
# started, by PID.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/cluster.sh [N] [--port FIRST] [--channel NAME] [--nick-ttl SECS]

  N           instances to start (default 2), on ports FIRST, FIRST+1, ... (default 7878)
  --channel   the Redis pub/sub channel they share (default pollchat)
  --nick-ttl  --backplane-nick-ttl for every instance (default: pollchat's)

Redis runs on a free loopback port, persistence off. Logs go to target/cluster/.
Needs cargo and redis-server (installed from Debian if missing, as root).
USAGE
}

count=2
first=7878
channel=pollchat
ttl=()
while [ $# -gt 0 ]; do
  case "$1" in
    --port) first="$2"; shift 2 ;;
    --channel) channel="$2"; shift 2 ;;
    --nick-ttl) ttl=(--backplane-nick-ttl "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    [0-9]*) count="$1"; shift ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$count" -lt 1 ]; then
  echo "N must be at least 1" >&2
  exit 2
fi

source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need python3 python3
build_release

logs=target/cluster
mkdir -p "$logs"
trap 'echo; echo "== stopping"; exit 130' INT TERM

redis_port=$(free_port)
: >"$logs/redis.log"
redis_server "$redis_port" "$logs/redis.log"
echo "== redis-server on 127.0.0.1:$redis_port (log: $logs/redis.log)"

url="redis://127.0.0.1:$redis_port/$channel"
for i in $(seq 0 $((count - 1))); do
  port=$((first + i))
  "$pollchat" --bind "127.0.0.1:$port" --backplane "$url" "${ttl[@]}" \
    2>"$logs/instance-$i.log" &
  pids+=($!)
  wait_for_port "$port"
  echo "== instance $i on 127.0.0.1:$port (log: $logs/instance-$i.log)"
done

echo
echo "One chat on $count instances, through $url. Connect to any of them:"
for i in $(seq 0 $((count - 1))); do
  echo "  nc 127.0.0.1 $((first + i))"
done
echo "Watch the channel: redis-cli -p $redis_port subscribe $channel"
echo "Ctrl-C stops everything."
wait
