"""Intake's settings: the shared ones plus case tokens, API key pepper and field encryption."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator

from referrals_common.settings import ApiServiceSettings
from referrals_common.webhooks.retention import RetentionSettings
from referrals_intake.consent_texts import require_published


class TokenSettings(BaseModel):
    # PEM of the Ed25519 key that signs case access tokens; records verifies with the public key.
    signing_key_pem: SecretStr = SecretStr("")
    ttl_minutes: int = Field(15, ge=1, le=24 * 60)
    issuer: str = "referrals-intake"

    @property
    def ttl(self) -> timedelta:
        return timedelta(minutes=self.ttl_minutes)


class IntakeSettings(ApiServiceSettings):
    service_name: ClassVar[str] = "intake"

    tokens: TokenSettings = TokenSettings()
    webhook_log: RetentionSettings = Field(
        default_factory=RetentionSettings,
        description="how long the front ends' webhook delivery log is kept (30 days)",
    )
    # 32-byte key (base64) encrypting contact details, date of birth and insurance at rest.
    field_encryption_key: SecretStr = SecretStr("")
    public_base_url: str = "http://127.0.0.1:8001"
    # Notifications' X25519 public key (base64): contact details are sealed to it.
    notifications_public_key: str = ""
    # Partners' X25519 public key (base64): the insurance policy is sealed to it for the center
    # that accepted (`case.policy_shared`); empty: the policy is never shared.
    partners_public_key: str = ""
    # The consent versions a case may be given: each must have its published text
    # (`referrals_intake.consent_texts`), or intake refuses to start.
    processing_consent_versions: tuple[str, ...] = ("2026-01",)
    cross_border_consent_versions: tuple[str, ...] = ("2026-01",)

    @field_validator("processing_consent_versions", "cross_border_consent_versions")
    @classmethod
    def _published(cls, versions: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        kind = "processing" if info.field_name == "processing_consent_versions" else "cross_border"
        require_published(kind, versions)
        return versions

    follow_up_max_questions: int = Field(
        3, ge=0, description="follow-up questions a patient may ask after the opinion"
    )
    follow_up_window_days: int = Field(
        30, ge=1, description="days after the opinion during which they may be asked"
    )
    max_opinions: int = Field(
        3, ge=1, le=10, description="opinions a case may get: the first and further ones"
    )
    case_gauges_interval: float = Field(
        5.0, gt=0, description="seconds between the consumer's counts of cases by state"
    )
    case_streams_max: int = Field(
        200, ge=1, description="case event streams (SSE) one API process serves at once"
    )
    case_streams_per_case: int = Field(
        3, ge=1, description="case event streams open at once for one case"
    )
    case_stream_heartbeat_seconds: float = Field(
        15.0, gt=0, le=300, description="seconds between the comments that keep a stream open"
    )
    case_stream_max_seconds: float = Field(
        3600.0,
        gt=0,
        description="seconds a stream lasts at most (sooner if its token expires); the client "
        "reconnects with Last-Event-ID",
    )

    def _secrets(self) -> dict[str, str]:
        return {
            **super()._secrets(),
            "tokens.signing_key_pem": self.tokens.signing_key_pem.get_secret_value() or "",
            "field_encryption_key": self.field_encryption_key.get_secret_value(),
        }
