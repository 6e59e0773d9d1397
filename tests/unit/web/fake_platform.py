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

from referrals_intake.consent_texts import text_of as published_consent_text

API_KEY = "rfk_webtest_k3yV4lu3NeverInHtml0001"
CENTER = "sample-center-a"
OTHER_CENTER = "sample-center-b"
CENTER_KEY = "ccr_webtestAAAA_CenterKeyNeverInHtmlA0001"
OTHER_CENTER_KEY = "ccr_webtestBBBB_CenterKeyNeverInHtmlB0002"
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


def _now() -> datetime:
    return datetime.now(UTC)


def invalid(pointer: str, message: str) -> httpx.Response:
    return problem(
        422,
        "validation-failed",
        message,
        errors=[{"pointer": pointer, "location": "body", "code": "invalid", "message": message}],
    )


class CenterSide:
    """The partner API's center side and records' referral endpoints, for the console: a
    center's key sees only its center's referrals (another's is a 404), and the actions change
    the referral as partners would (with its problems for a wrong state or a wrong date)."""

    center_keys: dict[str, str]
    referrals: dict[UUID, dict[str, Any]]
    referral_docs: dict[UUID, list[dict[str, Any]]]

    def add_referral(
        self,
        center: str = CENTER,
        status: str = "offered",
        documents: int = 1,
        **fields: Any,
    ) -> UUID:
        referral_id, case_id = uuid4(), uuid4()
        docs = []
        for n in range(documents):
            docs.append(
                {
                    "id": str(uuid4()),
                    "case_id": str(case_id),
                    "kind": "pathology_report",
                    "media_type": "application/pdf",
                    "size_bytes": 10,
                    "sha256": "0" * 64,
                    "file_name": f"pathology-report-{n + 1}.pdf",
                    "translation_of": None,
                    "created_at": _now().isoformat(),
                }
            )
        self.referral_docs[referral_id] = docs
        self.referrals[referral_id] = {
            "center_code": center,
            "id": str(referral_id),
            "case_id": str(case_id),
            "status": status,
            "attempt": 1,
            "offered_at": _now().isoformat(),
            "answer_due_at": (_now() + timedelta(days=2)).isoformat(),
            "answered_at": None,
            "expected_opinion_at": None,
            "decline_reason": None,
            "info_message": None,
            "opinion_document_id": None,
            "outcome": None,
            "offer": {
                "referral_id": str(referral_id),
                "center_code": center,
                "clinical": {
                    "icd10": "C50.4",
                    "morphology": None,
                    "stage": {"tnm": "cT2N1M0", "group": None},
                    "age_group": "adult",
                    "reasons": ["choose_treatment"],
                    "questions": [],
                },
                "documents": [
                    {"document_id": d["id"], "kind": d["kind"], "media_type": d["media_type"]}
                    for d in docs
                ],
                "answer_due_at": (_now() + timedelta(days=2)).isoformat(),
            },
            "questions": ["Is breast-conserving surgery possible?"],
            "preparation": None,
            "information_requests": [],
            "follow_up_questions": [],
            "meetings": [],
            **fields,
        }
        return referral_id

    def _center(self, request: httpx.Request) -> str | httpx.Response:
        center = self.center_keys.get(request.headers.get("x-api-key", ""))
        if center is None:
            return problem(401, "unauthorized", "The API key is not valid here.")
        return center

    def _view(self, referral_id: UUID) -> httpx.Response:
        shown = {k: v for k, v in self.referrals[referral_id].items() if k != "center_code"}
        return httpx.Response(200, json=shown)

    def _partner(self, request: httpx.Request, path: str, body: bytes) -> httpx.Response:
        center = self._center(request)
        if isinstance(center, httpx.Response):
            return center
        if request.method == "GET" and path == "/v1/partner/referrals":
            status = request.url.params.get("status")
            return httpx.Response(
                200,
                json=[
                    {k: v for k, v in r.items() if k != "center_code"}
                    for r in self.referrals.values()
                    if r["center_code"] == center and (not status or r["status"] == status)
                ],
            )
        m = re.fullmatch(r"/v1/partner/referrals/([0-9a-f-]+)(/.*)?", path)
        if not m:
            return problem(404, "not-found", path)
        referral_id, rest = UUID(m[1]), m[2] or ""
        referral = self.referrals.get(referral_id)
        if referral is None or referral["center_code"] != center:
            return problem(404, "not-found", f"There is no referral {referral_id} for this center.")
        if request.method == "GET" and not rest:
            return self._view(referral_id)
        data = json.loads(body) if body else {}

        def state(*allowed: str) -> httpx.Response | None:
            if referral["status"] not in allowed:
                return problem(
                    409,
                    "conflict",
                    f"This referral is {referral['status']}: it is not possible to do that.",
                    referral_status=referral["status"],
                )
            return None

        if rest == "/accept":
            refused = state("offered")
            if refused:
                return refused
            when = datetime.fromisoformat(data["expected_opinion_at"])
            if when <= _now():
                return invalid(
                    "/expected_opinion_at", "The expected opinion date must be in the future."
                )
            referral.update(status="accepted", expected_opinion_at=when.isoformat())
            return self._view(referral_id)
        if rest == "/decline":
            refused = state("offered", "info_requested")
            if refused:
                return refused
            referral.update(status="declined", decline_reason=data["reason"])
            return self._view(referral_id)
        if rest == "/information-requests":
            refused = state("offered", "accepted")
            if refused:
                return refused
            due = datetime.fromisoformat(data["due_at"])
            if due < _now() + timedelta(days=1):
                return invalid(
                    "/due_at",
                    "The patient needs time to answer: the due date must be at least 1 day "
                    "from now.",
                )
            if due > _now() + timedelta(days=90):
                return invalid("/due_at", "The due date must be within 90 days from now.")
            referral["information_requests"].append(
                {
                    "id": str(uuid4()),
                    "status": "open",
                    "reason": data["reason"],
                    "items": data["items"],
                    "due_at": due.isoformat(),
                    "requested_at": _now().isoformat(),
                    "answered_at": None,
                    "answer": None,
                    "new_document_ids": [],
                    "shipments": [],
                }
            )
            referral["status"] = "info_requested"
            return self._view(referral_id)
        m2 = re.fullmatch(r"/shipments/([0-9a-f-]+)/receipt", rest)
        if m2:
            for info in referral["information_requests"]:
                for shipment in info["shipments"]:
                    if shipment["id"] == m2[1]:
                        shipment["received_at"] = shipment["received_at"] or _now().isoformat()
                        return self._view(referral_id)
            return problem(404, "not-found", "There is no such shipment on this referral.")
        m3 = re.fullmatch(r"/follow-up-questions/([0-9a-f-]+)/answer", rest)
        if m3:
            for question in referral["follow_up_questions"]:
                if question["id"] == m3[1]:
                    if question["answer"]:
                        return problem(409, "conflict", "This question was answered already.")
                    own = {d["id"] for d in self.referral_docs[referral_id]}
                    for n, document_id in enumerate(data.get("document_ids") or []):
                        if document_id not in own:
                            return invalid(f"/document_ids/{n}", "not this referral's upload")
                    question.update(
                        answer=data["answer"],
                        answered_at=_now().isoformat(),
                        document_ids=data.get("document_ids") or [],
                    )
                    return self._view(referral_id)
            return problem(404, "not-found", "There is no such question on this referral.")
        if rest == "/meetings":
            refused = state("accepted", "completed")
            if refused:
                return refused
            key = request.headers.get("idempotency-key", "")
            if key and any(m["key"] == key for m in referral["meetings"]):
                return self._view(referral_id)
            for n, slot in enumerate(data["slots"]):
                if datetime.fromisoformat(slot["starts_at"]) < _now() + timedelta(hours=2):
                    return invalid(f"/slots/{n}", "A time starts at least 2 hours from now.")
            referral["meetings"].append(
                {
                    "key": key,
                    "id": str(uuid4()),
                    "status": "offered",
                    "place": data["place"],
                    "slots": [{"slot_id": str(uuid4()), **slot} for slot in data["slots"]],
                    "booked_slot": None,
                    "note": data.get("note"),
                    "cancelled_by": None,
                }
            )
            return self._view(referral_id)
        m4 = re.fullmatch(r"/meetings/([0-9a-f-]+)/(slots|cancellation|outcome)", rest)
        if m4:
            meeting = next((x for x in referral["meetings"] if x["id"] == m4[1]), None)
            if meeting is None:
                return problem(404, "not-found", "There is no such meeting on this referral.")
            if meeting["status"] not in ("offered", "booked"):
                return problem(
                    409,
                    "meeting-closed",
                    f"The meeting is {meeting['status']}.",
                    meeting_status=meeting["status"],
                )
            if m4[2] == "slots":
                if not request.headers.get("idempotency-key"):
                    return invalid("#/header/Idempotency-Key", "this fake wants one")
                for n, slot in enumerate(data["slots"]):
                    if datetime.fromisoformat(slot["starts_at"]) < _now() + timedelta(hours=2):
                        return invalid(f"/slots/{n}", "A time starts at least 2 hours from now.")
                meeting.update(
                    status="offered",
                    booked_slot=None,
                    slots=[{"slot_id": str(uuid4()), **slot} for slot in data["slots"]],
                )
                return self._view(referral_id)
            if m4[2] == "cancellation":
                if not str(data.get("reason") or "").strip():
                    return invalid("/reason", "String should have at least 1 character")
                meeting.update(status="cancelled", cancelled_by="center")
                return self._view(referral_id)
            booked = meeting.get("booked_slot")
            if meeting["status"] != "booked" or booked is None:
                return problem(409, "meeting-not-started", "No time was booked.")
            if datetime.fromisoformat(booked["starts_at"]) > _now():
                return problem(409, "meeting-not-started", "The meeting has not started yet.")
            meeting["status"] = data["outcome"]
            return self._view(referral_id)
        if rest == "/opinion":
            refused = state("accepted")
            if refused:
                return refused
            own = [d["id"] for d in self.referral_docs[referral_id] if d["kind"] == "opinion"]
            if data["document_id"] not in own:
                return invalid("/document_id", "not an opinion uploaded for this referral")
            outcome = {
                "icd10": None,
                "new_stage": None,
                "additional_tests": [],
                "clinical_trials": False,
                "clinical_trials_detail": None,
                **(data.get("outcome") or {}),
            }
            if outcome.get("diagnosis") == "changed" and not outcome.get("icd10"):
                return invalid(
                    "/outcome", "Value error, a changed diagnosis names the new ICD-10 code (icd10)"
                )
            referral.update(
                status="completed", opinion_document_id=data["document_id"], outcome=outcome
            )
            return self._view(referral_id)
        return problem(404, "not-found", path)

    def _center_records(self, request: httpx.Request, path: str, body: bytes) -> httpx.Response:
        center = self._center(request)
        if isinstance(center, httpx.Response):
            return center
        m = re.fullmatch(
            r"/v1/referrals/([0-9a-f-]+)/(documents|opinion|follow-up-questions)"
            r"(?:/([0-9a-f-]+))?(?:/documents)?",
            path,
        )
        if not m:
            return problem(404, "not-found", path)
        referral_id = UUID(m[1])
        referral = self.referrals.get(referral_id)
        if referral is None or referral["center_code"] != center:
            return problem(404, "not-found", f"There is no referral {referral_id} for this center.")
        docs = self.referral_docs[referral_id]
        if m[2] == "documents" and not m[3] and request.method == "GET":
            return httpx.Response(200, json=docs)
        if m[2] == "documents" and m[3] and request.method == "GET":
            doc = next((d for d in docs if d["id"] == m[3]), None)
            if doc is None:
                return problem(404, "not-found", "There is no such document in this referral.")
            return httpx.Response(
                200,
                json={
                    "url": f"{RECORDS}/v1/downloads/tok-{doc['id']}",
                    "expires_at": (_now() + timedelta(minutes=5)).isoformat(),
                    "media_type": doc["media_type"],
                    "file_name": doc["file_name"],
                },
            )
        if m[2] == "follow-up-questions" and request.method == "POST":
            open_ = [q["id"] for q in referral["follow_up_questions"] if not q["answer"]]
            if m[3] not in open_:
                return problem(404, "not-found", "There is no unanswered follow-up question.")
            file_name, content = parse_multipart(request.headers["content-type"], body)["file"]
            if not content.startswith(b"%PDF-"):
                return problem(415, "upload-unsupported-type", "not a type records takes")
            doc = {
                "id": str(uuid4()),
                "case_id": referral["case_id"],
                "kind": "opinion",
                "media_type": "application/pdf",
                "size_bytes": len(content),
                "sha256": "2" * 64,
                "file_name": file_name,
                "translation_of": None,
                "created_at": _now().isoformat(),
            }
            docs.append(doc)
            return httpx.Response(201, json=doc)
        if m[2] == "opinion" and request.method == "POST":
            if referral["status"] != "accepted":
                return problem(409, "referral-not-accepted", "The referral is not accepted.")
            fields = parse_multipart(request.headers["content-type"], body)
            content = fields["file"][1]
            doc = {
                "id": str(uuid4()),
                "case_id": referral["case_id"],
                "kind": "opinion",
                "media_type": "application/pdf",
                "size_bytes": len(content),
                "sha256": "1" * 64,
                "file_name": "opinion-1.pdf",
                "translation_of": None,
                "created_at": _now().isoformat(),
            }
            docs.append(doc)
            return httpx.Response(201, json=doc)
        return problem(404, "not-found", path)


