"""Settings every service shares: Kafka, PostgreSQL, S3 (MinIO), telemetry, metrics, and the
HTTP APIs' rate limits and connection limits.

Values come from the environment. A general `REFERRALS_` prefix applies to every service, and a
service-specific prefix (`REFERRALS_INTAKE_`, ...) overrides it, so one environment file can
describe the whole platform: `REFERRALS_KAFKA__BOOTSTRAP_SERVERS` for all,
`REFERRALS_INTAKE_POSTGRES__DSN` for intake's own database. Outside development, placeholder
secrets are refused at start-up.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, Field, SecretStr, model_validator

if TYPE_CHECKING:
    import urllib3
    from minio import Minio

from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PLACEHOLDER_MARKERS = ("change-me", "changeme", "changethis", "placeholder", "secret", "password")


class KafkaSettings(BaseModel):
    """How a process reaches the Kafka cluster and proves who it is.

    In production every service connects with its own principal (`REFERRALS_<SERVICE>_KAFKA__
    USERNAME` / `__PASSWORD`) over `SASL_SSL`, so the brokers' ACLs can tell them apart (only
    partners writes center inboxes, only notifications reads contacts); `ssl_cafile` names the
    CA that signed the brokers' certificates, or `ssl_cadata` the same PEM text (e.g. from a
    Secret as an environment variable; the system's CAs when neither is set), `ssl_certfile`
    and `ssl_keyfile` a client certificate for clusters that authenticate with mutual TLS."""

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id_prefix: str = "referrals"
    topic_partitions: int = Field(6, ge=1, description="partitions of a topic a service creates")
    topic_replication_factor: int = Field(
        1, ge=1, description="replicas of a topic a service creates (3 on a production cluster)"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_cadata: str | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSettings:
        if self.uses_sasl and not (self.username and self.password):
            raise ValueError(
                f"kafka.security_protocol {self.security_protocol} needs kafka.username and "
                "kafka.password"
            )
        if not self.uses_sasl and (self.username or self.password):
            raise ValueError(
                "kafka.username/password are set but kafka.security_protocol is "
                f"{self.security_protocol}: they would not be sent (use SASL_SSL)"
            )
        files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_cadata": self.ssl_cadata,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        given = [name for name, path in files.items() if path is not None]
        if given and not self.uses_tls:
            raise ValueError(
                f"kafka.{given[0]} is set but kafka.security_protocol is "
                f"{self.security_protocol}: the connection would not use TLS (use SASL_SSL or SSL)"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("kafka.ssl_certfile and kafka.ssl_keyfile go together (mutual TLS)")
        return self


class PostgresSettings(BaseModel):
    dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:15432/postgres")
    pool_size: int = Field(20, ge=1, description="connections a process keeps open at most")
    max_overflow: int = Field(
        0,
        ge=0,
        description="extra connections opened under bursts and closed on return (each costs a "
        "new connection's authentication and statement preparation: keep 0 and size the pool)",
    )

    def async_url(self) -> str:
        """The DSN as an SQLAlchemy URL for the asyncpg driver."""
        dsn = self.dsn.get_secret_value()
        scheme, rest = dsn.split("://", 1)
        return f"postgresql+asyncpg://{rest}" if scheme in {"postgres", "postgresql"} else dsn

    def asyncpg_dsn(self) -> str:
        """The DSN as asyncpg itself takes it."""
        dsn = self.dsn.get_secret_value()
        return dsn.replace("postgresql+asyncpg://", "postgresql://", 1)


class S3Settings(BaseModel):
    endpoint: str = "127.0.0.1:19000"
    access_key: str = "referrals-dev"
    secret_key: SecretStr = SecretStr("change-me-in-dev-only")
    secure: bool = False
    region: str = "us-east-1"

    def client(self, http: urllib3.PoolManager | None = None) -> Minio:
        """The MinIO (S3) client these settings describe, on `http` (`http_pool()`) if given,
        else on a pool of its own."""
        from minio import Minio

        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key.get_secret_value(),
            secure=self.secure,
            region=self.region,
            http_client=http,
        )

    def http_pool(self, *, connections: int = 10) -> urllib3.PoolManager:
        """A pool of connections to MinIO as the SDK makes its own (the same CA certificates:
        `SSL_CERT_FILE` or certifi's; the same timeouts and retries of a failed connection or
        a 5xx answer), to share between the SDK's client (`client(http=...)`) and requests a
        service signs itself; `connections` kept open per host."""
        import os

        import certifi
        import urllib3

        return urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=300, read=300),
            maxsize=connections,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )


class TelemetrySettings(BaseModel):
    """Exporter choice follows the OpenTelemetry variables (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_
    OTLP_ENDPOINT, ...), which the SDK reads itself; these are the platform's own knobs."""

    log_level: str = "INFO"
    log_json: bool = True


