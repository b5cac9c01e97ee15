"""Specification of the message contracts: schemas, decoding submissions, encoding results, dead letters."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.contracts import (
    Consent,
    Contracts,
    DeadLetterReason,
    Guard,
    InvalidSubmission,
    SchemaName,
    Submission,
    default_schemas_dir,
)
from worker.domain import Decision, Reason, Tag, Verdict
from worker.errors import ConfigurationError
from worker.records import MAX_RESULT_TAGS, SourceCoordinates, encode_dead_letter, encode_result
from worker.urlguard import host_allowed

EXAMPLES = default_schemas_dir() / "examples"
SECRET = "c2VjcmV0LXNpZ25hdHVyZQ"
URL = f"https://contoso.blob.core.windows.net/uploads/cat.jpg?sv=2022-11-02&sig={SECRET}"
SOURCE = SourceCoordinates("images.submitted", 3, 18442, timestamp_ms=1_738_324_800_000)
NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def contracts() -> Contracts:
    return Contracts.load()


def example(name: SchemaName) -> Any:
    return orjson.loads((EXAMPLES / f"{name}.json").read_bytes())


def submission_bytes(**fields: object) -> bytes:
    document: dict[str, object] = {"id": "img-1", "image": {"url": URL}}
    document.update(fields)
    return orjson.dumps(document)


def reason_of(contracts: Contracts, raw: bytes | None, guard: Guard | None = None) -> InvalidSubmission:
    with pytest.raises(InvalidSubmission) as caught:
        contracts.decode_submission(raw, guard)
    return caught.value


# --- schemas and examples -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SchemaName))
def test_every_schema_has_a_valid_example(contracts: Contracts, name: SchemaName) -> None:
    """The documented example of each contract satisfies its schema (docs and tests share these files)."""
    assert contracts.describe_violation(name, example(name)) is None


@pytest.mark.parametrize("name", list(SchemaName))
def test_every_schema_names_itself_in_its_id(name: SchemaName) -> None:
    """``$id`` and ``title`` carry the contract's name and version, so a schema file cannot be swapped."""
    schema = orjson.loads((default_schemas_dir() / f"{name}.json").read_bytes())
    assert schema["$id"].endswith(f":{name}")
    assert name == schema["title"]


def json_blocks(markdown: Path) -> list[Any]:
    """The JSON code blocks of a Markdown page, parsed, in order."""
    return [orjson.loads(block.split("```", 1)[0]) for block in markdown.read_text().split("```json\n")[1:]]


def test_the_contracts_page_shows_exactly_the_example_files() -> None:
    """docs/contracts.md and the tests share one set of examples, so the page cannot drift from them."""
    expected = [example(name) for name in SchemaName]
    assert expected == json_blocks(default_schemas_dir().parent / "docs" / "contracts.md")


def test_dead_letter_reasons_are_exactly_the_schema_error_classes() -> None:
    """The enum and ``dead-letter.v1`` list the same closed set of error classes."""
    schema = orjson.loads((default_schemas_dir() / "dead-letter.v1.json").read_bytes())
    expected = set(schema["properties"]["error"]["properties"]["class"]["enum"])
    assert expected == {str(reason) for reason in DeadLetterReason}


def test_loading_from_a_directory_without_schemas_is_a_configuration_error(tmp_path: Path) -> None:
    """A missing schema stops start-up with a message naming the file."""
    with pytest.raises(ConfigurationError, match=r"image-submitted\.v1"):
        Contracts.load(tmp_path)


