#!/bin/sh
# Fan-out to 1,000 receivers over plain TCP and over WebSocket, against one pollchat server
# that listens for both, in alternate runs, so both see the same machine. One JSON line per
# run on stdout (`pollchat bench --json`, plus "proto"). Loopback only.
#
#   benches/ws_fanout.sh [RUNS] [SECONDS] > benches/results/ws-fanout-DATE.jsonl
#
# Each run: 1,001 connections (one sender, 1,000 receivers), --rate max with a window of 8
# lines in flight, SECONDS of traffic. The server's CPU time during the traffic comes from
# /proc (--server-pid), so "server CPU per delivery" is server_cpu_secs / delivered.
set -eu
RUNS=${1:-5}
SECS=${2:-5}
BIN=${BIN:-target/release/pollchat}
TCP=127.0.0.1:17878
HTTP=127.0.0.1:17880
"$BIN" --bind "$TCP" --http-bind "$HTTP" --rate 0 --quiet-joins --log-level warn &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
# The server is ready once it answers on its HTTP port (bounded: 50 tries).
i=0
until curl -sf "http://$HTTP/metrics" >/dev/null 2>&1; do
    i=$((i + 1)); [ "$i" -lt 50 ] || { echo "server did not start" >&2; exit 1; }
    sleep 0.1
done
run=0
while [ "$run" -lt "$RUNS" ]; do
    for proto in pollchat ws; do
        if [ "$proto" = ws ]; then target=$HTTP; else target=$TCP; fi
        "$BIN" bench --proto "$proto" --target "$target" --conns 1001 --senders 1 \
            --rate max --window 8 --duration "$SECS" --hold 0.5 --server-pid "$SERVER" --json \
            | sed "s/^{/{\"run\":$run,/"
    done
    run=$((run + 1))
done
