"""Locust scenarios for the gateway, written against the OpenAI Responses API.

    GATEWAY_KEY=sk-... GATEWAY_MODEL=gpt-4.1-mini \
        locust -f deploy/loadtest/locustfile.py --host http://127.0.0.1:8080

Scenarios, selected with locust's --tags / --exclude-tags:

- json:       POST /v1/responses, a JSON answer that must be `completed` with output.
- stream:     POST /v1/responses with stream: true; reads the whole SSE stream, checks that
              sequence numbers run 0, 1, 2, ... and that it ends with a terminal event.
              Reported as "... [stream]" (the whole stream's time) and "... [first event]".
- chain:      three turns linked by previous_response_id; each must answer 200 `completed`.
- background: POST with background: true, then GET /v1/responses/{id} until the status is
              terminal; the job must end `completed` within GATEWAY_BACKGROUND_TIMEOUT_S.

Environment: GATEWAY_KEY (a gateway key), GATEWAY_MODEL (a model the key may use),
GATEWAY_PREFIX (mount prefix, default /v1), GATEWAY_BACKGROUND_TIMEOUT_S (default 60).
deploy/loadtest/run.py starts a gateway against the mock upstream and runs these headless.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from locust import FastHttpUser, between, tag, task

KEY = os.environ.get("GATEWAY_KEY", "sk-gateway-demo-key")
MODEL = os.environ.get("GATEWAY_MODEL", "gpt-4.1-mini")
PREFIX = os.environ.get("GATEWAY_PREFIX", "/v1").rstrip("/")
BACKGROUND_TIMEOUT_S = float(os.environ.get("GATEWAY_BACKGROUND_TIMEOUT_S", "60"))
POLL_INTERVAL_S = 0.25

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
TERMINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled"})
PENDING_STATUSES = frozenset({"queued", "in_progress"})

PROMPTS = (
    "Say hello in five words.",
    "Name three prime numbers.",
    "Write one sentence about load testing.",
    "What is the capital of France? Answer briefly.",
)


def _short(text: str | None) -> str:
    return (text or "")[:300]


class SSEReader:
    """Splits an SSE byte stream into events' JSON data (comment lines, keepalives, skipped)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        events = []
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            data = [line[5:].lstrip() for line in block.split(b"\n") if line.startswith(b"data:")]
            if data:
                events.append(json.loads(b"\n".join(data)))
        return events