class MetricsSettings(BaseModel):
    """Where a process without an HTTP API (consumer, relay, scheduler, sender) serves its
    Prometheus metrics: `REFERRALS_METRICS__HOST`, `REFERRALS_METRICS__PORT` (0: not served).
    API processes serve `/metrics` on their own port whatever this says."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)


class RateLimitSettings(BaseModel):
    """How many requests an HTTP API takes from one caller, and how many failed authentications
    lock a source out (`REFERRALS_RATE_LIMIT__PER_CLIENT=300/minute`, ...; see
    `referrals_common.edge` for what each limit counts). Limits are written in the `limits`
    library's notation: `<count>/<period>` or `<count> per <n> <period>s` (`600/minute`,
    `20 per 10 minutes`). Counted in each API process's memory: with R replicas, a caller may
    get up to R times a limit in all (size the limits as the global rate divided by R)."""

    enabled: bool = Field(
        True, description="rate limits and lockout on (off only for benchmarks and load tests)"
    )
    per_client: str = Field(
        "300/minute",
        description="requests of one authenticated caller (an API key, or one case's token)",
    )
    per_ip: str = Field(
        "600/minute",
        description="requests from one address that do not authenticate as a caller "
        "(anonymous, public routes, failed credentials); once spent, the address waits",
    )
    failed_authentications_per_ip: str = Field(
        "30 per 10 minutes",
        description="failed authentications from one address before it is locked out",
    )
    failed_authentications_per_credential: str = Field(
        "10 per 10 minutes",
        description="failed authentications naming one key id (or one case's token) from one "
        "address before that credential is locked out for that address only",
    )
    audit_window_seconds: float = Field(
        60.0,
        gt=0,
        description="failed authentications are written to the access audit as one row per "
        "credential (or address) and this many seconds",
    )

    @model_validator(mode="after")
    def _parseable(self) -> RateLimitSettings:
        from limits import parse  # the notation's one parser

        for name in (
            "per_client",
            "per_ip",
            "failed_authentications_per_ip",
            "failed_authentications_per_credential",
        ):
            try:
                parse(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"rate_limit.{name}: {exc}") from None
        return self


class HttpSettings(BaseModel):
    """Limits of an HTTP API's connections and request bodies (`REFERRALS_HTTP__...`)."""

    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1,
        description="largest request body of a route that is not a streamed upload (413 above)",
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="a request's line and headers must arrive within this time"
    )
    keep_alive_seconds: int = Field(
        5, ge=1, description="an idle connection between two requests is closed after this"
    )
    body_idle_timeout_seconds: float = Field(
        30.0, gt=0, description="a body that sends nothing for this long is cut off (408)"
    )
    body_min_bytes_per_second: int = Field(
        2048,
        ge=0,
        description="a body slower than this on average (after body_grace_seconds) is cut off "
        "(408); 0: no minimum",
    )
    body_grace_seconds: float = Field(
        30.0, ge=0, description="how long a body may start slowly before its rate is judged"
    )


_ORIGIN = re.compile(r"^https?://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")


def _origin(value: str) -> str:
    if not _ORIGIN.match(value):
        raise ValueError(
            f"{value!r} is not a web origin: scheme://host[:port] in lower case, without a path "
            "(no wildcard, no 'null')"
        )
    return value


Origin = Annotated[str, AfterValidator(_origin)]
FrontEndOrigins = dict[str, list[Origin]]
"""CORS: the web origins allowed per front-end client (API key id); none by default."""


