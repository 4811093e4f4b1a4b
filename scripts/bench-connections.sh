#!/usr/bin/env bash
# How many connections pollchat holds, and what each costs: for a list of connection counts,
# starts a fresh server (flood control off, joins quiet, pinned to core 0), connects that many
# clients with the load generator (pinned to core 1), holds them idle, then sends a light
# fan-out load. Writes a CSV and a PNG plot (RSS per connection and p99 latency against the
# connection count). Every process it starts is stopped, by PID, on exit or Ctrl-C.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/bench-connections.sh [--scenario idle|fanout|chatty] [--counts "100 1000 ..."]
                                    [--rate LINES_PER_SEC] [--duration SECS] [--out DIR]

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

For each count: connect rate, server RSS per idle connection, fan-out latency (p50, p99),
deliveries per second, failures. Uses loopback only; every run is bounded in time.
USAGE
}

scenario=fanout
counts=""
rate=20
duration=3
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    --counts) counts="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
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
echo "conns,established,failed,connect_per_sec,rss_bytes_per_conn,p50_ms,p99_ms,deliveries_per_sec,delivered,expected,server_cpu_secs,server_idle_cpu_secs,hold_secs" >"$csv"
for n in $counts; do
  if [ "$n" -gt "$most" ]; then
    echo "skipping $n: over what the open-file limit allows ($most)" >&2
    continue
  fi
  sources=$(( n / (ports - 1000) + 1 ))
  port=$(free_port)
  start_server pollchat "$port" "$out/pollchat.log"
  echo "== $n connections ($scenario)"
  case "$scenario" in
    idle) traffic=(--senders 1 --duration 0) ;;
    fanout) traffic=(--senders 1 --rate "$rate" --duration "$duration") ;;
    chatty) traffic=(--senders "$n" --senders-receive --rate $((5 * n)) --duration "$duration") ;;
  esac
  bench pollchat "$port" --conns "$n" "${traffic[@]}" --hold 3 --source-ips "$sources" \
    | tee -a "$out/results.jsonl" \
    | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(",".join(str(x) for x in [r["conns"], r["established"], r["failed"], round(r["connect_rate"]),
      round(r["rss_bytes_per_conn"]), r["latency_us_p50"] / 1000, r["latency_us_p99"] / 1000,
      round(r["deliveries_per_sec"]), r["delivered"], r["expected"], r.get("server_cpu_secs", ""),
      r.get("server_hold_cpu_secs", ""), round(r.get("hold_secs", 0), 2)]))
' >>"$csv"
  stop_server
  tail -1 "$csv"
done

gnuplot <<GP
set terminal pngcairo size 800,420 font ",9"
set output "$out/connections.png"
set title "pollchat: memory and p99 latency by connection count (scenario: $scenario)"
set datafile separator ","
set key top left
set logscale x
set xlabel "connections"
set ylabel "server RSS per idle connection (bytes)"
set y2label "p99 fan-out latency (ms)"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot "$csv" every ::1 using 1:5 with linespoints lw 2 title "RSS per connection", \
     "" every ::1 using 1:7 axes x1y2 with linespoints lw 2 title "p99 latency"
GP
echo
column -s, -t "$csv"
echo
echo "results: $csv, $out/results.jsonl, $out/connections.png"