def test_schemas_are_found_from_any_working_directory(tmp_path: Path) -> None:
    """The default schema directory is resolved from the package, not from the current directory."""
    script = "from worker.contracts import Contracts; Contracts.load(); print('ok')"
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60
    )
    expected = "ok\n"
    assert expected == completed.stdout, completed.stderr


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2025-01-31T12:00:00Z", True),
        ("2025-01-31t12:00:00.123456+02:00", True),
        ("2025-01-31T12:00:00", False),
        ("2025-01-31 12:00:00Z", False),
        ("2025-02-30T12:00:00Z", False),
        ("yesterday", False),
    ],
)
def test_submitted_at_must_be_rfc3339_with_an_offset(contracts: Contracts, value: str, valid: bool) -> None:
    """The date-time format is enforced (jsonschema alone would silently skip it)."""
    document = orjson.loads(submission_bytes(submitted_at=value))
    assert valid == (contracts.describe_violation(SchemaName.IMAGE_SUBMITTED, document) is None)


# --- decoding submissions -----------------------------------------------------------------------------------


def test_the_documented_example_decodes_to_a_submission(contracts: Contracts) -> None:
    """Every field of the example reaches the value object, typed."""
    raw = (EXAMPLES / "image-submitted.v1.json").read_bytes()
    submission = contracts.decode_submission(raw, Guard(consent_required=True))
    expected = Submission(
        id="img-2025-01-31-000042",
        image_url=example(SchemaName.IMAGE_SUBMITTED)["image"]["url"],
        submitted_at=datetime(2025, 1, 31, 12, 0, tzinfo=UTC),
        source="upload-api",
        metadata={"tenant": "contoso", "channel": "profile-photo"},
        consent=Consent(
            granted=True,
            purposes=frozenset({"content_moderation"}),
            granted_at=datetime(2025, 1, 30, 8, 15, tzinfo=UTC),
            reference="consent-7f3a9c",
        ),
    )
    assert expected == submission


def test_submission_repr_redacts_the_url(contracts: Contracts) -> None:
    """Logging a submission by accident never prints its SAS token."""
    submission = contracts.decode_submission(submission_bytes())
    assert SECRET not in repr(submission)
    assert "?<redacted>" in repr(submission)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, DeadLetterReason.EMPTY_VALUE),
        (b"", DeadLetterReason.EMPTY_VALUE),
        (b"\xff\xfe{}", DeadLetterReason.NOT_UTF8),
        (b'{"id": "a",', DeadLetterReason.NOT_JSON),
        (b"[1, 2]", DeadLetterReason.SCHEMA_INVALID),
        (b'{"id": "a"}', DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(id=""), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(id="x" * 129), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(id="a\nb"), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(id="ab\n"), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(image={"url": "https://example.com/a.jpg\n"}), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(source="upload-api\n"), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(extra=True), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(image={"url": "http://example.com/a.jpg"}), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(image={"url": "https://e.com/" + "a" * 2048}), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(metadata={f"k{i}": "v" for i in range(17)}), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(metadata={"k": "v" * 257}), DeadLetterReason.SCHEMA_INVALID),
        (submission_bytes(consent={"granted": True}), DeadLetterReason.SCHEMA_INVALID),
    ],
)
def test_malformed_values_are_refused_with_a_typed_reason(
    contracts: Contracts, raw: bytes | None, expected: DeadLetterReason
) -> None:
    """Each kind of malformed input maps to exactly one dead-letter error class."""
    assert expected == reason_of(contracts, raw).reason


def test_oversized_values_are_refused_before_parsing(contracts: Contracts) -> None:
    """The size limit is configurable and checked on the raw bytes."""
    raw = submission_bytes()
    refused = reason_of(contracts, raw, Guard(max_value_bytes=len(raw) - 1))
    expected = DeadLetterReason.OVERSIZED
    assert expected == refused.reason
    accepted = contracts.decode_submission(raw, Guard(max_value_bytes=len(raw)))
    assert accepted.id == "img-1"


def test_schema_errors_name_the_failing_path(contracts: Contracts) -> None:
    """The operator reading a dead letter sees which field failed and which rule."""
    refused = reason_of(contracts, submission_bytes(image={"url": f"http://example.com/a.jpg?sig={SECRET}"}))
    assert refused.message.startswith("$.image.url: fails pattern")


