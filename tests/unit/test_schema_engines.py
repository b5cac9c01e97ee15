"""The two schema engines agree: ``Contracts`` takes its verdict from jsonschema-rs and its explanations from
jsonschema, so a document one accepts and the other refuses would be a silent contract change.

The reference here is jsonschema (Python's ``re`` semantics), compiled as the worker compiles it. Regex
dialects differ at the edges (``\\s``, ``$``, Unicode classes), so every code point is tried in every
pattern-constrained string of a submission, and Hypothesis tries whole documents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from worker.contracts import Contracts, SchemaName, default_schemas_dir, is_rfc3339

EXAMPLES = default_schemas_dir() / "examples"
CONTRACTS = Contracts.load()
# Every code point a JSON document can carry, except the surrogates, which orjson refuses to decode.
CODE_POINTS = [chr(point) for point in range(0x3100) if not 0xD800 <= point <= 0xDFFF]
CODE_POINTS += [chr(point) for point in (0xFEFF, 0xFFFD, 0x1F600, 0xE0001, 0x10FFFF)]


def _reference(name: SchemaName) -> Draft202012Validator:
    checker = FormatChecker()
    checker.checks("date-time")(is_rfc3339)
    schema = orjson.loads((default_schemas_dir() / f"{name}.json").read_bytes())
    return Draft202012Validator(schema, format_checker=checker)


REFERENCES = {name: _reference(name) for name in SchemaName}


def _agree(name: SchemaName, document: Any) -> bool:
    return REFERENCES[name].is_valid(document) == (CONTRACTS.describe_violation(name, document) is None)


def _submission(id_: str = "img-1", url: str = "https://images.example.com/a.jpg", **fields: Any) -> Any:
    return {"id": id_, "image": {"url": url}, **fields}


# Each pattern-constrained string of a submission, with the code point placed inside an otherwise valid value.
PLACEMENTS: dict[str, Callable[[str], Any]] = {
    "id": lambda c: _submission(id_=f"a{c}b"),
    "url": lambda c: _submission(url=f"https://images.example.com/a{c}b.jpg"),
    "url_end": lambda c: _submission(url=f"https://images.example.com/a.jpg{c}"),
    "source": lambda c: _submission(source=f"a{c}b"),
    "metadata_key": lambda c: _submission(metadata={f"k{c}": "v"}),
    "purpose": lambda c: _submission(consent={"granted": True, "purposes": [f"p{c}"]}),
    "submitted_at": lambda c: _submission(submitted_at=f"2025-01-31T12:00:00Z{c}"),
}


@pytest.mark.parametrize("name", list(SchemaName))
def test_both_engines_accept_every_example(name: SchemaName) -> None:
    document = orjson.loads((EXAMPLES / f"{name}.json").read_bytes())
    assert REFERENCES[name].is_valid(document)
    assert CONTRACTS.describe_violation(name, document) is None


@pytest.mark.parametrize("field", list(PLACEMENTS))
def test_both_engines_agree_on_every_code_point(field: str) -> None:
    place = PLACEMENTS[field]
    submission = SchemaName.IMAGE_SUBMITTED
    disagreements = [f"U+{ord(c):04X}" for c in CODE_POINTS if not _agree(submission, place(c))]
    assert [] == disagreements


def test_urls_with_whitespace_or_control_characters_are_refused_by_both() -> None:
    """The URL pattern names the control characters itself: Python's ``\\s`` covers U+001C..U+001F, Rust's
    does not, and a URL cannot carry any control character anyway."""
    for c in ["\x00", "\x01", "\x1c", "\x1f", "\x7f", " ", "\t", "\u00a0", "\u2028", "\u3000"]:
        document = _submission(url=f"https://images.example.com/a{c}b.jpg")
        assert not REFERENCES[SchemaName.IMAGE_SUBMITTED].is_valid(document)
        assert CONTRACTS.describe_violation(SchemaName.IMAGE_SUBMITTED, document) is not None


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
NEAR_VALID_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=0, max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    id_=NEAR_VALID_TEXT | JSON_VALUES,
    url=NEAR_VALID_TEXT.map(lambda tail: f"https://{tail}") | JSON_VALUES,
    extra=st.dictionaries(
        st.sampled_from(["submitted_at", "source", "metadata", "consent", "unknown"]),
        NEAR_VALID_TEXT | JSON_VALUES,
        max_size=3,
    ),
)
def test_both_engines_agree_on_generated_submissions(id_: Any, url: Any, extra: dict[str, Any]) -> None:
    assert _agree(SchemaName.IMAGE_SUBMITTED, _submission(id_=id_, url=url, **extra))


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(list(SchemaName)), document=JSON_VALUES)
def test_both_engines_agree_on_arbitrary_json(name: SchemaName, document: Any) -> None:
    assert _agree(name, document)
