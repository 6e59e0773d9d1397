"""What records' consumer asks PostgreSQL per event of its projections, counted (issue 25, cost
per case): a case's status and an offered referral are one statement each, through asyncpg itself
in the transaction the inbox opened (SQLAlchemy's events do not see them), and no ORM session is
made for them. Their rules hold on that path as on the session's (tests/integration/records/
test_documents.py): withdrawal is final, a referral first heard of after it is born closed."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from itertools import count
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from referrals_common.contracts import (
    CaseStatus,
    CaseStatusChanged,
    CaseSubmitted,
    CloudEvent,
    StatusChangeReason,
    new_event,
    topics,
)
from referrals_common.db import Database, UnitOfWork
from referrals_records.consumers import build_consumer
from tests.integration.statements_sent import queries_sent

from .test_documents import rows

pytestmark = pytest.mark.integration

CONSUMER = "records.projections"


async def consumed(db: Database, handler: Callable[[UnitOfWork], Awaitable[None]]) -> None:
    """`handler` run as the consumer runs it: the event's inbox row first, then one commit."""
    async with db.unit_of_work() as uow:
        assert await uow.inbox.record(CONSUMER, uuid.uuid4(), "test.event")
        await handler(uow)
        await uow.commit()


async def test_a_status_and_an_offer_are_one_statement_each_in_the_inbox_transaction(
    runtime: Any,
) -> None:
    records, db = runtime.records, runtime.db
    case_id, referral_id = uuid.uuid4(), uuid.uuid4()
    async with queries_sent(db) as sent:
        await consumed(db, lambda uow: records.on_case_status(uow, case_id, "submitted"))
        await consumed(
            db, lambda uow: records.on_referral_offered(uow, referral_id, case_id, "charite-berlin")
        )
    assert sent.orm == []
    native = [query.lower() for query in sent.native]
    assert [query.split()[0] for query in native] == ["begin;", "insert", "commit"] * 2
    assert native[0].startswith("begin; insert into inbox")
    assert "insert into case_states" in native[1]
    assert "insert into center_referrals" in native[4]
    [state] = await rows(runtime, "select status from case_states where case_id = $1", case_id)
    assert state["status"] == "submitted"
    [referral] = await rows(
        runtime,
        "select center_code, closed_at from center_referrals where referral_id = $1",
        referral_id,
    )
    assert referral["center_code"] == "charite-berlin" and referral["closed_at"] is None


async def test_on_asyncpg_withdrawal_stays_final_and_a_later_offer_is_born_closed(
    runtime: Any,
) -> None:
    records, db = runtime.records, runtime.db
    case_id, late = uuid.uuid4(), uuid.uuid4()
    for status in (CaseStatus.SUBMITTED, CaseStatus.WITHDRAWN, CaseStatus.REFERRED):
        await consumed(db, lambda uow, s=status: records.on_case_status(uow, case_id, s))
    await consumed(db, lambda uow: records.on_referral_offered(uow, late, case_id, "nio-warsaw"))
    [state] = await rows(runtime, "select status from case_states where case_id = $1", case_id)
    assert state["status"] == "withdrawn"
    [referral] = await rows(
        runtime, "select closed_reason from center_referrals where referral_id = $1", late
    )
    assert referral["closed_reason"] == "withdrawn"


