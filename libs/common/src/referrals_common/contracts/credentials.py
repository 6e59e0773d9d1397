"""Events published by **partners** about the API keys of cancer centers, on the private,
compacted topic `referrals.center-credentials.v1` that only records reads.

Partners owns centers and their credentials: it issues a center's key (shown once to the
operator), keeps its peppered hash, and revokes it. Records serves the same center (its
referrals' documents, its opinion) and must accept exactly the keys partners issued and has not
revoked: it learns them from these events and keeps them as a read model. The events carry the
key id and `key_sha256`, the SHA-256 of the key's 256-bit random secret, which lets records
check a presented key and cannot give the key back; never the key itself.

These events are about a key, not a case. The envelope's `subject` and the Kafka key must still
be a UUID (`case_id`): it is the key's own stream key, `credential_key(key_id)`, so a key's
issue and its revocation stay in order in one partition, and compaction keeps the last of them.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID, uuid5

from pydantic import AwareDatetime, Field

from . import topics
from .envelope import EventData

SOURCE = "/referrals/partners"
_CREDENTIALS = UUID("3c5e1d0a-8f2b-4b7e-a1d4-6e9c2f0b7a58")

KEY_ID_PATTERN = r"^[A-Za-z0-9]{12}$"
CENTER_CODE_PATTERN = r"^[A-Za-z0-9-]{1,63}$"


def credential_key(key_id: str) -> UUID:
    """The stream key (`case_id`, `subject`, Kafka key) of one API key's events."""
    return uuid5(_CREDENTIALS, key_id)


class CenterCredentialIssued(EventData):
    """Partners issued a new API key to a cancer center (an operator through
    `POST /v1/ops/centers/{code}/keys` or `referrals-partners create-center-key`); the key works
    at records as soon as records has read this.

    Emitted by partners once per key, in the transaction that stores the key's hash."""

    event_type: ClassVar[str] = "referrals.center.credential_issued.v1"
    topic: ClassVar[str] = topics.CREDENTIALS
    source: ClassVar[str] = SOURCE

    case_id: UUID = Field(
        description="Not a case: the key's stream key (`credential_key(key_id)`), the Kafka key"
    )
    center_code: str = Field(pattern=CENTER_CODE_PATTERN, description="The center the key is for")
    key_id: str = Field(
        pattern=KEY_ID_PATTERN, description="The key's id, the middle part of `ccr_<id>_<secret>`"
    )
    key_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 (lowercase hex) of the key's secret part: enough to check a "
        "presented key, never enough to recover it (the secret is 256 random bits)",
    )
    issued_at: AwareDatetime = Field(description="When partners stored the key")


class CenterCredentialRevoked(EventData):
    """An operator revoked a center's API key (`DELETE /v1/ops/keys/{key_id}`): records refuses
    it from the moment it has read this (within seconds), and forever after.

    Emitted by partners once, when the key is first revoked (revoking again emits nothing)."""

    event_type: ClassVar[str] = "referrals.center.credential_revoked.v1"
    topic: ClassVar[str] = topics.CREDENTIALS
    source: ClassVar[str] = SOURCE

    case_id: UUID = Field(
        description="Not a case: the key's stream key (`credential_key(key_id)`), the Kafka key"
    )
    center_code: str = Field(pattern=CENTER_CODE_PATTERN, description="The center the key was for")
    key_id: str = Field(pattern=KEY_ID_PATTERN, description="The revoked key's id")
    revoked_at: AwareDatetime = Field(description="When the operator revoked it")


__all__ = ["CenterCredentialIssued", "CenterCredentialRevoked", "credential_key"]
