#!/usr/bin/env bash
# A/B of two pollchat server binaries under the same loads, alternating, in one session:
# the way to show that a change costs nothing (or what it costs). Each run starts a fresh
# server pinned to core 0 and drives it with one generator binary pinned to core 1, so only
# the server differs. Prints per-run figures and the medians, and writes results.jsonl.
# Every process it starts is stopped, by PID, when it exits (or on Ctrl-C).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/ab.sh --a BINARY --b BINARY [--runs N] [--duration SECS] [--generator BINARY]
                     [--loads "fanout-line ..."] [--server-args "..."] [--out DIR]

Loads, each run against A and B in turn (A first in odd runs, B first in even ones):
  fanout-line     1 sender, 1,000 receivers, 64-byte lines as fast as the server takes them
                  (--rate max, a window of 64), each line in a write(2) of its own, as nc
                  and people send: deliveries/s, lines per server write, CPU per delivery
  fanout-batch    the same, the sender writing every line its window allows in one write
  fanout-trickle  100 senders among 1,000 connections, a window of 1 line each, one write
                  per line
  latency         100 clients each sending 10 lines/s and receiving everyone else's
                  (99,000 deliveries/s): p50 and p99 latency, server CPU per delivery
A change to how the server reads or writes must be judged on every sender shape: the batched
sender alone once hid a 0.62x fan-out regression. --loads picks some (default: all four).

--runs (default 3) runs of each load per binary; --duration (default 5) seconds of traffic
each. The generator defaults to target/release/pollchat-bench (built first; a --generator
named pollchat, from before pollchat-bench, runs as `pollchat bench`). Needs taskset and
python3; loopback only, every run bounded in time.
USAGE
}

a="" b="" runs=3 duration=5 generator="" out=""
loads="fanout-line fanout-batch fanout-trickle latency" server_args=""
while [ $# -gt 0 ]; do
  case "$1" in
    --a) a=$(realpath "$2"); shift 2 ;;
    --b) b=$(realpath "$2"); shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --generator) generator=$(realpath "$2"); shift 2 ;;
    --loads) loads="$2"; shift 2 ;;
    --server-args) server_args="$2"; shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -z "$a" ] || [ -z "$b" ]; then usage >&2; exit 2; fi

source "$(dirname "$0")/lib.sh"
need taskset util-linux
need python3 python3
need_two_cores
if [ -z "$generator" ]; then build_release; generator=$(realpath "$pollchat_bench"); fi
generator_command
out="${out:-target/bench/ab-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

one() {  # one LABEL BINARY LOAD: a fresh server, one generator run, one JSON line
  local label=$1 binary=$2 load=$3 port
  port=$(free_port)
  # shellcheck disable=SC2086 # --server-args is split into flags on purpose
  taskset -c 0 "$binary" --bind "127.0.0.1:$port" --rate 0 --quiet-joins --log-level warn \
    $server_args 2>>"$out/server-$label.log" &
  server_pid=$!
  wait_for_port "$port"
  local args
  case "$load" in
    fanout-line) args=(--conns 1001 --senders 1 --rate max --window 64 --writes line) ;;
    fanout-batch) args=(--conns 1001 --senders 1 --rate max --window 64 --writes batch) ;;
    fanout-trickle) args=(--conns 1000 --senders 100 --rate max --window 1 --writes line) ;;
    latency) args=(--conns 100 --senders 100 --senders-receive --rate 1000 --writes line) ;;
    *) echo "unknown load: $load" >&2; exit 2 ;;
  esac
  taskset -c 1 "${generator_cmd[@]}" --json --target "127.0.0.1:$port" --server-pid "$server_pid" \
    --size 64 --duration "$duration" --hold 1 "${args[@]}" \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); r["label"], r["load"] = sys.argv[1:3]; print(json.dumps(r))' \
      "$label" "$load" | tee -a "$out/results.jsonl" >/dev/null
  stop_server
  echo "   $label $load done"
}

echo "== A: $a"
echo "== B: $b"
for run in $(seq "$runs"); do
  echo "== run $run of $runs"
  for load in $loads; do
    if [ $((run % 2)) = 1 ]; then one A "$a" "$load"; one B "$b" "$load"
    else one B "$b" "$load"; one A "$a" "$load"; fi
  done
done

python3 - "$out/results.jsonl" <<'PY' | tee "$out/results.md"
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def ns_per_delivery(r):
    return 1e9 * r["server_cpu_secs"] / max(r["delivered"], 1)
print("| load | server | deliveries/s, per run (median) | deliveries per server write (median) | server CPU per delivery, ns (median) | p50 / p99 latency, ms (median p99) | every line delivered |")
print("|---|---|---|---|---|---|---|")
medians = {}
loads = list(dict.fromkeys(r["load"] for r in rows))
for load in loads:
    for label in ("A", "B"):
        rs = [r for r in rows if r["load"] == load and r["label"] == label]
        rate = [r["deliveries_per_sec"] for r in rs]
        cpu = [ns_per_delivery(r) for r in rs]
        p99 = [r["latency_us_p99"] / 1000 for r in rs]
        lpw = [r.get("lines_per_write", 0) for r in rs]
        lat = ", ".join(f'{r["latency_us_p50"]/1000:.2f} / {r["latency_us_p99"]/1000:.2f}' for r in rs)
        lossless = all(r["delivered"] == r["expected"] for r in rs)
        medians[load, label] = (statistics.median(rate), statistics.median(cpu), statistics.median(p99), statistics.median(lpw))
        print(f'| {load} | {label} | {", ".join(f"{x/1e6:.2f} M" for x in rate)} ({statistics.median(rate)/1e6:.2f} M) '
              f'| {", ".join(f"{x:.1f}" for x in lpw)} ({statistics.median(lpw):.1f}) '
              f'| {", ".join(f"{x:.1f}" for x in cpu)} ({statistics.median(cpu):.1f}) | {lat} ({statistics.median(p99):.2f}) | {"yes" if lossless else "NO"} |')
print()
for load in loads:
    (ra, ca, pa, la), (rb, cb, pb, lb) = medians[load, "A"], medians[load, "B"]
    print(f"{load}: B/A deliveries/s {rb/ra:.3f}, deliveries per write {lb/max(la, 1e-9):.3f}, server CPU per delivery {cb/ca:.3f}, p99 {pb/pa:.3f}")
PY
