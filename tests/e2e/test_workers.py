"""`gateway serve --workers N`: N processes on one port; the memory store refuses N > 1."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.configs import ENV, KEY_A
from tests.support.edge_logguard import watch_file
from tests.support.processes import ROOT, serve_argv
from tests.support.redis_server import RedisServer, free_port


def test_memory_store_refuses_several_workers(tmp_path: Path, config: dict[str, Any]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        serve_argv(path, "--workers", "2"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **ENV},
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "in-memory store" in done.stderr


async def test_two_workers_share_one_port(
    tmp_path: Path, config: dict[str, Any], redis_server: RedisServer
) -> None:
    config["store"] = {"url": redis_server.url, "prefix": f"{tmp_path.name}:"}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {**os.environ, **ENV, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    log = watch_file(tmp_path / "workers.log").open("ab")
    proc = subprocess.Popen(
        serve_argv(path, "--port", str(port), "--workers", "2"),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as ready:
                            if ready.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
            for _ in range(10):
                async with http.post(
                    f"http://127.0.0.1:{port}/v1/responses",
                    headers={"Authorization": f"Bearer {KEY_A}"},
                    json={"model": "mock-model", "input": "x"},
                ) as resp:
                    assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
        served = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("gateway_requests_total{") and 'operation="create_response"' in line
        )
        # Whichever worker answered /metrics counts what both served.
        assert served == 10
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
