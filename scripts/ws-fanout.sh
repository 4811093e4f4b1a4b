#!/usr/bin/env bash
# What fan-out to WebSocket clients costs the server against fan-out over plain TCP: one
# sender, 1,000 receivers, runs alternating between the two, in one session. Prints
# deliveries/s and the server's CPU per delivery, per run and the medians, and the ws/tcp
# ratios; with --callgrind, the server's instructions per delivery too. Writes
# results.jsonl and results.md. Every process it starts is stopped, by PID, when it exits.
#
# Each run gets a fresh server (pinned to core 0, the generator to core 1), started the same
# way for both loads: a plain listener and an --http-bind listener, each on a free port, the
# generator using the one its load needs. A fresh server makes every run start alike (a cold
# heap, no #lobby history to replay, no connections still closing from the run before), and
# one command line for both loads keeps the idle second listener on both sides of the
# comparison. lib.sh's start_server and bench run target/release/pollchat and pollchat-bench
# with --bind only, and this script takes --server, --generator and --http-bind: it pins the
# two itself, as scripts/rooms.sh does.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/ws-fanout.sh [--runs N] [--duration SECS] [--server BINARY] [--generator BINARY]
                            [--callgrind] [--out DIR]

Two loads, each 1 sender and 1,000 receivers, 64-byte lines at --rate max with a window of
8 lines (at most 8,000 deliveries in flight), alternating (tcp first in odd runs, ws first
in even ones), each against a fresh server:
  tcp   pollchat-bench --proto pollchat against the server's plain listener (--bind)
  ws    pollchat-bench --proto ws against its --http-bind listener: every connection
        upgrades at /ws and sends masked text frames

--runs (default 5) runs of each load; --duration (default 5) seconds of traffic each.
--server and --generator default to target/release/pollchat and pollchat-bench (built first;
a --generator named pollchat, from before pollchat-bench, runs as `pollchat bench`). Server
CPU per delivery is the server's CPU time during the traffic (--server-pid, from /proc) over
the deliveries.

--callgrind also counts the server's instructions, the server under valgrind
--tool=callgrind, for each load: 10 lines a second (one batch and one write per receiver
per line, the most a delivery can cost), once for 2 s and once for 6 s of traffic, and
(Ir_long - Ir_short) / (deliveries_long - deliveries_short), so that start-up, the 1,001
connects (and upgrades) and shutdown, the same in both runs, cancel out.

Needs taskset, python3 (valgrind for --callgrind); loopback only, every run bounded in time.
USAGE
}

runs=5 duration=5 server="" generator="" callgrind=false out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --server) server=$(realpath "$2"); shift 2 ;;
    --generator) generator=$(realpath "$2"); shift 2 ;;
    --callgrind) callgrind=true; shift ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

source "$(dirname "$0")/lib.sh"
need taskset util-linux
need python3 python3
need timeout coreutils
need_two_cores
if $callgrind; then need valgrind valgrind; fi
binaries
out="${out:-target/bench/ws-fanout-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

# The callgrind runs: paced, a short and a long one per load.
cg_rate=10 cg_short=2 cg_long=6
# Each generator run is bounded: the connects, the hold and the traffic take seconds, so a
# minute more than the longest traffic is a hang.
bound=$(python3 -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2])) + 60)' \
  "$duration" "$cg_long")

tcp_port="" http_port=""
serve() {  # serve LOG [WRAPPER...]: a fresh server on two free ports, pinned to core 0
  local log=$1
  shift
  tcp_port=$(free_port)
  http_port=$(free_port)
  while [ "$http_port" = "$tcp_port" ]; do http_port=$(free_port); done
  taskset -c 0 "$@" "$server" --bind "127.0.0.1:$tcp_port" --http-bind "127.0.0.1:$http_port" \
    --rate 0 --quiet-joins --log-level warn 2>>"$log" &
  server_pid=$!
  # wait_for_port only checks that the port accepts a connection, which the HTTP listener
  # does as well as the plain one; the connection closes without a request, before the
  # traffic, and the server drops it.
  wait_for_port "$tcp_port"
  wait_for_port "$http_port"
}

generate() {  # generate LOAD ARGS...: one generator run, pinned to core 1, one JSON line
  local load=$1 proto target line status=0
  shift
  case "$load" in
    tcp) proto=pollchat target="127.0.0.1:$tcp_port" ;;
    ws) proto=ws target="127.0.0.1:$http_port" ;;
  esac
  line=$(timeout --kill-after=5 "$bound" \
    taskset -c 1 "${generator_cmd[@]}" --json --proto "$proto" --target "$target" --threads 1 \
    --conns 1001 --senders 1 --size 64 "$@") || status=$?
  if [ -z "$line" ] || [ "$status" -ge 124 ]; then
    echo "the $load generator failed (exit $status)" >&2
    exit 1
  fi
  # A run that lost a line exits 1 but still reports: it is kept, and results.md says so.
  python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r["load"] = sys.argv[2]; r["run"] = int(sys.argv[3]); print(json.dumps(r))' \
    "$line" "$load" "${run:-0}"
}

one() {  # one LOAD: a fresh server, one timed run, appended to results.jsonl
  local load=$1
  serve "$out/server.log"
  generate "$load" --server-pid "$server_pid" --rate max --window 8 --hold 1 \
    --duration "$duration" >>"$out/results.jsonl"
  stop_server
  echo "   $load done"
}

