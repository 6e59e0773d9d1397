"""Reading and writing intake's tables inside a unit of work. Nothing here commits.

`CaseRepository`: the cases and what hangs off them; `WebhookRepository`: the front ends' webhook
subscriptions and their delivery logs (`webhooks.py`'s use cases)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID, uuid4

from sqlalchemy import Table, bindparam, exists, literal_column, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import ReturningInsert
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.schema import ScalarElementColumnDefault
from sqlalchemy.sql.selectable import Select
from sqlmodel import SQLModel, col

from referrals_common.api.pagination import Position, after
from referrals_common.contracts import CloudEvent
from referrals_common.db import Database, UnitOfWork
from referrals_common.messaging.outbox import outbox_insert, outbox_parameters
from referrals_common.native_sql import (
    Autocommit,
    fetch_native,
    run_native,
    unit_of_work_native,
)
from referrals_common.tables import access_audit_values
from referrals_intake.lifecycle import DocumentState
from referrals_intake.models import (
    AccessAudit,
    ApiClient,
    Case,
    CaseConsent,
    CaseDocument,
    FollowUpQuestion,
    IdempotencyRecord,
    InformationRequest,
    Meeting,
    TimelineEntry,
    WebhookDeliveryAttempt,
    WebhookSubscription,
    utcnow,
)


def document_state(d: CaseDocument) -> DocumentState:
    """What the case's lifecycle reads of a document."""
    return DocumentState(
        str(d.document_id),
        d.kind,
        d.stored,
        d.check,
        str(d.translation_of) if d.translation_of else None,
        d.language,
        d.acceptable_languages,
        d.unreadable_reason,
    )


async def insert_opened(
    executor: AsyncSession | Autocommit,
    case: dict[str, Any],
    entry: dict[str, Any],
    audit: dict[str, Any] | None = None,
    *,
    claim: dict[str, Any] | None = None,
) -> bool:
    """A new case, its first timeline entry and (when given) its access audit row, each as its
    values by column (`models.new_row`; the entry's and the audit row's serial ids left out),
    inserted now in one statement (one round trip, no ORM flush: the front ends' busiest write)
    on `executor`: a session's transaction, or a connection in autocommit (`Autocommit`: the
    statement then commits by itself). Nothing enters a session; every column is given (nothing
    is read back).

    `claim`: the values of the `Idempotency-Key`'s row (`idempotency_keys`), claimed in the
    same statement; the case and its rows are inserted only if the key's row is. False when
    the key was claimed before (nothing inserted: the caller replays the first request); a
    concurrent twin's claim waits for the first request's commit, as a separate insert would."""
    values = {
        **{f"case_{c.key}": case[c.key] for c in _CASE_COLUMNS},
        **{f"entry_{c.key}": entry[c.key] for c in _ENTRY_COLUMNS},
    }
    if audit is not None:
        values.update({f"audit_{c.key}": audit[c.key] for c in _AUDIT_COLUMNS})
    if claim is None:
        statement = _OPEN_CASE_AUDITED if audit else _OPEN_CASE
        if isinstance(executor, Autocommit):
            return await run_native(executor, statement, values, returns=False)
        await executor.execute(statement, values)
        return True
    values.update({f"key_{c.key}": claim[c.key] for c in _KEY_COLUMNS})
    claimed = _OPEN_CLAIMED_CASE_AUDITED if audit else _OPEN_CLAIMED_CASE
    if isinstance(executor, Autocommit):
        return await run_native(executor, claimed, values, returns=True)
    return (await executor.execute(claimed, values)).first() is not None


@dataclass(frozen=True)
class CaseParts:
    """What hangs off a case that the front end reads with it: its consents by kind, its
    documents (oldest first), its last timeline entry (None: none), its information requests,
    follow-up questions and meetings (each oldest first). Read, not loaded: detached copies of
    the rows, for reading only."""

    consents: dict[str, CaseConsent]
    documents: list[CaseDocument]
    last_entry: TimelineEntry | None
    information_requests: list[InformationRequest]
    follow_up_questions: list[FollowUpQuestion]
    meetings: list[Meeting]


@dataclass(frozen=True)
class Audited:
    """The access audit row of whoever reads a case (`actor`, `action`: its outcome ok), written
    by the statement that reads it."""

    actor: str
    action: str


async def case_view(
    executor: Autocommit, case_id: UUID, audited: Audited
) -> tuple[Case, CaseParts] | None:
    """The case and its parts (`CaseParts`) as one statement reads them on a connection in
    autocommit, with the access audit row of `audited` (written only when the case exists, in
    that statement, which commits by itself): one round trip, no BEGIN or COMMIT, no ORM
    session. None, and no row written, when there is no such case."""
    row = await fetch_native(executor, _CASE_VIEW, {"case_id": case_id, **_audit_values(audited)})
    if row is None:
        return None
    case = _detached(Case, {c: row[c] for c in _CASE_COLUMN_NAMES})
    return case, _parts(row)


def _audit_values(audited: Audited | None) -> dict[str, Any]:
    if audited is None:
        return {"audit_actor": None, "audit_action": None, "audit_at": None}
    return {f"audit_{k}": v for k, v in access_audit_values(audited.actor, audited.action).items()}


def _detached(model: type[_Row], values: Mapping[str, Any]) -> _Row:
    """A row as its model's instance, outside any session, without validating its values again
    (PostgreSQL's, as the ORM's loading takes them): for reading only."""
    return cast(_Row, model.model_construct(**values))


def _rows(model: type[_Row], records: Sequence[Any] | None) -> list[_Row]:
    # Each record is a row of the table's composite type, with its columns' names and values.
    return [_detached(model, dict(r.items())) for r in records or ()]


def _parts(row: Any) -> CaseParts:
    # `row`: `_CASE_VIEW`'s, an asyncpg record or SQLAlchemy's mapping of it.
    last = row["view_last_entry"]
    return CaseParts(
        consents={c.kind: c for c in _rows(CaseConsent, row["view_consents"])},
        documents=_rows(CaseDocument, row["view_documents"]),
        last_entry=None if last is None else _detached(TimelineEntry, dict(last.items())),
        information_requests=_rows(InformationRequest, row["view_requests"]),
        follow_up_questions=_rows(FollowUpQuestion, row["view_follow_ups"]),
        meetings=_rows(Meeting, row["view_meetings"]),
    )


@dataclass(frozen=True)
class ConsentGiven:
    """What `give_consent` found and did: the case (as changed, or as it is when it was
    refused); its parts (`CaseParts`, with the consent given) when the consent was kept, None
    when the case is no longer open (nothing written)."""

    case: Case
    parts: CaseParts | None


