"""The demo's submissions and policy: valid producer messages that the unweakened guard accepts."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import orjson
import pytest

from worker.contracts import Contracts, DeadLetterReason, InvalidSubmission
from worker.dev.demo.run import IMAGE_HOST
from worker.dev.demo.samples import DEMO_POLICY_THRESHOLDS
from worker.dev.demo.traffic import DemoSample, repeated, submission
from worker.policy import BlockRule, Policy
from worker.policy_file import policy_from_document

SAMPLE = DemoSample("demo-astronaut", "astronaut.png", "ab" * 32, "approved")
NOW = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def contracts() -> Contracts:
    """The compiled schemas."""
    return Contracts.load()


@pytest.fixture(scope="module")
def demo_policy(contracts: Contracts) -> Policy:
    """The bundled demo policy, as the worker loads it."""
    raw = resources.files("worker").joinpath("policies/demo.json").read_bytes()
    return policy_from_document(orjson.loads(raw), contracts=contracts)


def test_demo_policy_matches_the_thresholds_the_sample_set_assumes(demo_policy: Policy) -> None:
    """Blocklist tags and thresholds equal ``DEMO_POLICY_THRESHOLDS``; approval needs a tag at 0.5."""
    expected = {tag: BlockRule(review, reject) for tag, (review, reject) in DEMO_POLICY_THRESHOLDS.items()}
    assert (expected, 0.5) == (dict(demo_policy.blocklist), demo_policy.min_confidence)


def test_a_demo_submission_is_accepted_by_the_demo_policys_guard(
    contracts: Contracts, demo_policy: Policy
) -> None:
    """https on the demo host with a port, consent for content moderation, source ``demo``."""
    url = f"https://{IMAGE_HOST}:8443/astronaut.png"
    accepted = contracts.decode_submission(submission(SAMPLE, url, NOW), demo_policy.guard())
    assert ("demo-astronaut", url, "demo", NOW) == (
        accepted.id,
        accepted.image_url,
        accepted.source,
        accepted.submitted_at,
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://localhost:8443/astronaut.png", DeadLetterReason.UNSAFE_URL),
        ("https://127.0.0.1:8443/astronaut.png", DeadLetterReason.UNSAFE_URL),
        (f"http://{IMAGE_HOST}:8443/astronaut.png", DeadLetterReason.SCHEMA_INVALID),
        ("https://images.example.com/astronaut.png", DeadLetterReason.HOST_NOT_ALLOWED),
    ],
)
def test_the_demo_does_not_weaken_the_guard(
    contracts: Contracts, demo_policy: Policy, url: str, reason: DeadLetterReason
) -> None:
    """Loopback hosts and plain http stay refused; other hosts are off the demo policy's allowlist."""
    with pytest.raises(InvalidSubmission) as refused:
        contracts.decode_submission(submission(SAMPLE, url, NOW), demo_policy.guard())
    assert reason == refused.value.reason


def test_repeated_keeps_the_first_round_ids_and_suffixes_later_rounds() -> None:
    """Round after round, same files and hashes; ids stay unique."""
    other = DemoSample("demo-coins", "coins.png", "cd" * 32, None)
    ids = [sample.image_id for sample in repeated([SAMPLE, other], 3)]
    rounds = [["demo-astronaut", "demo-coins"], ["demo-astronaut-r2", "demo-coins-r2"]]
    assert [*rounds[0], *rounds[1], "demo-astronaut-r3", "demo-coins-r3"] == ids
