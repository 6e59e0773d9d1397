"""Service settings: one environment for the platform, service-specific overrides, no
placeholder secrets outside development."""

from typing import ClassVar

import pytest
from pydantic import ValidationError

from referrals_common.settings import ServiceSettings

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_env")]


class IntakeSettings(ServiceSettings):
    service_name: ClassVar[str] = "intake"


def test_a_service_specific_variable_overrides_the_platform_wide_one(monkeypatch):
    monkeypatch.setenv("REFERRALS_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("REFERRALS_POSTGRES__DSN", "postgresql://all:x@db/all")
    monkeypatch.setenv("REFERRALS_INTAKE_POSTGRES__DSN", "postgresql://intake:pw@db/intake")
    settings = IntakeSettings()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.postgres.dsn.get_secret_value() == "postgresql://intake:pw@db/intake"
    assert settings.postgres.async_url() == "postgresql+asyncpg://intake:pw@db/intake"


def test_placeholder_secrets_are_accepted_in_development_only(monkeypatch):
    assert IntakeSettings().s3.secret_key.get_secret_value() == "change-me-in-dev-only"
    monkeypatch.setenv("REFERRALS_ENVIRONMENT", "production")
    monkeypatch.setenv("REFERRALS_POSTGRES__DSN", "postgresql://intake:Zq8-real-Kx@db/intake")
    with pytest.raises(ValidationError, match=r"s3.secret_key holds a placeholder"):
        IntakeSettings()


def test_production_starts_with_real_secrets(monkeypatch):
    monkeypatch.setenv("REFERRALS_ENVIRONMENT", "production")
    monkeypatch.setenv("REFERRALS_S3__SECRET_KEY", "vT4q9-Lr2mWx81")
    monkeypatch.setenv("REFERRALS_INTAKE_POSTGRES__DSN", "postgresql://intake:Zq8-real@db/intake")
    assert IntakeSettings().environment == "production"


def test_a_database_url_without_password_is_refused_in_production(monkeypatch):
    monkeypatch.setenv("REFERRALS_ENVIRONMENT", "production")
    monkeypatch.setenv("REFERRALS_S3__SECRET_KEY", "vT4q9-Lr2mWx81")
    monkeypatch.setenv("REFERRALS_POSTGRES__DSN", "postgresql://intake@db/intake")
    with pytest.raises(ValidationError, match=r"postgres.dsn password"):
        IntakeSettings()


def test_partners_refuses_the_sample_registry_in_production(monkeypatch):
    from referrals_partners.config import PartnersSettings

    monkeypatch.setenv("REFERRALS_ENVIRONMENT", "production")
    monkeypatch.setenv("REFERRALS_S3__SECRET_KEY", "vT4q9-Lr2mWx81")
    monkeypatch.setenv("REFERRALS_POSTGRES__DSN", "postgresql://partners:Zq8-real@db/partners")
    monkeypatch.setenv("REFERRALS_PARTNERS_API_KEY_PEPPER", "pK3-long-random-value")
    monkeypatch.setenv(
        "REFERRALS_PARTNERS_FIELD_ENCRYPTION_KEY", "QkFTRTY0LWtleS1vZi0zMi1ieXRlcy0uLi4uLi4uLi4="
    )
    # Partners opens the policies intake seals for the accepting center: a key of its own.
    with pytest.raises(ValidationError, match=r"policy_private_key"):
        PartnersSettings()
    monkeypatch.setenv(
        "REFERRALS_PARTNERS_POLICY_PRIVATE_KEY", "8KGKkMDyc/dNOcoOiPNeRDPPS42jRIgJdbVkD9EYP1U="
    )
    with pytest.raises(ValidationError, match=r"REFERRALS_PARTNERS_SEED_FILE"):
        PartnersSettings()
    monkeypatch.setenv("REFERRALS_PARTNERS_SEED_FILE", "/etc/referrals/centers.yaml")
    assert PartnersSettings().seed_file == "/etc/referrals/centers.yaml"
