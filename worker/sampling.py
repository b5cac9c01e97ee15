"""Audit sampling: which automatic decisions are also sent to reviewers, as a pure function of the image id.

A share of automatic approvals and rejections is copied to the audit topic so the precision of automatic
decisions can be estimated without bias (docs/intervention.md, "Audit sampling"). The choice for one id is
``draw(id) < p``: ``draw`` maps a keyed BLAKE2b hash of the id to [0, 1), so

- it is deterministic: a redelivered record (same id) makes the same choice on any replica, at any time;
- it is unbiased: for ids the submitter does not choose with knowledge of the key, each decision is audited
  with probability exactly ``p``, and ``p`` is what the audit item records as its inclusion probability
  (a Horvitz-Thompson estimate weights each audited item by ``1 / p``);
- it is nested: an id audited at rate ``p`` is audited at every rate above ``p``.

The key (``MODERATION_AUDIT_KEY``) keeps submitters from predicting which of their ids are audited.
Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from worker.domain import Decision

_DRAW_BYTES: Final = 8
_DRAW_SCALE: Final = float(1 << (8 * _DRAW_BYTES))
_MAX_KEY_BYTES: Final = 64
"""BLAKE2b takes keys of up to 64 bytes; a longer key is hashed down to that first."""
AUDITED_DECISIONS: Final = (Decision.APPROVED, Decision.REJECTED)
"""Only automatic decisions are audited: needs-review items reach a reviewer anyway."""


def _blake2b_key(key: bytes) -> bytes:
    return key if len(key) <= _MAX_KEY_BYTES else hashlib.blake2b(key).digest()


def draw(image_id: str, key: bytes = b"") -> float:
    """The id's point in [0, 1): the first 8 bytes of BLAKE2b(id, key) as a fraction of 2**64."""
    digest = hashlib.blake2b(image_id.encode(), key=_blake2b_key(key), digest_size=_DRAW_BYTES).digest()
    return int.from_bytes(digest, "big") / _DRAW_SCALE


@dataclass(frozen=True, slots=True)
class AuditSampler:
    """The audit rate of each automatic decision and the hash key; a rate of 0 turns that decision off.

    ``rates`` maps ``approved``/``rejected`` to a probability in [0, 1]; a decision not in it is never
    audited. Raises ``ValueError`` for a rate outside [0, 1] or for a decision that is not automatic.
    """

    rates: Mapping[Decision, float]
    key: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        for decision, rate in self.rates.items():
            if decision not in AUDITED_DECISIONS:
                raise ValueError(f"only automatic decisions are audited, not {decision!r}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"audit rate of {decision} must be within [0, 1], got {rate}")

    @property
    def enabled(self) -> bool:
        """True when some decision is audited at a rate above 0."""
        return any(rate > 0.0 for rate in self.rates.values())

    def probability(self, decision: Decision) -> float:
        """The inclusion probability of one ``decision``: its rate, 0 for a decision not audited."""
        return self.rates.get(decision, 0.0)

    def chosen(self, image_id: str, decision: Decision) -> float | None:
        """The inclusion probability if the decision on ``image_id`` is audited, else ``None``."""
        rate = self.rates.get(decision, 0.0)
        if rate <= 0.0:
            return None
        if rate >= 1.0 or draw(image_id, self.key) < rate:
            return rate
        return None
