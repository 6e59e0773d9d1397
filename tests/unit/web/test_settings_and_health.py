"""The web application's settings and its health endpoint."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from referrals_web.config import WebSettings
from tests.unit.web.conftest import Browser

pytestmark = pytest.mark.unit


def test_the_settings_come_from_referrals_web_variables(
    monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    monkeypatch.setenv("REFERRALS_WEB_INTAKE_URL", "http://intake:8001")
    monkeypatch.setenv("REFERRALS_WEB_FRONT_END_API_KEY", "rfk_abc_def")
    monkeypatch.setenv("REFERRALS_WEB_POSTGRES__DSN", "postgresql://web:pw@db:5432/web")
    monkeypatch.setenv("REFERRALS_WEB_SMTP__HOST", "mail")
    monkeypatch.setenv("REFERRALS_WEB_SMTP__PORT", "2525")
    monkeypatch.setenv("REFERRALS_WEB_VENDOR_DIR", "/opt/vendor")

    settings = WebSettings()

    assert settings.intake_url == "http://intake:8001"
    assert settings.front_end_api_key.get_secret_value() == "rfk_abc_def"
    assert settings.postgres.dsn.get_secret_value() == "postgresql://web:pw@db:5432/web"
    assert (settings.smtp.host, settings.smtp.port) == ("mail", 2525)
    assert str(settings.vendor_dir) == "/opt/vendor"
    assert settings.environment == "development" and not settings.secure_cookies


def test_the_placeholder_session_secret_is_refused_outside_development(clean_env: None) -> None:
    with pytest.raises(ValidationError, match="session_secret"):
        WebSettings(
            environment="production",
            front_end_api_key="rfk_abc_def",
            postgres={"dsn": "postgresql://web:Xy7q2@db/web"},
        )


async def test_health_answers_json(browser: Browser) -> None:
    response = await browser.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_pages_carry_a_strict_content_security_policy(browser: Browser) -> None:
    page = await browser.get("/")
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert "<script>" not in page.text and " style=" not in page.text
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
