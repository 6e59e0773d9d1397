"""What intake's consumer asks PostgreSQL per event of its busiest kinds, counted (issue 25, cost
per case): every statement as asyncpg sends it (the consumer's unit of work runs its own
transaction on asyncpg, begun with the inbox row, where SQLAlchemy's events do not see them),
and those SQLAlchemy sends. A document's fact, a language check that moves a case, a referral:
through asyncpg alone, no ORM session made. That the same events still move cases in order and
once is tested over Kafka in test_lifecycle_over_kafka and test_case_states."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord
from sqlalchemy import event, select

from referrals_common.contracts import (
    CentersProposed,
    DocumentRejected,
    DocumentTranslationRequired,
    DocumentUnreadable,
    ReferralRequested,
    StatusChangeReason,
    new_event,
)
from referrals_common.db import UnitOfWork
from referrals_common.messaging.schema import outbox_table
from referrals_intake import consumers, repository
from referrals_intake.bootstrap import Runtime
from referrals_intake.models import AccessAudit, CaseDocument, TimelineEntry
from tests.integration.statements_sent import Sent, queries_sent

from .conftest import open_case
from .test_lifecycle_over_kafka import accepted, stored

pytestmark = pytest.mark.integration

CONSUMER = "intake.case-lifecycle"
Handler = Callable[[UnitOfWork], Awaitable[None]]


async def apply(runtime: Runtime, applied: Any, handler: Handler) -> Sent:
    """`applied` as the consumer applies it: its inbox row, `handler`, one commit; what was sent
    meanwhile. The unit of work made no ORM session when `sent.orm` is empty."""
    async with queries_sent(runtime.db, look_ups=False) as sent, runtime.db.unit_of_work() as uow:
        assert await uow.inbox.record(CONSUMER, applied.id, applied.type)
        await handler(uow)
        await uow.commit()
    return sent


def document_fact(runtime: Runtime, applied: Any) -> Handler:
    """The consumer's handler of a document's stored event or language check (consumers.py)."""
    d = applied.data
    if applied.type.endswith("document.stored.v1"):
        facts: dict[str, Any] = {
            "kind": str(d.kind),
            "media_type": str(d.media_type),
            "size_bytes": d.size_bytes,
            "sha256": d.sha256,
            "translation_of": d.translation_of,
            "stored": True,
        }
    elif applied.type.endswith("language_accepted.v1"):
        facts = {
            "check": "accepted",
            "language": d.main_language,
            "check_detail": None,
            "acceptable_languages": None,
            "unreadable_reason": None,
        }
    else:
        facts = {
            "check": "unreadable",
            "check_detail": d.detail[:500],
            "acceptable_languages": None,
            "unreadable_reason": str(d.reason),
        }
    return lambda uow: runtime.intake.on_document(uow, d.case_id, d.document_id, **facts)


def requested(case_id: uuid.UUID) -> Any:
    return new_event(
        ReferralRequested(
            case_id=case_id,
            referral_id=uuid.uuid4(),
            center_code="charite-berlin",
            center_country="DE",
            center_name="Charité Berlin",
            attempt=1,
            answer_due_at=datetime(2026, 12, 8, 10, 30, tzinfo=UTC),
            rationale="Reviews C50.",
        )
    )


def referral(runtime: Runtime, applied: Any) -> Handler:
    d = applied.data
    params = {"center": d.center_code, "country": d.center_country, "attempt": d.attempt}
    return lambda uow: runtime.intake.on_referral(
        uow, d.case_id, StatusChangeReason.REFERRAL_REQUESTED, {**params, "due": "2026-12-08"}
    )


def kinds(sent: Sent) -> list[str]:
    """Each native statement by its first words."""
    return [" ".join(q.split()[:2]).lower() for q in sent.native]


async def submitted_case(api: Any, api_key: str, runtime: Runtime) -> tuple[uuid.UUID, Any, dict]:
    """A submitted case whose pathology report is stored, not checked yet: (id, the report's
    stored event, the case's auth headers)."""
    raw_id, headers = await open_case(api, api_key)
    case_id = uuid.UUID(raw_id)
    _, report = stored(case_id, "pathology_report")
    await apply(runtime, report, document_fact(runtime, report))
    for kind in ("processing", "cross_border"):
        r = await api.put(
            f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
        )
        assert r.status_code in (200, 201), r.text
    r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "submitted"
    return case_id, report, headers


async def outbox_types(runtime: Runtime, case_id: uuid.UUID) -> list[str]:
    async with runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(outbox_table.c.event_type)
            .where(outbox_table.c.aggregate_id == str(case_id))
            .order_by(outbox_table.c.seq)
        )
        return list(rows.scalars())


