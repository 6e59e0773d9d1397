"""Free text from people refuses control and bidi override characters (referrals_common.text)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from referrals_common.contracts import ClinicalSummary
from referrals_common.text import refuse_control_characters
from referrals_intake.schemas import Insurance

pytestmark = pytest.mark.unit

HOSTILE = {
    "NUL": "a\x00b",
    "escape": "a\x1b[31mred",
    "DEL": "a\x7f",
    "C1": "a\x85b",
    "right-to-left override": "scan\u202efdp.exe",
    "left-to-right isolate": "a\u2066b",
    "lone surrogate": "a\ud800b",
    "vertical tab": "a\x0bb",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_control_and_bidi_override_characters_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="control character U\\+"):
        refuse_control_characters(text)


@pytest.mark.parametrize(
    "text",
    ["Чи можлива органозберігаюча операція?", "line one\nline two\r\n\tthree", "מה עם HER2?"],
)
def test_ordinary_text_in_any_script_with_line_breaks_is_kept(text: str) -> None:
    assert refuse_control_characters(text) == text


def test_a_question_with_an_override_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as raised:
        ClinicalSummary(
            icd10="C50.9", age_group="adult", reasons=["choose_treatment"], questions=["ok?\u202e"]
        )
    assert raised.value.errors()[0]["loc"] == ("questions", 0)


def test_an_insurance_number_with_a_nul_is_refused() -> None:
    with pytest.raises(ValidationError) as raised:
        Insurance(provider="UNIQA", policy_number="UA-1\x00")
    assert raised.value.errors()[0]["loc"] == ("policy_number",)
