"""The independent consumer: reads the input and all four output topics back; the group's lag and state.

It joins no consumer group (``tests.kafka_helpers.read_to_end``), so it cannot disturb the replicas, and it
reads only once nobody writes any more; the lag is the group's committed offsets against the input's ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from tests.kafka_helpers import read_to_end
from tests.pipeline_harness import ROUTES, Topics

READ_TIMEOUT_S = 120.0


async def input_keys(bootstrap: str, topics: Topics) -> list[str]:
    """The key of every record in the input topic (one entry per record)."""
    records = await read_to_end(bootstrap, topics.input, timeout_s=READ_TIMEOUT_S)
    return [(record.key or b"").decode() for record in records]


@dataclass(frozen=True)
class Outputs:
    """For each key in any output topic, the route of each record carrying it; ``complete_ms``: the time of
    the record that completed the set (the latest of each key's first record), 0 when there is none."""

    seen: dict[str, list[str]]
    complete_ms: int


async def outputs(bootstrap: str, topics: Topics) -> Outputs:
    """Every record of the four output topics, as routes per key."""
    seen: dict[str, list[str]] = {}
    first_ms: dict[str, int] = {}
    for name in ROUTES:
        for record in await read_to_end(bootstrap, topics.route(name), timeout_s=READ_TIMEOUT_S):
            key = (record.key or b"").decode()
            seen.setdefault(key, []).append(name)
            first_ms[key] = min(first_ms.get(key, record.timestamp), record.timestamp)
    return Outputs(seen, max(first_ms.values(), default=0))


async def group_lag(bootstrap: str, group_id: str, topic: str, partitions: int) -> dict[int, int] | None:
    """Per partition of ``topic`` (``partitions`` of them), the records the group has not committed yet;
    None while the broker cannot tell (down, or its group coordinator still loading)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await consumer.start()
        wanted = [TopicPartition(topic, partition) for partition in range(partitions)]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
        committed = await admin.list_consumer_group_offsets(group_id, partitions=wanted)
    except KafkaError:
        return None
    finally:
        await consumer.stop()
        await admin.close()
    return {
        tp.partition: end - max(committed[tp].offset if tp in committed else 0, 0) for tp, end in ends.items()
    }


async def group_state(bootstrap: str, group_id: str) -> tuple[str, int] | None:
    """The group's state (``"Stable"``, ``"PreparingRebalance"``, ...) and member count; None on error."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        [response] = await admin.describe_consumer_groups([group_id])
    except KafkaError:
        return None
    finally:
        await admin.close()
    # DescribeGroups answers one tuple per group: (error_code, group_id, state, protocol_type, protocol,
    # members, ...) in every version aiokafka speaks.
    [group] = response.groups
    return str(group[2]), len(group[5])
