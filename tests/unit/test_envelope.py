"""A received event must carry its own identity: the inbox key cannot be invented on parse."""

import json
import uuid

import pytest

from referrals_common.contracts import CaseWithdrawn, InvalidEvent, new_event, parse_event

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("attribute", ["id", "time", "source", "subject", "specversion"])
def test_an_event_without_an_envelope_attribute_is_rejected(attribute):
    doc = json.loads(new_event(CaseWithdrawn(case_id=uuid.uuid4())).to_json())
    del doc[attribute]
    with pytest.raises(InvalidEvent, match=f"missing envelope attribute.*{attribute}"):
        parse_event(json.dumps(doc))


def test_parsing_the_same_bytes_twice_gives_the_same_event_id():
    raw = new_event(CaseWithdrawn(case_id=uuid.uuid4())).to_json()
    assert parse_event(raw).id == parse_event(raw).id
