"""Counters, gauges and histograms for the metrics recorded on every message, without a lock per update.

prometheus_client takes a lock on every ``inc``/``observe`` so that a scrape on another thread reads whole
values. The worker records and renders ``/metrics`` on its one event-loop thread (``ops_server``), so
plain attribute updates are whole already: a histogram observation is a ``bisect`` and two additions, about
a quarter of prometheus_client's cost (bench ``metrics_cost``). Families register on a
``CollectorRegistry`` like prometheus_client's own and expose exactly what they would: ``_total`` and
``_created`` for counters; ``_bucket`` (cumulative, ``le`` as prometheus_client formats it), ``_count``,
``_sum`` and ``_created`` for histograms (tests/unit/test_fastmetrics.py compares the two outputs).

Not thread-safe: record and collect from one thread.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString


class CounterValue:
    """One counter series."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0)."""
        if amount < 0:
            raise ValueError(f"counters only go up; cannot add {amount}")
        self.value += amount


class GaugeValue:
    """One gauge series."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        """Replace the value."""
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount``."""
        self.value -= amount


class HistogramValue:
    """One histogram series over fixed upper bounds (``+Inf`` added)."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose upper bound is >= it."""
        self.counts[bisect.bisect_left(self.bounds, amount)] += 1
        self.sum += amount


_Value = TypeVar("_Value", CounterValue, GaugeValue, HistogramValue)


class _Family(Generic[_Value]):
    """A named metric and its series, one per tuple of label values (one series when there are no labels)."""

    def __init__(self, kind: str, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.series: dict[tuple[str, ...], _Value] = {}
        if not self.labelnames:
            self.series[()] = self._new()

    def labels(self, *values: str) -> _Value:
        """The series for these label values, created (at zero) the first time."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        key = tuple(str(value) for value in values)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = self._new()
        return series

    def remove(self, *values: str) -> None:
        """Drop the series for these label values (``KeyError`` if absent)."""
        del self.series[tuple(str(value) for value in values)]

    def _new(self) -> _Value:
        raise NotImplementedError

    def metric(self) -> Metric:
        family = Metric(self.name, self.documentation, self.kind)
        for key, series in self.series.items():
            self._add_samples(family, dict(zip(self.labelnames, key, strict=True)), series)
        return family

    def _add_samples(self, family: Metric, labels: dict[str, str], series: _Value) -> None:
        raise NotImplementedError


class CounterFamily(_Family[CounterValue]):
    """Counter; unlabelled, ``inc`` goes straight to its one series."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__("counter", name, documentation, labelnames)

    def inc(self, amount: float = 1.0) -> None:
        """Add to the series of an unlabelled counter."""
        self.series[()].inc(amount)

    def _new(self) -> CounterValue:
        return CounterValue()

    def _add_samples(self, family: Metric, labels: dict[str, str], series: CounterValue) -> None:
        family.add_sample(self.name + "_total", labels, series.value)
        family.add_sample(self.name + "_created", labels, series.created)


class GaugeFamily(_Family[GaugeValue]):
    """Gauge; unlabelled, ``set`` goes straight to its one series."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__("gauge", name, documentation, labelnames)

    def set(self, value: float) -> None:
        """Set the series of an unlabelled gauge."""
        self.series[()].set(value)

    def inc(self, amount: float = 1.0) -> None:
        """Add to the series of an unlabelled gauge."""
        self.series[()].inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        """Subtract from the series of an unlabelled gauge."""
        self.series[()].dec(amount)

    def _new(self) -> GaugeValue:
        return GaugeValue()

    def _add_samples(self, family: Metric, labels: dict[str, str], series: GaugeValue) -> None:
        family.add_sample(self.name, labels, series.value)


class HistogramFamily(_Family[HistogramValue]):
    """Histogram over ``buckets`` (sorted upper bounds, ``+Inf`` implied)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> None:
        bounds = tuple(float(bound) for bound in buckets if not math.isinf(bound))
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be increasing finite bounds, got {list(buckets)}")
        self.bounds = bounds
        # "le" as prometheus_client writes it ("0.1", "1.0", "+Inf"), formatted once.
        self.le_labels = tuple(floatToGoString(bound) for bound in (*bounds, math.inf))  # type: ignore[no-untyped-call]
        super().__init__("histogram", name, documentation, labelnames)

    def observe(self, amount: float) -> None:
        """Observe into the series of an unlabelled histogram."""
        self.series[()].observe(amount)

    def _new(self) -> HistogramValue:
        return HistogramValue(self.bounds)

    def _add_samples(self, family: Metric, labels: dict[str, str], series: HistogramValue) -> None:
        cumulative = 0
        for le, count in zip(self.le_labels, series.counts, strict=True):
            cumulative += count
            family.add_sample(self.name + "_bucket", {**labels, "le": le}, cumulative)
        family.add_sample(self.name + "_count", labels, cumulative)
        family.add_sample(self.name + "_sum", labels, series.sum)
        family.add_sample(self.name + "_created", labels, series.created)


class FastFamilies:
    """The collector that exposes a set of families on a registry (register once, add families freely)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._families: list[_Family[CounterValue] | _Family[GaugeValue] | _Family[HistogramValue]] = []
        registry.register(self)

    def counter(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> CounterFamily:
        """A new counter family."""
        return self._add(CounterFamily(name, documentation, labelnames))

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> GaugeFamily:
        """A new gauge family."""
        return self._add(GaugeFamily(name, documentation, labelnames))

    def histogram(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), *, buckets: Sequence[float]
    ) -> HistogramFamily:
        """A new histogram family."""
        return self._add(HistogramFamily(name, documentation, labelnames, buckets=buckets))

    def collect(self) -> Iterator[Metric]:
        """Every family with its current series (called by the registry on a scrape)."""
        for family in self._families:
            yield family.metric()

    def _add(self, family: _FamilyT) -> _FamilyT:
        if any(existing.name == family.name for existing in self._families):
            raise ValueError(f"duplicate metric family {family.name}")
        self._families.append(family)
        return family


_FamilyT = TypeVar("_FamilyT", CounterFamily, GaugeFamily, HistogramFamily)
