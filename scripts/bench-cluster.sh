#!/usr/bin/env bash
# Deliveries per second for one and for two pollchat instances joined by --backplane, under
# the same load from one generator (pollchat-bench, its connections spread round-robin over
# the instances). A single instance without a backplane is measured too, as the baseline.
# Every process it starts is stopped, by PID, when it exits (or on Ctrl-C).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/bench-cluster.sh [--conns N] [--senders N] [--duration SECS] [--out DIR]

Load (the same for every configuration): --conns connections (default 1000), of which
--senders (default 4) send 64-byte lines as fast as the cluster takes them (a window of 64
lines in flight each); everyone else receives every line, whatever instance it is on.

Configurations: local (1 instance, no backplane), 1 (1 instance + Redis), 2 (2 instances +
Redis). Nothing is pinned: on a 2-core machine the instances, Redis and the generator share
both cores, so the report gives the CPU time the servers (instances and Redis together) and
the generator used over the run. Writes results.jsonl and results.md.
Needs cargo, python3 and redis-server (installed from Debian if missing, as root).
USAGE
}

conns=1000
senders=4
duration=5
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --conns) conns="$2"; shift 2 ;;
    --senders) senders="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

[ -n "$out" ] && out=$(realpath -m "$out")  # before lib.sh moves to the repository root
source "$(dirname "$0")/lib.sh"
out="${out:-target/bench/cluster-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
need redis-server redis-server
need python3 python3
build_release

wait_for_log() {  # wait_for_log FILE TEXT: waits up to 10 s for TEXT to appear in FILE
  for _ in $(seq 100); do
    grep -q "$2" "$1" && return 0
    sleep 0.1
  done
  echo "no \"$2\" in $1" >&2
  exit 1
}

cpu_secs() {  # cpu_secs PID...: user + system CPU seconds of these processes, summed
  local total=0 pid
  for pid in "$@"; do
    total=$(awk -v t="$total" '{ print t + ($14 + $15) / 100 }' "/proc/$pid/stat")
  done
  echo "$total"
}

run() {  # run CONFIG INSTANCES BACKPLANE(yes|no): fresh processes, one generator run
  local config=$1 instances=$2 backplane=$3 targets=() args=()
  if [ "$backplane" = yes ]; then
    local redis_port
    redis_port=$(free_port)
    redis_server "$redis_port" "$out/redis.log"
    args=(--backplane "redis://127.0.0.1:$redis_port/bench")
  fi
  for i in $(seq 1 "$instances"); do
    local port log="$out/pollchat-$config-$i.log"
    port=$(free_port)
    "$pollchat" --bind "127.0.0.1:$port" --rate 0 --quiet-joins "${args[@]}" 2>"$log" &
    pids+=($!)
    wait_for_port "$port"
    [ "$backplane" = yes ] && wait_for_log "$log" "backplane up"
    targets+=(--target "127.0.0.1:$port")
  done
  echo "== $config: $instances instance(s), backplane $backplane"
  local before after
  before=$(cpu_secs "${pids[@]}")
  "$pollchat_bench" --json "${targets[@]}" --threads 1 --conns "$conns" \
    --senders "$senders" --rate max --window 64 --duration "$duration" --hold 0.5 \
    >"$out/run.json"
  after=$(cpu_secs "${pids[@]}")
  python3 -c 'import json, sys
r = json.load(open(sys.argv[1])); r["config"] = sys.argv[2]
r["servers_cpu_secs"] = round(float(sys.argv[4]) - float(sys.argv[3]), 2)
print(json.dumps(r))' "$out/run.json" "$config" "$before" "$after" | tee -a "$out/results.jsonl"
  stop_all
}

: > "$out/results.jsonl"
run local 1 no
run 1 1 yes
run 2 2 yes

python3 - "$out" "$(nproc)" <<'PY'
import json, sys
out, cores = sys.argv[1], sys.argv[2]
runs = {r["config"]: r for r in map(json.loads, open(f"{out}/results.jsonl"))}
lines = ["| configuration | deliveries/s | delivered of expected | p50 | p99 | CPU: instances + Redis | CPU: generator |",
         "|---|---|---|---|---|---|---|"]
names = {"local": "1 instance, no backplane", "1": "1 instance + Redis", "2": "2 instances + Redis"}
for key in ("local", "1", "2"):
    r = runs[key]
    lines.append(f"| {names[key]} | {r['deliveries_per_sec']:,.0f} | {r['delivered']:,} of {r['expected']:,} "
                 f"| {r['latency_us_p50'] / 1000:.1f} ms | {r['latency_us_p99'] / 1000:.1f} ms "
                 f"| {r['servers_cpu_secs']:.2f} s | {r['generator_cpu_secs']:.2f} s (traffic {r['traffic_secs']:.2f} s) |")
lines.append(f"<!-- {cores} cores shared by every process: instances, Redis and the generator -->")
table = "\n".join(lines)
open(f"{out}/results.md", "w").write(table + "\n")
print()
print(table)
PY
echo
echo "results: $out/results.jsonl, $out/results.md"
