"""What each fetch refusal becomes in the pipeline: an unsafe reference is dead-lettered, every other
refusal is an image error named ``fetch:<reason>`` for the policy's ``on_image_error``."""

from __future__ import annotations

import pytest

from worker.content.fetch import FetchRefusal, FetchRefused
from worker.content.known import UNSAFE_REFERENCE, translate_refusal
from worker.contracts import DeadLetterReason, InvalidSubmission
from worker.errors import ImageAnalysisRejected

URL = "https://store.example.com/a.jpg?sig=SECRET"


@pytest.mark.parametrize("reason", sorted(UNSAFE_REFERENCE))
def test_an_unsafe_reference_is_the_unsafe_url_dead_letter(reason: FetchRefusal) -> None:
    """Not https, no usable host, a non-public address: the reference itself is unsafe, never reviewed."""
    translated = translate_refusal(FetchRefused(reason, "https://store.example.com/a.jpg?<redacted> refused"))
    assert (InvalidSubmission, DeadLetterReason.UNSAFE_URL, True) == (
        type(translated),
        getattr(translated, "reason", None),
        str(reason) in str(translated),
    )


@pytest.mark.parametrize("reason", sorted(set(FetchRefusal) - UNSAFE_REFERENCE))
def test_any_other_refusal_is_an_image_error_naming_its_reason(reason: FetchRefusal) -> None:
    """The image cannot be read or is no image the service takes: decided like a service image error."""
    translated = translate_refusal(FetchRefused(reason, "refused"))
    assert (ImageAnalysisRejected, f"fetch:{reason}") == (type(translated), getattr(translated, "code", None))


def test_a_refusal_message_carries_no_query_string() -> None:
    """Dead-letter messages are redacted again on the way out, so a SAS token never leaves the process."""
    translated = translate_refusal(
        FetchRefused(FetchRefusal.ADDRESS_NOT_ALLOWED, f"{URL} resolves to 10.0.0.1")
    )
    assert "SECRET" not in str(translated)
