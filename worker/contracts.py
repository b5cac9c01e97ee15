"""Message contracts: the JSON Schemas in ``schemas/`` compiled once, and submission decoding.

Decoding a record value runs size -> UTF-8/JSON -> schema -> guard (URL safety, host allowlist, consent)
and either returns a ``Submission`` or raises ``InvalidSubmission`` whose ``reason`` is the dead-letter error
class. Messages never echo a URL's query string. Pure: no Kafka, HTTP or Azure imports.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import jsonschema_rs
import orjson
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from worker.errors import ConfigurationError, ModerationError
from worker.redact import redact_text, redact_url
from worker.urlguard import url_refusal

SCHEMAS_PACKAGE: Final = "worker.schemas"
"""Where the schemas are installed: the repository's ``schemas/`` folder, mapped into the package."""
DEFAULT_MAX_VALUE_BYTES: Final = 65_536
"""Largest accepted submission value; a valid v1 document is a few KiB at most."""
_MAX_MESSAGE_CHARS: Final = 300
_RFC3339: Final = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class SchemaName(StrEnum):
    """The contracts in ``schemas/``; the value is the file's stem."""

    IMAGE_SUBMITTED = "image-submitted.v1"
    MODERATION_RESULT = "moderation-result.v1"
    DEAD_LETTER = "dead-letter.v1"
    POLICY = "policy.v1"
    CONTROL = "control.v1"
    ANALYSIS = "analysis.v1"


class DeadLetterReason(StrEnum):
    """Why a submission was refused: the closed set of ``dead-letter.v1`` ``error.class`` values."""

    EMPTY_VALUE = "empty_value"
    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    SCHEMA_INVALID = "schema_invalid"
    UNSAFE_URL = "unsafe_url"
    HOST_NOT_ALLOWED = "host_not_allowed"
    CONSENT_MISSING = "consent_missing"


class InvalidSubmission(ModerationError):
    """A record value that is not an acceptable submission; the pipeline dead-letters it.

    ``message`` names the failing field or rule and never contains a URL's query string.
    """

    def __init__(self, reason: DeadLetterReason, message: str) -> None:
        self.reason = reason
        self.message = redact_text(message)[:_MAX_MESSAGE_CHARS]
        super().__init__(f"{reason}: {self.message}")


@dataclass(frozen=True, slots=True)
class Consent:
    """The image owner's consent as recorded by the producer; ``purposes`` are lower-case names."""

    granted: bool
    purposes: frozenset[str]
    granted_at: datetime | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True, repr=False)
class Submission:
    """An accepted ``image-submitted.v1`` document; ``repr`` redacts the URL (it may hold a SAS token)."""

    id: str
    image_url: str
    submitted_at: datetime | None = None
    source: str | None = None
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    consent: Consent | None = None

    def __repr__(self) -> str:
        return f"Submission(id={self.id!r}, image_url={redact_url(self.image_url)!r}, source={self.source!r})"


@dataclass(frozen=True, slots=True)
class Guard:
    """Acceptance rules beyond the schema: size, URL hosts and consent (usually from settings and the policy).

    ``url_hosts`` empty means any public host; ``*.example.com`` matches subdomains of example.com only.
    ``consent_required`` demands consent whose purposes include every one of ``consent_purposes``.
    """

    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    url_hosts: tuple[str, ...] = ()
    consent_required: bool = False
    consent_purposes: frozenset[str] = frozenset()


_DEFAULT_GUARD: Final = Guard()
_NO_METADATA: Final[Mapping[str, str]] = MappingProxyType({})


def default_schemas_dir() -> Path:
    """The folder of the schemas shipped as package data ``worker.schemas``.

    A wheel holds them inside the installed package; an editable install maps the package to the checkout's
    ``schemas/`` folder. Raises ``ConfigurationError`` when the package is not files on disk (a zip import).
    """
    schemas = importlib.resources.files(SCHEMAS_PACKAGE)
    if not isinstance(schemas, Path):
        raise ConfigurationError(f"the {SCHEMAS_PACKAGE} package is not a folder on disk: {schemas}")
    return schemas


def is_rfc3339(value: object) -> bool:
    """The schemas' ``date-time`` format: RFC 3339 with an offset, and a real calendar date and time."""
    if not isinstance(value, str):
        return True  # formats only constrain strings; "type" rejects the rest
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:  # e.g. month 13 or Feb 30 pass the regex but are not dates
        return False
    return True


def _format_checker() -> FormatChecker:
    """A private checker: jsonschema's "date-time" needs an optional package, so we check RFC 3339 here."""
    checker = FormatChecker()
    checker.checks("date-time")(is_rfc3339)
    return checker


def _fast_validator(schema: Any) -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator(
        schema, formats={"date-time": is_rfc3339}, validate_formats=True, offline=True
    )


def _describe(error: ValidationError) -> str:
    """Name the failing path and rule; quote the rule, never the instance (it may be a URL with a token)."""
    if error.validator in ("required", "additionalProperties", "propertyNames"):
        detail = error.message  # these name keys, not values; redact_text still runs over them
    elif error.validator == "pattern":
        detail = "fails pattern"  # the schema documents it; quoted, "https://..." would read as a URL
    else:
        detail = f"fails {error.validator} {orjson.dumps(error.validator_value).decode()[:80]}"
    return f"{error.json_path}: {detail}"


