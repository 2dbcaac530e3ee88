"""Open streams, so that a draining process can end each one cleanly instead of cutting it."""

from __future__ import annotations

import asyncio


class StreamHandle:
    __slots__ = ("aborting", "task")

    def __init__(self, task: asyncio.Task[object] | None) -> None:
        self.task = task
        self.aborting = False

    def absorb(self) -> bool:
        """Inside `except CancelledError`: True (and the cancel is undone) when the cancel was
        the drain's, so the stream can still write its last event."""
        if not self.aborting or self.task is None:
            return False
        self.task.uncancel()
        return True


class OpenStreams:
    def __init__(self) -> None:
        self._handles: set[StreamHandle] = set()

    def __len__(self) -> int:
        return len(self._handles)

    def enter(self) -> StreamHandle:
        handle = StreamHandle(asyncio.current_task())
        self._handles.add(handle)
        return handle

    def leave(self, handle: StreamHandle) -> None:
        self._handles.discard(handle)

    def abort_all(self) -> None:
        """Interrupt every stream's wait on its source; each ends with its terminal event."""
        for handle in self._handles:
            if handle.task is not None and not handle.aborting:
                handle.aborting = True
                handle.task.cancel("gateway draining")

    async def wait_empty(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # Polled: streams end on their own schedule, and this runs once, at shutdown.
        while self._handles and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return not self._handles
