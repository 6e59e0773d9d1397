"""A patient's listing of the case's documents, counted (issue 25, cost per case): one statement
through asyncpg itself, which reads the case's live documents and writes the listing's audit
row (a data-modifying CTE), committed by itself; no ORM session, no transaction of its own for
the audit row. Was BEGIN, SELECT and ROLLBACK through the ORM, then the audit's BEGIN, INSERT
and COMMIT."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.statements_sent import queries_sent

from .conftest import case_headers, pdf_bytes, upload
from .test_documents import rows

pytestmark = pytest.mark.integration


async def test_a_listing_is_one_statement_that_reads_the_documents_and_writes_its_audit_row(
    api, runtime
) -> None:
    case_id, other_case = uuid.uuid4(), uuid.uuid4()
    first = (await upload(api, case_id, pdf_bytes(note="first"), name="first.pdf")).json()
    gone = (await upload(api, case_id, pdf_bytes(note="gone"), name="gone.pdf")).json()
    last = (await upload(api, case_id, pdf_bytes(note="last"), name="last.pdf")).json()
    await upload(api, other_case, pdf_bytes(note="elsewhere"))
    headers = case_headers(case_id)
    deleted = await api.delete(f"/v1/cases/{case_id}/documents/{gone['id']}", headers=headers)
    assert deleted.status_code == 204

    async with queries_sent(runtime.db, look_ups=False) as sent:
        listed = await api.get(f"/v1/cases/{case_id}/documents", headers=headers)

    assert listed.status_code == 200
    assert listed.json() == [first, last], "the case's live documents, oldest first, as stored"
    assert sent.orm == []
    [statement] = [query.lower() for query in sent.native]
    assert statement.startswith("with audited as (insert into access_audit")
    audit = await rows(
        runtime,
        "select actor, outcome, document_id from access_audit"
        " where case_id = $1 and action = 'list'",
        case_id,
    )
    assert [tuple(row) for row in audit] == [("case-token:kyiv-clinic", "ok", None)]


async def test_a_case_with_no_documents_lists_none_and_is_audited(api, runtime) -> None:
    case_id = uuid.uuid4()
    listed = await api.get(f"/v1/cases/{case_id}/documents", headers=case_headers(case_id))
    assert (listed.status_code, listed.json()) == (200, [])
    audit = await rows(
        runtime, "select count(*) from access_audit where case_id = $1 and action = 'list'", case_id
    )
    assert audit[0][0] == 1
