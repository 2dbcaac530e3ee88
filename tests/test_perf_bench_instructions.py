"""bench/instructions.py: a fixed number of requests to one target, and what each one cost."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cpu_per_request_of_a_fixed_load_on_redis_limits() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "instructions.py"),
            "limits",
            "json",
            "--mode",
            "cpu",
            "--requests",
            "60",
            "--warm",
            "10",
            "--connections",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"limits json: [\d,]+ us CPU/request \(user \d+, sys \d+\) "
        r"\(60 requests, 4 at once, 0 not 200\)",
        line,
    ), line
