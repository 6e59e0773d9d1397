"""The whole platform in one process, for the security tests: five services on the test stack.

`running_world()` starts intake, records, translation, partners and notifications exactly as their
processes would run (each service's own migrated database, its consumer on the real Kafka, its
outbox relay; notifications' sender to an SMTP server on loopback; translation's reading workers
on the real MinIO bucket records writes to) and the three HTTP APIs in-process behind httpx's
ASGI transport. Nothing is published by hand: a case is opened through intake's API, its documents
are uploaded through records' API, translation reads them from MinIO, partners routes the case
and offers it on a center's own inbox topic, notifications e-mails the patient.

Every patient gets personal data of their own (a unique family name, e-mail, phone, date of
birth, street, insurance number, all random), so a test can look for exactly that data where it
must not be: in another caller's HTTP answer, or in any Kafka record.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import secrets
import string
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import yaml
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fpdf import FPDF
from minio import Minio
from sqlalchemy import select, text

from devstack.process import free_port
from devstack.pytest_plugin import service_users
from referrals_common.auth.case_tokens import (
    JWT_TYPE,
    CaseTokenIssuer,
    generate_private_key_pem,
)
from referrals_common.contracts import topics
from referrals_common.crypto import FieldCipher, SealedBox
from referrals_common.messaging.kafka import ensure_topics
from referrals_common.migrations import upgrade_async
from referrals_common.settings import KafkaSettings, PostgresSettings, RateLimitSettings
from referrals_intake import consumers as intake_consumers
from referrals_intake.clients import register_client
from referrals_intake.config import IntakeSettings, TokenSettings
from referrals_intake.main import MIGRATIONS as INTAKE_MIGRATIONS
from referrals_intake.main import build_runtime as build_intake
from referrals_intake.main import create_app as create_intake_app
from referrals_notifications import consumers as notifications_consumers
from referrals_notifications.bootstrap import build_runtime as build_notifications
from referrals_notifications.bootstrap import build_sender
from referrals_notifications.channels.email import SmtpSettings, SmtpTls
from referrals_notifications.config import NotificationsSettings
from referrals_notifications.main import MIGRATIONS as NOTIFICATIONS_MIGRATIONS
from referrals_notifications.main import run_sender_loop
from referrals_partners import consumers as partners_consumers
from referrals_partners.centers import ensure_inbox_topics, issue_key, load_seed
from referrals_partners.config import PartnersSettings
from referrals_partners.main import MIGRATIONS as PARTNERS_MIGRATIONS
from referrals_partners.main import build_runtime as build_partners
from referrals_partners.main import create_app as create_partners_app
from referrals_partners.models import CaseDocument, Referral
from referrals_records import consumers as records_consumers
from referrals_records.config import RecordsSettings
from referrals_records.main import MIGRATIONS as RECORDS_MIGRATIONS
from referrals_records.main import build_runtime as build_records
from referrals_records.main import create_app as create_records_app
from referrals_records.models import CenterCredential, CenterReferral
from referrals_translation import consumers as translation_consumers
from referrals_translation.bootstrap import build_runtime as build_translation
from referrals_translation.config import TranslationSettings
from referrals_translation.main import MIGRATIONS as TRANSLATION_MIGRATIONS
from tests.public_dns import with_example_dns
from tests.running import consuming, relaying

T = TypeVar("T")

CONSENT_VERSION = "2026-01"
# Notifications' key pair: intake seals the contact to the public half, only the private opens it.
NOTIFICATIONS_PRIVATE, NOTIFICATIONS_PUBLIC = SealedBox.generate_keypair_base64()
PARTNERS_POLICY_PRIVATE, PARTNERS_POLICY_PUBLIC = SealedBox.generate_keypair_base64()
INSURER = "uniqa-ukraine"
"""Every case of the world is paid by this insurer, which Berlin and Munich accept."""
PIPELINE_TIMEOUT = 120.0
# The suite sends hundreds of refused credentials and fuzzed requests from one address (httpx's
# ASGI transport says 127.0.0.1): limits far above that, so the edge runs on every request here
# but never refuses; tests/security/test_edge.py builds apps of its own with tight limits.
SUITE_RATE_LIMITS = RateLimitSettings(
    per_client="10000/minute",
    per_ip="10000/minute",
    failed_authentications_per_ip="10000/minute",
    failed_authentications_per_credential="10000/minute",
)


async def wait_for(
    predicate: Callable[[], Awaitable[T | None]], what: str, timeout: float = PIPELINE_TIMEOUT
) -> T:
    """Poll `predicate` until it returns something truthy; fail naming `what` otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------------------ patients