async def timeline(runtime: Runtime, case_id: uuid.UUID) -> list[tuple[str | None, str, str]]:
    async with runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(TimelineEntry).where(TimelineEntry.case_id == case_id).order_by(TimelineEntry.id)
        )
        return [(e.from_status, e.to_status, e.reason_code) for e in rows.scalars()]


async def test_a_draft_s_document_is_kept_in_one_statement_between_the_inbox_row_and_commit(
    api, api_key, runtime
) -> None:
    raw_id, _ = await open_case(api, api_key)
    case_id = uuid.UUID(raw_id)
    doc_id, report = stored(case_id, "pathology_report")

    sent = await apply(runtime, report, document_fact(runtime, report))

    assert sent.orm == []
    assert len(sent.native) == 3, sent.native
    assert kinds(sent)[0] == "begin; insert" and sent.native[-1] == "commit"
    async with runtime.db.unit_of_work() as uow:
        doc = await uow.session.get(CaseDocument, doc_id)
        assert doc is not None and doc.case_id == case_id
        assert (doc.kind, doc.stored, doc.size_bytes, doc.check) == (
            "pathology_report",
            True,
            48_213,
            "pending",
        )


async def test_another_case_s_document_is_never_changed(api, api_key, runtime) -> None:
    first, _ = await open_case(api, api_key)
    second, _ = await open_case(api, api_key)
    doc_id, report = stored(uuid.UUID(first), "pathology_report")
    await apply(runtime, report, document_fact(runtime, report))
    check = accepted(uuid.UUID(second), doc_id, "en")

    await apply(runtime, check, document_fact(runtime, check))

    async with runtime.db.unit_of_work() as uow:
        doc = await uow.session.get(CaseDocument, doc_id)
        assert doc is not None and (str(doc.case_id), doc.check) == (first, "pending")


async def test_the_last_language_check_moves_a_submitted_case_to_ready_in_four_statements(
    api, api_key, runtime
) -> None:
    """The inbox row with the BEGIN; the case locked, the check kept, the documents and consents
    read (one statement); the case's row, its timeline entry and both events (one); the COMMIT.
    Was nine, four of them through the ORM; then five, the events a statement of their own."""
    case_id, report, headers = await submitted_case(api, api_key, runtime)
    check = accepted(case_id, report.data.document_id, "en")

    sent = await apply(runtime, check, document_fact(runtime, check))

    assert sent.orm == []
    assert len(sent.native) == 4, sent.native
    assert kinds(sent)[0] == "begin; insert" and sent.native[-1] == "commit"
    saved = sent.native[2].lower()
    assert saved.startswith("with moved as (update cases")
    assert "insert into case_timeline" in saved and "insert into outbox" in saved
    r = await api.get(f"/v1/cases/{case_id}", headers=headers)
    assert r.json()["status"] == "ready"
    assert (await timeline(runtime, case_id))[-1] == ("submitted", "ready", "documents_accepted")
    assert (await outbox_types(runtime, case_id))[-2:] == [
        "referrals.case.status_changed.v1",
        "referrals.case.ready_for_referral.v1",
    ]


async def test_an_unreadable_document_names_itself_in_the_entry_without_reading_it_again(
    api, api_key, runtime
) -> None:
    case_id, report, _ = await submitted_case(api, api_key, runtime)
    check = new_event(
        DocumentUnreadable(
            case_id=case_id,
            document_id=report.data.document_id,
            reason="no_text",
            detail="no text layer and OCR found no words",
        )
    )

    sent = await apply(runtime, check, document_fact(runtime, check))

    assert sent.orm == [] and len(sent.native) == 4, sent.native
    async with runtime.db.unit_of_work() as uow:
        entry = (
            await uow.session.execute(
                select(TimelineEntry)
                .where(TimelineEntry.case_id == case_id)
                .order_by(TimelineEntry.id.desc())  # type: ignore[union-attr]
                .limit(1)
            )
        ).scalar_one()
    assert (entry.to_status, entry.reason_code) == ("action_required", "document_unreadable")
    assert entry.params == {
        "documents": [
            {
                "kind": "pathology_report",
                "check": "unreadable",
                "language": None,
                "acceptable_languages": None,
                "unreadable_reason": "no_text",
            }
        ]
    }


