"""Retry delays: the C++ Worker's backoff formula (include/jobring/worker.hpp),
the same integer arithmetic in milliseconds."""

from __future__ import annotations

import datetime
import math
import random as _random
from dataclasses import dataclass
from typing import Optional, Union

from . import _capi

#: A duration in seconds (int or float), or a datetime.timedelta.
Seconds = Union[int, float, datetime.timedelta]

#: Wait for ever (a push's or claim's ``wait``, a Worker's ``grace``).
FOREVER = math.inf

JITTERS = ("none", "full", "equal")


def seconds_of(value: Seconds) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a duration in seconds (int, float or timedelta), not {type(value).__name__}")
    return float(value)


def to_ms(value: Seconds) -> int:
    """Seconds to whole milliseconds, rounded up (a positive duration is at least 1 ms)."""
    s = seconds_of(value)
    if math.isnan(s):
        raise ValueError("a duration cannot be NaN")
    if math.isinf(s):
        return _capi.MAX_LEASE_MS + 1 if s > 0 else -1
    return math.ceil(s * 1000 - 1e-9) if s > 0 else math.floor(s * 1000)


@dataclass(frozen=True)
class Backoff:
    """How long a failed job waits before its next attempt (seconds).

    A job that fails on attempt n (1 on its first claim) is released with::

        d     = min(cap, base * 2**(n-1))
        delay = d                        jitter="none"
                uniform in [0, d]        jitter="full"
                d/2 + uniform [0, d/2]   jitter="equal" (the default: never less than half)

    as the C++ Worker does (computed in whole milliseconds).
    """

    base: float = 1.0
    cap: float = 300.0
    jitter: str = "equal"

    def __post_init__(self) -> None:
        base_ms, cap_ms = to_ms(self.base), to_ms(self.cap)
        if not (0 <= base_ms <= cap_ms <= _capi.MAX_LEASE_MS):
            raise ValueError("Backoff must have 0 <= base <= cap <= 7 days")
        if self.jitter not in JITTERS:
            raise ValueError(f"Backoff.jitter must be one of {JITTERS}, not {self.jitter!r}")


def backoff_delay_ms(backoff: Backoff, attempt: int, random: int) -> int:
    """The release delay in milliseconds after a failure on ``attempt``
    (1-based; 0 counts as 1); ``random`` is a uniformly random 64-bit value.
    The C++ ``jobring::backoff_delay``, value for value."""
    base = max(0, to_ms(backoff.base))
    cap = max(0, to_ms(backoff.cap))
    shift = 0 if attempt <= 1 else min(attempt - 1, 62)
    d = 0 if base == 0 else (cap if base > (cap >> shift) else min(cap, base << shift))
    random &= (1 << 64) - 1
    if backoff.jitter == "full":
        return random % (d + 1)
    if backoff.jitter == "equal":
        return d // 2 + random % (d - d // 2 + 1)
    return d


def backoff_delay(backoff: Backoff, attempt: int, random: Optional[int] = None) -> float:
    """The release delay in seconds after a failure on ``attempt`` (see
    :class:`Backoff`); ``random``: a 64-bit value (default: a fresh random one)."""
    if random is None:
        random = _random.getrandbits(64)
    return backoff_delay_ms(backoff, attempt, random) / 1000.0
