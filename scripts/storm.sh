#!/usr/bin/env bash
# A connection storm against a server that people are chatting on: what the chatters feel,
# what the server holds, and whether it gives the memory back. Loopback only; every part
# stops by itself (the storm after --duration, the chatters a little later, the sampler 5 s
# after the storm). The server is stopped, by PID, when the script exits (or on Ctrl-C).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/storm.sh [--duration SECS] [--threads N] [--chatters N] [--chat-rate LINES_PER_SEC]
                        [--binary PATH] [--out DIR] [-- SERVER_ARGS...]

  A server (default flags plus --rate 0, so the chatters are not throttled; more with
  -- ARGS) pinned to core 0. On core 1: --chatters clients (default 6) each sending
  --chat-rate lines/s (default 12) and timing every line they receive (pollchat-bench), and
  a storm: --threads threads (default 2) of one Python process opening connections and
  resetting them (SO_LINGER 0) as fast as they can for --duration seconds (default 8).
  The server's RSS and descriptors are sampled every 100 ms until 5 s after the storm.

Prints the connects made, the chatters' deliveries and latency, the server's peak RSS,
its RSS and descriptors 5 s after the storm, and writes them to DIR/storm.json.
USAGE
}

duration=8 threads=2 chatters=6 chat_rate=12 binary="" out="" server_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --chatters) chatters="$2"; shift 2 ;;
    --chat-rate) chat_rate="$2"; shift 2 ;;
    --binary) binary=$(realpath "$2"); shift 2 ;;
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --) shift; server_args=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

source "$(dirname "$0")/lib.sh"
need taskset util-linux
need python3 python3
need_two_cores
build_release
generator=$(realpath "$pollchat_bench")
binary="${binary:-$(realpath "$pollchat")}"
out="${out:-target/bench/storm-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

port=$(free_port)
taskset -c 0 "$binary" --bind "127.0.0.1:$port" --rate 0 --log-level warn "${server_args[@]}" \
  2>>"$out/server.log" &
server_pid=$!
wait_for_port "$port"
echo "== server $binary (pid $server_pid) on 127.0.0.1:$port"

# The chatters: connected and idle for a second, then chatting through the whole storm.
total_rate=$(python3 -c "print($chatters * $chat_rate)")
taskset -c 1 "$generator" --json --target "127.0.0.1:$port" --conns "$chatters" \
  --senders "$chatters" --senders-receive --rate "$total_rate" --hold 1 \
  --duration "$(python3 -c "print($duration + 3)")" >"$out/chatters.json" &
chatters_pid=$!
sleep 1.5

taskset -c 1 python3 - "$port" "$duration" "$threads" "$server_pid" "$out/storm.json" \
  "$out/chatters.json" <<'PY'
import json, os, socket, struct, sys, threading, time

port, duration, threads, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
result_path, chatters_path = sys.argv[5], sys.argv[6]

def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))

baseline = (rss_kib(), fds())
connects, failures = [0] * threads, [0] * threads
def storm(i):
    linger = struct.pack("ii", 1, 0)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        try:
            s.connect(("127.0.0.1", port))
            connects[i] += 1
        except OSError:
            failures[i] += 1
        s.close()

samples = []
def sample(until):
    while time.monotonic() < until:
        samples.append((time.monotonic(), rss_kib(), fds()))
        time.sleep(0.1)

started = time.monotonic()
sampler = threading.Thread(target=sample, args=(started + duration + 5,))
sampler.start()
workers = [threading.Thread(target=storm, args=(i,)) for i in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
ended = time.monotonic()
sampler.join()
after = (rss_kib(), fds())
# The chatters stop by themselves a little after the storm, and write their report then.
deadline = time.monotonic() + 60
while True:
    try:
        with open(chatters_path) as f:
            chat = json.load(f)
        break
    except (OSError, ValueError):
        if time.monotonic() > deadline:
            sys.exit("the chatters did not report within 60 s")
        time.sleep(0.2)
report = {
    "connects": sum(connects), "connect_failures": sum(failures), "storm_secs": round(ended - started, 2),
    "threads": threads,
    "baseline_rss_kib": baseline[0], "baseline_fds": baseline[1],
    "peak_rss_kib": max(s[1] for s in samples), "peak_fds": max(s[2] for s in samples),
    "rss_kib_5s_after": after[0], "fds_5s_after": after[1],
    "chatter_lines_sent": chat["sent"], "chatter_deliveries": chat["delivered"],
    "chatter_deliveries_expected": chat["expected"],
    "chatter_latency_us_p50": chat["latency_us_p50"], "chatter_latency_us_p99": chat["latency_us_p99"],
    "chatter_latency_us_max": chat["latency_us_max"],
}
with open(result_path, "w") as f:
    json.dump(report, f)
print(f"connects in {report['storm_secs']} s ({threads} threads): {report['connects']:,} ({report['connect_failures']:,} failed)")
print(f"chatters: {report['chatter_deliveries']:,} of {report['chatter_deliveries_expected']:,} lines delivered; "
      f"latency p50 {report['chatter_latency_us_p50']/1000:.2f} ms, p99 {report['chatter_latency_us_p99']/1000:.2f} ms, "
      f"max {report['chatter_latency_us_max']/1000:.1f} ms")
print(f"server RSS: {baseline[0]:,} KiB before, {report['peak_rss_kib']:,} KiB at most, "
      f"{after[0]:,} KiB 5 s after the storm")
print(f"server descriptors: {baseline[1]} before, {report['peak_fds']:,} at most, {after[1]} 5 s after")
PY
wait "$chatters_pid"
echo "== results in $out/storm.json"
