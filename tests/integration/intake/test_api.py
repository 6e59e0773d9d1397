"""Intake's API over real PostgreSQL: validation, authorization, idempotency, lifecycle edges."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import event, text

from referrals_common.contracts import DocumentKind
from referrals_common.db import UnitOfWork
from referrals_intake.clients import register_client

from .conftest import case_body, new_client_key, open_case, unique_key

pytestmark = pytest.mark.integration


async def store_document(runtime, case_id: str, kind: str = "pathology_report") -> uuid.UUID:
    """What intake learns from records' `document.stored` event (the consumer's handler path)."""
    doc_id = uuid.uuid4()
    async with runtime.db.unit_of_work() as uow:
        await runtime.intake.on_document(
            uow,
            uuid.UUID(case_id),
            doc_id,
            kind=kind,
            media_type="application/pdf",
            size_bytes=1000,
            sha256="a" * 64,
            translation_of=None,
            stored=True,
        )
        await uow.commit()
    return doc_id


async def consent(api, case_id, headers, *kinds):
    for kind in kinds:
        r = await api.put(
            f"/v1/cases/{case_id}/consents/{kind}", json={"version": "2026-01"}, headers=headers
        )
        assert r.status_code == 200, r.text


async def test_a_case_is_opened_as_a_draft_with_its_own_access_token(api, api_key):
    r = await api.post("/v1/cases", json=case_body(), headers={"X-Api-Key": api_key})
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    assert data["case"]["status"] == "draft"
    assert data["case"]["diagnosis"]["icd10"] == "C50.9"
    assert data["case"]["contact"]["phone"] == "+380501234567"
    assert data["token_type"] == "Bearer"
    assert r.headers["location"] == f"/v1/cases/{data['case']['id']}"
    # the case is in Ukrainian: so is its next step
    assert "патогістологічний висновок" in data["case"]["next_step"]
    head = data["case"]["id"].replace("-", "")[:8].upper()
    assert data["case"]["reference"] == f"{head[:4]}-{head[4:]}"

    read = await api.get(
        f"/v1/cases/{data['case']['id']}",
        headers={"Authorization": f"Bearer {data['access_token']}"},
    )
    assert read.status_code == 200
    assert read.json() == data["case"]


@pytest.mark.parametrize(
    ("override", "pointer", "needle"),
    [
        ({"diagnosis": {"icd10": "C99.99"}}, "/diagnosis/icd10", "not an ICD-10 code"),
        ({"diagnosis": {"icd10": "I10"}}, "/diagnosis/icd10", "is not a neoplasm"),
        ({"contact": {"phone": "+38012"}}, "/contact/phone", "phone number"),
        ({"contact": {"email": "olena@"}}, "/contact/email", "email"),
        (
            {"destination": {"preference": "countries", "countries": ["XX"]}},
            "/destination/countries/0",
            "not an ISO 3166-1 country code",
        ),
        (
            {"destination": {"preference": "abroad", "countries": ["DE"]}},
            "/destination",
            "takes no countries",
        ),
        ({"reasons": []}, "/reasons", "at least 1"),
        ({"date_of_birth": "2999-01-01"}, "/date_of_birth", "in the future"),
        ({"stage": {"tnm": "T9N9M9"}}, "/stage/tnm", "pattern"),
        ({"locale": "ru"}, "/locale", "'uk' or 'en'"),
    ],
)
async def test_invalid_fields_get_a_problem_naming_the_field_and_change_nothing(
    api, api_key, runtime, override, pointer, needle
):
    r = await api.post("/v1/cases", json=case_body(**override), headers={"X-Api-Key": api_key})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    matching = [e for e in problem["errors"] if e["pointer"] == pointer]
    assert matching, problem["errors"]
    assert needle.lower() in " ".join(e["message"] for e in matching).lower()
    async with runtime.db.unit_of_work() as uow:
        assert (await uow.session.execute(_count("cases"))).scalar() == 0


def _count(table: str):
    from sqlalchemy import text

    return text(f"select count(*) from {table}")


async def test_without_a_valid_api_key_nothing_is_created(api, runtime):
    no_key = await api.post("/v1/cases", json=case_body())
    assert no_key.status_code == 401
    assert no_key.headers["www-authenticate"].startswith("Bearer")
    forged = await api.post(
        "/v1/cases", json=case_body(), headers={"X-Api-Key": "rfk_AAAAAAAAAAAA_" + "x" * 43}
    )
    assert forged.status_code == 401
    # A refused key is audited in summary, one row per key id, address and window
    # (referrals_common.edge): written here as the app writes it when the window ends.
    await api._transport.app.state.edge.flush()  # type: ignore[attr-defined]
    async with runtime.db.unit_of_work() as uow:
        assert (await uow.session.execute(_count("cases"))).scalar() == 0
        from sqlalchemy import text

        audited = (
            await uow.session.execute(text("select actor, action, outcome from access_audit"))
        ).all()
    assert [tuple(row) for row in audited] == [
        ("client:AAAAAAAAAAAA", "failed_authentication x1 from 127.0.0.1", "denied")
    ]


async def test_an_opened_case_and_its_replay_are_each_audited_and_opened_once(
    api, api_key, runtime
):
    from sqlalchemy import text

    from referrals_common.auth.api_keys import parse_api_key

    headers = {"X-Api-Key": api_key, "Idempotency-Key": unique_key()}
    first = await api.post("/v1/cases", json=case_body(), headers=headers)
    again = await api.post("/v1/cases", json=case_body(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    case_id = first.json()["case"]["id"]
    assert again.json()["case"]["id"] == case_id
    async with runtime.db.unit_of_work() as uow:
        audited = (
            await uow.session.execute(
                text(
                    "select actor, action, outcome from access_audit "
                    "where case_id = cast(:c as uuid) order by id"
                ),
                {"c": case_id},
            )
        ).all()
        timeline = (
            await uow.session.execute(
                text(
                    "select from_status, to_status, reason_code from case_timeline "
                    "where case_id = cast(:c as uuid)"
                ),
                {"c": case_id},
            )
        ).all()
        assert (await uow.session.execute(_count("cases"))).scalar() == 1
    opened_by = f"client:{parse_api_key(api_key).key_id}"
    assert [tuple(row) for row in audited] == [(opened_by, "create_case", "ok")] * 2
    assert [tuple(row) for row in timeline] == [(None, "draft", "case_opened")]


async def test_another_cases_token_gets_404_as_if_the_case_did_not_exist(api, api_key, runtime):
    mine, my_headers = await open_case(api, api_key)
    theirs, _ = await open_case(api, await new_client_key(runtime, "Lviv clinic"))
    for method, path in [
        ("GET", ""),
        ("GET", "/timeline"),
        ("GET", "/fhir"),
        ("POST", "/submit"),
        ("POST", "/withdraw"),
        ("PATCH", ""),
    ]:
        r = await api.request(
            method,
            f"/v1/cases/{theirs}{path}",
            headers=my_headers,
            json={} if method == "PATCH" else None,
        )
        assert r.status_code == 404, (method, path, r.text)
        assert "Carcinoma" not in r.text
    missing = await api.get(f"/v1/cases/{uuid.uuid4()}", headers=my_headers)
    assert missing.status_code == 404
    assert (await api.get(f"/v1/cases/{mine}")).status_code == 401
    garbage = await api.get(f"/v1/cases/{mine}", headers={"Authorization": "Bearer x.y.z"})
    assert garbage.status_code == 401
    async with runtime.db.unit_of_work() as uow:
        from sqlalchemy import text

        denied = (
            await uow.session.execute(
                text("select count(*) from access_audit where outcome = 'denied' and case_id = :c"),
                {"c": theirs},
            )
        ).scalar()
    assert denied >= 6


async def test_only_the_front_end_that_opened_a_case_can_get_a_new_token_for_it(
    api, api_key, runtime
):
    case_id, _ = await open_case(api, api_key)
    fresh = await api.post(f"/v1/cases/{case_id}/access-token", headers={"X-Api-Key": api_key})
    assert fresh.status_code == 200
    other = await api.post(
        f"/v1/cases/{case_id}/access-token",
        headers={"X-Api-Key": await new_client_key(runtime, "Other")},
    )
    assert other.status_code == 404
    r = await api.get(
        f"/v1/cases/{case_id}", headers={"Authorization": f"Bearer {fresh.json()['access_token']}"}
    )
    assert r.status_code == 200


async def test_a_case_is_opened_in_one_statement_with_no_begin_or_commit(
    api, api_key, runtime, monkeypatch
):
    """The statement that opens a case (its Idempotency-Key's claim and its audit row in it) is
    the whole write and atomic on its own: it is sent alone, one round trip, by asyncpg itself
    (SQLAlchemy executes nothing for it)."""
    headers = {"X-Api-Key": api_key}
    # The key is verified once, then remembered: the request measured reads no key row.
    assert (await api.post("/v1/cases", json=case_body(), headers=headers)).status_code == 201
    sent: list[str] = []
    through_sqlalchemy: list[str] = []
    for method in ("execute", "fetch", "fetchrow", "fetchval"):  # BEGIN, COMMIT and statements
        original = getattr(asyncpg.Connection, method)

        async def noted(self, query, *args, _original=original, **kwargs):
            sent.append(query)
            return await _original(self, query, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, method, noted)

    def note(_conn, _cursor, statement, *_args) -> None:
        through_sqlalchemy.append(statement)

    event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", note)
    try:
        r = await api.post(
            "/v1/cases", json=case_body(), headers={**headers, "Idempotency-Key": unique_key()}
        )
    finally:
        event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", note)
    assert r.status_code == 201, r.text
    assert through_sqlalchemy == []
    assert len(sent) == 1, sent
    assert "insert into idempotency_keys" in sent[0].lower(), sent


async def test_the_same_idempotency_key_never_makes_a_second_case(api, api_key, runtime):
    key = unique_key()
    headers = {"X-Api-Key": api_key, "Idempotency-Key": key}
    first = await api.post("/v1/cases", json=case_body(), headers=headers)
    again = await api.post("/v1/cases", json=case_body(), headers=headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["case"]["id"] == first.json()["case"]["id"]

    # The double click: two identical requests at the same moment.
    key2 = unique_key()
    both = await asyncio.gather(
        *[
            api.post(
                "/v1/cases",
                json=case_body(),
                headers={"X-Api-Key": api_key, "Idempotency-Key": key2},
            )
            for _ in range(2)
        ]
    )
    assert {r.json()["case"]["id"] for r in both} == {both[0].json()["case"]["id"]}
    async with runtime.db.unit_of_work() as uow:
        assert (await uow.session.execute(_count("cases"))).scalar() == 2

    changed = await api.post("/v1/cases", json=case_body(locale="en"), headers=headers)
    assert changed.status_code == 422
    assert changed.json()["errors"][0]["pointer"] == "#/header/Idempotency-Key"


async def test_submit_lists_what_is_missing_then_succeeds_once_it_is_there(api, api_key, runtime):
    case_id, headers = await open_case(api, api_key)
    r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    assert r.status_code == 422
    problem = r.json()
    assert problem["type"].endswith("submission-incomplete")
    assert len(problem["missing"]) == 3  # evidence, processing consent, cross-border consent

    await store_document(runtime, case_id, DocumentKind.LAB_RESULTS)
    await consent(api, case_id, headers, "processing")
    r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    assert r.status_code == 422
    assert len(r.json()["missing"]) == 2, "lab results are not evidence of the diagnosis"

    await store_document(runtime, case_id, DocumentKind.PATHOLOGY_REPORT)
    await consent(api, case_id, headers, "cross_border")
    key = {"Idempotency-Key": unique_key()}
    r = await api.post(f"/v1/cases/{case_id}/submit", headers={**headers, **key})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "submitted"
    assert r.json()["submitted_at"]
    replay = await api.post(f"/v1/cases/{case_id}/submit", headers={**headers, **key})
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    twice = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    assert twice.status_code == 409

    events = await outbox_types(runtime, case_id)
    assert events.count("referrals.case.submitted.v1") == 1
    assert events.count("referrals.case.status_changed.v1") == 1


async def test_each_document_check_of_a_submitted_case_reads_its_documents_once(
    api, api_key, runtime
):
    """A language check of a submitted case reads (and locks) the case's documents in one
    statement, the checked one among them, and judges them as changed: the last accepted one
    makes the case ready, the same as when they were read again."""
    case_id, headers = await open_case(api, api_key)
    first = await store_document(runtime, case_id, DocumentKind.PATHOLOGY_REPORT)
    second = await store_document(runtime, case_id, DocumentKind.DISCHARGE_SUMMARY)
    await consent(api, case_id, headers, "processing", "cross_border")
    r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    assert r.status_code == 200, r.text
    reads: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        if "from case_documents" in statement.lower():
            reads.append(statement)

    event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", note)
    try:
        for document_id in (first, second):
            async with runtime.db.unit_of_work() as uow:
                await runtime.intake.on_document(
                    uow, uuid.UUID(case_id), document_id, check="accepted", language="en"
                )
                await uow.commit()
    finally:
        event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", note)
    assert len(reads) == 2, reads
    assert (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()["status"] == "ready"
    events = await outbox_types(runtime, case_id)
    assert events.count("referrals.case.ready_for_referral.v1") == 1


async def test_a_drafts_document_fact_is_kept_in_one_statement_after_the_cases_lock(
    api, api_key, runtime, monkeypatch
):
    """A document fact of a case not waiting on its documents (a draft) judges nothing: its row
    is made or changed in one statement after the case's lock. A language check that comes
    before the `stored` event makes the row, the `stored` event completes it, and a fact naming
    another case's document changes nothing."""
    case_id, headers = await open_case(api, api_key)
    other_id, _ = await open_case(api, api_key)
    document_id = uuid.uuid4()

    async def fact(case: str, **facts) -> None:
        async with runtime.db.unit_of_work() as uow:
            await runtime.intake.on_document(uow, uuid.UUID(case), document_id, **facts)
            await uow.commit()

    with statements_sent(runtime, monkeypatch) as (_, through_sqlalchemy):
        await fact(case_id, check="accepted", language="en")
    lock, kept = (s.lower() for s in through_sqlalchemy)
    assert "for update" in lock and "insert into case_documents" in kept
    await fact(
        case_id,
        kind="pathology_report",
        media_type="application/pdf",
        size_bytes=1000,
        sha256="a" * 64,
        translation_of=None,
        stored=True,
    )
    await fact(other_id, check="unreadable", language=None)
    documents = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()["documents"]
    assert [(d["document_id"], d["kind"], d["check"], d["language"]) for d in documents] == [
        (str(document_id), "pathology_report", "accepted", "en")
    ]
    async with runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            text("select case_id, stored from case_documents where document_id = :d"),
            {"d": document_id},
        )
        assert [tuple(r) for r in rows] == [(uuid.UUID(case_id), True)]


