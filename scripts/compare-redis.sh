#!/usr/bin/env bash
# Runs the same scenarios against pollchat and Redis pub/sub, with the server pinned to one
# core and the load generator (pollchat-bench) to the other, and prints a table of
# pollchat/Redis ratios. Writes results.jsonl, results.md and compare.png to the output
# directory. Every process it starts is stopped, by PID, when it exits (or on Ctrl-C).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/compare-redis.sh [--runs N] [--duration SECS] [--idle-conns N] [--receivers N]
                                [--scenarios "idle fanout-line ..."] [--out DIR]

Scenarios:
  idle            N idle connections (--idle-conns, default 10000): memory per connection,
                  the server's RSS and the kernel's socket memory
  fanout-line     1 sender, --receivers receivers (default 1000), 64-byte lines as fast as
                  the server takes them, with a window of 64 lines (a line is in flight
                  until every receiver has it); the sender writes each line with its own
                  write(2), as nc and people do
  fanout-batch    the same, but the sender writes every line its window allows in one write
  fanout-trickle  100 senders among 1,000 connections, each with a window of 1 line, one
                  write per line: many people talking at once, as fast as it goes
  latency         100 clients each sending 10 lines/s and receiving everyone else's (99,000
                  deliveries/s): latency at a modest load
  chatty          500 clients each sending 5 lines/s and receiving everyone else's: latency
                  with both servers near a full core
Redis clients that send publish on one connection and subscribe on a second (a subscribed
connection cannot PUBLISH). Every scenario runs --runs times (default 3) against each
server, alternating which goes first; the table gives medians.

Writes results.jsonl, results.md (with the date, lscpu and what limited each run) and
compare.png. Needs: cargo, taskset, python3, gnuplot and redis-server (installed from
Debian if missing, as root). Uses loopback only; every run is bounded in time.
USAGE
}

duration=5
runs=3
scenarios="idle fanout-line fanout-batch fanout-trickle latency chatty"
idle_conns=10000
receivers=1000
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --idle-conns) idle_conns="$2"; shift 2 ;;
    --receivers) receivers="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

[ -n "$out" ] && out=$(realpath -m "$out")  # before lib.sh moves to the repository root
source "$(dirname "$0")/lib.sh"
out="${out:-target/bench/compare-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
need redis-server redis-server
need gnuplot gnuplot-nox
need taskset util-linux
need python3 python3
need_two_cores
build_release

run() {  # run SCENARIO PROTO RUN BENCH_ARGS...: one fresh server, one generator run, one JSON line
  local scenario=$1 proto=$2 n=$3
  shift 3
  local port
  port=$(free_port)
  start_server "$proto" "$port" "$out/$proto.log"
  echo "== $scenario: $proto (run $n)"
  bench "$proto" "$port" "$@" \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); r["scenario"] = sys.argv[1]; r["run"] = int(sys.argv[2]); print(json.dumps(r))' "$scenario" "$n" \
    | tee -a "$out/results.jsonl"
  stop_server
}

: > "$out/results.jsonl"
{ date -u +%Y-%m-%dT%H:%M:%SZ; lscpu; redis-server --version; } >"$out/machine.txt"
# Each scenario against both servers in turn, so the two runs of a pair see the same machine;
# odd runs start with pollchat, even runs with Redis.
for n in $(seq "$runs"); do
  for scenario in $scenarios; do
    case "$scenario" in
      idle) args=(--conns "$idle_conns" --senders 1 --rate 1 --duration 0 --hold 2) ;;
      fanout-line) args=(--conns $((receivers + 1)) --senders 1 --rate max --window 64 --writes line --hold 0.5) ;;
      fanout-batch) args=(--conns $((receivers + 1)) --senders 1 --rate max --window 64 --writes batch --hold 0.5) ;;
      fanout-trickle) args=(--conns 1000 --senders 100 --rate max --window 1 --writes line --hold 0.5) ;;
      latency) args=(--conns 100 --senders 100 --senders-receive --rate 1000 --writes line --hold 0.5) ;;
      chatty) args=(--conns 500 --senders 500 --senders-receive --rate 2500 --writes line --hold 0.5) ;;
      *) echo "unknown scenario: $scenario" >&2; exit 2 ;;
    esac
    [ "$scenario" = idle ] || args+=(--duration "$duration")
    if [ $((n % 2)) = 1 ]; then order="pollchat redis"; else order="redis pollchat"; fi
    for proto in $order; do run "$scenario" "$proto" "$n" "${args[@]}"; done
  done
done

python3 scripts/compare-table.py "$out"
gnuplot "$out/chart.gp"
echo
echo "results: $out/results.jsonl, $out/results.md, $out/compare.png"
