#!/bin/sh
# Server instructions per delivery, TCP against WebSocket, counted by callgrind: instruction
# counts do not depend on what else the machine is doing. For each protocol the server runs
# twice under callgrind, with the same 1,001 connections and SHORT then LONG seconds of
# paced traffic (one sender, 1,000 receivers); the difference in instructions over the
# difference in deliveries leaves out start-up, connecting and shutdown. Loopback only.
#
#   benches/ws_fanout_callgrind.sh [RATE] [SHORT] [LONG]
set -eu
RATE=${1:-10}
SHORT=${2:-2}
LONG=${3:-6}
BIN=${BIN:-target/release/pollchat}
OUT=${OUT:-target/callgrind}
mkdir -p "$OUT"
TCP=127.0.0.1:17978
HTTP=127.0.0.1:17980

run() { # proto seconds -> "instructions delivered"
    proto=$1 secs=$2
    file="$OUT/$proto-$secs.out"
    valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$BIN" --bind "$TCP" --http-bind "$HTTP" --rate 0 --quiet-joins --log-level warn \
        2>"$OUT/$proto-$secs.valgrind" &
    server=$!
    i=0
    until curl -sf "http://$HTTP/metrics" >/dev/null 2>&1; do
        i=$((i + 1)); [ "$i" -lt 300 ] || { echo "server did not start" >&2; exit 1; }
        sleep 0.1
    done
    if [ "$proto" = ws ]; then target=$HTTP; else target=$TCP; fi
    delivered=$("$BIN" bench --proto "$proto" --target "$target" --conns 1001 --senders 1 \
        --rate "$RATE" --duration "$secs" --hold 1 --connect-rate 500 --json \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["delivered"]==r["expected"], r; print(r["delivered"])')
    kill -TERM "$server"
    wait "$server" || true
    ir=$(grep '^summary:' "$file" | awk '{print $2}')
    echo "$ir $delivered"
}

for proto in pollchat ws; do
    set -- $(run "$proto" "$SHORT")
    short_ir=$1 short_d=$2
    set -- $(run "$proto" "$LONG")
    long_ir=$1 long_d=$2
    python3 -c "
p, si, sd, li, ld = '$proto', $short_ir, $short_d, $long_ir, $long_d
print(f'{p}: {sd} deliveries {si} Ir; {ld} deliveries {li} Ir; '
      f'{(li - si) / (ld - sd):.0f} Ir per delivery')"
done
