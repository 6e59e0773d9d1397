"""Resumable uploads, as an attacker would try them: another case's upload by its id, a center
on a referral it has not accepted or through its referral with a patient's upload, a declared
size over every limit, parts past the declared size, and completing with parts missing. Each
"no" changes nothing (no part, no document, no `document.stored`)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from referrals_records.models import Document, UploadPart, UploadSession

from .test_authorization_matrix import SMALL_STUDY
from .world import CaseHandle, World

pytestmark = pytest.mark.security

MIB = 1024 * 1024


async def _open(world: World, case: CaseHandle, size: int = len(SMALL_STUDY)) -> dict:
    r = await world.records.post(
        f"/v1/cases/{case.case_id}/uploads",
        json={"kind": "imaging_study", "file_name": "CT.dcm", "size_bytes": size},
        headers={**case.bearer, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _count(world: World, what, *where) -> int:  # type: ignore[no-untyped-def]
    async with world.runtimes["records"].db.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(what).where(*where)))


async def test_another_cases_upload_id_is_not_found_through_ones_own_case(world: World) -> None:
    victim, attacker = await world.open_case(), await world.open_case()
    upload = await _open(world, victim)
    own = f"/v1/cases/{attacker.case_id}/uploads/{upload['id']}"
    for method, path, kwargs in (
        ("GET", own, {}),
        ("HEAD", own, {}),
        ("PUT", f"{own}/parts/1", {"content": SMALL_STUDY}),
        ("POST", f"{own}/complete", {}),
        ("DELETE", own, {}),
    ):
        r = await world.records.request(method, path, headers=attacker.bearer, **kwargs)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        # Nothing of the other case, beyond the caller's own request path (`instance`).
        told = {k: v for k, v in r.json().items() if k != "instance"} if r.content else {}
        assert upload["id"] not in json.dumps(told) and victim.case_id not in r.text
    assert await _count(world, UploadPart, UploadPart.upload_id == uuid.UUID(upload["id"])) == 0
    view = await world.records.get(
        f"/v1/cases/{victim.case_id}/uploads/{upload['id']}", headers=victim.bearer
    )
    assert (view.json()["state"], view.json()["received_parts"]) == ("open", [])


async def test_a_center_uploads_only_on_a_referral_it_accepted(world: World) -> None:
    offered = world.take_routed()  # offered to the center, not accepted
    r = await world.records.post(
        f"/v1/referrals/{offered.referral_id}/opinion/uploads",
        json={"file_name": "opinion.pdf", "size_bytes": 2 * MIB},
        headers={"X-Api-Key": world.keys.center, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/referral-not-accepted")
    case_id = uuid.UUID(offered.case_id)
    assert await _count(world, UploadSession, UploadSession.case_id == case_id) == 0


async def test_a_center_cannot_continue_a_patients_upload_through_its_referral(
    world: World,
) -> None:
    case = await world.accepted_case()
    upload = await _open(world, case)  # the patient's own, on the same case
    base = f"/v1/referrals/{case.referral_id}/opinion/uploads/{upload['id']}"
    center = {"X-Api-Key": world.keys.center}
    for method, path, kwargs in (
        ("GET", base, {}),
        ("PUT", f"{base}/parts/1", {"content": SMALL_STUDY}),
        ("POST", f"{base}/complete", {}),
    ):
        r = await world.records.request(method, path, headers=center, **kwargs)
        assert r.status_code == 404, (method, r.status_code, r.text)
    assert await _count(world, UploadPart, UploadPart.upload_id == uuid.UUID(upload["id"])) == 0


async def test_a_declared_size_over_every_limit_is_refused_before_any_part(world: World) -> None:
    case = await world.open_case()
    r = await world.records.post(
        f"/v1/cases/{case.case_id}/uploads",
        json={"kind": "imaging_study", "file_name": "CT.zip", "size_bytes": 3 * 1024 * MIB},
        headers={**case.bearer, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 413, r.text
    assert r.json()["type"].endswith("/upload-too-large")
    assert await _count(world, UploadSession, UploadSession.case_id == uuid.UUID(case.case_id)) == 0


async def test_no_part_is_taken_beyond_the_declared_size(world: World) -> None:
    case = await world.open_case()
    upload = await _open(world, case)  # one part
    base = f"/v1/cases/{case.case_id}/uploads/{upload['id']}"
    beyond = await world.records.put(f"{base}/parts/2", content=b"x" * 10, headers=case.bearer)
    assert beyond.status_code == 413, beyond.text
    assert beyond.json()["type"].endswith("/upload-beyond-declared-size")
    longer = await world.records.put(
        f"{base}/parts/1", content=SMALL_STUDY + b"more", headers=case.bearer
    )
    assert longer.status_code == 422, longer.text
    assert await _count(world, UploadPart, UploadPart.upload_id == uuid.UUID(upload["id"])) == 0


async def test_completing_with_parts_missing_stores_nothing(world: World) -> None:
    case = await world.open_case()
    upload = await _open(world, case, size=9 * MIB)  # two parts of records' 8 MB
    base = f"/v1/cases/{case.case_id}/uploads/{upload['id']}"
    r = await world.records.post(f"{base}/complete", headers=case.bearer)
    assert r.status_code == 409, r.text
    assert r.json()["missing_parts"] == [1, 2]
    assert await _count(world, Document, Document.case_id == uuid.UUID(case.case_id)) == 0
    view = await world.records.get(base, headers=case.bearer)
    assert view.json()["state"] == "open"
