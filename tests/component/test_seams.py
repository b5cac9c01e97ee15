"""The loop's seams describe the real aiokafka clients: every call the protocols (and so the fakes) offer
exists on ``AIOKafkaConsumer``/``AIOKafkaProducer`` with the same parameters, and a ``ConsumerRecord`` carries
every field of ``ConsumedRecord``. aiokafka ships no type information, so the signatures are compared."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from worker.kafka.loop import Consumer
from worker.kafka.outbox import Producer
from worker.records import ConsumedRecord


def declared_calls(protocol: type) -> dict[str, Callable[..., object]]:
    """The methods ``protocol`` and the protocols it extends declare (properties and dunders aside)."""
    protocols = [base for base in reversed(protocol.__mro__) if getattr(base, "_is_protocol", False)]
    return {
        name: member
        for base in protocols
        for name, member in vars(base).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


def mismatches(declared: Callable[..., object], real: Callable[..., object]) -> list[str]:
    """How a call shaped as ``declared`` would not fit ``real``: sync/async, parameter names and kinds."""
    problems = []
    if inspect.iscoroutinefunction(declared) != inspect.iscoroutinefunction(real):
        problems.append("async in one, not in the other")
    real_parameters = inspect.signature(real).parameters
    for name, parameter in inspect.signature(declared).parameters.items():
        if name == "self":
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in real_parameters.values()):
                problems.append(f"*{name} not accepted")
            continue
        counterpart = real_parameters.get(name)
        if counterpart is None or counterpart.kind is inspect.Parameter.POSITIONAL_ONLY:
            problems.append(f"no parameter {name}")
        elif parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and counterpart.kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.POSITIONAL_ONLY,
        ):
            problems.append(f"{name} cannot be passed by position")
        elif parameter.default is not inspect.Parameter.empty and counterpart.default != parameter.default:
            problems.append(f"{name} defaults to {counterpart.default!r}, not {parameter.default!r}")
    return problems


SEAMS = [
    (Consumer, AIOKafkaConsumer),
    (Producer, AIOKafkaProducer),
]


@pytest.mark.parametrize(("protocol", "real"), SEAMS, ids=lambda item: item.__name__)
def test_every_call_of_the_seam_exists_on_the_real_client_with_the_same_parameters(
    protocol: type, real: type
) -> None:
    """Each declared method is on the real class, as coroutine or not, taking the same arguments."""
    calls = declared_calls(protocol)
    assert calls, f"{protocol.__name__} declares no calls"
    problems = {
        name: mismatches(declared, getattr(real, name)) if hasattr(real, name) else ["missing"]
        for name, declared in calls.items()
    }
    assert {name: [] for name in calls} == problems


def test_a_consumer_record_carries_every_field_of_consumed_record() -> None:
    """``ConsumedRecord`` reads only fields aiokafka's ``ConsumerRecord`` has."""
    declared = {name for name, member in vars(ConsumedRecord).items() if isinstance(member, property)}
    fields = {field.name for field in dataclasses.fields(ConsumerRecord)}
    expected = {"topic", "partition", "offset", "timestamp", "key", "value", "headers"}
    assert expected == declared
    assert declared <= fields


def test_the_seam_check_notices_a_call_the_client_would_refuse() -> None:
    """The check itself can fail: a renamed keyword and a lost coroutine are both reported."""

    async def declared(self: object, offsets: object, *, timeout_ms: int = 0) -> None: ...

    def real(self: object, offsets: object, *, timeout: int = 0) -> None: ...

    assert ["async in one, not in the other", "no parameter timeout_ms"] == mismatches(declared, real)