@pytest.mark.parametrize(
    ("raw", "guard"),
    [
        (submission_bytes(image={"url": f"http://example.com/a.jpg?sig={SECRET}"}), None),
        (submission_bytes(image=f"https://example.com/a.jpg?sig={SECRET}"), None),
        (submission_bytes(image={"url": f"https://10.0.0.7/a.jpg?sig={SECRET}"}), None),
        (submission_bytes(image={"url": f"https://u:{SECRET}@example.com/a.jpg"}), None),
        (submission_bytes(), Guard(url_hosts=("images.example.com",))),
        (submission_bytes(**{f"https://e.com/?sig={SECRET}": 1}), None),
    ],
)
def test_refusal_messages_never_echo_a_url_secret(
    contracts: Contracts, raw: bytes, guard: Guard | None
) -> None:
    """Whatever fails, the message (which goes to logs and the dead-letter topic) holds no token."""
    refused = reason_of(contracts, raw, guard)
    assert SECRET not in refused.message
    assert SECRET not in str(refused)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/a.jpg",
        "https://10.1.2.3/a.jpg",
        "https://192.168.1.10/a.jpg",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/a.jpg",
        "https://0.0.0.0/a.jpg",
        "https://[::1]/a.jpg",
        "https://[fe80::1]/a.jpg",
        "https://[fd00::1]/a.jpg",
        "https://[::ffff:127.0.0.1]/a.jpg",
        "https://224.0.0.1/a.jpg",
        "https://localhost/a.jpg",
        "https://images.localhost/a.jpg",
        "https://2130706433/a.jpg",
        "https://0x7f.1/a.jpg",
        "https://user:pw@example.com/a.jpg",
        "https://evil.example\\@good.example/a.jpg",
        "https://example.com:99999/a.jpg",
    ],
)
def test_urls_to_private_or_ambiguous_targets_are_unsafe(contracts: Contracts, url: str) -> None:
    """Loopback, private, link-local, numeric-trick and credential-bearing URLs never reach the analyzer."""
    expected = DeadLetterReason.UNSAFE_URL
    assert expected == reason_of(contracts, submission_bytes(image={"url": url})).reason


@pytest.mark.parametrize(
    "url", ["https://8.8.8.8/a.jpg", "https://[2606:4700::1111]/a.jpg", "https://e.com./a"]
)
def test_public_addresses_and_names_are_accepted(contracts: Contracts, url: str) -> None:
    """A public literal IP or DNS name passes the guard when no host allowlist is configured."""
    assert url == contracts.decode_submission(submission_bytes(image={"url": url})).image_url


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("contoso.blob.core.windows.net", True),
        ("CONTOSO.Blob.Core.Windows.Net.", True),
        ("blob.core.windows.net", False),
        ("evilblob.core.windows.net", False),
        ("images.example.com", True),
        ("cdn.images.example.com", False),
        ("example.com", False),
    ],
)
def test_host_allowlist_matches_exact_names_and_wildcard_subdomains(host: str, allowed: bool) -> None:
    """``*.suffix`` covers subdomains only; other entries match exactly; case and a final dot are ignored."""
    assert allowed == host_allowed(host, ("*.blob.core.windows.net", "images.example.com"))


def test_host_outside_the_allowlist_is_refused(contracts: Contracts) -> None:
    """With an allowlist configured, any other host is dead-lettered as host_not_allowed."""
    refused = reason_of(contracts, submission_bytes(), Guard(url_hosts=("images.example.com",)))
    expected = DeadLetterReason.HOST_NOT_ALLOWED
    assert expected == refused.reason


CONSENT_GUARD = Guard(consent_required=True, consent_purposes=frozenset({"content_moderation"}))


