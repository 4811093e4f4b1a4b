#!/usr/bin/env bash
# The latency load of compare-redis.sh (100 clients x 10 lines/s, each hearing everyone),
# measured by pollchat-bench and by an independent generator (benches/xcheck/xgen.c: C,
# level-triggered epoll, no pollchat code) in turn, against pollchat and Redis, each server
# fresh and pinned to core 0, the generator to core 1. If the two generators agree, the
# latency is the server's. Prints one line per run, with the CPU seconds that processes
# other than the server and the generator used meanwhile ("others": this machine is shared,
# and a run with others busy measures them too). Every process it starts is stopped, by PID.
set -euo pipefail

usage() {
  echo "usage: scripts/xcheck-latency.sh [--runs N] [--duration SECS] [--out DIR]"
}
runs=3 duration=5 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

source "$(dirname "$0")/lib.sh"
need redis-server redis-server
need cc gcc
need taskset util-linux
need python3 python3
need_two_cores
build_release
out="${out:-target/bench/xcheck-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
cc -O2 -Wall -o "$out/xgen" benches/xcheck/xgen.c

busy() { awk '/^cpu /{print ($2 + $3 + $4 + $7 + $8) / 100}' /proc/stat; }  # user, nice, system, irq, softirq
cpu_of() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }

one() {  # one RUN TOOL PROTO: a fresh server, one generator run, one JSON line
  local run=$1 tool=$2 proto=$3 port result
  port=$(free_port)
  start_server "$proto" "$port" "$out/$proto.log"
  local busy0 server0
  busy0=$(busy); server0=$(cpu_of "$server_pid")
  if [ "$tool" = xgen ]; then
    result=$(/usr/bin/time -f "%U %S" -o "$out/time" taskset -c 1 "$out/xgen" "$proto" "$port" 100 10 "$duration")
  else
    result=$(/usr/bin/time -f "%U %S" -o "$out/time" taskset -c 1 "$pollchat_bench" --json \
      --proto "$proto" --target "127.0.0.1:$port" --conns 100 --senders 100 --senders-receive \
      --rate 1000 --duration "$duration" --hold 0.5)
  fi
  local others
  others=$(python3 -c 'import sys; b0, b1, s0, s1, u, s = map(float, sys.argv[1:]); print(round(b1 - b0 - (s1 - s0) - u - s, 2))' \
    "$busy0" "$(busy)" "$server0" "$(cpu_of "$server_pid")" $(cat "$out/time"))
  stop_server
  python3 -c '
import json, sys
r = json.loads(sys.argv[1])
p = [r.get("p50_us", r.get("latency_us_p50")), r.get("p99_us", r.get("latency_us_p99")), r.get("p999_us", r.get("latency_us_p999"))]
print(json.dumps({"run": int(sys.argv[2]), "tool": sys.argv[3], "proto": sys.argv[4], "delivered": r["delivered"],
                  "expected": r["expected"], "p50_us": p[0], "p99_us": p[1], "p999_us": p[2], "others_cpu_secs": float(sys.argv[5])}))
' "$result" "$run" "$tool" "$proto" "$others" | tee -a "$out/results.jsonl"
}

for run in $(seq "$runs"); do
  for tool in xgen bench; do
    for proto in pollchat redis; do one "$run" "$tool" "$proto"; done
  done
done
echo "results: $out/results.jsonl"
