"""Partners' settings: the shared ones plus keys, deadlines, the scheduler and webhooks."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from referrals_common.settings import ApiServiceSettings, CaseTokenCheckSettings
from referrals_common.webhooks import WebhookRetrySettings
from referrals_common.webhooks.retention import RetentionSettings


class PartnersSettings(ApiServiceSettings, CaseTokenCheckSettings):
    service_name: ClassVar[str] = "partners"

    # AES-GCM key (base64, 32 bytes) for webhook signing secrets at rest.
    field_encryption_key: SecretStr = SecretStr("")
    # X25519 private key (base64) that opens the insurance policies intake seals to partners
    # (`case.policy_shared`); empty: the accepting center reads the payer without the policy.
    policy_private_key: SecretStr = SecretStr("")
    seed_file: str = Field("", description="registry seed to load (default: the sample centers)")
    max_attempts: int = Field(10, ge=1, description="offers per case before it is unroutable")
    deadline_override_seconds: float | None = Field(
        None, gt=0, description="replace every center's answer deadline (demos, tests)"
    )
    info_min_due_seconds: float = Field(
        86400.0,
        gt=0,
        description="the least time a center gives the patient to answer a request (1 day)",
    )
    info_max_due_days: int = Field(90, ge=1, description="the most time a request may take")
    info_reminders_before_seconds: list[float] = Field(
        [259200.0, 28800.0],
        description="when the patient is reminded of an unanswered request, as seconds before "
        "its due time (3 days, and on the day: 8 hours); a reminder whose time passed when the "
        "request was made is skipped",
    )
    choice_count: int = Field(
        3, ge=2, le=10, description="centers proposed to a patient who asked to choose"
    )
    choice_window_seconds: float = Field(
        259200.0, gt=0, description="time to choose (3 days); then the first-ranked is offered"
    )
    meeting_min_notice_seconds: float = Field(
        7200.0, gt=0, description="the earliest an offered meeting time may start (2 hours)"
    )
    meeting_reminders_before_seconds: list[float] = Field(
        [86400.0, 3600.0],
        description="when the patient is reminded of a booked meeting, as seconds before it "
        "starts (a day, and an hour); a reminder whose time passed when it was booked is skipped",
    )
    scheduler_interval_seconds: float = Field(1.0, gt=0)
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_retry: WebhookRetrySettings = Field(
        default_factory=WebhookRetrySettings,
        description="the platform's one webhook retry policy (`referrals_common.webhooks`)",
    )
    webhook_log: RetentionSettings = Field(
        default_factory=RetentionSettings,
        description="how long settled webhook deliveries are kept (30 days)",
    )
    trace_viewer_url: str = Field(
        "",
        description="the trace viewer's base URL, serving Zipkin's query API v2 (the Zipkin "
        "server every deployment runs), an internal address the operators set: "
        "the ops timeline reads a case's spans there (empty: the timeline holds partners' own "
        "records and the dead letters only)",
    )
    trace_viewer_public_url: str = Field(
        "",
        description="where an operator's browser opens the trace viewer, for the timeline's "
        "trace links (empty: `trace_viewer_url`)",
    )
    trace_viewer_timeout_seconds: float = Field(5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _real_registry_in_production(self) -> PartnersSettings:
        # The built-in seed is invented sample centers: routing real patients to them would
        # send their cases nowhere. Production names its own registry file.
        if self.environment == "production" and not self.seed_file:
            raise ValueError(
                "seed_file is empty: in production set REFERRALS_PARTNERS_SEED_FILE to the real "
                "registry (the built-in seed holds invented sample centers)"
            )
        return self

    def _secrets(self) -> dict[str, str]:
        return {
            **super()._secrets(),
            "field_encryption_key": self.field_encryption_key.get_secret_value(),
            "policy_private_key": self.policy_private_key.get_secret_value(),
        }
