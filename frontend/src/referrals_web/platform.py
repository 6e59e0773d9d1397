"""The web application's client of the platform's public HTTP APIs: intake (cases, consents,
submission, the timeline, the answer to a center's request, access tokens), records (documents;
for a center, its referrals' documents and its opinion) and partners (where the case went and
why; for a center, its referrals and its answers). This is the only way the pages reach the
platform.

The console's calls go with the staff member's center's partner API key (`center_key`), which
partners and records both accept: they, not the web application, decide what that center may
see (another center's referral is a 404 there).

The partner front end's API key is used only for what needs it (opening a case, minting a case
access token); everything about one case goes with that case's token. Problems (RFC 9457) come
back as `PlatformProblem`, with each `errors[]` entry's JSON pointer, so a page can put the
message beside the field it is about; a platform that cannot be reached is
`PlatformUnavailable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any
from uuid import UUID

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

from referrals_web.config import WebSettings


@dataclass(frozen=True)
class FieldProblem:
    pointer: str
    message: str
    code: str | None = None


@dataclass
class PlatformProblem(Exception):
    """The platform refused a request (4xx), with its problem details."""

    status: int
    slug: str
    """The last part of the problem's `type` (`submission-incomplete`), or `about:blank`."""
    title: str = ""
    detail: str = ""
    errors: list[FieldProblem] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)
    retry_after: int | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.slug}: {self.detail or self.title}"

    def fields(self, pointers: dict[str, str]) -> dict[str, FieldProblem]:
        """This problem's field errors by the page's field names: `pointers` maps a JSON pointer
        (or a prefix of one: `/contact`) to a field name; the longest prefix wins."""
        found: dict[str, FieldProblem] = {}
        for error in self.errors:
            pointer = error.pointer.removeprefix("#")
            best = max(
                (p for p in pointers if pointer == p or pointer.startswith(p.rstrip("/") + "/")),
                key=len,
                default=None,
            )
            if best is not None:
                found.setdefault(pointers[best], error)
        return found


class PlatformUnavailable(Exception):
    """The platform could not be reached or failed (5xx, 503 with Retry-After, a timeout)."""


@dataclass(frozen=True)
class CaseToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class Upload:
    kind: str
    file_name: str
    content_type: str
    file: IO[bytes]
    translation_of: UUID | None = None


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The JSON object an API answered (what every call answered with one expects)."""
    body: dict[str, Any] = response.json()
    return body


def json_objects(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON array of objects an API answered (its lists)."""
    body: list[dict[str, Any]] = response.json()
    return body


def _problem(response: httpx.Response) -> PlatformProblem:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    type_ = str(body.get("type") or "about:blank")
    slug = type_.rstrip("/").rsplit("/", 1)[-1] if type_ != "about:blank" else type_
    errors = [
        FieldProblem(
            pointer=str(e.get("pointer", "")),
            message=str(e.get("message", "")),
            code=e.get("code"),
        )
        for e in body.get("errors") or []
        if isinstance(e, dict)
    ]
    known = {"type", "title", "status", "detail", "instance", "errors"}
    retry = response.headers.get("retry-after")
    return PlatformProblem(
        status=response.status_code,
        slug=slug,
        title=str(body.get("title") or ""),
        detail=str(body.get("detail") or ""),
        errors=errors,
        extensions={k: v for k, v in body.items() if k not in known},
        retry_after=int(retry) if retry and retry.isdigit() else None,
    )


