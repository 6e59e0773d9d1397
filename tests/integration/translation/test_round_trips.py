"""What translation asks PostgreSQL, counted (issue 25, cost per case): every statement as asyncpg
sends it (translation's go through asyncpg itself, in the inbox's transaction), none through
SQLAlchemy's session. A known case's lock is one statement, a new case's two; a submission keeps
its destination in one statement and gives the documents waiting for it their verdicts in one
more; a withdrawal is one. The rows they leave are checked too; that the verdicts go out in order
and exactly once is tested end to end in test_verdicts_over_kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from referrals_common.contracts import (
    CaseSubmitted,
    CaseWithdrawn,
    Destination,
    DocumentKind,
    DocumentStored,
)
from referrals_common.db import Database
from referrals_common.migrations import upgrade_async
from referrals_common.settings import PostgresSettings
from referrals_translation.acceptance import acceptable_languages
from referrals_translation.consumers import CONSUMER_NAME
from referrals_translation.main import MIGRATIONS
from referrals_translation.repository import TranslationRepository
from referrals_translation.service import Reading, Translation
from tests.integration.statements_sent import introspection, queries_sent

pytestmark = pytest.mark.integration

TO_GERMANY = Destination(preference="countries", countries=["DE"])
IN_UKRAINE = Destination(preference="ukraine")
READINGS = {
    "german": Reading(
        outcome="text", main_language="de", languages=(("de", 1.0),), confidence=0.99, pages=2
    ),
    "ukrainian": Reading(
        outcome="text", main_language="uk", languages=(("uk", 1.0),), confidence=0.97, pages=1
    ),
    "blank": Reading(outcome="unreadable", reason="no_text", detail="No text on any page."),
}


class Reader:
    async def read(self, object_key: str, media_type: str) -> Reading:
        return READINGS[object_key.rsplit("/", 1)[-1]]


@pytest.fixture
async def db(new_database: Any) -> AsyncIterator[Database]:
    dsn = await new_database("translation")
    await upgrade_async(dsn, MIGRATIONS)
    database = Database(PostgresSettings(dsn=dsn))
    yield database
    await database.dispose()


def firsts(statements: list[str]) -> list[str]:
    """Each statement's first three words (lower case), asyncpg's own look-ups left out."""
    return [
        " ".join(statement.lower().split()[:3])
        for statement in statements
        if not introspection(statement)
    ]


def stored(case_id: uuid.UUID, name: str) -> DocumentStored:
    document_id = uuid.uuid4()
    return DocumentStored(
        case_id=case_id,
        document_id=document_id,
        kind=DocumentKind.PATHOLOGY_REPORT,
        media_type="application/pdf",
        size_bytes=1024,
        sha256="0" * 64,
        object_key=f"cases/{case_id}/{document_id}/{name}",
        stored_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    )


async def apply(db: Database, use_case: Any, event_type: str, *args: Any) -> None:
    """A use case as the consumer runs it: its inbox row, the use case, one commit."""
    async with db.unit_of_work() as uow:
        assert await uow.inbox.record(CONSUMER_NAME, uuid.uuid4(), event_type)
        await use_case(uow, *args)
        await uow.commit()


async def test_a_known_cases_lock_is_one_statement(db: Database) -> None:
    case_id = uuid.uuid4()
    async with queries_sent(db) as sent, db.unit_of_work() as uow:
        created = await TranslationRepository(uow).locked_case(case_id)
        await uow.commit()
    assert (created.case_id, created.acceptable, created.withdrawn) == (case_id, None, False)
    # seen missing: inserted (and so held); no SQLAlchemy session, BEGIN with the first
    assert firsts(sent.native) == [
        "begin; set transaction",
        "select case_id, acceptable,",
        "insert into cases",
        "commit",
    ]
    assert sent.orm == []

    async with queries_sent(db) as sent, db.unit_of_work() as uow:
        known = await TranslationRepository(uow).locked_case(case_id)
        await uow.commit()
    assert known.case_id == case_id
    assert firsts(sent.native)[1:] == ["select case_id, acceptable,", "commit"]
    assert sent.native[1].endswith("FOR UPDATE")


async def test_a_submission_keeps_its_destination_and_judges_the_waiting_documents_in_two_statements(  # noqa: E501
    db: Database,
) -> None:
    translation = Translation(Reader(), acceptable_languages)
    case_id = uuid.uuid4()
    documents = [stored(case_id, name) for name in ("german", "ukrainian", "blank")]
    for document in documents:
        await apply(db, translation.on_document_stored, DocumentStored.event_type, document)

    submitted = CaseSubmitted.event_type
    async with queries_sent(db) as sent:
        await apply(db, translation.on_case_submitted, submitted, case_id, TO_GERMANY)
    assert firsts(sent.native) == [
        "begin; insert into",  # the inbox row
        "insert into cases",  # the destination, the case's row locked
        "select document_id, case_id,",  # the documents waiting for it
        "update document_checks as",  # their verdicts
        "insert into outbox",  # their events, in one statement
        "commit",
    ]
    assert sent.orm == []

    async with db.engine.connect() as connection:
        case = (
            await connection.execute(
                text("SELECT acceptable, destination, withdrawn FROM cases WHERE case_id = :c"),
                {"c": case_id},
            )
        ).one()
        checks = (
            await connection.execute(
                text(
                    "SELECT document_id, verdict, decided_at IS NOT NULL FROM document_checks "
                    "WHERE case_id = :c"
                ),
                {"c": case_id},
            )
        ).all()
        outbox = (
            await connection.execute(text("SELECT event_type FROM outbox ORDER BY seq"))
        ).scalars()
    assert tuple(case) == (["en", "de"], TO_GERMANY.model_dump(mode="json"), False)
    verdicts = {row[0]: (row[1], row[2]) for row in checks}
    assert verdicts == {
        documents[0].document_id: ("accepted", True),
        documents[1].document_id: ("translation_required", True),
        documents[2].document_id: ("unreadable", True),
    }
    assert list(outbox) == [
        "referrals.document.language_accepted.v1",
        "referrals.document.translation_required.v1",
        "referrals.document.unreadable.v1",
    ]

    # The first destination stands: a second submission changes nothing and judges nothing.
    async with queries_sent(db) as sent:
        await apply(db, translation.on_case_submitted, submitted, case_id, IN_UKRAINE)
    assert firsts(sent.native) == ["begin; insert into", "insert into cases", "commit"]


async def test_a_withdrawal_is_one_statement_and_stops_every_verdict(db: Database) -> None:
    translation = Translation(Reader(), acceptable_languages)
    case_id = uuid.uuid4()
    await apply(
        db, translation.on_document_stored, DocumentStored.event_type, stored(case_id, "german")
    )
    async with queries_sent(db) as sent:
        await apply(db, translation.on_case_withdrawn, CaseWithdrawn.event_type, case_id)
    assert firsts(sent.native) == ["begin; insert into", "insert into cases", "commit"]

    later = stored(case_id, "german")
    await apply(db, translation.on_document_stored, DocumentStored.event_type, later)
    await apply(db, translation.on_case_submitted, CaseSubmitted.event_type, case_id, TO_GERMANY)
    async with db.engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT verdict FROM document_checks WHERE case_id = :c"), {"c": case_id}
            )
        ).all()
        withdrawn = (
            await connection.execute(
                text("SELECT withdrawn, acceptable FROM cases WHERE case_id = :c"), {"c": case_id}
            )
        ).one()
        events = (await connection.execute(text("SELECT count(*) FROM outbox"))).scalar()
    assert [tuple(row) for row in rows] == [(None,)]  # the one read before, never judged
    assert tuple(withdrawn) == (True, None)
    assert events == 0
