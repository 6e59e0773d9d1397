"""A sample cancer center's system: reads its inbox topics over Kafka and answers through the APIs.

    python -m devstack.sample_center [--root .devstack] [--decline-first]

It plays every sample center of the local platform (each with its own key, as issued by
`devstack up`): it reads each center's inbox topic (`referrals.partner-inbox.<center>.v1`) from
the end, and for every offer it

* declines it (`no_capacity`) if `--decline-first` and this is the first offer of that case it
  sees, so the case is routed to the next center;
* otherwise accepts it, fetches every offered document through records (short-lived links, each
  download audited), uploads its written opinion to records and delivers it through partners.

Each answer is its own trace (a case step of the center's), exported like the services' spans.
It prints one JSON line per action on stdout, and `ready` once it reads every inbox.

Every call is polite (`polite_request`): a connection error, a timeout, 429, 502, 503, 504, or a
409 problem with `Retry-After` (records' `referral-not-known-yet` while its consumer has not read
the grant yet, partners' `opinion-not-stored`) is retried, after `Retry-After` when the answer
has one, else with jittered exponential backoff, for up to two minutes per call; each retry is a
`retry` line. Any other error ends that one offer (`offer failed`), not the process.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextvars import Token
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib import resources
from typing import Annotated, Any

import httpx
import typer
from opentelemetry import context as otel_context
from opentelemetry import trace
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_result,
    stop_before_delay,
    wait_random_exponential,
)

from devstack.platform import PlatformInfo
from devstack.stack import StackInfo, resolve_root

tracer = trace.get_tracer("devstack.sample_center")
OPINION = "opinion_en.pdf"
SAMPLE_OUTCOME = {
    # What the sample opinion (samples/opinion_en.pdf) concludes, in the structured fields.
    "diagnosis": "confirmed",
    "stage": "confirmed",
    "treatment": "agreed",
    "additional_tests": [],
    "clinical_trials": False,
}


def sample(name: str) -> bytes:
    return resources.files("devstack").joinpath(f"samples/{name}").read_bytes()


def emit(action: str, **fields: Any) -> None:
    line = {"at": datetime.now(UTC).isoformat(), "action": action, **fields}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------------ polite calls

RETRIED_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses that say "not now": retried, after `Retry-After` if the answer has one."""
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,  # connection refused or reset, read and write errors
    httpx.RemoteProtocolError,  # the server closed the connection without an answer
)
PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class Politeness:
    """How hard one call tries: `budget` seconds from its first attempt (no retry starts whose
    wait would end past it), backoff from `backoff_initial` doubling up to `backoff_max` (with
    full jitter) when the answer gives no `Retry-After`, and which statuses are retried."""

    budget: float = 120.0
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    statuses: frozenset[int] = RETRIED_STATUSES

    def worth_retrying(self, response: httpx.Response) -> bool:
        """A retried status, or a 409 problem that says when to try again (`Retry-After`)."""
        if response.status_code in self.statuses:
            return True
        return (
            response.status_code == 409
            and response.headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE)
            and retry_after(response) is not None
        )


POLITE = Politeness()


def retry_after(response: httpx.Response) -> float | None:
    """The seconds `Retry-After` asks to wait (delay-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def problem_slug(response: httpx.Response) -> str:
    """The last segment of a problem's `type` (`referral-not-known-yet`), or ""."""
    if not response.headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE):
        return ""
    try:
        return str(response.json().get("type", "")).rsplit("/", 1)[-1]
    except ValueError:
        return ""


@dataclass(frozen=True)
class Retry:
    """One retry of a call: which call, why, which attempt failed, how long until the next."""

    call: str
    cause: str
    attempt: int
    wait: float
    response: httpx.Response | None


def _cause(state: RetryCallState) -> tuple[str, httpx.Response | None]:
    assert state.outcome is not None
    if state.outcome.failed:
        return type(state.outcome.exception()).__name__, None
    response: httpx.Response = state.outcome.result()
    slug = problem_slug(response)
    return f"{response.status_code} {slug}".strip(), response


def _last_outcome(state: RetryCallState) -> Any:
    """The last attempt's answer, or its error raised (tenacity calls this after an attempt)."""
    assert state.outcome is not None
    return state.outcome.result()


