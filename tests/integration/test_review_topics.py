"""``moderation-worker review --create-topics`` on the real broker: created once, then reported existing."""

from __future__ import annotations

import pytest

from worker.review.settings import ReviewSettings
from worker.review.topics import create_review_topics
from worker.settings import Settings

pytestmark = pytest.mark.integration


async def test_the_consoles_topics_are_created_when_missing_and_left_alone_after(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Decisions, escalations and audit items get a topic each; a second run changes nothing."""
    settings = Settings.defaults(bootstrap_servers=kafka_bootstrap, topic_partitions=2)
    review = ReviewSettings.model_validate(
        {
            "decisions_topic": f"{topic_prefix}decisions",
            "escalated_topic": f"{topic_prefix}escalated",
            "audit_topic": f"{topic_prefix}audit",
        }
    )
    names = [f"{topic_prefix}{name}" for name in ("decisions", "escalated", "audit")]

    first = await create_review_topics(settings, review)
    second = await create_review_topics(settings, review)

    assert dict.fromkeys(names, "created") == first
    assert dict.fromkeys(names, "exists") == second