def _syllables(count: int) -> str:
    consonants, vowels = "bdhklmnprstvz", "aeiou"
    return "".join(random.choice(consonants) + random.choice(vowels) for _ in range(count))


@dataclass(frozen=True)
class Patient:
    """Personal data a front end puts into a case; all of it random, so all of it findable."""

    given_name: str
    family_name: str
    email: str
    phone_e164: str
    date_of_birth: date
    street: str
    city: str
    insurance_provider: str
    policy_number: str
    marker: str
    """A unique word in the patient's own question and diagnosis text (clinical, not contact)."""

    @classmethod
    def random(cls) -> Patient:
        family = (_syllables(3) + "enko").capitalize()
        given = random.choice(["Olena", "Iryna", "Mykola", "Oksana", "Taras", "Halyna"])
        subscriber = "".join(random.choice(string.digits) for _ in range(7))
        return cls(
            given_name=given,
            family_name=family,
            email=f"{given.lower()}.{family.lower()}.{secrets.token_hex(2)}@example.org",
            phone_e164=f"+38050{subscriber}",
            date_of_birth=date(random.randint(1950, 1990), random.randint(1, 12), 13),
            street=(_syllables(3) + "ivska").capitalize(),
            city="Poltava",
            insurance_provider="Uniqa Ukraine",
            policy_number=f"UA-HI-{secrets.token_hex(5).upper()}",
            marker=f"zq{secrets.token_hex(5)}",
        )

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def address(self) -> str:
        return f"vul. {self.street} 14, apt. 7, {self.city} 36000"

    def contact_needles(self) -> list[str]:
        """Every spelling of this patient's contact and identity data that must never travel
        outside intake and notifications (matched case-insensitively)."""
        dob = self.date_of_birth
        national = "0" + self.phone_e164[4:]  # +380501234567 -> 0501234567
        return [
            self.email,
            self.email.split("@")[0],
            self.full_name,
            self.family_name,
            self.phone_e164,
            self.phone_e164[1:],
            national,
            dob.isoformat(),
            dob.strftime("%d.%m.%Y"),
            dob.strftime("%Y%m%d"),
            self.street,
            self.policy_number,
        ]

    def case_body(self, *, countries: tuple[str, ...] = ("DE",)) -> dict[str, Any]:
        return {
            "diagnosis": {
                "icd10": "C50.9",
                "text": f"Carcinoma of the left breast ({self.marker})",
                "histology": "Invasive ductal carcinoma, G2",
            },
            "stage": {"tnm": "cT2N1M0", "group": "IIB"},
            "reasons": ["confirm_diagnosis_or_stage", "choose_treatment"],
            "questions": [f"Is breast-conserving surgery possible? ({self.marker})"],
            "destination": {"preference": "countries", "countries": list(countries)},
            "locale": "en",
            "date_of_birth": self.date_of_birth.isoformat(),
            # Written as a patient types it; intake keeps it as E.164.
            "contact": {
                "email": self.email,
                "phone": f"+380 50 {self.phone_e164[6:9]} {self.phone_e164[9:11]} "
                f"{self.phone_e164[11:]}",
                "preferred_channel": "email",
            },
            "insurance": {
                "provider": self.insurance_provider,
                "policy_number": self.policy_number,
            },
            # Insured: the accepting center reads the policy through the partner API only.
            "payer": {"kind": "insurer", "insurer": INSURER},
        }

    def report_pdf(self) -> bytes:
        """An English pathology report that names the patient (as real reports do), unique bytes."""
        pdf = FPDF()
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        lines = [
            "PATHOLOGY REPORT",
            f"Patient: {self.full_name}, born {self.date_of_birth:%d.%m.%Y}",
            f"Address: {self.address}",
            f"Insurance: {self.insurance_provider}, policy {self.policy_number}",
            "Specimen: core needle biopsy of the left breast, upper outer quadrant.",
            "Macroscopic description: three cores of white-tan tissue, the longest 1.8 cm.",
            "Microscopic description: the cores show an invasive carcinoma of no special "
            "type, forming tubules in less than ten percent of the tumour, with moderate "
            "nuclear pleomorphism and a low mitotic count. No lymphovascular invasion is "
            "seen in the material examined. Ductal carcinoma in situ of intermediate grade "
            "accompanies the invasive tumour.",
            "Immunohistochemistry: estrogen receptor positive in ninety percent of tumour "
            "cells, progesterone receptor positive in forty percent, HER2 negative (score 1+), "
            "Ki-67 about twenty percent.",
            "Conclusion: invasive ductal carcinoma of the left breast, grade 2, hormone "
            "receptor positive, HER2 negative. Please correlate with the imaging findings.",
            f"Reference {secrets.token_hex(8)}",
        ]
        for line in lines:
            pdf.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
        return bytes(pdf.output())