@pytest.mark.parametrize(
    ("consent", "guard"),
    [
        (None, CONSENT_GUARD),
        ({"granted": True, "purposes": ["marketing"]}, CONSENT_GUARD),
        ({"granted": False, "purposes": ["content_moderation"]}, CONSENT_GUARD),
        ({"granted": False, "purposes": ["content_moderation"]}, Guard()),
    ],
)
def test_missing_refused_or_off_purpose_consent_is_refused(
    contracts: Contracts, consent: dict[str, object] | None, guard: Guard
) -> None:
    """Consent must cover every purpose the policy names; a refusal is honoured even when not required."""
    raw = submission_bytes() if consent is None else submission_bytes(consent=consent)
    expected = DeadLetterReason.CONSENT_MISSING
    assert expected == reason_of(contracts, raw, guard).reason


def test_consent_covering_the_purposes_is_accepted(contracts: Contracts) -> None:
    """Extra purposes do no harm; the required one must be there."""
    raw = submission_bytes(consent={"granted": True, "purposes": ["content_moderation", "analytics"]})
    expected = frozenset({"content_moderation", "analytics"})
    consent = contracts.decode_submission(raw, CONSENT_GUARD).consent
    assert consent is not None
    assert expected == consent.purposes


OUTCOMES = {"accepted", *(str(reason) for reason in DeadLetterReason)}


def outcome(raw: bytes) -> str:
    """``accepted`` or the dead-letter reason; any other exception propagates and fails the test."""
    try:
        CONTRACTS.decode_submission(raw)
    except InvalidSubmission as refused:
        return str(refused.reason)
    return "accepted"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_either_decode_or_raise_invalid_submission(raw: bytes) -> None:
    """No input crashes the decoder with anything but the typed refusal."""
    assert outcome(raw) in OUTCOMES


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.fixed_dictionaries(
        {"id": st.text(max_size=130), "image": st.fixed_dictionaries({"url": st.text(max_size=40)})},
        optional={"metadata": JSON_VALUES, "consent": JSON_VALUES, "submitted_at": JSON_VALUES},
    )
)
def test_arbitrary_documents_either_decode_or_raise_invalid_submission(document: dict[str, Any]) -> None:
    """Schema-shaped but wrong documents are refused with a reason, never an unexpected exception."""
    assert outcome(orjson.dumps(document)) in OUTCOMES


# --- encoding results and dead letters ----------------------------------------------------------------------


def result_document(**overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "submission": Submission(id="img-1", image_url=URL),
        "verdict": Verdict(
            Decision.REJECTED,
            (Reason("blocklist_reject", "gun", 0.93), Reason("image_error", detail=f"see {URL}")),
        ),
        "policy_version": "sha256:0123456789abcdef",
        "model_version": "2023-10-01",
        "analyzed_at": NOW,
        "source": SOURCE,
        "worker_version": "0.1.0",
        "tags": (Tag("gun", 0.93),),
    }
    arguments.update(overrides)
    return orjson.loads(encode_result(**arguments))


def test_encoded_results_satisfy_their_schema(contracts: Contracts) -> None:
    """What the worker produces is what moderation-result.v1 promises."""
    assert contracts.describe_violation(SchemaName.MODERATION_RESULT, result_document()) is None


def test_results_carry_the_url_redacted_and_no_secret() -> None:
    """Downstream sees where the image was, never its token; reason details are scrubbed too."""
    document = result_document()
    expected = "https://contoso.blob.core.windows.net/uploads/cat.jpg?<redacted>"
    assert expected == document["image"]["url"]
    assert SECRET not in orjson.dumps(document).decode()


