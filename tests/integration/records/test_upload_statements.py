"""An upload's own statements (`repository.UploadStatements`, through asyncpg itself) on real
PostgreSQL: the case's lock taken with the BEGIN and held until the recording ends, a twin
recorded at the same moment told and rolled back, a refused recording rolled back, and no
connection given back to the pool inside a transaction."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from uuid import UUID

import pytest
from opentelemetry import trace

from referrals_common.contracts import DocumentKind, DocumentStored, new_event
from referrals_common.messaging.outbox import outbox_columns
from referrals_records.inspection import CaseQuotaExceeded
from referrals_records.models import Document
from referrals_records.repository import TwinRecorded, upload_statements

from .test_documents import rows

pytestmark = pytest.mark.integration


def document(case_id: UUID, content: bytes) -> tuple[Document, object]:
    """A document of the case with these bytes (not stored anywhere), and its `document.stored`."""
    document_id = uuid.uuid4()
    doc = Document(
        id=document_id,
        case_id=case_id,
        kind=DocumentKind.PATHOLOGY_REPORT,
        media_type="application/pdf",
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        object_key=f"cases/{case_id}/documents/{document_id}",
        file_name="biopsy.pdf",
        uploaded_by="case-token:clinic",
    )
    stored = new_event(
        DocumentStored(
            case_id=case_id,
            document_id=document_id,
            kind=doc.kind,
            media_type=doc.media_type,
            size_bytes=doc.size_bytes,
            sha256=doc.sha256,
            object_key=doc.object_key,
            stored_at=doc.created_at,
        )
    )
    return doc, stored


async def recorded(runtime, case_id: UUID) -> tuple[int, int, int]:
    """The case's documents, upload audit rows and outbox rows."""
    [row] = await rows(
        runtime,
        "select (select count(*) from documents where case_id = $1) as documents,"
        " (select count(*) from access_audit where case_id = $1 and action = 'upload') as audit,"
        " (select count(*) from outbox where aggregate_id = $1::text) as outbox",
        case_id,
    )
    return row["documents"], row["audit"], row["outbox"]


async def left_open(runtime) -> list[str]:
    """States of the records database's sessions inside a transaction, and advisory locks held."""
    found = await rows(
        runtime,
        "select state from pg_stat_activity where datname = current_database()"
        " and pid <> pg_backend_pid() and state like 'idle in transaction%'"
        " union all select 'advisory lock' from pg_locks where locktype = 'advisory' and granted",
    )
    return [row["state"] for row in found]


async def test_a_recording_writes_the_document_its_audit_row_and_event_on_commit(runtime) -> None:
    case_id = uuid.uuid4()
    doc, stored = document(case_id, b"%PDF first")
    engine = runtime.db.engine

    async with upload_statements(engine) as statements:
        state = await statements.upload_state(case_id, None)
        assert (state.status, state.live_bytes, state.original_live) == ("draft", 0, False)
        async with statements.recording(lock_case=case_id):
            assert await statements.add_unless_twin(doc, quota=10**6, stored=stored) == (0, None)
            assert await recorded(runtime, case_id) == (0, 0, 0), "not before the commit"

    assert await recorded(runtime, case_id) == (1, 1, 1)
    async with upload_statements(engine) as statements:
        state = await statements.upload_state(case_id, doc.id)
    assert (state.live_bytes, state.original_live) == (doc.size_bytes, True)
    assert await left_open(runtime) == []


async def test_a_recording_holds_the_cases_lock_until_it_ends(runtime) -> None:
    case_id = uuid.uuid4()
    engine = runtime.db.engine
    second_locked = asyncio.Event()

    async def second() -> None:
        async with upload_statements(engine) as statements, statements.recording(case_id):
            second_locked.set()

    async with upload_statements(engine) as statements, statements.recording(case_id):
        waiting = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not second_locked.is_set(), "the case's lock is held by the first recording"
        assert sorted(await left_open(runtime)) == ["advisory lock", "idle in transaction"]
    await asyncio.wait_for(waiting, 10)
    assert await left_open(runtime) == []


