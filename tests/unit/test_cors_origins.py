"""The CORS setting: web origins per front-end client, none by default; an origin is exactly
scheme://host[:port] (no wildcard, no path, no 'null'), and https outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from referrals_common.settings import ServiceSettings

pytestmark = pytest.mark.unit


def test_no_origin_is_allowed_by_default(clean_env) -> None:
    assert ServiceSettings().front_end_origins == {}


@pytest.mark.parametrize(
    "origin", ["*", "null", "https://app.example/", "https://app.example/path", "HTTPS://APP.EX"]
)
def test_anything_but_an_exact_origin_is_refused(clean_env, origin: str) -> None:
    with pytest.raises(ValidationError, match="is not a web origin"):
        ServiceSettings(front_end_origins={"k1": [origin]})


def test_plain_http_origins_only_in_development(clean_env) -> None:
    local = ServiceSettings(front_end_origins={"k1": ["http://127.0.0.1:5173"]})
    assert local.front_end_origins == {"k1": ["http://127.0.0.1:5173"]}
    with pytest.raises(ValidationError, match="must be https outside development"):
        ServiceSettings.model_validate(
            {
                "environment": "test",
                "front_end_origins": {"k1": ["http://app.example"]},
                "postgres": {"dsn": "postgresql://u:a-real-password-9@db/x"},
                "s3": {"secret_key": "a-real-s3-secret-9"},
            }
        )
