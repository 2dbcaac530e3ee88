"""The log guard: everything logged while the tests run is searched for the secrets they use.

In-process records are captured by a handler on the root logger (message, exception text,
stack and extra fields); the output of gateway processes is read from the files they write
(`watch_file`). Secrets are the constants of tests.support.configs.SECRETS, whatever a test
registers with `register_secret`, and anything shaped like a minted gateway key or a JWT.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.support.configs import SECRETS

# Secrets a test made for itself (admin-minted keys, signed JWTs).
_REGISTERED: set[str] = set()
# Gateway processes' output files.
_FILES: list[Path] = []

# What a minted credential looks like even when no test registered it.
SHAPES = (
    re.compile(r"sk-gw-[A-Za-z0-9_\-]{20,}"),
    re.compile(r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
)

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def register_secret(value: str) -> str:
    """Adds `value` to what no log may show; returns it (`key = register_secret(mint())`)."""
    if value:
        _REGISTERED.add(value)
    return value


def watch_file(path: Path) -> Path:
    """Has the guard read `path` (a process's log output) at the end of the run."""
    _FILES.append(path)
    return path


def all_secrets() -> tuple[str, ...]:
    return (*SECRETS, *sorted(_REGISTERED))


def mask(secret: str) -> str:
    return f"{secret[:4]}…({len(secret)} chars)"


@dataclass(frozen=True)
class Finding:
    secret: str  # masked
    where: str
    line: str  # with the secret masked

    def __str__(self) -> str:
        return f"{self.secret} in {self.where}: {self.line[:300]}"


class _Capture(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(render(record))

    def handleError(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: unrenderable record {record.msg!r}")


def render(record: logging.LogRecord) -> str:
    """All the text a handler could write for `record`."""
    try:
        parts = [f"{record.name}: {record.getMessage()}"]
    except Exception:
        parts = [f"{record.name}: {record.msg!r} % {record.args!r}"]
    if record.exc_info:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    parts += [f"{k}={v!s}" for k, v in record.__dict__.items() if k not in _STANDARD]
    return " | ".join(parts)


class LogGuard:
    """Captures what is logged (`install`) and lists every secret found (`findings`)."""

    def __init__(
        self,
        secrets: Callable[[], Iterable[str]] = all_secrets,
        files: Iterable[Path] | None = None,
    ) -> None:
        self.lines: list[str] = []
        self.handler = _Capture(self.lines)
        self._secrets = secrets
        self._files = _FILES if files is None else list(files)
        self._level: int | None = None

    def install(self, logger: logging.Logger | None = None) -> None:
        target = logger or logging.getLogger()
        self._level = target.level
        target.setLevel(logging.DEBUG)
        target.addHandler(self.handler)

    def uninstall(self, logger: logging.Logger | None = None) -> None:
        target = logger or logging.getLogger()
        target.removeHandler(self.handler)
        if self._level is not None:
            target.setLevel(self._level)

    def findings(self) -> list[Finding]:
        secrets = [s for s in self._secrets() if s]
        found = [f for i, line in enumerate(self.lines) for f in _scan(line, secrets, f"log #{i}")]
        for path in self._files:
            if not path.exists():
                continue
            text = path.read_text(errors="backslashreplace")
            for n, line in enumerate(text.splitlines(), 1):
                found += _scan(line, secrets, f"{path.name}:{n}")
        return found


def _scan(line: str, secrets: list[str], where: str) -> list[Finding]:
    hits = [s for s in secrets if s in line]
    hits += [m.group(0) for shape in SHAPES for m in shape.finditer(line)]
    out = []
    for secret in hits:
        out.append(Finding(mask(secret), where, line.replace(secret, mask(secret))))
    return out
