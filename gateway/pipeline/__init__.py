"""The request pipeline: a flat tuple of small async stages over one mutable Call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from gateway.models import Call

Stage = Callable[[Call], Awaitable[None]]


async def run(call: Call, stages: Iterable[Stage]) -> None:
    for stage in stages:
        await stage(call)
