#!/usr/bin/env bash
# How many connections pollchat and Redis hold, and what each costs: for a list of connection
# counts, starts a fresh server (pollchat with flood control off and joins quiet; Redis with
# persistence off; pinned to core 0), connects that many clients with the load generator
# (pinned to core 1), holds them idle, then sends a light fan-out load. What a connection
# costs is the server's RSS and the kernel's socket memory together. Writes a CSV, a PNG plot
# (memory per connection and p99 latency against the connection count, both servers) and a
# projection to 100,000 and 1,000,000 connections. Every process it starts is stopped, by PID,
# on exit or Ctrl-C.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/bench-connections.sh [--scenario idle|fanout|chatty] [--counts "100 1000 ..."]
                                    [--rate LINES_PER_SEC] [--duration SECS]
                                    [--servers "pollchat redis"] [--out DIR]

  --scenario   the traffic at each count, named as in scripts/compare-redis.sh:
                 idle    none: connections and memory only
                 fanout  one sender, --rate lines/s to everyone (default)
                 chatty  every client sends 5 lines/s and receives everyone else's (N x 5
                         lines/s x N deliveries: past a few thousand clients, far more than
                         one core can deliver, and the report says how much arrived)
  --counts     connection counts to measure (default: 100 1000 5000 10000, and the most the
               open-file limit allows both processes, minus a reserve)
  --rate       fanout: lines per second from the sender (default 20: each line goes to
               every connection, so this is 20 x N deliveries per second); "max" for as fast
               as the server takes them
  --duration   seconds of traffic per count (default 3)
  --servers    which servers to measure (default: pollchat redis)

For each server and count: connect rate, memory per idle connection (the server's RSS, and
the kernel's socket slab caches for the server's end), fan-out latency (p50, p99),
deliveries per second, failures, and what limited the traffic. Needs root to read
/proc/slabinfo (else the kernel column is empty). Uses loopback only; every run is bounded in
time.
USAGE
}

scenario=fanout
counts=""
rate=20
duration=3
servers="pollchat redis"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    --counts) counts="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$scenario" in
  idle|fanout|chatty) ;;
  *) echo "unknown scenario: $scenario" >&2; usage >&2; exit 2 ;;
esac
[ -n "$out" ] && out=$(realpath -m "$out")  # before lib.sh moves to the repository root
source "$(dirname "$0")/lib.sh"
out="${out:-target/bench/connections-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
need gnuplot gnuplot-nox
[[ " $servers " == *" redis "* ]] && need redis-server redis-server
need taskset util-linux
need python3 python3
need_two_cores

# The limits this benchmark meets, and how it handles them.
ulimit -n "$(ulimit -Hn)"  # the generator holds one descriptor per connection too
files=$(ulimit -n)
ports=$(sysctl -n net.ipv4.ip_local_port_range | awk '{print $2 - $1 + 1}')
backlog=$(sysctl -n net.core.somaxconn)
most=$((files - 100))
echo "open-file limit: $files per process (server and generator each hold one per connection;"
echo "  the server reserves 32, so the most measured is $most)"
echo "ephemeral ports: $ports per source address (more connections use 127.0.0.2, ...)"
echo "listen backlog: pollchat asks for 4096, the kernel allows $backlog; connects are paced"
if [ -z "$counts" ]; then
  counts="100 1000 5000 10000"
  [ "$most" -gt 10000 ] && counts="$counts $most"
fi
build_release

csv="$out/connections.csv"
{ date -u +%Y-%m-%dT%H:%M:%SZ; lscpu; redis-server --version 2>/dev/null || true; } >"$out/machine.txt"
echo "server,conns,established,failed,connect_per_sec,rss_bytes_per_conn,kernel_bytes_per_conn,total_bytes_per_conn,p50_ms,p99_ms,deliveries_per_sec,delivered,expected,server_cpu_secs,server_idle_cpu_secs,hold_secs,limit" >"$csv"
: >"$out/results.jsonl"
for n in $counts; do
  if [ "$n" -gt "$most" ]; then
    echo "skipping $n: over what the open-file limit allows ($most)" >&2
    continue
  fi
  sources=$(( n / (ports - 1000) + 1 ))
  case "$scenario" in
    idle) traffic=(--senders 1 --duration 0) ;;
    fanout) traffic=(--senders 1 --rate "$rate" --duration "$duration") ;;
    chatty) traffic=(--senders "$n" --senders-receive --rate $((5 * n)) --duration "$duration") ;;
  esac
  # Both servers at each count in turn, so a pair sees the same machine.
  for server in $servers; do
    port=$(free_port)
    start_server "$server" "$port" "$out/$server.log"
    echo "== $server: $n connections ($scenario)"
    bench "$server" "$port" --conns "$n" "${traffic[@]}" --hold 3 --source-ips "$sources" \
      | tee -a "$out/results.jsonl" \
      | python3 -c '