async def give_consent(
    executor: Autocommit,
    case_id: UUID,
    kind: str,
    version: str,
    open_states: Sequence[str],
    audited: Audited,
) -> ConsentGiven | None:
    """The case's consent of `kind` to `version`, given now (a consent given before is
    replaced), the case's `updated_at` now and the access audit row of `audited`, written only
    while the case is in one of `open_states`, with the case and its parts read back: one
    statement on a connection in autocommit, which commits by itself (one round trip, no BEGIN
    or COMMIT, no ORM session). The case's row is locked by its update, which waits for a
    concurrent change of the case and checks its state again after it. None, and nothing
    written, when there is no such case."""
    audit = access_audit_values(audited.actor, audited.action)
    values = {
        "case_id": case_id,
        "consent_id": uuid4(),
        "kind": kind,
        "version": version,
        "open_states": list(open_states),
        "at": audit["at"],
        "audit_actor": audit["actor"],
        "audit_action": audit["action"],
    }
    row = await fetch_native(executor, _GIVE_CONSENT, values)
    if row is None:
        return None
    if row["given_consent"] is None:
        # Not open: as the statement's snapshot read it.
        return ConsentGiven(_detached(Case, {c: row[c] for c in _CASE_COLUMN_NAMES}), None)
    case = _detached(Case, dict(row["moved_case"].items()))
    parts = _parts(row)
    # The statement's reads see the consents as they were before its upsert: the given one
    # takes its old row's place (or joins them).
    given = _detached(CaseConsent, dict(row["given_consent"].items()))
    consents = {**parts.consents, given.kind: given}
    return ConsentGiven(case, dataclasses.replace(parts, consents=consents))


@dataclass(frozen=True)
class DocumentFact:
    """What `CaseRepository.keep_document_fact` found and did: the case (locked; None: there is
    no such case, nothing kept), whether the fact was kept (False: the document is another
    case's), and, for a case that follows its documents (submitted, action required), the
    states of all of its documents as they are now (oldest first) and the kinds of its
    consents."""

    case: Case | None
    kept: bool = False
    documents: list[DocumentState] | None = None
    consents: frozenset[str] | None = None


FOLLOWING_STATES = ("submitted", "action_required")
"""The states in which a case moves on what its documents say (`Intake.on_document`)."""


@dataclass
class _Followed:
    """What `CaseRepository.keep_document_fact` read of a case in a unit of work's transaction
    on asyncpg and what it kept since: the case (locked: a row outside any session) with its
    values as last read or saved (`save`'s comparison), the states of its documents as they are
    now (None: a case that does not follow them) and its consents' kinds. A later fact about
    one of its documents in the same transaction (a consumer's batch: the checks of a case's
    documents, applied together) keeps the fact alone and takes the rest from here."""

    read: tuple[Case, dict[str, Any]]
    documents: list[DocumentState] | None
    consents: frozenset[str] | None


@dataclass
class _Submitted:
    """What `CaseRepository.submission` read of a case in a unit of work's transaction on
    asyncpg besides the case: its parts (`CaseParts`, none of which a submit changes), and the
    newest timeline entry `save` wrote for it since (its values; None: none yet)."""

    case: Case
    parts: CaseParts
    last_entry: dict[str, Any] | None = None


_SUBMITTED: weakref.WeakKeyDictionary[UnitOfWork, dict[UUID, _Submitted]] = (
    weakref.WeakKeyDictionary()
)
"""Each unit of work's submitted cases (`_Submitted`), gone with the unit of work."""


_FOLLOWED: weakref.WeakKeyDictionary[UnitOfWork, dict[UUID, _Followed]] = (
    weakref.WeakKeyDictionary()
)
"""Each unit of work's cases as `keep_document_fact` last left them (`_Followed`), gone with the
unit of work; a case read again through asyncpg (`_track`) is dropped first."""


