"""The sender's claimed rows as plain values have exactly their tables' columns."""

from __future__ import annotations

from dataclasses import fields

from referrals_notifications.models import metadata
from referrals_notifications.repository import ClaimedContact, ClaimedDelivery


def test_a_claimed_delivery_has_every_column_of_the_deliveries_table() -> None:
    columns = {column.name for column in metadata.tables["deliveries"].c}
    assert {field.name for field in fields(ClaimedDelivery)} == columns


def test_a_claimed_contact_has_every_column_of_the_contacts_table() -> None:
    columns = {column.name for column in metadata.tables["case_contacts"].c}
    assert {field.name for field in fields(ClaimedContact)} == columns
