"""WebSocket fan-out bench: N live connections, samples ingested at a fixed rate.

    python bench/ws.py --connections 10000 --rate 10000 --seconds 20

Starts its own `rtpm serve` (authentication and rate limits off, connection caps raised; or give
--url and --server-pid), opens N connections subscribed to a mix of series (most to one series,
some to ten, a few to a hundred), ingests `rate` samples/s spread over `series` series from a
separate process, and prints: connections held, messages and samples received, delivery latency
(the commit time the server stamps on each message -> the client receiving it) p50/p99/max, lagged
notices, and the server's RSS. The client side is a plain asyncio protocol per socket that parses
server frames inline (no task per socket, no general-purpose state machine per message), so the
load client, which shares the machine's cores with the server, costs as little CPU as it can.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import orjson
import psutil
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.uri import parse_uri

METRICS = 100  # series are bench_m{0..99}{i="0".."(series/100 - 1)"}


class Stats:
    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.messages = 0
        self.samples = 0
        self.lagged = 0
        self.errors = 0
        self.closed = 0
        self.measuring = False
        self._commit_cache: dict[str, float] = {}

    def commit_seconds(self, stamp: str) -> float:
        t = self._commit_cache.get(stamp)
        if t is None:
            if len(self._commit_cache) > 100_000:
                self._commit_cache.clear()
            t = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
            self._commit_cache[stamp] = t
        return t


class BenchClient(asyncio.Protocol):
    """One connection: the upgrade by hand, then server frames parsed inline (they are unmasked and,
    from uvicorn, never fragmented; fragments are reassembled anyway). Each text message is decoded
    with orjson; what the client sends (subscribe, pongs, close) is framed by `websockets`."""

    def __init__(self, url: str, subscription: dict[str, object], stats: Stats) -> None:
        uri = parse_uri(url)
        self.request = (
            f"GET {uri.resource_name} HTTP/1.1\r\nHost: {uri.host}:{uri.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.subscription = subscription
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.open = False
        self.upgraded = False
        self.buf = b""
        self.fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def _send(self, opcode: Opcode, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(WsFrame(opcode, data).serialize(mask=True, extensions=[]))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self._fail("upgrade refused: " + buf.split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            self.upgraded = True
            buf = buf[end + 4 :]
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, length = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            end = pos + head + length
            if end > n:
                break
            payload = buf[pos + head : end]
            pos = end
            opcode = b0 & 0x0F
            if opcode == 0x1 or opcode == 0x0:  # text, continuation
                if not b0 & 0x80:
                    self.fragments.append(payload)
                    continue
                if self.fragments:
                    payload = b"".join([*self.fragments, payload])
                    self.fragments = []
                self._message(payload)
            elif opcode == 0x9:  # ping
                self._send(Opcode.PONG, payload)
            elif opcode == 0x8:  # close
                self._send(Opcode.CLOSE, payload[:2])
                if self.open:
                    self.stats.closed += 1
                self.open = False
                if self.transport is not None:
                    self.transport.close()
                break
        self.buf = buf[pos:]

    def _message(self, payload: bytes) -> None:
        stats = self.stats
        msg = orjson.loads(payload)
        kind = msg["type"]
        if kind == "metric":
            stats.messages += 1
            stats.samples += len(msg["samples"])
            if stats.measuring:
                stats.latencies_ms.append((time.time() - stats.commit_seconds(msg["committed_at"])) * 1000)
        elif kind == "connection":
            self._send(Opcode.TEXT, orjson.dumps({"type": "subscribe", "data": self.subscription}))
        elif kind == "subscribed":
            self.open = True
            if not self.ready.done():
                self.ready.set_result(True)
        elif kind == "lagged":
            stats.lagged += 1
        elif kind == "error":
            stats.errors += 1
            if not self.ready.done():
                self.ready.set_result(False)

    def _fail(self, why: str) -> None:
        print(why, file=sys.stderr)
        if not self.ready.done():
            self.ready.set_result(False)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self.stats.closed += 1
        self.open = False
        if not self.ready.done():
            self.ready.set_result(False)


def subscription_for(k: int, series: int, rng: random.Random) -> dict[str, object]:
    per_metric = max(series // METRICS, 1)
    metric = f"bench_m{rng.randrange(METRICS)}"
    roll = rng.random()
    if roll < 0.90:  # one series
        return {"subscription": "metrics", "metrics": [metric], "labels": {"i": str(rng.randrange(per_metric))}}
    if roll < 0.99:  # about ten series
        return {"subscription": "metrics", "metrics": [metric], "matchers": [f'i=~"{rng.randrange(10)}[0-9]?"']}
    return {"subscription": "metrics", "metrics": [metric]}  # a whole metric (series/100 series)


def ingest_loop(url: str, rate: int, series: int, stop_at: float) -> None:
    """Separate process: every 100 ms, rate/10 samples, walking round the series."""
    per_tick = max(rate // 10, 1)
    per_metric = max(series // METRICS, 1)
    cursor = 0
    began = time.monotonic()
    with httpx.Client(base_url=url, timeout=30) as client:
        next_tick = time.monotonic()
        while time.monotonic() < stop_at:
            now = time.time()
            items = []
            for _ in range(per_tick):
                s = cursor % series
                cursor += 1
                items.append(
                    {"name": f"bench_m{s // per_metric % METRICS}", "value": now, "labels": {"i": str(s % per_metric)}}
                )
            r = client.post("/api/v1/metrics/batch", json={"metrics": items})
            if r.status_code != 201:
                print(f"ingest: HTTP {r.status_code} {r.text[:200]}", file=sys.stderr)
            next_tick += 0.1
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    print(f"ingested              {cursor / (time.monotonic() - began):,.0f} samples/s (loader)", flush=True)


def start_server(port: int, connections: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTPM_")}
    env.update(
        {
            "RTPM_DATA_DIR": str(data_dir),
            "RTPM_AUTH__ENABLED": "false",
            "RTPM_AUTH__RATE_LIMIT__ENABLED": "false",
            "RTPM_REALTIME__MAX_CONNECTIONS": str(connections + 1000),
            "RTPM_REALTIME__MAX_CONNECTIONS_PER_CREDENTIAL": str(connections + 1000),
            "RTPM_JOBS": "off",
            "RTPM_LOG_LEVEL": "warning",
            "RTPM_ENVIRONMENT": "test",
        }
    )
    log = open(data_dir.parent / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtpm", "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("server did not start; see " + str(data_dir.parent / "server.log"))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(args: argparse.Namespace, url: str, server_pid: int) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    rng = random.Random(42)
    host, port = url.removeprefix("http://").split(":")
    ws_url = f"ws://{host}:{port}/ws/metrics"
    clients: list[BenchClient] = []
    gate = asyncio.Semaphore(args.open_concurrency)

    async def open_one(k: int) -> None:
        async with gate:
            client = BenchClient(ws_url, subscription_for(k, args.series, rng), stats)
            try:
                await loop.create_connection(lambda: client, host, int(port))
                await asyncio.wait_for(client.ready, 60)
            except (OSError, TimeoutError) as exc:
                print(f"connection {k}: {exc!r}", file=sys.stderr)
                return
            clients.append(client)

    started = time.monotonic()
    await asyncio.gather(*(open_one(k) for k in range(args.connections)))
    opened = sum(c.open for c in clients)
    print(f"opened {opened}/{args.connections} connections in {time.monotonic() - started:.1f}s", flush=True)

    server = psutil.Process(server_pid)
    stop_at = time.time() + args.warmup + args.seconds
    loader = multiprocessing.get_context("spawn").Process(
        target=ingest_loop, args=(url, args.rate, args.series, time.monotonic() + args.warmup + args.seconds)
    )
    loader.start()
    await asyncio.sleep(args.warmup)
    stats.measuring = True
    before = (stats.messages, stats.samples)
    peak_rss = 0
    t0 = time.monotonic()
    while time.time() < stop_at:
        await asyncio.sleep(1)
        peak_rss = max(peak_rss, server.memory_info().rss)
    stats.measuring = False
    elapsed = time.monotonic() - t0
    await loop.run_in_executor(None, loader.join)
    held = sum(c.open for c in clients)
    lat = stats.latencies_ms
    msgs, samples = stats.messages - before[0], stats.samples - before[1]
    print(f"connections held      {held} of {args.connections}")
    print(f"ingest rate           {args.rate} samples/s over {args.series} series")
    print(f"received              {msgs / elapsed:,.0f} messages/s, {samples / elapsed:,.0f} samples/s")
    print(
        f"delivery latency      p50 {percentile(lat, 0.5):.0f} ms, p99 {percentile(lat, 0.99):.0f} ms, "
        f"max {max(lat, default=float('nan')):.0f} ms (commit -> client)"
    )
    print(f"lagged notices        {stats.lagged}; closed by server {stats.closed}; errors {stats.errors}")
    print(f"server RSS            {server.memory_info().rss / 2**20:.0f} MiB now, {peak_rss / 2**20:.0f} MiB peak")
    for c in clients:
        if c.transport is not None:
            c.transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=10_000, help="samples ingested per second")
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--open-concurrency", type=int, default=200)
    parser.add_argument("--url", default=None, help="a running server (auth off, caps raised); default: start one")
    parser.add_argument("--server-pid", type=int, default=None, help="with --url: the server's pid, for RSS")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.connections + 1024) if hard != resource.RLIM_INFINITY else args.connections + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    proc = None
    if args.url is None:
        tmp = Path(tempfile.mkdtemp(prefix="rtpm-bench-ws-"))
        sock_port = _free_port()
        proc = start_server(sock_port, args.connections, tmp / "data")
        url, pid = f"http://127.0.0.1:{sock_port}", proc.pid
        print(f"server pid {pid}, data in {tmp}", flush=True)
    else:
        url, pid = args.url.rstrip("/"), args.server_pid or 0
    try:
        try:
            import uvloop

            uvloop.run(run(args, url, pid))
        except ImportError:
            asyncio.run(run(args, url, pid))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
