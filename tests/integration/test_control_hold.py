"""Real-time intervention: a hold on the control topic sends would-be approvals to reviewers, at once."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests.fixtures.emulator import TEST_KEY
from tests.kafka_helpers import create_topics, produce_all, read_all
from tests.pipeline_harness import (
    IMAGE_HOST,
    Topics,
    wait_until,
    worker_environment,
    worker_settings,
)
from worker.dev.emulator.server import Emulator
from worker.kafka.control import publish_hold
from worker.runner import EXIT_OK, run_worker

pytestmark = pytest.mark.integration


def _submission(image_id: str) -> tuple[bytes, bytes]:
    url = f"{IMAGE_HOST}/approved.jpg"
    return image_id.encode(), orjson.dumps({"id": image_id, "image": {"url": url}})


async def test_hold_routes_approvals_to_review_until_lifted(
    kafka_bootstrap: str, topic_prefix: str, group_id: str, scripted_emulator: Emulator
) -> None:
    """hold on: an approvable image goes to needs-review with a ``hold`` reason; hold off: approved again."""
    topics = Topics(topic_prefix)
    await topics.create(kafka_bootstrap, partitions=1)
    control_topic = topic_prefix + "control"
    await create_topics(kafka_bootstrap, [control_topic], 1, configs={"cleanup.policy": "compact"})
    env = worker_environment(
        kafka_bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY, control_topic=control_topic
    )
    settings = worker_settings(env)
    await publish_hold(settings, active=True, reason="incident 42", issued_by="reviewer-7")
    registry = CollectorRegistry()
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop, registry=registry))
    await wait_until(lambda: registry.get_sample_value("moderation_hold_active") == 1.0, timeout_s=30)
    await produce_all(kafka_bootstrap, topics.input, [_submission("held")])
    [held] = await read_all(kafka_bootstrap, topics.route("needs-review"), expected=1, idle_s=30)

    await publish_hold(settings, active=False, reason=None, issued_by="reviewer-7")
    await wait_until(lambda: registry.get_sample_value("moderation_hold_active") == 0.0, timeout_s=30)
    await produce_all(kafka_bootstrap, topics.input, [_submission("released")])
    [released] = await read_all(kafka_bootstrap, topics.route("approved"), expected=1, idle_s=30)
    stop.set()
    assert EXIT_OK == await worker

    assert (b"held", "needs_review") == (held.key, orjson.loads(held.value)["decision"])
    assert ["hold"] == [reason["rule"] for reason in orjson.loads(held.value)["reasons"]]
    assert (b"released", "approved") == (released.key, orjson.loads(released.value)["decision"])