counted() {  # counted LOAD SECS: the server under callgrind, one paced run
  local load=$1 secs=$2 file="$out/callgrind.$1.$2s.out"
  serve "$out/valgrind.log" valgrind --tool=callgrind --callgrind-out-file="$file"
  # A slower connect rate, for a server slowed down by valgrind.
  generate "$load" --rate "$cg_rate" --connect-rate 500 --hold 1 --duration "$secs" \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); r["secs"] = int(sys.argv[1]); print(json.dumps(r))' \
      "$secs" >>"$out/callgrind.jsonl"
  stop_server  # callgrind writes its counts as the server exits
  echo "   $load ${secs}s counted"
}

echo "== server: $server"
echo "== generator: $generator"
: >"$out/results.jsonl"
{ date -u +%Y-%m-%dT%H:%M:%SZ; echo "uptime at start: $(uptime)"; lscpu; } >"$out/machine.txt"
for run in $(seq "$runs"); do
  echo "== run $run of $runs"
  # Alternate the order, so neither load always runs first on a drifting machine.
  if [ $((run % 2)) = 1 ]; then one tcp; one ws; else one ws; one tcp; fi
done
if $callgrind; then
  : >"$out/callgrind.jsonl"
  echo "== callgrind"
  run=0
  for load in tcp ws; do counted "$load" "$cg_short"; counted "$load" "$cg_long"; done
fi
echo "uptime at end: $(uptime)" >>"$out/machine.txt"

python3 - "$out" <<'PY' | tee "$out/results.md"
import json, os, statistics, sys
out = sys.argv[1]
rows = [json.loads(line) for line in open(os.path.join(out, "results.jsonl"))]
machine = open(os.path.join(out, "machine.txt")).read().splitlines()
lscpu = dict(l.split(":", 1) for l in machine if ":" in l and not l.startswith(("uptime", "20")))
print(f"Measured {machine[0]} by scripts/ws-fanout.sh: 1 sender, 1,000 receivers, 64-byte lines,")
print(f"--rate max --window 8, {rows[0]['traffic_secs']:.0f} s of traffic per run, a fresh server per run")
print("pinned to core 0, the generator to core 1.")
print()
print(f"Machine: {lscpu.get('Model name', '?').strip()}, {lscpu.get('CPU(s)', '?').strip()} CPUs, "
      f"{lscpu.get('Hypervisor vendor', 'no').strip()} hypervisor, "
      f"L2 {lscpu.get('L2 cache', '?').strip()}, L3 {lscpu.get('L3 cache', '?').strip()}.")
for l in machine:
    if l.startswith("uptime"):
        print(f"- {l.split(':', 1)[0]}: load average {l.rsplit('load average:', 1)[-1].strip()}")
print()
print("| load | deliveries/s, per run (median) | server CPU per delivery, ns, per run (median) | limit | every line delivered |")
print("|---|---|---|---|---|")
med = {}
for load in ("tcp", "ws"):
    rs = sorted((r for r in rows if r["load"] == load), key=lambda r: r["run"])
    rate = [r["deliveries_per_sec"] for r in rs]
    ns = [1e9 * r["server_cpu_secs"] / max(r["delivered"], 1) for r in rs]
    med[load] = (statistics.median(rate), statistics.median(ns))
    limits = ", ".join(f"{k} x{v}" for k, v in sorted({r["limit"]: sum(x["limit"] == r["limit"] for x in rs) for r in rs}.items()))
    print(f'| {load} | {", ".join(f"{x/1e6:.2f} M" for x in rate)} ({med[load][0]/1e6:.2f} M) '
          f'| {", ".join(f"{x:.0f}" for x in ns)} ({med[load][1]:.0f}) | {limits} '
          f'| {"yes" if all(r["delivered"] == r["expected"] for r in rs) else "NO"} |')
print()
print(f'ws/tcp: deliveries/s {med["ws"][0]/med["tcp"][0]:.3f}, server CPU per delivery {med["ws"][1]/med["tcp"][1]:.3f} (medians)')
path = os.path.join(out, "callgrind.jsonl")
if os.path.exists(path):
    counted = {}
    for r in map(json.loads, open(path)):
        ir = None
        for line in open(os.path.join(out, f'callgrind.{r["load"]}.{r["secs"]}s.out')):
            if line.startswith(("summary:", "totals:")):
                ir = int(line.split()[1])
        counted.setdefault(r["load"], []).append((r["secs"], ir, r["delivered"], r["expected"]))
    print()
    print("Server instructions (valgrind --tool=callgrind), 10 lines/s, a short and a long run per load:")
    print()
    print("| load | short: deliveries, instructions | long: deliveries, instructions | instructions per delivery | every line delivered |")
    print("|---|---|---|---|---|")
    per = {}
    for load, ((_, si, sd, se), (_, li, ld, le)) in ((k, sorted(v)) for k, v in counted.items()):
        per[load] = (li - si) / (ld - sd)
        print(f"| {load} | {sd:,}, {si:,} | {ld:,}, {li:,} | {per[load]:.0f} | {'yes' if sd == se and ld == le else 'NO'} |")
    if "tcp" in per and "ws" in per:
        print()
        print(f'ws/tcp: instructions per delivery {per["ws"]/per["tcp"]:.3f}')
PY
