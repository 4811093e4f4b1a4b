#!/usr/bin/env bash
# What an idle client costs the server, by transport: plain TCP, WebSocket (--http-bind, /ws)
# and TLS (--tls-bind). For each transport and run, a fresh server (pinned to core 0) gets
# --conns clients of that kind (scripts/idle-clients.py, pinned to core 1), each connected,
# through its handshake and welcomed, then left idle; the figure is the server's RSS growth
# divided by the clients (and the same for RssAnon, which leaves out code pages). Runs
# alternate the binaries given, so an A/B sees the same machine. Writes results.jsonl and
# prints the per-run figures and the medians. Every process it starts is stopped, by PID, on
# exit or Ctrl-C.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/idle-memory.sh [--server LABEL=BINARY]... [--runs N] [--conns N]
                              [--transports "plain ws tls"] [--hold SECS] [--out DIR]

  --server      a server binary to measure, with its label; repeat to compare (runs
                alternate them). Default: current=target/release/pollchat (built first)
  --runs        fresh servers per transport and binary (default 3)
  --conns       idle clients per run (default 10000; the open-file limit must allow it)
  --transports  which to measure (default: plain ws tls)
  --hold        seconds the clients sit idle before the server's memory is read (default
                12: past the 10-second handshake deadlines that WebSocket and TLS connections
                leave in the timer heap, so the figure is what an idle connection holds, not
                what its handshake did; 2 to count those too)

The servers run with their defaults but --quiet-joins (N joins would announce N^2 lines)
and --log-level warn. Needs taskset, python3 and openssl (for the TLS certificate, made by
scripts/gen-cert.sh). Loopback only; every run is bounded in time.
USAGE
}

servers=() runs=3 conns=10000 transports="plain ws tls" hold=12 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --server) servers+=("$2"); shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --conns) conns="$2"; shift 2 ;;
    --transports) transports="$2"; shift 2 ;;
    --hold) hold="$2"; shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
# Binaries given relative to where the script was started, before lib.sh moves to the root.
for i in "${!servers[@]}"; do
  servers[i]="${servers[i]%%=*}=$(realpath "${servers[i]#*=}")"
done

source "$(dirname "$0")/lib.sh"
need taskset util-linux
need python3 python3
need openssl openssl
need_two_cores
if [ ${#servers[@]} = 0 ]; then build_release; servers=("current=$(realpath "$pollchat")"); fi
out="${out:-target/bench/idle-memory-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

# Server and clients each hold one descriptor per connection, plus a few.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((conns + 100)) ]; then
  echo "the open-file limit ($(ulimit -n)) is too low for $conns connections" >&2
  exit 1
fi
scripts/gen-cert.sh "$out/tls" >/dev/null
{ date -u +%Y-%m-%dT%H:%M:%SZ; uptime; lscpu | sed -n 's/^Model name: *//p'; nproc; } \
  >"$out/machine.txt"

one() {  # one LABEL BINARY TRANSPORT: a fresh server, its idle clients, one JSON line
  local label=$1 binary=$2 transport=$3 port listen target
  port=$(free_port)
  target="127.0.0.1:$port"
  case "$transport" in
    plain) listen=(--bind "$target") ;;
    ws) listen=(--bind 127.0.0.1:0 --http-bind "$target") ;;
    tls) listen=(--tls-only --tls-cert "$out/tls/cert.pem" --tls-key "$out/tls/key.pem"
                 --tls-bind "$target") ;;
  esac
  taskset -c 0 "$binary" "${listen[@]}" --quiet-joins --log-level warn \
    2>>"$out/server-$label.log" &
  server_pid=$!
  wait_for_port "$port"
  taskset -c 1 python3 scripts/idle-clients.py --transport "$transport" --target "$target" \
    --conns "$conns" --server-pid "$server_pid" --ca "$out/tls/cert.pem" --hold "$hold" \
    | python3 -c 'import json, sys; r = json.load(sys.stdin); r["label"] = sys.argv[1]; print(json.dumps(r))' \
      "$label" | tee -a "$out/results.jsonl"
  stop_server
}

for run in $(seq "$runs"); do
  echo "== run $run of $runs ($(cut -d' ' -f1-3 /proc/loadavg) load)"
  for transport in $transports; do
    # Odd runs in the order given, even runs reversed: neither binary always goes first.
    order=("${servers[@]}")
    if [ $((run % 2)) = 0 ]; then
      order=()
      for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[i]}"); done
    fi
    for s in "${order[@]}"; do one "${s%%=*}" "${s#*=}" "$transport"; done
  done
done

python3 - "$out/results.jsonl" <<'PY' | tee "$out/results.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| server | transport | clients | RSS bytes per idle client (runs) | median | RssAnon median |")
print("|---|---|---|---|---|---|")
for label in dict.fromkeys(r["label"] for r in rows):
    for transport in dict.fromkeys(r["transport"] for r in rows):
        rs = [r for r in rows if r["label"] == label and r["transport"] == transport]
        if not rs:
            continue
        per = [r["rss_bytes_per_conn"] for r in rs]
        anon = [r["anon_bytes_per_conn"] for r in rs]
        est = min(r["established"] for r in rs)
        print(f"| {label} | {transport} | {est:,} | {', '.join(f'{x:,}' for x in per)} "
              f"| {statistics.median(per):,.0f} | {statistics.median(anon):,.0f} |")
PY
echo "results: $out/results.jsonl, $out/results.md"
