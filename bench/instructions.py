"""Instructions (or CPU time) per request of one gateway target, for a fixed number of requests.

Wall-clock benchmarks on a shared machine move by tens of percent; the instructions the
gateway process executes for a fixed load do not (user space, counted by callgrind). This
starts the bench's upstream, a redis-server for the Redis targets and one gateway configured as
`make bench` configures that target, sends `--warm` requests, then counts the instructions
(or, with `--mode cpu`, the CPU time from /proc) of `--requests` more, `--connections` at once.

    .venv/bin/python bench/instructions.py store json
    .venv/bin/python bench/instructions.py limits stream --requests 300 --mode cpu
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import overhead as bench  # noqa: E402

from tests.support.redis_server import redis_binary  # noqa: E402

TARGETS = ("gateway", "limits", "store")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a server exited with {proc.returncode} before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), 1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listened on port {port} within {timeout_s} s")


async def drive(port: int, body: bytes, requests: int, connections: int) -> int:
    """Send `requests` requests, `connections` at once; returns how many were not a 200."""
    headers = {"authorization": f"Bearer {bench.KEY}", "content-type": "application/json"}
    url = f"http://127.0.0.1:{port}{bench.PATH}"
    left, failed = requests, 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:

        async def client() -> None:
            nonlocal left, failed
            while left > 0:
                left -= 1
                async with s.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    failed += answer.status != 200

        await asyncio.gather(*(client() for _ in range(connections)))
    return failed


def cpu_ticks(pid: int) -> tuple[int, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]), int(fields[12])


def callgrind_total(prefix: str) -> int:
    total = 0
    for name in glob.glob(prefix + "*"):
        text = Path(name).read_text(errors="replace")
        found = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
        total += int(found.group(1)) if found else 0
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("scenario", choices=tuple(bench.SCENARIOS))
    parser.add_argument("--requests", type=int, default=400, help="requests measured")
    parser.add_argument("--warm", type=int, default=200, help="requests first, not measured")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mode", choices=("callgrind", "cpu"), default="callgrind")
    args = parser.parse_args(argv)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        try:
            up_port = bench.free_port()
            upstream = [sys.executable, str(HERE / "upstream.py"), "--port", str(up_port)]
            procs.append(subprocess.Popen(upstream, stdout=subprocess.DEVNULL))
            wait_port(up_port, procs[-1], 30)
            redis_url = None
            if args.target != "gateway":
                redis_port = bench.free_port()
                argv_redis = [redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1"]
                argv_redis += ["--save", "", "--appendonly", "no"]
                procs.append(subprocess.Popen(argv_redis, stdout=subprocess.DEVNULL))
                wait_port(redis_port, procs[-1], 30)
                redis_url = f"redis://127.0.0.1:{redis_port}/0"
            config = bench.gateway_config(f"http://127.0.0.1:{up_port}/v1", redis_url)
            config["store"]["prefix"] = f"instructions-{args.target}:"
            (Path(tmp) / "gateway.yaml").write_bytes(orjson.dumps(config))
            port = bench.free_port()
            gateway = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
            gateway += ["--config", str(Path(tmp) / "gateway.yaml")]
            out = str(Path(tmp) / "callgrind.out")
            if args.mode == "callgrind":
                gateway = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                           f"--callgrind-out-file={out}", *gateway]  # fmt: skip
            log = (Path(tmp) / "gateway.log").open("wb")
            procs.append(
                subprocess.Popen(gateway, cwd=ROOT, env=bench.gateway_env(), stdout=log, stderr=log)
            )
            pid = procs[-1].pid
            wait_port(port, procs[-1], 300)
            body = bench.bodies(args.target)[args.scenario]
            asyncio.run(drive(port, body, args.warm, args.connections))
            if args.mode == "callgrind":
                subprocess.run(["callgrind_control", "-i", "on", str(pid)], check=True,
                               capture_output=True)  # fmt: skip
            user0, sys0 = cpu_ticks(pid)
            failed = asyncio.run(drive(port, body, args.requests, args.connections))
            user1, sys1 = cpu_ticks(pid)
            if args.mode == "callgrind":
                time.sleep(0.5)  # the last settlements
                for step in ("-d", "-i off"):
                    subprocess.run(["callgrind_control", *step.split(), str(pid)], check=True,
                                   capture_output=True)  # fmt: skip
                time.sleep(0.5)
                figure = f"{callgrind_total(out) / args.requests:,.0f} instructions/request"
            else:
                ticks = os.sysconf("SC_CLK_TCK")
                user = (user1 - user0) / ticks / args.requests * 1e6
                system = (sys1 - sys0) / ticks / args.requests * 1e6
                figure = f"{user + system:,.0f} us CPU/request (user {user:.0f}, sys {system:.0f})"
            print(
                f"{args.target} {args.scenario}: {figure} ({args.requests} requests, "
                f"{args.connections} at once, {failed} not 200)"
            )
            return 1 if failed else 0
        finally:
            bench.stop_all(list(reversed(procs)))


if __name__ == "__main__":
    raise SystemExit(main())
