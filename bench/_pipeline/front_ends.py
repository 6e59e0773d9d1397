"""The partner front ends of the pipeline benchmark, and each case as they drove it."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from _pipeline.documents import DocumentSet

CONSENT_VERSION = "2026-01"


@dataclass
class CaseRun:
    """One case as a front end drove it (wall times)."""

    index: int
    phase: str
    case_id: str = ""
    opened: float = 0.0
    due: float | None = None
    """When its submit was scheduled (fixed-rate phase)."""
    submitted: float = 0.0
    """When the submit's HTTP answer arrived: the latency's start."""
    submit_ms: float = 0.0
    prepare_s: float = 0.0
    error: str = ""


ICD10 = ["C50.1", "C50.2", "C50.3", "C50.4", "C50.5", "C50.8", "C50.9"]
STAGES = [("cT1N1M0", "IIA"), ("cT2N0M0", "IIA"), ("cT2N1M0", "IIB"), ("cT3N1M0", "IIIA")]


def case_body(i: int, seed: int) -> dict[str, Any]:
    """The demo's case (a patient in Kyiv asking for an opinion in Germany), varied per case."""
    from devstack.demo import CASE

    rng = random.Random(f"{seed}-case-{i}")
    tnm, group = rng.choice(STAGES)
    return {
        **CASE,
        "diagnosis": {**CASE["diagnosis"], "icd10": rng.choice(ICD10)},
        "stage": {"tnm": tnm, "group": group},
        "destination": {"preference": "countries", "countries": ["DE"]},
        "date_of_birth": f"{rng.randint(1950, 1995)}-{rng.randint(1, 12):02d}-"
        f"{rng.randint(1, 28):02d}",
        "contact": {
            "email": f"patient-{seed}-{i}@example.org",
            "phone": f"+38050{rng.randint(1000000, 9999999)}",
        },
    }


class FrontEnds:
    """The partner front ends: `clients` concurrent connections to intake and to records, with
    the demo front end's API key; each case then uses its own case access token.

    A request that fails in transport (a keep-alive connection the server closed as it was
    reused) is sent once more, as a front end would: creation and submission carry an
    Idempotency-Key, the same upload twice is one document, and reads are safe."""

    TOKEN_REFRESH_AFTER_S = 600.0
    """Case tokens live 15 minutes; older ones are renewed before a timed phase."""

    def __init__(
        self, apis: dict[str, str], api_key: str, docs: DocumentSet, clients: int, seed: int
    ):
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        timeout = httpx.Timeout(300.0, pool=None)
        self.intake = httpx.AsyncClient(base_url=apis["intake"], timeout=timeout, limits=limits)
        self.records = httpx.AsyncClient(base_url=apis["records"], timeout=timeout, limits=limits)
        self.api_key = api_key
        self.docs = docs
        self.seed = seed
        self.tokens: dict[str, tuple[str, float]] = {}
        self.retries = 0

    async def _call(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        for attempt in (1, 2):
            try:
                response = await client.request(method, url, **kwargs)
                break
            except httpx.TransportError:
                if attempt == 2:
                    raise
                self.retries += 1
        if response.is_error:
            raise RuntimeError(
                f"{method} {response.request.url.path} → {response.status_code}: "
                f"{response.text[:300]}"
            )
        return response

    def _auth(self, case_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[case_id][0]}"}

    async def prepare(self, run: CaseRun) -> None:
        """Open the case, give both consents, upload three documents, and wait until intake
        lists all three (it learns of them from records' events)."""
        run.opened = time.time()
        n = run.index + (0 if run.phase == "fixed" else 100_000)
        created = (
            await self._call(
                self.intake,
                "POST",
                "/v1/cases",
                json=case_body(n, self.seed),
                headers={"X-Api-Key": self.api_key, "Idempotency-Key": str(uuid.uuid4())},
            )
        ).json()
        run.case_id = created["case"]["id"]
        self.tokens[run.case_id] = (created["access_token"], time.time())
        auth = self._auth(run.case_id)
        for kind in ("processing", "cross_border"):
            await self._call(
                self.intake,
                "PUT",
                f"/v1/cases/{run.case_id}/consents/{kind}",
                json={"version": CONSENT_VERSION},
                headers=auth,
            )
        documents = self.docs.for_case(n, run.case_id)
        for spec, content in documents:
            await self._call(
                self.records,
                "POST",
                f"/v1/cases/{run.case_id}/documents",
                data={"kind": spec.kind},
                files={"file": (spec.file_name, content, "application/pdf")},
                headers=auth,
            )
        pause = 0.2
        while True:
            case = await self._call(self.intake, "GET", f"/v1/cases/{run.case_id}", headers=auth)
            if len(case.json()["documents"]) >= len(documents):
                break
            await asyncio.sleep(pause)
            pause = min(1.0, pause * 1.5)
        run.prepare_s = time.time() - run.opened

    async def refresh(self, case_id: str) -> None:
        """A new case token from the front end that opened the case."""
        if time.time() - self.tokens[case_id][1] < self.TOKEN_REFRESH_AFTER_S:
            return
        fresh = await self._call(
            self.intake,
            "POST",
            f"/v1/cases/{case_id}/access-token",
            headers={"X-Api-Key": self.api_key},
        )
        self.tokens[case_id] = (fresh.json()["access_token"], time.time())

    async def submit(self, run: CaseRun) -> None:
        began = time.time()
        await self._call(
            self.intake,
            "POST",
            f"/v1/cases/{run.case_id}/submit",
            headers={**self._auth(run.case_id), "Idempotency-Key": str(uuid.uuid4())},
        )
        run.submitted = time.time()
        run.submit_ms = (run.submitted - began) * 1000
        self.tokens.pop(run.case_id, None)

    async def close(self) -> None:
        await self.intake.aclose()
        await self.records.aclose()
