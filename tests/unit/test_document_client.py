"""Records' MinIO client sends large request bodies (the parts of documents) with an unsigned
payload, and everything else signed as the SDK does: checked on the requests it really makes."""

from __future__ import annotations

import hashlib
import io

import pytest
import urllib3

from referrals_records.storage import UNSIGNED_PAYLOAD_FROM, DocumentClient

pytestmark = pytest.mark.unit


class Recorder(urllib3.PoolManager):
    """urllib3's pool that sends nothing: it keeps each request's headers and answers 200."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, str]] = []

    def urlopen(self, method, url, body=None, headers=None, **_):
        self.requests.append(dict(headers or {}))
        return urllib3.HTTPResponse(body=b"", headers={"ETag": '"e"'}, status=200)


def put(secure: bool, size: int) -> dict[str, str]:
    recorder = Recorder()
    client = DocumentClient(
        "minio.internal:9000",
        access_key="access",
        secret_key="secret-secret",
        secure=secure,
        region="us-east-1",
        http_client=recorder,
    )
    client.put_object("documents", "cases/x/documents/y", io.BytesIO(b"d" * size), size)
    [headers] = recorder.requests
    return headers


@pytest.mark.parametrize("secure", [False, True], ids=["http", "https"])
def test_a_large_body_is_sent_unsigned_without_another_pass_over_it(secure):
    size = UNSIGNED_PAYLOAD_FROM
    headers = put(secure, size)
    assert headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert "Content-MD5" not in headers
    assert headers["Content-Length"] == str(size)
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"content-length", "x-amz-content-sha256", "host"} <= set(signed)


def test_a_small_body_over_http_keeps_its_payload_signature():
    size = UNSIGNED_PAYLOAD_FROM - 1
    headers = put(False, size)
    assert headers["x-amz-content-sha256"] == hashlib.sha256(b"d" * size).hexdigest()
