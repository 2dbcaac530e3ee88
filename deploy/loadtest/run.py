"""Load-test a local gateway: mock upstream + gateway + locust headless, then clean up.

    python deploy/loadtest/run.py                 # json and stream scenarios, 20 users, 15 s
    python deploy/loadtest/run.py --all           # every scenario (chain, background too)
    python deploy/loadtest/run.py -u 50 -t 60s --token-delay-ms 20

Starts `gateway mock-upstream` and `gateway serve` (in-memory store, one process) on free
ports, runs deploy/loadtest/locustfile.py against it, prints locust's summary and exits with
locust's status (non-zero when any request failed). LOADTEST_ALL=1 is the same as --all.
To test a deployed gateway instead, run locust yourself with --host, GATEWAY_KEY and
GATEWAY_MODEL (see the locustfile).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEY = "sk-loadtest-0123456789"
MODEL = "loadtest-model"
DEFAULT_TAGS = ("json", "stream")

CONFIG = """\
server:
  host: 127.0.0.1
  port: {port}
  access_log: false
  log_level: warning
  shutdown_delay_s: 0
  shutdown_grace_s: 5
store:
  url: memory://
auth:
  keys:
    - {{id: loadtest, key: {key}, project: loadtest}}
providers:
  - name: upstream
    api: responses
    base_url: http://127.0.0.1:{upstream_port}/v1
    region: local
models:
  - name: {model}
    targets:
      - {{provider: upstream, model: mock-model}}
    price: {{input: 0.4, cached_input: 0.1, output: 1.6}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer 200 within {timeout:.0f} s")


@contextmanager
def process(args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that is stopped (SIGTERM, then SIGKILL) however the block ends."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-u", "--users", type=int, default=20)
    parser.add_argument("-r", "--spawn-rate", type=float, default=10)
    parser.add_argument("-t", "--run-time", default="15s")
    parser.add_argument(
        "--all",
        action="store_true",
        default=os.environ.get("LOADTEST_ALL") == "1",
        help="run every scenario, not only json and stream",
    )
    parser.add_argument(
        "--token-delay-ms",
        type=float,
        default=0.0,
        help="the mock upstream's pause between streamed tokens",
    )
    args = parser.parse_args(argv)

    gateway = [sys.executable, "-m", "gateway"]
    upstream_port, port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="gateway-loadtest-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(
            CONFIG.format(port=port, upstream_port=upstream_port, key=KEY, model=MODEL)
        )
        with process(
            [
                *gateway,
                "mock-upstream",
                "--host",
                "127.0.0.1",
                "--port",
                str(upstream_port),
                "--token-delay-ms",
                str(args.token_delay_ms),
            ]
        ) as upstream:
            wait_until_ok(f"http://127.0.0.1:{upstream_port}/v1/models", upstream)
            with process([*gateway, "serve", "--config", str(config)]) as served:
                host = f"http://127.0.0.1:{port}"
                wait_until_ok(f"{host}/readyz", served)
                locust = [
                    sys.executable,
                    "-m",
                    "locust",
                    "-f",
                    str(HERE / "locustfile.py"),
                    "--headless",
                    "--only-summary",
                    "-u",
                    str(args.users),
                    "-r",
                    str(args.spawn_rate),
                    "-t",
                    args.run_time,
                    "--host",
                    host,
                    "--stop-timeout",
                    "10",
                ]
                if not args.all:
                    locust += ["--tags", *DEFAULT_TAGS]
                scenarios = "every scenario" if args.all else " and ".join(DEFAULT_TAGS)
                print(
                    f"load test: {scenarios}, {args.users} users, {args.run_time}, "
                    f"gateway {host}, mock upstream :{upstream_port}",
                    flush=True,
                )
                env = {**os.environ, "GATEWAY_KEY": KEY, "GATEWAY_MODEL": MODEL}
                return subprocess.run(locust, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
