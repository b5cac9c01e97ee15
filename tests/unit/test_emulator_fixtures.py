"""Specification of the emulator's fixtures: the document format, per-image scripts and the default answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.dev.emulator.fixtures import (
    DEFAULT_VOCABULARY,
    CannedReply,
    ErrorReply,
    FixtureError,
    HashTagSource,
    ScriptBook,
    Step,
    TagsReply,
    bytes_key,
    default_tags,
    load_fixtures,
    parse_fixtures,
    strip_query,
)

CAT = "https://img.example/cat.jpg"
SHA = "sha256:" + "ab" * 32


def test_every_step_form_parses_to_its_reply() -> None:
    """Canned answers, tag shortcuts, named errors and hangs each become one typed step."""
    document = {
        CAT: [
            {"status": 503, "headers": {"Retry-After": "1"}, "delay_ms": 5},
            {"status": 200, "body": {"modelVersion": "x"}},
            {"tags": [["cat", 0.98], ["animal", 1]], "text": "HELLO", "width": 640},
            {"error": "InvalidImageFormat"},
            {"hang": True},
        ],
        SHA: {"tags": []},
    }
    expected = {
        CAT: (
            Step(CannedReply(503), (("Retry-After", "1"),), delay_ms=5),
            Step(CannedReply(200, {"modelVersion": "x"})),
            Step(TagsReply((("cat", 0.98), ("animal", 1.0)), "HELLO", 640, None)),
            Step(ErrorReply("InvalidImageFormat")),
            Step(None, hang=True),
        ),
        SHA: (Step(TagsReply(())),),
    }
    assert expected == parse_fixtures(document)


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ([], "JSON object"),
        ({"ftp://x/a.jpg": {"tags": []}}, "a key is"),
        ({"sha256:abc": {"tags": []}}, "a key is"),
        ({CAT: []}, "at least one step"),
        ({CAT: {"status": 503, "tags": []}}, "exactly one of"),
        ({CAT: {"delay_ms": 5}}, "exactly one of"),
        ({CAT: {"status": 99}}, "'status'"),
        ({CAT: {"status": 302}}, "needs a 'body'"),
        ({CAT: {"error": "Teapot"}}, "unknown error 'Teapot'"),
        ({CAT: {"tags": [["cat", 1.5]]}}, "confidence in [0, 1]"),
        ({CAT: {"tags": [["cat", True]]}}, "confidence in [0, 1]"),
        ({CAT: {"tags": [["cat"]]}}, "[name, confidence]"),
        ({CAT: {"tags": [], "width": "wide"}}, "'width' must be a int"),
        ({CAT: {"status": 200, "delay_ms": -1}}, "'delay_ms'"),
        ({CAT: {"status": 200, "headers": {"X": 1}}}, "'headers'"),
        ({CAT: {"hang": "yes"}}, "'hang'"),
        ({CAT: {"tag": []}}, "unknown keys ['tag']"),
    ],
)
def test_malformed_documents_are_refused_with_the_reason(document: object, complaint: str) -> None:
    """A fixtures mistake fails loudly at load time and the message says what is wrong."""
    with pytest.raises(FixtureError) as caught:
        parse_fixtures(document)
    assert complaint in str(caught.value)


def test_error_messages_do_not_echo_a_keys_query_string() -> None:
    """Keys may hold SAS tokens: a complaint about one shows the key with its query redacted."""
    with pytest.raises(FixtureError) as caught:
        parse_fixtures({CAT + "?sig=SECRET": []})
    assert "SECRET" not in str(caught.value)
    assert CAT + "?<redacted>" in str(caught.value)


def test_load_fixtures_reads_a_json_file(tmp_path: Path) -> None:
    """The file form is the same document as the admin endpoint takes."""
    path = tmp_path / "fixtures.json"
    path.write_text(json.dumps({CAT: {"error": "NotAccessible"}}), encoding="utf-8")
    assert {CAT: (Step(ErrorReply("NotAccessible")),)} == load_fixtures(path)


def test_load_fixtures_refuses_invalid_json(tmp_path: Path) -> None:
    """A file that is not JSON raises FixtureError, not a bare decode error."""
    path = tmp_path / "fixtures.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(FixtureError):
        load_fixtures(path)


def steps(*statuses: int) -> tuple[Step, ...]:
    return tuple(Step(CannedReply(status)) for status in statuses)


def statuses(book: ScriptBook, key: str, calls: int) -> list[int | None]:
    answers = [book.next_step(key) for _ in range(calls)]
    return [s.reply.status if s and isinstance(s.reply, CannedReply) else None for s in answers]


def test_a_script_advances_per_call_and_its_last_step_repeats() -> None:
    """503, 429, then 200 forever."""
    book = ScriptBook({CAT: steps(503, 429, 200)})
    assert statuses(book, CAT, 5) == [503, 429, 200, 200, 200]


def test_each_image_has_its_own_progress() -> None:
    """Calls for one image do not advance another image's script."""
    dog = "https://img.example/dog.jpg"
    book = ScriptBook({CAT: steps(503, 200), dog: steps(500, 200)})
    book.next_step(CAT)
    assert statuses(book, dog, 2) == [500, 200]
    assert statuses(book, CAT, 1) == [200]


