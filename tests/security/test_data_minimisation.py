"""Data minimisation on the real messages of the whole journey.

The platform's patients (every case the suite opened through intake's API: contact e-mail and
phone, name, date of birth, street address, insurance number, all random) went through the real
chain: records stored their documents (file names carry the patient's name, the PDF text carries
name, address, date of birth and insurance number), translation read them, intake submitted,
partners routed and offered them to a center on its inbox topic, notifications e-mailed the
patient. Here every record of every `referrals.*` topic of the broker is read back raw (key,
value, header names and values, and every base64 or hex string inside a JSON value, decoded) and
none of that personal data may appear in any spelling: events carry identifiers and clinical
facts only (docs/architecture.md, "Events"). The one topic that carries contact details,
`referrals.contacts.v1`, must carry them sealed: ciphertext that only notifications' private key
opens (which the test checks too, so the scan is known to look at the right records).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.policy
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from referrals_common.contracts import topics
from referrals_common.crypto import SealedBox

from .world import NOTIFICATIONS_PRIVATE, World, wait_for

pytestmark = pytest.mark.security

_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]{16,}={0,2}$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2}){8,}$")


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def json(self) -> dict[str, Any]:
        return json.loads(self.value or b"{}")  # type: ignore[no-any-return]


async def read_all(bootstrap: str) -> dict[str, list[Record]]:
    """Every record of every `referrals.*` topic, from the first offset to the last."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith("referrals."))
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    found: dict[str, list[Record]] = {name: [] for name in names}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if end[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                found[tp.topic] += [
                    Record(tp.topic, tp.partition, r.offset, r.key, r.value, tuple(r.headers))
                    for r in records
                ]
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
    finally:
        await consumer.stop()
    return found


def _decoded(value: Any) -> list[tuple[str, bytes]]:
    """Every string inside a JSON document that may be base64 or hex, decoded."""
    out: list[tuple[str, bytes]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out += [(f"{key}.{where}", data) for where, data in _decoded(item)]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += [(f"{index}.{where}", data) for where, data in _decoded(item)]
    elif isinstance(value, str):
        if _HEX.match(value):
            out.append(("(hex)", binascii.unhexlify(value)))
        if _BASE64.match(value):
            padded = value + "=" * (-len(value) % 4)
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                with contextlib.suppress(binascii.Error, ValueError):
                    out.append(("(base64)", decode(padded)))
    return out


def haystacks(record: Record) -> list[tuple[str, bytes]]:
    """(where, bytes) of everything a reader of the record gets."""
    found = [("key", record.key or b""), ("value", record.value or b"")]
    for name, header in record.headers:
        found += [(f"header name {name!r}", name.encode()), (f"header {name!r}", header or b"")]
    try:
        document = json.loads(record.value or b"")
    except ValueError:
        document = None
    found += [(f"value {where}", data) for where, data in _decoded(document)]
    return found


def personal_data_in(record: Record, needles: list[str]) -> list[str]:
    hits = []
    for where, data in haystacks(record):
        lowered = data.lower()
        hits += [
            f"{record.topic}[{record.partition}]@{record.offset} {where}: {needle!r}"
            for needle in needles
            if needle.lower().encode() in lowered
        ]
    return hits


def about(records: list[Record], case_id: str, event_type: str | None = None) -> list[Record]:
    return [
        r
        for r in records
        if r.key == case_id.encode() and (event_type is None or r.json().get("type") == event_type)
    ]


async def test_no_personal_data_travels_in_any_kafka_record(world: World) -> None:
    main = world.main
    patient = main.patient

    async def patient_was_emailed() -> bool:
        return any(
            patient.email
            in str(email.message_from_bytes(m, policy=email.policy.default).get("To", ""))
            for m in world.mailbox
        )

    await wait_for(patient_was_emailed, "notifications e-mails the main case's patient")

    async def notified_on_kafka() -> dict[str, list[Record]] | None:
        everything = await read_all(world.bootstrap)
        sent = about(
            everything.get(topics.NOTIFICATIONS, []),
            main.case_id,
            "referrals.notification.sent.v1",
        )
        return everything if sent else None

    everything = await wait_for(notified_on_kafka, "notification.sent for the main case")

    # The scan must look at the journey's real records: each topic carries the main case.
    inbox = topics.partner_inbox(main.center or "")
    expected_on = {
        inbox: "referrals.referral.offered.v1",
        topics.CASES: "referrals.case.ready_for_referral.v1",
        topics.DOCUMENTS: "referrals.document.stored.v1",
        topics.LANGUAGE_CHECKS: "referrals.document.language_accepted.v1",
        topics.ROUTING: "referrals.referral.requested.v1",
        topics.NOTIFICATIONS: "referrals.notification.sent.v1",
        topics.CONTACTS: "referrals.case.contact_shared.v1",
    }
    for topic, event_type in expected_on.items():
        assert about(everything.get(topic, []), main.case_id, event_type), (topic, event_type)
    offers = about(everything[inbox], main.case_id)  # at-least-once: maybe twice
    assert {o.json()["data"]["referral_id"] for o in offers} == {main.referral_id}
    for platform_topic in topics.PLATFORM_TOPICS:
        assert platform_topic in everything

    patients = world.patients()
    assert len(patients) >= 10
    needles = [needle for p in patients for needle in p.contact_needles()]
    needles += [d.file_name for case in world.cases for d in case.documents]
    leaks: list[str] = []
    scanned = 0
    for records in everything.values():
        for record in records:
            scanned += 1
            leaks += personal_data_in(record, needles)
    assert not leaks, f"personal data in {len(leaks)} places:\n" + "\n".join(leaks[:50])
    assert scanned >= 50, scanned

    # The contact is on its private topic, sealed: only notifications' private key opens it.
    box = SealedBox(private_key_b64=NOTIFICATIONS_PRIVATE)
    for case in (c for c in world.cases if c.referral_id):
        shared = about(everything[topics.CONTACTS], case.case_id)
        assert shared, f"no contact shared for {case.case_id}"
        for record in shared:
            data = record.json()["data"]
            assert set(data) == {"case_id", "sealed_contact", "locale", "front_end"}, data
            opened = box.open_json(data["sealed_contact"], bound_to=case.case_id)
            assert opened["email"] == case.patient.email
            assert opened["phone"] == case.patient.phone_e164
            with pytest.raises(Exception):  # noqa: B017, PT011 - bound to its own case only
                box.open_json(data["sealed_contact"], bound_to=str(uuid.uuid4()))


def test_the_scan_finds_personal_data_however_it_is_written() -> None:
    """The scanner itself: raw, in a header, base64 or hex inside a JSON value, any case."""
    address = "olena.kvitka@example.org"
    encoded = {
        "base64": base64.b64encode(address.encode()).decode(),
        "base64url": base64.urlsafe_b64encode(f"{{'e': '{address}'}}".encode()).decode(),
        "hex": address.encode().hex(),
    }
    samples = [
        Record("t", 0, 0, address.encode(), b"{}", ()),
        Record("t", 0, 1, b"k", b"{}", (("x-contact", address.upper().encode()),)),
        *(
            Record("t", 0, 2, b"k", json.dumps({"data": {"blob": text}}).encode(), ())
            for text in encoded.values()
        ),
    ]
    for record in samples:
        assert personal_data_in(record, [address]), record
    clean = Record("t", 0, 9, b"k", json.dumps({"data": {"age_group": "adult"}}).encode(), ())
    assert personal_data_in(clean, [address]) == []