class GatewayUser(FastHttpUser):
    """One caller of the gateway, mixing the scenarios by weight."""

    wait_time = between(0.0, 0.1)
    # Streams and background polls stay open a while: allow for long answers.
    network_timeout = 120.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.auth = {"Authorization": f"Bearer {KEY}"}
        self.turn = 0

    def _post(self, body: dict[str, Any], name: str) -> Any:
        """POST /responses with the user's key, as a locust request checked by the caller."""
        return self.client.post(
            f"{PREFIX}/responses", json=body, headers=self.auth, name=name, catch_response=True
        )

    def _prompt(self) -> str:
        self.turn += 1
        return PROMPTS[self.turn % len(PROMPTS)]

    @tag("json")
    @task(4)
    def create_json(self) -> None:
        body = {"model": MODEL, "input": self._prompt(), "store": False}
        with self._post(body, "POST /responses [json]") as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {_short(resp.text)}")
                return
            answer = resp.json()
            if answer.get("status") != "completed" or not answer.get("output"):
                resp.failure(f"not completed: status {answer.get('status')!r}")

    @tag("stream")
    @task(4)
    def create_stream(self) -> None:
        body = {"model": MODEL, "input": self._prompt(), "stream": True, "store": False}
        headers = {**self.auth, "Accept": "text/event-stream", "Accept-Encoding": "identity"}
        started = time.perf_counter()
        with self.client.post(
            f"{PREFIX}/responses",
            json=body,
            headers=headers,
            stream=True,
            name="POST /responses [stream]",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {_short(resp.text)}")
                return
            reader, events, size, first = SSEReader(), [], 0, None
            # Line by line, so that the first event's time is when it came; read(n) would wait
            # for n bytes. `_response` is locust's geventhttpclient response.
            raw = resp._response
            try:
                while line := raw.readline(b"\n"):
                    size += len(line)
                    events += reader.feed(line)
                    if events and first is None:
                        first = time.perf_counter()
            except Exception as exc:  # a cut stream: count it, with the reason
                resp.failure(f"stream broken after {len(events)} events: {exc!r}")
                return
            # The request's time is the whole stream's, not only the headers'.
            resp.request_meta["response_time"] = (time.perf_counter() - started) * 1000
            resp.request_meta["response_length"] = size
            if first is not None:
                self.environment.events.request.fire(
                    request_type="SSE",
                    name="POST /responses [first event]",
                    response_time=(first - started) * 1000,
                    response_length=0,
                    exception=None,
                    context={},
                )
            problem = self._check_stream(events)
            if problem:
                resp.failure(problem)

    @staticmethod
    def _check_stream(events: list[dict[str, Any]]) -> str | None:
        if not events:
            return "no events"
        numbers = [ev.get("sequence_number") for ev in events]
        if numbers != list(range(len(events))):
            return f"sequence numbers are not 0..{len(events) - 1}: {numbers[:10]}..."
        kinds = [ev.get("type") for ev in events]
        if "error" in kinds:
            return f"error event: {_short(json.dumps(events[kinds.index('error')]))}"
        if kinds[-1] not in TERMINAL_EVENTS:
            return f"no terminal event: {len(events)} events, the last {kinds[-1]!r}"
        if kinds[-1] != "response.completed":
            return f"ended with {kinds[-1]}"
        return None

    @tag("chain")
    @task(1)
    def chained_turns(self) -> None:
        previous = None
        for turn in range(3):
            body: dict[str, Any] = {"model": MODEL, "input": self._prompt(), "store": True}
            if previous:
                body["previous_response_id"] = previous
            with self._post(body, f"POST /responses [chain turn {turn + 1}]") as resp:
                if resp.status_code != 200:
                    resp.failure(f"HTTP {resp.status_code}: {_short(resp.text)}")
                    return
                answer = resp.json()
                if answer.get("status") != "completed":
                    resp.failure(f"not completed: status {answer.get('status')!r}")
                    return
                if previous and answer.get("previous_response_id") != previous:
                    resp.failure("the answer does not name its previous_response_id")
                    return
                previous = answer["id"]

    @tag("background")
    @task(1)
    def background_job(self) -> None:
        body = {"model": MODEL, "input": self._prompt(), "background": True, "store": True}
        started = time.perf_counter()
        with self._post(body, "POST /responses [background]") as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {_short(resp.text)}")
                return
            job = resp.json()
            if job.get("background") is not True or "id" not in job:
                resp.failure(f"not a background response: {_short(resp.text)}")
                return
        status = job.get("status")
        while status in PENDING_STATUSES:
            if time.perf_counter() - started > BACKGROUND_TIMEOUT_S:
                self._job_result(started, f"still {status} after {BACKGROUND_TIMEOUT_S:.0f} s")
                return
            time.sleep(POLL_INTERVAL_S)
            with self.client.get(
                f"{PREFIX}/responses/{job['id']}",
                headers=self.auth,
                name="GET /responses/{id} [poll]",
                catch_response=True,
            ) as poll:
                if poll.status_code != 200:
                    poll.failure(f"HTTP {poll.status_code}: {_short(poll.text)}")
                    self._job_result(started, f"poll failed with HTTP {poll.status_code}")
                    return
                status = poll.json().get("status")
        if status not in TERMINAL_STATUSES:
            self._job_result(started, f"unknown status {status!r}")
        else:
            self._job_result(started, None if status == "completed" else f"ended {status}")

    def _job_result(self, started: float, problem: str | None) -> None:
        """One entry per job, from creation to its terminal status."""
        self.environment.events.request.fire(
            request_type="JOB",
            name="background job [created to terminal]",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=RuntimeError(problem) if problem else None,
            context={},
        )
