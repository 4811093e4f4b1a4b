#!/usr/bin/env bash
# Soak: one pollchat server (release build), serving plain TCP, TLS and HTTP (WebSocket), under the chaos
# scenario for DURATION seconds, in rounds of about 30 s (at least two), with its limits set
# low enough that misbehaving clients hit them. Prints the report and the server's counters, and exits non-zero if any
# check failed. Every process it starts is stopped, by PID, on exit or Ctrl-C.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/soak.sh DURATION

Starts a fresh release server and runs `pollchat-bench --scenario chaos` against it for
DURATION seconds (at least 10) in rounds of about 30 s, at least two (see "The chaos run" in
docs/limits.md for what each round checks). The server also serves TLS, with a
self-signed certificate made by scripts/gen-cert.sh in a temporary directory: every other
chatter talks TLS, and garbage, stalled handshakes and TLS non-readers abuse the TLS port.
It serves HTTP too: every third chatter talks WebSocket, and unmasked frames, messages over
--max-line, unfinished request heads and WebSocket non-readers abuse the HTTP port.
With two or more cores the server is pinned to core 0 and the generator to core 1.

The server runs with:
  --max-clients N      three quarters of the well-behaved (chatters, 4 room chatters,
                       3 pingers) + misbehaving + storm (245 by default): storms go
                       past it and are refused
  --max-output 512K --output-grace 1
                       non-readers are cut off as too slow within their lifetime
  --rate 100 --burst 100
                       flood control still holds flooders back, and what it lets
                       through fills non-readers' queues
  --tls-handshake-timeout 1
                       stalled TLS handshakes are closed within a staller's lifetime
  --http-head-timeout 1
                       unfinished HTTP request heads are closed within a slowloris's
                       lifetime

Environment (defaults in brackets):
  SOAK_PORT [27878], SOAK_STATS_PORT [27879], SOAK_TLS_PORT [27880],
  SOAK_HTTP_PORT [27881]
                                               loopback ports for the server
  SOAK_CHATTERS [20], SOAK_CONNS [100], SOAK_STORM [200]
                                               well-behaved chatters, misbehaving clients
                                               at once, connections per storm
  SOAK_ROUND [30]                              seconds per round, roughly
  SOAK_OUT [target/soak/soak-TIMESTAMP]        report.txt and the server's server.log

Uses loopback only. Bounded in time: the generator is stopped after DURATION plus 40 s per
round (the most the phases around each round's chaos can take) plus 30 s.
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  ''|*[!0-9]*) usage >&2; exit 2 ;;
esac
duration=$1
if [ "$duration" -lt 10 ]; then
  echo "DURATION must be at least 10 seconds (two rounds of at least 5 s)" >&2
  exit 2
fi

port=${SOAK_PORT:-27878}
stats_port=${SOAK_STATS_PORT:-27879}
tls_port=${SOAK_TLS_PORT:-27880}
http_port=${SOAK_HTTP_PORT:-27881}
chatters=${SOAK_CHATTERS:-20}
conns=${SOAK_CONNS:-100}
storm=${SOAK_STORM:-200}
round=${SOAK_ROUND:-30}
out=${SOAK_OUT:-}
[ -n "$out" ] && out=$(realpath -m "$out")  # before lib.sh moves to the repository root
source "$(dirname "$0")/lib.sh"
out="${out:-target/soak/soak-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"

# Rounds of about SOAK_ROUND seconds, at least two; the chaos time is split evenly.
rounds=$(( (duration + round / 2) / round ))
[ "$rounds" -lt 2 ] && rounds=2
per_round=$(python3 -c "print(round($duration / $rounds, 1))")
# The well-behaved: the chatters, the chaos run's 4 room chatters (its --room-chatters
# default) and its three pingers (plain, TLS, WebSocket).
well_behaved=$(( chatters + 4 + 3 ))
max_clients=$(( (well_behaved + conns + storm) * 3 / 4 ))

# Another server already on the port would answer in place of ours.
for p in "$port" "$stats_port" "$tls_port" "$http_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "something is already listening on 127.0.0.1:$p (set SOAK_PORT / SOAK_STATS_PORT /" \
      "SOAK_TLS_PORT / SOAK_HTTP_PORT)" >&2
    exit 1
  fi
done

server_cpu=() generator_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0) generator_cpu=(taskset -c 1)
fi

# The certificate lives only as long as the run; removed on exit with the server stopped.
cert_dir=$(mktemp -d)
trap 'stop_server; rm -rf "$cert_dir"' EXIT
scripts/gen-cert.sh "$cert_dir" >/dev/null

build_release
echo "== server on 127.0.0.1:$port, 127.0.0.1:$tls_port (TLS) and 127.0.0.1:$http_port (HTTP)," \
  "stats on udp $stats_port, log in $out/server.log"
"${server_cpu[@]}" "$pollchat" --bind "127.0.0.1:$port" --stats-udp "127.0.0.1:$stats_port" \
  --tls-bind "127.0.0.1:$tls_port" --tls-cert "$cert_dir/cert.pem" \
  --tls-key "$cert_dir/key.pem" --tls-handshake-timeout 1 \
  --http-bind "127.0.0.1:$http_port" --http-head-timeout 1 \
  --max-clients "$max_clients" --max-output 512K --output-grace 1 --rate 100 --burst 100 \
  --log-level warn 2>"$out/server.log" &
server_pid=$!
wait_for_port "$port"
wait_for_port "$tls_port"
wait_for_port "$http_port"

echo "== chaos: $rounds rounds of $per_round s, $chatters chatters, $conns misbehaving at once," \
  "storms of $storm, against --max-clients $max_clients"
limit=$(( duration + rounds * 40 + 30 ))
set +e
timeout "$limit" "${generator_cpu[@]}" "$pollchat_bench" --scenario chaos \
  --target "127.0.0.1:$port" --server-pid "$server_pid" --server-stats "127.0.0.1:$stats_port" \
  --tls-target "127.0.0.1:$tls_port" --tls-ca "$cert_dir/cert.pem" \
  --ws-target "127.0.0.1:$http_port" \
  --chatters "$chatters" --conns "$conns" --storm "$storm" \
  --duration "$per_round" --rounds "$rounds" | tee "$out/report.txt"
status=${PIPESTATUS[0]}
set -e

# The server must still be running, and must shut down cleanly on SIGTERM.
if kill -0 "$server_pid" 2>/dev/null; then
  kill "$server_pid"
  set +e
  wait "$server_pid"
  server_status=$?
  set -e
  server_pid=""
  echo "== server stopped with SIGTERM: exit status $server_status"
else
  echo "== the server was no longer running at the end" >&2
  server_status=1
fi
echo "== server log (warn): $(wc -l <"$out/server.log") lines; report in $out/report.txt"

if [ "$status" -eq 124 ]; then
  echo "soak: FAIL (the generator did not finish within $limit s)" >&2
  exit 1
fi
if [ "$status" -ne 0 ] || [ "$server_status" -ne 0 ]; then
  echo "soak: FAIL" >&2
  exit 1
fi
echo "soak: PASS"
