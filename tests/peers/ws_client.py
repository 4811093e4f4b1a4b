"""A WebSocket client pollchat's authors did not write: Python's `websockets` (Debian's
python3-websockets), driven by tests/web.rs against a real server.

    ws_client.py ws://127.0.0.1:PORT/ws

Reads the welcome and prints `nick NICK`; says `hello from python`; waits for a line with
`hello from nc` (sent by the test's plain TCP client) and prints `heard LINE`; then `/quit`,
and prints `closed CODE` once the server's close frame has come. Each step has a deadline;
any failure is a traceback and a non-zero exit.
"""

import asyncio
import sys

import websockets

DEADLINE = 20


def say(line):
    print(line, flush=True)


async def next_text(ws):
    message = await asyncio.wait_for(ws.recv(), DEADLINE)
    assert isinstance(message, str), f"a binary message: {message!r}"
    return message


async def main(url):
    async with websockets.connect(url, open_timeout=DEADLINE) as ws:
        welcome = await next_text(ws)
        prefix = "*** welcome to pollchat, you are "
        assert welcome.startswith(prefix), welcome
        say("nick " + welcome[len(prefix):].split(" ")[0])
        await ws.send("hello from python")
        while "hello from nc" not in (line := await next_text(ws)):
            pass
        say("heard " + line)
        await ws.send("/quit")
        # What comes before the close: the goodbye line, perhaps others.
        try:
            while True:
                await next_text(ws)
        except websockets.exceptions.ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), DEADLINE)
        say(f"closed {ws.close_code}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
