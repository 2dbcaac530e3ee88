"""Microbenchmark of request checking: schema + rules + normalize_request on valid bodies.

Run as `.venv/bin/python bench/validation.py`. Budget: <= 50 us for a ~3 KB CreateResponse
body, <= 1 ms for a ~100 KB one (the no-op path, where the client's bytes are forwarded).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.pipeline.normalize import normalize_request
from gateway.pipeline.rules import check_create_rules
from gateway.schemas import load_validators

BUDGET_US = {"3 KB": 50.0, "100 KB": 1000.0}

WEATHER = {
    "type": "object",
    "title": "GetWeather",
    "properties": {
        "city": {"type": "string", "title": "City", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "title": "Unit"},
        "days": {"type": "integer", "title": "Days"},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}


def _turn(i: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": f"Question {i}: what is the weather like in Paris?"},
            ],
        },
        {
            "type": "message",
            "id": f"msg_{i:04d}",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": f"Answer {i}: it is sunny, 21 degrees, light wind from the west.",
                    "annotations": [],
                }
            ],
        },
        {
            "type": "function_call",
            "call_id": f"call_{i:04d}",
            "name": "get_weather",
            "arguments": '{"city":"Paris","unit":"celsius","days":3}',
        },
        {"type": "function_call_output", "call_id": f"call_{i:04d}", "output": '{"temp":21}'},
    ]


def make_body(turns: int) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"role": "developer", "content": "Answer briefly and cite sources when you can."},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Here is a picture of the sky."},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
            ],
        },
    ]
    for i in range(turns):
        items += _turn(i)
    return {
        "model": "gpt-5.4",
        "instructions": "You are a weather assistant.",
        "input": items,
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Current weather and forecast for a city.",
                "parameters": WEATHER,
                "strict": True,
            },
            {
                "type": "function",
                "name": "get_time",
                "description": "Local time in a city.",
                "parameters": {
                    "type": "object",
                    "title": "GetTime",
                    "properties": {"city": {"type": "string", "title": "City"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        ],
        "tool_choice": "auto",
        "text": {
            "format": {"type": "json_schema", "name": "Forecast", "schema": WEATHER},
            "verbosity": "low",
        },
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "metadata": {"team": "weather", "request": "bench"},
        "temperature": 0.7,
        "max_output_tokens": 2048,
        "store": False,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
    }


def sized(target: int) -> dict[str, Any]:
    turns = 1
    while len(orjson.dumps(make_body(turns))) < target:
        turns += 1
    return make_body(turns)


def measure(check: Callable[[dict[str, Any]], object], body: dict[str, Any], runs: int) -> float:
    for _ in range(50):
        check(body)
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        check(body)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def main() -> int:
    validators = load_validators()

    def full(body: dict[str, Any]) -> None:
        if normalize_request(body):
            raise AssertionError("the benchmark bodies must take the no-op path")
        validators.create_response(body)
        check_create_rules(body)

    failed = False
    print(
        f"{'body':>8} {'bytes':>8} {'items':>6} {'schema':>9} {'rules':>8} {'normalize':>10} "
        f"{'total':>9} {'budget':>8}"
    )
    for label, target, runs in (("3 KB", 3_000, 20_000), ("100 KB", 100_000, 2_000)):
        body = sized(target)
        schema = measure(validators.create_response, body, runs)
        rules = measure(check_create_rules, body, runs)
        normalize = measure(normalize_request, body, runs)
        total = measure(full, body, runs)
        budget = BUDGET_US[label]
        failed |= total > budget
        print(
            f"{label:>8} {len(orjson.dumps(body)):>8} {len(body['input']):>6} {schema:>7.1f}us "
            f"{rules:>6.1f}us {normalize:>8.1f}us {total:>7.1f}us {budget:>6.0f}us"
            + ("  OVER BUDGET" if total > budget else "")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
