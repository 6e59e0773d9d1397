"""Records' one-request put of a whole file (`storage.SignedPuts`): signed with the document's
SHA-256 as its payload hash, encrypted at rest, the caller's pieces sent under one
Content-Length, on kept-open connections, and an S3 refusal told apart from a store that cannot
serve now; checked on the requests really received by a stand-in store on a local socket."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr

from referrals_common.faults import is_infrastructure_fault
from referrals_common.settings import S3Settings
from referrals_records.storage import (
    DocumentStore,
    MultipartFailed,
    ObjectStoreUnavailable,
    SignedPuts,
)

pytestmark = pytest.mark.unit


@dataclass
class Received:
    line: str
    headers: dict[str, str]
    body: bytes
    connection: int
    """Which connection it came on (1 for the first one the store accepted)."""


@dataclass
class StandInStore:
    """Answers every request with `status` and `answer` (closing the connection after it when
    `close`), once `release` is set; keeps what it received."""

    status: int = 200
    answer: bytes = b""
    close: bool = False
    early: bool = False
    """Answer after the head, before reading the body (as a store refusing a put up front), and
    read nothing more on that connection."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    received: list[Received] = field(default_factory=list)
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                line, *fields = head.decode("latin-1").split("\r\n")[:-2]
                headers = dict(f.split(": ", 1) for f in fields)
                if self.early:
                    self.received.append(Received(line, headers, b"", number))
                    writer.write(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                        b"Connection: keep-alive\r\n\r\n"
                    )
                    await writer.drain()
                    await reader.read()  # until the client closes the connection
                    return
                body = await reader.readexactly(int(headers["Content-Length"]))
                self.received.append(Received(line, headers, body, number))
                await self.release.wait()
                reason = {200: "OK", 400: "Bad Request", 503: "Service Unavailable"}[self.status]
                keep = "close" if self.close else "keep-alive"
                writer.write(
                    f"HTTP/1.1 {self.status} {reason}\r\nContent-Length: {len(self.answer)}\r\n"
                    f"Connection: {keep}\r\n\r\n".encode()
                    + self.answer
                )
                await writer.drain()
                if self.close:
                    return
        finally:
            writer.close()