class CaseRepository:
    """Intake's queries on one unit of work (or one session): rows are added and changed in the
    caller's transaction, never committed here.

    Made on a consumer's unit of work that runs its own transaction on asyncpg
    (`UnitOfWork.native`, begun with the inbox row) and given the engine's dialect (`on`), the
    hottest event handlers' statements go through asyncpg itself (`referrals_common.native_sql`)
    and no ORM session is made for them: `locked_case` and `keep_document_fact` then answer the
    case as a row outside any session, whose changes and timeline entries `save` writes in one
    statement. Otherwise everything goes through the session, as the API's requests do.

    The repositories of one unit of work share what its transaction read of a case through
    asyncpg where a later one can use it (`_FOLLOWED`: a batch's later document facts of a
    case; `_SUBMITTED`: a submit's answer), never across transactions."""

    def __init__(self, source: AsyncSession | UnitOfWork, dialect: Dialect | None = None) -> None:
        self._source = source
        self._dialect = dialect
        # Cases read through asyncpg (outside the session) by id: the row and its values as
        # read; and the timeline entries added for them, which `save` writes.
        self._read: dict[UUID, tuple[Case, dict[str, Any]]] = {}
        self._entries: list[dict[str, Any]] = []
        # The transaction they were read in, which `save` writes them in (the session, if it
        # is made meanwhile, runs in it too).
        self._read_on: Autocommit | None = None
        # A document's fact kept of a case read through asyncpg that `save` writes with the
        # case (`keep_document_fact(..., saved_after=True)`): its columns and values, by case.
        self._facts: dict[UUID, tuple[tuple[str, ...], dict[str, Any]]] = {}

    @classmethod
    def on(cls, db: Database) -> RepositoryFactory:
        """The repositories of `db`'s units of work, a consumer's hottest statements through
        asyncpg itself (see the class doc)."""
        return functools.partial(cls, dialect=db.engine.dialect)

    @property
    def session(self) -> AsyncSession:
        """The session (the unit of work's, made now if it has none yet)."""
        source = self._source
        return source if isinstance(source, AsyncSession) else source.session

    @property
    def native(self) -> Autocommit | None:
        """The unit of work's own transaction on asyncpg, if it opened one and this repository
        may use it (it has the engine's dialect)."""
        source = self._source
        if isinstance(source, AsyncSession):
            return None
        # A consumer's batch of events in one transaction: the consumer flushes the session and
        # expires what it holds before each handler, so a case an earlier event changed through
        # the session is written before it is read here, and read again after it is saved here.
        return unit_of_work_native(source, self._dialect)

    def _track(self, values: Mapping[str, Any], native: Autocommit) -> Case:
        """The case row `values` (by column), read on `native`, as a `Case` outside any
        session, whose changes `save` writes there."""
        self._read_on = native
        configure_mappers()  # at once when done: the ORM may not have run in this process yet
        case: Case = manager_of_class(Case).new_instance()
        case.__dict__.update(values)
        self._read[case.id] = (case, _as_read(values))
        # Read again: what an earlier handler of the transaction kept of it is not this row.
        if isinstance(self._source, UnitOfWork) and (known := _FOLLOWED.get(self._source)):
            known.pop(case.id, None)
        return case

    async def locked_case(self, case_id: UUID) -> Case | None:
        """The case, locked for the rest of the transaction (it is to change): through asyncpg
        when the unit of work runs its own transaction there (a row outside the session: `save`
        writes what changes on it), else the session's `get(..., for_update=True)`."""
        native = self.native
        if native is None:
            return await self.get(case_id, for_update=True)
        row = await fetch_native(native, _LOCKED_CASE_ROW, {"case_id": case_id})
        return None if row is None else self._track(dict(row.items()), native)

    async def keep_document_fact(
        self,
        case_id: UUID,
        document_id: UUID,
        facts: Mapping[str, Any],
        *,
        saved_after: bool = False,
    ) -> DocumentFact:
        """Lock the case, keep `facts` (columns' new values) on its document's row (made now
        when it is not there, its other columns their defaults; never another case's), and for
        a case that follows its documents read them all and its consents: in one statement
        through asyncpg when the unit of work runs its own transaction there, else through the
        session. `saved_after`: the caller saves the case (`save`) whatever it finds, so a
        fact that `save` may write with the case is left to it."""
        native = self.native
        if native is None:
            case = await self.get(case_id, for_update=True)
            if case is None:
                return DocumentFact(None)
            if not await self.keep_document_facts(case_id, document_id, facts):
                return DocumentFact(case)
            if case.status not in FOLLOWING_STATES:
                return DocumentFact(case, kept=True)
            # populate_existing: the document's row as the upsert left it.
            documents = list(
                (
                    await self.session.execute(
                        _DOCUMENTS_OF.execution_options(populate_existing=True),
                        {"case_id": case_id},
                    )
                ).scalars()
            )
            return DocumentFact(
                case,
                True,
                [document_state(d) for d in documents],
                frozenset(await self.consents(case_id)),
            )
        now = utcnow()
        values = {
            "document_id": document_id,
            "case_id": case_id,
            "created_at": now,
            "updated_at": now,
            **facts,
        }
        source = self._source
        followed = _FOLLOWED.setdefault(source, {}) if isinstance(source, UnitOfWork) else {}
        known = followed.get(case_id)
        if (
            known is not None
            # Nothing the session holds or wrote (a handler of the batch went through it) is
            # in what was kept: read again.
            and isinstance(source, UnitOfWork)
            and not source.has_session
            and (known.documents is not None or known.read[0].status not in FOLLOWING_STATES)
        ):
            return await self._keep_known_fact(
                native, known, values, tuple(sorted(facts)), saved_after=saved_after
            )
        row = await fetch_native(native, _document_fact(tuple(sorted(facts))), values)
        if row is None:
            return DocumentFact(None)
        case = self._track({c: row[c] for c in _CASE_COLUMN_NAMES}, native)
        kept = row["fact_kept"]
        if kept is None:
            return DocumentFact(case)
        if case.status not in FOLLOWING_STATES:
            followed[case_id] = _Followed(self._read[case_id], None, None)
            return DocumentFact(case, kept=True)
        # Each document's state as a JSON array of `DocumentState`'s fields (in its order: no
        # row made of it). The statement's reads see the case's documents as they were before
        # its upsert: the kept row takes its old row's place, or joins them as the newest (it
        # was made now).
        states = _with_state([DocumentState(*d) for d in row["fact_documents"]], kept)
        consents = frozenset(row["fact_consents"])
        followed[case_id] = _Followed(self._read[case_id], states, consents)
        return DocumentFact(case, True, list(states), consents)

    async def _keep_known_fact(
        self,
        native: Autocommit,
        known: _Followed,
        values: dict[str, Any],
        facts: tuple[str, ...],
        *,
        saved_after: bool,
    ) -> DocumentFact:
        """`keep_document_fact` for a case this transaction read and locked before (`known`):
        the fact kept on its document's row (never another case's) in a statement of its own,
        the case, its other documents and its consents as `known` has them (nothing else
        changed them since: the case is locked, and only this transaction's facts change its
        documents, each kept in `known`).

        A fact about one of the documents `known` has of a case that follows them, when the
        caller saves the case after (`saved_after`): the document's row is the case's, so the
        fact changes it (no row is made, none of another case's is met) and its state is the
        known one with the fact's values; `save` writes it with the case, in its statement."""
        case = known.read[0]
        self._read[case.id] = known.read
        self._read_on = native
        documents = known.documents
        if (
            saved_after
            and documents is not None
            and case.status in FOLLOWING_STATES
            and case.id not in self._facts
        ):
            document_id = str(values["document_id"])
            at = next((i for i, d in enumerate(documents) if d.document_id == document_id), None)
            if at is not None:
                changed = {f: _state_value(values[f]) for f in facts if f in _STATE_FIELDS}
                fresh = dataclasses.replace(documents[at], **changed)
                known.documents = [*documents[:at], fresh, *documents[at + 1 :]]
                self._facts[case.id] = (facts, values)
                return DocumentFact(case, True, list(known.documents), known.consents)
        row = await fetch_native(native, _known_document_fact(facts), values)
        if row is None:
            return DocumentFact(case)
        if known.documents is not None:
            known.documents = _with_state(known.documents, row["state"])
        if case.status not in FOLLOWING_STATES or known.documents is None:
            return DocumentFact(case, kept=True)
        return DocumentFact(case, True, list(known.documents), known.consents)

    async def save(
        self,
        case: Case,
        events: Sequence[CloudEvent[Any]] = (),
        *,
        audited: Audited | None = None,
    ) -> bool:
        """Write what changed on `case`, the timeline entries added for it, `events` (its
        outbox rows, in their order) and the access audit row of `audited` (whoever changed
        it), in one statement, when `locked_case`, `keep_document_fact` or `submission` read it
        through asyncpg: True. False, and nothing written, for a case of the session (its
        flush writes it): the caller puts `events` in the outbox and audits."""
        read = self._read.get(case.id)
        if read is None or read[0] is not case:
            return False
        native = self._read_on
        assert native is not None  # set with `_read`
        before = read[1]
        now = case.__dict__
        changed = tuple(c for c in _CASE_COLUMN_NAMES if c != "id" and now[c] != before[c])
        entries = [e for e in self._entries if e["case_id"] == case.id]
        self._entries = [e for e in self._entries if e["case_id"] != case.id]
        fact = self._facts.pop(case.id, None)
        if not changed and not entries and not events and audited is None and fact is None:
            return True
        values: dict[str, Any] = {"case_id": case.id}
        values.update({f"case_{c}": now[c] for c in changed})
        for i, entry in enumerate(entries):
            values.update({f"entry{i}_{c.key}": entry[c.key] for c in _ENTRY_COLUMNS})
        if events:
            values.update(outbox_parameters(events))
        if audited is not None:
            audit = access_audit_values(audited.actor, audited.action)
            values.update({f"audit_{k}": v for k, v in audit.items()})
        fact_columns: tuple[str, ...] = ()
        if fact is not None:
            fact_columns, fact_values = fact
            values.update(
                {f"fact_{c}": fact_values[c] for c in ("document_id", "updated_at", *fact_columns)}
            )
        statement = _saved(
            changed, len(entries), len(events), audited=audited is not None, fact=fact_columns
        )
        await run_native(native, statement, values, returns=False)
        self._read[case.id] = (case, _as_read(now))
        source = self._source
        if entries and isinstance(source, UnitOfWork) and (submitted := _SUBMITTED.get(source)):
            kept = submitted.get(case.id)
            if kept is not None and kept.case is case:
                kept.last_entry = entries[-1]  # the newest now (its serial the highest)
        if isinstance(source, UnitOfWork) and (followed := _FOLLOWED.get(source)):
            known = followed.get(case.id)
            if known is not None and known.read[0] is case:
                known.read = self._read[case.id]  # as saved
        return True

    async def get(self, case_id: UUID, *, for_update: bool = False) -> Case | None:
        """The case, locked for the rest of the transaction when it is to change: a case's
        transitions (and so its outbox events) are serialised."""
        query = _LOCKED_CASE if for_update else _CASE
        return (await self.session.execute(query, {"case_id": case_id})).scalar_one_or_none()

    async def known(self, case_id: UUID) -> Case | None:
        """The case as this transaction has it: the row it read (and perhaps changed) already,
        with no statement, else read now."""
        return await self.session.get(Case, case_id)

    async def client_cases(
        self,
        client_id: str,
        *,
        statuses: Sequence[str] = (),
        created_since: datetime | None = None,
        updated_since: datetime | None = None,
        id_prefix: str | None = None,
        after_position: Position | None = None,
        limit: int,
    ) -> list[Case]:
        """The cases `client_id` opened, newest first (by creation, then id), from just after
        `after_position`, at most `limit`: those in one of `statuses`, created or changed since
        the given times, and whose id starts with the 8 hex digits `id_prefix` (the short
        reference the patient sees)."""
        query = select(Case).where(col(Case.client_id) == client_id)
        if statuses:
            query = query.where(col(Case.status).in_(list(statuses)))
        if created_since is not None:
            query = query.where(col(Case.created_at) >= created_since)
        if updated_since is not None:
            query = query.where(col(Case.updated_at) >= updated_since)
        if id_prefix is not None:
            # A range of the primary key: the ids whose first 8 hex digits are the reference.
            low, high = UUID(id_prefix + "0" * 24), UUID(id_prefix + "f" * 24)
            query = query.where(col(Case.id) >= low, col(Case.id) <= high)
        query = after(query, (col(Case.created_at), col(Case.id)), after_position)
        return list((await self.session.execute(query.limit(limit))).scalars())

    async def states(self) -> list[tuple[str, int, float]]:
        """Per case state: how many cases are in it, and for how many seconds the one longest
        there has been (since its last transition, `status_since`: a later note on its timeline
        does not reset it; a row an older version wrote, without it, from its last timeline
        entry; cases never moved count from creation). One pass over `cases`, no timeline read
        but for such rows (COALESCE evaluates only what it needs)."""
        rows = await self.session.execute(
            text(
                "select c.status, count(*), coalesce(extract(epoch from now() - min("
                "  coalesce(c.status_since,"
                "           (select t.at from case_timeline t where t.case_id = c.id"
                "            order by t.id desc limit 1), c.created_at))), 0)"
                " from cases c group by c.status"
            )
        )
        return [(str(status), int(n), float(age)) for status, n, age in rows.all()]

    def add(self, row: object) -> None:
        """Add `row` to what the transaction writes: a timeline entry of a case read through
        asyncpg is written by `save` with the case, anything else by the session's flush."""
        if isinstance(row, TimelineEntry) and row.case_id in self._read:
            self._entries.append({c.key: getattr(row, c.key) for c in _ENTRY_COLUMNS})
            return
        self.session.add(row)

    def add_entry(self, values: dict[str, Any]) -> None:
        """Add a timeline entry, given as its values by column (all but its serial id): kept
        as they are for `save` when its case was read through asyncpg (no model is made:
        SQLModel's validation and SQLAlchemy's instrumentation cost more than its insert),
        else added to the session as a `TimelineEntry`."""
        if values["case_id"] in self._read:
            self._entries.append(values)
            return
        self.session.add(TimelineEntry(**values))

    async def insert_opened(
        self,
        case: dict[str, Any],
        entry: dict[str, Any],
        audit: dict[str, Any] | None = None,
        *,
        claim: dict[str, Any] | None = None,
    ) -> bool:
        """`insert_opened` in this repository's transaction."""
        return await insert_opened(self.session, case, entry, audit, claim=claim)

    async def flush(self) -> None:
        """Write what was added or changed so far, inside the transaction (the unit of work does
        not autoflush): ids and defaults are set, and this transaction's reads see it."""
        await self.session.flush()

    async def entered_state_at(self, case_id: UUID) -> datetime | None:
        """When the case entered the state it is in: its last timeline entry's time, this
        transaction's own (added, not flushed yet) or the last stored one (one indexed row);
        None when it never moved (it counts from its creation)."""
        pending: list[datetime] = [e["at"] for e in self._entries if e["case_id"] == case_id]
        if case_id not in self._read:
            pending += [
                e.at
                for e in self.session.new
                if isinstance(e, TimelineEntry) and e.case_id == case_id
            ]
        if pending:
            return max(pending)
        return await self.session.scalar(
            select(col(TimelineEntry.at))
            .where(col(TimelineEntry.case_id) == case_id)
            .order_by(col(TimelineEntry.id).desc())
            .limit(1)
        )

    async def parts(self, case_id: UUID, audited: Audited | None = None) -> CaseParts:
        """The case's parts (`CaseParts`) as this transaction sees them (what it added is
        written first), in one statement; with the access audit row of `audited` written by
        that statement (the case must exist: it is this transaction's). Through asyncpg when
        the unit of work runs its transaction there and made no ORM session (`submission`):
        the cases this repository read there are saved first (`save`)."""
        values = {"case_id": case_id, **_audit_values(audited)}
        native = self.native
        source = self._source
        if native is not None and isinstance(source, UnitOfWork) and not source.has_session:
            for case, _ in list(self._read.values()):
                await self.save(case)
            kept = _SUBMITTED.get(source, {}).get(case_id)
            if kept is not None and kept.last_entry is not None and audited is None:
                # Submitted in this transaction (`submission` read the parts, which it does
                # not change, and `save` wrote the newest entry): nothing to read again.
                entry = _detached(TimelineEntry, kept.last_entry)
                return dataclasses.replace(kept.parts, last_entry=entry)
            row = await fetch_native(native, _CASE_VIEW, values)
            assert row is not None  # the case is this transaction's
            return _parts(row)
        await self.session.flush()
        return _parts((await self.session.execute(_CASE_VIEW, values)).mappings().one())

    async def submission(
        self, case_id: UUID, claim: dict[str, Any] | None = None
    ) -> tuple[Case, dict[str, CaseConsent], list[DocumentState]] | None:
        """The case, locked for the rest of the transaction (it is to change), with its consents
        by kind and its documents' states (oldest first), in one statement; None when there is
        no such case.

        Made on a unit of work that has sent nothing yet, with the engine's dialect (`on`): the
        unit of work's transaction is begun on asyncpg itself (`UnitOfWork.open_with`) and the
        statement goes through it, the case a row outside any session whose changes and
        timeline entries `save` writes (and the outbox's rows, `parts`' read and the COMMIT go
        there too: no ORM session is made). Otherwise through the session.

        `claim`: the values of the request's `Idempotency-Key` row (`idempotency_keys`),
        claimed in the same statement; `KeyClaimedBefore` (nothing else done: the caller replays
        the first request) when the key was claimed before."""
        native = self.native
        source = self._source
        if (
            native is None
            and self._dialect is not None
            and isinstance(source, UnitOfWork)
            and await source.open_with(_BEGIN) is not None
        ):
            native = self.native
        if native is None:
            if claim is not None and not await _claimed(self.session, claim):
                raise KeyClaimedBefore
            row = (await self.session.execute(_SUBMISSION, {"case_id": case_id})).first()
            if row is None:
                return None
            case, consents, documents = row
        else:
            values: dict[str, Any] = {"case_id": case_id}
            if claim is not None:
                values.update({f"key_{c.key}": claim[c.key] for c in _KEY_COLUMNS})
            found = await fetch_native(
                native, _SUBMISSION_ROW if claim is None else _CLAIMED_SUBMISSION_ROW, values
            )
            if found is None:
                return None  # the key's claim, if made, rolls back with the transaction
            if claim is not None and not found["submission_claimed"]:
                raise KeyClaimedBefore
            case = self._track({c: found[c] for c in _CASE_COLUMN_NAMES}, native)
            parts = CaseParts(
                consents={c.kind: c for c in _rows(CaseConsent, found["submission_consents"])},
                documents=_rows(CaseDocument, found["submission_documents"]),
                last_entry=None,
                information_requests=_rows(InformationRequest, found["submission_requests"]),
                follow_up_questions=_rows(FollowUpQuestion, found["submission_follow_ups"]),
                meetings=_rows(Meeting, found["submission_meetings"]),
            )
            if isinstance(source, UnitOfWork):
                _SUBMITTED.setdefault(source, {})[case.id] = _Submitted(case, parts)
            return case, parts.consents, [document_state(d) for d in parts.documents]
        return (
            case,
            {c.kind: c for c in _rows(CaseConsent, consents)},
            [document_state(d) for d in _rows(CaseDocument, documents)],
        )

    async def consents(self, case_id: UUID) -> dict[str, CaseConsent]:
        rows = await self.session.execute(_CONSENTS_OF, {"case_id": case_id})
        return {c.kind: c for c in rows.scalars()}

    async def timeline(self, case_id: UUID) -> list[TimelineEntry]:
        rows = await self.session.execute(
            select(TimelineEntry)
            .where(col(TimelineEntry.case_id) == case_id)
            .order_by(col(TimelineEntry.id))
        )
        return list(rows.scalars())

    async def documents(self, case_id: UUID, *, for_update: bool = False) -> list[CaseDocument]:
        """The case's documents, oldest first; locked for the rest of the transaction when one
        of them is to change."""
        query = _LOCKED_DOCUMENTS_OF if for_update else _DOCUMENTS_OF
        return list((await self.session.execute(query, {"case_id": case_id})).scalars())

    async def keep_document_facts(
        self, case_id: UUID, document_id: UUID, facts: Mapping[str, Any]
    ) -> bool:
        """The document's row of `case_id` with `facts` (its columns' new values), made now
        when it is not there (its other columns their defaults), in one statement; False, and
        nothing changed, when the document is another case's."""
        now = utcnow()
        values = {"document_id": document_id, "case_id": case_id, "created_at": now, **facts}
        statement = _keep_document(tuple(sorted(facts)))
        return (
            await self.session.execute(statement, {**values, "updated_at": now})
        ).first() is not None

    async def document(self, document_id: UUID) -> CaseDocument | None:
        return await self.session.get(CaseDocument, document_id, with_for_update=True)

    async def document_states(self, case_id: UUID) -> list[DocumentState]:
        return [document_state(d) for d in await self.documents(case_id)]

    async def information_requests(self, case_id: UUID) -> list[InformationRequest]:
        rows = await self.session.execute(
            select(InformationRequest)
            .where(col(InformationRequest.case_id) == case_id)
            .order_by(col(InformationRequest.requested_at))
        )
        return list(rows.scalars())

    async def follow_up_questions(self, case_id: UUID) -> list[FollowUpQuestion]:
        rows = await self.session.execute(
            select(FollowUpQuestion)
            .where(col(FollowUpQuestion.case_id) == case_id)
            .order_by(col(FollowUpQuestion.asked_at))
        )
        return list(rows.scalars())

    async def information_request(
        self, request_id: UUID, *, for_update: bool = False
    ) -> InformationRequest | None:
        return await self.session.get(
            InformationRequest, request_id, with_for_update=True if for_update else None
        )

    async def close_requests(self, case_id: UUID, status: str, *, only: UUID | None = None) -> None:
        """The case's open requests (or only the one `only`) end as `status` (expired,
        cancelled)."""
        query = update(InformationRequest).where(
            col(InformationRequest.case_id) == case_id, col(InformationRequest.status) == "open"
        )
        if only is not None:
            query = query.where(col(InformationRequest.id) == only)
        await self.session.execute(query.values(status=status))

    async def follow_up_question(self, question_id: UUID) -> FollowUpQuestion | None:
        """The question, locked for the rest of the transaction (its answer is to be kept)."""
        return await self.session.get(FollowUpQuestion, question_id, with_for_update=True)

    async def meeting(self, meeting_id: UUID) -> Meeting | None:
        """The meeting, locked for the rest of the transaction (it is to change)."""
        return await self.session.get(Meeting, meeting_id, with_for_update=True)

    async def meetings(self, case_id: UUID) -> list[Meeting]:
        rows = await self.session.execute(
            select(Meeting).where(col(Meeting.case_id) == case_id).order_by(col(Meeting.created_at))
        )
        return list(rows.scalars())

    async def upsert_consent(self, case_id: UUID, kind: str, version: str) -> None:
        """The case's consent of `kind` to `version`, given now (a consent given before is
        replaced)."""
        await self.session.execute(
            _UPSERT_CONSENT,
            {"id": uuid4(), "case_id": case_id, "kind": kind, "version": version, "at": utcnow()},
        )

    async def client(self, key_id: str) -> ApiClient | None:
        return await self.session.get(ApiClient, key_id)

    def audit(self, actor: str, action: str, case_id: UUID | None, outcome: str = "ok") -> None:
        self.session.add(
            AccessAudit(**access_audit_values(actor, action), case_id=case_id, outcome=outcome)
        )