async def polite_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    politeness: Politeness = POLITE,
    log: Mapping[str, Any] | None = None,
    on_retry: Callable[[Retry], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """`client.request(method, url, **kwargs)`, retried politely (see `Politeness`); every
    retry is printed as a `retry` line with the fields of `log`, then passed to `on_retry`.

    Returns the first answer not worth retrying, which the caller judges, or the last answer
    once the budget is spent; if the budget is spent on transport errors, raises the last one.
    """
    call = f"{method} {httpx.URL(url).path}"  # never the query: a presigned link's signature
    backoff = wait_random_exponential(
        multiplier=politeness.backoff_initial, max=politeness.backoff_max
    )

    def wait(state: RetryCallState) -> float:
        assert state.outcome is not None
        if not state.outcome.failed:
            asked = retry_after(state.outcome.result())
            if asked is not None:
                return max(asked, 0.1)
        return float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        cause, response = _cause(state)
        note = Retry(call, cause, state.attempt_number, state.upcoming_sleep, response)
        emit(
            "retry",
            call=call,
            cause=cause,
            attempt=note.attempt,
            wait_seconds=round(note.wait, 2),
            **dict(log or {}),
        )
        if on_retry is not None:
            on_retry(note)

    options: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_ERRORS)
        | retry_if_result(politeness.worth_retrying),
        wait=wait,
        stop=stop_before_delay(politeness.budget),
        before_sleep=before_sleep,
        # Out of budget: the last answer for the caller to judge, or the last error raised.
        retry_error_callback=_last_outcome,
        **options,
    )
    return await retrying(client.request, method, url, **kwargs)


def referral_status(response: httpx.Response) -> str:
    """The `referral_status` partners puts in a 409 about a referral's state, or ""."""
    try:
        return str(response.json().get("referral_status", ""))
    except (ValueError, AttributeError):
        return ""


def already(response: httpx.Response, *statuses: str) -> bool:
    """Whether partners refused because the referral is already in one of `statuses`: after a
    retry, the earlier attempt went through and only its answer was lost."""
    return response.status_code == 409 and referral_status(response) in statuses


def describe(exc: BaseException) -> str:
    """An error for the log: the failed call and its problem's detail, or the exception."""
    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        try:
            detail = response.json().get("detail") or response.text[:300]
        except ValueError:
            detail = response.text[:300]
        return f"{exc.request.method} {exc.request.url.path} → {response.status_code}: {detail}"
    return repr(exc)


async def assign_at_end(consumer: Any, names: list[str], *, timeout: float = 10.0) -> None:
    """Assign every partition of the topics `names` to a started aiokafka consumer (no group)
    and place it at their current end, so it reads only what is published from now on."""
    from aiokafka import TopicPartition

    # aiokafka exposes partition counts only through its client's metadata; a topic just
    # created may take a moment to show its partitions there.
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        cluster = await consumer._client.fetch_all_metadata()
        missing = [name for name in names if not cluster.partitions_for_topic(name)]
        if not missing:
            break
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"the broker shows no partitions for {missing}")
        await asyncio.sleep(0.1)
    partitions = [
        TopicPartition(name, p)
        for name in names
        for p in sorted(cluster.partitions_for_topic(name))
    ]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)


