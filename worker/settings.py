"""One frozen Settings object, read once from ``MODERATION_*`` environment variables (pydantic-settings).

A setting is one field: its type and constraints are the validation, its default the default, its
``description`` the meaning shown by ``moderation-worker run --help``; the variable is ``MODERATION_`` plus
the field name in upper case. ``docs/configuration.md`` lists every variable (a test holds it to the code).
Secrets are ``SecretStr`` values that never print; ``get_secret_value()`` is called only where a secret is
handed to a client.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import get_args

from pydantic import Field, SecretStr, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from worker.errors import ConfigurationError
from worker.kafka_settings import KafkaSecurity, SecurityProtocol
from worker.setting_values import (
    PREFIX,
    AnalyzerKind,
    AuthKind,
    BlobAuthKind,
    CompressionType,
    Endpoint,
    Features,
    ImageFetchKind,
    JsonValue,
    LogLevel,
    MappingSource,
    Names,
    OptionalMechanism,
    OptionalPath,
    OptionalText,
    Paths,
    SettingDoc,
    Text,
    VisualFeature,
    as_json_value,
    as_text,
    empty_is_none,
    secret_or_none,
    variable,
)


class Settings(BaseSettings):
    """The worker's whole configuration; build it with ``Settings.from_env(os.environ)``."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, case_sensitive=False, frozen=True, extra="forbid")

    bootstrap_servers: Text = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated")
    group_id: Text = Field("moderation-worker", description="consumer group shared by all replicas")
    input_topic: Text = Field("images.submitted", description="submissions (image-submitted.v1)")
    approved_topic: Text = Field("images.approved", description="results with decision approved")
    review_topic: Text = Field("images.needs-review", description="results with decision needs_review")
    rejected_topic: Text = Field("images.rejected", description="results with decision rejected")
    dead_letter_topic: Text = Field("images.dead-letter", description="unprocessable input (dead-letter.v1)")
    control_topic: Text = Field(
        "moderation.control", description="run-time control (hold, pause, live policy, status), compacted"
    )
    audit_topic: Text = Field("images.review-audit", description="audit items: sampled automatic decisions")
    audit_approved_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="share of approvals also sent as audit items (0: off; e.g. 0.01)"
    )
    audit_rejected_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="share of rejections also sent as audit items (0: off; e.g. 0.05)"
    )
    audit_key: SecretStr = Field(
        SecretStr(""), description="key of the audit sampling hash, a secret: ids cannot be chosen to evade"
    )
    replica_id: OptionalText = Field(
        None, description="this replica's name in policy status; empty: host name and process id"
    )
    analyzer: AnalyzerKind = Field(
        "azure", description="azure (Image Analysis 4.0) or model (the offline model, needs the model extra)"
    )
    azure_endpoint: Endpoint = Field(
        "", description="https://<resource>.cognitiveservices.azure.com/ (required for analyzer azure)"
    )
    azure_key: SecretStr = Field(
        SecretStr(""), description="the resource key, a secret (required for key auth)"
    )
    azure_auth: AuthKind = Field(
        "key", description="key, or entra (Entra ID via DefaultAzureCredential, needs the entra extra)"
    )
    visual_features: Features = Field(
        ("tags",), description="CSV of " + ", ".join(get_args(VisualFeature)) + "; the policy acts on tags"
    )
    policy_file: OptionalPath = Field(
        None, description="policy file (policy.v1); empty: the bundled worker/policies/default.json"
    )
    shadow_policy_file: OptionalPath = Field(None, description="a candidate policy decided, never routed by")
    shadow_topic: OptionalText = Field(None, description="shadow results (images.shadow-results); empty: off")
    analyses_topic: OptionalText = Field(None, description="full analyses, e.g. images.analyses; empty: off")
    analyses_retention_ms: int = Field(7 * 24 * 3600 * 1000, ge=1, description="retention of analyses, ms")
    quota_calls_per_s: float = Field(
        20.0, ge=0.001, description="calls per second for the whole Azure resource, shared by partition"
    )
    max_in_flight: int = Field(64, ge=1, description="messages in flight per replica")
    max_in_flight_per_partition: int = Field(
        32, ge=1, description="in flight per partition before pausing it"
    )
    analyzer_timeout_s: float = Field(10.0, ge=0.1, description="read timeout of one analyzer call, seconds")
    analyzer_connect_timeout_s: float = Field(3.0, ge=0.1, description="connect timeout of one call, seconds")
    retry_budget_s: float = Field(
        60.0, ge=0.0, description="seconds of retrying one message before its partition is paused"
    )
    max_message_bytes: int = Field(
        65536, ge=64, description="larger submissions are dead-lettered (oversized)"
    )
    drain_timeout_s: float = Field(
        20.0, ge=0.0, description="graceful-shutdown deadline for in-flight messages, seconds"
    )
    metrics_host: str = Field("0.0.0.0", description="address of /metrics, /healthz, /readyz")  # noqa: S104
    metrics_port: int = Field(9400, ge=0, description="port of the same (0 picks a free port)")
    log_level: LogLevel = Field("INFO", description="DEBUG, INFO, WARNING or ERROR; JSON lines on stderr")
    drift_state_file: OptionalPath = Field(None, description="where a captured drift reference is persisted")
    drift_window_s: float = Field(600.0, ge=1.0, description="length of the sliding drift window, seconds")
    drift_min_samples: int = Field(200, ge=1, description="decisions a window needs before it is scored")
    drift_reference_file: OptionalPath = Field(None, description="a pinned drift reference (JSON)")
    topic_partitions: int = Field(
        6, ge=1, description="partitions of the topics made by topics create (the replica ceiling)"
    )
    topic_replication: int = Field(1, ge=1, description="replication factor of those topics")
    result_retention_ms: int = Field(
        7 * 24 * 3600 * 1000, ge=-1, description="retention of the data topics made by topics create"
    )
    kafka_security_protocol: SecurityProtocol = Field(
        SecurityProtocol.PLAINTEXT, description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (docs/kafka.md)"
    )
    kafka_sasl_mechanism: OptionalMechanism = Field(
        None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER; required with SASL_*"
    )
    kafka_sasl_username: OptionalText = Field(None, description="user of PLAIN and SCRAM-*")
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), description="password of PLAIN and SCRAM-*, a secret"
    )
    kafka_sasl_oauth_scope: OptionalText = Field(
        None, description="Entra ID scope for OAUTHBEARER; empty: derived from an Event Hubs host"
    )
    kafka_ssl_ca_file: OptionalPath = Field(
        None, description="PEM file of the CAs that sign the brokers' certificates; empty: the system's"
    )
    kafka_ssl_cert_file: OptionalPath = Field(None, description="PEM client certificate for mutual TLS")
    kafka_ssl_key_file: OptionalPath = Field(None, description="PEM private key of that certificate")
    kafka_ssl_key_password: SecretStr = Field(
        SecretStr(""), description="password of an encrypted client key, a secret"
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="verify that the broker's certificate names the host connected to"
    )
    kafka_compression_type: CompressionType = Field(
        "zstd", description="codec of the result batches: none, gzip, snappy, lz4 or zstd"
    )
    kafka_startup_timeout_s: float = Field(
        60.0, ge=0.0, description="how long start-up waits for an unreachable cluster, seconds"
    )
    kafka_probe_interval_s: float = Field(
        5.0, gt=0.0, description="how often a running worker asks the cluster for metadata (readiness), s"
    )
    image_fetch: ImageFetchKind = Field(
        "url", description="url: Azure fetches the image; worker: the worker fetches it and sends the bytes"
    )
    fetch_max_bytes: int = Field(
        20_971_520, ge=1024, le=20_971_520, description="largest image fetched, bytes"
    )
    fetch_timeout_s: float = Field(
        10.0, ge=0.1, description="deadline of one fetch, redirects included, seconds"
    )
    fetch_max_redirects: int = Field(
        3, ge=0, le=10, description="redirects one fetch follows, each re-checked"
    )
    blob_auth: BlobAuthKind = Field(
        "none", description="entra: read blobs on the account hosts with DefaultAzureCredential, no SAS"
    )
    blob_account_hosts: Names = Field(
        (), description="CSV of storage account hosts (account.blob.core.windows.net) read with the identity"
    )
    hash_bank_files: Paths = Field((), description="CSV of hash-bank files matched before the quota")
    hash_banks_from_topic: bool = Field(False, description="follow the bank topic: live bank changes")
    hash_banks_topic: Text = Field("moderation.hash-banks", description="hash-bank updates, compacted")
    analysis_cache_size: int = Field(0, ge=0, description="analyses kept in memory by SHA-256 (0: no cache)")
    analysis_cache_ttl_s: float = Field(86400.0, gt=0.0, description="how long a cached analysis is used, s")
    analysis_cache_shared: bool = Field(False, description="share cached analyses through the cache topic")
    analysis_cache_topic: Text = Field("moderation.analysis-cache", description="shared analyses, compacted")
    env_file: OptionalPath = Field(
        None, description="a file of MODERATION_*=value lines read first; the environment wins over it"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - replaced by from_env's own sources
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values passed in: the class never reads the process environment by itself, so
        ``from_env`` sees exactly the mapping it is given and ``defaults`` sees none."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, need_analyzer: bool = True) -> Settings:
        """Parse every ``MODERATION_*`` variable; raise ConfigurationError naming *all* bad variables at once.

        ``MODERATION_ENV_FILE`` names a dotenv file read first (``environ`` wins over it).
        ``need_analyzer=False`` is for commands that never call the analyzer (``topics create``, ``hold``).
        """
        values = MappingSource(cls, environ)()
        env_file = empty_is_none(values.get("env_file", ""))
        if env_file is not None:
            path = Path(str(env_file).strip())
            if not path.is_file():
                raise ConfigurationError(f"invalid configuration: {PREFIX}ENV_FILE: no such file {path}")
            values = DotEnvSettingsSource(cls, env_file=path)() | values
        return cls._validated(values, source=f"{PREFIX}ENV_FILE {env_file}", need_analyzer=need_analyzer)

    @classmethod
    def defaults(cls, **overrides: object) -> Settings:
        """Settings with every default applied, then ``overrides`` (for tests and embedded runs)."""
        return cls._validated(overrides, source="the overrides", need_analyzer=False)

    @classmethod
    def _validated(cls, values: Mapping[str, object], *, source: str, need_analyzer: bool) -> Settings:
        """Validate ``values``. The cross-field check runs on the valid fields even when others are bad,
        unless the analyzer or auth choice it depends on is itself bad."""
        problems: list[str] = []
        bad: set[str] = set()
        try:
            settings = cls.model_validate(values)
        except ValidationError as exc:
            details = exc.errors(include_url=False)
            problems = [_problem(detail, source) for detail in details]
            bad = {str(detail["loc"][0]) for detail in details if detail["loc"]}
            settings = cls.model_validate({name: value for name, value in values.items() if name not in bad})
        if need_analyzer and not bad & {"analyzer", "azure_auth"}:
            problems += [problem for field, problem in settings._analyzer_gaps() if field not in bad]
        if not any(name.startswith("kafka_") for name in bad):
            try:
                settings.kafka_security()
            except ConfigurationError as exc:
                problems.append(str(exc))
        problems += settings._side_topic_clashes()
        if problems:
            raise ConfigurationError("invalid configuration: " + "; ".join(problems))
        return settings

    def _side_topic_clashes(self) -> list[str]:
        """Side-record topics must not be the input, a result or the dead-letter topic (one record per id)."""
        taken = {self.input_topic, *self.output_topics}
        return [
            f"{variable(name)}: {topic!r} is the input or a result topic; side records need their own"
            for name in ("shadow_topic", "analyses_topic")
            if (topic := getattr(self, name)) in taken
        ]

    def check_complete(self) -> None:
        """Cross-field checks: what the chosen analyzer needs must be present (every gap named at once)."""
        problems = [problem for _field, problem in self._analyzer_gaps()]
        if problems:
            raise ConfigurationError("invalid configuration: " + "; ".join(problems))

    def _analyzer_gaps(self) -> list[tuple[str, str]]:
        """``(field, problem)`` for each setting the chosen analyzer needs but lacks."""
        gaps: list[tuple[str, str]] = []
        if self.analyzer == "azure":
            if not self.azure_endpoint:
                gaps.append(
                    ("azure_endpoint", f"{PREFIX}AZURE_ENDPOINT: required when {PREFIX}ANALYZER=azure")
                )
            if self.azure_auth == "key" and not self.azure_key.get_secret_value():
                gaps.append(("azure_key", f"{PREFIX}AZURE_KEY: required when {PREFIX}AZURE_AUTH=key"))
        if self.image_fetch == "worker" and self.analyzer != "azure":
            gaps.append(("image_fetch", f"{PREFIX}IMAGE_FETCH=worker: needs {PREFIX}ANALYZER=azure"))
        if self.blob_auth == "entra" and (self.image_fetch != "worker" or not self.blob_account_hosts):
            needs = f"{PREFIX}IMAGE_FETCH=worker and {PREFIX}BLOB_ACCOUNT_HOSTS"
            problem = f"{PREFIX}BLOB_AUTH=entra: needs {needs}"
            gaps.append(("blob_auth", problem))
        if self.blob_auth != "entra" and self.blob_account_hosts:
            gaps.append(("blob_auth", f"{PREFIX}BLOB_ACCOUNT_HOSTS: read only with {PREFIX}BLOB_AUTH=entra"))
        known = self.hash_bank_files or self.hash_banks_from_topic or self.analysis_cache_size
        if self.image_fetch != "worker" and known:
            problem = f"hash banks and the analysis cache need {PREFIX}IMAGE_FETCH=worker"
            gaps.append(("image_fetch", problem))
        return gaps

    def kafka_security(self) -> KafkaSecurity:
        """The ``MODERATION_KAFKA_*`` connection security; ``ConfigurationError`` naming every inconsistency.

        ``from_env`` already ran this check, so on settings it returned this does not raise.
        """
        return KafkaSecurity(
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=secret_or_none(self.kafka_sasl_password),
            sasl_oauth_scope=self.kafka_sasl_oauth_scope,
            ssl_ca_file=self.kafka_ssl_ca_file,
            ssl_cert_file=self.kafka_ssl_cert_file,
            ssl_key_file=self.kafka_ssl_key_file,
            ssl_key_password=secret_or_none(self.kafka_ssl_key_password),
            ssl_check_hostname=self.kafka_ssl_check_hostname,
        )

    @property
    def output_topics(self) -> tuple[str, str, str, str]:
        """approved, needs-review, rejected and dead-letter topics, in that order."""
        return (self.approved_topic, self.review_topic, self.rejected_topic, self.dead_letter_topic)

    def as_environment(self) -> dict[str, str]:
        """Every setting as ``{variable: value as it would be written}``; secrets are ``***`` when set."""
        return {variable(name): as_text(getattr(self, name)) for name in type(self).model_fields}

    def as_json(self) -> dict[str, JsonValue]:
        """Every setting as ``{variable: JSON value}``; secrets are ``***`` when set, paths are strings."""
        return {variable(name): as_json_value(getattr(self, name)) for name in type(self).model_fields}

    @classmethod
    def documented(cls) -> tuple[SettingDoc, ...]:
        """Variable, default (as written, ``""`` for none) and meaning of every setting, in field order."""
        return tuple(
            SettingDoc(variable(name), as_text(field.default), field.description or "")
            for name, field in cls.model_fields.items()
        )


def _problem(detail: ErrorDetails, source: str) -> str:
    """``VARIABLE: reason[, got 'value']`` for one validation error; a secret's value is never shown."""
    field = str(detail["loc"][0]) if detail["loc"] else ""
    if field not in Settings.model_fields:  # only a dotenv file can carry names that are no setting
        return f"{field.upper()} in {source}: not a setting"
    value = detail["input"]
    shown = isinstance(value, str) and value and Settings.model_fields[field].annotation is not SecretStr
    return f"{variable(field)}: {_reason(detail)}" + (f", got {value!r}" if shown else "")


def _reason(detail: ErrorDetails) -> str:
    context = detail.get("ctx", {})
    reasons = {
        "value_error": str(context.get("error", "")),
        "string_too_short": "must not be empty",
        "too_short": "must name at least one",
        "greater_than_equal": f"must be at least {context.get('ge')}",
        "literal_error": f"must be one of {context.get('expected')}",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "enum": f"must be one of {context.get('expected')}",
        "bool_parsing": "must be true or false",
        "less_than_equal": f"must be at most {context.get('le')}",
    }
    return reasons.get(detail["type"], detail["msg"])
