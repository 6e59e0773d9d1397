"""Documents in MinIO: streamed in, encrypted at rest (SSE-S3), read out through records' links.

Every upload reaches MinIO through `MultipartUploads`: requests presigned with the `minio`
SDK's public `get_presigned_url` and sent with httpx. A one-shot upload
(`DocumentStore.put_stream`) cuts the request's stream into parts of `PART_SIZE` and keeps at
most `PARALLEL_PARTS` of them in flight, so memory stays at a few parts whatever the file size;
a file that fits in one part (most scans and PDFs) is held anyway before it is sent, so it goes
in one PUT of known length instead of three requests (create, part, complete). If the request
stream fails or the content is refused half way, the multipart upload is aborted and nothing is
left in the bucket. A resumable upload is always a multipart upload.

A file that fits in one part goes in one PUT signed with its SHA-256 (`SignedPuts`): the digest
records computes anyway (it identifies the document) is the payload hash of the signature, so
MinIO checks the bytes it stores against the very digest records keeps, and nothing is hashed
twice on records' side. The request is written by records itself on connections it keeps open
to MinIO (`StoreConnections`), on the event loop, its answer read with httptools.

A part of a multipart upload (a larger file, a resumable upload) goes in a presigned request
with an unsigned payload: signing it would take one more SHA-256 pass over every part in records
besides the whole file's. The request, its headers and its expiry stay signed; the bytes in
transit are protected by TLS (`REFERRALS_S3__SECURE=true`) wherever the network to MinIO is not
trusted, and a multipart object's bytes are checked when it is read (a download, translation's
reading) against nothing but TLS: the document's SHA-256 is records' hash of what it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from minio import Minio
from minio.error import S3Error
from minio.sse import SseS3
from opentelemetry import trace

from referrals_common.faults import UNAVAILABLE_S3_CODES

if TYPE_CHECKING:
    from referrals_common.settings import S3Settings

_tracer = trace.get_tracer(__name__)
PART_SIZE = 16 * 1024 * 1024
"""A one-shot upload's part. MinIO spends about a tenth less CPU on a 200 MB file in parts of
16 MiB than in parts of 5 MiB (the S3 minimum; 13 parts instead of 40); a file of at most one
part goes in one signed put."""
PARALLEL_PARTS = 2
"""Parts in flight while the next arrives: with the one arriving, at most 48 MiB held per
upload (5 MiB parts, 3 in flight, held 20 MiB; the process's peak under one 200 MB upload at a
time went from 146 to 162 MiB)."""
WHOLE_FILE_BYTES = 5 * 1024 * 1024
"""A file of at most this size (most scans and letters) is held whole before its bytes are
checked against its case's quota and its type's limit (`Records.store_document`); a larger one
is checked as it arrives (`DocumentStore.put_stream`), so a case's quota or a type's limit stops
it a chunk past the bound, not a part past it."""


@dataclass(frozen=True)
class StoredObject:
    size_bytes: int
    sha256: str


class DocumentStore:
    def __init__(self, client: Minio, bucket: str, puts: SignedPuts) -> None:
        self.client = client
        self.bucket = bucket
        self.multipart = MultipartUploads(client, bucket, connections=puts.connections)
        self.puts = puts

    def ensure_bucket(self) -> None:
        """Create the bucket if needed and prove that encryption at rest works: without a KMS,
        MinIO refuses SSE-S3, and records must not start rather than fail every upload."""
        import io

        if not self.client.bucket_exists(self.bucket):
            with contextlib.suppress(S3Error):  # a concurrent replica made it
                self.client.make_bucket(self.bucket)
        probe = f"probes/{threading.get_ident()}"
        try:
            self.client.put_object(self.bucket, probe, io.BytesIO(b"probe"), 5, sse=SseS3())
        except S3Error as exc:
            raise RuntimeError(
                f"object storage refuses server-side encryption ({exc.code}): configure a KMS "
                "for MinIO (MINIO_KMS_SECRET_KEY or KES); records stores nothing unencrypted"
            ) from exc
        self.client.remove_object(self.bucket, probe)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        media_type: str,
        inspect: Callable[[bytes | bytearray], None],
    ) -> StoredObject:
        """Stream `chunks` to `key`, encrypted; `inspect` sees every chunk as it arrives, before
        its bytes are sent anywhere, and may raise to refuse the upload. On any failure nothing
        is left in the bucket."""
        digest = hashlib.sha256()
        size = 0
        upload_id: str | None = None  # created with the first part: a small file needs none
        etags: dict[int, str] = {}
        in_flight: set[asyncio.Task[None]] = set()
        numbered = 0
        hashing: asyncio.Task[None] | None = None

        async def account(part: list[bytes]) -> None:
            nonlocal size, hashing
            size += sum(map(len, part))
            # Hashed in a worker thread (hashlib lets go of the GIL for it) while this loop goes
            # on receiving and sending: one part at a time, in order.
            if hashing is not None:
                await hashing
            hashing = asyncio.create_task(asyncio.to_thread(_hash_on, digest, part))

        async def send(number: int, part: list[bytes], upload: str) -> None:
            etags[number] = await self.multipart.put_part_pieces(key, upload, number, part)

        async def leave(part: list[bytes]) -> None:
            # A bounded number in flight: a slow MinIO slows the client down, memory stays flat.
            nonlocal numbered, upload_id
            await account(part)
            if upload_id is None:
                upload_id = await self.multipart.create(key, media_type)
            numbered += 1
            in_flight.add(asyncio.create_task(send(numbered, part, upload_id)))
            if len(in_flight) >= PARALLEL_PARTS:
                done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    in_flight.discard(task)
                    task.result()

        try:
            # A part is the pieces it arrived in, sent as they are: never joined or copied (but
            # the piece a part's end cuts in two).
            pieces: list[bytes] = []
            held = 0
            async for chunk in chunks:
                inspect(chunk)  # may refuse: before the bytes are sent anywhere
                pieces.append(chunk)
                held += len(chunk)
                # A part leaves only once more bytes follow it, so a file of at most one part
                # is never a multipart upload.
                while held > PART_SIZE:
                    part, pieces = _split(pieces, held - PART_SIZE)
                    held -= PART_SIZE
                    await leave(part)
            if upload_id is None:
                # The whole file is in `pieces` (at most PART_SIZE): one PUT of known length,
                # signed with its digest.
                await account(pieces)
                if hashing is not None:
                    await hashing
                    hashing = None
                await self.put_object(key, pieces, media_type=media_type, sha256=digest.hexdigest())
            else:
                await leave(pieces)  # the last part: never empty (see above)
                for task in list(in_flight):
                    await task
                    in_flight.discard(task)
                await self.multipart.complete(key, upload_id, sorted(etags.items()))
            if hashing is not None:
                await hashing
        except BaseException:
            pending = [*in_flight, *([hashing] if hashing else [])]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await self.multipart.abort(key, upload_id)
            await self.remove(key)
            raise
        return StoredObject(size_bytes=size, sha256=digest.hexdigest())

    async def put_object(
        self, key: str, data: Sequence[bytes], *, media_type: str, sha256: str
    ) -> None:
        """Store `data` (its pieces, in order), a whole file already inspected whose SHA-256 is
        `sha256` (hex), as `key`, encrypted, in one request of known length that MinIO refuses
        unless the bytes it received have that digest; if it fails, nothing is left under
        `key` by it. Cancelled, it still ends only once its request has."""
        sent = asyncio.ensure_future(self.puts.put(key, data, sha256=sha256, media_type=media_type))
        try:
            await asyncio.shield(sent)
        except asyncio.CancelledError:
            # A request sent whole may still be stored: the caller, cancelled, removes the
            # object only once the put has ended, or the object would appear after that.
            await asyncio.gather(sent, return_exceptions=True)
            raise

    async def remove(self, key: str) -> None:
        def remove() -> None:
            with contextlib.suppress(S3Error):
                self.client.remove_object(self.bucket, key)

        await asyncio.to_thread(remove)

    async def exists(self, key: str) -> bool:
        def stat() -> bool:
            try:
                self.client.stat_object(self.bucket, key)
                return True
            except S3Error:
                return False

        return await asyncio.to_thread(stat)

    def open_stream(self, key: str, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
        """The object's bytes in chunks (blocking: call from a worker thread); the request is
        made now, so a missing object raises here, not while streaming."""
        response = self.client.get_object(self.bucket, key)

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.stream(chunk_size)
            finally:
                response.close()
                response.release_conn()

        return chunks()

    def presigned_get(
        self, key: str, ttl: timedelta, *, download_name: str, media_type: str
    ) -> str:
        """A link to this one object, valid for `ttl`, that downloads under the original name."""
        from urllib.parse import quote

        return self.client.presigned_get_object(
            self.bucket,
            key,
            expires=ttl,
            response_headers={
                "response-content-disposition": "attachment; filename*=UTF-8''"
                + quote(download_name),
                "response-content-type": media_type,
            },
        )


def _split(pieces: list[bytes], rest: int) -> tuple[list[bytes], list[bytes]]:
    """`pieces` cut before their last `rest` bytes (0 < `rest`): the pieces before the cut and
    those after it; only the piece the cut falls in is copied, as its two halves."""
    after: list[bytes] = []
    while rest >= len(pieces[-1]):  # whole pieces after the cut (a piece larger than a part)
        rest -= len(pieces[-1])
        after.insert(0, pieces.pop())
    if rest:
        last = pieces.pop()
        pieces.append(last[: len(last) - rest])
        after.insert(0, last[len(last) - rest :])
    return pieces, after


def _hash_on(digest: Any, pieces: list[bytes]) -> None:
    for piece in pieces:
        digest.update(piece)


class MultipartFailed(Exception):
    """Object storage refused a multipart request (`code` is S3's error code, `status` HTTP's)."""

    def __init__(self, operation: str, status: int, code: str) -> None:
        super().__init__(f"{operation}: HTTP {status} {code}")
        self.status = status
        self.code = code


class ObjectStoreUnavailable(MultipartFailed, ConnectionError):
    """The object store cannot serve now (5xx, `SlowDown`, a storage quorum lost): a fault of
    the infrastructure, answered 503 with `Retry-After` like a refused connection."""


def _element(xml: bytes, name: str) -> str:
    """The text of the first `<name>` element of an S3 answer (flat, known answers: no parser
    of arbitrary XML is needed, nor offered to what comes back)."""
    import re
    from xml.sax.saxutils import unescape

    found = re.search(rb"<" + name.encode() + rb">([^<]*)</" + name.encode() + rb">", xml)
    return unescape(found.group(1).decode()) if found else ""


def _refusal(operation: str, status: int, answer: bytes) -> MultipartFailed:
    """What an S3 error answer means: the store cannot serve now, or it refused the request."""
    code = _element(answer, "Code")
    if status >= 500 or code in UNAVAILABLE_S3_CODES:
        return ObjectStoreUnavailable(operation, status, code)
    return MultipartFailed(operation, status, code)


PRESIGN_TTL = timedelta(minutes=15)
PUT_TIMEOUT = (5.0, 60.0)
"""Seconds to connect to MinIO, and to wait for it to read on or answer (httpx's, below)."""


class SignedPuts:
    """Whole objects put in one request whose body's SHA-256 is signed: AWS Signature V4 with
    the digest in `x-amz-content-sha256`, as the SDK signs its own requests over plain HTTP
    (with the SDK's signer). MinIO hashes what it receives and refuses a body whose digest
    differs (400 `XAmzContentSHA256Mismatch`, nothing stored), so the object is exactly the
    bytes whose SHA-256 records keeps; the digest is the caller's, computed once.

    The request is written on the event loop, on connections kept open here (at most
    `connections` idle ones; TLS as the SDK's, with `S3Settings.secure`): the caller's pieces
    are handed to the socket as they are, never joined, and the answer is read with httptools
    (uvicorn's parser). No worker thread and no HTTP library in between: a put of a 1 MB file
    took 1.7 ms of CPU through urllib3 from a thread, 1.1 ms so, hashing (0.6 ms) included.
    No retry once a request was answered or sent on a new connection: a refusal or a store
    that is away is the caller's to answer (503, then the client sends again); a kept-open
    connection the store closed meanwhile is replaced once."""

    def __init__(self, settings: S3Settings, bucket: str, *, connections: int = 10) -> None:
        from urllib.parse import quote

        from minio.credentials.credentials import Credentials

        self.base = (
            f"{'https' if settings.secure else 'http'}://{settings.endpoint}/{quote(bucket)}/"
        )
        self.region = settings.region
        self.credentials = Credentials(settings.access_key, settings.secret_key.get_secret_value())
        self.connections = StoreConnections(settings, idle=connections)

    def request_head(self, key: str, length: int, *, sha256: str, media_type: str) -> bytes:
        """The signed request line and headers of a put of `length` bytes whose SHA-256 is
        `sha256` (hex) as `key`, encrypted at rest (SSE-S3)."""
        from urllib.parse import quote, urlsplit

        from minio import time
        from minio.signer import sign_v4_s3

        url = urlsplit(self.base + quote(key, safe="/"))
        date = time.utcnow()
        headers: dict[str, str | list[str] | tuple[str]] = {
            "Host": url.netloc,
            "Content-Type": media_type,
            "Content-Length": str(length),
            "x-amz-server-side-encryption": "AES256",
            "x-amz-content-sha256": sha256,
            "x-amz-date": time.to_amz_date(date),
        }
        signed = sign_v4_s3(
            method="PUT",
            url=url,
            region=self.region,
            headers=headers,
            credentials=self.credentials,
            content_sha256=sha256,
            date=date,
        )
        lines = [f"PUT {url.path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in signed.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def put(self, key: str, data: Sequence[bytes], *, sha256: str, media_type: str) -> None:
        """Store `data` (its pieces, in order: their SHA-256 is `sha256`, hex) as `key`,
        encrypted at rest (SSE-S3). The pieces are written one after the other, never joined."""
        head = self.request_head(key, sum(map(len, data)), sha256=sha256, media_type=media_type)
        with _client_span(self.connections) as span:
            status, _, answer = await self.connections.exchange(head, data)
            span.set_attribute("http.response.status_code", status)
        if status >= 300:
            raise _refusal("put", status, answer)


def _client_span(connections: StoreConnections) -> Any:
    """The client span of a PUT records writes itself (no HTTP library's instrumentation sees
    it), as urllib3's and httpx's instrumentations give the other requests."""
    return _tracer.start_as_current_span(
        "PUT",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "http.request.method": "PUT",
            "server.address": connections.host,
            "server.port": connections.port,
        },
    )


class StoreConnections:
    """Connections to the object store kept open for requests records writes itself (a signed
    put, a part of a multipart upload): at most `idle` idle ones, those of the running event
    loop; TLS as the SDK's pool makes it (`S3Settings.secure`)."""

    def __init__(self, settings: S3Settings, *, idle: int = 10) -> None:
        host, _, port = settings.endpoint.rpartition(":")
        self.netloc = settings.endpoint
        self.host = (host or settings.endpoint).strip("[]")
        self.port = int(port) if host and port.isdigit() else (443 if settings.secure else 80)
        self.secure = settings.secure
        self.idle = idle
        self._idle: list[_StoreConnection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls: Any = None

    async def exchange(
        self, head: bytes, body: Sequence[bytes]
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send a request (`head`: its line and headers; `body`: its pieces) and read its answer:
        (status, headers by lower-case name, body). A kept-open connection the store closed
        meanwhile is replaced once; any other failure is the caller's (OSError, TimeoutError)."""
        data = body
        connection, reused = await self._connection()
        try:
            answer = await connection.exchange(head, data)
        except ConnectionError:
            connection.close()
            if not reused or connection.answered:
                raise
            # A kept-open connection the store closed meanwhile: once more on a new one.
            connection, _ = await self._connection(fresh=True)
            try:
                answer = await connection.exchange(head, data)
            except BaseException:
                connection.close()
                raise
        except BaseException:
            connection.close()
            raise
        self._release(connection)
        return answer

    async def _connection(self, *, fresh: bool = False) -> tuple[_StoreConnection, bool]:
        """An idle connection of this event loop (and True), or a new one (and False)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections belong to the loop that opened them
            self._idle, self._loop = [], loop
        while self._idle and not fresh:
            connection = self._idle.pop()
            if connection.usable:
                return connection, True
            connection.close()
        if self.secure and self._tls is None:
            self._tls = _tls_context()
        tls = self._tls
        async with asyncio.timeout(PUT_TIMEOUT[0]):
            _, connection = await loop.create_connection(
                _StoreConnection,
                self.host,
                self.port,
                ssl=tls,
                server_hostname=self.host if tls else None,
            )
        return connection, False

    def _release(self, connection: _StoreConnection) -> None:
        if connection.usable and len(self._idle) < self.idle:
            self._idle.append(connection)
        else:
            connection.close()


def _tls_context() -> Any:
    """TLS to the object store as the SDK's pool makes it (`S3Settings.http_pool`): the CA
    certificates of `SSL_CERT_FILE`, else certifi's."""
    import os
    import ssl

    import certifi

    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


class _StoreConnection(asyncio.Protocol):
    """One kept-open HTTP/1.1 connection to the object store: one request at a time written,
    its answer read with httptools. A request (at most a part: its pieces are in memory anyway)
    is handed to the transport whole, in one `writelines`: the event loop sends what the socket
    takes at once (one `writev`, not a send for the head and one for each piece: over loopback
    each send also runs the store's side of TCP and wakes it, and the store read the body in
    that many slices) and keeps the rest, without copying it, until the socket takes it."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[int] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.closed = False
        self.answered = False
        """Whether any byte of an answer arrived on this connection's current request."""
        self.sent_whole = False
        """Whether the current request was written to its end by its answer (an answer may
        come first: a refusal before the whole body was read)."""
        self.keep_alive = False
        """Whether the store keeps the connection open after its last answer."""

    @property
    def usable(self) -> bool:
        """Open, idle, and last answered with a connection the store keeps open."""
        answer = self.answer
        return (
            not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
            and self.sent_whole
            and answer is not None
            and answer.done()
            and not answer.cancelled()
            and answer.exception() is None
            and self.keep_alive
        )

    async def exchange(
        self, head: bytes, body: Sequence[bytes]
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        """Write a request (`head`, then the pieces of `body`) and read its answer: (status,
        headers, body). ConnectionError if the connection closes first; at most
        `PUT_TIMEOUT[1]` s."""
        if self.closed or self.transport is None:
            raise ConnectionError("the object store closed the connection")
        loop = asyncio.get_running_loop()
        self.answer, self.headers, self.body = loop.create_future(), {}, []
        self.answered = self.sent_whole = self.keep_alive = False
        async with asyncio.timeout(PUT_TIMEOUT[1]):
            self.transport.writelines([head, *body])
            status = await self.answer
            # Bytes of the request still unsent (answered before the body's end) would be read
            # as the next request's: such a connection is not used again.
            self.sent_whole = self.transport.get_write_buffer_size() == 0
        return status, self.headers, b"".join(self.body)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # ---------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        import httptools

        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"the object store's answer is not HTTP: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        self.closed = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("the object store closed the connection"))

    # ---------------------------------------------------------------- httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # reset once the parser moves on
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(self.parser.get_status_code())

    def _fail(self, exc: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)


class MultipartUploads:
    """S3 multipart uploads whose parts arrive in separate requests (resumable uploads, and a
    one-shot upload larger than a part).

    Each request is presigned with the SDK's public `get_presigned_url` and sent with httpx, so a
    part streams from the client's request straight into MinIO as one multipart part: nothing is
    buffered whole or read back. A presigned request carries an unsigned payload (no extra hash
    pass over the part); TLS protects the bytes wherever the network to MinIO is not trusted.
    """

    def __init__(
        self,
        client: Minio,
        bucket: str,
        http: Any = None,
        *,
        connections: StoreConnections | None = None,
    ) -> None:
        import httpx

        self.client = client
        self.bucket = bucket
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))
        self.connections = connections
        """Where a part already whole in memory is sent (`put_part_pieces`), if given."""

    def _url(self, method: str, key: str, **query: str) -> str:
        params: dict[str, str | list[str] | tuple[str]] = dict(query)
        return self.client.get_presigned_url(
            method, self.bucket, key, expires=PRESIGN_TTL, extra_query_params=params
        )

    async def _send(self, operation: str, method: str, url: str, **options: Any) -> Any:
        response = await self.http.request(method, url, **options)
        if response.status_code >= 300:
            raise _refusal(operation, response.status_code, response.content)
        return response

    async def create(self, key: str, media_type: str = "application/octet-stream") -> str:
        """Start a multipart upload of `key` (encrypted at rest, SSE-S3); its upload id."""
        response = await self._send(
            "create",
            "POST",
            self._url("POST", key, uploads=""),
            headers={"Content-Type": media_type, "x-amz-server-side-encryption": "AES256"},
        )
        upload_id = _element(response.content, "UploadId")
        if not upload_id:
            raise MultipartFailed("create", response.status_code, "NoUploadId")
        return upload_id

    async def put_part(
        self, key: str, upload_id: str, number: int, body: AsyncIterator[bytes], length: int
    ) -> str:
        """Stream `length` bytes of `body` as part `number` (sent again, it replaces the part);
        the part's ETag."""
        response = await self._send(
            "part",
            "PUT",
            self._url("PUT", key, partNumber=str(number), uploadId=upload_id),
            content=body,
            headers={"Content-Length": str(length)},
        )
        return str(response.headers.get("ETag", "")).strip('"')

    async def put_part_pieces(
        self, key: str, upload_id: str, number: int, pieces: Sequence[bytes]
    ) -> str:
        """Send part `number`, whole in memory as `pieces` (in order, never joined); its ETag.
        On `connections` when given: the pieces go to the socket as they are, with no HTTP
        library's work per piece or per request."""
        length = sum(map(len, pieces))
        if self.connections is None:

            async def body() -> AsyncIterator[bytes]:
                for piece in pieces:
                    yield piece

            return await self.put_part(key, upload_id, number, body(), length)
        from urllib.parse import urlsplit

        url = urlsplit(self._url("PUT", key, partNumber=str(number), uploadId=upload_id))
        head = (
            f"PUT {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode("latin-1")
        with _client_span(self.connections) as span:
            status, headers, answer = await self.connections.exchange(head, pieces)
            span.set_attribute("http.response.status_code", status)
        if status >= 300:
            raise _refusal("part", status, answer)
        return headers.get(b"etag", b"").decode("latin-1").strip('"')

    async def complete(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Assemble the parts `(number, etag)` into the object."""
        from xml.sax.saxutils import escape

        body = (
            "<CompleteMultipartUpload>"
            + "".join(
                f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
                for number, etag in parts
            )
            + "</CompleteMultipartUpload>"
        )
        response = await self._send(
            "complete",
            "POST",
            self._url("POST", key, uploadId=upload_id),
            content=body.encode(),
            headers={"Content-Type": "application/xml"},
        )
        # S3 may answer 200 with an error in the body once the assembly is under way.
        if b"<Error>" in response.content[:512]:
            raise MultipartFailed("complete", 200, "CompleteFailed")

    async def abort(self, key: str, upload_id: str) -> None:
        """Drop the upload and its parts; an upload already gone is not an error."""
        try:
            await self._send("abort", "DELETE", self._url("DELETE", key, uploadId=upload_id))
        except MultipartFailed as exc:
            if exc.code != "NoSuchUpload" and exc.status != 404:
                raise

    async def close(self) -> None:
        await self.http.aclose()
