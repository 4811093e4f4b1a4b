#!/usr/bin/env bash
# Runs the same scenarios against pollchat and Redis pub/sub, with the server pinned to one
# core and the load generator (pollchat bench) to the other, and prints a table of
# pollchat/Redis ratios. Writes results.jsonl, results.md and compare.png to the output
# directory. Every process it starts is stopped, by PID, when it exits (or on Ctrl-C).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/compare-redis.sh [--duration SECS] [--idle-conns N] [--receivers N] [--out DIR]

Scenarios (the same names as scripts/bench-connections.sh):
  idle     N idle connections (--idle-conns, default 10000): server memory per connection
  fanout   1 sender, --receivers receivers (default 1000), 64-byte lines as fast as the
           server takes them (window of 64 lines in flight): deliveries/s and latency
  chatty   500 clients each sending 5 lines/s and receiving everyone else's (Redis clients
           publish on one connection and subscribe on a second): latency under chat load

Needs: cargo, taskset, python3, gnuplot (installed from Debian if missing, as root), and
redis-server (the same). Uses loopback only; every run is bounded in time.
USAGE
}

duration=5
idle_conns=10000
receivers=1000
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
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

run() {  # run SCENARIO PROTO BENCH_ARGS...: one fresh server, one generator run, one JSON line
  local scenario=$1 proto=$2
  shift 2
  local port
  port=$(free_port)
  start_server "$proto" "$port" "$out/$proto.log"
  echo "== $scenario: $proto"
  bench "$proto" "$port" "$@" \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); r["scenario"] = sys.argv[1]; print(json.dumps(r))' "$scenario" \
    | tee -a "$out/results.jsonl"
  stop_server
}

: > "$out/results.jsonl"
for proto in pollchat redis; do
  run idle "$proto" --conns "$idle_conns" --senders 1 --rate 1 --duration 0 --hold 2
  run fanout "$proto" --conns $((receivers + 1)) --senders 1 --rate max --window 64 \
    --duration "$duration" --hold 0.5
  run chatty "$proto" --conns 500 --senders 500 --senders-receive --rate 2500 \
    --duration "$duration" --hold 0.5
done

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
runs = {(r["scenario"], r["proto"]): r for r in map(json.loads, open(f"{out}/results.jsonl"))}
rows = [
    ("fanout", "deliveries per second", "deliveries_per_sec", "{:,.0f}", "higher is better"),
    ("fanout", "p99 latency (ms)", "latency_us_p99", "{:.2f}", "lower is better"),
    ("fanout", "p50 latency (ms)", "latency_us_p50", "{:.2f}", "lower is better"),
    ("fanout", "server CPU during traffic (s)", "server_cpu_secs", "{:.2f}", "near the traffic time: server-bound"),
    ("fanout", "generator CPU (s)", "generator_cpu_secs", "{:.2f}", "near the run time: generator-bound"),
    ("fanout", "traffic time (s)", "traffic_secs", "{:.2f}", ""),
    ("chatty", "deliveries per second", "deliveries_per_sec", "{:,.0f}", "fixed by the load"),
    ("chatty", "p99 latency (ms)", "latency_us_p99", "{:.2f}", "lower is better"),
    ("chatty", "p50 latency (ms)", "latency_us_p50", "{:.2f}", "lower is better"),
    ("chatty", "server CPU during traffic (s)", "server_cpu_secs", "{:.2f}", "lower is better"),
    ("idle", "RSS per idle connection (bytes)", "rss_bytes_per_conn", "{:,.0f}", "lower is better"),
]
lines = ["| scenario | measure | pollchat | Redis | pollchat/Redis | |", "|---|---|---|---|---|---|"]
chart = []
for scenario, name, key, fmt, note in rows:
    p, r = runs[(scenario, "pollchat")][key], runs[(scenario, "redis")][key]
    if key.startswith("latency"):
        p, r = p / 1000, r / 1000
    ratio = p / r if r else float("nan")
    lines.append(f"| {scenario} | {name} | {fmt.format(p)} | {fmt.format(r)} | {ratio:.2f} | {note} |")
    if key in ("deliveries_per_sec", "latency_us_p99", "rss_bytes_per_conn"):
        chart.append((name, p, r))
for scenario in ("idle", "fanout", "chatty"):
    for proto in ("pollchat", "redis"):
        r = runs[(scenario, proto)]
        lines.append(f"<!-- {scenario}/{proto}: {r['established']} established, {r['failed']} failed, "
                     f"{r['delivered']} of {r['expected']} delivered -->")
table = "\n".join(lines)
open(f"{out}/results.md", "w").write(table + "\n")
with open(f"{out}/chart.dat", "w") as f:
    for name, p, r in chart:
        f.write(f'"{name}" {p} {r}\n')
print()
print(table)
PY

gnuplot <<GP
set terminal pngcairo size 900,320 font ",9"
set output "$out/compare.png"
set multiplot layout 1,3 title "pollchat vs Redis pub/sub (server on one core, generator on the other)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key below horizontal
set yrange [0:*]
set xtics format ""
do for [i=0:2] {
  set title word("deliveries/s p99-latency-ms RSS-bytes-per-idle-conn", i+1)
  plot "$out/chart.dat" every ::i::i using 2 title "pollchat" lc rgb "#3366cc", \
       "" every ::i::i using 3 title "Redis" lc rgb "#cc3333"
}
unset multiplot
GP
echo
echo "results: $out/results.jsonl, $out/results.md, $out/compare.png"
