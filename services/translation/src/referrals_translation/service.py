"""Translation's use cases: read each stored document once, and give one verdict per document as
soon as the case's destination is known.

A document may be stored while the case is still a draft, before anyone knows where the opinion
will come from, and records' and intake's events travel on different topics. So reading and
judging are separate: the reading (languages, pages, method, or why it is unreadable) is kept per
document; the verdict (accepted, translation required, unreadable) is written, with its event,
when both the reading and the destination are there, whichever came last. Each case has a row
whose lock serialises the two paths, so neither can miss the other.

Each use case runs in the unit of work its caller gives (the consumer's inbox transaction, whose
commit also publishes the verdicts through the outbox) and reaches the tables through
`TranslationRepository`; none commits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from referrals_common.contracts import (
    CloudEvent,
    Destination,
    DocumentKind,
    DocumentLanguageAccepted,
    DocumentStored,
    DocumentTranslationRequired,
    DocumentUnreadable,
    EventData,
    new_event,
)
from referrals_common.contracts.translation import ExtractionMethod, LanguageShare
from referrals_common.db import UnitOfWork
from referrals_translation.models import DocumentCheck, utcnow
from referrals_translation.repository import RepositoryFactory, TranslationRepository

log = logging.getLogger(__name__)
tracer = trace.get_tracer("referrals_translation.service")

# The center's opinion is read by the patient, not sent to a center: it is not checked.
NOT_CHECKED = frozenset({DocumentKind.OPINION})


@dataclass(frozen=True)
class Reading:
    """What reading one document found, independent of where the case is going."""

    outcome: Literal["text", "imaging", "unreadable"]
    main_language: str | None = None
    languages: Sequence[tuple[str, float]] = field(default_factory=tuple)
    confidence: float = 0.0
    pages: int = 0
    method: str | None = None
    reason: str | None = None
    detail: str | None = None
    seconds: float = 0.0


class ObjectGone(Exception):
    """The stored object no longer exists (a draft's document deleted before it was read)."""


class DocumentReader(Protocol):
    """Fetches a stored object and reads it within a bounded time; never raises for a bad file."""

    async def read(self, object_key: str, media_type: str) -> Reading: ...


AcceptableLanguages = Callable[[Destination], list[str]]


class Translation:
    def __init__(
        self,
        reader: DocumentReader,
        acceptable_for: AcceptableLanguages,
        repository: RepositoryFactory = TranslationRepository,
    ) -> None:
        self.reader = reader
        self.acceptable_for = acceptable_for
        self.repository = repository
        """Makes the use cases' repository from the unit of work."""
        self._ahead: dict[UUID, asyncio.Task[Reading]] = {}
        """Readings started by `read_ahead`, taken by `on_document_stored`."""

    # ------------------------------------------------------------------ reading ahead
    async def read_ahead(
        self, uow: UnitOfWork, documents: Sequence[tuple[DocumentStored, otel_context.Context]]
    ) -> list[UUID]:
        """Start reading a batch's documents at once, side by side, before their events are
        applied one after the other.

        The documents of one case share a partition and their events are applied in order, so
        without this a consumer would read one document at a time while other workers sit idle.
        Reading has no effect on the database, so it may run ahead; the checker's workers bound
        how many documents are read at the same moment. Each reading runs in the trace of its
        event (`context`). Documents already read (a redelivery) and the center's opinion are
        not started. Returns the ids started; pass them to `forget` once the batch is done."""
        wanted = [(d, ctx) for d, ctx in documents if d.kind not in NOT_CHECKED]
        if not wanted:
            return []
        repo = self.repository(uow)
        already = await repo.read_already([d.document_id for d, _ in wanted])
        started = []
        for stored, parent in wanted:
            if stored.document_id in already or stored.document_id in self._ahead:
                continue
            self._ahead[stored.document_id] = asyncio.create_task(self._read(stored, parent))
            started.append(stored.document_id)
        return started

    def forget(self, document_ids: Sequence[UUID]) -> None:
        """Drop readings started ahead that no event took (a withdrawn case, a failed batch)."""
        for document_id in document_ids:
            task = self._ahead.pop(document_id, None)
            if task is not None and not task.done():
                task.cancel()
            elif task is not None and not task.cancelled():
                task.exception()  # retrieved: a failure is the event's to meet when it is retried

    async def _read(self, stored: DocumentStored, parent: otel_context.Context) -> Reading:
        with tracer.start_as_current_span(
            "document read", context=parent, kind=SpanKind.INTERNAL
        ) as span:
            span.set_attribute("referrals.case_id", str(stored.case_id))
            span.set_attribute("referrals.document_id", str(stored.document_id))
            return await self.reader.read(stored.object_key, str(stored.media_type))

    async def on_document_stored(self, uow: UnitOfWork, stored: DocumentStored) -> None:
        """Read a stored document once and keep its reading; its verdict goes into the outbox
        now if the case's destination is known (else when `case.submitted` comes). Nothing for
        the center's opinion, a document already read, or a withdrawn case."""
        if stored.kind in NOT_CHECKED:
            return
        repo = self.repository(uow)
        if await repo.is_read(stored.document_id):
            return  # the same document announced again: read once
        ahead = self._ahead.pop(stored.document_id, None)
        if ahead is None:
            # Reading takes seconds (OCR): no case row is created, locked or waited for before
            # it (a new row would be held by this transaction, and `case.submitted` for the same
            # case, applied beside it, would wait for the whole reading). A document of a case
            # already withdrawn is not read. (One read ahead is read already: the locked row
            # below says whether the case was withdrawn, without a statement of its own.)
            seen = await repo.case(stored.case_id)
            if seen is not None and seen.withdrawn:
                return
        try:
            if ahead is not None:
                reading = await ahead
            else:
                reading = await self.reader.read(stored.object_key, str(stored.media_type))
        except ObjectGone:
            log.warning("document %s was deleted before it was read", stored.document_id)
            return
        case = await repo.locked_case(stored.case_id)
        if case.withdrawn:
            return  # withdrawn before or while it was read: its reading is not kept
        check = _check_row(stored, reading)
        verdict = None if case.acceptable is None else _decide(check, case.acceptable)
        await repo.add_check(check)  # with its verdict, when it has one
        log.info(
            "document %s read: %s %s in %.2f s",
            stored.document_id,
            reading.outcome,
            reading.main_language or reading.reason or "",
            reading.seconds,
        )
        if verdict is not None:
            await uow.outbox.add(verdict)

    async def on_case_submitted(
        self, uow: UnitOfWork, case_id: UUID, destination: Destination
    ) -> None:
        """Keep where the case's opinion will come from (the languages it accepts), and give
        every document already read its verdict. The first destination stands; a withdrawn case
        gets none."""
        repo = self.repository(uow)
        acceptable = self.acceptable_for(destination)
        if not await repo.set_destination(case_id, acceptable, destination.model_dump(mode="json")):
            return
        waiting = await repo.waiting_checks(case_id)
        verdicts = [_decide(check, acceptable) for check in waiting]
        await repo.record_verdicts(waiting)
        # The case's verdicts in one outbox statement (one round trip, not one per document),
        # in the order the documents were read.
        await uow.outbox.add_all(verdicts)

    async def on_case_withdrawn(self, uow: UnitOfWork, case_id: UUID) -> None:
        """A withdrawn case: from now on no document of it gets a verdict, and documents still
        to come are not read."""
        await self.repository(uow).withdraw(case_id)


def _check_row(stored: DocumentStored, reading: Reading) -> DocumentCheck:
    return DocumentCheck(
        document_id=stored.document_id,
        case_id=stored.case_id,
        kind=str(stored.kind),
        media_type=str(stored.media_type),
        translation_of=stored.translation_of,
        outcome=reading.outcome,
        main_language=reading.main_language,
        languages=[
            {"language": code, "share": round(share, 4)} for code, share in reading.languages
        ],
        confidence=round(reading.confidence, 4),
        pages=reading.pages,
        method=reading.method,
        unreadable_reason=reading.reason,
        unreadable_detail=(reading.detail or "")[:500] or None,
        seconds=round(reading.seconds, 3),
    )


def _decide(check: DocumentCheck, acceptable: list[str]) -> CloudEvent[EventData]:
    """Write the document's verdict on its check; returns its one event, for the caller's
    outbox."""
    event = verdict_event(check, acceptable)
    check.verdict = {
        DocumentLanguageAccepted: "accepted",
        DocumentTranslationRequired: "translation_required",
        DocumentUnreadable: "unreadable",
    }[type(event)]
    check.decided_at = utcnow()
    return new_event(event)


def verdict_event(
    check: DocumentCheck, acceptable: list[str]
) -> DocumentLanguageAccepted | DocumentTranslationRequired | DocumentUnreadable:
    """The verdict on a read document for a case whose acceptable languages are `acceptable`."""
    ids = {"case_id": check.case_id, "document_id": check.document_id}
    if check.outcome == "unreadable":
        return DocumentUnreadable(
            **ids,
            reason=check.unreadable_reason or "no_text",
            detail=check.unreadable_detail or "The document could not be read.",
        )
    if check.outcome == "imaging":
        return DocumentLanguageAccepted(
            **ids,
            languages=[],
            main_language=None,
            confidence=1.0,
            pages=check.pages,
            method=ExtractionMethod.DICOM,
        )
    assert check.main_language is not None
    if check.main_language in acceptable:
        return DocumentLanguageAccepted(
            **ids,
            languages=[LanguageShare(**share) for share in check.languages],
            main_language=check.main_language,
            confidence=check.confidence,
            pages=check.pages,
            method=check.method or ExtractionMethod.TEXT_LAYER,
        )
    return DocumentTranslationRequired(
        **ids,
        detected_language=check.main_language,
        acceptable_languages=acceptable,
        confidence=check.confidence,
    )
