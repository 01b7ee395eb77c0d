"""A TCP relay that holds every chunk it reads for a delay before passing it on, both ways:
chaos-delay's stand-in for `tc netem delay`, which this kernel lacks (CONFIG_NET_SCH_NETEM is
not set). It runs inside a backend's network namespace, in front of the demo API.

It is an honest substitute for added latency on a link, not for netem: the delay is applied per
chunk of the byte stream in user space (each direction keeps its order), not per packet in the
kernel, and the TCP handshake with the relay itself is not delayed (a connect still succeeds at
once, as it would to a slow application behind a fast link).

    python3 delay_relay.py LISTEN_HOST:PORT TARGET_HOST:PORT DELAY_FILE

DELAY_FILE holds the one-way delay in milliseconds; it is re-read at most every 100 ms, so the
scenario changes the delay without breaking connections.
"""

import asyncio
import sys
import time
from pathlib import Path


class Delay:
    def __init__(self, path: Path):
        self.path, self.read_at, self.value = path, 0.0, 0.0

    def seconds(self) -> float:
        now = time.monotonic()
        if now - self.read_at > 0.1:
            self.read_at = now
            try:
                self.value = float(self.path.read_text().strip() or 0) / 1000.0
            except (OSError, ValueError):
                pass
        return self.value


async def pipe(reader, writer, delay: Delay):
    """Reads chunks as they come; each is written `delay` after it arrived, in order."""
    queue: asyncio.Queue = asyncio.Queue()

    async def read():
        while True:
            chunk = await reader.read(65536)
            await queue.put((time.monotonic() + delay.seconds(), chunk))
            if not chunk:
                return

    async def write():
        while True:
            due, chunk = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, OSError):
        writer.transport.abort()


async def main(listen: str, target: str, delay_file: str):
    delay = Delay(Path(delay_file))
    target_host, target_port = target.rsplit(":", 1)

    async def handle(client_reader, client_writer):
        try:
            backend_reader, backend_writer = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            client_writer.transport.abort()
            return
        await asyncio.gather(pipe(client_reader, backend_writer, delay),
                             pipe(backend_reader, client_writer, delay), return_exceptions=True)
        client_writer.close()
        backend_writer.close()

    host, port = listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port), backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
