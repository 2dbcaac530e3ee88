"""The per-provider stream histograms are looked up once and still count in the registry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY, Histogram

from gateway import metrics


@pytest.mark.parametrize(
    ("child", "name"),
    [
        (metrics.ttfb, "gateway_stream_time_to_first_byte_seconds"),
        (metrics.gaps, "gateway_stream_chunk_interval_seconds"),
    ],
    ids=["ttfb", "gaps"],
)
def test_a_provider_child_is_kept_and_counts(child: Callable[[str], Histogram], name: str) -> None:
    provider = f"children-{name}"
    assert child(provider) is child(provider)
    before = REGISTRY.get_sample_value(f"{name}_count", {"provider": provider}) or 0.0
    child(provider).observe(0.002)
    assert REGISTRY.get_sample_value(f"{name}_count", {"provider": provider}) == before + 1