async def test_a_referral_moves_a_ready_case_in_four_statements(api, api_key, runtime) -> None:
    """The inbox row with the BEGIN; the case locked; its row, its timeline entry and the status
    event (one statement); the COMMIT. Was six, three of them through the ORM; then five, the
    event a statement of its own."""
    case_id, report, headers = await submitted_case(api, api_key, runtime)
    check = accepted(case_id, report.data.document_id, "en")
    await apply(runtime, check, document_fact(runtime, check))
    routed = requested(case_id)

    sent = await apply(runtime, routed, referral(runtime, routed))

    assert sent.orm == []
    assert len(sent.native) == 4, sent.native
    assert "insert into outbox" in sent.native[2].lower()
    r = await api.get(f"/v1/cases/{case_id}", headers=headers)
    assert r.json()["status"] == "referred"
    assert (await timeline(runtime, case_id))[-1] == ("ready", "referred", "referral_requested")
    assert (await outbox_types(runtime, case_id))[-1] == "referrals.case.status_changed.v1"

    again = requested(case_id)  # a reroute of a referred case: a note, no transition
    sent = await apply(runtime, again, referral(runtime, again))

    assert sent.orm == [] and len(sent.native) == 4, sent.native
    assert (await timeline(runtime, case_id))[-1] == ("referred", "referred", "referral_requested")


async def test_a_language_check_and_a_referral_make_no_model_of_a_row(
    api, api_key, runtime, monkeypatch
) -> None:
    """The checks' statement gives the documents' states and the consents' kinds as values, and
    the moves' timeline entries are written from their values: no `CaseDocument`,
    `CaseConsent` or `TimelineEntry` is made (SQLModel's and SQLAlchemy's work on each cost
    more than its statement). The case still moves to ready, then to referred."""
    raw_id, headers = await open_case(api, api_key)
    case_id = uuid.UUID(raw_id)
    docs = [stored(case_id, kind) for kind in ("pathology_report", "discharge_summary")]
    for _, report in docs:
        await apply(runtime, report, document_fact(runtime, report))
    for kind in ("processing", "cross_border"):
        await api.put(
            f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
        )
    assert (await api.post(f"/v1/cases/{case_id}/submit", headers=headers)).status_code == 200
    made: list[str] = []
    detached = repository._detached

    def counted(model: Any, values: Any) -> Any:
        made.append(model.__name__)
        return detached(model, values)

    def entry_made(*_: Any, **__: Any) -> None:
        made.append("TimelineEntry")

    monkeypatch.setattr(repository, "_detached", counted)
    event.listen(TimelineEntry, "init", entry_made)
    try:
        for doc_id, _ in docs:
            check = accepted(case_id, doc_id, "en")
            await apply(runtime, check, document_fact(runtime, check))
        routed = requested(case_id)
        await apply(runtime, routed, referral(runtime, routed))
    finally:
        event.remove(TimelineEntry, "init", entry_made)

    assert made == []
    assert (await timeline(runtime, case_id))[-2:] == [
        ("submitted", "ready", "documents_accepted"),
        ("ready", "referred", "referral_requested"),
    ]