async def test_submit_reads_the_front_ends_row_only_for_a_case_with_no_address(
    api, api_key, runtime
):
    """A case with an e-mail address or a phone number can be told every step without the
    front end's webhook: its submit does not read the front end's row."""
    case_id, headers = await open_case(api, api_key)
    await store_document(runtime, case_id, DocumentKind.PATHOLOGY_REPORT)
    await consent(api, case_id, headers, "processing", "cross_border")
    reads: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        if "from api_clients" in statement.lower():
            reads.append(statement)

    event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", note)
    try:
        r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    finally:
        event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", note)
    assert r.status_code == 200, r.text
    assert reads == []


@contextmanager
def statements_sent(runtime, monkeypatch) -> Iterator[tuple[list[str], list[str]]]:
    """(what asyncpg sends in the block: BEGIN, COMMIT and statements; what of it goes through
    SQLAlchemy)."""
    sent: list[str] = []
    through_sqlalchemy: list[str] = []
    with monkeypatch.context() as patch:
        for method in ("execute", "fetch", "fetchrow", "fetchval", "prepare"):
            original = getattr(asyncpg.Connection, method)

            async def noted(self, query, *args, _original=original, **kwargs):
                sent.append(query)
                return await _original(self, query, *args, **kwargs)

            patch.setattr(asyncpg.Connection, method, noted)

        def note(_conn, _cursor, statement, *_args) -> None:
            through_sqlalchemy.append(statement)

        event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", note)
        try:
            yield sent, through_sqlalchemy
        finally:
            event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", note)


