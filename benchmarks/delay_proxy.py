"""A TCP proxy on loopback that delays every chunk by a fixed time each way: a real link's
round trip for benchmarks on one machine (where tc netem is not available).

    python3 benchmarks/delay_proxy.py LISTEN_PORT TARGET_PORT [--delay-ms 10]

Each direction keeps its order; a chunk is sent `delay` after it arrived, so a request and its
answer take 2 x delay more, as over a link with that one-way latency (bandwidth is not limited).
With an SSH profile pointed at LISTEN_PORT (sshd: tests/infra/sshd-up.sh), bench_loop.py shows
what each round trip of a save costs: at 25 ms one way, the pass's check folded into its first
exec took save -> first output from 229.5 to 179.4 ms (p50, two runs each, 20 saves).
"""

from __future__ import annotations

import argparse
import asyncio


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    async def sender() -> None:
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(sender())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + delay, data))
    finally:
        queue.put_nowait((0, None))
        await task


async def main(listen: int, target: int, delay: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, up_writer, delay), pipe(up_reader, writer, delay),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("listen", type=int, help="the port to listen on (127.0.0.1)")
    parser.add_argument("target", type=int, help="the port to forward to (127.0.0.1)")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay per chunk (default 10)")
    args = parser.parse_args()
    asyncio.run(main(args.listen, args.target, args.delay_ms / 1000))