# The tables, not the models: a Core insert of a model's table is executed as it is, the ORM's
# insert of the model goes through its bulk insert (its cache key made twice, every value sorted
# through the mapper) on every call.
_CASES: Table = Case.__table__  # type: ignore[attr-defined]  # a SQLModel table
_TIMELINE: Table = TimelineEntry.__table__  # type: ignore[attr-defined]  # a SQLModel table
_DOCUMENTS: Table = CaseDocument.__table__  # type: ignore[attr-defined]  # a SQLModel table
_AUDIT: Table = AccessAudit.__table__  # type: ignore[attr-defined]  # a SQLModel table
_CASE_COLUMNS = tuple(_CASES.columns)
_ENTRY_COLUMNS = tuple(c for c in _TIMELINE.columns if c.key != "id")  # the entry's serial
_AUDIT_COLUMNS = tuple(c for c in _AUDIT.columns if c.key != "id")  # the row's serial
_AUDITED = ("at", "actor", "action")  # `access_audit_values`' columns


def _values(prefix: str, columns: Sequence[Any]) -> dict[str, Any]:
    return {c.key: bindparam(f"{prefix}_{c.key}", type_=c.type) for c in columns}


_OPEN_CASE = (
    insert(_TIMELINE)
    .values(_values("entry", _ENTRY_COLUMNS))
    .add_cte(insert(_CASES).values(_values("case", _CASE_COLUMNS)).cte("opened"))
)
"""`insert_opened`'s statement, built once: the case's row in a data-modifying CTE, its entry in
the statement itself (its foreign key is checked at the statement's end, the case inserted)."""
_OPEN_CASE_AUDITED = _OPEN_CASE.add_cte(
    insert(_AUDIT).values(_values("audit", _AUDIT_COLUMNS)).cte("audited")
)
"""`_OPEN_CASE` and the access audit row of whoever opened the case, in another CTE."""


