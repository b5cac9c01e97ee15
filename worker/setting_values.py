"""The value types of the settings and how a setting is read and written: the ``MODERATION_`` prefix, the
kinds a setting may take, empty-is-none and comma-separated parsing, secrets masked as ``***``.

Pure: ``worker.settings`` builds the one ``Settings`` model from these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode

from worker.kafka_settings import SaslMechanism

PREFIX = "MODERATION_"
MASK = "***"

AnalyzerKind = Literal["azure", "model"]
AuthKind = Literal["key", "entra"]
#: who fetches the image: Azure from its URL, or the worker (SSRF-guarded, docs/known-content.md)
ImageFetchKind = Literal["url", "worker"]
BlobAuthKind = Literal["none", "entra"]
VisualFeature = Literal["tags", "caption", "denseCaptions", "objects", "read", "smartCrops", "people"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
#: codec of the batches the worker produces (docs/kafka.md, "Output compression", says why zstd)
CompressionType = Literal["none", "gzip", "snappy", "lz4", "zstd"]
#: What ``config --format json`` prints for one setting.
JsonValue = str | int | float | list[str] | None


def empty_is_none(raw: object) -> object:
    """An empty (or blank) path variable means "no file"."""
    return None if isinstance(raw, str) and not raw.strip() else raw


def _csv(raw: object) -> object:
    return tuple(part.strip() for part in raw.split(",") if part.strip()) if isinstance(raw, str) else raw


def _endpoint(url: str) -> str:
    if url and not url.startswith(("https://", "http://")):
        raise ValueError("must start with https:// (or http:// for a local emulator)")
    return url


Text = Annotated[str, Field(min_length=1)]
OptionalText = Annotated[str | None, BeforeValidator(empty_is_none)]
OptionalMechanism = Annotated[SaslMechanism | None, BeforeValidator(empty_is_none)]
OptionalPath = Annotated[Path | None, BeforeValidator(empty_is_none)]
Endpoint = Annotated[str, AfterValidator(_endpoint)]
Paths = Annotated[tuple[Path, ...], NoDecode, BeforeValidator(_csv)]
Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_csv)]
Features = Annotated[tuple[VisualFeature, ...], NoDecode, BeforeValidator(_csv), Field(min_length=1)]


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """One setting as documented: ``MODERATION_*`` variable, default as written, meaning."""

    variable: str
    default: str
    meaning: str


def variable(field_name: str) -> str:
    """The environment variable of a settings field: ``MODERATION_`` plus the name in upper case."""
    return PREFIX + field_name.upper()


def secret_or_none(value: SecretStr) -> SecretStr | None:
    """An empty secret variable means "not set"."""
    return value if value.get_secret_value() else None


def as_text(value: object) -> str:
    """A setting's value as it is written in the environment; a set secret shows as ``***``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def as_json_value(value: object) -> JsonValue:
    if isinstance(value, str | int | float) or value is None:
        return value
    if isinstance(value, tuple):
        return [str(item) for item in value]
    return as_text(value)  # SecretStr (masked) and Path


class MappingSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading ``environ`` instead of the process environment."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # The hook DotEnvSettingsSource overrides too. Names match case-insensitively (lower case); values
        # lose surrounding blanks, as a dotenv file's unquoted values do.
        return {name.lower(): value.strip() for name, value in self._environ.items()}
