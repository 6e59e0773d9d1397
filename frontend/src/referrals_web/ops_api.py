"""The ops screen's calls to the platform: partners' operator API (a case's timeline, what is
overdue, dead letters and their replay) with the web application's operator key, and intake's
case list with the front end's key (to find a case by the reference the patient sees).

The operator key (`WebSettings.ops_api_key`) stays on this server: the ops pages use it only for
an operator signed in to /ops, and partners audits each call under it (the web application's own
`ops_actions` names the operator).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx

from referrals_web.platform import Platform, json_object, json_objects


class NoOpsKey(Exception):
    """The web application holds no operator key: the ops screen cannot call partners."""


class OpsApi:
    def __init__(self, platform: Platform, key: str) -> None:
        self.platform = platform
        self._key = key

    def _auth(self) -> dict[str, str]:
        if not self._key:
            raise NoOpsKey
        return {"X-Api-Key": self._key}

    async def _get(self, path: str, **params: Any) -> httpx.Response:
        return await self.platform._send(
            "GET", f"{self.platform.partners}{path}", headers=self._auth(), params=params
        )

    async def timeline(self, case_id: UUID) -> dict[str, Any]:
        """The case's journey across the services (partners' `…/timeline`)."""
        return json_object(await self._get(f"/v1/ops/cases/{case_id}/timeline"))

    async def routing(self, case_id: UUID) -> dict[str, Any]:
        return json_object(await self._get(f"/v1/ops/cases/{case_id}/routing"))

    async def overdue(self) -> list[dict[str, Any]]:
        return json_objects(await self._get("/v1/ops/overdue", limit=50))

    async def dead_letter_topics(self) -> list[dict[str, Any]]:
        return json_objects(await self._get("/v1/ops/dead-letters"))

    async def dead_letters(self, topic: str) -> list[dict[str, Any]]:
        return json_objects(await self._get(f"/v1/ops/dead-letters/{quote(topic, safe='')}"))

    async def replay(
        self, topic: str, partition: int, offset: int, idempotency_key: str
    ) -> dict[str, Any]:
        """Send one dead letter back to its topic, once per `idempotency_key`."""
        path = f"/v1/ops/dead-letters/{quote(topic, safe='')}/{partition}/{offset}/replay"
        response = await self.platform._send(
            "POST",
            f"{self.platform.partners}{path}",
            headers={**self._auth(), "Idempotency-Key": idempotency_key},
        )
        return json_object(response)

    async def cases_by_reference(self, reference: str) -> list[dict[str, Any]]:
        """The cases this front end opened with the reference (`3F0F-6C7D`), from intake."""
        response = await self.platform._send(
            "GET",
            f"{self.platform.intake}/v1/cases",
            front_end=True,
            params={"reference": reference, "limit": 20},
        )
        items: list[dict[str, Any]] = json_object(response)["items"]
        return items