async def test_a_case_is_read_in_one_statement_that_also_writes_its_audit_row(
    api, api_key, runtime, monkeypatch
):
    """The read front ends poll: the case, its consents, documents, last timeline entry,
    information requests, follow-up questions and meetings, and the reader's access audit row,
    in one statement sent alone by asyncpg itself (no BEGIN, no COMMIT, nothing through
    SQLAlchemy); the case reads as it did (its next step its last entry's, no later steps)."""
    case_id, headers = await open_case(api, api_key)
    document_id = await store_document(runtime, case_id)
    await consent(api, case_id, headers, "processing")
    assert (await api.get(f"/v1/cases/{case_id}", headers=headers)).status_code == 200
    with statements_sent(runtime, monkeypatch) as (sent, through_sqlalchemy):
        r = await api.get(f"/v1/cases/{case_id}", headers={**headers, "Accept-Language": "en"})
    assert r.status_code == 200, r.text
    assert through_sqlalchemy == []
    assert len(sent) == 1, sent
    case = r.json()
    assert r.headers["content-language"] == "en"
    assert [d["document_id"] for d in case["documents"]] == [str(document_id)]
    assert [c["kind"] for c in case["consents"]] == ["processing"]
    assert case["next_step"] and case["status"] == "draft"
    assert (case["information_requests"], case["follow_up_questions"], case["meetings"]) == (
        [],
        [],
        [],
    )
    async with runtime.db.unit_of_work() as uow:
        audited = (
            await uow.session.execute(
                text(
                    "select actor, action, outcome from access_audit"
                    " where case_id = cast(:c as uuid) and action = 'read_case'"
                ),
                {"c": case_id},
            )
        ).all()
    assert [tuple(a) for a in audited] == [
        ("case-token:" + _client_id(headers), "read_case", "ok")
    ] * 2


