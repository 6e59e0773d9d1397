"""Reading and writing translation's tables inside the caller's unit of work. Nothing here
commits: the consumer's inbox transaction does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from referrals_translation.models import CaseLanguages, DocumentCheck, utcnow


class TranslationRepository:
    """The cases translation has heard of and the readings of their documents."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def read_already(self, document_ids: Sequence[UUID]) -> set[UUID]:
        """Which of these documents have been read (their check is kept)."""
        known = await self.session.execute(
            select(col(DocumentCheck.document_id)).where(
                col(DocumentCheck.document_id).in_(list(document_ids))
            )
        )
        return set(known.scalars())

    async def check(self, document_id: UUID) -> DocumentCheck | None:
        return await self.session.get(DocumentCheck, document_id)

    def add_check(self, check: DocumentCheck) -> None:
        self.session.add(check)

    async def waiting_checks(self, case_id: UUID) -> list[DocumentCheck]:
        """The case's documents read but without a verdict, in the order they were read."""
        waiting = await self.session.execute(
            select(DocumentCheck)
            .where(col(DocumentCheck.case_id) == case_id, col(DocumentCheck.verdict).is_(None))
            .order_by(col(DocumentCheck.checked_at))
        )
        return list(waiting.scalars())

    async def case(self, case_id: UUID) -> CaseLanguages | None:
        """The case's row as it is, if there is one: neither created nor locked."""
        return await self.session.get(CaseLanguages, case_id)

    async def locked_case(self, case_id: UUID) -> CaseLanguages:
        """The case's row, created on first sight, locked until the transaction ends: a case's
        readings and its destination are applied one at a time, so neither misses the other."""
        # Locked first: the row is there for most events (a case's first document made it), and
        # then this is the one round trip. A row seen missing is inserted, then locked.
        case = await self.session.get(
            CaseLanguages, case_id, with_for_update=True, populate_existing=True
        )
        if case is not None:
            return case
        await self.session.execute(
            insert(CaseLanguages)
            .values(case_id=case_id, withdrawn=False, updated_at=utcnow())
            # A new row is visible to this transaction at once; a concurrent one waits for ours.
            .on_conflict_do_nothing(index_elements=["case_id"])
        )
        case = await self.session.get(
            CaseLanguages, case_id, with_for_update=True, populate_existing=True
        )
        assert case is not None
        return case


RepositoryFactory = Callable[[AsyncSession], TranslationRepository]
"""How a use case gets its repository from the unit of work's session (a test passes a fake)."""
