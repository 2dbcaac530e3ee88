"""The package as a wheel: it carries its JSON Schemas, and a plain (not editable) install of it
serves the demo config. Built and installed offline, outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILES = ROOT / "gateway" / "schema_files"
DEMO = ROOT / "deploy" / "demo.yaml"
DEMO_KEY = "sk-gateway-demo-key"


def _run(*argv: str | Path, cwd: Path) -> None:
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (the build writes into its source folder)."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "gateway", source / "gateway", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input")
    _run(
        *pip,
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        work,
        source,
        cwd=work,
    )
    [built] = work.glob("responses_gateway-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Path:
    """The wheel installed (not editable) into a folder of its own; dependencies come from the
    running interpreter's site-packages."""
    target = wheel.parent / "site"
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input")
    _run(*pip, "install", "--no-deps", "--no-index", "--target", target, wheel, cwd=wheel.parent)
    return target


def _environ(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}


def test_the_wheel_holds_every_schema_file(wheel: Path) -> None:
    shipped = sorted(p.name for p in SCHEMA_FILES.glob("*.json"))
    assert "config.schema.json" in shipped
    assert "create_response.schema.json" in shipped
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in shipped:
            member = f"gateway/schema_files/{name}"
            assert member in names, f"{member} is missing from {wheel.name}"
            assert archive.read(member) == (SCHEMA_FILES / name).read_bytes()
    assert not [n for n in names if n.startswith("schemas/")]


def test_an_installed_wheel_finds_its_schemas(installed: Path) -> None:
    # Run outside the source tree, so that only the installed copy can be imported.
    probe = (
        "import gateway, gateway.config as c, gateway.schemas as s, pathlib, sys;"
        "print(pathlib.Path(gateway.__file__).resolve());"
        "s.load_validators();"
        "c.load_file(sys.argv[1], {})"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(DEMO)],
        cwd=installed.parent,
        env=_environ(installed),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.resolve())


@pytest.fixture
def served(installed: Path) -> Iterator[str]:
    """`gateway serve --config deploy/demo.yaml` from the installed wheel's own command."""
    port = free_port()
    log = installed.parent / "serve.log"
    command = installed / "bin" / "gateway"
    argv = [
        str(command),
        "serve",
        "--config",
        str(DEMO),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=installed.parent,
            env=_environ(installed),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_an_installed_wheel_serves_the_demo_config(served: str) -> None:
    with openai.OpenAI(base_url=f"{served}/v1", api_key=DEMO_KEY, max_retries=0) as client:
        response = client.responses.create(model="gpt-4.1-mini", input="Hello!")
        assert response.status == "completed"
        assert response.output_text
        # The request schemas are loaded: a bad body is refused by them, naming the field.
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(
                model="gpt-4.1-mini", input="Hi", extra_body={"temperature": "hot"}
            )
        assert refused.value.param == "temperature"


def test_the_wheel_holds_the_console(wheel: Path) -> None:
    static = ROOT / "gateway" / "console" / "static"
    shipped = sorted(p.name for p in static.iterdir() if p.is_file())
    assert {"index.html", "app.js", "console.css"} <= set(shipped)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in shipped:
            member = f"gateway/console/static/{name}"
            assert member in names, f"{member} is missing from {wheel.name}"
            assert archive.read(member) == (static / name).read_bytes()
