#!/usr/bin/env bash
# What fan-out to a room costs the server: one room of 1,000 receivers against 100 rooms of
# 10 (and, as a control, one room of 10 with nobody else connected), in one session, runs
# alternating, each against a fresh server pinned to core 0 with the generator on core 1.
# Prints deliveries/s and the server's CPU per delivery and per line, and writes
# results.jsonl and results.md. Every process it starts is stopped, by PID, when it exits.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/rooms.sh [--runs N] [--duration SECS] [--server BINARY] [--generator BINARY]
                        [--loads LIST] [--callgrind] [--out DIR]

Loads (--loads, comma-separated; default all three), 64-byte lines at --rate max:
  one-room    1 sender, 1,000 receivers, everyone in #lobby (--rooms 1), window 64
  100-rooms   100 senders, 1,000 receivers over 100 rooms (--rooms 100): each room has
              1 sender and 10 receivers, each sender a window of 64
  small-room  1 sender, 10 receivers, window 6400: one room of 10 and nobody else, so that
              each line has as many receivers as in 100-rooms (control)
Each keeps 64,000 deliveries in flight at most. A line is expected by its own room only,
and a line heard in another room is counted ("other rooms" below): it must be 0.

--runs (default 3) runs of each load; --duration (default 5) seconds of traffic each.
--server and --generator default to target/release/pollchat and pollchat-bench (built first;
a --generator named pollchat, from before pollchat-bench, runs as `pollchat bench`). --callgrind
also counts the server's instructions (valgrind --tool=callgrind, one run per load, the
counters zeroed once every connection is in; they include the disconnects at the end).
Needs taskset and python3 (valgrind for --callgrind); loopback only, every run bounded.
USAGE
}

runs=3 duration=5 server="" generator="" loads="one-room,100-rooms,small-room"
callgrind=false out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --server) server=$(realpath "$2"); shift 2 ;;
    --generator) generator=$(realpath "$2"); shift 2 ;;
    --loads) loads="$2"; shift 2 ;;
    --callgrind) callgrind=true; shift ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

source "$(dirname "$0")/lib.sh"
need taskset util-linux
need python3 python3
need_two_cores
if $callgrind; then need valgrind valgrind; fi
binaries
out="${out:-target/bench/rooms-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
IFS=, read -r -a load_list <<<"$loads"

load_args() {  # load_args LOAD HOLD: the generator's flags for LOAD (into the array `args`)
  case "$1" in
    one-room) args=(--conns 1001 --senders 1 --rooms 1 --window 64) ;;
    100-rooms) args=(--conns 1100 --senders 100 --rooms 100 --window 64) ;;
    small-room) args=(--conns 11 --senders 1 --rooms 1 --window 6400) ;;
    *) echo "unknown load: $1" >&2; exit 2 ;;
  esac
  args+=(--rate max --size 64 --hold "$2")
}

label() {  # label LOAD RESULT_FILE: adds the load's name to the one JSON line on stdin
  python3 -c 'import json, sys; r = json.load(sys.stdin); r["load"] = sys.argv[1]; print(json.dumps(r))' \
    "$1" | tee -a "$2" >/dev/null
}

one() {  # one LOAD: a fresh server, one timed generator run
  local load=$1 port
  load_args "$load" 1
  port=$(free_port)
  taskset -c 0 "$server" --bind "127.0.0.1:$port" --rate 0 --quiet-joins --log-level warn \
    2>>"$out/server.log" &
  server_pid=$!
  wait_for_port "$port"
  taskset -c 1 "${generator_cmd[@]}" --json --target "127.0.0.1:$port" --server-pid "$server_pid" \
    --duration "$duration" "${args[@]}" | label "$load" "$out/results.jsonl"
  stop_server
  echo "   $load done"
}