@dataclass
class FakePlatform(CenterSide):
    cases: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, UUID] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], UUID] = field(default_factory=dict)
    stored: dict[UUID, list[dict[str, Any]]] = field(default_factory=dict)
    timelines: dict[UUID, list[dict[str, Any]]] = field(default_factory=dict)
    routing: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    center_keys: dict[str, str] = field(
        default_factory=lambda: {CENTER_KEY: CENTER, OTHER_CENTER_KEY: OTHER_CENTER}
    )
    """A center's partner API key -> its center (partners' and records' view of the key)."""
    referrals: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    referral_docs: dict[UUID, list[dict[str, Any]]] = field(default_factory=dict)
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

    def _events(self, case_id: UUID, last_event_id: str | None) -> httpx.Response:
        """Intake's stream of the case's timeline, as far as it goes now, then its end (as at
        the token's expiry): each entry's id is its place in the timeline, from 1."""
        after = int(last_event_id or 0)
        lines = []
        for number, entry in enumerate(self.timelines[case_id], start=1):
            if number > after:
                data = json.dumps({"id": number, **entry})
                lines.append(f"id: {number}\nevent: timeline_entry\ndata: {data}\n\n")
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content="".join(lines).encode()
        )

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
        if url.startswith(RECORDS) and path.startswith("/v1/referrals/"):
            return self._center_records(request, path, body)
        if url.startswith(RECORDS):
            return self._records(request, path, body)
        if url.startswith(PARTNERS) and path.startswith("/v1/partner/"):
            return self._partner(request, path, body)
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
        m = re.fullmatch(r"/v1/consent-texts/([a-z_]+)/([0-9-]+)", path)
        if request.method == "GET" and m:
            # Intake's published texts themselves (public: no key, no token).
            text = published_consent_text(m[1], m[2])
            if text is None:
                return problem(404, "not-found", path)
            return httpx.Response(200, json=text.model_dump(mode="json"))
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
                    patient_chooses_center=data.get("patient_chooses_center", False),
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
        if request.method == "GET" and rest == "/events":
            return self._events(case_id, request.headers.get("last-event-id"))
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
        after = rest in ("/center-choice", "/follow-up-questions", "/further-opinion")
        meeting = re.fullmatch(r"/meetings/[0-9a-f-]+/(booking|cancellation)", rest)
        if request.method == "POST" and (after or meeting):
            return self._after_opinion(request, case_id, rest, body)
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

    def _after_opinion(
        self, request: httpx.Request, case_id: UUID, rest: str, body: bytes
    ) -> httpx.Response:
        """The patient's actions after routing: choosing a center, follow-up questions, a
        further opinion, the meeting's booking and cancellation, each with intake's problems
        and its Idempotency-Key (the same key again: the case as it is, nothing done twice)."""
        case = self.cases[case_id]
        data = json.loads(body) if body else {}
        key = request.headers.get("idempotency-key", "")
        if not key:
            return invalid("#/header/Idempotency-Key", "this fake wants one")
        if (rest, key) in self.idempotency:
            return httpx.Response(200, json=case, headers={"Idempotent-Replayed": "true"})
        answer = self._do(case, rest, data)
        if answer.status_code < 300:
            self.idempotency[(rest, key)] = case_id
        return answer

    def _do(self, case: dict[str, Any], rest: str, data: dict[str, Any]) -> httpx.Response:
        if rest == "/center-choice":
            proposal = case.get("center_proposal") or {}
            if case["status"] != "choosing_center" or proposal.get("chosen"):
                return problem(409, "choice-closed", "The case is not waiting for a choice.")
            codes = [p["center_code"] for p in proposal.get("proposals", [])]
            if data.get("center_code") not in codes:
                return problem(
                    422,
                    "center-not-proposed",
                    "not proposed",
                    errors=[{"pointer": "/center_code", "message": "not proposed"}],
                )
            case["center_proposal"] = {**proposal, "chosen": data["center_code"]}
            return httpx.Response(200, json=case)
        if rest == "/follow-up-questions":
            question = str(data.get("question") or "").strip()
            if not question or len(question) > 2000:
                return invalid("/question", "String should have at most 2000 characters")
            if case["status"] != "opinion_delivered":
                return problem(409, "follow-up-refused", "no opinion", reason="no-opinion")
            if case.get("follow_up_questions_left", 0) < 1:
                return problem(409, "follow-up-refused", "all asked", reason="no-questions-left")
            case.setdefault("follow_up_questions", []).append(
                {
                    "id": str(uuid4()),
                    "center_code": CENTER,
                    "question": question,
                    "asked_at": _now().isoformat(),
                    "answer": None,
                    "answered_at": None,
                }
            )
            case["follow_up_questions_left"] -= 1
            return httpx.Response(201, json=case)
        if rest == "/further-opinion":
            if data.get("reason") not in ("conflicting_opinions", "another_view", "other"):
                return invalid("/reason", "Input should be 'conflicting_opinions', …")
            if not isinstance(data.get("share_earlier_opinions"), bool):
                return invalid("/share_earlier_opinions", "Field required")
            if case["status"] != "opinion_delivered":
                return problem(409, "further-opinion-refused", "no", reason="no-opinion")
            if case.get("further_opinions_left", 0) < 1:
                return problem(409, "further-opinion-refused", "no", reason="no-opinions-left")
            case.update(
                status="ready",
                opinion_round=case.get("opinion_round", 1) + 1,
                further_opinions_left=0,
                follow_up_questions_left=0,
                further_opinion_asked=data,
            )
            return httpx.Response(200, json=case)
        m = re.fullmatch(r"/meetings/([0-9a-f-]+)/(booking|cancellation)", rest)
        assert m
        meeting = next((x for x in case.get("meetings") or [] if x["id"] == m[1]), None)
        if meeting is None:
            return problem(404, "not-found", f"There is no meeting {m[1]} on this case.")
        if meeting["status"] not in ("offered", "booking", "booked"):
            return problem(409, "meeting-closed", "closed", meeting_status=meeting["status"])
        if m[2] == "booking":
            slot = next((x for x in meeting["slots"] if x["slot_id"] == data.get("slot_id")), None)
            if slot is None:
                return problem(422, "slot-not-offered", "That time is not offered.")
            meeting.update(
                status="booking",
                chosen_slot_id=slot["slot_id"],
                patient_time_zone=data.get("time_zone", "Europe/Kyiv"),
            )
            return httpx.Response(200, json=case)
        if data.get("reason") not in (
            "cannot_attend",
            "none_of_the_times",
            "no_longer_needed",
            "other",
        ):
            return invalid("/reason", "Input should be 'cannot_attend', …")
        meeting.update(status="cancelled", cancelled_by="patient", cancel_reason=data["reason"])
        return httpx.Response(200, json=case)

    def confirm_booking(self, case_id: UUID, meeting_id: str) -> None:
        """The center's calendar confirms the chosen time (partners' event, as intake hears it)."""
        meeting = next(x for x in self.cases[case_id]["meetings"] if x["id"] == meeting_id)
        slot = next(x for x in meeting["slots"] if x["slot_id"] == meeting["chosen_slot_id"])
        meeting.update(status="booked", booked_slot=slot, chosen_slot_id=None)

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
