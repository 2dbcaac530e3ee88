"""MemoryStore: the shared state in this process's memory, for a laptop or a single pod."""

from __future__ import annotations

import time
from collections.abc import Callable


class MemoryStore:
    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    async def ping(self) -> None:
        return None
