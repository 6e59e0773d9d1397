"""How `referrals_common.edge.server.serve` starts uvicorn (no server is started here)."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn

from referrals_common.edge.server import WORKER_HEALTHCHECK_SECONDS, HeaderDeadlineProtocol, serve
from referrals_common.settings import HttpSettings

pytestmark = pytest.mark.unit


def test_workers_are_given_time_to_start_before_their_health_check_kills_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))

    serve("referrals_intake.main:app_from_environment", http=HttpSettings(), workers=2)

    assert seen["app"] == "referrals_intake.main:app_from_environment"
    assert seen["workers"] == 2
    # uvicorn's default (5 s) kills a worker still importing its modules on a busy machine.
    assert seen["timeout_worker_healthcheck"] == WORKER_HEALTHCHECK_SECONDS >= 30
    assert seen["http"].func is HeaderDeadlineProtocol
    assert seen["access_log"] is False
