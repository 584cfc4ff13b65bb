"""A TCP proxy that holds every chunk for a while in each direction: Redis "another host
away" on loopback, for both benchmarks (``--redis-delay-ms``).

    python -m bench.delay LISTEN_PORT UPSTREAM_PORT MILLISECONDS

MILLISECONDS is the round trip it adds, half each way. It runs in a process of its own,
so its work never shares the interpreter of the apps being timed.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from types import TracebackType

from tests.redis_server import free_port


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def receive() -> None:
        while data := await reader.read(65536):
            chunks.put_nowait((loop.time() + delay, data))
        chunks.put_nowait(None)

    async def send() -> None:
        while (item := await chunks.get()) is not None:
            due, data = item
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    await asyncio.gather(receive(), send())


async def _serve(listen: int, upstream: int, delay: float) -> None:
    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        try:
            await asyncio.gather(_pipe(reader, up_writer, delay), _pipe(up_reader, writer, delay))
        except ConnectionError:
            writer.close()
            up_writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


class DelayProxy:
    """``python -m bench.delay`` in a subprocess in front of ``upstream_url``'s port;
    :attr:`url` reaches Redis through it."""

    def __init__(self, upstream_url: str, milliseconds: float) -> None:
        host_port = upstream_url.split("//", 1)[1].split("/", 1)[0]
        upstream = int(host_port.rsplit(":", 1)[1])
        port = free_port()
        self.url = upstream_url.replace(f":{upstream}", f":{port}", 1)
        self.process = subprocess.Popen(  # noqa: S603 - our own arguments
            [sys.executable, "-m", "bench.delay", str(port), str(upstream), str(milliseconds)]
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.close()
                    raise SystemExit("the delay proxy did not start") from None
                time.sleep(0.05)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":
    listen_port, upstream_port, milliseconds = sys.argv[1:4]
    asyncio.run(_serve(int(listen_port), int(upstream_port), float(milliseconds) / 2000))