class Platform:
    """One HTTP client for the three APIs (connection pools kept for the process's life)."""

    def __init__(
        self, settings: WebSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.intake = settings.intake_url.rstrip("/")
        self.records = settings.records_url.rstrip("/")
        self.partners = settings.partners_url.rstrip("/")
        self._key = settings.front_end_api_key.get_secret_value()
        self._consent_texts: dict[tuple[str, str], dict[str, Any]] = {}
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(settings.api_timeout_seconds, connect=5.0),
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self.client.aclose()

    # ------------------------------------------------------------------ plumbing
    async def _send(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        front_end: bool = False,
        center_key: str | None = None,
        ok: Iterable[int] = (200, 201),
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if front_end:
            sent["X-Api-Key"] = self._key
        if center_key is not None:
            sent["X-Api-Key"] = center_key
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.setdefault("Accept", "application/json")
        try:
            response = await self.client.request(method, url, headers=sent, **kwargs)
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(f"{method} {url}: {type(exc).__name__}") from exc
        if response.status_code in ok:
            return response
        if response.status_code >= 500 or response.status_code == 429:
            raise PlatformUnavailable(f"{method} {url}: HTTP {response.status_code}")
        raise _problem(response)

    # ------------------------------------------------------------------ front end's key
    async def create_case(
        self, body: dict[str, Any], idempotency_key: str
    ) -> tuple[dict[str, Any], CaseToken]:
        """Open a draft case (or, for a key already used, get the case it opened)."""
        response = await self._send(
            "POST",
            f"{self.intake}/v1/cases",
            front_end=True,
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        created = response.json()
        return created["case"], CaseToken(
            created["access_token"], datetime.fromisoformat(created["expires_at"])
        )

    async def access_token(self, case_id: UUID) -> CaseToken:
        """A fresh token for a case this front end opened (404 for any other)."""
        response = await self._send(
            "POST", f"{self.intake}/v1/cases/{case_id}/access-token", front_end=True
        )
        body = response.json()
        return CaseToken(body["access_token"], datetime.fromisoformat(body["expires_at"]))

    # ------------------------------------------------------------------ the case's token
    async def read_case(self, case_id: UUID, token: str) -> dict[str, Any]:
        response = await self._send("GET", f"{self.intake}/v1/cases/{case_id}", token=token)
        return json_object(response)

    async def timeline(self, case_id: UUID, token: str) -> list[dict[str, Any]]:
        response = await self._send(
            "GET", f"{self.intake}/v1/cases/{case_id}/timeline", token=token
        )
        return json_objects(response)

    @asynccontextmanager
    async def case_events(
        self, case_id: UUID, token: str, last_event_id: str | None = None
    ) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
        """Intake's live stream of the case's timeline (Server-Sent Events), from just after
        `last_event_id` (from the first entry without it). It ends when the token expires."""
        url = f"{self.intake}/v1/cases/{case_id}/events"
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        # Heartbeats come every 15 s: a minute of silence is a dead connection.
        timeout = httpx.Timeout(60.0, connect=5.0)
        try:
            async with aconnect_sse(
                self.client, "GET", url, headers=headers, timeout=timeout
            ) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    if response.status_code >= 500 or response.status_code == 429:
                        raise PlatformUnavailable(f"GET {url}: HTTP {response.status_code}")
                    raise _problem(response)
                yield source.aiter_sse()
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(f"GET {url}: {type(exc).__name__}") from exc

    async def edit_case(self, case_id: UUID, token: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._send(
            "PATCH", f"{self.intake}/v1/cases/{case_id}", token=token, json=body
        )
        return json_object(response)

    async def give_consent(
        self, case_id: UUID, token: str, kind: str, version: str
    ) -> dict[str, Any]:
        response = await self._send(
            "PUT",
            f"{self.intake}/v1/cases/{case_id}/consents/{kind}",
            token=token,
            json={"version": version},
        )
        return json_object(response)

    async def consent_text(self, kind: str, version: str) -> dict[str, Any]:
        """The published words of a consent (intake's, both languages), the words the patient
        reads. A published version never changes: read once per process."""
        key = (kind, version)
        if key not in self._consent_texts:
            url = f"{self.intake}/v1/consent-texts/{kind}/{version}"
            text = (await self._send("GET", url)).json()
            self._consent_texts[key] = text
        return self._consent_texts[key]

    async def set_preparation(
        self, case_id: UUID, token: str, preparation: dict[str, Any]
    ) -> dict[str, Any]:
        response = await self._send(
            "PUT", f"{self.intake}/v1/cases/{case_id}/preparation", token=token, json=preparation
        )
        return json_object(response)

    async def submit(self, case_id: UUID, token: str, idempotency_key: str) -> dict[str, Any]:
        response = await self._send(
            "POST",
            f"{self.intake}/v1/cases/{case_id}/submit",
            token=token,
            headers={"Idempotency-Key": idempotency_key},
        )
        return json_object(response)

    async def withdraw(self, case_id: UUID, token: str, reason: str | None) -> dict[str, Any]:
        response = await self._send(
            "POST",
            f"{self.intake}/v1/cases/{case_id}/withdraw",
            token=token,
            json={"reason": reason} if reason else None,
        )
        return json_object(response)

    async def answer_request(
        self,
        case_id: UUID,
        token: str,
        request_id: UUID,
        body: dict[str, Any],
        idempotency_key: str,
    ) -> dict[str, Any]:
        return await self.case_action(
            case_id, token, f"information-requests/{request_id}/answer", body, idempotency_key
        )

    async def case_action(
        self,
        case_id: UUID,
        token: str,
        action: str,
        body: dict[str, Any],
        idempotency_key: str,
    ) -> dict[str, Any]:
        """POST /v1/cases/{id}/{action} with the case's token (`center-choice`,
        `follow-up-questions`, `further-opinion`, `meetings/{id}/booking`,
        `meetings/{id}/cancellation`): the case as it is afterwards. Each takes an
        Idempotency-Key: the same key again changes nothing."""
        response = await self._send(
            "POST",
            f"{self.intake}/v1/cases/{case_id}/{action}",
            token=token,
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        return json_object(response)

    async def documents(self, case_id: UUID, token: str) -> list[dict[str, Any]]:
        response = await self._send(
            "GET", f"{self.records}/v1/cases/{case_id}/documents", token=token
        )
        return json_objects(response)

    async def upload(self, case_id: UUID, token: str, upload: Upload) -> dict[str, Any]:
        """Stream one file to records (`kind` and `translation_of` go before the file)."""
        data = {"kind": upload.kind}
        if upload.translation_of is not None:
            data["translation_of"] = str(upload.translation_of)
        response = await self._send(
            "POST",
            f"{self.records}/v1/cases/{case_id}/documents",
            token=token,
            data=data,
            files={"file": (upload.file_name, upload.file, upload.content_type)},
            timeout=httpx.Timeout(None, connect=5.0),
        )
        return json_object(response)

    # Resumable uploads: the page's script sends a large file in parts through the app, which
    # passes each part on to records with the case's token (records answers where to resume).
    # A center's opinion goes the same way under its referral, with the center's key.
    async def start_upload(
        self, case_id: UUID, token: str, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        """Open a resumable upload at records (the same key again: the same upload)."""
        return await self._start_upload(
            f"{self.records}/v1/cases/{case_id}/uploads", body, idempotency_key, token=token
        )

    async def upload_progress(self, case_id: UUID, token: str, upload_id: UUID) -> dict[str, Any]:
        """The upload's parts received and the next one to send."""
        return await self._upload_progress(
            f"{self.records}/v1/cases/{case_id}/uploads/{upload_id}", token=token
        )

    async def upload_part(
        self,
        case_id: UUID,
        token: str,
        upload_id: UUID,
        number: int,
        body: AsyncIterator[bytes],
        length: int,
    ) -> dict[str, Any]:
        """Stream one part to records as it arrives (never held whole here)."""
        url = f"{self.records}/v1/cases/{case_id}/uploads/{upload_id}/parts/{number}"
        return await self._upload_part(url, body, length, token=token)

    async def complete_upload(self, case_id: UUID, token: str, upload_id: UUID) -> dict[str, Any]:
        """Assemble the parts into the document (the same document if completed already)."""
        return await self._complete_upload(
            f"{self.records}/v1/cases/{case_id}/uploads/{upload_id}/complete", token=token
        )

    def _opinion_uploads(self, referral_id: UUID) -> str:
        return f"{self.records}/v1/referrals/{referral_id}/opinion/uploads"

    async def start_opinion_upload(
        self, center_key: str, referral_id: UUID, body: dict[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        """Open a resumable upload of the center's opinion (`file_name`, `size_bytes`)."""
        url = self._opinion_uploads(referral_id)
        return await self._start_upload(url, body, idempotency_key, center_key=center_key)

    async def opinion_upload_progress(
        self, center_key: str, referral_id: UUID, upload_id: UUID
    ) -> dict[str, Any]:
        url = f"{self._opinion_uploads(referral_id)}/{upload_id}"
        return await self._upload_progress(url, center_key=center_key)

    async def opinion_upload_part(
        self,
        center_key: str,
        referral_id: UUID,
        upload_id: UUID,
        number: int,
        body: AsyncIterator[bytes],
        length: int,
    ) -> dict[str, Any]:
        url = f"{self._opinion_uploads(referral_id)}/{upload_id}/parts/{number}"
        return await self._upload_part(url, body, length, center_key=center_key)

    async def complete_opinion_upload(
        self, center_key: str, referral_id: UUID, upload_id: UUID
    ) -> dict[str, Any]:
        """The opinion as a document of the referral: deliver it with the returned id."""
        url = f"{self._opinion_uploads(referral_id)}/{upload_id}/complete"
        return await self._complete_upload(url, center_key=center_key)

    async def _start_upload(
        self, url: str, body: dict[str, Any], idempotency_key: str, **auth: Any
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key}
        response = await self._send("POST", url, json=body, headers=headers, **auth)
        return json_object(response)

    async def _upload_progress(self, url: str, **auth: Any) -> dict[str, Any]:
        return json_object(await self._send("GET", url, **auth))

    async def _upload_part(
        self, url: str, body: AsyncIterator[bytes], length: int, **auth: Any
    ) -> dict[str, Any]:
        response = await self._send(
            "PUT",
            url,
            content=body,
            headers={"Content-Length": str(length), "Content-Type": "application/octet-stream"},
            timeout=httpx.Timeout(None, connect=5.0),
            **auth,
        )
        return json_object(response)

    async def _complete_upload(self, url: str, **auth: Any) -> dict[str, Any]:
        response = await self._send("POST", url, timeout=httpx.Timeout(None, connect=5.0), **auth)
        return json_object(response)

    async def download(
        self, case_id: UUID, token: str, document_id: UUID
    ) -> tuple[dict[str, Any], AsyncIterator[bytes], httpx.Response]:
        """A short-lived link from records, then the document's bytes through it."""
        link = (
            await self._send(
                "POST",
                f"{self.records}/v1/cases/{case_id}/documents/{document_id}/link",
                token=token,
            )
        ).json()
        request = self.client.build_request("GET", link["url"])
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(f"download: {type(exc).__name__}") from exc
        if response.status_code != 200:
            await response.aclose()
            raise PlatformUnavailable(f"download: HTTP {response.status_code}")
        return link, response.aiter_bytes(), response

    async def routing(self, case_id: UUID, token: str) -> dict[str, Any] | None:
        """Where the case went and why; None before partners has heard of it."""
        try:
            response = await self._send(
                "GET", f"{self.partners}/v1/cases/{case_id}/routing", token=token
            )
        except PlatformProblem as problem:
            if problem.status == 404:
                return None
            raise
        return json_object(response)

    # ------------------------------------------------------------ a center's key (console)
    async def center_referrals(
        self, center_key: str, status: str | None = None
    ) -> list[dict[str, Any]]:
        """The referrals offered to the key's center, newest offer first."""
        response = await self._send(
            "GET",
            f"{self.partners}/v1/partner/referrals",
            center_key=center_key,
            params={"status": status} if status else None,
        )
        return json_objects(response)

    async def center_referral(self, center_key: str, referral_id: UUID) -> dict[str, Any]:
        """One referral of the key's center (a 404 problem for any other)."""
        response = await self._send(
            "GET", f"{self.partners}/v1/partner/referrals/{referral_id}", center_key=center_key
        )
        return json_object(response)

    async def center_action(
        self,
        center_key: str,
        referral_id: UUID,
        action: str,
        body: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """POST /v1/partner/referrals/{id}/{action} (`accept`, `decline`,
        `information-requests`, `opinion`, `shipments/{id}/receipt`,
        `follow-up-questions/{id}/answer`, `meetings`, `meetings/{id}/slots`,
        `meetings/{id}/cancellation`, `meetings/{id}/outcome`); the referral as it is
        afterwards. `idempotency_key` for the actions that take one (a meeting's offer, new
        times)."""
        response = await self._send(
            "POST",
            f"{self.partners}/v1/partner/referrals/{referral_id}/{action}",
            center_key=center_key,
            json=body,
            headers={"Idempotency-Key": idempotency_key} if idempotency_key else None,
        )
        return json_object(response)

    async def referral_documents(self, center_key: str, referral_id: UUID) -> list[dict[str, Any]]:
        """The referral's documents as records shows them to the center (neutral names)."""
        response = await self._send(
            "GET", f"{self.records}/v1/referrals/{referral_id}/documents", center_key=center_key
        )
        return json_objects(response)

    async def referral_download(
        self, center_key: str, referral_id: UUID, document_id: UUID
    ) -> tuple[dict[str, Any], AsyncIterator[bytes], httpx.Response]:
        """Records' short-lived link for the center (the download is audited there), then the
        document's bytes through it."""
        link = (
            await self._send(
                "GET",
                f"{self.records}/v1/referrals/{referral_id}/documents/{document_id}",
                center_key=center_key,
            )
        ).json()
        return link, *(await self._stream(link["url"]))

    async def upload_opinion(
        self, center_key: str, referral_id: UUID, file_name: str, file: IO[bytes]
    ) -> dict[str, Any]:
        """Stream the written opinion to records (kind `opinion`, for this referral)."""
        response = await self._send(
            "POST",
            f"{self.records}/v1/referrals/{referral_id}/opinion",
            center_key=center_key,
            files={"file": (file_name, file, "application/pdf")},
            timeout=httpx.Timeout(None, connect=5.0),
        )
        return json_object(response)

    async def upload_follow_up_document(
        self,
        center_key: str,
        referral_id: UUID,
        question_id: UUID,
        file_name: str,
        file: IO[bytes],
        content_type: str,
    ) -> dict[str, Any]:
        """Stream a document answering an open follow-up question to records (stored as part of
        the center's opinion); attach it to the answer with the returned id."""
        response = await self._send(
            "POST",
            f"{self.records}/v1/referrals/{referral_id}/follow-up-questions/{question_id}/documents",
            center_key=center_key,
            files={"file": (file_name, file, content_type)},
            timeout=httpx.Timeout(None, connect=5.0),
        )
        return json_object(response)

    async def _stream(self, url: str) -> tuple[AsyncIterator[bytes], httpx.Response]:
        request = self.client.build_request("GET", url)
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise PlatformUnavailable(f"download: {type(exc).__name__}") from exc
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            if response.status_code in (403, 410):  # the link was refused or has ended
                raise _problem(response)
            raise PlatformUnavailable(f"download: HTTP {response.status_code}")
        return response.aiter_bytes(), response
