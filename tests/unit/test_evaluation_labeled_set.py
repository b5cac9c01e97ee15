"""Reading labeled sets: CSV and JSONL rows, label aliases, per-tag truth, and errors naming file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.domain import Decision
from worker.evaluation.labeled_set import LabeledImage, LabeledSetError, read_labeled_set


def test_a_csv_set_reads_urls_local_files_aliases_and_tag_truth(tmp_path: Path) -> None:
    """`harmful` is rejected, local paths resolve against the set's folder, `weapon=1;knife=0` is truth."""
    labels = tmp_path / "set.csv"
    labels.write_text(
        "image,expected,tags\n"
        "https://img.example/a.jpg?sig=x,harmful,weapon=1;Knife=0\n"
        "\n"
        "photos/b.png,needs-review,\n"
    )
    expected = [
        LabeledImage(
            "https://img.example/a.jpg?sig=x", Decision.REJECTED, {"weapon": True, "knife": False}, 2
        ),
        LabeledImage(str(tmp_path / "photos" / "b.png"), Decision.NEEDS_REVIEW, {}, 4),
    ]
    assert expected == read_labeled_set(labels)


def test_a_jsonl_set_reads_one_object_per_line_and_ignores_extra_keys(tmp_path: Path) -> None:
    """Blank lines are skipped; a `note` key is allowed; tag truth is a JSON object of booleans."""
    labels = tmp_path / "set.jsonl"
    labels.write_text(
        '{"image": "a.jpg", "expected": "harmless", "note": "mine"}\n\n'
        '{"image": "b.jpg", "expected": "rejected", "tags": {"Blood": true}}\n'
    )
    actual = [
        (Path(i.reference).name, i.expected, dict(i.tag_truth), i.line) for i in read_labeled_set(labels)
    ]
    assert [("a.jpg", Decision.APPROVED, {}, 1), ("b.jpg", Decision.REJECTED, {"blood": True}, 3)] == actual


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.csv", "image,expected\na.jpg,maybe\n", "bad.csv:2: expected 'maybe' is not one of"),
        ("bad.csv", "picture,label\na.jpg,approved\n", "bad.csv:1: the header must name the columns"),
        ("bad.csv", "image,expected,tags\na.jpg,approved,weapon\n", "bad.csv:2: tag truth 'weapon' is not"),
        ("bad.jsonl", '{"image": "a.jpg", "expected": "approved"}\n[1]\n', "bad.jsonl:2: not a JSON object"),
        ("bad.jsonl", '{"expected": "approved"}\n', "bad.jsonl:1: image is missing"),
        ("bad.jsonl", '{"image": "ftp://x/a.jpg", "expected": "approved"}\n', "bad.jsonl:1: image must be"),
        ("bad.jsonl", '{"image": "a.jpg", "expected": "approved", "tags": {"x": 1}}\n', "bad.jsonl:1: tags"),
        ("empty.jsonl", "\n", "empty.jsonl:0: the labeled set holds no image"),
    ],
)
def test_a_bad_row_is_named_by_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    """Each kind of bad input raises LabeledSetError (a configuration error) starting with file:line."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(LabeledSetError) as raised:
        read_labeled_set(path)
    assert str(raised.value).startswith(f"{tmp_path}/{message}")
