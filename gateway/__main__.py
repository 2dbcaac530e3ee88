"""The `gateway` command: serve, check-config, hash-key, mock-upstream."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence

import uvloop
import yaml
from aiohttp import web

from gateway.backends import in_memory
from gateway.config import Settings, digest, load_file
from gateway.errors import ConfigError
from gateway.observability import setup_logging
from gateway.server import run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the gateway")
    serve.add_argument("--config", help="YAML config file (default: $GATEWAY_CONFIG)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")

    check = commands.add_parser("check-config", help="check a config file and list its problems")
    check.add_argument("file")

    hash_key = commands.add_parser("hash-key", help="print the key_sha256 digest of a key")
    hash_key.add_argument("key")

    mock = commands.add_parser("mock-upstream", help="serve an OpenAI-compatible fake upstream")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9999)
    mock.add_argument("--token-delay-ms", type=float, default=0.0)

    args = parser.parse_args(argv)
    if args.command == "hash-key":
        print(digest(args.key))
        return 0
    if args.command == "check-config":
        return _check_config(args.file)
    if args.command == "mock-upstream":
        from gateway.mockupstream import create_mock_upstream

        app = create_mock_upstream(token_delay_ms=args.token_delay_ms)
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            access_log=None,
            loop=uvloop.new_event_loop(),
            print=_printer(f"mock upstream on http://{args.host}:{args.port}/v1"),
        )
        return 0
    return _serve(args)


def _check_config(path: str) -> int:
    try:
        load_file(path, os.environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    print(f"{path}: ok")
    return 0


def _serve(args: argparse.Namespace) -> int:
    path = args.config or os.environ.get("GATEWAY_CONFIG")
    if not path:
        print(
            "gateway serve: no config file: pass --config FILE or set GATEWAY_CONFIG",
            file=sys.stderr,
        )
        return 2
    try:
        settings = load_file(path, os.environ)
    except ConfigError as exc:
        print(f"gateway serve: {path} has problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    setup_logging(settings.server.log_level, settings.server.access_log)
    banner = _banner(path, host, port, settings)
    if args.workers <= 1:
        run(settings, host, port, banner, reuse_port=False)
        return 0
    if in_memory(settings.store.url):
        print(
            "gateway serve: --workers > 1 needs a shared store: set store.url or REDIS_URL "
            "to a Redis URL (the in-memory store lives in one process)",
            file=sys.stderr,
        )
        return 2
    return _serve_workers(settings, host, port, banner, args.workers)


def _serve_workers(settings: Settings, host: str, port: int, banner: str, n: int) -> int:
    # Each worker writes its metrics to files here; /metrics on any worker adds them all up.
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(
            target=run,
            args=(settings, host, port, banner if i == 0 else ""),
            kwargs={"reuse_port": True},
            daemon=False,
        )
        for i in range(n)
    ]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid is not None:
                os.kill(proc.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join()
    return max((proc.exitcode or 0) for proc in procs)


def _banner(path: str, host: str, port: int, settings: Settings) -> str:
    lines = [
        f"gateway serving {path} on http://{host}:{port} "
        f"(store: {settings.store.url.split('://')[0]})"
    ]
    key = _literal_key(path) if settings.server.print_snippet else None
    if key:
        lines += [
            "",
            "Paste this into Python (pip install openai):",
            "",
            "    from openai import OpenAI",
            f'    client = OpenAI(base_url="http://{host}:{port}/v1", api_key="{key}")',
            f'    print(client.responses.create(model="{_first_model(settings)}", '
            'input="Hello!").output_text)',
            "",
        ]
    return "\n".join(lines)


def _literal_key(path: str) -> str | None:
    """A key written in clear in the file (a demo or dev config) is shown to help the user start."""
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
        for key in raw.get("auth", {}).get("keys", []):
            if isinstance(key.get("key"), str):
                return str(key["key"])
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    return None


def _first_model(settings: Settings) -> str:
    return settings.models[0].name if settings.models else "mock/demo"


def _printer(text: str) -> Callable[[object], None]:
    def show(_: object) -> None:
        if text:
            print(text, flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
