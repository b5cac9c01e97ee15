"""The worker process's garbage-collector settings: freeze the start-up heap, collect the young less often.

Measured on the sdk_path benchmark (docs/benchmarks.md), stock settings: the worker ran a young collection
every ~8 messages (2,365 for 18,000), each walking the objects of the ~64 calls in flight (97 us on
average), and a full collection walked the ~55,000 objects its imports leave, which never die: 3.4 % of its
CPU in the collector, against 2.4 % for bare SDK calls. A steady-state worker leaves no cyclic garbage
(none found with ``gc.DEBUG_SAVEALL`` over a second at full rate): its objects die by reference count,
and the collector only has cycles from error paths (exception tracebacks) to find. So the start-up heap is
frozen and the young generation collected every 10,000 net allocations instead of 700; the older
generations keep their stock ratios. Only the CLI process does this: an embedding process owns its
collector.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 10_000
"""Net allocations between young collections (CPython's default is 700)."""


def tune_collector() -> None:
    """Freeze everything alive now (modules, compiled schemas, SDK model classes) and raise the young
    threshold; call once, after start-up imports and before serving."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
