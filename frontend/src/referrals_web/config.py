"""The web application's settings: the platform's shared ones (PostgreSQL, telemetry, the edge's
limits) plus where the three public APIs are, the partner front end's API key, the session
secret, the mail server for one-time codes and, optionally, an SMS account for codes by text.

Environment: `REFERRALS_WEB_<FIELD>`, nested fields with `__` (`REFERRALS_WEB_POSTGRES__DSN`,
`REFERRALS_WEB_SMTP__HOST`, `REFERRALS_WEB_SMS__ACCOUNT_SID`); the platform-wide
`REFERRALS_<FIELD>` applies where the web application's own variable is not set
(`ServiceSettings`). Outside `development`, placeholder or empty secrets stop the application
at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field, SecretStr

from referrals_common.settings import ServiceSettings
from referrals_common.sms import TwilioSettings

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
    sms: TwilioSettings | None = None
    """A Twilio-compatible account (notifications' own) for sign-in codes by text message to
    the phone given on a case; none: codes go by e-mail only, and a patient whose case has only
    a phone number is told to ask the clinic. Its provider is called through the outbound guard:
    a local one (the dev stack's SMS sink) only as an `outbound_allowed_targets` entry."""
    public_base_url: str = "http://127.0.0.1:8010"
    vendor_dir: Path | None = None
    """A directory holding `htmx.min.js`, served at /static/vendor/; the pages work without."""
    session_idle_minutes: int = Field(60, ge=5, le=24 * 60)
    login_code_minutes: int = Field(10, ge=1, le=60)
    login_code_attempts: int = Field(5, ge=1, le=20)
    login_codes_per_hour: int = Field(5, ge=1, le=60)
    """Codes sent for one case in an hour, by e-mail and text together (in each process's
    memory): a text costs money, and neither a patient's phone nor inbox is flooded."""
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
            **({"sms.auth_token": self.sms.auth_token.get_secret_value()} if self.sms else {}),
        }
