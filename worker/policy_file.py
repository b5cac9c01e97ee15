"""Reading a policy: a ``policy.v1`` document validated against its schema and built into a ``Policy``.

The bundled default lives in ``worker/policies/``; every error is a ``ConfigurationError`` naming the problem.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from worker.contracts import Contracts, SchemaName
from worker.domain import Decision
from worker.errors import ConfigurationError
from worker.policy import (
    DEFAULT_APPROVE_AT,
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_REJECT_AT,
    DEFAULT_REVIEW_AT,
    BlockRule,
    Policy,
    PolicyMode,
)


def policy_from_document(document: Mapping[str, object], *, contracts: Contracts | None = None) -> Policy:
    """Validate ``document`` against ``policy.v1`` and build the ``Policy``; raises ``ConfigurationError``.

    Pass the start-up ``Contracts`` to reuse its compiled validator; without one the schemas are loaded.
    """
    contracts = Contracts.load() if contracts is None else contracts
    violation = contracts.describe_violation(SchemaName.POLICY, document)
    if violation is not None:
        raise ConfigurationError(f"invalid policy: {violation}")
    doc: Any = document
    defaults = doc.get("defaults", {})
    review_at = float(defaults.get("review_at", DEFAULT_REVIEW_AT))
    reject_at = float(defaults.get("reject_at", DEFAULT_REJECT_AT))
    approve_at = float(defaults.get("approve_at", DEFAULT_APPROVE_AT))
    blocklist = {
        name: BlockRule(
            review_at=float(entry.get("review_at", review_at)),
            reject_at=None if (value := entry.get("reject_at", reject_at)) is None else float(value),
        )
        for name, entry in doc.get("blocklist", {}).items()
    }
    allowlist = {
        name: float(entry.get("approve_at", approve_at)) for name, entry in doc.get("allowlist", {}).items()
    }
    consent = doc.get("consent", {})
    return Policy(
        mode=PolicyMode(doc["mode"]),
        min_confidence=float(defaults.get("min_confidence", DEFAULT_MIN_CONFIDENCE)),
        blocklist=blocklist,
        allowlist=allowlist,
        on_image_error=Decision(doc.get("on_image_error", Decision.NEEDS_REVIEW)),
        on_allowlist_miss=Decision(doc.get("on_allowlist_miss", Decision.NEEDS_REVIEW)),
        watched_tags=tuple(doc.get("watched_tags", ())),
        consent_required=bool(consent.get("required", False)),
        consent_purposes=frozenset(consent.get("purposes", ())),
        url_hosts=tuple(doc.get("url_hosts", ())),
    )


def load_policy(path: Path, *, contracts: Contracts | None = None) -> Policy:
    """Read a policy file (JSON); raises ``ConfigurationError`` if it is unreadable or invalid."""
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read policy file {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigurationError(f"policy file {path} does not hold a JSON object")
    return policy_from_document(document, contracts=contracts)


def load_default_policy(*, contracts: Contracts | None = None) -> Policy:
    """The policy bundled with the package (``worker/policies/default.json``): examples to tune, see docs."""
    raw = importlib.resources.files("worker").joinpath("policies/default.json").read_bytes()
    return policy_from_document(orjson.loads(raw), contracts=contracts)