_KEYS: Table = IdempotencyRecord.__table__  # type: ignore[attr-defined]  # a SQLModel table
_KEY_COLUMNS = tuple(_KEYS.columns)
_CLAIMED = (
    insert(_KEYS)
    .values(_values("key", _KEY_COLUMNS))
    .on_conflict_do_nothing()
    .returning(literal_column("1"))
    .cte("claimed")
)
"""The claim of an `Idempotency-Key` (as `referrals_common.api.idempotency` claims one): a row
only when the key was not claimed before."""


def _if_claimed(table: Table, prefix: str, columns: Sequence[Any]) -> ReturningInsert[Any]:
    """An insert of one row of `table` (its values given at execution) that inserts nothing
    unless `_CLAIMED` inserted the key's row."""
    row = select(*(bindparam(f"{prefix}_{c.key}", type_=c.type) for c in columns))
    return (
        insert(table)
        .from_select(
            [c.key for c in columns],
            row.where(exists(select(literal_column("1")).select_from(_CLAIMED))),
        )
        .returning(literal_column("1"))
    )


_OPEN_CLAIMED_CASE = _if_claimed(_TIMELINE, "entry", _ENTRY_COLUMNS).add_cte(
    _if_claimed(_CASES, "case", _CASE_COLUMNS).cte("opened")
)
"""`_OPEN_CASE` under an `Idempotency-Key` claimed in the same statement: a row returned when the
key was claimed and the case inserted, none when the key was claimed before."""
_OPEN_CLAIMED_CASE_AUDITED = _OPEN_CLAIMED_CASE.add_cte(
    _if_claimed(_AUDIT, "audit", _AUDIT_COLUMNS).cte("audited")
)
"""`_OPEN_CLAIMED_CASE` with the access audit row of whoever opened the case."""