def _client_id(headers: dict[str, str]) -> str:
    """The client a case token was issued through (its `cid` claim, read without checking)."""
    payload = headers["Authorization"].removeprefix("Bearer ").split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["cid"]


async def test_a_valid_token_for_a_case_that_is_not_there_reads_404_and_audits_nothing(
    api, runtime
):
    """The read's statement writes its audit row only with the case: a token for a case id
    with no case (a case that never was) is answered 404 and leaves no row."""
    missing = uuid.uuid4()
    token = runtime.tokens.issue(missing, "some-client").token
    r = await api.get(f"/v1/cases/{missing}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    async with runtime.db.unit_of_work() as uow:
        rows = await uow.session.execute(
            text("select count(*) from access_audit where case_id = :c"), {"c": missing}
        )
        assert rows.scalar() == 0


async def test_a_consent_is_one_statement_with_its_audit_row_and_the_case_read_back(
    api, api_key, runtime, monkeypatch
):
    """Giving a consent changes the case, keeps the consent, writes the audit row and reads the
    case with its parts back in one statement sent alone by asyncpg itself (no BEGIN, no
    COMMIT, nothing through SQLAlchemy; was 6 round trips through the ORM: BEGIN, the lock, the
    upsert, the case's update, the read with the audit row, COMMIT). The answer has the
    consent given, a consent given again replaces the first, and each leaves its audit row."""
    case_id, headers = await open_case(api, api_key)
    document_id = await store_document(runtime, case_id)
    created = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
    with statements_sent(runtime, monkeypatch) as (sent, through_sqlalchemy):
        r = await api.put(
            f"/v1/cases/{case_id}/consents/processing",
            json={"version": "2026-01"},
            headers=headers,
        )
    assert r.status_code == 200, r.text
    assert through_sqlalchemy == []
    assert len(sent) == 1, sent
    assert "insert into case_consents" in sent[0] and "insert into access_audit" in sent[0]
    case = r.json()
    assert [c["kind"] for c in case["consents"]] == ["processing"]
    assert [d["document_id"] for d in case["documents"]] == [str(document_id)]
    assert case["updated_at"] > created["updated_at"]
    assert case["status"] == "draft" and case["next_step"] == created["next_step"]
    first = case["consents"][0]["granted_at"]

    again = await api.put(
        f"/v1/cases/{case_id}/consents/processing", json={"version": "2026-01"}, headers=headers
    )
    assert again.status_code == 200, again.text
    assert [c["kind"] for c in again.json()["consents"]] == ["processing"]
    assert again.json()["consents"][0]["granted_at"] > first
    read = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
    assert read["consents"] == again.json()["consents"]
    assert read["updated_at"] == again.json()["updated_at"]
    async with runtime.db.unit_of_work() as uow:
        audited = (
            await uow.session.execute(
                text(
                    "select actor, action, outcome from access_audit"
                    " where case_id = cast(:c as uuid) and action like 'consent%'"
                ),
                {"c": case_id},
            )
        ).all()
    assert [tuple(a) for a in audited] == [
        ("case-token:" + _client_id(headers), "consent_processing", "ok")
    ] * 2


async def test_a_submission_runs_on_asyncpg_with_its_key_claimed_in_the_case_s_lock(
    api, api_key, runtime, monkeypatch
):
    """Submitting: the BEGIN; the Idempotency-Key claimed in the statement that locks the case
    and reads its consents, documents and other parts; the case's row with its timeline
    entries, its events and the audit row; the COMMIT: 4 round trips through asyncpg itself,
    nothing through SQLAlchemy (was 8, 6 of them through the ORM; then 6, the events a
    statement of their own; then 5, the case read back with the audit row). The same key
    again replays the first answer and writes nothing."""
    case_id, headers = await open_case(api, api_key)
    await store_document(runtime, case_id, DocumentKind.PATHOLOGY_REPORT)
    await consent(api, case_id, headers, "processing", "cross_border")
    key = {"Idempotency-Key": unique_key()}
    with statements_sent(runtime, monkeypatch) as (sent, through_sqlalchemy):
        r = await api.post(f"/v1/cases/{case_id}/submit", headers={**headers, **key})
    assert r.status_code == 200, r.text
    assert through_sqlalchemy == []
    assert len(sent) == 4, sent
    begin, locked, moved, commit = (" ".join(s.lower().split()) for s in sent)
    assert begin.startswith("begin") and commit == "commit"
    assert "insert into idempotency_keys" in locked and "for update of cases" in locked
    assert "update cases" in moved and "insert into case_timeline" in moved
    assert "insert into outbox" in moved and "insert into access_audit" in moved
    submitted = r.json()
    assert submitted["status"] == "submitted" and submitted["submitted_at"]

    replay = await api.post(f"/v1/cases/{case_id}/submit", headers={**headers, **key})
    assert replay.status_code == 200, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert {k: replay.json()[k] for k in ("status", "submitted_at", "next_step")} == {
        k: submitted[k] for k in ("status", "submitted_at", "next_step")
    }
    events = await outbox_types(runtime, case_id)
    assert events.count("referrals.case.submitted.v1") == 1
    assert events.count("referrals.case.status_changed.v1") == 1
    async with runtime.db.unit_of_work() as uow:
        timeline = (
            await uow.session.execute(
                text(
                    "select from_status, to_status from case_timeline"
                    " where case_id = cast(:c as uuid) order by id"
                ),
                {"c": case_id},
            )
        ).all()
        audited = (
            await uow.session.execute(
                text(
                    "select action, outcome from access_audit"
                    " where case_id = cast(:c as uuid) and action = 'submit_case'"
                ),
                {"c": case_id},
            )
        ).all()
    assert [tuple(t) for t in timeline] == [
        (None, "draft"),
        ("draft", "submitted"),
    ]
    assert [tuple(a) for a in audited] == [("submit_case", "ok")]


async def test_a_consent_to_a_closed_case_is_refused_and_audited_as_a_conflict(
    api, api_key, runtime
):
    """A withdrawn case takes no consent: 409, nothing kept, the refusal audited; a case that
    is not there is a 404 that writes nothing."""
    case_id, headers = await open_case(api, api_key)
    assert (await api.post(f"/v1/cases/{case_id}/withdraw", headers=headers)).status_code == 200
    r = await api.put(
        f"/v1/cases/{case_id}/consents/cross_border", json={"version": "2026-01"}, headers=headers
    )
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "withdrawn" in r.json()["detail"]
    missing = uuid.uuid4()
    token = runtime.tokens.issue(missing, "some-client").token
    gone = await api.put(
        f"/v1/cases/{missing}/consents/processing",
        json={"version": "2026-01"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert gone.status_code == 404
    async with runtime.db.unit_of_work() as uow:
        consents = (
            await uow.session.execute(
                text("select count(*) from case_consents where case_id in (:c, :m)"),
                {"c": uuid.UUID(case_id), "m": missing},
            )
        ).scalar()
        audited = (
            await uow.session.execute(
                text(
                    "select case_id, action, outcome from access_audit"
                    " where case_id in (:c, :m) and action like 'consent%'"
                ),
                {"c": uuid.UUID(case_id), "m": missing},
            )
        ).all()
    assert consents == 0
    assert [tuple(a) for a in audited] == [(uuid.UUID(case_id), "consent_cross_border", "conflict")]


async def test_a_case_nobody_could_tell_anything_is_refused_at_submit(api, api_key, runtime):
    """No e-mail, no phone, and a front end that takes no webhooks: every later step would be
    told to nobody. Submit names the missing field and changes nothing; the same case from a
    front end that takes webhooks goes through."""
    case_id, headers = await open_case(api, api_key, contact={})
    await store_document(runtime, case_id, DocumentKind.PATHOLOGY_REPORT)
    await consent(api, case_id, headers, "processing", "cross_border")
    r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["type"].endswith("submission-incomplete")
    assert [e["pointer"] for e in problem["errors"]] == ["/contact"]
    assert problem["missing"] == [
        "a way to tell the patient what happens: an e-mail address (contact.email) or a phone "
        "number (contact.phone)"
    ]
    assert (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()["status"] == "draft"
    assert await outbox_types(runtime, case_id) == []

    patched = await api.patch(
        f"/v1/cases/{case_id}", json={"contact": {"phone": "+380501234567"}}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert (await api.post(f"/v1/cases/{case_id}/submit", headers=headers)).status_code == 200

    async with runtime.db.unit_of_work() as uow:
        hooked = await register_client(uow, "Webhook clinic", runtime.pepper, takes_webhooks=True)
        await uow.commit()
    case_id, headers = await open_case(api, hooked, contact={})
    await store_document(runtime, case_id, DocumentKind.PATHOLOGY_REPORT)
    await consent(api, case_id, headers, "processing", "cross_border")
    r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    assert r.status_code == 200, r.text


async def outbox_types(runtime, case_id) -> list[str]:
    dsn = runtime.settings.postgres.asyncpg_dsn()
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select event_type from outbox where aggregate_id = $1 order by seq", str(case_id)
        )
        return [r["event_type"] for r in rows]
    finally:
        await conn.close()


async def test_a_case_for_ukraine_needs_no_cross_border_consent(api, api_key, runtime):
    case_id, headers = await open_case(
        api, api_key, destination={"preference": "ukraine", "countries": []}
    )
    await store_document(runtime, case_id, DocumentKind.DISCHARGE_SUMMARY)
    await consent(api, case_id, headers, "processing")
    r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    assert r.status_code == 200, r.text


async def test_a_draft_can_be_edited_and_a_submitted_case_cannot(api, api_key, runtime):
    case_id, headers = await open_case(api, api_key)
    r = await api.patch(
        f"/v1/cases/{case_id}",
        headers=headers,
        json={
            "questions": ["Is a PET-CT needed?"],
            "contact": {"email": "o.p@example.org", "phone": "+380671112233"},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["questions"] == ["Is a PET-CT needed?"]
    assert r.json()["diagnosis"]["icd10"] == "C50.9", "fields not given stay as they were"
    bad = await api.patch(
        f"/v1/cases/{case_id}", headers=headers, json={"diagnosis": {"icd10": "J45"}}
    )
    assert bad.status_code == 422

    await store_document(runtime, case_id)
    await consent(api, case_id, headers, "processing", "cross_border")
    assert (await api.post(f"/v1/cases/{case_id}/submit", headers=headers)).status_code == 200
    late = await api.patch(f"/v1/cases/{case_id}", headers=headers, json={"locale": "en"})
    assert late.status_code == 409
    assert late.headers["content-type"] == "application/problem+json"


async def test_an_unknown_consent_version_is_refused(api, api_key):
    case_id, headers = await open_case(api, api_key)
    r = await api.put(
        f"/v1/cases/{case_id}/consents/processing", json={"version": "1999-01"}, headers=headers
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["pointer"] == "/version"


async def test_withdrawal_closes_the_case_and_says_so_on_the_timeline(api, api_key, runtime):
    case_id, headers = await open_case(api, api_key)
    r = await api.post(
        f"/v1/cases/{case_id}/withdraw", headers=headers, json={"reason": "patient_request"}
    )
    assert r.json()["status"] == "withdrawn"
    again = await api.post(f"/v1/cases/{case_id}/withdraw", headers=headers)
    assert again.status_code == 409
    timeline = (await api.get(f"/v1/cases/{case_id}/timeline", headers=headers)).json()
    assert [(e["from_status"], e["to_status"]) for e in timeline] == [
        (None, "draft"),
        ("draft", "withdrawn"),
    ]
    assert await outbox_types(runtime, case_id) == [
        "referrals.case.status_changed.v1",
        "referrals.case.withdrawn.v1",
    ]


async def test_personal_data_is_encrypted_at_rest(api, api_key, runtime):
    case_id, _ = await open_case(api, api_key)
    conn = await asyncpg.connect(runtime.settings.postgres.asyncpg_dsn())
    try:
        row = await conn.fetchrow("select * from cases where id = $1", uuid.UUID(case_id))
        dump = repr(dict(row)).encode() + bytes(row["personal_sealed"])
        outbox = await conn.fetch("select payload::text from outbox")
        idem = await conn.fetch("select response::text from idempotency_keys")
        assert outbox == [], "a draft publishes nothing"
    finally:
        await conn.close()
    elsewhere = repr([*outbox, *idem]).encode()
    for secret in (b"olena.petrenko", b"380501234567", b"1979-04-12"):
        assert secret not in dump
        assert secret not in elsewhere
    assert row["age_group"] == "adult"


async def test_a_child_is_a_pediatric_case(api, api_key, runtime):
    case_id, _ = await open_case(api, api_key, date_of_birth="2015-06-01")
    async with runtime.db.unit_of_work() as uow:
        case = await _case(uow, case_id)
        assert case.age_group == "pediatric"


async def _case(uow: UnitOfWork, case_id: str):
    from referrals_intake.repository import CaseRepository

    return await CaseRepository(uow.session).get(uuid.UUID(case_id))


async def test_the_fhir_view_is_a_valid_r4_bundle_of_the_case(api, api_key, runtime):
    case_id, headers = await open_case(api, api_key)
    await store_document(runtime, case_id)
    await consent(api, case_id, headers, "processing", "cross_border")
    r = await api.get(f"/v1/cases/{case_id}/fhir", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/fhir+json"
    bundle = Bundle.model_validate(r.json())
    types = sorted(e.resource.get_resource_type() for e in bundle.entry)
    assert types == sorted(
        [
            "Patient",
            "Condition",
            "ServiceRequest",
            "Task",
            "DocumentReference",
            "Consent",
            "Consent",
        ]
    )
    task = next(e.resource for e in bundle.entry if e.resource.get_resource_type() == "Task")
    assert task.status == "draft"
    assert "olena" not in r.text


async def test_the_openapi_document_describes_problems_and_security(api):
    schema = (await api.get("/openapi.json")).json()
    assert "Problem" in schema["components"]["schemas"]
    schemes = schema["components"]["securitySchemes"]
    assert set(schemes) == {"FrontEndApiKey", "CaseAccessToken"}
    assert schemes["CaseAccessToken"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["CaseAccessToken"]["description"],
    }
    create = schema["paths"]["/v1/cases"]["post"]
    assert create["operationId"] == "createCase"
    assert create["tags"] == ["front-end"]
    assert create["security"] == [{"FrontEndApiKey": []}]
    assert schema["paths"]["/v1/cases/{case_id}"]["get"]["security"] == [{"CaseAccessToken": []}]
    assert "422" in create["responses"]
    assert create["requestBody"]["content"]["application/json"]["schema"]


async def test_the_contact_goes_to_notifications_sealed_at_submission(api, api_key, runtime):
    import json

    from referrals_common.crypto import SealedBox

    from .conftest import NOTIFICATIONS_PRIVATE

    case_id, headers = await open_case(api, api_key)
    await store_document(runtime, case_id)
    await consent(api, case_id, headers, "processing", "cross_border")
    assert "referrals.case.contact_shared.v1" not in await outbox_types(runtime, case_id)
    assert (await api.post(f"/v1/cases/{case_id}/submit", headers=headers)).status_code == 200
    conn = await asyncpg.connect(runtime.settings.postgres.asyncpg_dsn())
    try:
        row = await conn.fetchrow(
            "select topic, payload::text as payload from outbox where aggregate_id = $1 "
            "and event_type = 'referrals.case.contact_shared.v1'",
            case_id,
        )
    finally:
        await conn.close()
    assert row["topic"] == "referrals.contacts.v1"
    assert "olena.petrenko" not in row["payload"] and "380501234567" not in row["payload"]
    data = json.loads(row["payload"])["data"]
    contact = SealedBox(private_key_b64=NOTIFICATIONS_PRIVATE).open_json(
        data["sealed_contact"], bound_to=case_id
    )
    assert contact == {
        "email": "olena.petrenko@example.org",
        "phone": "+380501234567",
        "preferred_channel": "email",
    }


PREPARATION = {
    "family_history": "mother: breast cancer at 52; aunt (mother's side): ovarian cancer",
    "medications": [
        {"medicine": "Letrozole", "dose": "2.5 mg once a day"},
        {"medicine": "Metformin", "dose": "500 mg twice a day"},
    ],
    "allergies": ["penicillin"],
}


async def test_the_preparation_checklist_is_kept_edited_and_sent_with_the_ready_case(
    api, api_key, runtime
):
    """Family history, medications with doses and allergies are optional structured fields of
    the case: kept, editable while a draft, refused with a 422 naming the field when invalid,
    and carried to partners (for the accepting center) when the case is ready."""
    case_id, headers = await open_case(api, api_key, preparation=PREPARATION)
    case = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
    assert case["preparation"] == PREPARATION

    bad = await api.patch(
        f"/v1/cases/{case_id}",
        json={"preparation": {"medications": [{"medicine": "Letrozole"}]}},
        headers=headers,
    )
    assert bad.status_code == 422, bad.text
    assert "/preparation/medications/0/dose" in [e["pointer"] for e in bad.json()["errors"]]
    hostile = await api.patch(
        f"/v1/cases/{case_id}",
        json={"preparation": {"allergies": ["pollen\u202e"]}},
        headers=headers,
    )
    assert hostile.status_code == 422, hostile.text
    unchanged = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
    assert unchanged["preparation"] == PREPARATION

    edited = {**PREPARATION, "allergies": ["penicillin", "latex"]}
    r = await api.patch(f"/v1/cases/{case_id}", json={"preparation": edited}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["preparation"]["allergies"] == ["penicillin", "latex"]

    doc = await store_document(runtime, case_id, DocumentKind.PATHOLOGY_REPORT)
    await consent(api, case_id, headers, "processing", "cross_border")
    assert (await api.post(f"/v1/cases/{case_id}/submit", headers=headers)).status_code == 200
    async with runtime.db.unit_of_work() as uow:  # what translation's verdict tells intake
        await runtime.intake.on_document(
            uow, uuid.UUID(case_id), doc, check="accepted", language="en", check_detail=None
        )
        await uow.commit()
    ready = await outbox_payloads(runtime, case_id, "referrals.case.ready_for_referral.v1")
    assert [p["data"]["preparation"] for p in ready] == [edited]


async def outbox_payloads(runtime, case_id, event_type) -> list[dict]:
    dsn = runtime.settings.postgres.asyncpg_dsn()
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select payload from outbox where aggregate_id = $1 and event_type = $2 order by seq",
            str(case_id),
            event_type,
        )
        return [
            json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
            for r in rows
        ]
    finally:
        await conn.close()


async def test_submit_answers_with_the_case_as_submitted_reading_its_parts_in_one_statement(
    api, api_key, runtime, monkeypatch
):
    """The submit's answer is the case as it is after the submission (its next step the one
    the submission set, as a read of the case then says), with no information requests,
    follow-up questions nor meetings: its parts are read in one statement (the one that locks
    the case: a submit changes none of them), the later steps' tables in no other."""
    case_id, headers = await open_case(api, api_key)
    await store_document(runtime, case_id, DocumentKind.PATHOLOGY_REPORT)
    await consent(api, case_id, headers, "processing", "cross_border")
    later = ("information_requests", "follow_up_questions", "meetings")
    with statements_sent(runtime, monkeypatch) as (sent, _):
        r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    reads = [q for q in sent if any(f"from {table}" in q.lower() for table in later)]
    assert r.status_code == 200, r.text
    read_back = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
    answered = r.json()
    assert answered["status"] == read_back["status"] == "submitted"
    assert answered["next_step"] == read_back["next_step"]
    assert (answered["information_requests"], answered["follow_up_questions"]) == ([], [])
    assert answered["meetings"] == []
    assert len(reads) == 1 and "for update of cases" in reads[0].lower(), reads
    assert answered == read_back
