"""Gateway replicas as real processes: `python -m gateway serve` on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.support.configs import ENV
from tests.support.edge_logguard import watch_file
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def serve_argv(config: Path | str, *options: str) -> list[str]:
    """The command line of `gateway serve` (run it with cwd=ROOT)."""
    return [sys.executable, "-m", "gateway", "serve", "--config", str(config), *options]


class Replica:
    def __init__(self, config: dict[str, Any], workdir: Path, name: str) -> None:
        self.port = free_port()
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = watch_file(workdir / f"{name}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        # The free port was let go before the replica binds it: an outgoing connection can
        # take it in between (it is in the ephemeral range). Then another port, at most twice.
        for _ in range(3):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            if self._started():
                return self
            if "address already in use" not in self.log_path.read_text()[logged:]:
                raise RuntimeError(f"replica exited: {self.log_path.read_text()}")
            self.port = free_port()
        raise RuntimeError(f"replica found no free port: {self.log_path.read_text()}")

    def _started(self) -> bool:
        """Whether the process came up; False if it exited first."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            serve_argv(self.config_path, "--port", str(self.port)),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ENV},
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"replica did not start: {self.log_path.read_text()}")

    def access_lines(self) -> list[dict[str, Any]]:
        """The access log's lines the process has written so far."""
        lines = []
        for text in self.log_path.read_text().splitlines():
            if text.startswith("{"):
                line = orjson.loads(text)
                if line.get("logger") == "gateway.access":
                    lines.append(line)
        return lines

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
