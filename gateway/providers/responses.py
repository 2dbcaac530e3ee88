"""Pass-through to anything that speaks POST /v1/responses (OpenAI, Azure OpenAI v1, vLLM)."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.config import Account, ProviderSettings
from gateway.errors_upstream import UPSTREAM_ERRORS, upstream_failure
from gateway.providers.base import HTTPProvider, Reply, UpstreamRequest, auth_headers
from gateway.providers.transport import Answer, LazyHeaders

# Client headers that may travel upstream; everything else (Authorization first) stays here.
# The trace context is not among them: upstream_headers sends the request's own.
FORWARDED_HEADERS = ("openai-beta",)


class Exchange:
    """One upstream call as an async context manager: the Reply in, the connection released
    on the way out (a class, not @asynccontextmanager: this runs on every request)."""

    __slots__ = ("_account", "_provider", "_request", "_resp")

    def __init__(
        self, provider: ResponsesProvider, request: UpstreamRequest, account: Account
    ) -> None:
        self._provider, self._request, self._account = provider, request, account
        self._resp: Answer | None = None

    async def __aenter__(self) -> Reply:
        provider, request = self._provider, self._request
        body = request.data()
        try:
            resp = self._resp = await provider.http.post(
                provider.url, body, provider.headers(request, self._account)
            )
            headers = LazyHeaders(resp)
            if request.stream and resp.status == 200 and resp.content_type == "text/event-stream":
                return Reply(200, chunks=aiter(resp), headers=headers)
            return Reply(resp.status, body=await resp.read(), headers=headers)
        except BaseException as exc:  # a cancelled read too: the connection must not leak
            self._release()
            if isinstance(exc, UPSTREAM_ERRORS):
                raise upstream_failure(exc, provider.name) from exc
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        # Closes the connection instead of pooling it when the body was not read to the end,
        # which is how a client that left hangs up on the upstream.
        if self._resp is not None:
            self._resp.release()


class ResponsesProvider(HTTPProvider):
    path = "/responses"
    forwarded = FORWARDED_HEADERS

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.url = settings.base_url + self.path

    def send(self, request: UpstreamRequest, account: Account) -> Exchange:
        return Exchange(self, request, account)

    async def count_tokens(
        self, body: dict[str, Any], model: str, account: Account, traceparent: str
    ) -> int | None:
        """The upstream's own count (POST /responses/input_tokens), or None when it has none."""
        headers = {
            "Content-Type": "application/json",
            "traceparent": traceparent,
            **auth_headers(account, self.settings),
        }
        url = self.settings.base_url + "/responses/input_tokens"
        try:
            resp = await self.http.post(url, orjson.dumps({**body, "model": model}), headers)
            try:
                if resp.status != 200:
                    return None
                counted = orjson.loads(await resp.read())
            finally:
                resp.release()
        except (*UPSTREAM_ERRORS, orjson.JSONDecodeError):
            return None
        tokens = counted.get("input_tokens") if isinstance(counted, dict) else None
        return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None
