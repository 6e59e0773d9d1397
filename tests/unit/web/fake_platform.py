"""A fake of the platform's three public APIs (intake, records, partners) behind an httpx
MockTransport: just enough behaviour to drive the web application's pages, with every request
kept for the tests to read."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx

API_KEY = "rfk_webtest_k3yV4lu3NeverInHtml0001"
INTAKE = "http://intake.test"
RECORDS = "http://records.test"
PARTNERS = "http://partners.test"


def problem(status: int, slug: str, detail: str = "", **extra: Any) -> httpx.Response:
    body = {
        "type": f"https://referrals.example/problems/{slug}",
        "title": slug.replace("-", " "),
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"Content-Type": "application/problem+json"}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra.pop("retry_after"))
        body.pop("retry_after", None)
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class Seen:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakePlatform:
    cases: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, UUID] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], UUID] = field(default_factory=dict)
    stored: dict[UUID, list[dict[str, Any]]] = field(default_factory=dict)
    timelines: dict[UUID, list[dict[str, Any]]] = field(default_factory=dict)
    routing: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    fail_next: dict[str, httpx.Response] = field(default_factory=dict)
    """`"POST /v1/cases"` (a method and a path pattern) -> the answer to give once."""
    issued: int = 0

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # ----------------------------------------------------------------- helpers
    def token_for(self, case_id: UUID) -> str:
        self.issued += 1
        token = f"eyJ.case-token-{self.issued}-SECRETTOKEN.sig"
        self.tokens[token] = case_id
        return token

    def requests_to(self, method: str, pattern: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and re.search(pattern, s.url)]

    def add_case(self, status: str = "draft", **fields: Any) -> UUID:
        case_id = uuid4()
        now = datetime.now(UTC).isoformat()
        self.cases[case_id] = {
            "id": str(case_id),
            "diagnosis": {"icd10": "C50.9", "text": None, "histology": None, "morphology": None},
            "stage": None,
            "reasons": ["choose_treatment"],
            "questions": [],
            "preparation": None,
            "destination": {"preference": "countries", "countries": ["DE"]},
            "locale": "uk",
            "date_of_birth": "1979-04-12",
            "contact": {"email": "olena@example.org", "phone": None, "preferred_channel": "email"},
            "insurance": None,
            "status": status,
            "created_at": now,
            "updated_at": now,
            "submitted_at": None,
            "consents": [],
            "documents": [],
            "next_step": None,
            "information_requests": [],
            "still_missing": [],
            **fields,
        }
        self.timelines[case_id] = []
        self.stored[case_id] = []
        return case_id

    def add_document(
        self,
        case_id: UUID,
        kind: str = "pathology_report",
        check: str = "pending",
        language: str | None = None,
        detail: str | None = None,
        file_name: str = "report.pdf",
        translation_of: str | None = None,
    ) -> str:
        doc_id = str(uuid4())
        self.cases[case_id]["documents"].append(
            {
                "document_id": doc_id,
                "kind": kind,
                "check": check,
                "language": language,
                "detail": detail,
                "translation_of": translation_of,
            }
        )
        self.stored[case_id].append(
            {
                "id": doc_id,
                "case_id": str(case_id),
                "kind": kind,
                "media_type": "application/pdf",
                "size_bytes": 10,
                "sha256": "0" * 64,
                "file_name": file_name,
                "translation_of": translation_of,
                "created_at": datetime.now(UTC).isoformat(),
            }
        )
        return doc_id

    def _case_of(self, request: httpx.Request, case_id: UUID) -> httpx.Response | None:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or token not in self.tokens:
            return problem(401, "unauthorized", "no valid case token")
        if self.tokens[token] != case_id or case_id not in self.cases:
            return problem(404, "not-found", f"There is no case {case_id}.")
        return None

    # ----------------------------------------------------------------- routing
    def handle(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.seen.append(Seen(request.method, str(request.url), dict(request.headers), body))
        for key, answer in list(self.fail_next.items()):
            method, _, pattern = key.partition(" ")
            if method == request.method and re.search(pattern, request.url.path):
                del self.fail_next[key]
                return answer
        url, path = str(request.url), request.url.path
        if url.startswith(INTAKE):
            return self._intake(request, path, body)
        if url.startswith(RECORDS):
            return self._records(request, path, body)
        if url.startswith(PARTNERS):
            m = re.fullmatch(r"/v1/cases/([0-9a-f-]+)/routing", path)
            if m:
                case_id = UUID(m[1])
                refused = self._case_of(request, case_id)
                if refused:
                    return refused
                if case_id not in self.routing:
                    return problem(404, "not-found", "not referred yet")
                return httpx.Response(200, json=self.routing[case_id])
        return problem(404, "not-found", path)

    def _intake(self, request: httpx.Request, path: str, body: bytes) -> httpx.Response:
        if request.method == "POST" and path == "/v1/cases":
            if request.headers.get("x-api-key") != API_KEY:
                return problem(401, "unauthorized", "bad key")
            key = request.headers.get("idempotency-key", "")
            data = json.loads(body)
            if key and ("create", key) in self.idempotency:
                case_id = self.idempotency[("create", key)]
                status = 200
            else:
                case_id = self.add_case(
                    diagnosis={
                        "icd10": data["diagnosis"]["icd10"],
                        "text": data["diagnosis"].get("text"),
                        "histology": None,
                        "morphology": None,
                    },
                    stage=data.get("stage"),
                    reasons=data["reasons"],
                    questions=data.get("questions", []),
                    destination={
                        "preference": data["destination"]["preference"],
                        "countries": data["destination"].get("countries", []),
                    },
                    locale=data.get("locale", "uk"),
                    date_of_birth=data["date_of_birth"],
                    contact={
                        "email": data["contact"].get("email"),
                        "phone": data["contact"].get("phone"),
                        "preferred_channel": data["contact"].get("preferred_channel", "email"),
                    },
                )
                if key:
                    self.idempotency[("create", key)] = case_id
                status = 201
            expires = (datetime.now(UTC) + timedelta(minutes=15)).isoformat()
            return httpx.Response(
                status,
                json={
                    "case": self.cases[case_id],
                    "access_token": self.token_for(case_id),
                    "token_type": "Bearer",
                    "expires_at": expires,
                },
            )
        m = re.fullmatch(r"/v1/cases/([0-9a-f-]+)(/.*)?", path)
        if not m:
            return problem(404, "not-found", path)
        case_id, rest = UUID(m[1]), m[2] or ""
        if rest == "/access-token" and request.method == "POST":
            if request.headers.get("x-api-key") != API_KEY:
                return problem(401, "unauthorized", "bad key")
            if case_id not in self.cases:
                return problem(404, "not-found", "no such case")
            expires = (datetime.now(UTC) + timedelta(minutes=15)).isoformat()
            return httpx.Response(
                200,
                json={
                    "access_token": self.token_for(case_id),
                    "token_type": "Bearer",
                    "expires_at": expires,
                },
            )
        refused = self._case_of(request, case_id)
        if refused:
            return refused
        case = self.cases[case_id]
        if request.method == "GET" and rest == "":
            return httpx.Response(200, json=case)
        if request.method == "GET" and rest == "/timeline":
            return httpx.Response(200, json=self.timelines[case_id])
        if request.method == "PATCH" and rest == "":
            data = json.loads(body)
            for key_, value in data.items():
                case[key_] = value
            return httpx.Response(200, json=case)
        m2 = re.fullmatch(r"/consents/(processing|cross_border)", rest)
        if m2 and request.method == "PUT":
            case["consents"] = [c for c in case["consents"] if c["kind"] != m2[1]] + [
                {
                    "kind": m2[1],
                    "version": json.loads(body)["version"],
                    "granted_at": datetime.now(UTC).isoformat(),
                }
            ]
            return httpx.Response(200, json=case)
        if rest == "/preparation" and request.method == "PUT":
            case["preparation"] = json.loads(body)
            return httpx.Response(200, json=case)
        if rest == "/submit" and request.method == "POST":
            key = request.headers.get("idempotency-key", "")
            if key and ("submit", key) in self.idempotency:
                return httpx.Response(200, json=case, headers={"Idempotent-Replayed": "true"})
            if case["status"] != "draft":
                return problem(409, "conflict", "submitted already")
            missing = []
            if not any(
                d["kind"] in ("pathology_report", "discharge_summary") for d in case["documents"]
            ):
                missing.append(
                    "a document that shows the diagnosis: a pathology or biopsy report, "
                    "or a discharge summary (Form 100)"
                )
            kinds = {c["kind"] for c in case["consents"]}
            if "processing" not in kinds:
                missing.append("consent to the processing of health data")
            if missing:
                return problem(
                    422,
                    "submission-incomplete",
                    "The case cannot be submitted yet.",
                    missing=missing,
                )
            case["status"] = "submitted"
            self.timelines[case_id].append(
                {
                    "at": datetime.now(UTC).isoformat(),
                    "from_status": "draft",
                    "to_status": "submitted",
                    "reason_code": "patient_submitted",
                    "reason": "The case was submitted.",
                    "next_step": "Nothing for now: your documents are being checked.",
                }
            )
            if key:
                self.idempotency[("submit", key)] = case_id
            return httpx.Response(200, json=case)
        if rest == "/withdraw" and request.method == "POST":
            case["status"] = "withdrawn"
            return httpx.Response(200, json=case)
        m3 = re.fullmatch(r"/information-requests/([0-9a-f-]+)/answer", rest)
        if m3 and request.method == "POST":
            for r in case["information_requests"]:
                if r["id"] == m3[1]:
                    r["status"] = "answered"
                    r["answer"] = json.loads(body).get("answer")
                    case["status"] = "accepted"
                    return httpx.Response(200, json=case)
            return problem(404, "not-found", "no such request")
        return problem(404, "not-found", path)

    def _records(self, request: httpx.Request, path: str, body: bytes) -> httpx.Response:
        m = re.fullmatch(r"/v1/cases/([0-9a-f-]+)/documents(/.*)?", path)
        if m:
            case_id = UUID(m[1])
            refused = self._case_of(request, case_id)
            if refused:
                return refused
            if request.method == "GET" and not m[2]:
                return httpx.Response(200, json=self.stored[case_id])
            if request.method == "POST" and not m[2]:
                fields = parse_multipart(request.headers["content-type"], body)
                doc_id = self.add_document(
                    case_id,
                    kind=fields["kind"][1].decode(),
                    file_name=fields["file"][0] or "",
                    translation_of=fields["translation_of"][1].decode()
                    if "translation_of" in fields
                    else None,
                )
                doc = next(d for d in self.stored[case_id] if d["id"] == doc_id)
                return httpx.Response(201, json=doc)
            m2 = re.fullmatch(r"/([0-9a-f-]+)/link", m[2] or "")
            if m2 and request.method == "POST":
                doc = next(d for d in self.stored[case_id] if d["id"] == m2[1])
                return httpx.Response(
                    200,
                    json={
                        "url": f"{RECORDS}/v1/downloads/tok-{m2[1]}",
                        "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat(),
                        "media_type": doc["media_type"],
                        "file_name": doc["file_name"],
                    },
                )
        if path.startswith("/v1/downloads/"):
            return httpx.Response(
                200, content=b"%PDF-1.7 fake", headers={"Content-Type": "application/pdf"}
            )
        return problem(404, "not-found", path)


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (file name, bytes), in the order sent (checked by the tests)."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    parts: dict[str, tuple[str | None, bytes]] = {}
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, content = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        disposition = head.decode(errors="replace")
        name = re.search(r'name="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        assert name is not None
        parts[name[1]] = (filename[1] if filename else None, content)
    return parts
