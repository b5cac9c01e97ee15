"""The review console's own settings, ``MODERATION_REVIEW_*`` (pydantic-settings, like ``worker.settings``).

The Kafka connection (bootstrap servers, security, topic names of the worker) comes from the worker's own
``Settings``; these add what only the console needs. Secrets (the session key) are ``SecretStr``. The
identity settings are checked together: a console needs a token file or a trusted proxy, or nobody could
sign in. docs/review.md lists every variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from worker.errors import ConfigurationError

PREFIX: Final = "MODERATION_REVIEW_"
DECISIONS_TOPIC_VARIABLE: Final = f"{PREFIX}DECISIONS_TOPIC"
DEFAULT_DECISIONS_TOPIC: Final = "images.review-decisions"


def _csv(raw: object) -> object:
    return tuple(part.strip() for part in raw.split(",") if part.strip()) if isinstance(raw, str) else raw


def _empty_is_none(raw: object) -> object:
    return None if isinstance(raw, str) and not raw.strip() else raw


Labels = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_csv), Field(min_length=1)]
Csv = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_csv)]
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none)]


class ReviewSettings(BaseSettings):
    """Everything ``moderation-worker review`` reads beyond the worker's settings."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, case_sensitive=False, frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="address the console listens on")
    port: int = Field(9410, ge=0, le=65535, description="its port (0 picks a free one)")
    group_id: str = Field(
        "moderation-review", min_length=1, description="consumer group shared by console instances"
    )
    audit_topic: str = Field(
        "images.review-audit", min_length=1, description="audit samples of automatic decisions"
    )
    escalated_topic: str = Field(
        "images.review-escalated", min_length=1, description="the leads' second-level queue"
    )
    decisions_topic: str = Field(
        DEFAULT_DECISIONS_TOPIC, min_length=1, description="review-decision.v1 records"
    )
    lease_s: float = Field(300.0, ge=1.0, description="how long a claim lasts without renewal, seconds")
    session_s: float = Field(8 * 3600.0, ge=60.0, description="how long a sign-in lasts, seconds")
    tokens_file: OptionalPath = Field(None, description="secret file of 'reviewer-id role token' lines")
    session_key: SecretStr = Field(
        SecretStr(""), description="key signing sessions and CSRF tokens, shared by instances (empty: random)"
    )
    trusted_proxies: Csv = Field(
        (), description="CSV of proxy addresses/CIDRs whose identity header is believed"
    )
    proxy_user_header: str = Field("X-Forwarded-User", description="the trusted proxy's reviewer-id header")
    proxy_leads: Csv = Field(
        (), description="CSV of reviewer ids with role lead when identified by the proxy"
    )
    public_origins: Csv = Field(
        (), description="CSV of the console's origins (https://review.example.com); empty: its own address"
    )
    secure_cookies: bool = Field(
        True, description="mark cookies Secure (turn off only for plain-http loopback)"
    )
    reject_reasons: Labels = Field(
        ("sexual", "violence", "hate", "self_harm", "illegal", "spam", "other"),
        description="CSV of reason labels for reject (the first is the default)",
    )
    approve_reasons: Labels = Field(
        ("acceptable", "false_positive"),
        description="CSV of reason labels for approve (the first is the default)",
    )
    image_max_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="largest image the console serves")
    image_timeout_s: float = Field(10.0, ge=0.1, description="fetch timeout of one image, seconds")
    ban_bank: str = Field(
        "", description="hash bank 'reject and ban' adds images to (action reject); empty: no ban button"
    )
    ban_pdq_threshold: int = Field(31, ge=0, le=256, description="PDQ match distance of the ban bank")
    ban_role: Literal["lead", "reviewer"] = Field(
        "lead", description="who may ban: lead (leads only) or reviewer (every reviewer)"
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReviewSettings:
        """Parse ``MODERATION_REVIEW_*`` from ``environ``; ``ConfigurationError`` naming every bad one."""
        values = {
            name[len(PREFIX) :].lower(): value.strip()
            for name, value in environ.items()
            if name.upper().startswith(PREFIX)
        }
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            problems = [
                f"{PREFIX}{str(detail['loc'][0]).upper() if detail['loc'] else ''}: {detail['msg']}"
                for detail in exc.errors(include_url=False)
            ]
            raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
        if settings.tokens_file is None and not settings.trusted_proxies:
            raise ConfigurationError(
                f"invalid configuration: {PREFIX}TOKENS_FILE or {PREFIX}TRUSTED_PROXIES is required"
                " (nobody could sign in)"
            )
        return settings

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - from_env reads the mapping it is given
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values passed in: the class never reads the process environment by itself."""
        return (init_settings,)


def decisions_topic(environ: Mapping[str, str]) -> str:
    """The review-decisions topic the console writes, as ``from_env`` reads it from ``environ``
    (``MODERATION_REVIEW_DECISIONS_TOPIC``, any case), without the console's sign-in settings: for readers
    of the decisions such as ``calibrate``. ``ConfigurationError`` if it is set but blank."""
    values = [value.strip() for name, value in environ.items() if name.upper() == DECISIONS_TOPIC_VARIABLE]
    if not values:
        return DEFAULT_DECISIONS_TOPIC
    if not values[-1]:
        raise ConfigurationError(f"invalid configuration: {DECISIONS_TOPIC_VARIABLE}: must not be blank")
    return values[-1]
