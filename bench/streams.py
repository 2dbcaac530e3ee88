"""Many slow streams at once: N clients connect in one burst to one `gateway serve` process in
front of an upstream that writes a delta every second, hold their streams to the end, and the
run counts what failed and what each open stream costs the gateway in memory."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead  # the bench's shared pieces: servers, configs, the request

# The kernel's count of connects dropped because a listen queue was full (all listeners in
# this network namespace): what a backlog too short for the burst shows as.
DROP_COUNTERS: Final = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop")
OPEN_WITHIN_S: Final = 300.0  # the burst is held once all are open, or this long after it began


@dataclass(slots=True)
class Tally:
    """How each stream ended, and when its milestones came."""

    outcomes: Counter[str] = field(default_factory=Counter)
    connect_s: list[float] = field(default_factory=list)
    first_event_s: list[float] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0


class StreamClient(asyncio.Protocol):
    """One client: sends the request once connected, reads the stream to its last event."""

    def __init__(self, request: bytes, tally: Tally, started: float, done: asyncio.Future[None]):
        self.request = request
        self.tally = tally
        self.started = started
        self.done = done
        self.head = b""
        self.length = 0  # of a refusal's body
        self.refusal = b""
        self.tail = b""  # the last bytes read, to find a marker split across two reads
        self.status = 0
        self.events = 0
        self.completed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.tally.connect_s.append(time.perf_counter() - self.started)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head[9:12])
            found = re.search(rb"\r\ncontent-length: *(\d+)", self.head[:end].lower())
            self.length = int(found.group(1)) if found else 0
            self.head, data = self.head[:end], self.head[end + 4 :]
        if self.status != 200:
            self.refusal += data
            if len(self.refusal) >= self.length:
                self.finish(self.refused())
            return
        window = self.tail + data
        events = window.count(b"event: ") - self.tail.count(b"event: ")
        if events and not self.events:
            self.tally.first_event_s.append(time.perf_counter() - self.started)
            self.tally.open_now += 1
            self.tally.most_open = max(self.tally.most_open, self.tally.open_now)
        self.events += events
        if b"event: response.completed" in window:
            self.completed = True
        if self.completed and window.endswith(b"0\r\n\r\n"):
            self.finish("completed")
        self.tail = window[-64:]

    def refused(self) -> str:
        try:
            code = orjson.loads(self.refusal)["error"]["code"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            code = None
        return f"HTTP {self.status} {code or ''}".strip()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status and self.status != 200:
            self.finish(self.refused())
        elif isinstance(exc, ConnectionResetError):
            self.finish("reset")
        elif exc is not None:
            self.finish(type(exc).__name__)
        else:
            self.finish("closed before its end")

    def finish(self, outcome: str) -> None:
        if self.done.done():
            return
        if self.events:
            self.tally.open_now -= 1
        self.tally.outcomes[outcome] += 1
        self.done.set_result(None)
        if self.transport is not None:
            self.transport.close()


async def one_stream(port: int, request: bytes, tally: Tally, limit_s: float) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit_s):
            await loop.create_connection(
                lambda: StreamClient(request, tally, started, done), "127.0.0.1", port
            )
            await done
    except TimeoutError:
        tally.outcomes["timed out"] += 1
    except ConnectionRefusedError:
        tally.outcomes["connect refused"] += 1
    except ConnectionResetError:
        tally.outcomes["reset"] += 1
    except OSError as exc:
        tally.outcomes[f"connect failed ({exc.strerror or type(exc).__name__})"] += 1


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + overhead.READY_TIMEOUT_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise overhead.SetupError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + overhead.READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise overhead.SetupError(f"the gateway exited:\n{overhead.tail(log)}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise overhead.SetupError(f"the gateway did not start:\n{overhead.tail(log)}")
        time.sleep(0.1)


def tcp_drops() -> Counter[str]:
    """TcpExt counters from /proc/net/netstat (empty where there is none)."""
    found: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            if names.startswith("TcpExt:"):
                row = dict(zip(names.split()[1:], values.split()[1:], strict=True))
                found.update({k: int(row[k]) for k in DROP_COUNTERS if k in row})
    return found


def rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0


@dataclass(slots=True)
class Peak:
    rss_kb: int = 0
    fds: int = 0
    open_streams: int = 0


async def watch(pid: int, tally: Tally, peak: Peak, stop: asyncio.Event) -> None:
    """The gateway's RSS and open files, sampled while the streams are held."""
    while not stop.is_set():
        rss = rss_kb(pid)
        if tally.open_now >= peak.open_streams:
            peak.open_streams = tally.open_now
            peak.fds = max(peak.fds, open_fds(pid))
        peak.rss_kb = max(peak.rss_kb, rss)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def burst(
    port: int, pid: int, n: int, request: bytes, hold_s: float, release: Callable[[], None]
) -> tuple[Tally, Peak, float]:
    """Opens `n` streams at once; once all are open (or none more opened for a while), holds
    them `hold_s` seconds, then `release()` makes the upstream end them all."""
    tally, peak, stop = Tally(), Peak(), asyncio.Event()
    watcher = asyncio.create_task(watch(pid, tally, peak, stop))
    started = time.perf_counter()
    limit_s = hold_s + OPEN_WITHIN_S + 60
    streams = asyncio.gather(*(one_stream(port, request, tally, limit_s) for _ in range(n)))
    opened = 0
    deadline = time.monotonic() + OPEN_WITHIN_S
    while tally.open_now + sum(tally.outcomes.values()) < n and time.monotonic() < deadline:
        if len(tally.first_event_s) != opened:
            opened = len(tally.first_event_s)
            deadline = min(time.monotonic() + hold_s + 10, started + OPEN_WITHIN_S)
        await asyncio.sleep(0.1)
    await asyncio.sleep(hold_s)
    release()
    await streams
    elapsed = time.perf_counter() - started
    stop.set()
    await watcher
    return tally, peak, elapsed