# ------------------------------------------------------------------------------ handles


@dataclass
class Document:
    id: str
    file_name: str
    sha256: str


@dataclass
class CaseHandle:
    """A case opened through intake's API, what it holds, and how far it got."""

    case_id: str
    token: str
    front_end_key: str
    patient: Patient
    documents: list[Document] = field(default_factory=list)
    referral_id: str | None = None
    center: str | None = None

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def secrets(self) -> list[str]:
        """What nobody but this case's rightful callers may be shown."""
        found = [
            self.case_id,
            self.patient.marker,
            *self.patient.contact_needles(),
            *(d.id for d in self.documents),
            *(d.file_name for d in self.documents),
            *(d.sha256 for d in self.documents),
        ]
        if self.referral_id:
            found.append(self.referral_id)
        return found


@dataclass(frozen=True)
class Keys:
    """Every credential the tests present, valid or not (a key is shown once, kept here)."""

    front_end: str
    other_front_end: str
    revoked_front_end: str
    center: str
    other_center: str
    revoked_center: str
    ops: str
    revoked_ops: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_json(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def forge_api_key(genuine: str) -> str:
    """The genuine key's prefix and key id with a secret of the right shape that is not its own."""
    prefix, key_id, _ = genuine.split("_")
    alphabet = string.ascii_letters + string.digits
    return f"{prefix}_{key_id}_{''.join(secrets.choice(alphabet) for _ in range(43))}"


# -------------------------------------------------------------------------------- world


@dataclass
class World:
    bootstrap: str
    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient]
    runtimes: dict[str, Any]
    signing_key_pem: bytes
    kid: str
    centers: dict[str, str]
    """Role → center code: `berlin` (gets every case), `munich` (never the main case), `spare`
    (France: never eligible for these cases; the registry operations are tried on it)."""
    seed: dict[str, Any]
    """Role → that center's profile, as written in the registry seed."""
    keys: Keys = field(init=False)
    mailbox: list[bytes] = field(default_factory=list)
    cases: list[CaseHandle] = field(default_factory=list)
    main: CaseHandle = field(init=False)
    other_patient: CaseHandle = field(init=False)
    routed_pool: list[CaseHandle] = field(default_factory=list)

    # ----------------------------------------------------------------- clients and keys
    @property
    def intake(self) -> httpx.AsyncClient:
        return self.clients["intake"]

    @property
    def records(self) -> httpx.AsyncClient:
        return self.clients["records"]

    @property
    def partners(self) -> httpx.AsyncClient:
        return self.clients["partners"]

    async def _intake_client_key(self, name: str) -> str:
        rt = self.runtimes["intake"]
        async with rt.db.unit_of_work() as uow:
            key = await register_client(uow, name, rt.pepper)
            await uow.commit()
        return key

    async def _center_key(self, code: str) -> str:
        """A key issued by partners, once records has learnt it from partners' event (one key,
        both services; records registers nothing itself)."""
        partners = self.runtimes["partners"]
        async with partners.db.unit_of_work() as uow:
            key = await issue_key(uow, partners.pepper, role="center", name=code, center_code=code)
            await uow.commit()
        await self.records_knows_key(key, revoked=False)
        return key

    async def records_knows_key(self, key: str, *, revoked: bool) -> None:
        """Wait until records' read model has the key (revoked or not), from partners' events."""
        records = self.runtimes["records"]
        key_id = key.split("_")[1]

        async def known() -> bool:
            async with records.db.unit_of_work() as uow:
                row = await uow.session.get(CenterCredential, key_id, populate_existing=True)
            return row is not None and (row.revoked_at is not None) == revoked

        await wait_for(known, f"records learns key {key_id} {'revoked' if revoked else 'issued'}")

    async def center_key(self, role: str = "spare") -> str:
        return await self._center_key(self.centers[role])

    async def ops_key(self) -> str:
        partners = self.runtimes["partners"]
        async with partners.db.unit_of_work() as uow:
            key = await issue_key(uow, partners.pepper, role="ops", name="security tests")
            await uow.commit()
        return key

    async def _make_keys(self) -> None:
        front_end = await self._intake_client_key("Kyiv partner clinic")
        other_front_end = await self._intake_client_key("Lviv partner clinic")
        revoked_front_end = await self._intake_client_key("Former partner clinic")
        intake = self.runtimes["intake"]
        async with intake.db.unit_of_work() as uow:  # intake has no revocation endpoint
            await uow.session.execute(
                text("update api_clients set revoked_at = now() where key_id = :k"),
                {"k": revoked_front_end.split("_")[1]},
            )
            await uow.commit()
        ops = await self.ops_key()
        revoked_ops = await self.ops_key()
        revoked_center = await self._center_key(self.centers["berlin"])
        # Revoked the way an operator does it: partners' API, nothing else (records learns it).
        for key in (revoked_center, revoked_ops):
            r = await self.partners.delete(
                f"/v1/ops/keys/{key.split('_')[1]}", headers={"X-Api-Key": ops}
            )
            assert r.status_code == 204, r.text
        await self.records_knows_key(revoked_center, revoked=True)
        self.keys = Keys(
            front_end=front_end,
            other_front_end=other_front_end,
            revoked_front_end=revoked_front_end,
            center=await self._center_key(self.centers["berlin"]),
            other_center=await self._center_key(self.centers["munich"]),
            revoked_center=revoked_center,
            ops=ops,
            revoked_ops=revoked_ops,
        )

    # ------------------------------------------------------------------------- tokens
    def expired_token(self, case: CaseHandle) -> str:
        """Signed with intake's own key, for the right case, but two hours old."""
        past = datetime.now(UTC) - timedelta(hours=2)
        issuer = CaseTokenIssuer(self.signing_key_pem, clock=lambda: past)
        return issuer.issue(uuid.UUID(case.case_id), case.front_end_key.split("_")[1]).token

    def _claims(self, case: CaseHandle) -> dict[str, Any]:
        now = int(datetime.now(UTC).timestamp())
        return {
            "iss": "referrals-intake",
            "aud": "referrals",
            "sub": case.case_id,
            "cid": case.front_end_key.split("_")[1],
            "scope": "case:read case:write",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
        }

    def forged_token_foreign_key(self, case: CaseHandle) -> str:
        """Perfect claims and intake's `kid`, signed with an attacker's own Ed25519 key."""
        import jwt

        return jwt.encode(
            self._claims(case),
            Ed25519PrivateKey.generate(),
            algorithm="EdDSA",
            headers={"kid": self.kid, "typ": JWT_TYPE},
        )

    def forged_token_alg_none(self, case: CaseHandle) -> str:
        header = {"alg": "none", "typ": JWT_TYPE, "kid": self.kid}
        return f"{_b64url_json(header)}.{_b64url_json(self._claims(case))}."

    def forged_token_tampered(self, case: CaseHandle) -> str:
        """Another patient's genuine token with its payload rewritten to name `case`."""
        header, payload, signature = self.other_patient.token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["sub"] = case.case_id
        return f"{header}.{_b64url_json(claims)}.{signature}"

    def forged_token_hs256(self, case: CaseHandle) -> str:
        """Algorithm confusion: HMAC-SHA256 keyed with intake's published public key."""
        import hmac

        jwk = self.runtimes["intake"].jwks["keys"][0]
        public = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        signing_input = (
            f"{_b64url_json({'alg': 'HS256', 'typ': JWT_TYPE, 'kid': self.kid})}."
            f"{_b64url_json(self._claims(case))}"
        )
        mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(mac)}"

    # -------------------------------------------------------------------------- cases
    async def open_case(
        self, *, front_end_key: str | None = None, patient: Patient | None = None
    ) -> CaseHandle:
        patient = patient or Patient.random()
        key = front_end_key or self.keys.front_end
        r = await self.intake.post(
            "/v1/cases", json=patient.case_body(), headers={"X-Api-Key": key}
        )
        assert r.status_code == 201, r.text
        body = r.json()
        case = CaseHandle(
            case_id=body["case"]["id"],
            token=body["access_token"],
            front_end_key=key,
            patient=patient,
        )
        self.cases.append(case)
        return case

    async def upload(
        self, case: CaseHandle, *, kind: str = "pathology_report", content: bytes | None = None
    ) -> Document:
        content = content or case.patient.report_pdf()
        name = (
            f"{case.patient.family_name}_{case.patient.given_name}_{kind}_"
            f"{secrets.token_hex(2)}.pdf"
        )
        r = await self.records.post(
            f"/v1/cases/{case.case_id}/documents",
            data={"kind": kind},
            files={"file": (name, content, "application/pdf")},
            headers=case.bearer,
        )
        assert r.status_code == 201, r.text
        doc = Document(id=r.json()["id"], file_name=name, sha256=r.json()["sha256"])
        case.documents.append(doc)
        return doc

    async def draft_with_document(self) -> CaseHandle:
        case = await self.open_case()
        await self.upload(case)
        return case

    async def submittable_case(self) -> CaseHandle:
        """A draft with a stored pathology report (intake has seen it) and both consents."""
        case = await self.draft_with_document()
        for kind in ("processing", "cross_border"):
            r = await self.intake.put(
                f"/v1/cases/{case.case_id}/consents/{kind}",
                json={"version": CONSENT_VERSION},
                headers=case.bearer,
            )
            assert r.status_code == 200, r.text

        async def intake_knows_the_document() -> bool:
            r = await self.intake.get(f"/v1/cases/{case.case_id}", headers=case.bearer)
            return bool(r.json()["documents"])

        await wait_for(intake_knows_the_document, "intake learns of the uploaded document")
        return case

    async def routed_case(self) -> CaseHandle:
        """Through the whole chain: submitted, read by translation, routed and offered by
        partners on the center's inbox topic, known to records as the center's referral."""
        case = await self.submittable_case()
        r = await self.intake.post(f"/v1/cases/{case.case_id}/submit", headers=case.bearer)
        assert r.status_code == 200, r.text
        partners, records = self.runtimes["partners"], self.runtimes["records"]

        async def offered() -> Referral | None:
            async with partners.db.unit_of_work() as uow:
                rows = await uow.session.execute(
                    select(Referral).where(
                        Referral.case_id == uuid.UUID(case.case_id), Referral.status == "offered"
                    )
                )
                return rows.scalars().first()

        referral = await wait_for(offered, f"case {case.case_id} offered to a center")

        async def records_knows() -> bool:
            async with records.db.unit_of_work() as uow:
                return await uow.session.get(CenterReferral, referral.id) is not None

        await wait_for(records_knows, "records learns of the referral")

        async def referred() -> bool:
            r = await self.intake.get(f"/v1/cases/{case.case_id}", headers=case.bearer)
            return r.json()["status"] == "referred"

        await wait_for(referred, "intake marks the case referred")
        case.referral_id, case.center = str(referral.id), referral.center_code
        return case

    def take_routed(self) -> CaseHandle:
        """A routed case nobody else uses (for a test that changes its referral)."""
        assert self.routed_pool, "the pool of routed cases is used up: make it larger"
        return self.routed_pool.pop()

    async def accepted_case(self) -> CaseHandle:
        case = self.take_routed()
        r = await self.partners.post(
            f"/v1/partner/referrals/{case.referral_id}/accept",
            json={"expected_opinion_at": (datetime.now(UTC) + timedelta(days=7)).isoformat()},
            headers={"X-Api-Key": self.keys.center},
        )
        assert r.status_code == 200, r.text
        records = self.runtimes["records"]

        async def records_knows_it_accepted() -> bool:
            async with records.db.unit_of_work() as uow:
                row = await uow.session.get(CenterReferral, uuid.UUID(case.referral_id))
                return row is not None and row.accepted_at is not None

        # A center uploads only once records has heard of its acceptance.
        await wait_for(records_knows_it_accepted, "records learns the referral was accepted")
        return case

    async def upload_opinion(self, case: CaseHandle) -> str:
        """The center's opinion on `case` (accepted), uploaded to records and known to partners;
        its document id."""
        from fpdf import FPDF

        pdf = FPDF()
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, f"Second opinion {secrets.token_hex(8)}: we agree with the diagnosis.")
        r = await self.records.post(
            f"/v1/referrals/{case.referral_id}/opinion",
            files={
                "file": (
                    f"opinion_{secrets.token_hex(3)}.pdf",
                    bytes(pdf.output()),
                    "application/pdf",
                )
            },
            headers={"X-Api-Key": self.keys.center},
        )
        assert r.status_code == 201, r.text
        opinion = str(r.json()["id"])
        partners = self.runtimes["partners"]

        async def partners_knows() -> bool:
            async with partners.db.unit_of_work() as uow:
                return await uow.session.get(CaseDocument, uuid.UUID(opinion)) is not None

        await wait_for(partners_knows, "partners learns of the uploaded opinion")
        return opinion

    def patients(self) -> list[Patient]:
        return [c.patient for c in self.cases]


