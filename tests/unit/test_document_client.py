"""Records' requests to MinIO for documents: every multipart step is a request presigned with
the `minio` SDK's public API (no private method of the SDK is used), the parts go with an
unsigned payload (no extra hash pass over the bytes), the upload is created encrypted (SSE-S3),
and a part's bytes are streamed as given: checked on the requests really made."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from minio import Minio

from referrals_records.storage import MultipartFailed, MultipartUploads

pytestmark = pytest.mark.unit

CREATED = (
    b'<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult xmlns="http://s3.'
    b'amazonaws.com/doc/2006-03-01/"><Bucket>docs</Bucket><Key>k</Key><UploadId>u-1&amp;2'
    b"</UploadId></InitiateMultipartUploadResult>"
)


class MinioRecorder:
    """MinIO as httpx sees it: keeps each request, answers as S3 would."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        query = parse_qs(urlsplit(str(request.url)).query, keep_blank_values=True)
        if request.method == "POST" and "uploads" in query:
            return httpx.Response(200, content=CREATED)
        if request.method == "PUT":
            return httpx.Response(200, headers={"ETag": f'"etag-{query["partNumber"][0]}"'})
        if request.method == "DELETE":
            return httpx.Response(
                404, content=b"<Error><Code>NoSuchUpload</Code><Message>gone</Message></Error>"
            )
        return httpx.Response(200, content=b"<CompleteMultipartUploadResult/>")


def uploads(recorder: MinioRecorder, secure: bool = False) -> MultipartUploads:
    client = Minio(
        "minio.test:9000",
        access_key="records",
        secret_key="s3cr3t-key",
        secure=secure,
        region="us-east-1",
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    return MultipartUploads(client, "docs", http)


def signed(request: httpx.Request) -> dict[str, list[str]]:
    query = parse_qs(urlsplit(str(request.url)).query, keep_blank_values=True)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Signature"][0]
    assert int(query["X-Amz-Expires"][0]) <= 15 * 60  # short-lived
    return query


async def test_a_multipart_upload_is_presigned_encrypted_streamed_and_unsigned() -> None:
    recorder = MinioRecorder()
    store = uploads(recorder)
    upload_id = await store.create("cases/c/documents/d", "application/dicom")
    assert upload_id == "u-1&2"

    async def part():  # type: ignore[no-untyped-def]
        yield b"a" * 1000
        yield b"b" * 24

    etag = await store.put_part("cases/c/documents/d", upload_id, 1, part(), 1024)
    await store.complete("cases/c/documents/d", upload_id, [(1, etag)])
    await store.abort("cases/c/documents/d", upload_id)  # gone already: not an error

    create, put, complete, abort = recorder.requests
    assert create.headers["x-amz-server-side-encryption"] == "AES256"
    assert "uploads" in signed(create)
    query = signed(put)
    assert (query["partNumber"], query["uploadId"]) == (["1"], ["u-1&2"])
    # The payload is not hashed for the signature: only the host is signed.
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert "x-amz-content-sha256" not in put.headers
    assert put.headers["content-length"] == "1024"
    assert recorder.bodies[1] == b"a" * 1000 + b"b" * 24
    assert etag == "etag-1"
    assert b"<PartNumber>1</PartNumber><ETag>etag-1</ETag>" in recorder.bodies[2]
    assert signed(complete)["uploadId"] == ["u-1&2"]
    assert abort.method == "DELETE"


async def test_a_refusal_of_object_storage_names_its_code() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            403, content=b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>"
        )

    client = Minio("minio.test:9000", access_key="a", secret_key="b", secure=False, region="x")
    store = MultipartUploads(
        client, "docs", httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    )
    with pytest.raises(MultipartFailed) as refused:
        await store.create("k")
    assert (refused.value.status, refused.value.code) == (403, "AccessDenied")


async def test_an_object_store_that_cannot_serve_is_a_fault_of_the_infrastructure() -> None:
    from referrals_common.faults import is_infrastructure_fault
    from referrals_records.storage import ObjectStoreUnavailable

    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, content=b"<Error><Code>SlowDown</Code></Error>")

    client = Minio("minio.test:9000", access_key="a", secret_key="b", secure=False, region="x")
    store = MultipartUploads(client, "docs", httpx.AsyncClient(transport=httpx.MockTransport(busy)))
    with pytest.raises(ObjectStoreUnavailable) as unavailable:
        await store.create("k")
    assert is_infrastructure_fault(unavailable.value)  # answered 503 with Retry-After
