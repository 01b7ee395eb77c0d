"""Opens many keep-alive client connections, each after one complete request, and holds them idle
while the caller measures the proxy's memory; then closes them all.

Connections are opened with bounded concurrency, so the proxy's upstream pool stays small and
what is measured is the cost of idle *client* connections.
"""

import asyncio
import time

REQUEST = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def _request_on_new_connection(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        writer.close()
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return reader, writer


async def _hold(port, count, concurrency, measure):
    gate = asyncio.Semaphore(concurrency)
    failures = []

    async def one():
        async with gate:
            try:
                return await _request_on_new_connection(port)
            except (OSError, RuntimeError, asyncio.IncompleteReadError) as e:
                failures.append(repr(e))
                return None

    began = time.monotonic()
    opened = [c for c in await asyncio.gather(*(one() for _ in range(count))) if c]
    open_seconds = time.monotonic() - began
    await asyncio.sleep(1.0)  # let the proxy settle (buffers returned, pools idle)
    figures = measure()
    still_open = sum(1 for reader, _ in opened if not reader.at_eof())
    for _, writer in opened:
        writer.close()
    await asyncio.sleep(0.2)
    return {
        "requested": count,
        "opened": len(opened),
        "still_open": still_open,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "open_seconds": open_seconds,
        **figures,
    }


def hold_idle_connections(port, count, measure, concurrency=64):
    """Opens `count` idle keep-alive connections to 127.0.0.1:`port`, calls `measure()` while they
    are held, and returns its dict plus connection counts."""
    return asyncio.run(_hold(port, count, concurrency, measure))