class SampleCenters:
    def __init__(self, stack: StackInfo, platform: PlatformInfo, *, decline_first: bool) -> None:
        self.bootstrap = stack.kafka_bootstrap
        self.keys: dict[str, str] = platform.keys()["centers"]
        self.partners = httpx.AsyncClient(base_url=platform.apis["partners"], timeout=30)
        self.records = httpx.AsyncClient(base_url=platform.apis["records"], timeout=60)
        self.downloads = httpx.AsyncClient(timeout=60)
        self.decline_first = decline_first
        self.cases_seen: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer

        from referrals_common.contracts import topics

        inboxes = {topics.partner_inbox(code): code for code in self.keys}
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, client_id="sample-centers"
        )
        await consumer.start()
        try:
            await assign_at_end(consumer, list(inboxes))
            emit("ready", inboxes=len(inboxes))
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for tp, records in batch.items():
                    for record in records:
                        await self.on_offer(inboxes[tp.topic], json.loads(record.value))
        finally:
            await consumer.stop()
            for client in (self.partners, self.records, self.downloads):
                await client.aclose()

    async def on_offer(self, center: str, event: dict[str, Any]) -> None:
        if not str(event.get("type", "")).startswith("referrals.referral.offered"):
            return
        data = event["data"]
        case_id, referral_id = str(data["case_id"]), str(data["referral_id"])
        first = case_id not in self.cases_seen
        self.cases_seen.add(case_id)
        emit("offer received", center=center, case_id=case_id, referral_id=referral_id)
        try:
            await self.respond(center, data, decline=self.decline_first and first)
        except Exception as exc:  # this offer is lost; the next message is read as usual
            emit(
                "offer failed",
                center=center,
                case_id=case_id,
                referral_id=referral_id,
                error=describe(exc),
            )

    async def respond(self, center: str, data: dict[str, Any], *, decline: bool) -> None:
        """Decline the offer, or accept it, read its documents and deliver an opinion."""
        case_id, referral_id = str(data["case_id"]), str(data["referral_id"])
        headers = {"X-Api-Key": self.keys[center]}
        log = {"center": center, "case_id": case_id, "referral_id": referral_id}

        async def polite(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> Any:
            if client is not self.downloads:
                kw["headers"] = headers
            return await polite_request(client, method, url, log=log, **kw)

        if decline:
            with self._step(f"center {center}: decline", case_id) as trace_id:
                response = await polite(
                    self.partners,
                    "POST",
                    f"/v1/partner/referrals/{referral_id}/decline",
                    json={"reason": "no_capacity", "detail": "No tumour board slot this month."},
                )
            emit(
                "declined",
                center=center,
                case_id=case_id,
                status=response.status_code,
                trace_id=trace_id,
            )
            return
        with self._step(f"center {center}: accept", case_id) as trace_id:
            due = datetime.now(UTC) + timedelta(days=10)
            response = await polite(
                self.partners,
                "POST",
                f"/v1/partner/referrals/{referral_id}/accept",
                json={"expected_opinion_at": due.isoformat()},
            )
            if not already(response, "accepted", "completed"):
                response.raise_for_status()
        emit("accepted", center=center, case_id=case_id, trace_id=trace_id)
        with self._step(f"center {center}: review and deliver the opinion", case_id) as trace_id:
            fetched = 0
            for document in data["documents"]:
                # Until records' consumer has read the grant: 409 referral-not-known-yet, retried.
                link = await polite(self.records, "GET", document["fetch_via"])
                link.raise_for_status()
                content = await polite(self.downloads, "GET", link.json()["url"])
                content.raise_for_status()
                fetched += len(content.content)
            stored = await polite(
                self.records,
                "POST",
                f"/v1/referrals/{referral_id}/opinion",
                files={"file": ("second-opinion.pdf", sample(OPINION), "application/pdf")},
            )
            stored.raise_for_status()
            # Partners learns of the stored opinion from records' event: until then it answers
            # 409 opinion-not-stored with Retry-After, and the call is retried.
            delivered = await polite(
                self.partners,
                "POST",
                f"/v1/partner/referrals/{referral_id}/opinion",
                json={"document_id": stored.json()["id"], "outcome": SAMPLE_OUTCOME},
            )
            if not already(delivered, "completed"):
                delivered.raise_for_status()
        emit(
            "opinion delivered",
            center=center,
            case_id=case_id,
            documents=len(data["documents"]),
            bytes_read=fetched,
            trace_id=trace_id,
        )

    def _step(self, name: str, case_id: str) -> Any:
        """A root span for one answer of the center: each is a case step with its own trace."""
        return _Step(name, case_id)


class _Step:
    def __init__(self, name: str, case_id: str) -> None:
        self.span = tracer.start_span(name, context=otel_context.Context())
        self.span.set_attribute("referrals.case_id", case_id)
        self.token: Token[otel_context.Context] | None = None

    def __enter__(self) -> str:
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        return format(self.span.get_span_context().trace_id, "032x")

    def __exit__(self, *exc: object) -> None:
        assert self.token is not None, "entered first"
        otel_context.detach(self.token)
        self.span.end()


def main(
    root: Annotated[str | None, typer.Option(help="the stack's directory")] = None,
    decline_first: Annotated[
        bool, typer.Option(help="decline the first offer of each case (so it is re-routed)")
    ] = False,
) -> None:
    from referrals_common.telemetry import configure_telemetry

    where = resolve_root(root)
    stack, platform = StackInfo.load(where), PlatformInfo.load(where)
    if stack is None or platform is None:
        raise typer.BadParameter(f"no running platform in {where} (make up)")
    provider = configure_telemetry("sample-center")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await SampleCenters(stack, platform, decline_first=decline_first).run(stop)

    try:
        asyncio.run(serve())
    finally:
        provider.shutdown()


if __name__ == "__main__":
    typer.run(main)
