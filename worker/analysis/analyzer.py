"""The Analyzer seam: whatever looks at an image and says what it shows (Azure, the offline model, a fake).

``Analyzer`` reads the image behind a URL; ``ImageDataAnalyzer`` also reads one from its bytes.

Implementations translate their own failures into ``worker.errors.AnalyzerError`` subclasses at this seam.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from worker.domain import Analysis


class Analyzer(Protocol):
    """Something that looks at the image behind a URL and says what it shows."""

    async def analyze(self, image_url: str) -> Analysis:
        """Analyze one image; raise a ``worker.errors.AnalyzerError`` subclass on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class ImageDataAnalyzer(Analyzer, Protocol):
    """An analyzer that also reads an image from its bytes (the worker fetched it: ``worker.content``)."""

    async def analyze_data(self, image_data: bytes) -> Analysis:
        """Analyze one image given as its encoded bytes; raise a ``worker.errors.AnalyzerError`` subclass."""
        ...
