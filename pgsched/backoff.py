"""Exponential backoff with jitter, shared by step retries and run retries."""

from __future__ import annotations

import random


def backoff_seconds(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Delay before retry number ``attempt`` (1-based): base * 2^(attempt-1), capped, then
    "equal jitter" (half fixed, half random) so a burst of failures does not retry in step."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay / 2 + random.uniform(0, delay / 2)