counted() {  # counted LOAD: one run with the server under callgrind
  local load=$1 port conns
  load_args "$load" 4
  conns=${args[1]}
  port=$(free_port)
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$load.%p" \
    "$server" --bind "127.0.0.1:$port" --rate 0 --quiet-joins --log-level warn \
    2>>"$out/valgrind.log" &
  server_pid=$!
  wait_for_port "$port"
  taskset -c 1 "${generator_cmd[@]}" --json --target "127.0.0.1:$port" --duration "$duration" \
    "${args[@]}" | label "$load" "$out/callgrind.jsonl" &
  local bench_pid=$!
  pids+=("$bench_pid")
  # The counters start once every connection is in (the hold), so connecting is not counted.
  for _ in $(seq 300); do
    [ "$(ss -Htn state established "( sport = :$port )" | wc -l)" -ge "$conns" ] && break
    sleep 0.1
  done
  sleep 1
  callgrind_control --zero "$server_pid" >/dev/null 2>&1
  wait "$bench_pid"
  sleep 2  # the server handles the generator's resets
  callgrind_control --dump "$server_pid" >/dev/null 2>&1
  stop_server
  echo "   $load counted"
}

echo "== server: $server"
echo "== generator: $generator"
: >"$out/results.jsonl"
{ date -u +%Y-%m-%dT%H:%M:%SZ; lscpu; } >"$out/machine.txt"
for run in $(seq "$runs"); do
  echo "== run $run of $runs"
  order=("${load_list[@]}")
  # Alternate the order, so no load always runs first (or last) on a drifting machine.
  if [ $((run % 2)) = 0 ]; then
    order=(); for ((i = ${#load_list[@]} - 1; i >= 0; i--)); do order+=("${load_list[$i]}"); done
  fi
  for load in "${order[@]}"; do one "$load"; done
done
if $callgrind; then
  : >"$out/callgrind.jsonl"
  echo "== callgrind"
  for load in "${load_list[@]}"; do counted "$load"; done
fi

python3 - "$out" <<'PY' | tee "$out/results.md"
import glob, json, os, re, statistics, sys
out = sys.argv[1]
rows = [json.loads(line) for line in open(os.path.join(out, "results.jsonl"))]
loads = list(dict.fromkeys(r["load"] for r in rows))
counted = {}
if os.path.exists(os.path.join(out, "callgrind.jsonl")):
    for r in map(json.loads, open(os.path.join(out, "callgrind.jsonl"))):
        dumps = [f for f in glob.glob(os.path.join(out, f"callgrind.{r['load']}.*")) if re.search(r"\.\d+\.\d+$", f)]
        for line in open(max(dumps, key=os.path.getmtime)) if dumps else []:
            if line.startswith("summary:"):
                counted[r["load"]] = (int(line.split()[1]), r)
print("| load | deliveries/s, per run (median) | server CPU per delivery, ns (median) | per line, us (median) | other rooms | every line delivered |")
print("|---|---|---|---|---|---|")
med = {}
for load in loads:
    rs = [r for r in rows if r["load"] == load]
    rate = [r["deliveries_per_sec"] for r in rs]
    ns = [1e9 * r["server_cpu_secs"] / max(r["delivered"], 1) for r in rs]
    line_us = [1e6 * r["server_cpu_secs"] / max(r["sent"], 1) for r in rs]
    med[load] = statistics.median(ns)
    print(f'| {load} | {", ".join(f"{x/1e6:.2f} M" for x in rate)} ({statistics.median(rate)/1e6:.2f} M) '
          f'| {", ".join(f"{x:.1f}" for x in ns)} ({med[load]:.1f}) '
          f'| {statistics.median(line_us):.2f} | {sum(r["foreign_lines"] for r in rs)} '
          f'| {"yes" if all(r["delivered"] == r["expected"] for r in rs) else "NO"} |')
print()
base = loads[0]
for load in loads[1:]:
    print(f"{load}/{base}: server CPU per delivery {med[load]/med[base]:.3f}")
if counted:
    print()
    print("| load | server instructions (callgrind) | per delivery | per line |")
    print("|---|---|---|---|")
    for load, (ir, r) in counted.items():
        print(f'| {load} | {ir/1e6:.1f} M | {ir/max(r["delivered"],1):.0f} | {ir/max(r["sent"],1):.0f} |')
PY