def test_results_record_decision_versions_and_coordinates() -> None:
    """A result can be explained and replayed: decision, policy/model versions, source record, UTC time."""
    document = result_document(analyzed_at=datetime(2025, 1, 31, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    expected = {
        "decision": "rejected",
        "policy_version": "sha256:0123456789abcdef",
        "model_version": "2023-10-01",
        "analyzed_at": "2025-01-31T12:00:00Z",
        "source": {"topic": "images.submitted", "partition": 3, "offset": 18442},
        "reasons": [{"rule": "blocklist_reject", "tag": "gun", "confidence": 0.93}],
    }
    document["reasons"] = document["reasons"][:1]
    assert expected == {key: document[key] for key in expected}


def test_results_keep_at_most_the_strongest_tags() -> None:
    """Only the top tags travel, highest confidence first; no tags means no ``tags`` field."""
    tags = tuple(Tag(f"t{i:02}", i / 100) for i in range(50))
    document = result_document(tags=tags)
    expected = [f"t{i:02}" for i in range(49, 49 - MAX_RESULT_TAGS, -1)]
    assert expected == [tag["name"] for tag in document["tags"]]
    assert "tags" not in result_document(tags=())


def test_result_for_an_image_error_has_no_model_version(contracts: Contracts) -> None:
    """When the analyzer refused the image there is no model to name; the schema allows null."""
    verdict = Verdict(Decision.NEEDS_REVIEW, (Reason("image_error", detail="InvalidImageFormat"),))
    document = result_document(verdict=verdict, model_version=None, tags=())
    assert contracts.describe_violation(SchemaName.MODERATION_RESULT, document) is None


def test_naive_timestamps_are_refused() -> None:
    """A time without an offset is ambiguous in a contract; the encoder refuses it."""
    with pytest.raises(ValueError, match="timezone-aware"):
        result_document(analyzed_at=datetime(2025, 1, 31, 12, 0))


def dead_letter(value: bytes | None, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "error": InvalidSubmission(DeadLetterReason.NOT_JSON, "value is not JSON"),
        "value": value,
        "key": b"img-1",
        "headers": [("traceparent", b"00-abc-01"), ("empty", None)],
        "source": SOURCE,
        "failed_at": NOW,
        "worker_version": "0.1.0",
    }
    arguments.update(overrides)
    return orjson.loads(encode_dead_letter(**arguments))


def test_dead_letters_satisfy_their_schema_and_keep_the_original_bytes(contracts: Contracts) -> None:
    """The original value, key and headers round-trip through base64; coordinates and error are typed."""
    value = b"\xff not json"
    document = dead_letter(value)
    assert contracts.describe_violation(SchemaName.DEAD_LETTER, document) is None
    assert value == base64.b64decode(document["original"]["value_b64"])
    expected_key = b"img-1"
    assert expected_key == base64.b64decode(document["original"]["key_b64"])
    expected_headers = [
        {"key": "traceparent", "value_b64": "MDAtYWJjLTAx"},
        {"key": "empty", "value_b64": None},
    ]
    assert expected_headers == document["original"]["headers"]
    expected_error = {"class": "not_json", "message": "value is not JSON"}
    assert expected_error == document["error"]
    expected_timestamp_ms = 1_738_324_800_000
    assert expected_timestamp_ms == document["source"]["timestamp_ms"]


def test_empty_records_dead_letter_with_a_null_value(contracts: Contracts) -> None:
    """A tombstone has no bytes to keep; the dead letter says so instead of inventing some."""
    document = dead_letter(None, error=InvalidSubmission(DeadLetterReason.EMPTY_VALUE, "no value"), key=None)
    assert contracts.describe_violation(SchemaName.DEAD_LETTER, document) is None
    expected = {
        "value_b64": None,
        "value_bytes": 0,
        "value_sha256": None,
        "truncated": False,
        "key_b64": None,
    }
    assert expected == {key: document["original"][key] for key in expected}


def test_oversized_originals_are_truncated_but_identified(contracts: Contracts) -> None:
    """A huge value is cut so the dead letter fits the broker, and its hash still names the whole."""
    value = b"x" * 1000
    document = dead_letter(value, keep_value_bytes=100)
    assert contracts.describe_violation(SchemaName.DEAD_LETTER, document) is None
    original = document["original"]
    assert value[:100] == base64.b64decode(original["value_b64"])
    expected = (1000, True)
    assert expected == (original["value_bytes"], original["truncated"])
    assert hashlib.sha256(value).hexdigest() == original["value_sha256"]


CONTRACTS = Contracts.load()
