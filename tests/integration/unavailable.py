"""What a service answers while its database or object store is away."""

from __future__ import annotations

import httpx

from referrals_common.api.problems import PROBLEM_MEDIA_TYPE, problem_type


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["type"] == problem_type("service-unavailable")
