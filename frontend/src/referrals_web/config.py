"""The web application's settings: the platform's shared ones (PostgreSQL, telemetry, the edge's
limits) plus where the three public APIs are, the partner front end's API key, the session
secret and the mail server for one-time codes.

Environment: `REFERRALS_WEB_<FIELD>`, nested fields with `__` (`REFERRALS_WEB_POSTGRES__DSN`,
`REFERRALS_WEB_SMTP__HOST`); the platform-wide `REFERRALS_<FIELD>` applies where the web
application's own variable is not set (`ServiceSettings`). Outside `development`, placeholder
or empty secrets stop the application at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field, SecretStr

from referrals_common.settings import ServiceSettings

DEV_SESSION_SECRET = "change-me-in-dev-only-web-session-secret"  # noqa: S105 - the placeholder


class SmtpSettings(BaseModel):
    """The mail server one-time sign-in codes go through (the local stack's mail sink)."""

    host: str = "127.0.0.1"
    port: int = Field(11025, ge=1, le=65535)
    sender: str = Field("referrals@localhost", alias="from")
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    timeout_seconds: float = Field(10.0, gt=0)

    model_config = {"populate_by_name": True}


class WebSettings(ServiceSettings):
    service_name: ClassVar[str] = "web"

    intake_url: str = "http://127.0.0.1:8001"
    records_url: str = "http://127.0.0.1:8002"
    partners_url: str = "http://127.0.0.1:8004"
    front_end_api_key: SecretStr = SecretStr("")
    """The partner front end's key at intake (`rfk_…`): it stays on this server."""
    ops_api_key: SecretStr = SecretStr("")
    """An operator key of partners (`ops_…`) for the ops screen: it stays on this server, and
    only operators signed in to /ops have it used for them (empty: the ops screen says it has
    no key)."""
    session_secret: SecretStr = SecretStr(DEV_SESSION_SECRET)
    """Signs CSRF tokens and seals what a session keeps (the case's token, the answers)."""
    smtp: SmtpSettings = SmtpSettings()
    public_base_url: str = "http://127.0.0.1:8010"
    vendor_dir: Path | None = None
    """A directory holding `htmx.min.js`, served at /static/vendor/; the pages work without."""
    session_idle_minutes: int = Field(60, ge=5, le=24 * 60)
    login_code_minutes: int = Field(10, ge=1, le=60)
    login_code_attempts: int = Field(5, ge=1, le=20)
    api_timeout_seconds: float = Field(30.0, gt=0)
    upload_max_bytes: int = Field(2 * 1024**3 + 1024 * 1024, ge=1)
    """The largest upload the app passes on (records' own limit for DICOM, plus the form)."""

    @property
    def secure_cookies(self) -> bool:
        return self.environment != "development"

    def _secrets(self) -> dict[str, str]:
        # Kafka and S3 are not the web application's: only its own secrets count.
        dsn = self.postgres.dsn.get_secret_value()
        password = dsn.split("://", 1)[-1].split("@", 1)[0].partition(":")[2] if "@" in dsn else ""
        return {
            "postgres.dsn password": password,
            "session_secret": self.session_secret.get_secret_value(),
            "front_end_api_key": self.front_end_api_key.get_secret_value(),
        }
