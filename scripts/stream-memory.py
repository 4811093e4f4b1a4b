#!/usr/bin/env python3
"""Redis memory per entry of the backplane's stream, for typical pollchat events (127 bytes:
a 64-byte line said in #lobby by a guest, as the load generator's): INFO memory's
used_memory and MEMORY USAGE before and after XADDing 100,000 events, once with no MAXLEN
and once with the default MAXLEN ~ 10000. Talks to a Redis you started, on loopback:

    redis-server --port 16998 --bind 127.0.0.1 --save '' --appendonly no &
    python3 scripts/stream-memory.py 16998

It uses only the keys m:unbounded and m:maxlen~10000, and deletes them after."""
import socket, subprocess, sys, time, random, string, json

port = int(sys.argv[1])
N = 100_000

def cmd(sock, *parts):
    out = b"*%d\r\n" % len(parts)
    for p in parts:
        p = p if isinstance(p, bytes) else str(p).encode()
        out += b"$%d\r\n%s\r\n" % (len(p), p)
    return out

def rd(f):
    line = f.readline()
    t = line[:1]
    if t in b"+-:":
        return line[1:-2].decode()
    if t == b"$":
        n = int(line[1:-2])
        if n < 0: return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if t == b"*":
        n = int(line[1:-2])
        return [rd(f) for _ in range(max(n, 0))]
    raise ValueError(line)

s = socket.create_connection(("127.0.0.1", port))
f = s.makefile("rb")
def ask(*parts):
    s.sendall(cmd(s, *parts)); return rd(f)

def used():
    info = ask("INFO", "memory")
    return int([l for l in info.split("\r\n") if l.startswith("used_memory:")][0].split(":")[1])

random.seed(1)
origins = ["".join(random.choice("0123456789abcdef") for _ in range(32)) for _ in range(2)]
def event(n):
    # As the load generator's lines: 64-byte text, said in #lobby by one of four guests.
    o = origins[n % 2]
    text = ("%08d " % n) + "x" * 55
    return f"pc2 {o} {n % 500 + 1} SAY #lobby guest-{o[:4]}-{n % 4 + 1} {text}"

results = {}
for label, maxlen in (("unbounded", None), ("maxlen~10000", 10000)):
    key = f"m:{label}"
    ask("DEL", key)
    before = used()
    batch = b""
    for n in range(N):
        parts = ["XADD", key] + (["MAXLEN", "~", str(maxlen)] if maxlen else []) + ["*", "e", event(n)]
        batch += cmd(s, *parts)
        if n % 1000 == 999:
            s.sendall(batch); batch = b""
            for _ in range(1000): rd(f)
    after = used()
    length = int(ask("XLEN", key))
    usage = int(ask("MEMORY", "USAGE", key, "SAMPLES", "0"))
    results[label] = dict(events_added=N, length=length, used_memory_delta=after - before,
                          memory_usage=usage, bytes_per_entry_used=round((after - before) / length, 1),
                          bytes_per_entry_usage=round(usage / length, 1), event_bytes=len(event(0)))
    ask("DEL", key)
print(json.dumps(results, indent=1))