import json, sys
r = json.load(sys.stdin)
user, kernel = r.get("rss_bytes_per_conn", 0), r.get("kernel_bytes_per_conn", 0)
print(",".join(str(x) for x in [r["proto"], r["conns"], r["established"], r["failed"],
      round(r["connect_rate"]), round(user), round(kernel), round(user + kernel),
      r["latency_us_p50"] / 1000, r["latency_us_p99"] / 1000, round(r["deliveries_per_sec"]),
      r["delivered"], r["expected"], r.get("server_cpu_secs", ""), r.get("server_hold_cpu_secs", ""),
      round(r.get("hold_secs", 0), 2), r["limit"] if r["sent"] else "no traffic"]))
' >>"$csv"
    stop_server
    tail -1 "$csv"
  done
done

python3 - "$out" <<'PY'
# What 100,000 and 1,000,000 idle connections would need, at the cost per connection
# measured at the largest count, for each server.
import csv, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/connections.csv")))
lines = ["| server | measured at | RSS + kernel per connection | 100,000 connections | 1,000,000 connections |",
         "|---|---|---|---|---|"]
for server in dict.fromkeys(r["server"] for r in rows):
    r = max((r for r in rows if r["server"] == server), key=lambda r: int(r["conns"]))
    user, kernel = int(r["rss_bytes_per_conn"]), int(r["kernel_bytes_per_conn"])
    each = user + kernel
    lines.append(f"| {server} | {int(r['conns']):,} | {user:,} + {kernel:,} = {each:,} bytes "
                 f"| {each * 1e5 / 2**20:,.0f} MiB | {each * 1e6 / 2**30:,.1f} GiB |")
open(f"{out}/projection.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY

for server in $servers; do grep "^$server," "$csv" >"$out/$server.csv" || true; done
gnuplot <<GP
set terminal pngcairo size 1100,440 font ",9"
set output "$out/connections.png"
set multiplot layout 1,2 title "Memory and p99 latency by connection count ($(date -u +%Y-%m-%d), $(nproc) x $(lscpu | sed -n 's/^Model name: *//p'); scenario: $scenario)"
set datafile separator ","
set key top left
set logscale x
set grid
set xlabel "connections (log scale)"
set title "memory per idle connection: server RSS + kernel (bytes, log scale)"
set ylabel "bytes per idle connection"
set logscale y
plot "$out/pollchat.csv" using 2:8 with linespoints lw 2 lc rgb "#3366cc" title "pollchat, RSS + kernel", \
     "" using 2:6 with linespoints dt 2 lc rgb "#3366cc" title "pollchat, RSS only", \
     "$out/redis.csv" using 2:8 with linespoints lw 2 lc rgb "#cc3333" title "Redis, RSS + kernel", \
     "" using 2:6 with linespoints dt 2 lc rgb "#cc3333" title "Redis, RSS only", \
     "$out/pollchat.csv" using 2:7 with linespoints dt 3 lc rgb "#666666" title "kernel only (pollchat)"
set title "p99 fan-out latency (ms, log scale)"
set ylabel "p99 latency, milliseconds"
plot "$out/pollchat.csv" using 2:10 with linespoints lw 2 lc rgb "#3366cc" title "pollchat", \
     "$out/redis.csv" using 2:10 with linespoints lw 2 lc rgb "#cc3333" title "Redis"
unset multiplot
GP
echo
column -s, -t "$csv"
echo
echo "results: $csv, $out/results.jsonl, $out/projection.md, $out/connections.png"
