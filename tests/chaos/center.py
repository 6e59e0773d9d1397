"""The cancer centers' side of the chaos tests: every sample center accepts every offer and
delivers its opinion, and keeps doing so while the platform's processes and infrastructure fail.

    python -m tests.chaos.center --root <stack directory>

It is `devstack.sample_center` (the same inbox reading, the same answers through the partner and
records APIs with each center's key) with what a real center's system needs when the platform is
partly down: each offer is answered in a task of its own (one slow offer does not hold up the
others), calls are retried politely on connection errors, timeouts and 5xx (`polite.call`), an
offer seen twice (at-least-once publication) is answered once, and an accept or delivery that a
retry finds already done counts as done. It prints one JSON line per action on stdout, `ready`
once it reads every inbox, and `gave up` with the error if an offer could not be answered.
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from devstack.platform import PlatformInfo
from devstack.sample_center import OPINION, SampleCenters, emit, sample
from devstack.stack import StackInfo, resolve_root

from .polite import Retries, call, expect

ANSWER_DEADLINE = 300.0
"""Seconds a center keeps trying to answer one offer (longer than any injected outage)."""


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

        async def polite(client: Any, method: str, url: str, **kwargs: Any) -> Any:
            return await call(
                client,
                method,
                url,
                retries=self.retries,
                deadline=deadline,
                label=f"{method} {url.split('?')[0][:60]}",
                headers=headers if client is not self.downloads else None,
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
            if accepted.status_code == 409 and _status(accepted) in {"accepted", "completed"}:
                pass  # an earlier attempt went through, its answer was lost
            else:
                expect(accepted, 200)
            emit("accepted", center=center, case_id=case_id)
            fetched = 0
            for document in data["documents"]:
                while True:
                    link = await polite(self.records, "GET", document["fetch_via"])
                    if link.status_code == 404 and "no referral" in link.text:
                        # Records learns of the referral from partners' `referral.requested`,
                        # on another topic than the center's offer: until its consumer has read
                        # it, the offer's own links answer 404 (see the suite's report).
                        emit("referral unknown to records", center=center, case_id=case_id)
                        if time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.5)
                        continue
                    break
                expect(link, 200)
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
            while True:
                # Partners learns of the stored opinion from records' event: until then 409
                # opinion-not-stored, and the center retries, as the problem's detail says.
                delivered = await polite(
                    self.partners,
                    "POST",
                    f"/v1/partner/referrals/{referral_id}/opinion",
                    json={"document_id": stored.json()["id"]},
                )
                if delivered.status_code == 409 and "opinion-not-stored" in delivered.text:
                    if time.monotonic() > deadline:
                        raise RuntimeError("partners never learnt of the stored opinion")
                    await asyncio.sleep(0.3)
                    continue
                if delivered.status_code == 409 and _status(delivered) == "completed":
                    break  # an earlier attempt went through
                expect(delivered, 200)
                break
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


def _status(response: Any) -> str:
    try:
        return str(response.json().get("referral_status", ""))
    except ValueError:
        return ""


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