def test_a_key_without_query_matches_every_sas_variant_and_shares_progress() -> None:
    """Signed URLs differ per request; a key written without a query covers them all as one image."""
    book = ScriptBook({CAT: steps(503, 200)})
    assert statuses(book, CAT + "?sig=one", 1) == [503]
    assert statuses(book, CAT + "?sig=two#frag", 1) == [200]


def test_an_exact_key_wins_over_the_query_free_key() -> None:
    """A key written with its query matches only that URL, before the query-free key is tried."""
    book = ScriptBook({CAT: steps(200), CAT + "?v=2": steps(404)})
    assert [*statuses(book, CAT + "?v=2", 1), *statuses(book, CAT + "?v=3", 1)] == [404, 200]


def test_unscripted_images_get_no_step_unless_a_wildcard_script_exists() -> None:
    """Without '*' the default answer applies; with '*' each image walks the wildcard script separately."""
    assert ScriptBook({CAT: steps(200)}).next_step(SHA) is None
    book = ScriptBook({"*": steps(503, 200)})
    assert statuses(book, "https://img.example/a.jpg?sig=1", 2) == [503, 200]
    assert statuses(book, "https://img.example/b.jpg", 2) == [503, 200]
    assert statuses(book, SHA, 1) == [503]


def test_merge_restarts_only_the_merged_keys_and_replace_restarts_all() -> None:
    """Merging keeps other images' progress; replacing forgets every script and all progress."""
    dog = "https://img.example/dog.jpg"
    book = ScriptBook({CAT: steps(503, 200), dog: steps(503, 200)})
    book.next_step(CAT)
    book.next_step(dog)
    book.merge({dog: steps(429, 200)})
    assert [*statuses(book, CAT, 1), *statuses(book, dog, 1)] == [200, 429]
    book.replace({dog: steps(500, 200)})
    assert [*statuses(book, CAT, 1), *statuses(book, dog, 1)] == [None, 500]


def test_strip_query_and_bytes_key() -> None:
    """Image identities: a URL without query and fragment; bytes as sha256 hex."""
    assert strip_query(CAT + "?sv=2024&sig=abc#x") == CAT
    assert bytes_key(b"") == "sha256:" + "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@given(st.binary(max_size=64))
def test_default_tags_are_a_stable_benign_ranking(seed: bytes) -> None:
    """2-5 distinct vocabulary tags, confidences in [0.5, 0.99] highest first, identical on every call."""
    tags = default_tags(seed)
    names = [name for name, _ in tags]
    confidences = [confidence for _, confidence in tags]
    assert 2 <= len(tags) <= 5
    assert len(set(names)) == len(names)
    assert set(names) <= set(DEFAULT_VOCABULARY)
    assert all(0.5 <= c <= 0.99 for c in confidences)
    assert sorted(confidences, reverse=True) == confidences
    assert tags == default_tags(seed)


def test_default_tags_differ_between_images() -> None:
    """The default answer depends on the image, so a run's decisions are not all the same."""
    answers = {default_tags(f"https://img.example/{n}.jpg".encode()) for n in range(20)}
    assert len(answers) > 10


async def test_hash_tag_source_answers_default_tags_of_the_bytes() -> None:
    """The fetch-free TagSource is default_tags over the image bytes."""
    assert list(default_tags(b"image")) == await HashTagSource().tags_for(b"image")