async def test_a_submit_locks_its_case_with_its_consents_and_documents_in_one_statement(
    api, api_key, runtime
) -> None:
    raw_id, headers = await open_case(api, api_key)
    case_id = uuid.UUID(raw_id)
    _, report = stored(case_id, "pathology_report")
    await apply(runtime, report, document_fact(runtime, report))
    for kind in ("processing", "cross_border"):
        r = await api.put(
            f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
        )
        assert r.status_code in (200, 201), r.text

    async with queries_sent(runtime.db, look_ups=False) as sent:
        r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)

    assert r.status_code == 200, r.text
    assert r.json()["status"] == "submitted"
    # Its transaction runs on asyncpg itself: nothing through SQLAlchemy (was all of it).
    assert sent.orm == []
    begin, locked, *writes, commit = sent.native
    assert (begin, commit) == ("begin; select", "commit")
    assert "FOR UPDATE OF cases" in locked
    assert "from case_consents" in locked and "from case_documents" in locked
    # And the rest of what the answer shows, which a submit does not change.
    for part in ("information_requests", "follow_up_questions", "meetings"):
        assert f"from {part}" in locked
    # The case's row with its entry, its events and the access audit row: one statement, and
    # nothing read again for the answer. Was seven: the consents and the documents each read by
    # a statement of their own; then six, the events a statement of their own; then five, the
    # answer's parts read again with the audit row after the save.
    assert [" ".join(w.split()[:2]).lower() for w in writes] == ["with audited"]
    for written in ("update cases", "insert into case_timeline", "insert into outbox"):
        assert written in writes[0].lower()
    assert "insert into access_audit" in writes[0].lower()
    # The answer is the case as it is read back once committed.
    body = r.json()
    assert body == (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
    assert [c["kind"] for c in body["consents"]] == ["processing", "cross_border"]
    assert [d["kind"] for d in body["documents"]] == ["pathology_report"]
    assert body["next_step"] is not None
    async with runtime.db.unit_of_work() as uow:
        audited = (
            await uow.session.execute(
                select(AccessAudit.action).where(AccessAudit.case_id == case_id)
            )
        ).scalars()
        assert list(audited).count("submit_case") == 1
    assert await outbox_types(runtime, case_id) == [
        "referrals.case.submitted.v1",
        "referrals.case.contact_shared.v1",
        "referrals.case.status_changed.v1",
    ]


def batch_of(*events: Any) -> tuple[Any, ...]:
    """`events` as one partition's records of a poll (the consumer applies them in one
    transaction)."""
    return tuple(
        ConsumerRecord("t", 0, offset, 0, 0, b"k", e.to_json(), None, 0, 0, ())
        for offset, e in enumerate(events)
    )


def proposed(case_id: uuid.UUID) -> Any:
    centers = [
        {
            "rank": rank,
            "center_code": code,
            "center_name": name,
            "center_country": "DE",
            "turnaround_days": 14,
            "why": "Reviews C50.",
        }
        for rank, (code, name) in enumerate(
            [("charite-berlin", "Charité Berlin"), ("lmu-munich", "LMU München")], 1
        )
    ]
    return new_event(
        CentersProposed(
            case_id=case_id,
            proposals=centers,
            choose_by=datetime(2026, 12, 8, 10, 30, tzinfo=UTC),
        )
    )


async def test_a_batch_of_language_checks_goes_through_asyncpg_in_one_transaction(
    api, api_key, runtime
) -> None:
    """The consumer's batch (one partition's events of a poll, one transaction): every check
    kept and the case moved with no statement through SQLAlchemy."""
    raw_id, headers = await open_case(api, api_key)
    case_id = uuid.UUID(raw_id)
    docs = [stored(case_id, kind) for kind in ("pathology_report", "discharge_summary")]
    for _, report in docs:
        await apply(runtime, report, document_fact(runtime, report))
    for kind in ("processing", "cross_border"):
        await api.put(
            f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
        )
    assert (await api.post(f"/v1/cases/{case_id}/submit", headers=headers)).status_code == 200
    consumer = consumers.build_consumer(runtime.intake, runtime.db, cast(Any, None))

    async with queries_sent(runtime.db, look_ups=False) as sent:
        await consumer.process_batch(batch_of(*(accepted(case_id, d, "en") for d, _ in docs)))

    assert consumer.stats["applied"] == 2
    assert sent.orm == []
    r = await api.get(f"/v1/cases/{case_id}", headers=headers)
    assert r.json()["status"] == "ready"


async def test_a_batch_reads_the_case_as_its_earlier_event_left_it_through_the_session(
    api, api_key, runtime
) -> None:
    """An event whose handler moves the case through the session (centers proposed), then one
    whose handler reads and moves it through asyncpg (a referral), in one batch: the second
    sees the first's move (the consumer writes the session's changes before each handler) and
    the first's is not written over it."""
    case_id, report, headers = await submitted_case(api, api_key, runtime)
    check = accepted(case_id, report.data.document_id, "en")
    await apply(runtime, check, document_fact(runtime, check))
    consumer = consumers.build_consumer(runtime.intake, runtime.db, cast(Any, None))

    await consumer.process_batch(batch_of(proposed(case_id), requested(case_id)))

    assert consumer.stats["applied"] == 2
    r = await api.get(f"/v1/cases/{case_id}", headers=headers)
    assert r.json()["status"] == "referred"
    assert (await timeline(runtime, case_id))[-2:] == [
        ("ready", "choosing_center", "centers_proposed"),
        ("choosing_center", "referred", "referral_requested"),
    ]


async def submitted_with(
    api: Any, api_key: str, runtime: Runtime, kinds_: tuple[str, ...]
) -> tuple[uuid.UUID, list[uuid.UUID], dict]:
    """A submitted case whose documents of `kinds_` are stored, none checked yet: (id, the
    documents' ids oldest first, the case's auth headers)."""
    raw_id, headers = await open_case(api, api_key)
    case_id = uuid.UUID(raw_id)
    docs = [stored(case_id, kind) for kind in kinds_]
    for _, report in docs:
        await apply(runtime, report, document_fact(runtime, report))
    for kind in ("processing", "cross_border"):
        await api.put(
            f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
        )
    assert (await api.post(f"/v1/cases/{case_id}/submit", headers=headers)).status_code == 200
    return case_id, [d for d, _ in docs], headers


async def ready_events(runtime: Runtime, case_id: uuid.UUID) -> list[dict[str, Any]]:
    async with runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            select(outbox_table.c.payload)
            .where(outbox_table.c.aggregate_id == str(case_id))
            .where(outbox_table.c.event_type == "referrals.case.ready_for_referral.v1")
        )
        return [p["data"] for p in rows.scalars()]