def center_profiles(suffix: str) -> dict[str, dict[str, Any]]:
    """Three invented centers with codes unique to this run (their inbox topics are ours)."""

    def center(code: str, name: str, country: str, city: str, turnaround: int, **extra: Any):
        return {
            "code": code,
            "name": name,
            "country": country,
            "city": city,
            "kind": "university_hospital",
            "languages": ["de", "en"],
            "cancers": ["C00-C80"],
            "age_groups": ["adult"],
            "weekly_capacity": 500,
            "answer_deadline_hours": 48,
            "opinion_turnaround_days": turnaround,
            "price": {"amount": 900, "currency": "EUR"},
            "contact": {"email": f"desk@{code}.test.example", "phone": "+4930000000"},
            "status": "active",
            **extra,
        }

    return {
        "berlin": center(
            f"sec{suffix}-breast-berlin", f"Security Breast Center Berlin {suffix}", "DE",
            "Berlin", 7, cancers=["C50"], payers={"insurers": [INSURER]},
        ),
        "munich": center(
            f"sec{suffix}-oncology-munich", f"Security Oncology Munich {suffix}", "DE", "Munich",
            10, payers={"insurers": [INSURER]},
        ),
        "spare": center(
            f"sec{suffix}-oncology-lyon", f"Security Oncology Lyon {suffix}", "FR", "Lyon", 5,
            languages=["fr", "en"],
        ),
    }  # fmt: skip


