"""Documents in MinIO: streamed in, encrypted at rest (SSE-S3), read out through presigned links.

The `minio` SDK is synchronous, so an upload runs in a worker thread that pulls chunks from a
small bounded queue fed by the request's stream: memory stays at a few parts (the SDK buffers one
part of `PART_SIZE` per upload thread) whatever the file size. If the request stream fails or the
content is refused half way, the reader raises inside the SDK, which aborts the multipart upload;
the object is then removed in case it had been completed as a single part.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import hashlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from minio import Minio
from minio.credentials import Credentials
from minio.error import S3Error
from minio.sse import SseS3

PART_SIZE = 5 * 1024 * 1024  # the S3 minimum: least memory per part in flight
PARALLEL_PARTS = 3
BLOCK_BYTES = 512 * 1024
QUEUE_CHUNKS = 12  # ~6 MB of blocks: the client keeps sending while a part uploads
_EOF = object()


UNSIGNED_PAYLOAD_FROM = 1024 * 1024
"""Request bodies from this size are sent with an unsigned payload (see `DocumentClient`)."""


class DocumentClient(Minio):
    """The `minio` client, sending the parts of documents with an unsigned payload.

    Over plain HTTP the SDK signs each request's payload: it hashes every 5 MB part with SHA-256
    before sending it, and MinIO hashes the part again to check that signature. Records already
    hashes every document on the way in (its SHA-256 identifies the document), so those two more
    passes over the bytes cost a third of the upload's CPU and a quarter of its throughput on a
    2-core machine (bench/records.py). Bodies of `UNSIGNED_PAYLOAD_FROM` bytes or more are sent as
    `UNSIGNED-PAYLOAD`, which is what the SDK itself does over HTTPS (there it adds a Content-MD5,
    yet another pass, which this client leaves out too). The request, its headers and its
    Content-Length stay signed; the bytes in transit are protected by TLS
    (`REFERRALS_S3__SECURE=true`) wherever the network to MinIO is not trusted.
    """

    def _build_headers(
        self,
        host: str,
        headers: dict[str, str | list[str] | tuple[str]] | None = None,
        body: bytes | None = None,
        creds: Credentials | None = None,
    ) -> tuple[dict[str, str | list[str] | tuple[str]], datetime]:
        if creds is None or body is None or len(body) < UNSIGNED_PAYLOAD_FROM:
            return super()._build_headers(host, headers, body, creds)
        built, date = super()._build_headers(host, headers, None, creds)
        built["Content-Length"] = str(len(body))
        built["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        return built, date


class UploadAborted(Exception):
    """The upload was stopped by its producer; the cause is chained."""


class _QueueReader:
    """A file-like object for the SDK's thread: `read(n)` returns bytes from the queue."""

    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._pieces: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or self._buffered < size):
            item = self.queue.get()
            if item is _EOF:
                self._done = True
            elif isinstance(item, BaseException):
                raise UploadAborted("the upload was aborted") from item
            else:
                self._pieces.append(item)  # type: ignore[arg-type]
                self._buffered += len(item)  # type: ignore[arg-type]
        if size < 0 or size >= self._buffered:
            out = b"".join(self._pieces)
            self._pieces.clear()
            self._buffered = 0
            return out
        # One copy per part: whole pieces, then the head of the piece that straddles the end.
        taken: list[bytes] = []
        need = size
        while need:
            piece = self._pieces.popleft()
            if len(piece) <= need:
                taken.append(piece)
                need -= len(piece)
            else:
                taken.append(piece[:need])
                self._pieces.appendleft(piece[need:])
                need = 0
        self._buffered -= size
        return b"".join(taken)


@dataclass(frozen=True)
class StoredObject:
    size_bytes: int
    sha256: str


class DocumentStore:
    def __init__(self, client: Minio, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

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
        """Stream `chunks` to `key`, encrypted; `inspect` sees every chunk first and may raise to
        refuse the upload. On any failure nothing is left in the bucket."""
        reader = _QueueReader()
        digest = hashlib.sha256()
        size = 0
        loop = asyncio.get_running_loop()
        outcome: dict[str, BaseException | None] = {"error": None}

        def upload() -> None:
            try:
                self.client.put_object(
                    self.bucket,
                    key,
                    reader,
                    length=-1,
                    part_size=PART_SIZE,
                    num_parallel_uploads=PARALLEL_PARTS,
                    content_type=media_type,
                    sse=SseS3(),
                )
            except BaseException as exc:
                outcome["error"] = exc

        # The thread runs in this request's context, so MinIO's HTTP calls join its trace.
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(upload,), name=f"upload-{key}", daemon=True
        )
        thread.start()

        async def put(item: object) -> None:
            # A bounded queue: a slow MinIO slows the client down instead of filling memory.
            while True:
                try:
                    reader.queue.put_nowait(item)
                    return
                except queue.Full:
                    if not thread.is_alive():
                        return
                    await asyncio.sleep(0.002)

        try:
            # Network chunks are small (~64 KiB): hash, inspect and hand over in blocks, so the
            # per-chunk cost is paid once per block. A full block is handed over as it is (the
            # next one is a new buffer), not copied.
            block = bytearray()
            async for chunk in chunks:
                block += chunk
                if len(block) < BLOCK_BYTES:
                    continue
                data, block = block, bytearray()
                inspect(data)
                digest.update(data)
                size += len(data)
                await put(data)
                if not thread.is_alive():
                    break
            if block:
                data = block
                inspect(data)
                digest.update(data)
                size += len(data)
                await put(data)
            await put(_EOF)
        except BaseException as exc:
            await put(exc)
            await loop.run_in_executor(None, thread.join)
            await self.remove(key)
            raise
        await loop.run_in_executor(None, thread.join)
        if outcome["error"] is not None:
            await self.remove(key)
            raise outcome["error"]
        return StoredObject(size_bytes=size, sha256=digest.hexdigest())

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


class MultipartFailed(Exception):
    """Object storage refused a multipart request (`code` is S3's error code, `status` HTTP's)."""

    def __init__(self, operation: str, status: int, code: str) -> None:
        super().__init__(f"{operation}: HTTP {status} {code}")
        self.status = status
        self.code = code


def _element(xml: bytes, name: str) -> str:
    """The text of the first `<name>` element of an S3 answer (flat, known answers: no parser
    of arbitrary XML is needed, nor offered to what comes back)."""
    import re
    from xml.sax.saxutils import unescape

    found = re.search(rb"<" + name.encode() + rb">([^<]*)</" + name.encode() + rb">", xml)
    return unescape(found.group(1).decode()) if found else ""


PRESIGN_TTL = timedelta(minutes=15)


class MultipartUploads:
    """S3 multipart uploads whose parts arrive in separate requests (resumable uploads).

    Each request is presigned with the SDK's public `get_presigned_url` and sent with httpx, so a
    part streams from the client's request straight into MinIO as one multipart part: nothing is
    buffered whole or read back. A presigned request carries an unsigned payload (no extra hash
    pass over the part); TLS protects the bytes wherever the network to MinIO is not trusted.
    """

    def __init__(self, client: Minio, bucket: str, http: Any = None) -> None:
        import httpx

        self.client = client
        self.bucket = bucket
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))

    def _url(self, method: str, key: str, **query: str) -> str:
        return self.client.get_presigned_url(
            method, self.bucket, key, expires=PRESIGN_TTL, extra_query_params=query
        )

    async def _send(self, operation: str, method: str, url: str, **options: Any) -> Any:
        response = await self.http.request(method, url, **options)
        if response.status_code >= 300:
            raise MultipartFailed(
                operation, response.status_code, _element(response.content, "Code")
            )
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
