"""`gateway serve` as a process: the demo config answers the snippet it prints."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator

import openai
import pytest

from tests.support.processes import ROOT, serve_argv
from tests.support.redis_server import free_port


@pytest.fixture
def demo() -> Iterator[tuple[str, str]]:
    port = free_port()
    proc = subprocess.Popen(
        serve_argv("deploy/demo.yaml", "--port", str(port)),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        found = re.search(r'OpenAI\(base_url="([^"]+)", api_key="([^"]+)"\)', line)
        if found:
            yield found.group(1), found.group(2)
            break
    else:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        pytest.fail("no snippet printed: " + "".join(lines))
    proc.terminate()
    code = proc.wait(timeout=30)
    proc.stdout.close()
    assert code == 0


def test_demo_snippet_answers(demo: tuple[str, str]) -> None:
    base_url, api_key = demo
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    with client:
        response = client.responses.create(model="gpt-4.1-mini", input="Hello!")
    assert response.output_text
