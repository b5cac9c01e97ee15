"""The settings of hash banks: the bank topic is created compacted when followed, and banks need the
worker-side fetch."""

from __future__ import annotations

import pytest

from worker.errors import ConfigurationError
from worker.kafka.topics import topic_specs
from worker.settings import Settings


def test_the_followed_bank_topic_is_created_compacted_with_one_partition() -> None:
    """Every replica reads it whole: one partition, compacted, so the latest record per key survives."""
    followed = {spec.name: spec for spec in topic_specs(Settings.defaults(hash_banks_from_topic=True))}
    plain = {spec.name for spec in topic_specs(Settings.defaults())}
    bank = followed["moderation.hash-banks"]
    assert (1, {"cleanup.policy": "compact"}, False) == (
        bank.num_partitions,
        bank.topic_configs,
        "moderation.hash-banks" in plain,
    )


@pytest.mark.parametrize(
    "overrides",
    [{"hash_banks_from_topic": True}, {"hash_bank_files": "banks.json"}, {"analysis_cache_size": 10}],
)
def test_banks_and_the_cache_need_the_worker_side_fetch(overrides: dict[str, object]) -> None:
    """Without the bytes there is nothing to hash: such a configuration is refused at start."""
    settings = Settings.defaults(
        azure_endpoint="https://x.cognitiveservices.azure.com/", azure_key="k", **overrides
    )
    with pytest.raises(ConfigurationError) as refused:
        settings.check_complete()
    assert "need MODERATION_IMAGE_FETCH=worker" in str(refused.value)


def test_worker_side_fetch_needs_the_azure_analyzer() -> None:
    """The offline model reads URLs only; bytes mode is Image Analysis' ``analyze``."""
    with pytest.raises(ConfigurationError) as refused:
        Settings.defaults(analyzer="model", image_fetch="worker").check_complete()
    assert "MODERATION_IMAGE_FETCH=worker: needs MODERATION_ANALYZER=azure" in str(refused.value)
