#!/usr/bin/env bash
# Instructions per delivery of two server binaries under the same fan-out, counted by
# valgrind's callgrind: a figure a busy machine does not move, where a timed A/B
# (scripts/ab.sh) needs a quiet one. For each sender shape (one write per line, the window
# in one write) and each binary in turn: a fresh server under callgrind, pollchat-bench
# fanning 64-byte lines out to 1,000 receivers, the server's `lines_out` from its stats
# datagram, then SIGTERM (callgrind writes its totals on exit). The figure includes the
# start-up and the 1,001 connects, a few million instructions, in both. Loopback only; each
# run is bounded by --duration; every process it starts is stopped, by PID. --a-args and
# --b-args add server flags to one side only (the same binary with and without a feature:
# --a-args "" --b-args "--state-dir DIR"); both default to "--history 0".
set -euo pipefail

usage() {
  echo "usage: scripts/callgrind-ab.sh --a BINARY --b BINARY [--duration SECS] [--generator BINARY]"
  echo "                                 [--a-args \"FLAGS\"] [--b-args \"FLAGS\"]"
}
a="" b="" duration=5 generator="" a_args="--history 0" b_args="--history 0"
while [ $# -gt 0 ]; do
  case "$1" in
    --a) a=$(realpath "$2"); shift 2 ;;
    --b) b=$(realpath "$2"); shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --generator) generator=$(realpath "$2"); shift 2 ;;
    --a-args) a_args="$2"; shift 2 ;;
    --b-args) b_args="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[ -n "$a" ] && [ -n "$b" ] || { usage >&2; exit 2; }

source "$(dirname "$0")/lib.sh"
need valgrind valgrind
need python3 python3
server=$a
binaries
out=$(mktemp -d)

stats_of() {  # stats_of PORT: the server's lines_out, from its stats datagram
  python3 - "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(30)
s.sendto(b"stats", ("127.0.0.1", int(sys.argv[1])))
print(json.loads(s.recv(65536))["lines_out"])
PY
}

for shape in line batch; do
  for label in A B; do
    bin=$a extra=$a_args; [ "$label" = B ] && bin=$b extra=$b_args
    port=$((20000 + RANDOM % 20000)); sport=$((port + 1))
    # shellcheck disable=SC2086 # --a-args and --b-args are split into flags on purpose
    valgrind --tool=callgrind --callgrind-out-file="$out/$label-$shape.out" "$bin" \
      --bind "127.0.0.1:$port" --rate 0 --quiet-joins --log-level warn $extra \
      --stats-udp "127.0.0.1:$sport" 2>"$out/$label-$shape.log" &
    server_pid=$!
    for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    "${generator_cmd[@]}" --json --target "127.0.0.1:$port" --size 64 --duration "$duration" \
      --hold 1 --conns 1001 --senders 1 --rate max --window 64 --writes "$shape" >/dev/null
    deliveries=$(stats_of "$sport")
    stop_server
    ir=$(grep -E '^(summary|totals):' "$out/$label-$shape.out" | head -1 | awk '{print $2}')
    python3 -c 'import sys; l, s, ir, d = sys.argv[1:]; print("%s %-5s %5.1f instructions per delivery (%s deliveries)" % (l, s, int(ir) / int(d), d))' \
      "$label" "$shape" "$ir" "$deliveries"
  done
done
rm -rf "$out"