# --------------------------------------------------------------------------- processes


class _Mailbox:
    def __init__(self, store: list[bytes]) -> None:
        self.store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.store.append(envelope.original_content or envelope.content)
        return "250 OK"


@contextlib.asynccontextmanager
async def _databases(admin_dsn: str) -> AsyncIterator[Callable[[str, Path], Awaitable[str]]]:
    admin = await asyncpg.connect(admin_dsn)
    made: list[str] = []

    async def make(prefix: str, migrations: Path) -> str:
        name = f"sec_{prefix}_{uuid.uuid4().hex[:10]}"
        await admin.execute(f'create database "{name}"')
        made.append(name)
        dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
        await upgrade_async(dsn, migrations)
        return dsn

    try:
        yield make
    finally:
        # Hygiene only (the session's stack goes away with its directory): a PostgreSQL that
        # died under us (another pytest session on this machine resetting the permissions of
        # /tmp/pytest-of-<user>) is a warning here, not a failure of the last test.
        try:
            for name in made:
                await admin.execute(f'drop database if exists "{name}" with (force)')
            await admin.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            warnings.warn(f"the security suite's databases were not dropped: {exc!r}", stacklevel=1)
            admin.terminate()


@contextlib.asynccontextmanager
async def running_world(local_stack: Any, tmp_dir: Path, *, routed: int) -> AsyncIterator[World]:
    """The five services running on the test stack, with keys, a main case offered to the
    Berlin center, another patient's draft case, and `routed` more cases offered to Berlin."""
    bootstrap = local_stack.kafka_bootstrap
    suffix = secrets.token_hex(3)
    profiles = center_profiles(suffix)
    seed = {
        "version": 1,
        "sample_data": True,
        "currency": {"reference": "EUR", "rates": {"EUR": 1}},
        "centers": list(profiles.values()),
    }
    seed_file = tmp_dir / "centers.security.yaml"
    seed_file.write_text(yaml.safe_dump(seed, sort_keys=False), encoding="utf-8")
    signing_key = generate_private_key_pem()
    bucket = f"sec-documents-{suffix}"
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    mailbox: list[bytes] = []
    await ensure_topics(bootstrap, topics.PLATFORM_TOPICS)

    async with contextlib.AsyncExitStack() as stack:
        smtp = Controller(_Mailbox(mailbox), hostname="127.0.0.1", port=free_port())
        smtp.start()
        stack.callback(smtp.stop)
        make_db = await stack.enter_async_context(_databases(local_stack.postgres_dsn))
        # Records and translation log in to MinIO as themselves, as on the platform: records
        # read-write and translation read-only, on this bucket only (the root user makes it).
        s3 = stack.enter_context(service_users(local_stack, bucket))
        dsns = {
            name: await make_db(name, migrations)
            for name, migrations in (
                ("intake", INTAKE_MIGRATIONS),
                ("records", RECORDS_MIGRATIONS),
                ("translation", TRANSLATION_MIGRATIONS),
                ("partners", PARTNERS_MIGRATIONS),
                ("notifications", NOTIFICATIONS_MIGRATIONS),
            )
        }
        intake = build_intake(
            IntakeSettings(
                postgres=PostgresSettings(dsn=dsns["intake"]),
                kafka=kafka,
                tokens=TokenSettings(signing_key_pem=signing_key.decode()),
                field_encryption_key=FieldCipher.generate_key_base64(),
                api_key_pepper="intake-security-tests-pepper-0123",
                rate_limit=SUITE_RATE_LIMITS,
                public_base_url="https://intake.example.org",
                notifications_public_key=NOTIFICATIONS_PUBLIC,
                partners_public_key=PARTNERS_POLICY_PUBLIC,
                # The matrix reads whole answers: a case's event stream ends after a second.
                case_stream_max_seconds=1.0,
            )
        )
        intake.outbound = with_example_dns(intake.outbound)
        stack.push_async_callback(intake.db.dispose)
        stack.push_async_callback(intake.case_events.close)
        jwks = json.dumps(intake.jwks)
        records = build_records(
            RecordsSettings(
                postgres=PostgresSettings(dsn=dsns["records"]),
                kafka=kafka,
                s3=s3["records"],
                bucket=bucket,
                case_token_jwks=jwks,
                api_key_pepper="records-security-tests-pepper-0123",
                rate_limit=SUITE_RATE_LIMITS,
            )
        )
        stack.push_async_callback(records.db.dispose)

        def remove_bucket() -> None:
            client = Minio(
                local_stack.s3_endpoint,
                access_key=local_stack.s3_access_key,
                secret_key=local_stack.s3_secret_key,
                secure=False,
            )
            for obj in client.list_objects(bucket, recursive=True):
                client.remove_object(bucket, obj.object_name)
            client.remove_bucket(bucket)

        stack.callback(remove_bucket)
        partners = build_partners(
            PartnersSettings(
                postgres=PostgresSettings(dsn=dsns["partners"]),
                kafka=kafka,
                seed_file=str(seed_file),
                case_token_jwks=jwks,
                api_key_pepper="partners-security-tests-pepper-0123",
                rate_limit=SUITE_RATE_LIMITS,
                policy_private_key=PARTNERS_POLICY_PRIVATE,
            )
        )
        partners.outbound = with_example_dns(partners.outbound)
        stack.push_async_callback(partners.db.dispose)
        await load_seed(partners.db, str(seed_file))
        await ensure_inbox_topics(partners.db, bootstrap)
        translation = build_translation(
            TranslationSettings(
                postgres=PostgresSettings(dsn=dsns["translation"]),
                kafka=kafka,
                s3=s3["translation"],
                bucket=bucket,
                check_timeout_seconds=60,
            )
        )
        stack.push_async_callback(translation.close)
        # Its reading workers load the language models for seconds: meanwhile, the rest starts.
        warming = asyncio.create_task(asyncio.to_thread(translation.checker.start))
        stack.push_async_callback(lambda: asyncio.wait([warming]))
        notifications_settings = NotificationsSettings(
            postgres=PostgresSettings(dsn=dsns["notifications"]),
            kafka=kafka,
            contact_private_key=NOTIFICATIONS_PRIVATE,
            smtp=SmtpSettings(host="127.0.0.1", port=smtp.port, tls=SmtpTls.NONE, timeout=5),
            quick_backoff_seconds=0.05,
            round_backoff_seconds=0.5,
            sender_interval_seconds=0.1,
        )
        notifications = build_notifications(notifications_settings)
        stack.push_async_callback(notifications.db.dispose)

        # The processes: a consumer and a relay per service, and notifications' sender.
        records_keys = {"pepper": records.pepper}  # records keeps the centers' key digests
        for rt, use_case, module, opts, built in (
            (intake, intake.intake, intake_consumers, {}, {}),
            (records, records.records, records_consumers, {}, records_keys),
            (translation, translation.translation, translation_consumers, {"max_records": 4}, {}),
            (partners, partners.partners, partners_consumers, {}, {}),
            (notifications, notifications.notifications, notifications_consumers, {}, {}),
        ):
            await stack.enter_async_context(
                consuming(
                    bootstrap,
                    lambda dead, m=module, u=use_case, r=rt, b=built: m.build_consumer(
                        u, r.db, dead, **b
                    ),
                    *module.SUBSCRIBED_TOPICS,
                    **opts,
                )
            )
            await stack.enter_async_context(relaying(rt.settings.postgres.asyncpg_dsn(), bootstrap))
        sender = build_sender(notifications_settings, notifications.db)
        stop = asyncio.Event()
        sending = asyncio.create_task(run_sender_loop(sender, 0.1, stop))

        async def stop_sender() -> None:
            stop.set()
            await sending

        stack.push_async_callback(stop_sender)

        apps: dict[str, FastAPI] = {}
        clients: dict[str, httpx.AsyncClient] = {}
        for name, factory, rt in (
            ("intake", create_intake_app, intake),
            ("records", create_records_app, records),
            ("partners", create_partners_app, partners),
        ):
            app = factory(runtime=rt)
            app.state.runtime = rt  # httpx's ASGI transport runs no lifespan
            apps[name] = app
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", timeout=60
                )
            )

        world = World(
            bootstrap=bootstrap,
            apps=apps,
            clients=clients,
            runtimes={
                "intake": intake,
                "records": records,
                "translation": translation,
                "partners": partners,
                "notifications": notifications,
            },
            signing_key_pem=signing_key,
            kid=intake.jwks["keys"][0]["kid"],
            centers={role: profile["code"] for role, profile in profiles.items()},
            seed=profiles,
            mailbox=mailbox,
        )
        await world._make_keys()
        await warming
        world.other_patient = await world.open_case(front_end_key=world.keys.other_front_end)
        await world.upload(world.other_patient)
        cases = await asyncio.gather(*(world.routed_case() for _ in range(routed + 1)))
        world.main, world.routed_pool = cases[0], list(cases[1:])
        assert {c.center for c in cases} == {world.centers["berlin"]}, "all go to Berlin"
        yield world
