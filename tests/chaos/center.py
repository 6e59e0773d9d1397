"""The cancer centers' side of the chaos tests: every sample center accepts every offer and
delivers its opinion, and keeps doing so while the platform's processes and infrastructure fail.

    python -m tests.chaos.center --root <stack directory>

It is `devstack.sample_center` (the same inbox reading, the same answers through the partner and
records APIs with each center's key) with what a real center's system needs when the platform is
partly down: each offer is answered in a task of its own (one slow offer does not hold up the
others), calls are retried politely (`devstack.sample_center.polite_request`: connection errors,
timeouts, 429, 5xx here, and 409 problems with `Retry-After` such as records'
`referral-not-known-yet` and partners' `opinion-not-stored`) until the offer's deadline, an
offer seen twice (at-least-once publication) is answered once, and an accept or delivery that a
retry finds already done counts as done. It prints one JSON line per action on stdout (`retry`
for each retry, `referral unknown to records` when records did not know the offer's referral
yet), `ready` once it reads every inbox, and `gave up` with the error if an offer could not be
answered.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from devstack.platform import PlatformInfo
from devstack.sample_center import (
    OPINION,
    RETRIED_STATUSES,
    Politeness,
    Retry,
    SampleCenters,
    already,
    emit,
    polite_request,
    sample,
)
from devstack.stack import StackInfo, resolve_root

from .polite import Retries, expect

ANSWER_DEADLINE = 300.0
"""Seconds a center keeps trying to answer one offer (longer than any injected outage)."""
RETRIED = RETRIED_STATUSES | {500}
"""What a call retries besides transport errors and 409s with Retry-After: a 500 too, as a
center's system facing a platform whose processes are being killed would."""


class ResilientCenters(SampleCenters):
    def __init__(self, stack: StackInfo, platform: PlatformInfo) -> None:
        super().__init__(stack, platform, decline_first=False)
        self.answered: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.retries = Retries()

    async def on_offer(self, center: str, event: dict[str, Any]) -> None:
        if not str(event.get("type", "")).startswith("referrals.referral.offered"):
            return
        data = event["data"]
        referral_id = str(data["referral_id"])
        if referral_id in self.answered:
            emit("offer seen again", center=center, referral_id=referral_id, event_id=event["id"])
            return
        self.answered.add(referral_id)
        emit("offer received", center=center, case_id=data["case_id"], referral_id=referral_id)
        task = asyncio.create_task(self.answer(center, data))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, center: str, data: dict[str, Any]) -> None:
        case_id, referral_id = str(data["case_id"]), str(data["referral_id"])
        deadline = time.monotonic() + ANSWER_DEADLINE
        headers = {"X-Api-Key": self.keys[center]}
        before = self.retries.total
        log = {"center": center, "case_id": case_id, "referral_id": referral_id}

        def counted(retry: Retry) -> None:
            self.retries.by_cause[f"{retry.call[:60]}: {retry.cause}"] += 1
            if retry.cause == "409 referral-not-known-yet":
                # Records learns of the referral from partners' `referral.requested`, on another
                # topic than the center's offer: until its consumer has read it, the offer's
                # links answer 409 with Retry-After (see the suite's report).
                emit("referral unknown to records", center=center, case_id=case_id)

        async def polite(client: Any, method: str, url: str, **kwargs: Any) -> Any:
            if client is not self.downloads:
                kwargs["headers"] = headers
            return await polite_request(
                client,
                method,
                url,
                politeness=Politeness(
                    budget=max(0.0, deadline - time.monotonic()),
                    backoff_initial=0.25,
                    backoff_max=3.0,
                    statuses=RETRIED,
                ),
                log=log,
                on_retry=counted,
                **kwargs,
            )

        try:
            due = datetime.now(UTC) + timedelta(days=10)
            accepted = await polite(
                self.partners,
                "POST",
                f"/v1/partner/referrals/{referral_id}/accept",
                json={"expected_opinion_at": due.isoformat()},
            )
            if not already(accepted, "accepted", "completed"):
                # (else an earlier attempt went through, its answer was lost)
                expect(accepted, 200)
            emit("accepted", center=center, case_id=case_id)
            fetched = 0
            for document in data["documents"]:
                link = expect(await polite(self.records, "GET", document["fetch_via"]), 200)
                content = expect(await polite(self.downloads, "GET", link.json()["url"]), 200)
                fetched += len(content.content)
            stored = expect(
                await polite(
                    self.records,
                    "POST",
                    f"/v1/referrals/{referral_id}/opinion",
                    files={"file": ("second-opinion.pdf", sample(OPINION), "application/pdf")},
                ),
                200,
                201,
            )
            # Partners learns of the stored opinion from records' event: until then 409
            # opinion-not-stored with Retry-After, which `polite` retries.
            delivered = await polite(
                self.partners,
                "POST",
                f"/v1/partner/referrals/{referral_id}/opinion",
                json={"document_id": stored.json()["id"]},
            )
            if not already(delivered, "completed"):  # (else an earlier attempt went through)
                expect(delivered, 200)
        except Exception as exc:
            emit(
                "gave up", center=center, case_id=case_id, referral_id=referral_id, error=repr(exc)
            )
            return
        emit(
            "opinion delivered",
            center=center,
            case_id=case_id,
            documents=len(data["documents"]),
            bytes_read=fetched,
            retries=self.retries.total - before,
        )


def main(root: Annotated[str | None, typer.Option(help="the stack's directory")] = None) -> None:
    where = resolve_root(root)
    stack, platform = StackInfo.load(where), PlatformInfo.load(where)
    if stack is None or platform is None:
        raise typer.BadParameter(f"no running platform in {where}")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        centers = ResilientCenters(stack, platform)
        try:
            await centers.run(stop)
        finally:
            for task in list(centers.tasks):
                task.cancel()
            emit("stopped", retries=dict(centers.retries.by_cause))

    asyncio.run(serve())


if __name__ == "__main__":
    typer.run(main)
