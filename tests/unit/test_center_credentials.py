"""Partners owns the centers' keys; records only checks them (issue 26): what records may keep
of a key, and that records has no way to make or register one."""

from __future__ import annotations

import hashlib

import pytest
import typer

from referrals_common.auth.api_keys import generate_api_key, hash_secret, key_digest, verify_secret

pytestmark = pytest.mark.unit

PEPPER = b"records-own-pepper-of-16+bytes"


def test_the_published_digest_checks_the_key_and_is_not_the_key() -> None:
    key = generate_api_key("ccr")
    digest = key_digest(key.secret)
    assert digest == hashlib.sha256(key.secret.encode()).hexdigest()
    assert key.secret not in digest and len(digest) == 64
    stored = hash_secret(digest, PEPPER)  # what records keeps
    assert verify_secret(key_digest(key.secret), stored, PEPPER)
    # Neither the digest itself nor the bare secret passes: records hashes what is presented.
    assert not verify_secret(key.secret, stored, PEPPER)
    assert not verify_secret(key_digest(digest), stored, PEPPER)
    other = generate_api_key("ccr")
    assert not verify_secret(key_digest(other.secret), stored, PEPPER)


def test_records_has_no_command_to_make_or_register_a_center_key() -> None:
    from referrals_records.cli import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert "create-center-key" not in commands
    assert {"api", "consumer", "relay", "migrate"} <= commands


def test_records_keeps_no_key_table_of_its_own() -> None:
    from referrals_records.models import metadata

    assert "center_clients" not in metadata.tables
    columns = set(metadata.tables["center_credentials"].columns.keys())
    assert columns == {
        "key_id",
        "center_code",
        "secret_hash",
        "issued_at",
        "revoked_at",
        "updated_at",
    }


def test_records_reads_the_credentials_topic() -> None:
    from referrals_common.contracts import topics
    from referrals_records.consumers import SUBSCRIBED_TOPICS

    assert topics.CREDENTIALS in SUBSCRIBED_TOPICS
    assert topics.CONSUMERS["records"] == SUBSCRIBED_TOPICS
    readers = {s for s, read in topics.CONSUMERS.items() if topics.CREDENTIALS in read}
    assert readers == {"records"}
