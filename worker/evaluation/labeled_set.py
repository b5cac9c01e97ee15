"""Labeled sets: image references with the decision a person expects, read from CSV or JSONL.

A row names an image (an https URL, or a local file path relative to the set file, for offline sets), its
expected decision (``approved``, ``needs_review``, ``rejected``; or ``harmless`` = approved, ``harmful`` =
rejected) and optionally per-tag truth (does the image show what this tag names). CSV columns: ``image``,
``expected``, optional ``tags`` as ``weapon=1;knife=0``. JSONL keys: ``image``, ``expected``, optional
``tags`` as ``{"weapon": true}``. Every bad row raises ``LabeledSetError`` naming ``file:line``.

``Observation`` pairs a labeled image with what the analyzer made of it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

import orjson

from worker.domain import Analysis, Decision
from worker.errors import ConfigurationError

_EXPECTED = {
    "approved": Decision.APPROVED,
    "harmless": Decision.APPROVED,
    "needs_review": Decision.NEEDS_REVIEW,
    "needs-review": Decision.NEEDS_REVIEW,
    "rejected": Decision.REJECTED,
    "harmful": Decision.REJECTED,
}
_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no"})


class LabeledSetError(ConfigurationError):
    """A labeled set that cannot be read; the message starts with ``file:line:``."""


@dataclass(frozen=True, slots=True)
class LabeledImage:
    """One labeled image. ``reference`` is an https URL or an absolute local path; ``line`` is 1-based.

    ``tag_truth`` maps case-folded tag names to whether the image shows that content.
    """

    reference: str
    expected: Decision
    tag_truth: Mapping[str, bool] = field(default_factory=dict)
    line: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag_truth", MappingProxyType(dict(self.tag_truth)))

    @property
    def is_url(self) -> bool:
        """True for an http(s) URL, False for a local file."""
        return urlsplit(self.reference).scheme in ("http", "https")


@dataclass(frozen=True, slots=True)
class Observation:
    """A labeled image and the analyzer's answer: an ``analysis``, or the ``error_code`` of an image the
    analyzer refused (e.g. ``InvalidImageFormat``). ``cached``: served from the analysis cache."""

    image: LabeledImage
    analysis: Analysis | None = None
    error_code: str | None = None
    cached: bool = False


def read_labeled_set(path: Path) -> list[LabeledImage]:
    """Every row of the CSV (``.csv``) or JSONL (any other suffix) file ``path``; raises ``LabeledSetError``.

    Local references are resolved against the file's directory. An empty set is an error.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabeledSetError(f"{path}:0: cannot read the labeled set: {exc}") from exc
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _jsonl_rows(path, text)
    images = [_image(path, line, row) for line, row in rows]
    if not images:
        raise LabeledSetError(f"{path}:0: the labeled set holds no image")
    return images


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"image", "expected"} <= set(reader.fieldnames):
        raise LabeledSetError(f"{path}:1: the header must name the columns image and expected")
    for row in reader:
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue
        tags = _csv_tags(path, reader.line_num, row.get("tags") or "")
        yield reader.line_num, {"image": row["image"], "expected": row["expected"], "tags": tags}


def _csv_tags(path: Path, line: int, cell: str) -> dict[str, object]:
    tags: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in cell.split(";"))):
        name, sep, value = item.partition("=")
        if not sep or value.strip().lower() not in _TRUE | _FALSE:
            raise LabeledSetError(f"{path}:{line}: tag truth {item!r} is not name=1 or name=0")
        tags[name.strip()] = value.strip().lower() in _TRUE
    return tags


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise LabeledSetError(f"{path}:{line}: not a JSON object: {exc}") from exc
        if not isinstance(row, dict):
            raise LabeledSetError(f"{path}:{line}: not a JSON object")
        yield line, row


def _image(path: Path, line: int, row: Mapping[str, object]) -> LabeledImage:
    where = f"{path}:{line}"
    reference = row.get("image")
    if not isinstance(reference, str) or not reference.strip():
        raise LabeledSetError(f"{where}: image is missing")
    expected = row.get("expected")
    decision = _EXPECTED.get(expected.strip().lower()) if isinstance(expected, str) else None
    if decision is None:
        choices = ", ".join(sorted(_EXPECTED))
        raise LabeledSetError(f"{where}: expected {expected!r} is not one of {choices}")
    tags = row.get("tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(value, bool) for value in tags.values()):
        raise LabeledSetError(f"{where}: tags must map tag names to true or false")
    truth = {str(name).casefold(): value for name, value in tags.items()}
    return LabeledImage(_resolved(path, where, reference.strip()), decision, truth, line)


def _resolved(path: Path, where: str, reference: str) -> str:
    scheme = urlsplit(reference).scheme.lower()
    if scheme in {"https", "http"}:
        return reference
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise LabeledSetError(f"{where}: image must be an https URL or a local file, not {scheme}:")
    return str((path.parent / reference).resolve())
