#!/usr/bin/env python3
"""Load time of a full --state-dir: writes a state file of ROOMS rooms x HISTORY lines of
LINE bytes (each room with a topic), in pollchat's format (src/state/format.rs), starts the
server on it (loopback, port 0) and reads the load time from its log line
("state: N records from FILE in X ms: R rooms"), RUNS times; prints each run and the median.
Every server it starts is stopped by its PID; each run is bounded by a 60 s deadline."""
import argparse, os, signal, statistics, struct, subprocess, sys, tempfile, time, zlib

MAGIC, VERSION = b"pollchat state\n", 1
LINE, TOPIC = 1, 2


def record(kind, room, payload):
    body = bytes([kind, len(room)]) + room + payload
    length = struct.pack("<I", len(body))[:3]
    check = zlib.crc32(length) & 0xFF
    return length + bytes([check]) + struct.pack("<I", zlib.crc32(body)) + body


def state_file(path, rooms, history, line):
    with open(path, "wb") as f:
        f.write(MAGIC + bytes([VERSION]))
        for r in range(rooms):
            room = b"#room%d" % r
            f.write(record(TOPIC, room, b"the topic of room %d" % r))
            for n in range(history):
                text = b"<guest-%d> " % n
                text += b"x" * max(0, line - len(text) - 1) + b"\n"
                f.write(record(LINE, room, text))


def one(binary, directory, rooms, history):
    args = [binary, "--bind", "127.0.0.1:0", "--state-dir", directory, "--history",
            str(history), "--max-rooms", str(rooms + 1), "--log-level", "info"]
    started = time.monotonic()
    server = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    loaded = None
    try:
        for line in server.stderr:
            if "state: " in line and " records from " in line:
                loaded = line.strip()
            if "listening on" in line:
                break
            if time.monotonic() - started > 60:
                raise SystemExit("no 'listening on' within 60 s")
        ready = time.monotonic() - started
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
    if loaded is None:
        raise SystemExit("no load line in the server's log")
    seconds = float(loaded.split(" in ")[1].split(" ms")[0]) / 1e3
    return seconds, ready, loaded


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--binary", default="target/release/pollchat")
    p.add_argument("--rooms", type=int, default=1000)
    p.add_argument("--history", type=int, default=20)
    p.add_argument("--line", type=int, default=64, help="bytes per chat line")
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "pollchat.state")
        state_file(path, a.rooms, a.history, a.line)
        size = os.path.getsize(path)
        print(f"{a.rooms} rooms x {a.history} lines of {a.line} bytes: {size} bytes")
        loads, readies = [], []
        for _ in range(a.runs):
            # The file is rewritten at the first end of batch, not before "listening on":
            # each run starts from the same bytes.
            seconds, ready, line = one(a.binary, d, a.rooms, a.history)
            loads.append(seconds)
            readies.append(ready)
            print(f"  load {seconds:.3f} s, exec to listening {ready:.3f} s")
        print(f"median: load {statistics.median(loads):.3f} s, "
              f"exec to listening {statistics.median(readies):.3f} s")


if __name__ == "__main__":
    sys.exit(main())