THREE = ("pathology_report", "discharge_summary", "imaging_report")


async def test_a_batch_of_a_case_s_checks_locks_and_reads_the_case_once(
    api, api_key, runtime
) -> None:
    """The three checks of a case's documents in one batch (one transaction): the first locks
    the case and reads its documents and consents with its fact; the next two change their
    document's row alone (the case locked, its documents as the earlier facts left them, its
    consents: all this transaction's already), the last one's in the statement that saves the
    case's move. Was six statements, three of which each locked and read the case, its
    documents and consents."""
    case_id, docs, headers = await submitted_with(api, api_key, runtime, THREE)
    consumer = consumers.build_consumer(runtime.intake, runtime.db, cast(Any, None))

    async with queries_sent(runtime.db, look_ups=False) as sent:
        await consumer.process_batch(batch_of(*(accepted(case_id, d, "en") for d in docs)))

    assert consumer.stats["applied"] == 3
    assert sent.orm == []
    assert len(sent.native) == 5, sent.native
    begin, first, second, saved, commit = (" ".join(q.lower().split()) for q in sent.native)
    assert begin.startswith("begin; insert") and commit == "commit"
    assert first.startswith("with fact_case as") and "for update" in first
    assert second.startswith("update case_documents set")
    assert "cases" not in second.replace("case_documents", "")  # no read of the case
    assert saved.startswith("with kept as (update case_documents set")
    assert "update cases" in saved and "insert into outbox" in saved
    r = await api.get(f"/v1/cases/{case_id}", headers=headers)
    assert r.json()["status"] == "ready"
    documents = r.json()["documents"]
    assert [(d["check"], d["language"]) for d in documents] == [("accepted", "en")] * 3
    moves = await timeline(runtime, case_id)
    assert moves[-1] == ("submitted", "ready", "documents_accepted")
    assert moves.count(("submitted", "ready", "documents_accepted")) == 1
    (ready,) = await ready_events(runtime, case_id)
    assert ready["document_ids"] == [str(d) for d in docs]


