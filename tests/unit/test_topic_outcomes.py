"""How ``topics create`` reads the broker: its CreateTopics answer per topic decides, the list only spares it.

The broker's topic list lags creations its controller has committed, so a topic it leaves out may exist; the
integration tests in tests/integration/test_topics.py drive the same rules against a real broker.
"""

from __future__ import annotations

import pytest
from aiokafka.errors import InvalidConfigurationError, RequestTimedOutError, TopicAlreadyExistsError

from worker.errors import ConfigurationError
from worker.kafka.topics import creation_outcomes

NAMES = ("in", "out", "control")


def test_a_listed_topic_exists_and_a_zero_answer_means_this_request_created_it() -> None:
    """Listed topics were not requested; a topic the broker created without error is reported created."""
    outcomes = creation_outcomes(NAMES, {"in"}, {"out": (0, None), "control": (0, None)})

    assert {"in": "exists", "out": "created", "control": "created"} == outcomes


def test_topic_already_exists_for_a_topic_missing_from_a_stale_list_is_reported_as_existing() -> None:
    """The list missed ``control`` (metadata not caught up); the broker's TOPIC_ALREADY_EXISTS wins."""
    answers = {"control": (TopicAlreadyExistsError.errno, "Topic 'control' already exists.")}

    assert dict.fromkeys(NAMES, "exists") == creation_outcomes(NAMES, {"in", "out"}, answers)


def test_every_refused_topic_is_named_with_its_kafka_error_and_the_brokers_message() -> None:
    """Refusals are collected, not stopped at the first; each names the error and what the broker said."""
    answers = {
        "in": (0, None),
        "out": (InvalidConfigurationError.errno, "Invalid value x for retention.ms"),
        "control": (RequestTimedOutError.errno, None),
    }

    with pytest.raises(ConfigurationError) as raised:
        creation_outcomes(NAMES, set(), answers)

    expected = (
        "the broker refused to create topics: out: INVALID_CONFIG (Invalid value x for retention.ms); "
        "control: REQUEST_TIMED_OUT (no message)"
    )
    assert expected == str(raised.value)


def test_a_topic_the_answer_leaves_out_is_refused_rather_than_assumed_created() -> None:
    """Without an answer for a requested topic nothing is known about it, so it is not reported created."""
    with pytest.raises(ConfigurationError) as raised:
        creation_outcomes(NAMES, {"in"}, {"out": (0, None)})

    assert "control: the broker's answer does not mention it" in str(raised.value)
