"""``fastmetrics`` exposes exactly what prometheus_client exposes for the same metrics and updates."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from worker.observability.fastmetrics import FastFamilies

BUCKETS = (0.005, 0.1, 0.25, 1.0, 2.5, 60.0)
OBSERVED = (0.0, 0.005, 0.0051, 0.1, 0.3, 2.5, 59.9, 60.0, 61.0, 1e9, -1.0)
_CREATED = re.compile(r"^(\w+_created(?:\{[^}]*\})?) \S+$", re.MULTILINE)


def _text(registry: CollectorRegistry) -> str:
    """The exposition with creation timestamps blanked (the two registries are built moments apart)."""
    return _CREATED.sub(r"\1 <created>", generate_latest(registry).decode())


def test_counters_gauges_and_histograms_expose_as_prometheus_client_does() -> None:
    reference, fast = CollectorRegistry(), CollectorRegistry()
    families = FastFamilies(fast)

    counter = Counter("t_results", "Results.", ["decision"], registry=reference)
    fast_counter = families.counter("t_results", "Results.", ["decision"])
    plain = Counter("t_retries", "Retries.", registry=reference)
    fast_plain = families.counter("t_retries", "Retries.")
    gauge = Gauge("t_in_flight", "In flight.", registry=reference)
    fast_gauge = families.gauge("t_in_flight", "In flight.")
    histogram = Histogram("t_seconds", "Durations.", buckets=BUCKETS, registry=reference)
    fast_histogram = families.histogram("t_seconds", "Durations.", buckets=BUCKETS)
    by_tag = Histogram("t_confidence", "Confidence.", ["tag"], buckets=(0.5, 1.0), registry=reference)
    fast_by_tag = families.histogram("t_confidence", "Confidence.", ["tag"], buckets=(0.5, 1.0))

    for decision, times in (("approved", 3), ("rejected", 1), ("needs_review", 0)):
        counter.labels(decision).inc(times)
        fast_counter.labels(decision).inc(times)
    plain.inc(2.5)
    fast_plain.inc(2.5)
    gauge.set(17)
    fast_gauge.set(17)
    for value in OBSERVED:
        histogram.observe(value)
        fast_histogram.observe(value)
    for tag, value in (("weapon", 0.7), ("weapon", 0.2), ("knife", 1.0)):
        by_tag.labels(tag).observe(value)
        fast_by_tag.labels(tag).observe(value)

    assert _text(reference) == _text(fast)
    assert reference.get_sample_value("t_seconds_sum") == fast.get_sample_value("t_seconds_sum")


def test_series_can_be_removed_and_label_counts_are_checked() -> None:
    families = FastFamilies(CollectorRegistry())
    lag = families.gauge("t_lag", "Lag.", ["topic", "partition"])
    lag.labels("images", "0").set(5)
    lag.remove("images", "0")
    assert {} == lag.series
    with pytest.raises(ValueError, match="takes labels"):
        lag.labels("images")


def test_counters_refuse_to_go_down_and_buckets_must_increase() -> None:
    families = FastFamilies(CollectorRegistry())
    with pytest.raises(ValueError, match="only go up"):
        families.counter("t_total_things", "Things.").inc(-1)
    with pytest.raises(ValueError, match="increasing"):
        families.histogram("t_bad", "Bad.", buckets=(1.0, 0.5))
    families.gauge("t_once", "Once.")
    with pytest.raises(ValueError, match="duplicate"):
        families.gauge("t_once", "Again.")
