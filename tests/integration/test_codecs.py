"""The worker consumes batches compressed with every Kafka codec, produced by another client than aiokafka.

The other client is Apache Kafka's own Java producer (tests/integration/java/CompressedProducer.java), run
on the jars the embedded broker already uses: the reference implementation of each codec's framing, and
no extra dependency. lz4 is the default of many librdkafka and Java producers; without the codec libraries
one such batch makes every replica exit with ``UnsupportedCodecError``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.fixtures.emulator import TEST_KEY
from tests.pipeline_harness import (
    Topics,
    ledger,
    make_submissions,
    wait_for_routed,
    worker_environment,
    worker_settings,
)
from worker.dev.broker import default_cache_root
from worker.dev.broker_config import DEFAULT_KAFKA_VERSION
from worker.dev.emulator.server import Emulator
from worker.dev.maven import resolve_kafka_jars
from worker.runner import EXIT_OK, run_worker

pytestmark = pytest.mark.integration

PRODUCER_SOURCE = Path(__file__).parent / "java" / "CompressedProducer.java"
JAVA_TIMEOUT_S = 120.0
#: every codec Kafka defines, each on its own partition of the input topic
CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 150


async def produce_with_java(
    bootstrap: str, topic: str, records: Mapping[str, list[tuple[bytes, bytes]]]
) -> dict[str, float]:
    """Send ``records[codec]`` to partition ``CODECS.index(codec)`` of ``topic``, compressed with ``codec``.

    Returns each codec's compression rate (compressed / raw size) as the Java producer measured it;
    raises ``AssertionError`` with the producer's output when it fails.
    """
    java = shutil.which("java")
    assert java is not None, "Java 17+ must be on PATH (the embedded broker needs it too)"
    libs = await resolve_kafka_jars(DEFAULT_KAFKA_VERSION, default_cache_root(os.environ))
    lines = b"".join(
        b"%s %d %s %s\n"
        % (codec.encode(), CODECS.index(codec), base64.b64encode(key), base64.b64encode(value))
        for codec, codec_records in records.items()
        for key, value in codec_records
    )
    command = [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", str(libs / "*"), str(PRODUCER_SOURCE)]
    process = await asyncio.create_subprocess_exec(
        *command,
        bootstrap,
        topic,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(JAVA_TIMEOUT_S):
            output, errors = await process.communicate(lines)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert 0 == process.returncode, (output + errors).decode(errors="replace")[-3000:]
    summary = re.findall(r"(\w+) sent=(\d+) compression-rate=([0-9.]+)", output.decode())
    assert {codec: len(codec_records) for codec, codec_records in records.items()} == {
        codec: int(count) for codec, count, _ in summary
    }
    return {codec: float(rate) for codec, _, rate in summary}


async def test_every_submission_in_batches_of_every_codec_is_routed(
    kafka_bootstrap: str, topic_prefix: str, group_id: str, scripted_emulator: Emulator
) -> None:
    """gzip, snappy, lz4 and zstd batches from the Java producer: each id lands once in its expected route."""
    topics = Topics(topic_prefix)
    await topics.create(kafka_bootstrap, partitions=len(CODECS))
    submissions = {codec: make_submissions(PER_CODEC, prefix=codec) for codec in CODECS}
    rates = await produce_with_java(
        kafka_bootstrap, topics.input, {codec: batch.records for codec, batch in submissions.items()}
    )
    assert set(CODECS) == {codec for codec, rate in rates.items() if rate < 1.0}  # really compressed

    total = len(CODECS) * PER_CODEC
    env = worker_environment(kafka_bootstrap, topics, group_id, scripted_emulator.endpoint, TEST_KEY)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(worker_settings(env), stop=stop, registry=CollectorRegistry()))
    routed = asyncio.create_task(wait_for_routed(kafka_bootstrap, topics, total, timeout_s=120))
    # A worker that dies on a batch it cannot decompress ends the wait at once, with its exception.
    try:
        await asyncio.wait({worker, routed}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        assert EXIT_OK == await worker
        await routed
    finally:
        routed.cancel()

    seen = await ledger(kafka_bootstrap, topics, expected_total=total)
    expected = {
        image_id: [route] for batch in submissions.values() for image_id, route in batch.expected.items()
    }
    assert expected == seen
    assert sum((batch.expected_counts() for batch in submissions.values()), Counter()) == Counter(
        routes[0] for routes in seen.values()
    )
