"""Settings every service shares: Kafka, PostgreSQL, S3 (MinIO), telemetry and metrics.

Values come from the environment. A general `REFERRALS_` prefix applies to every service, and a
service-specific prefix (`REFERRALS_INTAKE_`, ...) overrides it, so one environment file can
describe the whole platform: `REFERRALS_KAFKA__BOOTSTRAP_SERVERS` for all,
`REFERRALS_INTAKE_POSTGRES__DSN` for intake's own database. Outside development, placeholder
secrets are refused at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
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