class ServiceSettings(BaseSettings):
    """Base of every service's settings; a service subclass sets `service_name`."""

    service_name: ClassVar[str] = "referrals"

    model_config = SettingsConfigDict(
        env_prefix="REFERRALS_", env_nested_delimiter="__", extra="ignore"
    )

    environment: Literal["development", "test", "production"] = "development"
    migrate_on_start: bool = Field(
        True, description="long-running roles apply the migrations as they start"
    )
    kafka: KafkaSettings = KafkaSettings()
    postgres: PostgresSettings = PostgresSettings()
    s3: S3Settings = S3Settings()
    telemetry: TelemetrySettings = TelemetrySettings()
    metrics: MetricsSettings = MetricsSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    http: HttpSettings = HttpSettings()
    public_base_url: str | None = Field(
        None,
        description="where integrators reach this service's API (`https://records.example.org`): "
        "the OpenAPI document's `servers`; unset, the document names its own address",
    )
    outbound_allowed_targets: list[str] = Field(
        default_factory=list,
        description="`host:port` receivers of webhooks, or an SMS provider, that may be "
        "non-public addresses (the local stack's sample center, its SMS sink), one explicit "
        "entry each; every other receiver must resolve to public addresses "
        "(`referrals_common.outbound`)",
    )

    front_end_origins: FrontEndOrigins = Field(
        default_factory=dict,
        description="CORS: per front-end client (its API key id), the web origins "
        "(`https://app.clinic.example`) whose single-page app may call the case-token paths "
        "(`/v1/cases/...`) from the browser; none by default (`referrals_common.api.cors`)",
    )

    @model_validator(mode="after")
    def _https_origins_outside_development(self) -> ServiceSettings:
        if self.environment != "development":
            found = self.front_end_origins.values()
            plain = [o for origins in found for o in origins if not o.startswith("https://")]
            if plain:
                raise ValueError(f"front_end_origins must be https outside development: {plain}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        specific = EnvSettingsSource(
            settings_cls,
            env_prefix=f"REFERRALS_{cls.service_name.upper()}_",
            env_nested_delimiter="__",
        )
        return init_settings, specific, env_settings, dotenv_settings, file_secret_settings

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> ServiceSettings:
        if self.environment == "development":
            return self
        for where, value in self._secrets().items():
            lowered = value.lower()
            if not value or any(marker in lowered for marker in PLACEHOLDER_MARKERS):
                raise ValueError(
                    f"{where} holds a placeholder or empty secret; set a real one for "
                    f"{self.environment} (placeholders are accepted only in development)"
                )
        return self

    def _secrets(self) -> dict[str, str]:
        dsn = self.postgres.dsn.get_secret_value()
        password = dsn.split("://", 1)[-1].split("@", 1)[0].partition(":")[2] if "@" in dsn else ""
        found: dict[str, Any] = {
            "s3.secret_key": self.s3.secret_key.get_secret_value(),
            "postgres.dsn password": password,
        }
        if self.kafka.password is not None:
            found["kafka.password"] = self.kafka.password.get_secret_value()
        return found


class ApiServiceSettings(ServiceSettings):
    """Base of the settings of a service with an HTTP API whose callers present API keys
    (intake's front ends, records' and partners' centers, partners' operators)."""

    api_key_pepper: SecretStr = Field(
        SecretStr("change-me-in-dev-only-pepper"),
        description="server-side secret mixed into the API keys' hashes: a leaked key table "
        "alone cannot authenticate",
    )

    def _secrets(self) -> dict[str, str]:
        return {**super()._secrets(), "api_key_pepper": self.api_key_pepper.get_secret_value()}


class CaseTokenCheckSettings(BaseModel):
    """Mixed into the settings of a service that takes the case access tokens intake signs
    (records, partners): it checks them offline against intake's published keys."""

    case_token_jwks: str = Field(
        "", description="the JWKS intake publishes at /v1/.well-known/jwks.json"
    )
    case_token_issuer: str = Field(
        "referrals-intake", description="the tokens' issuer (`iss`), as intake signs it"
    )
