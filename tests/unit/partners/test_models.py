"""Partners' rows made as values (`models.new_row`): what the table models' constructors make,
for less CPU."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from referrals_partners.models import PartnersModel, Referral, WebhookDelivery, new_row, utcnow

pytestmark = pytest.mark.unit


def _fields(row: object) -> dict[str, Any]:
    return {k: v for k, v in vars(row).items() if not k.startswith("_")}


@pytest.mark.parametrize(
    ("model", "given"),
    [
        (
            Referral,
            {
                "id": uuid.uuid4(),
                "case_id": uuid.uuid4(),
                "center_code": "test-breast-berlin",
                "attempt": 1,
                "status": "offered",
                "answer_due_at": utcnow(),
                "decision": {"chosen": "test-breast-berlin"},
            },
        ),
        (
            WebhookDelivery,
            {
                "event_id": uuid.uuid4(),
                "center_code": "test-breast-berlin",
                "referral_id": uuid.uuid4(),
                "payload": {"type": "referrals.referral.offered.v1"},
            },
        ),
    ],
)
def test_a_new_row_has_what_the_constructor_gives_it(
    model: type[PartnersModel], given: dict[str, Any]
) -> None:
    made, constructed = new_row(model, **given), model(**given)
    assert isinstance(made, model)
    assert _fields(made).keys() == _fields(constructed).keys()
    for name, value in _fields(constructed).items():
        if name == "id" and "id" not in given:
            assert isinstance(getattr(made, name), uuid.UUID)
            assert getattr(made, name) != value  # a fresh id each time
        elif isinstance(value, datetime) and name not in given:
            assert abs((getattr(made, name) - value).total_seconds()) < 5
        else:
            assert getattr(made, name) == value, name
    # A default made by a factory is the row's own, not shared with the next row's.
    assert new_row(model, **given).__dict__ is not made.__dict__


def test_a_new_rows_fields_are_set_as_any_rows() -> None:
    referral = new_row(
        Referral,
        case_id=uuid.uuid4(),
        center_code="test-breast-berlin",
        attempt=1,
        status="offered",
        answer_due_at=utcnow(),
    )
    referral.status = "accepted"
    referral.offer["data"] = {"n": 1}
    assert (referral.status, referral.offer, referral.decision) == (
        "accepted",
        {"data": {"n": 1}},
        {},
    )
    assert new_row(Referral).offer == {}  # the factory's dict, not the first row's