# The hottest reads and writes, built once with their values as parameters: building a
# statement and its cache key costs more CPU than the ORM's execution of a cached one.
_CASE = select(Case).where(col(Case.id) == bindparam("case_id"))
_LOCKED_CASE = _CASE.with_for_update()
_CONSENTS_OF = select(CaseConsent).where(col(CaseConsent.case_id) == bindparam("case_id"))
_DOCUMENTS_OF = (
    select(CaseDocument)
    .where(col(CaseDocument.case_id) == bindparam("case_id"))
    .order_by(col(CaseDocument.created_at))
)
_LOCKED_DOCUMENTS_OF = _DOCUMENTS_OF.with_for_update()
_CONSENTS: Table = CaseConsent.__table__  # type: ignore[attr-defined]  # a SQLModel table
_NEW_CONSENT = insert(_CONSENTS).values(
    id=bindparam("id"),
    case_id=bindparam("case_id"),
    kind=bindparam("kind"),
    version=bindparam("version"),
    granted_at=bindparam("at"),
)
_UPSERT_CONSENT = _NEW_CONSENT.on_conflict_do_update(
    index_elements=[_CONSENTS.c.case_id, _CONSENTS.c.kind],
    set_={"version": _NEW_CONSENT.excluded.version, "granted_at": _NEW_CONSENT.excluded.granted_at},
)


@functools.lru_cache(maxsize=16)
def _keep_document(facts: tuple[str, ...]) -> ReturningInsert[Any]:
    """`CaseRepository.keep_document_facts`' statement for the columns `facts`, built once."""
    given = ("document_id", "case_id", "created_at", "updated_at", *facts)
    new = insert(_DOCUMENTS).values(
        {name: bindparam(name, type_=_DOCUMENTS.c[name].type) for name in given}
    )
    return new.on_conflict_do_update(
        index_elements=[_DOCUMENTS.c.document_id],
        set_={name: new.excluded[name] for name in (*facts, "updated_at")},
        # Never another case's document.
        where=_DOCUMENTS.c.case_id == new.excluded.case_id,
    ).returning(literal_column("1"))


_BEGIN = "select"
"""What `CaseRepository.submission` begins its transaction on asyncpg with: nothing (the BEGIN
alone, as one simple query)."""


class KeyClaimedBefore(Exception):
    """The request's `Idempotency-Key` was claimed before: nothing was done (the caller replays
    the first request)."""


async def _claimed(session: AsyncSession, claim: dict[str, Any]) -> bool:
    """Whether `claim`'s key was claimed now (False: it was before), through the session."""
    values = {f"key_{c.key}": claim[c.key] for c in _KEY_COLUMNS}
    return (await session.execute(_CLAIM_KEY, values)).first() is not None


_SUBMISSION: Select[Case, Any, Any] = (
    select(
        Case,
        # Each a row of its table's composite type (`_rows`), as in `_CASE_VIEW`.
        literal_column("array(select k from case_consents k where k.case_id = cases.id)").label(
            "submission_consents"
        ),
        literal_column(
            "array(select d from case_documents d where d.case_id = cases.id order by d.created_at)"
        ).label("submission_documents"),
    )
    .where(col(Case.id) == bindparam("case_id"))
    .with_for_update(of=Case)
)
"""`CaseRepository.submission`'s statement, built once."""

_Row = TypeVar("_Row", bound=SQLModel)
_CASE_COLUMN_NAMES = tuple(c.name for c in _CASES.columns)
_LOCKED_CASE_ROW = select(_CASES).where(_CASES.c.id == bindparam("case_id")).with_for_update()
"""`CaseRepository.locked_case`'s statement through asyncpg: the row's columns by name."""


_SUBMISSION_ROW = (
    select(
        _CASES,
        # Each a row of its table's composite type (`_rows`), as in `_CASE_VIEW`.
        literal_column("array(select k from case_consents k where k.case_id = cases.id)").label(
            "submission_consents"
        ),
        literal_column(
            "array(select d from case_documents d where d.case_id = cases.id order by d.created_at)"
        ).label("submission_documents"),
        # And what else the answer shows (`CaseParts`), which a submit does not change.
        literal_column(
            "array(select r from information_requests r where r.case_id = cases.id"
            " order by r.requested_at)"
        ).label("submission_requests"),
        literal_column(
            "array(select q from follow_up_questions q where q.case_id = cases.id"
            " order by q.asked_at)"
        ).label("submission_follow_ups"),
        literal_column(
            "array(select m from meetings m where m.case_id = cases.id order by m.created_at)"
        ).label("submission_meetings"),
    )
    .where(_CASES.c.id == bindparam("case_id", type_=_CASES.c.id.type))
    .with_for_update(of=_CASES)
)
"""`CaseRepository.submission`'s statement through asyncpg: the case's columns by name, its
consents and documents, and its other parts (`CaseParts`)."""
_CLAIM_KEY: ReturningInsert[Any] = (
    insert(_KEYS)
    .values(_values("key", _KEY_COLUMNS))
    .on_conflict_do_nothing()
    .returning(literal_column("1"))
)
"""An `Idempotency-Key`'s claim alone (`_CLAIMED`'s statement), through the session."""
_CLAIMED_SUBMISSION_ROW = _SUBMISSION_ROW.add_columns(
    exists(select(literal_column("1")).select_from(_CLAIMED)).label("submission_claimed")
).add_cte(_CLAIMED)
"""`_SUBMISSION_ROW` with the claim of the request's `Idempotency-Key` (`_CLAIMED`) in a
data-modifying CTE, and whether it claimed the key."""


