"""Translation's use cases against a fake unit of work and an in-memory repository: a document
read and its verdict queued as soon as the case's destination is known (whichever comes first),
a redelivered announcement read once, a withdrawn case left unread, the center's opinion never
checked; and that no use case commits (the consumer's inbox transaction does). No database and
no reading workers: the reader is a stand-in, and the integration tests run the same rules over
real Kafka, MinIO and PostgreSQL (tests/integration/translation)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from opentelemetry import context as otel_context

from referrals_common.contracts import (
    Destination,
    DocumentKind,
    DocumentLanguageAccepted,
    DocumentStored,
    DocumentTranslationRequired,
    DocumentUnreadable,
)
from referrals_translation.acceptance import acceptable_languages
from referrals_translation.models import CaseLanguages, DocumentCheck, utcnow
from referrals_translation.service import ObjectGone, Reading, Translation
from tests.unit.fakes import FakeUnitOfWork, StatementCountingOutbox

pytestmark = pytest.mark.unit

CASE = uuid.UUID("00000000-0000-4000-8000-00000000ca5e")
TO_GERMANY = Destination(preference="countries", countries=["DE"])  # English or German
IN_UKRAINE = Destination(preference="ukraine")  # English or Ukrainian

ACCEPTED = DocumentLanguageAccepted.event_type
TRANSLATION_REQUIRED = DocumentTranslationRequired.event_type
UNREADABLE = DocumentUnreadable.event_type

UKRAINIAN = Reading(
    outcome="text",
    main_language="uk",
    languages=(("uk", 0.93), ("en", 0.07)),
    confidence=0.97,
    pages=2,
    method="text_layer",
)
GERMAN = Reading(
    outcome="text", main_language="de", languages=(("de", 1.0),), confidence=0.99, pages=1
)
SCRAMBLED = Reading(outcome="unreadable", reason="no_text", detail="No text on any page.")


@dataclass
class FakeTranslationRepository:
    """`TranslationRepository` in memory: the cases' rows, the documents' checks, and which
    cases a use case locked (in order)."""

    cases: dict[UUID, CaseLanguages] = field(default_factory=dict)
    checks: dict[UUID, DocumentCheck] = field(default_factory=dict)
    locked: list[UUID] = field(default_factory=list)

    async def read_already(self, document_ids: Sequence[UUID]) -> set[UUID]:
        return {d for d in document_ids if d in self.checks}

    async def is_read(self, document_id: UUID) -> bool:
        return document_id in self.checks

    async def add_check(self, check: DocumentCheck) -> None:
        self.checks[check.document_id] = check.model_copy()

    async def waiting_checks(self, case_id: UUID) -> list[DocumentCheck]:
        """Copies, as rows read from a table are: a verdict is kept by `record_verdicts`."""
        waiting = [c for c in self.checks.values() if c.case_id == case_id and c.verdict is None]
        return [c.model_copy() for c in sorted(waiting, key=lambda c: c.checked_at)]

    async def record_verdicts(self, checks: Sequence[DocumentCheck]) -> None:
        for check in checks:
            kept = self.checks[check.document_id]
            kept.verdict, kept.decided_at = check.verdict, check.decided_at

    async def set_destination(
        self, case_id: UUID, acceptable: list[str], destination: dict[str, Any]
    ) -> bool:
        case = await self.locked_case(case_id)
        if case.withdrawn or case.acceptable is not None:
            return False
        case.acceptable, case.destination = acceptable, destination
        return True

    async def withdraw(self, case_id: UUID) -> None:
        (await self.locked_case(case_id)).withdrawn = True

    looked_up: list[UUID] = field(default_factory=list)

    async def case(self, case_id: UUID) -> CaseLanguages | None:
        self.looked_up.append(case_id)
        return self.cases.get(case_id)

    async def locked_case(self, case_id: UUID) -> CaseLanguages:
        self.locked.append(case_id)
        return self.cases.setdefault(
            case_id, CaseLanguages(case_id=case_id, withdrawn=False, updated_at=utcnow())
        )


@dataclass
class FakeReader:
    """Reads each object as told (`readings` by object key); counts what it was asked."""

    readings: dict[str, Reading] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def read(self, object_key: str, media_type: str) -> Reading:
        self.asked.append(object_key)
        if object_key not in self.readings:
            raise ObjectGone(object_key)
        return self.readings[object_key]


@dataclass
class World:
    repo: FakeTranslationRepository
    reader: FakeReader
    translation: Translation


@pytest.fixture
def world() -> World:
    repo = FakeTranslationRepository()
    reader = FakeReader()
    translation = Translation(reader, acceptable_languages, repository=lambda uow: repo)
    return World(repo, reader, translation)


def stored(
    world: World, reading: Reading | None, kind: DocumentKind = DocumentKind.PATHOLOGY_REPORT
) -> DocumentStored:
    """A document of CASE announced by records; the reader will find `reading` in it (None:
    the object is gone)."""
    document_id = uuid.uuid4()
    key = f"cases/{CASE}/{document_id}"
    if reading is not None:
        world.reader.readings[key] = reading
    return DocumentStored(
        case_id=CASE,
        document_id=document_id,
        kind=kind,
        media_type="application/pdf",
        size_bytes=1024,
        sha256="0" * 64,
        object_key=key,
        stored_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        referral_id=uuid.uuid4() if kind == DocumentKind.OPINION else None,
    )


def verdict(uow: FakeUnitOfWork, document: DocumentStored) -> Any:
    """The one verdict queued for `document`."""
    [found] = [e.data for e, _ in uow.outbox.events if e.data.document_id == document.document_id]
    return found


async def test_a_document_read_before_the_destination_gets_its_verdict_at_submission(
    world: World,
) -> None:
    document = stored(world, UKRAINIAN)
    uow = FakeUnitOfWork()
    await world.translation.on_document_stored(uow, document)
    assert uow.outbox.events == []  # read, but where the case goes is not known yet
    check = world.repo.checks[document.document_id]
    assert (check.outcome, check.main_language, check.verdict) == ("text", "uk", None)
    assert uow.committed is False

    submission = FakeUnitOfWork()
    await world.translation.on_case_submitted(submission, CASE, IN_UKRAINE)
    assert submission.outbox.types() == [ACCEPTED]
    accepted = verdict(submission, document)
    assert accepted.main_language == "uk"
    assert [(s.language, s.share) for s in accepted.languages] == [("uk", 0.93), ("en", 0.07)]
    assert check.verdict == "accepted" and check.decided_at is not None
    assert world.repo.cases[CASE].acceptable == ["en", "uk"]
    assert submission.committed is False


async def test_a_document_stored_after_submission_gets_its_verdict_at_once(
    world: World,
) -> None:
    await world.translation.on_case_submitted(FakeUnitOfWork(), CASE, TO_GERMANY)
    document = stored(world, UKRAINIAN)
    uow = FakeUnitOfWork()
    await world.translation.on_document_stored(uow, document)
    assert uow.outbox.types() == [TRANSLATION_REQUIRED]
    required = verdict(uow, document)
    assert required.detected_language == "uk"
    assert required.acceptable_languages == ["en", "de"]
    assert world.repo.checks[document.document_id].verdict == "translation_required"
    assert world.repo.locked == [CASE, CASE]  # each path held the case's row
    assert uow.committed is False


async def test_every_waiting_document_is_judged_in_the_order_it_was_read(world: World) -> None:
    documents = [stored(world, reading) for reading in (GERMAN, UKRAINIAN, SCRAMBLED)]
    for document in documents:
        await world.translation.on_document_stored(FakeUnitOfWork(), document)
    uow = FakeUnitOfWork()
    await world.translation.on_case_submitted(uow, CASE, TO_GERMANY)
    assert uow.outbox.types() == [ACCEPTED, TRANSLATION_REQUIRED, UNREADABLE]
    assert verdict(uow, documents[2]).reason == "no_text"
    assert uow.committed is False


async def test_a_cases_waiting_verdicts_are_queued_in_one_outbox_statement(world: World) -> None:
    documents = [stored(world, reading) for reading in (GERMAN, UKRAINIAN, SCRAMBLED)]
    for document in documents:
        await world.translation.on_document_stored(FakeUnitOfWork(), document)
    uow = FakeUnitOfWork()
    uow.outbox = outbox = StatementCountingOutbox()
    await world.translation.on_case_submitted(uow, CASE, TO_GERMANY)
    assert outbox.types() == [ACCEPTED, TRANSLATION_REQUIRED, UNREADABLE]
    assert outbox.statements == 1


async def test_a_redelivered_document_is_read_once_and_judged_once(world: World) -> None:
    await world.translation.on_case_submitted(FakeUnitOfWork(), CASE, TO_GERMANY)
    document = stored(world, GERMAN)
    first = FakeUnitOfWork()
    await world.translation.on_document_stored(first, document)
    assert first.outbox.types() == [ACCEPTED]

    again = FakeUnitOfWork()
    await world.translation.on_document_stored(again, document)
    assert again.outbox.events == []
    assert world.reader.asked == [document.object_key]
    assert again.committed is False


async def test_the_first_destination_stands(world: World) -> None:
    document = stored(world, UKRAINIAN)
    await world.translation.on_document_stored(FakeUnitOfWork(), document)
    await world.translation.on_case_submitted(FakeUnitOfWork(), CASE, IN_UKRAINE)
    again = FakeUnitOfWork()
    await world.translation.on_case_submitted(again, CASE, TO_GERMANY)
    assert again.outbox.events == []
    assert world.repo.cases[CASE].acceptable == ["en", "uk"]


async def test_a_withdrawn_case_is_neither_read_nor_judged(world: World) -> None:
    read_before = stored(world, UKRAINIAN)
    await world.translation.on_document_stored(FakeUnitOfWork(), read_before)
    withdrawal = FakeUnitOfWork()
    await world.translation.on_case_withdrawn(withdrawal, CASE)
    assert world.repo.cases[CASE].withdrawn is True
    assert withdrawal.committed is False

    later = stored(world, GERMAN)
    uow = FakeUnitOfWork()
    await world.translation.on_document_stored(uow, later)
    assert world.reader.asked == [read_before.object_key]
    assert later.document_id not in world.repo.checks

    submission = FakeUnitOfWork()
    await world.translation.on_case_submitted(submission, CASE, IN_UKRAINE)
    assert (uow.outbox.events, submission.outbox.events) == ([], [])
    assert world.repo.checks[read_before.document_id].verdict is None


async def test_the_centers_opinion_is_not_checked(world: World) -> None:
    await world.translation.on_case_submitted(FakeUnitOfWork(), CASE, TO_GERMANY)
    opinion = stored(world, GERMAN, kind=DocumentKind.OPINION)
    uow = FakeUnitOfWork()
    await world.translation.on_document_stored(uow, opinion)
    assert (uow.outbox.events, world.reader.asked, world.repo.checks) == ([], [], {})


async def test_a_document_deleted_before_it_was_read_gets_no_verdict(world: World) -> None:
    await world.translation.on_case_submitted(FakeUnitOfWork(), CASE, TO_GERMANY)
    gone = stored(world, None)
    uow = FakeUnitOfWork()
    await world.translation.on_document_stored(uow, gone)
    assert world.reader.asked == [gone.object_key]
    assert (uow.outbox.events, world.repo.checks) == ([], {})


async def test_reading_ahead_starts_only_documents_not_read_yet(world: World) -> None:
    done = stored(world, GERMAN)
    await world.translation.on_document_stored(FakeUnitOfWork(), done)
    fresh = stored(world, UKRAINIAN)
    opinion = stored(world, GERMAN, kind=DocumentKind.OPINION)
    root = otel_context.get_current()
    uow = FakeUnitOfWork()
    started = await world.translation.read_ahead(
        uow, [(done, root), (fresh, root), (opinion, root)]
    )
    assert started == [fresh.document_id]
    await world.translation.on_document_stored(uow, fresh)  # takes the reading started ahead
    assert world.reader.asked == [done.object_key, fresh.object_key]
    world.translation.forget(started)
    assert uow.committed is False


async def test_a_document_read_ahead_takes_one_look_at_its_case(world: World) -> None:
    await world.translation.on_case_submitted(FakeUnitOfWork(), CASE, TO_GERMANY)
    fresh = stored(world, UKRAINIAN)
    uow = FakeUnitOfWork()
    started = await world.translation.read_ahead(uow, [(fresh, otel_context.get_current())])
    world.repo.locked.clear()
    await world.translation.on_document_stored(uow, fresh)
    world.translation.forget(started)
    # the case's locked row only: no lookup of it before (the reading is there already)
    assert (world.repo.looked_up, world.repo.locked) == ([], [CASE])
    assert verdict(uow, fresh).detected_language == "uk"


async def test_a_case_withdrawn_while_its_document_was_read_ahead_keeps_no_reading(
    world: World,
) -> None:
    await world.translation.on_case_submitted(FakeUnitOfWork(), CASE, TO_GERMANY)
    fresh = stored(world, UKRAINIAN)
    uow = FakeUnitOfWork()
    started = await world.translation.read_ahead(uow, [(fresh, otel_context.get_current())])
    await world.translation.on_case_withdrawn(FakeUnitOfWork(), CASE)
    await world.translation.on_document_stored(uow, fresh)
    world.translation.forget(started)
    assert (uow.outbox.events, world.repo.checks) == ([], {})


class DatabaseReached(AssertionError):
    """The real repository asked the unit of work for its transaction."""


class GuardedUnitOfWork(FakeUnitOfWork):
    """A unit of work without a transaction yet, which refuses to open one."""

    native = None

    async def open_with(self, statement: str) -> str | None:
        raise DatabaseReached(statement)


async def test_a_use_case_goes_through_its_repository() -> None:
    """The real default reaches the database through the unit of work's transaction (never its
    ORM session): the guard says so, which is what proves the fakes above stand where the
    repository does."""
    translation = Translation(FakeReader(), acceptable_languages)
    with pytest.raises(DatabaseReached):
        await translation.on_case_withdrawn(GuardedUnitOfWork(), CASE)
