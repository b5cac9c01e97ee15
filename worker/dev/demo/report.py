"""What the demo shows: routed outputs read back from Kafka, the live progress line and the summary table.

Records come in as (route, key, value) and text goes out; ``Console`` writes it to an injected stream.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

import orjson

from worker.dev.emulator.state import TagSource

#: Output routes in display order; the first three are the decisions, the last the dead-letter topic.
ROUTES = ("approved", "needs_review", "rejected", "dead_letter")
DECISIONS = ROUTES[:3]
TOP_TAGS = 3
PROGRESS_INTERVAL_TTY_S = 0.1
PROGRESS_INTERVAL_PLAIN_S = 2.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where one submission ended: its route and why (``reasons`` already rendered as short text)."""

    image_id: str
    route: str
    reasons: tuple[str, ...]


def outcome_from_record(route: str, key: bytes | None, value: bytes | None) -> Outcome:
    """Read one output record: a ``moderation-result.v1`` for a decision, ``dead-letter.v1`` otherwise.

    A value that does not parse still counts for its route, with the reason ``unreadable record``.
    """
    image_id = (key or b"").decode(errors="replace")
    try:
        document = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return Outcome(image_id, route, ("unreadable record",))
    if not isinstance(document, dict):
        return Outcome(image_id, route, ("unreadable record",))
    if route == "dead_letter":
        error = document.get("error") or {}
        return Outcome(image_id, route, (f"{error.get('class')}: {error.get('message')}",))
    return Outcome(str(document.get("id", image_id)), route, tuple(_reason(r) for r in document["reasons"]))


def _reason(reason: Mapping[str, object]) -> str:
    parts = [str(reason["rule"])]
    if "tag" in reason:
        parts.append(str(reason["tag"]))
    if "confidence" in reason:
        parts.append(f"{reason['confidence']:.2f}")
    if "detail" in reason:
        parts.append(f"({reason['detail']})")
    return " ".join(parts)


def route_counts(outcomes: Iterable[Outcome]) -> Counter[str]:
    """How many outcomes each route received (every route present, zero if none)."""
    counts: Counter[str] = Counter(dict.fromkeys(ROUTES, 0))
    counts.update(outcome.route for outcome in outcomes)
    return counts


def progress_line(counts: Mapping[str, int], expected_total: int, elapsed_s: float) -> str:
    """One line of live progress: routed so far, per route, the rate since the worker started."""
    routed = sum(counts.get(route, 0) for route in ROUTES)
    rate = routed / elapsed_s if elapsed_s > 0 else 0.0
    per_route = "  ".join(f"{route} {counts.get(route, 0)}" for route in ROUTES)
    return f"routed {routed}/{expected_total}  {per_route}  {rate:.1f}/s  {elapsed_s:.1f} s"


def top_tags(tags: Sequence[tuple[str, float]], count: int = TOP_TAGS) -> str:
    """The ``count`` most confident tags as ``name 0.97, ...`` (``-`` when the analyzer saw none)."""
    ranked = sorted(tags, key=lambda tag: (-tag[1], tag[0]))[:count]
    return ", ".join(f"{name} {confidence:.2f}" for name, confidence in ranked) or "-"


def summary_table(
    expected_ids: Sequence[str],
    outcomes: Mapping[str, Outcome],
    tags_by_id: Mapping[str, Sequence[tuple[str, float]]],
) -> str:
    """A fixed-width table, one row per expected id in order: id, decision, top tags, reasons.

    An id with no outcome shows ``(not routed)``; reasons are joined with ``; `` (``-`` when none fired).
    """
    header = ("id", "decision", "top tags (analyzer)", "reasons")
    rows = [header]
    for image_id in expected_ids:
        outcome = outcomes.get(image_id)
        route = outcome.route if outcome is not None else "(not routed)"
        reasons = "; ".join(outcome.reasons) if outcome is not None and outcome.reasons else "-"
        rows.append((image_id, route, top_tags(tags_by_id.get(image_id, ())), reasons))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in [*widths, len(header[-1])]))
    return "\n".join(lines)


class Console:
    """The demo's output: step lines, and progress updated in place on a terminal (periodic lines if not).

    On a terminal the progress line is cut to ``columns - 1`` characters: a wrapped line could not be
    rewritten in place.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        is_tty: bool,
        columns: int = 80,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream, self._is_tty, self._clock = stream, is_tty, clock
        self._width = max(columns - 1, 20)
        self._progress_shown_at: float | None = None
        self._progress_open = False

    def line(self, text: str = "") -> None:
        """Print one line (ending any progress line first)."""
        self.end_progress()
        self._stream.write(text + "\n")
        self._stream.flush()

    def progress(self, text: str, *, force: bool = False) -> None:
        """Show ``text`` as the current progress; rate-limited unless ``force``."""
        now = self._clock()
        interval = PROGRESS_INTERVAL_TTY_S if self._is_tty else PROGRESS_INTERVAL_PLAIN_S
        if not force and self._progress_shown_at is not None and now - self._progress_shown_at < interval:
            return
        self._progress_shown_at = now
        if self._is_tty:  # carriage return + erase line: the same line is rewritten
            self._stream.write("\r\x1b[2K" + text[: self._width])
            self._progress_open = True
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def end_progress(self) -> None:
        """Leave the progress line where it is and move to a new line."""
        if self._progress_open:
            self._stream.write("\n")
            self._progress_open = False
            self._stream.flush()


class RecordingTagSource:
    """A ``TagSource`` that remembers the tags it gave for each image (by sha256), for the summary table."""

    def __init__(self, inner: TagSource) -> None:
        self._inner = inner
        self.tags_by_sha256: dict[str, list[tuple[str, float]]] = {}

    async def tags_for(self, image: bytes) -> list[tuple[str, float]]:
        """The inner source's tags, recorded."""
        tags = await self._inner.tags_for(image)
        self.tags_by_sha256[hashlib.sha256(image).hexdigest()] = list(tags)
        return tags
