"""The Analyzer seam: whatever looks at an image and says what it shows (Azure, the offline model, a fake).

Implementations translate their own failures into ``worker.errors.AnalyzerError`` subclasses at this seam.
"""

from __future__ import annotations

from typing import Protocol

from worker.domain import Analysis


class Analyzer(Protocol):
    """Something that looks at the image behind a URL and says what it shows."""

    async def analyze(self, image_url: str) -> Analysis:
        """Analyze one image; raise a ``worker.errors.AnalyzerError`` subclass on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
