"""The app between the page's script and records for a file sent in parts: each call goes to
records with the case's token (never the browser's), needs the session's CSRF token, the parts
pass through as they are, and records' refusals come back as a sentence in the page's language.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from tests.unit.web.conftest import Browser, open_case
from tests.unit.web.fake_platform import RECORDS, FakePlatform, problem

pytestmark = pytest.mark.unit

PART = 5


@dataclass
class RecordsWithUploads(FakePlatform):
    """The fake platform, with records' resumable uploads (parts of 5 bytes)."""

    uploads: dict[UUID, dict[str, Any]] = field(default_factory=dict)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        m = re.fullmatch(r"/v1/cases/([0-9a-f-]+)/uploads(?:/([0-9a-f-]+)(/.*)?)?", path)
        failing = any(k.split(" ", 1)[0] == request.method for k in self.fail_next)
        if failing or not str(request.url).startswith(RECORDS) or not m:
            return super().handle(request)
        body = request.read()
        self.seen.append(
            type(self.seen[0])(request.method, str(request.url), dict(request.headers), body)
        )
        refused = self._case_of(request, UUID(m[1]))
        if refused:
            return refused
        if m[2] is None:
            declared = json.loads(body)
            upload = {
                "id": str(uuid4()),
                "size_bytes": declared["size_bytes"],
                "part_size": PART,
                "parts_total": -(-declared["size_bytes"] // PART),
                "received": b"",
                "state": "open",
                "file_name": declared["file_name"],
            }
            self.uploads[UUID(upload["id"])] = upload
            return httpx.Response(201, json=self._view(upload))
        upload = self.uploads[UUID(m[2])]
        if m[3] and m[3].startswith("/parts/"):
            upload["received"] += body
            return httpx.Response(200, json=self._view(upload))
        if m[3] == "/complete":
            if len(upload["received"]) < upload["size_bytes"]:
                return problem(409, "upload-incomplete", "parts missing", missing_parts=[2])
            doc = self.add_document(UUID(m[1]), kind="imaging_study", file_name=upload["file_name"])
            return httpx.Response(201, json={"id": str(doc), "file_name": upload["file_name"]})
        return httpx.Response(200, json=self._view(upload))

    @staticmethod
    def _view(upload: dict[str, Any]) -> dict[str, Any]:
        received = len(upload["received"])
        done = received // PART + (1 if received == upload["size_bytes"] and received % PART else 0)
        left = received < upload["size_bytes"]
        return {
            **{k: v for k, v in upload.items() if k != "received"},
            "received_bytes": received,
            "next_part": done + 1 if left else None,
        }


@pytest.fixture
def fake() -> FakePlatform:
    return RecordsWithUploads()


async def csrf(browser: Browser) -> dict[str, str]:
    return {"X-CSRF-Token": await browser.csrf("/case/documents")}


async def test_a_file_in_parts_goes_through_the_app_to_records_with_the_case_token(
    browser: Browser, fake: RecordsWithUploads
) -> None:
    await open_case(browser)
    headers = await csrf(browser)
    page = await browser.get("/case/documents")
    assert 'data-resumable-from="8388608"' in page.text

    started = await browser.client.post(
        "/case/uploads",
        json={"kind": "imaging_study", "file_name": "ct.dcm", "size_bytes": 12},
        headers={**headers, "Idempotency-Key": "browser-key-0001"},
    )
    assert started.status_code == 200, started.text
    upload = started.json()
    assert (upload["part_size"], upload["next_part"]) == (PART, 1)
    [opened] = fake.requests_to("POST", r"records\.test/v1/cases/.+/uploads$")
    assert opened.headers["idempotency-key"] == "browser-key-0001"
    assert opened.headers["authorization"].startswith("Bearer eyJ.case-token-")
    assert "x-api-key" not in opened.headers

    content = b"DICM-part-1!"
    for number, start in ((1, 0), (2, 5), (3, 10)):
        sent = await browser.client.put(
            f"/case/uploads/{upload['id']}/parts/{number}",
            content=content[start : start + PART],
            headers=headers,
        )
        assert sent.status_code == 200, sent.text
    parts = fake.requests_to("PUT", r"/uploads/.+/parts/\d$")
    assert b"".join(p.body for p in parts) == content
    assert all(p.headers["authorization"].startswith("Bearer eyJ.") for p in parts)
    where = await browser.client.get(f"/case/uploads/{upload['id']}")
    assert (where.json()["received_bytes"], where.json()["next_part"]) == (12, None)

    done = await browser.client.post(f"/case/uploads/{upload['id']}/complete", headers=headers)
    assert done.status_code == 200
    assert done.json() == {"redirect": "/case/documents"}
    page = await browser.get("/case/documents")
    assert "ct.dcm" in page.text
    assert "Документ ct.dcm завантажено" in page.text


async def test_a_part_larger_than_the_apps_body_limit_passes_through_whole(
    browser: Browser, fake: RecordsWithUploads
) -> None:
    await open_case(browser)
    headers = await csrf(browser)
    size = 3 * 1024 * 1024  # past the 1 MiB every other body of the app may have
    upload = (
        await browser.client.post(
            "/case/uploads",
            json={"kind": "imaging_study", "file_name": "ct.dcm", "size_bytes": size},
            headers={**headers, "Idempotency-Key": "browser-key-0005"},
        )
    ).json()
    part = bytes(range(256)) * (size // 256)
    sent = await browser.client.put(
        f"/case/uploads/{upload['id']}/parts/1", content=part, headers=headers
    )
    assert sent.status_code == 200, sent.text[:300]
    [relayed] = fake.requests_to("PUT", r"/uploads/.+/parts/1$")
    assert relayed.body == part


async def test_the_scripts_calls_need_the_sessions_csrf_token(
    browser: Browser, fake: RecordsWithUploads
) -> None:
    await open_case(browser)
    refused = await browser.client.post(
        "/case/uploads",
        json={"kind": "imaging_study", "file_name": "ct.dcm", "size_bytes": 12},
        headers={"X-CSRF-Token": "forged", "Idempotency-Key": "browser-key-0002"},
    )
    assert refused.status_code == 403
    assert fake.requests_to("POST", r"/uploads") == []


async def test_records_refusal_comes_back_as_a_sentence(
    browser: Browser, fake: RecordsWithUploads
) -> None:
    await open_case(browser)
    headers = await csrf(browser)
    fake.fail_next["POST /uploads$"] = problem(413, "upload-too-large", "over 2048 MB")
    refused = await browser.client.post(
        "/case/uploads",
        json={"kind": "imaging_study", "file_name": "ct.dcm", "size_bytes": 3 * 2**31},
        headers={**headers, "Idempotency-Key": "browser-key-0003"},
    )
    assert refused.status_code == 413
    assert refused.json()["message"].startswith("Файл завеликий")

    upload = (
        await browser.client.post(
            "/case/uploads",
            json={"kind": "imaging_study", "file_name": "ct.dcm", "size_bytes": 12},
            headers={**headers, "Idempotency-Key": "browser-key-0004"},
        )
    ).json()
    early = await browser.client.post(f"/case/uploads/{upload['id']}/complete", headers=headers)
    assert early.status_code == 409
    assert early.json()["message"]
