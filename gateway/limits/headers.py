"""OpenAI's rate-limit headers and 429 errors, built from what an admit saw."""

from __future__ import annotations

import math
from collections.abc import Sequence

from gateway.errors import GatewayError, RateLimitError, ServiceUnavailableError
from gateway.limits.backend import Charge, Reply, Window
from gateway.limits.rules import NANO, Lease, Plan, Rate, nano


class TokensRateLimitError(RateLimitError):
    """429 `rate_limit_exceeded` of type `tokens` (RateLimitError is type `requests`)."""

    error_type = "tokens"


class QuotaExceededError(RateLimitError):
    """429 `insufficient_quota`: a budget is spent; retrying cannot help until it is raised."""

    error_type, default_code, retryable = "insufficient_quota", "insufficient_quota", False


def go_duration(ms: int) -> str:
    """Milliseconds as Go's time.Duration prints them, as OpenAI does: 20ms, 1.5s, 6m0s."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:  # the usual reset of a one-minute window
        return f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return (f"{hours}h{minutes}m" if hours else f"{minutes}m" if minutes else "") + seconds + "s"


# The header names per kind, in the order they are sent.
_NAMES = (
    ("requests", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
     "x-ratelimit-reset-requests"),
    ("tokens", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
     "x-ratelimit-reset-tokens"),
)  # fmt: skip


def rate_headers(
    plan: Plan, reply: Reply, amounts: Sequence[int], window: Window
) -> dict[str, str]:
    """The x-ratelimit-* trio per kind, for the rule of that kind with the least room left."""
    # One pass over the rules (this runs on every admitted request).
    buckets, bucket_ms = window.buckets, window.bucket_ms  # (a property: computed once here)
    admitted, used, newest_of = reply.admitted, reply.used, reply.newest
    best: dict[str, tuple[int, int, int]] = {}
    for i, rate in enumerate(plan.rates):
        taken = amounts[i] if admitted else 0
        remaining = max(0, rate.limit - used[i] - taken)
        found = best.get(rate.kind)
        if found is None or remaining < found[1]:
            newest = reply.bucket if taken else newest_of[i]
            # "reset": until the window holds none of today's usage, i.e. the bucket is full
            # again (go_duration prints any wait <= 0 as 0s)
            reset = (newest + buckets) * bucket_ms - reply.now_ms if newest >= 0 else 0
            best[rate.kind] = (rate.limit, remaining, reset)
    out: dict[str, str] = {}
    for kind, limit_name, remaining_name, reset_name in _NAMES:
        found = best.get(kind)
        if found is not None:
            out[limit_name] = str(found[0])
            out[remaining_name] = str(found[1])
            out[reset_name] = go_duration(found[2])
    return out


def _where(scope: str, name: str) -> str:
    return "" if scope == "model" else f" in {scope} '{name}'"


def _per(rate: Rate, window: Window) -> str:
    short = "RPM" if rate.kind == "requests" else "TPM"
    if window.window_ms == 60_000:
        return f"{rate.kind} per min ({short})"
    return f"{rate.kind} per {go_duration(window.window_ms)}"


def _rate_error(rate: Rate, message: str, headers: dict[str, str]) -> RateLimitError:
    cls = TokensRateLimitError if rate.kind == "tokens" else RateLimitError
    return cls(message, headers=headers)


def too_large(
    model: str, plan: Plan, amounts: Sequence[int], window: Window
) -> RateLimitError | None:
    """A request no amount of waiting admits (estimate above a token limit, or a zero limit)."""
    stop = {"x-should-retry": "false"}
    for rate, amount in zip(plan.rates, amounts, strict=True):
        if amount > rate.limit:
            return _rate_error(
                rate,
                (
                    f"Request too large for {model}{_where(rate.scope, rate.name)} on "
                    f"{_per(rate, window)}: Limit {rate.limit}, Requested {amount}. The input or "
                    "output tokens must be reduced in order to run successfully."
                ),
                stop,
            )
    for lease in plan.leases:
        if lease.limit <= 0:
            return RateLimitError(
                f"No concurrent requests are allowed for {model}{_where(lease.scope, lease.name)}.",
                headers=stop,
            )
    return None


def _usd(amount: float) -> str:
    return f"${amount:.2f}" if amount >= 0.1 else f"${amount:.6g}"


def _period(c: Charge) -> str:
    return "in total" if c.budget.period == "total" else f"for the {c.budget.period} {c.period_id}"


def refusal(
    model: str,
    plan: Plan,
    reply: Reply,
    amounts: Sequence[int],
    charges: Sequence[Charge],
    window: Window,
    concurrency_retry_ms: int,
) -> GatewayError:
    """The error for a refused admit: a spent budget first, else the limit that frees up last."""
    for c, spent in zip(charges, reply.spent, strict=True):
        if spent >= nano(c.budget.limit_usd):
            b = c.budget
            return QuotaExceededError(
                f"You exceeded your current quota: {b.scope} '{b.name}' has spent "
                f"{_usd(spent / NANO)} of its {_usd(b.limit_usd)} budget {_period(c)}. "
                "Ask an administrator to raise the budget."
            )
    worst: tuple[int, Rate | Lease | None, str] | None = None
    for i, rate in enumerate(plan.rates):
        wait = reply.wait_ms[i]
        if reply.used[i] + amounts[i] > rate.limit and (worst is None or wait > worst[0]):
            text = (
                f"Rate limit reached for {model}{_where(rate.scope, rate.name)} on "
                f"{_per(rate, window)}: Limit {rate.limit}, Used {reply.used[i]}, "
                f"Requested {amounts[i]}."
            )
            worst = (wait, rate, text)
    for lease, held in zip(plan.leases, reply.held, strict=True):
        if held >= lease.limit and (worst is None or concurrency_retry_ms > worst[0]):
            text = (
                f"Too many concurrent requests for {model}{_where(lease.scope, lease.name)}"
                f": Limit {lease.limit}, In flight {held}."
            )
            worst = (concurrency_retry_ms, lease, text)
    if worst is None:  # unreachable: the script refuses only on one of the conditions above
        worst = (concurrency_retry_ms, None, "Rate limit reached.")
    wait, rule, text = worst
    wait = max(1, wait)
    headers = {
        "retry-after": str(max(1, math.ceil(wait / 1000))),
        "retry-after-ms": str(wait),
        **rate_headers(plan, reply, amounts, window),
    }
    message = f"{text} Please try again in {go_duration(wait)}."
    if isinstance(rule, Rate):
        return _rate_error(rule, message, headers)
    return RateLimitError(message, headers=headers)


def unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "The gateway's rate limiter is unreachable; try again shortly.",
        code="limits_unavailable",
        headers={"retry-after": "1", "retry-after-ms": "1000"},
    )