@pytest.fixture
async def store() -> AsyncIterator[tuple[StandInStore, S3Settings]]:
    stand_in = StandInStore()
    stand_in.release.set()
    server = await asyncio.start_server(stand_in.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = S3Settings(
        endpoint=f"127.0.0.1:{port}",
        access_key="records",
        secret_key=SecretStr("s3cr3t-key"),
        region="eu-central-1",
    )
    async with server:
        yield stand_in, settings
        server.close()


async def test_a_put_is_signed_with_the_documents_sha256_and_sends_its_pieces_under_one_length(
    store: tuple[StandInStore, S3Settings],
) -> None:
    stand_in, settings = store
    data = [b"%PDF-1.7 ", bytes(range(256)) * 64, b"%%EOF"]  # the pieces as they arrived
    digest = hashlib.sha256(b"".join(data)).hexdigest()
    await SignedPuts(settings, "documents").put(
        "cases/c/documents/d", data, sha256=digest, media_type="application/pdf"
    )

    [sent] = stand_in.received
    assert sent.line == "PUT /documents/cases/c/documents/d HTTP/1.1"
    assert sent.body == b"".join(data)
    headers = {name.lower(): value for name, value in sent.headers.items()}
    assert "transfer-encoding" not in headers  # one known length, no chunks
    assert headers["content-length"] == str(9 + 256 * 64 + 5)
    assert headers["x-amz-content-sha256"] == digest  # not UNSIGNED-PAYLOAD
    assert headers["x-amz-server-side-encryption"] == "AES256"
    assert headers["content-type"] == "application/pdf"
    assert headers["host"] == settings.endpoint
    algorithm, _, rest = headers["authorization"].partition(" ")
    assert algorithm == "AWS4-HMAC-SHA256"
    parts = dict(part.strip().split("=", 1) for part in rest.split(","))
    assert parts["Credential"].startswith("records/")
    assert parts["Credential"].endswith("/eu-central-1/s3/aws4_request")
    # The digest, the host and the encryption are covered by the signature.
    signed = parts["SignedHeaders"].split(";")
    assert {"host", "x-amz-content-sha256", "x-amz-server-side-encryption"} <= set(signed)
    assert len(parts["Signature"]) == 64


async def test_puts_go_on_one_kept_open_connection_and_on_a_new_one_once_the_store_closed_it(
    store: tuple[StandInStore, S3Settings],
) -> None:
    stand_in, settings = store
    puts = SignedPuts(settings, "documents")
    for key in ("a", "b"):
        await puts.put(key, [b"data"], sha256="0" * 64, media_type="text/plain")
    assert [r.connection for r in stand_in.received] == [1, 1]

    stand_in.close = True  # the store closes the connection after its next answer
    await puts.put("c", [b"data"], sha256="0" * 64, media_type="text/plain")
    stand_in.close = False
    await puts.put("d", [b"data"], sha256="0" * 64, media_type="text/plain")
    assert [r.connection for r in stand_in.received] == [1, 1, 1, 2]


async def test_a_connection_answered_before_its_body_was_sent_is_not_used_again(
    store: tuple[StandInStore, S3Settings],
) -> None:
    stand_in, settings = store
    puts = SignedPuts(settings, "documents")
    stand_in.early = True  # refuses before reading a body larger than the sockets' buffers
    with pytest.raises(MultipartFailed):
        await puts.put("a", [bytes(2**21)] * 16, sha256="0" * 64, media_type="text/plain")
    stand_in.early = False
    await puts.put("b", [b"data"], sha256="0" * 64, media_type="text/plain")

    # The rest of the first body, unsent, would have been read as the second request.
    assert [(r.line, r.connection) for r in stand_in.received] == [
        ("PUT /documents/a HTTP/1.1", 1),
        ("PUT /documents/b HTTP/1.1", 2),
    ]
    assert stand_in.received[1].body == b"data"


async def test_minio_refusing_the_bytes_is_a_refusal_and_a_busy_minio_a_fault_of_the_infrastructure(
    store: tuple[StandInStore, S3Settings],
) -> None:
    stand_in, settings = store
    puts = SignedPuts(settings, "documents")
    stand_in.status = 400
    stand_in.answer = b"<Error><Code>XAmzContentSHA256Mismatch</Code><Message>x</Message></Error>"
    with pytest.raises(MultipartFailed) as refused:
        await puts.put("k", [b"data"], sha256="0" * 64, media_type="text/plain")
    assert (refused.value.status, refused.value.code) == (400, "XAmzContentSHA256Mismatch")
    assert not isinstance(refused.value, ObjectStoreUnavailable)

    stand_in.status, stand_in.answer = 503, b"<Error><Code>SlowDown</Code></Error>"
    with pytest.raises(ObjectStoreUnavailable) as unavailable:
        await puts.put("k", [b"data"], sha256="0" * 64, media_type="text/plain")
    assert is_infrastructure_fault(unavailable.value)  # answered 503 with Retry-After


async def test_a_store_nobody_answers_on_is_a_fault_of_the_infrastructure() -> None:
    from devstack.process import free_port

    settings = S3Settings(
        endpoint=f"127.0.0.1:{free_port()}", access_key="a", secret_key=SecretStr("b")
    )
    with pytest.raises(ConnectionRefusedError) as away:
        await SignedPuts(settings, "documents").put(
            "k", [b"data"], sha256="0" * 64, media_type="text/plain"
        )
    assert is_infrastructure_fault(away.value)


async def test_a_cancelled_put_ends_only_once_its_request_has(
    store: tuple[StandInStore, S3Settings],
) -> None:
    # The caller removes the object after a cancelled put: removed while the request still
    # runs, the object would appear after its removal.
    from minio import Minio

    stand_in, settings = store
    stand_in.release.clear()  # the store holds its answer back
    client = Minio(settings.endpoint, access_key="a", secret_key="b", secure=False)
    documents = DocumentStore(client, "documents", SignedPuts(settings, "documents"))
    put = asyncio.create_task(
        documents.put_object("k", [b"x"], media_type="text/plain", sha256="0" * 64)
    )
    while not stand_in.received:
        await asyncio.sleep(0.01)
    put.cancel()
    await asyncio.sleep(0.05)
    assert not put.done(), "the put ends with its request, not before"
    stand_in.release.set()
    with pytest.raises(asyncio.CancelledError):
        await put
    assert [r.line for r in stand_in.received] == ["PUT /documents/k HTTP/1.1"]


async def test_a_put_is_a_client_span_with_its_answer(
    store: tuple[StandInStore, S3Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The put is records' own request (no HTTP library's instrumentation sees it): its span
    # keeps the upload's trace showing the object store's part.
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from referrals_records import storage

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(storage, "_tracer", provider.get_tracer("test"))
    _, settings = store
    await SignedPuts(settings, "documents").put(
        "k", [b"data"], sha256="0" * 64, media_type="text/plain"
    )
    [span] = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("PUT", trace.SpanKind.CLIENT)
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["server.port"] == int(settings.endpoint.rpartition(":")[2])


def test_a_part_is_cut_from_its_pieces_at_its_size_copying_only_the_piece_the_cut_falls_in() -> (
    None
):
    import random

    from referrals_records.storage import _split

    rng = random.Random(25)
    for _ in range(200):
        pieces = [rng.randbytes(rng.randint(0, 40)) for _ in range(rng.randint(1, 8))]
        whole = b"".join(pieces)
        if not whole:
            continue
        rest = rng.randint(1, len(whole) - 1) if len(whole) > 1 else 0
        if not rest:
            continue
        kept = list(pieces)
        before, after = _split(pieces, rest)
        assert b"".join(before) == whole[: len(whole) - rest]
        assert b"".join(after) == whole[len(whole) - rest :]
        # Every piece but the one cut in two is the very object that arrived.
        assert sum(1 for p in before + after if not any(p is k for k in kept)) <= 2


async def test_with_tls_a_put_reaches_only_a_store_whose_certificate_a_trusted_ca_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`S3Settings.secure`: records' own puts verify the store's certificate against the CA
    certificates of SSL_CERT_FILE (as the SDK's pool does); a store whose certificate another CA
    signed gets no byte of the document."""
    import ssl

    from devstack.tls import Authority

    trusted = Authority.create(tmp_path / "trusted")
    other = Authority.create(tmp_path / "other", "another CA")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(trusted.issue(tmp_path, "object-store"))  # key and chain in one
    stand_in = StandInStore()
    stand_in.release.set()
    server = await asyncio.start_server(stand_in.serve, "127.0.0.1", 0, ssl=server_tls)
    port = server.sockets[0].getsockname()[1]
    settings = S3Settings(
        endpoint=f"127.0.0.1:{port}", access_key="a", secret_key=SecretStr("b"), secure=True
    )
    async with server:
        monkeypatch.setenv("SSL_CERT_FILE", str(trusted.ca_file))
        await SignedPuts(settings, "documents").put(
            "k", [b"data"], sha256="0" * 64, media_type="text/plain"
        )
        assert [r.body for r in stand_in.received] == [b"data"]

        monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_file))
        with pytest.raises(ssl.SSLCertVerificationError):
            await SignedPuts(settings, "documents").put(
                "k2", [b"secret"], sha256="0" * 64, media_type="text/plain"
            )
        assert [r.body for r in stand_in.received] == [b"data"]
        server.close()
