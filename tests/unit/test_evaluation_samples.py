"""The labeled sample set shipped in worker/evaluation/samples: readable, decodable, every label present.

``build_sample_set`` wrote it (``python -m tests.unit.test_evaluation_samples worker/evaluation/samples``):
the demo's images (worker/dev/demo/samples.py: scikit-image's bundled CC0 / public-domain photos and the
drawn abstracts) scaled to at most 256 px, each with three variants (a centre crop, a small resize, a
recolor), as JPEG, with one JSONL label per image. The skin-tone abstracts stand in for harmful content
(a shipped set holds none); the night sky and the Hubble field are labeled needs_review (too dark to judge).
"""

from __future__ import annotations

import hashlib
import io
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from worker.domain import Decision
from worker.evaluation.labeled_set import read_labeled_set

if TYPE_CHECKING:
    from PIL import Image

SAMPLES = Path(__file__).resolve().parents[2] / "worker" / "evaluation" / "samples"
LABELS = SAMPLES / "labels.jsonl"
#: What each demo image is labeled: the demo's expectation, with the abstracts as harmful stand-ins.
TRUTH = {
    "astronaut.png": Decision.APPROVED,
    "coffee.png": Decision.APPROVED,
    "chelsea.png": Decision.APPROVED,
    "rocket.jpg": Decision.APPROVED,
    "camera.png": Decision.APPROVED,
    "coins.png": Decision.APPROVED,
    "hubble_deep_field.jpg": Decision.NEEDS_REVIEW,
    "colour-bars.png": Decision.APPROVED,
    "night-sky.png": Decision.NEEDS_REVIEW,
    "skin-tone-abstract-soft.png": Decision.NEEDS_REVIEW,
    "skin-tone-abstract-strong.png": Decision.REJECTED,
    "skin-tone-abstract-wide.png": Decision.REJECTED,
}


def build_sample_set(directory: Path) -> None:
    """Write the images and labels.jsonl into ``directory`` from the demo's samples (needs the demo extra)."""
    from PIL import Image, ImageOps  # noqa: PLC0415 - the model extra

    from worker.dev.demo.samples import write_sample_set  # noqa: PLC0415 - the demo extra

    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for sample in write_sample_set(Path(scratch)):
            source = Image.open(Path(scratch) / sample.filename).convert("RGB")
            base = ImageOps.contain(source, (256, 256))
            width, height = base.size
            crop = base.crop((width // 5, height // 5, width - width // 5, height - height // 5))
            variants = {
                "": (base, "scaled to at most 256 px"),
                "-crop": (crop, "centre crop of 60 %"),
                "-small": (ImageOps.contain(base, (96, 96)), "resized to at most 96 px"),
                "-recolor": _recolored(base, photo=sample.source.startswith("photo")),
            }
            stem = Path(sample.filename).stem
            for suffix, (image, how) in variants.items():
                name = f"{stem}{suffix}.jpg"
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=88)
                (directory / name).write_bytes(buffer.getvalue())
                note = f"{sample.source}; {how}"
                rows.append({"image": name, "expected": str(TRUTH[sample.filename]), "note": note})
    (directory / "labels.jsonl").write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))


def _recolored(image: Image.Image, *, photo: bool) -> tuple[Image.Image, str]:
    """Photos toned sepia (also the grayscale ones, so no variant repeats its original); drawings with red
    and blue swapped (their colour is what the model reacts to)."""
    from PIL import Image, ImageOps  # noqa: PLC0415 - the model extra

    if photo:
        toned = ImageOps.colorize(ImageOps.grayscale(image), black=(30, 16, 0), white=(255, 236, 196))
        return toned, "recolored sepia"
    red, green, blue = image.split()
    return Image.merge("RGB", (blue, green, red)), "recolored with red and blue swapped"


def test_every_shipped_row_reads_and_names_a_file_that_exists() -> None:
    """The set parses with the `evaluate` reader; every image it names is in the folder, none is left over."""
    images = read_labeled_set(LABELS)
    named = {Path(image.reference).name for image in images}
    on_disk = {path.name for path in SAMPLES.glob("*.jpg")}
    assert (48, set()) == (len(images), named ^ on_disk)


def test_the_set_has_every_label_and_four_variants_of_each_demo_image() -> None:
    """12 demo images x 4 variants; 28 approved, 12 needs_review, 8 rejected (the harmful stand-ins)."""
    counts = Counter(image.expected for image in read_labeled_set(LABELS))
    expected = {Decision.APPROVED: 28, Decision.NEEDS_REVIEW: 12, Decision.REJECTED: 8}
    assert expected == dict(counts)


def test_every_shipped_image_is_within_the_analyzers_limits() -> None:
    """Each file decodes, and each side is within Image Analysis' 50..16000 px."""
    from PIL import Image  # noqa: PLC0415 - the model extra

    sizes = []
    for path in sorted(SAMPLES.glob("*.jpg")):
        with Image.open(path) as image:
            image.load()
            sizes.append(image.size)
    assert [] == [size for size in sizes if not all(50 <= side <= 16000 for side in size)]


def test_no_two_shipped_images_are_the_same_file() -> None:
    """Every variant differs from its original byte for byte, so every row is an image of its own."""
    digests = Counter(hashlib.sha256(path.read_bytes()).hexdigest() for path in SAMPLES.glob("*.jpg"))
    assert [] == [digest for digest, count in digests.items() if count > 1]


def test_every_row_credits_its_source() -> None:
    """Each row's note names where the picture comes from (photo credit or drawing) and how it was varied."""
    rows = [orjson.loads(line) for line in LABELS.read_bytes().splitlines()]
    assert [] == [
        row["image"] for row in rows if not str(row.get("note", "")).startswith(("photo:", "generated:"))
    ]


if __name__ == "__main__":
    build_sample_set(Path(sys.argv[1]))