class Contracts:
    """The compiled validators, built once at start-up and shared; validation is thread-safe and pure.

    Each schema is compiled twice: ``jsonschema-rs`` gives the verdict (about 2 us for a submission against
    33 us, and every record is checked), ``jsonschema`` names the failing rule of an invalid document (its
    ``best_match`` is what dead letters quote). Both run the same ``date-time`` check; the schemas' patterns
    are written to mean the same in Python's and Rust's regex dialects (tests/unit/test_schema_engines.py).
    """

    def __init__(self, validators: Mapping[SchemaName, Draft202012Validator]) -> None:
        missing = set(SchemaName) - set(validators)
        if missing:
            raise ConfigurationError(f"no validator for {sorted(missing)}")
        self._validators = dict(validators)
        self._verdicts = {name: _fast_validator(v.schema) for name, v in validators.items()}

    @classmethod
    def load(cls, schemas_dir: Path | None = None) -> Contracts:
        """Read and compile every schema in ``schemas_dir`` (default: ``default_schemas_dir()``).

        Raises ``ConfigurationError`` when a file is missing, not JSON, or not a valid 2020-12 schema.
        """
        directory = default_schemas_dir() if schemas_dir is None else schemas_dir
        checker = _format_checker()
        validators: dict[SchemaName, Draft202012Validator] = {}
        for name in SchemaName:
            path = directory / f"{name}.json"
            try:
                schema = orjson.loads(path.read_bytes())
                Draft202012Validator.check_schema(schema)
            except (OSError, orjson.JSONDecodeError, SchemaError) as exc:
                raise ConfigurationError(f"cannot load schema {name} from {path}: {exc}") from exc
            validators[name] = Draft202012Validator(schema, format_checker=checker)
        return cls(validators)

    def describe_violation(self, name: SchemaName, document: object) -> str | None:
        """``None`` if ``document`` satisfies schema ``name``, else one line naming the failing path/rule."""
        if self._verdicts[name].is_valid(document):
            return None
        error = best_match(self._validators[name].iter_errors(document))
        if error is None:  # the engines disagree (a defect the engine tests exist to catch): refuse anyway
            return f"$: fails {name}"
        return redact_text(_describe(error))[:_MAX_MESSAGE_CHARS]

    def decode_submission(self, raw: bytes | None, guard: Guard | None = None) -> Submission:
        """Decode one record value into a ``Submission`` or raise ``InvalidSubmission``.

        Checks, in order: a value is present, at most ``guard.max_value_bytes``, UTF-8, JSON, schema-valid,
        then the guard (https to a public or allowlisted host, consent as required). ``None``: ``Guard()``.
        """
        guard = _DEFAULT_GUARD if guard is None else guard
        if not raw:
            raise InvalidSubmission(DeadLetterReason.EMPTY_VALUE, "the record has no value")
        if len(raw) > guard.max_value_bytes:
            raise InvalidSubmission(
                DeadLetterReason.OVERSIZED, f"value is {len(raw)} bytes; the limit is {guard.max_value_bytes}"
            )
        document = _parse_json(raw)
        violation = self.describe_violation(SchemaName.IMAGE_SUBMITTED, document)
        if violation is not None:
            raise InvalidSubmission(DeadLetterReason.SCHEMA_INVALID, violation)
        submission = _submission_from(document)
        check_url(submission.image_url, guard)
        check_consent(submission.consent, guard)
        return submission


def _parse_json(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as utf8_error:
            message = f"value is not UTF-8 (byte {utf8_error.start})"
            raise InvalidSubmission(DeadLetterReason.NOT_UTF8, message) from None
        raise InvalidSubmission(DeadLetterReason.NOT_JSON, f"value is not JSON: {exc.msg}") from None


def _datetime_or_none(value: object) -> datetime | None:
    return datetime.fromisoformat(value.upper()) if isinstance(value, str) else None


def _submission_from(document: Any) -> Submission:
    """Build the value object from a schema-valid document (so every key access is safe)."""
    consent_doc = document.get("consent")
    consent = None
    if consent_doc is not None:
        consent = Consent(
            granted=consent_doc["granted"],
            purposes=frozenset(consent_doc["purposes"]),
            granted_at=_datetime_or_none(consent_doc.get("granted_at")),
            reference=consent_doc.get("reference"),
        )
    return Submission(
        id=document["id"],
        image_url=document["image"]["url"],
        submitted_at=_datetime_or_none(document.get("submitted_at")),
        source=document.get("source"),
        metadata=MappingProxyType(dict(metadata)) if (metadata := document.get("metadata")) else _NO_METADATA,
        consent=consent,
    )


def check_url(url: str, guard: Guard) -> None:
    """Raise ``InvalidSubmission`` unless ``url`` is https, credential-free, public and on the allowlist."""
    refusal = url_refusal(url, guard.url_hosts)
    if refusal is not None:
        raise InvalidSubmission(DeadLetterReason(refusal.reason), refusal.message)


def check_consent(consent: Consent | None, guard: Guard) -> None:
    """Raise ``InvalidSubmission`` for refused consent, or for missing consent/purposes the guard requires.

    Consent explicitly refused (``granted`` false) is honoured whether or not the policy requires consent.
    """
    if consent is not None and not consent.granted:
        raise InvalidSubmission(DeadLetterReason.CONSENT_MISSING, "consent was refused (granted is false)")
    if not guard.consent_required:
        return
    if consent is None:
        raise InvalidSubmission(DeadLetterReason.CONSENT_MISSING, "consent is required but absent")
    uncovered = sorted(guard.consent_purposes - consent.purposes)
    if uncovered:
        raise InvalidSubmission(
            DeadLetterReason.CONSENT_MISSING, f"consent does not cover purposes {uncovered}"
        )