def raise_own_fd_limit(needed: int) -> int:
    """The client holds one socket per stream: lift this process's soft limit (its children
    inherit it) as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft


def run(args: argparse.Namespace) -> int:
    limit = raise_own_fd_limit(args.streams + 512)
    if limit < args.streams + 64:
        print(
            f"streams: the open-file limit ({limit}) is too low for {args.streams} streams",
            file=sys.stderr,
        )
        return 2
    servers = overhead.Servers()
    interval = args.interval
    # More deltas than any stream lives for: the run ends them all with SIGUSR1.
    deltas = round((OPEN_WITHIN_S + args.hold + 30) / interval)
    with tempfile.TemporaryDirectory(prefix="gw-streams-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            up_port = servers.start(
                "upstream",
                [
                    overhead.PYTHON,
                    str(overhead.HERE / "upstream.py"),
                    "--event-interval",
                    str(interval),
                    "--deltas",
                    str(deltas),
                ],
                None,
                tmp / "upstream.log",
            )
            wait_listening(up_port)
            config = overhead.gateway_config(f"http://127.0.0.1:{up_port}/v1")
            config["server"]["max_connections"] = max(10000, args.streams + 64)
            if args.backlog:
                config["server"]["backlog"] = args.backlog
            (tmp / "gateway.yaml").write_bytes(orjson.dumps(config))
            env = overhead.gateway_env()
            port = servers.start(
                "gateway",
                [overhead.PYTHON, "-m", "gateway", "serve", "--config", str(tmp / "gateway.yaml")],
                None,
                tmp / "gateway.log",
                env,
            )
            gateway = servers.procs["gateway"]
            request = overhead.raw_request(overhead.SCENARIOS["stream"])
            upstream = servers.procs["upstream"]

            def release() -> None:
                upstream.send_signal(signal.SIGUSR1)

            wait_healthy(gateway, port, tmp / "gateway.log")
            # A few streams first, so what is made once (imports, pools, buffers) is not
            # counted against the burst.
            warm, _, _ = uvloop.run(burst(port, gateway.pid, 20, request, 0.5, release))
            if warm.outcomes["completed"] != 20:
                raise overhead.SetupError(
                    f"the warm-up streams did not complete: {dict(warm.outcomes)}\n"
                    + overhead.tail(tmp / "gateway.log")
                )
            base_rss, base_fds = rss_kb(gateway.pid), open_fds(gateway.pid)
            print(
                f"opening {args.streams} streams at once (a delta every {interval:g} s), "
                f"holding them {args.hold:g} s once all are open ...",
                flush=True,
            )
            cpu0, drops0 = overhead.cpu_seconds(gateway.pid), tcp_drops()
            tally, peak, elapsed = uvloop.run(
                burst(port, gateway.pid, args.streams, request, args.hold, release)
            )
            cpu = overhead.cpu_seconds(gateway.pid) - cpu0
            drops = tcp_drops()
            drops.subtract(drops0)
            if gateway.poll() is not None:
                raise overhead.SetupError(
                    "the gateway died:\n" + overhead.tail(tmp / "gateway.log")
                )
        except overhead.SetupError as exc:
            print(f"streams: {exc}", file=sys.stderr)
            return 1
        finally:
            overhead.stop_all(servers.children)
    report(args, tally, peak, elapsed, cpu, base_rss, base_fds, limit, drops)
    failed = sum(n for what, n in tally.outcomes.items() if what != "completed")
    return 1 if failed else 0


def report(
    args: argparse.Namespace,
    tally: Tally,
    peak: Peak,
    elapsed: float,
    cpu: float,
    base_rss: int,
    base_fds: int,
    limit: int,
    drops: Counter[str],
) -> None:
    n = args.streams
    completed = tally.outcomes["completed"]
    grown = peak.rss_kb - base_rss
    info = overhead.machine()
    print()
    print(
        f"machine: nproc {info['nproc']}, {info['cpu']}, Python {info['python']}, "
        f"aiohttp {info['aiohttp']}, uvloop {info['uvloop']}; open-file limit {limit}; "
        f"backlog {args.backlog or 'default'}"
    )
    rows = [
        ("streams opened at once", f"{n}"),
        ("completed (every event, then the end)", f"{completed}"),
        ("failed", f"{n - completed}  {dict(tally.outcomes - Counter(completed=completed))}"),
        ("most open at the same time", f"{tally.most_open}"),
        (
            "connect time p50 / p99 / max",
            " / ".join(
                f"{overhead.percentile(tally.connect_s, q) * 1e3:.0f} ms" for q in (0.5, 0.99, 1.0)
            ),
        ),
        (
            "connects the kernel dropped (full listen queue)",
            ", ".join(f"{k} {drops[k]}" for k in DROP_COUNTERS) or "(no /proc/net/netstat)",
        ),
        (
            "first event p50 / p99 / max",
            " / ".join(
                f"{overhead.percentile(tally.first_event_s, q) * 1e3:.0f} ms"
                for q in (0.5, 0.99, 1.0)
            ),
        ),
        ("whole run", f"{elapsed:.1f} s, gateway CPU {cpu:.1f} s"),
        (
            "gateway RSS before / at the peak",
            f"{base_rss / 1024:.0f} MB / {peak.rss_kb / 1024:.0f} MB",
        ),
        (
            "gateway memory per open stream",
            f"{grown / max(1, tally.most_open):.1f} KB"
            if tally.most_open
            else "(no stream was open)",
        ),
        (
            "gateway open files before / at the peak",
            f"{base_fds} / {peak.fds} (at {peak.open_streams} open streams)",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")
    print(
        "  (times are from the burst's start; the drop counters cover every listener on this "
        "host during the burst)"
    )
    if tally.most_open < n:
        print(f"warning: only {tally.most_open} of {n} streams were open at the same time")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=8000, help="streams opened at once")
    parser.add_argument(
        "--hold",
        type=float,
        default=5.0,
        help="seconds the streams are held open together before the upstream ends them",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between deltas")
    parser.add_argument(
        "--backlog", type=int, default=0, help="the gateway's server.backlog (default: its own)"
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
