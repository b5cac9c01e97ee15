"""Retry timing for transient analyzer failures: jittered exponential backoff.

Pure: the random source is passed in. ``worker.analysis.guarded`` decides when to retry and for how long.
"""

from __future__ import annotations

import random

# 2**62 times any sane base is already far above any max_s; capping the exponent avoids float overflow.
_MAX_EXPONENT = 62


def compute_backoff(attempt: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (0 = the first retry), with *full jitter*.

    The delay is uniform in ``[0, min(max_s, base_s * 2**attempt)]``. Full jitter (rather than decorrelated)
    keeps the function stateless and spreads retries of many messages that failed together evenly, so they do
    not return as a synchronised wave; the quota limiter, not the backoff, is what paces calls to the service.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base_s < 0.0 or max_s < 0.0:
        raise ValueError(f"base_s and max_s must be >= 0, got {base_s} and {max_s}")
    ceiling_s = min(max_s, base_s * (1 << min(attempt, _MAX_EXPONENT)))
    return rng.uniform(0.0, ceiling_s)