async def test_a_twin_recorded_at_the_same_moment_is_told_and_nothing_kept_of_it(runtime) -> None:
    # Unlocked (a center's opinion is): the second insert waits on the unique index of a live
    # document's bytes, then fails once the first commits.
    case_id = uuid.uuid4()
    (first, first_stored), (twin, twin_stored) = (
        document(case_id, b"%PDF same"),
        document(case_id, b"%PDF same"),
    )
    engine = runtime.db.engine

    async def record_twin() -> None:
        async with upload_statements(engine) as statements, statements.recording(None):
            await statements.add_unless_twin(twin, quota=None, stored=twin_stored)

    async with upload_statements(engine) as statements, statements.recording(None):
        await statements.add_unless_twin(first, quota=None, stored=first_stored)
        twin_task = asyncio.create_task(record_twin())
        await asyncio.sleep(0.3)
    with pytest.raises(TwinRecorded):
        await asyncio.wait_for(twin_task, 10)

    assert await recorded(runtime, case_id) == (1, 1, 1)
    assert await left_open(runtime) == []


async def test_a_refused_recording_keeps_nothing_and_leaves_no_transaction_open(runtime) -> None:
    case_id = uuid.uuid4()
    doc, stored = document(case_id, b"%PDF refused")
    engine = runtime.db.engine

    async def refused() -> None:
        async with upload_statements(engine) as statements, statements.recording(case_id):
            assert await statements.add_unless_twin(doc, quota=None, stored=stored) == (0, None)
            raise CaseQuotaExceeded(1, 0)  # as `Records` refuses it: the rows inserted go

    with pytest.raises(CaseQuotaExceeded):
        await refused()

    assert await recorded(runtime, case_id) == (0, 0, 0)
    assert await left_open(runtime) == []
    # The connection went back to the pool fit for use: the next recording takes it.
    async with upload_statements(engine) as statements, statements.recording(case_id):
        assert await statements.add_unless_twin(doc, quota=None, stored=stored) == (0, None)
    assert await recorded(runtime, case_id) == (1, 1, 1)


async def test_a_recorded_documents_event_row_is_the_one_the_outbox_writes(runtime, spans) -> None:
    """The upload's statement writes its `document.stored` from `outbox_parameters` (libs/
    common's outbox), conditional on the document being added: the row is what the outbox's
    own path writes (its key, slot, topic, type, the event as JSON, the trace context in its
    headers), and a twin's recording writes none."""
    case_id = uuid.uuid4()
    (doc, stored), (twin, twin_stored) = (
        document(case_id, b"%PDF outbox"),
        document(case_id, b"%PDF outbox"),
    )
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("upload"):
        expected = outbox_columns([stored])
        async with upload_statements(runtime.db.engine) as statements:
            async with statements.recording(lock_case=case_id):
                await statements.add_unless_twin(doc, quota=None, stored=stored)
            async with statements.recording(lock_case=case_id):
                assert await statements.add_unless_twin(twin, quota=None, stored=twin_stored) == (
                    doc.size_bytes,
                    doc.id,
                )
    [row] = await rows(
        runtime,
        "select id, aggregate_id, slot, topic, event_type, payload::text as payload,"
        " headers::text as headers from outbox where aggregate_id = $1",
        str(case_id),
    )
    ids, keys, slots, topics, types, payloads, headers = expected
    assert (row["id"], row["aggregate_id"], row["slot"], row["topic"], row["event_type"]) == (
        ids[0],
        keys[0],
        slots[0],
        topics[0],
        types[0],
    )
    assert json.loads(row["payload"]) == json.loads(payloads[0])
    assert json.loads(row["headers"]) == json.loads(headers[0])
    assert "traceparent" in json.loads(row["headers"])