async def test_a_batch_reads_the_case_again_after_a_handler_went_through_the_session(
    api, api_key, runtime
) -> None:
    """A check, a refused upload (its note through the session) and the other check of one
    case in one batch: the second check reads the case and its documents again (the session
    may have changed them), and the case becomes ready once, the note on its timeline."""
    case_id, docs, headers = await submitted_with(api, api_key, runtime, THREE[:2])
    refused = new_event(
        DocumentRejected(
            case_id=case_id, document_id=uuid.uuid4(), reason="too_large", detail="over 50 MB"
        )
    )
    consumer = consumers.build_consumer(runtime.intake, runtime.db, cast(Any, None))
    batch = [accepted(case_id, docs[0], "en"), refused, accepted(case_id, docs[1], "en")]

    async with queries_sent(runtime.db, look_ups=False) as sent:
        await consumer.process_batch(batch_of(*batch))

    assert consumer.stats["applied"] == 3
    assert sum(q.lower().startswith("with fact_case as") for q in sent.native) == 2
    r = await api.get(f"/v1/cases/{case_id}", headers=headers)
    assert r.json()["status"] == "ready"
    assert [t[2] for t in await timeline(runtime, case_id)][-2:] == [
        "document_rejected",
        "documents_accepted",
    ]
    assert len(await ready_events(runtime, case_id)) == 1


async def test_a_submit_whose_documents_were_all_checked_answers_the_ready_case_as_read_back(
    api, api_key, runtime
) -> None:
    """Checked before the submit, the documents move the case on to ready in the submission's
    statement: the answer (its parts read with the case's lock, its next step the newest entry
    written) is the case as it is read back, with one audit row of the submit."""
    raw_id, headers = await open_case(api, api_key)
    case_id = uuid.UUID(raw_id)
    doc_id, report = stored(case_id, "pathology_report")
    await apply(runtime, report, document_fact(runtime, report))
    check = accepted(case_id, doc_id, "en")
    await apply(runtime, check, document_fact(runtime, check))
    for kind in ("processing", "cross_border"):
        await api.put(
            f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
        )

    async with queries_sent(runtime.db, look_ups=False) as sent:
        r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)

    assert r.status_code == 200, r.text
    assert len(sent.native) == 4 and sent.orm == [], sent
    body = r.json()
    assert body["status"] == "ready"
    assert body == (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
    assert (await timeline(runtime, case_id))[-2:] == [
        ("draft", "submitted", "patient_submitted"),
        ("submitted", "ready", "documents_accepted"),
    ]
    async with runtime.db.unit_of_work() as uow:
        actions = (
            await uow.session.execute(
                select(AccessAudit.action).where(AccessAudit.case_id == case_id)
            )
        ).scalars()
        assert list(actions).count("submit_case") == 1


async def test_a_batch_s_later_check_that_needs_a_translation_moves_the_case_with_its_fact(
    api, api_key, runtime
) -> None:
    """An accepted check, then one that asks for a translation, of one case in a batch: the
    second's fact (its languages a JSON list) is written with the case's move to action
    required, whose entry names that document; the document reads as the fact says."""
    case_id, docs, headers = await submitted_with(api, api_key, runtime, THREE[:2])
    needs = new_event(
        DocumentTranslationRequired(
            case_id=case_id,
            document_id=docs[1],
            detected_language="ro",
            acceptable_languages=["en", "de"],
            confidence=0.98,
        )
    )
    consumer = consumers.build_consumer(runtime.intake, runtime.db, cast(Any, None))

    async with queries_sent(runtime.db, look_ups=False) as sent:
        await consumer.process_batch(batch_of(accepted(case_id, docs[0], "en"), needs))

    assert len(sent.native) == 4, sent.native  # BEGIN with the inbox, the first fact, the move
    r = await api.get(f"/v1/cases/{case_id}", headers=headers)
    assert r.json()["status"] == "action_required"
    second = r.json()["documents"][1]
    assert (second["check"], second["language"]) == ("translation_required", "ro")
    assert [lang["code"] for lang in second["acceptable_languages"]] == ["en", "de"]
    async with runtime.db.unit_of_work() as uow:
        entry = (
            await uow.session.execute(
                select(TimelineEntry)
                .where(TimelineEntry.case_id == case_id)
                .order_by(TimelineEntry.id.desc())  # type: ignore[union-attr]
                .limit(1)
            )
        ).scalar_one()
        doc = await uow.session.get(CaseDocument, docs[1])
    assert (entry.to_status, entry.reason_code) == ("action_required", "translation_required")
    assert [d["kind"] for d in entry.params["documents"]] == ["discharge_summary"]
    assert doc is not None and doc.acceptable_languages == ["en", "de"]
    assert doc.check_detail is not None and "ro" in doc.check_detail
