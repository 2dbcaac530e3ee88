"""Credentials never reach a log: every log text passes through `redact` first.

aiohttp, asyncio and redis-py log exception texts that can quote raw request bytes (a
malformed header line, a repr of headers); the gateway's own lines never carry a secret,
but a log line is not the place to find out that one did.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Final

MASK: Final = "[REDACTED]"

# A credential-bearing header up to the end of its line: a real CR/LF, an escaped one in a
# repr (`\r`, `\n`), or the quote closing the repr.
_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization|x-api-key|api[-_]key|cookie|set-cookie"
    r"|access_token|refresh_token|client_secret|password)"
    r"""(['"]?\s*[:=,]\s*['"]?)(?:(?!\\r|\\n)[^\r\n'"])+"""
)
_PATTERNS: Final = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",;]+"), r"\1 " + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}"), "sk-" + MASK),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*"), MASK),
    (re.compile(r"openai-insecure-api-key\.[^\s,'\"]+"), "openai-insecure-api-key." + MASK),
    # A password in a URL (redis://user:secret@host).
    (re.compile(r"(\w://[^\s/@:'\"]*:)[^\s/@'\"]+@"), r"\1" + MASK + "@"),
)
# A cheap test first: most log texts hold none of these (lower-case, as `suspect` compares).
_WORDS: Final = (
    "sk-",
    "bearer",
    "authorization",
    "eyj",
    "api-key",
    "api_key",
    "cookie",
    "basic",
    "access_token",
    "refresh_token",
    "secret",
    "password",
    "://",  # a password in a URL
)


def suspect(text: str) -> bool:
    """Whether `text` may hold a credential `redact` would remove (never False when it does)."""
    low = text.lower()
    return any(word in low for word in _WORDS)


def redact(text: str) -> str:
    """`text` with every credential it shows replaced by [REDACTED]; never fails."""
    if not suspect(text):
        return text
    text = _HEADER.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def printable(text: str) -> str:
    """`text` as valid UTF-8: lone surrogates (undecodable header bytes) become escapes."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so that no handler, whichever its format, sees a secret:
    the message is rendered and redacted, the exception becomes redacted text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = f"unformattable log message {record.msg!r:.200}"
        record.msg = printable(redact(message))
        record.args = None
        if record.exc_info:
            text = "".join(traceback.format_exception(*record.exc_info))
            record.exc_text = printable(redact(text.rstrip("\n")))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = printable(redact(record.exc_text))
        if record.stack_info:
            record.stack_info = printable(redact(record.stack_info))
        return True


# Loggers of libraries that may quote what a client or a server sent.
LIBRARY_LOGGERS: Final = (
    "aiohttp.server",
    "aiohttp.access",
    "aiohttp.web",
    "aiohttp.client",
    "aiohttp.internal",
    "aiohttp.websocket",
    "asyncio",
    "redis",
    "opentelemetry",
)

_FILTER: Final = RedactingFilter()


def guard_library_loggers() -> None:
    """Redact at the source in the libraries' loggers (any handler attached anywhere, test
    capture included, then sees clean records). Idempotent."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