class NoDeadLetters:
    async def publish(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing of a staged case is dead-lettered")


def submission(case_id: uuid.UUID) -> list[CloudEvent[Any]]:
    """What intake's submission of a case whose documents were all read writes to the cases
    topic, in its order: case.submitted, the move out of draft, the move to ready."""

    def moved(before: CaseStatus, after: CaseStatus, why: StatusChangeReason) -> Any:
        return new_event(
            CaseStatusChanged(
                case_id=case_id, from_status=before, to_status=after, reason_code=why, reason="-"
            )
        )

    return [
        new_event(
            CaseSubmitted(
                case_id=case_id,
                clinical={"icd10": "C50.9", "age_group": "adult", "reasons": ["choose_treatment"]},
                destination={"preference": "countries", "countries": ["DE"]},
                locale="uk",
                processing_consent_version="2026-01",
                cross_border_consent_version="2026-01",
                submitted_at=datetime.now(UTC),
            )
        ),
        moved(CaseStatus.DRAFT, CaseStatus.SUBMITTED, StatusChangeReason.PATIENT_SUBMITTED),
        moved(CaseStatus.SUBMITTED, CaseStatus.READY, StatusChangeReason.DOCUMENTS_ACCEPTED),
    ]


def polled(events: list[CloudEvent[Any]], offsets: Any) -> tuple[Any, ...]:
    """`events` as one partition's records of one poll."""
    return tuple(
        ConsumerRecord(topics.CASES, 0, next(offsets), 0, 0, b"k", e.to_json(), None, 0, 0, ())
        for e in events
    )


async def test_a_submission_is_read_from_its_move_out_of_draft_not_from_case_submitted(
    runtime: Any,
) -> None:
    """case.submitted is followed by a CaseStatusChanged to submitted (its contract), which
    writes the same status: records' consumer skips it by its type, no inbox row, no write.
    The submission's batch is the BEGIN with two inbox rows, the two moves and the COMMIT (was
    three writes: submitted, submitted again, ready)."""
    case_id = uuid.uuid4()
    consumer = build_consumer(runtime.records, runtime.db, NoDeadLetters(), pepper=b"pepper")
    submitted, out_of_draft, ready = submission(case_id)
    async with queries_sent(runtime.db) as sent:
        await consumer.process_batch(polled([submitted, out_of_draft, ready], count()))
    assert sent.orm == []
    native = [query.lower() for query in sent.native]
    assert [query.split()[0] for query in native] == ["begin;", "insert", "insert", "commit"]
    assert str(submitted.id) not in native[0]
    assert str(out_of_draft.id) in native[0] and str(ready.id) in native[0]
    assert consumer.stats["applied"] == 2 and consumer.stats["skipped"] == 1
    [state] = await rows(runtime, "select status from case_states where case_id = $1", case_id)
    assert state["status"] == "ready"
    inbox = await rows(runtime, "select event_id from inbox")
    assert submitted.id not in {row["event_id"] for row in inbox}


async def test_case_submitted_alone_sends_nothing_and_its_move_out_of_draft_writes_the_status(
    runtime: Any,
) -> None:
    case_id = uuid.uuid4()
    consumer = build_consumer(runtime.records, runtime.db, NoDeadLetters(), pepper=b"pepper")
    submitted, out_of_draft, _ = submission(case_id)
    offsets = count()
    async with queries_sent(runtime.db) as sent:
        await consumer.process_batch(polled([submitted], offsets))
    assert sent.native == [] and sent.orm == []
    assert await rows(runtime, "select status from case_states where case_id = $1", case_id) == []
    await consumer.process_batch(polled([out_of_draft], offsets))
    [state] = await rows(runtime, "select status from case_states where case_id = $1", case_id)
    assert state["status"] == "submitted"


async def test_a_referrals_acceptance_its_end_and_a_withdrawal_are_one_statement_each(
    runtime: Any,
) -> None:
    """referral.accepted, its end (declined, expired, completed) and case.withdrawn: one
    statement each through asyncpg in the inbox's transaction, no ORM session (were the
    referral read and locked through the session, the case's state read, the row written back
    at the commit's flush; and the withdrawal's status, then its referrals' UPDATE through the
    session)."""
    records, db = runtime.records, runtime.db
    case_id, referral_id = uuid.uuid4(), uuid.uuid4()
    await consumed(db, lambda uow: records.on_case_status(uow, case_id, "referred"))
    await consumed(
        db, lambda uow: records.on_referral_offered(uow, referral_id, case_id, "charite-berlin")
    )
    steps: list[Callable[[UnitOfWork], Awaitable[None]]] = [
        lambda uow: records.on_referral_accepted(uow, referral_id, case_id, "charite-berlin"),
        lambda uow: records.on_referral_closed(
            uow, referral_id, case_id, "charite-berlin", "completed"
        ),
        lambda uow: records.on_case_withdrawn(uow, case_id),
    ]
    for step in steps:
        async with queries_sent(db) as sent:
            await consumed(db, step)
        assert sent.orm == []
        opening, written, commit = (query.lower() for query in sent.native)
        assert opening.startswith("begin; insert into inbox") and commit == "commit"
        assert "insert into center_referrals" in written or "update center_referrals" in written
    [referral] = await rows(
        runtime,
        "select accepted_at, closed_at, closed_reason from center_referrals where referral_id = $1",
        referral_id,
    )
    assert referral["accepted_at"] is not None and referral["closed_reason"] == "completed"


async def test_on_asyncpg_a_referrals_first_acceptance_and_first_close_stand(
    runtime: Any,
) -> None:
    records, db = runtime.records, runtime.db
    case_id, referral_id = uuid.uuid4(), uuid.uuid4()
    await consumed(
        db, lambda uow: records.on_referral_offered(uow, referral_id, case_id, "charite-berlin")
    )
    await consumed(
        db, lambda uow: records.on_referral_accepted(uow, referral_id, case_id, "charite-berlin")
    )
    [first] = await rows(
        runtime, "select accepted_at from center_referrals where referral_id = $1", referral_id
    )
    for reason in ("declined", "expired"):
        await consumed(
            db,
            lambda uow, r=reason: records.on_referral_closed(
                uow, referral_id, case_id, "charite-berlin", r
            ),
        )
    await consumed(
        db, lambda uow: records.on_referral_accepted(uow, referral_id, case_id, "charite-berlin")
    )
    [referral] = await rows(
        runtime,
        "select center_code, accepted_at, closed_at, closed_reason from center_referrals"
        " where referral_id = $1",
        referral_id,
    )
    assert referral["center_code"] == "charite-berlin"
    assert referral["accepted_at"] == first["accepted_at"]
    assert referral["closed_at"] is not None and referral["closed_reason"] == "declined"


async def test_on_asyncpg_a_referral_first_heard_of_by_its_acceptance_or_end_is_made(
    runtime: Any,
) -> None:
    """The routing and cases topics are not ordered with each other: an acceptance or an end
    heard of before the offer makes the referral's row (the offer then keeps it), born closed
    after the case's withdrawal; a withdrawal closes the case's open referrals only."""
    records, db = runtime.records, runtime.db
    case_id, accepted, declined, ended = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    late_case, late_accepted, late_closed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    berlin = "charite-berlin"
    await consumed(db, lambda uow: records.on_referral_accepted(uow, accepted, case_id, berlin))
    await consumed(
        db, lambda uow: records.on_referral_closed(uow, declined, case_id, berlin, "declined")
    )
    await consumed(db, lambda uow: records.on_referral_offered(uow, declined, case_id, "other"))
    await consumed(db, lambda uow: records.on_referral_offered(uow, ended, case_id, berlin))
    await consumed(
        db, lambda uow: records.on_referral_closed(uow, ended, case_id, berlin, "expired")
    )
    await consumed(db, lambda uow: records.on_case_withdrawn(uow, case_id))
    await consumed(db, lambda uow: records.on_case_status(uow, late_case, "withdrawn"))
    await consumed(
        db, lambda uow: records.on_referral_accepted(uow, late_accepted, late_case, berlin)
    )
    await consumed(
        db,
        lambda uow: records.on_referral_closed(uow, late_closed, late_case, berlin, "completed"),
    )
    found = {
        row["referral_id"]: row
        for row in await rows(
            runtime,
            "select referral_id, center_code, accepted_at, closed_reason from center_referrals",
        )
    }
    assert found[accepted]["accepted_at"] is not None
    assert found[accepted]["closed_reason"] == "withdrawn"  # open until the withdrawal
    assert (found[declined]["center_code"], found[declined]["closed_reason"]) == (
        berlin,
        "declined",
    )
    assert found[ended]["closed_reason"] == "expired"
    assert found[late_accepted]["closed_reason"] == "withdrawn"
    assert found[late_accepted]["accepted_at"] is not None
    assert found[late_closed]["closed_reason"] == "withdrawn"
    [state] = await rows(runtime, "select status from case_states where case_id = $1", case_id)
    assert state["status"] == "withdrawn"


async def test_follow_up_questions_and_shared_opinions_are_one_statement_each(
    runtime: Any,
) -> None:
    """A follow-up question asked and answered, and the opinions a further opinion shares: one
    statement each through asyncpg in the inbox's transaction, no ORM session (were the row
    read through the session, then added or changed and written at the commit's flush; the
    case's centers' documents read, locked and written back one by one). The first answer
    stands; of the case's opinions exactly those named are shared, and an earlier sharing is
    kept as it was."""
    records, db = runtime.records, runtime.db
    case_id, other_case, referral_id, question = (uuid.uuid4() for _ in range(4))
    kept, dropped, chosen, patients, elsewhere = (uuid.uuid4() for _ in range(5))
    earlier = datetime(2026, 1, 2, tzinfo=UTC)
    for doc, case, center, shared_at in (
        (kept, case_id, "charite-berlin", None),
        (dropped, case_id, "charite-berlin", earlier),
        (chosen, case_id, "nio-warsaw", earlier),
        (patients, case_id, None, None),
        (elsewhere, other_case, "charite-berlin", None),
    ):
        await rows(
            runtime,
            "insert into documents (id, case_id, kind, media_type, size_bytes, sha256,"
            " object_key, file_name, uploaded_by, center_code, shared_at, created_at)"
            " values ($1, $2, 'opinion', 'application/pdf', 1, $5, 'k', 'o.pdf',"
            " 'x', $3, $4, now())",
            doc,
            case,
            center,
            shared_at,
            doc.hex,
        )
    asked_at = datetime.now(UTC)
    steps: list[Callable[[UnitOfWork], Awaitable[None]]] = [
        lambda uow: records.on_follow_up_asked(uow, question, referral_id, case_id, asked_at),
        lambda uow: records.on_follow_up_asked(uow, question, referral_id, case_id, asked_at),
        lambda uow: records.on_follow_up_answered(uow, question),
        lambda uow: records.on_follow_up_answered(uow, question),
        lambda uow: records.on_opinions_shared(uow, case_id, [chosen, elsewhere, patients]),
    ]
    answers = []
    for step in steps:
        async with queries_sent(db, look_ups=False) as sent:
            await consumed(db, step)
        assert sent.orm == []
        opening, written, commit = (query.lower() for query in sent.native)
        assert opening.startswith("begin; insert into inbox") and commit == "commit"
        assert "follow_up_questions" in written or "update documents" in written
        answers += await rows(
            runtime, "select answered_at from follow_up_questions where question_id = $1", question
        )
    [row] = await rows(
        runtime,
        "select referral_id, case_id, asked_at, answered_at from follow_up_questions",
    )
    assert (row["referral_id"], row["case_id"], row["asked_at"]) == (referral_id, case_id, asked_at)
    assert row["answered_at"] is not None and answers[2]["answered_at"] == row["answered_at"]
    shared = {
        row["id"]: row["shared_at"]
        for row in await rows(runtime, "select id, shared_at from documents")
    }
    assert shared[chosen] == earlier  # shared before, and again now: since then
    assert shared[kept] is None and shared[dropped] is None
    assert shared[patients] is None  # a patient's document is no opinion to share
    assert shared[elsewhere] is None  # another case's opinion is never shared by this one


async def test_a_withdrawal_outside_the_inbox_is_the_same_one_statement_on_the_session(
    runtime: Any,
) -> None:
    """A unit of work the inbox did not open runs the same statement on its session's
    connection, and sets nothing but what it says (its parameters name no column, which
    SQLAlchemy would add to the UPDATE's SET)."""
    records, db = runtime.records, runtime.db
    case_id, referral_id, closed = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with db.unit_of_work() as uow:
        await records.on_referral_offered(uow, referral_id, case_id, "charite-berlin")
        await records.on_referral_closed(uow, closed, case_id, "nio-warsaw", "declined")
        await uow.commit()
    async with queries_sent(db) as sent, db.unit_of_work() as uow:
        await records.on_case_withdrawn(uow, case_id)
        await uow.commit()
    [withdrawal] = [query.lower() for query in sent.orm if "center_referrals" in query.lower()]
    assert withdrawal.startswith("with closed as (update center_referrals set closed_at=")
    assert "set case_id" not in withdrawal
    found = {
        row["referral_id"]: (row["case_id"], row["closed_reason"])
        for row in await rows(
            runtime, "select referral_id, case_id, closed_reason from center_referrals"
        )
    }
    assert found == {referral_id: (case_id, "withdrawn"), closed: (case_id, "declined")}
    [state] = await rows(runtime, "select status from case_states where case_id = $1", case_id)
    assert state["status"] == "withdrawn"