_CASE_JSON_COLUMNS = tuple(c.name for c in _CASES.columns if isinstance(c.type, JSONB))


def _as_read(values: Mapping[str, Any]) -> dict[str, Any]:
    """A case row's values as `save` compares them later: its JSON copied, so that a list or
    object changed in place counts as changed."""
    read = {c: values[c] for c in _CASE_COLUMN_NAMES}
    for c in _CASE_JSON_COLUMNS:
        read[c] = _json_copy(read[c])
    return read


_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (what JSONB decodes to: objects, arrays, scalars), made
    without `copy.deepcopy`'s memo and dispatch, several times its CPU; anything else deep
    copied as it would be."""
    kind = type(value)
    if kind is dict:
        return {k: _json_copy(v) for k, v in value.items()}
    if kind is list:
        return [_json_copy(v) for v in value]
    if kind in _JSON_SCALARS:
        return value
    return copy.deepcopy(value)


_STATE = (
    'json_build_array({t}.document_id, {t}.kind, {t}.stored, {t}."check", {t}.translation_of,'
    " {t}.language, {t}.acceptable_languages, {t}.unreadable_reason)"
)
"""A document's row as a JSON array of `DocumentState`'s fields, in its order (`{t}`: the
row's alias)."""


_STATE_FIELDS = frozenset(f.name for f in dataclasses.fields(DocumentState)) - {"document_id"}
"""The document's columns its state (`DocumentState`) has."""


def _state_value(value: Any) -> Any:
    """A column's value as the document's state has it (`_STATE`: a UUID as its text)."""
    return str(value) if isinstance(value, UUID) else value


def _with_state(states: list[DocumentState], kept: Sequence[Any]) -> list[DocumentState]:
    """`states` with the document's state `kept` (`_STATE`'s array) in its old state's place,
    or last when it is new (it was made now, the newest)."""
    fresh = DocumentState(*kept)
    at = next((i for i, d in enumerate(states) if d.document_id == fresh.document_id), None)
    if at is None:
        return [*states, fresh]
    return [*states[:at], fresh, *states[at + 1 :]]


@dataclass(frozen=True)
class _FactUpsert:
    """The parts of a document fact's upsert (`_fact_upsert`)."""

    columns: str
    params: str
    changes: str
    bound: tuple[Any, ...]


@functools.lru_cache(maxsize=16)
def _fact_upsert(facts: tuple[str, ...]) -> _FactUpsert:
    """The upsert of a document's row of the case `:case_id` with the columns `facts` for the
    two statements that keep a fact (`_document_fact`, `_known_document_fact`): its columns,
    its values' parameters after `:case_id` (a new row's other columns with a default of the
    model's: `check` pending, not `stored`, as the ORM's and Core's inserts give them; the
    rest null), what a conflict changes, and the parameters bound with their types."""
    given = ("document_id", "created_at", "updated_at", *facts)
    defaults = {
        c.name: c.default.arg
        for c in _DOCUMENTS.columns
        if c.name not in given and c.name != "case_id"
        if isinstance(c.default, ScalarElementColumnDefault)
    }
    given = (*given, *defaults)
    # Names and types of the table's own columns (`_DOCUMENTS.c[n]`: a KeyError for any other
    # name), and the states' constants: nothing of a request or an event is written in.
    columns = ", ".join(f'"{_DOCUMENTS.c[n].name}"' for n in ("case_id", *given))
    # Each value a parameter of its column's type (the dialect writes its cast: `$2::UUID`).
    params = ", ".join(f":{n}" for n in given)
    changes = ", ".join(f'"{n}" = excluded."{n}"' for n in (*facts, "updated_at"))
    bound = (
        *(bindparam(n, type_=_DOCUMENTS.c[n].type) for n in given if n not in defaults),
        *(bindparam(n, value, type_=_DOCUMENTS.c[n].type) for n, value in defaults.items()),
    )
    return _FactUpsert(columns, params, changes, bound)


@functools.lru_cache(maxsize=16)
def _document_fact(facts: tuple[str, ...]) -> TextClause:
    """`CaseRepository.keep_document_fact`'s statement for the columns `facts`, built once: the
    case locked, the fact kept on its document's row (never another case's: no row returned
    then), and for a case that follows its documents, the states of them all (`_STATE`) and
    its consents' kinds."""
    upsert = _fact_upsert(facts)
    following = ", ".join(f"'{s}'" for s in FOLLOWING_STATES)
    return text(
        "with fact_case as (select * from cases where id = :case_id for update),"  # noqa: S608
        f" fact_kept as (insert into case_documents as d ({upsert.columns})"
        f" select c.id, {upsert.params} from fact_case c"
        f" on conflict (document_id) do update set {upsert.changes}"
        "  where d.case_id = excluded.case_id"
        f"  returning {_STATE.format(t='d')} as state)"
        " select c.*, (select k.state from fact_kept k) as fact_kept,"
        f" case when c.status in ({following}) then (select coalesce(json_agg("
        f"{_STATE.format(t='x')} order by x.created_at), '[]') from case_documents x"
        "  where x.case_id = c.id) end as fact_documents,"
        f" case when c.status in ({following}) then array(select k.kind from case_consents k"
        "  where k.case_id = c.id) end as fact_consents"
        " from fact_case c"
    ).bindparams(bindparam("case_id", type_=_CASES.c.id.type), *upsert.bound)


@functools.lru_cache(maxsize=16)
def _known_document_fact(facts: tuple[str, ...]) -> TextClause:
    """`CaseRepository._keep_known_fact`'s statement for the columns `facts`, built once: the
    fact kept on the document's row of a case the transaction locked before (never another
    case's: no row returned then), its state returned (`_STATE`)."""
    upsert = _fact_upsert(facts)
    return text(
        f"insert into case_documents as d ({upsert.columns})"  # noqa: S608
        f" values (:case_id, {upsert.params})"
        f" on conflict (document_id) do update set {upsert.changes}"
        " where d.case_id = excluded.case_id"
        f" returning {_STATE.format(t='d')} as state"
    ).bindparams(bindparam("case_id", type_=_CASES.c.id.type), *upsert.bound)


@functools.lru_cache(maxsize=64)
def _saved(
    changed: tuple[str, ...],
    entries: int,
    events: int = 0,
    *,
    audited: bool = False,
    fact: tuple[str, ...] = (),
) -> ClauseElement:
    """`CaseRepository.save`'s statement for the case's `changed` columns, its `entries` new
    timeline entries (in their order), its `events` outbox rows (in their order), when
    `audited` an access audit row, and a document's `fact` (the columns it changes on the
    case's document's row), built once: the last of these that it writes is the statement,
    the others its data-modifying CTEs."""
    parts: list[tuple[str, Any]] = []
    if fact:
        kept = (
            update(_DOCUMENTS)
            .where(
                _DOCUMENTS.c.document_id
                == bindparam("fact_document_id", type_=_DOCUMENTS.c.document_id.type),
                _DOCUMENTS.c.case_id == bindparam("case_id", type_=_CASES.c.id.type),
            )
            .values(
                {
                    c: bindparam(f"fact_{c}", type_=_DOCUMENTS.c[c].type)
                    for c in (*fact, "updated_at")
                }
            )
        )
        parts.append(("kept", kept))
    if audited:
        audit = insert(_AUDIT).values(
            {
                **_values("audit", [c for c in _AUDIT_COLUMNS if c.key in _AUDITED]),
                "case_id": bindparam("case_id", type_=_CASES.c.id.type),
                "outcome": "ok",
            }
        )
        parts.append(("audited", audit))
    if changed:
        moved = (
            update(_CASES)
            .where(_CASES.c.id == bindparam("case_id", type_=_CASES.c.id.type))
            .values({c: bindparam(f"case_{c}", type_=_CASES.c[c].type) for c in changed})
        )
        parts.append(("moved", moved))
    if entries:
        added = insert(_TIMELINE).values(
            [
                {c.key: bindparam(f"entry{i}_{c.key}", type_=c.type) for c in _ENTRY_COLUMNS}
                for i in range(entries)
            ]
        )
        parts.append(("added", added))
    if events:
        parts.append(("published", outbox_insert(events)))
    assert parts, "nothing to save"
    *ctes, (_, statement) = parts
    for name, part in ctes:
        statement = statement.add_cte(part.cte(name))
    return cast(ClauseElement, statement)


_CASE_VIEW = text(
    # The reader's audit row, when one is given and the case exists: a data-modifying CTE runs
    # whether or not the query reads it.
    "with audited as (insert into access_audit (at, actor, action, case_id, outcome)"
    " select cast(:audit_at as timestamptz), cast(:audit_actor as varchar),"
    " cast(:audit_action as varchar), a.id, 'ok' from cases a"
    " where a.id = :case_id and cast(:audit_actor as varchar) is not null)"
    # Each part a row of its table's composite type (asyncpg decodes it with its columns'
    # names and types, JSONB through the engine's codec), or an array of them.
    " select c.*,"
    " array(select k from case_consents k where k.case_id = c.id) as view_consents,"
    " array(select d from case_documents d where d.case_id = c.id"
    "  order by d.created_at) as view_documents,"
    " (select t from case_timeline t where t.case_id = c.id"
    "  order by t.id desc limit 1) as view_last_entry,"
    " array(select r from information_requests r where r.case_id = c.id"
    "  order by r.requested_at) as view_requests,"
    " array(select q from follow_up_questions q where q.case_id = c.id"
    "  order by q.asked_at) as view_follow_ups,"
    " array(select m from meetings m where m.case_id = c.id"
    "  order by m.created_at) as view_meetings"
    " from cases c where c.id = :case_id"
)
"""The case, its parts (`CaseParts`) and, for an actor given, the reader's audit row, in one
statement (`case_view`, `CaseRepository.parts`)."""


_GIVE_CONSENT = text(
    # The case's row locked and changed only while it is open (an update waiting for another
    # transaction's change of the row checks its state again on the row as that left it).
    "with moved as (update cases set updated_at = cast(:at as timestamptz)"
    " where id = cast(:case_id as uuid) and status = any(cast(:open_states as varchar[]))"
    " returning *),"
    " given as (insert into case_consents as k (id, case_id, kind, version, granted_at)"
    " select cast(:consent_id as uuid), mv.id, cast(:kind as varchar), cast(:version as varchar),"
    " cast(:at as timestamptz) from moved mv"
    " on conflict (case_id, kind) do update"
    " set version = excluded.version, granted_at = excluded.granted_at returning k),"
    " audited as (insert into access_audit (at, actor, action, case_id, outcome)"
    " select cast(:at as timestamptz), cast(:audit_actor as varchar),"
    " cast(:audit_action as varchar), mv.id, 'ok' from moved mv)"
    # The parts as `_CASE_VIEW` reads them (the statement's snapshot: without its own writes).
    " select c.*, (select g.k from given g) as given_consent,"
    " (select cast(row(mv.*) as cases) from moved mv) as moved_case,"
    " array(select k from case_consents k where k.case_id = c.id) as view_consents,"
    " array(select d from case_documents d where d.case_id = c.id"
    "  order by d.created_at) as view_documents,"
    " (select t from case_timeline t where t.case_id = c.id"
    "  order by t.id desc limit 1) as view_last_entry,"
    " array(select r from information_requests r where r.case_id = c.id"
    "  order by r.requested_at) as view_requests,"
    " array(select q from follow_up_questions q where q.case_id = c.id"
    "  order by q.asked_at) as view_follow_ups,"
    " array(select m from meetings m where m.case_id = c.id"
    "  order by m.created_at) as view_meetings"
    " from cases c where c.id = cast(:case_id as uuid)"
)
"""`give_consent`'s statement, built once: the case changed, its consent kept and the audit row
written in data-modifying CTEs, and the case as it was and as it is now with its parts."""


RepositoryFactory = Callable[[AsyncSession | UnitOfWork], CaseRepository]
"""How a use case gets its repository from its unit of work (or its session): `CaseRepository`
itself (or `CaseRepository.on`'s), or (a unit test) a function answering an in-memory fake."""


class WebhookRepository:
    """The front ends' webhook subscriptions and delivery logs on one session: rows are added and
    changed in the caller's transaction, never committed here."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def subscription(
        self, client_id: str, *, for_update: bool = False
    ) -> WebhookSubscription | None:
        """The front end's subscription row (also once unsubscribed: `url` null), locked for the
        rest of the transaction when it is to change: its versions are serialised."""
        return await self.session.get(
            WebhookSubscription, client_id, with_for_update=True if for_update else None
        )

    def add(self, row: WebhookSubscription) -> None:
        self.session.add(row)

    async def keep_attempt(self, attempt: WebhookDeliveryAttempt) -> None:
        """Keep one delivery attempt in the log; the same attempt again (its delivery id and
        number) is left as it is."""
        await self.session.execute(
            insert(WebhookDeliveryAttempt)
            .values(
                client_id=attempt.client_id,
                delivery_id=attempt.delivery_id,
                case_id=attempt.case_id,
                event=attempt.event,
                attempt=attempt.attempt,
                attempted_at=attempt.attempted_at,
                status_code=attempt.status_code,
                outcome=attempt.outcome,
                error_code=attempt.error_code,
                next_attempt_at=attempt.next_attempt_at,
            )
            .on_conflict_do_nothing()
        )

    async def delivery_log(
        self, client_id: str, *, limit: int, before: datetime | None = None
    ) -> list[WebhookDeliveryAttempt]:
        """The front end's attempts, newest first, made before `before`, at most `limit`."""
        query = select(WebhookDeliveryAttempt).where(
            col(WebhookDeliveryAttempt.client_id) == client_id
        )
        if before is not None:
            query = query.where(col(WebhookDeliveryAttempt.attempted_at) < before)
        rows = await self.session.execute(
            query.order_by(
                col(WebhookDeliveryAttempt.attempted_at).desc(),
                col(WebhookDeliveryAttempt.attempt).desc(),
            ).limit(limit)
        )
        return list(rows.scalars())


WebhookRepositoryFactory = Callable[[AsyncSession], WebhookRepository]
"""How a webhook use case gets its repository from its unit of work's session:
`WebhookRepository` itself, or (a unit test) a function answering an in-memory fake."""
