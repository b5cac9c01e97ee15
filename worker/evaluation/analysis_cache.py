"""The on-disk analysis cache of ``evaluate``: each image is analyzed once per analyzer, whatever the policy.

One sqlite3 file (``analyses.sqlite3`` in the cache directory, standard library only). An entry is keyed by
the SHA-256 of the analyzer's identity (kind, endpoint host, model version where known up front) and the
image's digest: the SHA-256 of a local file's bytes, or of an image URL. URLs are hashed, never stored, so
a SAS token in a query string is not written to disk. The value is the analysis (model version, tags, size)
or the error code of an image the analyzer refused, so a re-run costs no quota either way.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import orjson

from worker.domain import Analysis, Tag
from worker.errors import ConfigurationError

FILE_NAME = "analyses.sqlite3"
_SCHEMA = "CREATE TABLE IF NOT EXISTS analyses (key TEXT PRIMARY KEY, value BLOB NOT NULL)"


def url_digest(url: str) -> str:
    """The digest of an image URL (query string included: another SAS token may mean another image)."""
    return "url-sha256:" + hashlib.sha256(url.encode()).hexdigest()


def bytes_digest(data: bytes) -> str:
    """The digest of a local image's bytes: a renamed or moved file still hits the cache."""
    return "bytes-sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """What the analyzer answered for one image: an ``analysis``, or the ``error_code`` of a refusal."""

    analysis: Analysis | None = None
    error_code: str | None = None


class AnalysisCache:
    """Entries in ``directory/analyses.sqlite3``; the directory is created if needed. Use as a context
    manager or call ``close``. Raises ``ConfigurationError`` when the file cannot be opened or is corrupt."""

    def __init__(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(directory / FILE_NAME)
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(f"cannot open the analysis cache in {directory}: {exc}") from exc

    def get(self, analyzer: str, image: str) -> CachedAnswer | None:
        """The cached answer of ``analyzer`` for the image with digest ``image``, or ``None``."""
        row = self._db.execute(
            "SELECT value FROM analyses WHERE key = ?", (_key(analyzer, image),)
        ).fetchone()
        return None if row is None else _decoded(row[0])

    def put(self, analyzer: str, image: str, answer: CachedAnswer) -> None:
        """Store (or replace) the answer; committed at once, so an interrupted run keeps what it paid for."""
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO analyses (key, value) VALUES (?, ?)",
                (_key(analyzer, image), _encoded(answer)),
            )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM analyses").fetchone()[0])

    def close(self) -> None:
        """Close the database file."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _key(analyzer: str, image: str) -> str:
    return hashlib.sha256(f"{analyzer}\n{image}".encode()).hexdigest()


def _encoded(answer: CachedAnswer) -> bytes:
    if answer.analysis is None:
        return orjson.dumps({"error_code": answer.error_code or "unknown"})
    analysis = answer.analysis
    return orjson.dumps(
        {
            "model_version": analysis.model_version,
            "tags": [[tag.name, tag.confidence] for tag in analysis.tags],
            "width": analysis.width,
            "height": analysis.height,
        }
    )


def _decoded(value: bytes) -> CachedAnswer:
    document = orjson.loads(value)
    if "error_code" in document:
        return CachedAnswer(error_code=str(document["error_code"]))
    tags = tuple(Tag(str(name), float(confidence)) for name, confidence in document["tags"])
    return CachedAnswer(Analysis(str(document["model_version"]), tags, document["width"], document["height"]))
