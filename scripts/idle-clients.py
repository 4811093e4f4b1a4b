#!/usr/bin/env python3
"""Idle clients of one transport, and what they cost the server: opens --conns connections
to a pollchat listener (plain TCP, WebSocket at /ws, or TLS), waits until each has its
welcome, holds them idle, and prints one JSON object with the server's memory before and
after, per connection.

Used by scripts/idle-memory.sh; run it by hand against a server you started:

    scripts/idle-clients.py --transport tls --target 127.0.0.1:7879 --ca tls/cert.pem \
        --conns 10000 --server-pid PID

The figure is (RSS with every client idle - RSS before the first connect) / clients, from
/proc/PID/status, as `pollchat bench` reports it for plain TCP and WebSocket. This tool
exists because the load generator does not speak TLS; it measures every transport the same
way, so the three figures compare. It also reports RssAnon (heap and stacks, without the
pages of the binary's code that the first connection of a kind pulls in).

Loopback only; every wait is bounded (--deadline), and every socket is closed at the end.
"""

import argparse
import json
import os
import selectors
import socket
import ssl
import sys
import time

WELCOME = b"welcome to pollchat"
WS_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: idle\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{pid}/status")


class Client:
    """One connection, from connect to its welcome."""

    def __init__(self, sock, transport):
        self.sock = sock
        self.fd = sock.fileno()
        self.transport = transport
        self.connecting = True
        self.handshaking = False
        self.want_write = True
        self.got = b""
        self.out = WS_UPGRADE if transport == "ws" else b""
        self.ready = False

    def step(self, tls_context, host):
        """Moves on as far as the socket allows; True once welcomed. `want_write` says
        whether it waits for the socket to be writable (else readable)."""
        if self.connecting:
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise ConnectionError(f"connect: {os.strerror(error)}")
            self.connecting = False
            if self.transport == "tls":
                self.sock = tls_context.wrap_socket(
                    self.sock, server_hostname=host, do_handshake_on_connect=False
                )
                self.handshaking = True
        self.want_write = False
        if self.handshaking:
            try:
                self.sock.do_handshake()
                self.handshaking = False
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLWantWriteError:
                self.want_write = True
                return False
        if self.out:
            try:
                n = self.sock.send(self.out)
                self.out = self.out[n:]
            except (BlockingIOError, ssl.SSLWantWriteError):
                pass
            self.want_write = bool(self.out)
        while True:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not data:
                raise ConnectionError("closed by the server before its welcome")
            self.got += data
        if WELCOME in self.got:
            self.ready = True
            self.got = b""
        return self.ready


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transport", choices=["plain", "ws", "tls"], required=True)
    p.add_argument("--target", required=True, help="HOST:PORT of the listener (loopback)")
    p.add_argument("--conns", type=int, default=10000)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--ca", help="TLS: the server's certificate (PEM) to trust")
    p.add_argument("--in-flight", type=int, default=200,
                   help="connections between connect and welcome at once")
    p.add_argument("--hold", type=float, default=2.0, help="seconds idle before measuring")
    p.add_argument("--deadline", type=float, default=120.0,
                   help="seconds the connects may take in all")
    args = p.parse_args()

    host, port = args.target.rsplit(":", 1)
    if not (host.startswith("127.") or host in ("::1", "[::1]", "localhost")):
        raise SystemExit("loopback targets only")
    tls_context = None
    if args.transport == "tls":
        tls_context = ssl.create_default_context(cafile=args.ca)

    pid = args.server_pid
    rss_before, anon_before = status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon")
    sel = selectors.DefaultSelector()
    pending, ready, failed = set(), [], 0
    started = time.monotonic()
    opened = 0
    while (opened < args.conns or pending) and time.monotonic() - started < args.deadline:
        while opened < args.conns and len(pending) < args.in_flight:
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex((host, int(port)))
            client = Client(sock, args.transport)
            # By descriptor: a TLS client's socket object is replaced once it is connected.
            sel.register(client.fd, selectors.EVENT_WRITE, client)
            pending.add(client)
            opened += 1
        for key, _ in sel.select(timeout=0.5):
            client = key.data
            try:
                done = client.step(tls_context, host)
            except (OSError, ssl.SSLError, ConnectionError) as e:
                failed += 1
                print(f"connection failed: {e}", file=sys.stderr)
                sel.unregister(client.fd)
                pending.discard(client)
                client.sock.close()
                continue
            if done:
                # Idle from now on: not watched, never read again.
                sel.unregister(client.fd)
                pending.discard(client)
                ready.append(client)
            else:
                events = selectors.EVENT_WRITE if client.want_write else selectors.EVENT_READ
                sel.modify(client.fd, events, client)
    connect_secs = time.monotonic() - started
    failed += len(pending)
    time.sleep(args.hold)
    rss_idle, anon_idle = status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon")
    n = len(ready)
    print(json.dumps({
        "transport": args.transport,
        "conns": args.conns,
        "established": n,
        "failed": failed,
        "connect_secs": round(connect_secs, 2),
        "rss_kib_before": rss_before,
        "rss_kib_idle": rss_idle,
        "rss_bytes_per_conn": round((rss_idle - rss_before) * 1024 / n) if n else None,
        "anon_kib_before": anon_before,
        "anon_kib_idle": anon_idle,
        "anon_bytes_per_conn": round((anon_idle - anon_before) * 1024 / n) if n else None,
    }))
    for client in ready:
        client.sock.close()
    for client in pending:
        client.sock.close()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
