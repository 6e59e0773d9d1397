"""Records' one-request put of a whole file (`storage.SignedPuts`): signed with the document's
SHA-256 as its payload hash, encrypted at rest, the caller's buffer sent as it is, and an S3
refusal told apart from a store that cannot serve now; checked on the request really made."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

from referrals_common.faults import is_infrastructure_fault
from referrals_common.settings import S3Settings
from referrals_records.storage import MultipartFailed, ObjectStoreUnavailable, SignedPuts

pytestmark = pytest.mark.unit

SETTINGS = S3Settings(
    endpoint="minio.test:9000",
    access_key="records",
    secret_key=SecretStr("s3cr3t-key"),
    region="eu-central-1",
)


@dataclass
class Answer:
    status: int
    data: bytes = b""


@dataclass
class PoolRecorder:
    """urllib3's PoolManager as `SignedPuts` uses it: keeps each request, answers `answer`."""

    answer: Answer = field(default_factory=lambda: Answer(200))
    requests: list[dict[str, Any]] = field(default_factory=list)

    def request(self, method: str, url: str, **options: Any) -> Answer:
        self.requests.append({"method": method, "url": url, **options})
        return self.answer


def test_a_put_is_signed_with_the_documents_sha256_and_sends_its_buffer_as_is() -> None:
    pool = PoolRecorder()
    data = [b"%PDF-1.7 ", bytes(range(256)) * 64, b"%%EOF"]  # the pieces as they arrived
    digest = hashlib.sha256(b"".join(data)).hexdigest()
    SignedPuts(SETTINGS, "documents", pool).put(  # type: ignore[arg-type]  # a recorder, not urllib3's pool
        "cases/c/documents/d", data, sha256=digest, media_type="application/pdf"
    )

    [sent] = pool.requests
    assert (sent["method"], sent["url"]) == (
        "PUT",
        "http://minio.test:9000/documents/cases/c/documents/d",
    )
    assert sent["body"] is data  # the pieces, never joined: no copy of the file on its way out
    headers = sent["headers"]
    assert headers["x-amz-content-sha256"] == digest  # not UNSIGNED-PAYLOAD
    assert headers["x-amz-server-side-encryption"] == "AES256"
    assert headers["Content-Length"] == str(9 + 256 * 64 + 5)  # so urllib3 sends no chunks
    assert headers["Content-Type"] == "application/pdf"
    algorithm, _, rest = headers["Authorization"].partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(part.strip().split("=", 1) for part in rest.split(","))
    assert parts["Credential"].startswith("records/")
    assert parts["Credential"].endswith("/eu-central-1/s3/aws4_request")
    # The digest, the host and the encryption are covered by the signature.
    signed = parts["SignedHeaders"].split(";")
    assert {"host", "x-amz-content-sha256", "x-amz-server-side-encryption"} <= set(signed)
    assert len(parts["Signature"]) == 64
    assert sent["retries"] is False  # a failure is answered (503), the client sends again


def test_minio_refusing_the_bytes_is_a_refusal_and_a_busy_minio_a_fault_of_the_infrastructure() -> (
    None
):
    mismatch = PoolRecorder(
        Answer(400, b"<Error><Code>XAmzContentSHA256Mismatch</Code><Message>x</Message></Error>")
    )
    with pytest.raises(MultipartFailed) as refused:
        SignedPuts(SETTINGS, "documents", mismatch).put(  # type: ignore[arg-type]  # a recorder
            "k", [b"data"], sha256="0" * 64, media_type="text/plain"
        )
    assert (refused.value.status, refused.value.code) == (400, "XAmzContentSHA256Mismatch")
    assert not isinstance(refused.value, ObjectStoreUnavailable)

    busy = PoolRecorder(Answer(503, b"<Error><Code>SlowDown</Code></Error>"))
    with pytest.raises(ObjectStoreUnavailable) as unavailable:
        SignedPuts(SETTINGS, "documents", busy).put(  # type: ignore[arg-type]  # a recorder
            "k", [b"data"], sha256="0" * 64, media_type="text/plain"
        )
    assert is_infrastructure_fault(unavailable.value)  # answered 503 with Retry-After


async def test_a_cancelled_put_ends_only_once_its_request_in_a_worker_thread_has() -> None:
    # The caller removes the object after a cancelled put: removed while the request still
    # runs, the object would appear after its removal.
    import asyncio
    import threading

    from minio import Minio

    from referrals_records.storage import DocumentStore

    release, finished = threading.Event(), []

    class SlowPuts:
        def put(self, key: str, data: list[bytes], *, sha256: str, media_type: str) -> None:
            release.wait(5)
            finished.append(key)

    client = Minio("minio.test:9000", access_key="a", secret_key="b", secure=False)
    store = DocumentStore(client, "documents", SlowPuts())  # type: ignore[arg-type]  # a stand-in
    put = asyncio.create_task(store.put_object("k", [b"x"], media_type="text/plain", sha256="0"))
    await asyncio.sleep(0.05)
    put.cancel()
    await asyncio.sleep(0.05)
    assert not put.done(), "the put ends with its request, not before"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await put
    assert finished == ["k"]
