"""build_providers(settings): one adapter per configured provider, by its `api`."""

from __future__ import annotations

from gateway.config import Settings
from gateway.providers.base import Provider


def build_providers(settings: Settings) -> dict[str, Provider]:
    from gateway.providers.chat import ChatCompletionsProvider
    from gateway.providers.mock import MockProvider
    from gateway.providers.responses import ResponsesProvider

    providers: dict[str, Provider] = {}
    for ps in settings.providers:
        if ps.api == "mock":
            providers[ps.name] = MockProvider(ps)
        elif ps.api == "responses":
            providers[ps.name] = ResponsesProvider(ps)
        elif ps.api == "chat_completions":
            providers[ps.name] = ChatCompletionsProvider(ps)
        else:
            raise NotImplementedError(f"provider api {ps.api!r}")
    return providers
