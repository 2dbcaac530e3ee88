"""A replica whose chosen port was taken before it bound it starts on another."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.processes import Replica


def test_a_taken_port_moves_the_replica_to_another(config: dict[str, Any], tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        replica = Replica(config, tmp_path, "moved")
        replica.port = taken
        replica.start()
        try:
            assert replica.port != taken
            with urllib.request.urlopen(f"{replica.url}/healthz", timeout=5) as answer:
                assert answer.status == 200
            assert "address already in use" in replica.log_path.read_text()
        finally:
            replica.stop()
