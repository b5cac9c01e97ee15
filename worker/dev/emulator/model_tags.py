"""The vision emulator's model mode: tags computed by the offline image model from the fetched bytes."""

from __future__ import annotations

import asyncio

from worker.analysis.offline import ImageModel


class ModelTagSource:
    """Implements the emulator's ``TagSource`` protocol with ``worker.analysis.offline.ImageModel``.

    Inference runs in a worker thread, at most ``max_concurrent_inferences`` at a time, so the emulator's
    event loop keeps answering (and keeps serving injected faults) while the CPU works. Undecodable or
    out-of-range images raise ``worker.errors.ImageAnalysisRejected`` with Azure's inner code
    (``InvalidImageFormat`` / ``InvalidImageSize``), which the emulator turns into its 400 answer.
    """

    def __init__(self, model: ImageModel | None = None, *, max_concurrent_inferences: int = 2) -> None:
        self._model = model if model is not None else ImageModel()
        self._inferences = asyncio.Semaphore(max_concurrent_inferences)

    @property
    def model_version(self) -> str:
        """What the emulator may report as ``modelVersion`` in model mode."""
        return self._model.version

    async def tags_for(self, image: bytes) -> list[tuple[str, float]]:
        """``(name, confidence)`` pairs for the encoded ``image``, most confident first."""
        async with self._inferences:
            return await asyncio.to_thread(self._model.tags, image)
