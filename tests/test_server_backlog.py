"""The listen backlog: how many connects the kernel completes before the gateway accepts them.
A burst larger than the backlog loses connects, so it is a setting, capped by somaxconn."""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.server import listen_backlog
from tests.support.configs import base_config, settings_from
from tests.support.edge_wire import read_answer
from tests.support.processes import Replica

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n"


def completed_connects(port: int, most: int) -> list[socket.socket]:
    """Connects one after another until one is not completed: with the listener not accepting,
    the kernel completes backlog + 1 of them and drops the SYNs of the rest."""
    held: list[socket.socket] = []
    while len(held) < most:
        sock = socket.socket()
        sock.settimeout(0.5)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            break
        held.append(sock)
    return held


def test_the_configured_backlog_is_the_listening_sockets(tmp_path: Path) -> None:
    config = base_config("http://127.0.0.1:9")
    config["server"]["backlog"] = 16
    replica = Replica(config, tmp_path, "backlog").start()
    held: list[socket.socket] = []
    try:
        replica.signal(signal.SIGSTOP)  # nothing is accepted: the kernel's queue alone fills
        held = completed_connects(replica.port, 200)
        assert len(held) == 16 + 1
        replica.signal(signal.SIGCONT)
        # Every connect the kernel queued is served once the gateway accepts again.
        for sock in held:
            sock.settimeout(10)
            sock.sendall(HEALTHZ)
            answer = read_answer(sock)
            assert answer is not None
            assert answer.status == 200
    finally:
        replica.signal(signal.SIGCONT)
        for sock in held:
            sock.close()
        replica.stop()


def test_the_backlog_defaults_to_4096_and_is_checked() -> None:
    assert settings_from(base_config("http://127.0.0.1:9")).server.backlog == 4096
    bad = base_config("http://127.0.0.1:9")
    bad["server"]["backlog"] = 0
    with pytest.raises(ConfigError) as info:
        settings_from(bad)
    assert "server.backlog" in "\n".join(info.value.problems)


def test_a_somaxconn_below_the_backlog_caps_it_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("128\n")
    with caplog.at_level(logging.WARNING, logger="gateway"):
        assert listen_backlog(4096, somaxconn) == 128
    assert "net.core.somaxconn (128) is below server.backlog (4096)" in caplog.text
    caplog.clear()
    somaxconn.write_text("8192\n")
    with caplog.at_level(logging.WARNING, logger="gateway"):
        assert listen_backlog(4096, somaxconn) == 4096
        # Where the file cannot be read (not Linux), the setting is asked of listen() as is.
        assert listen_backlog(4096, tmp_path / "missing") == 4096
    assert caplog.text == ""
