"""The new case's questions, one page each, checked here before intake checks them again: what
each page asks, how its answers are checked (in the patient's words, never a code's), and how
the answers become intake's request. Intake's refusals come back by JSON pointer to the page
and field they are about (`POINTERS`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from referrals_common.contracts.intake import StageGroup, TnmStage
from referrals_web import icd10
from referrals_web.i18n import N_
from referrals_web.rendering import Form
from referrals_web.vocabulary import CENTER_CHOICES, DESTINATIONS, REASONS


@dataclass(frozen=True)
class Step:
    slug: str
    fields: tuple[str, ...]
    template: str


STEPS: tuple[Step, ...] = (
    Step("diagnosis", ("icd10", "diagnosis_text"), "new/diagnosis.html"),
    Step("stage", ("tnm", "stage_group"), "new/stage.html"),
    Step("reasons", ("reasons",), "new/reasons.html"),
    Step("questions", ("question_1", "question_2", "question_3"), "new/questions.html"),
    Step(
        "destination",
        ("destination", "country_1", "country_2", "country_3", "center_choice"),
        "new/destination.html",
    ),
    Step("date-of-birth", ("dob_day", "dob_month", "dob_year"), "new/date_of_birth.html"),
    Step("contact", ("email", "phone", "preferred_channel"), "new/contact.html"),
)
STEP_BY_SLUG = {step.slug: step for step in STEPS}
MAX_QUESTIONS = 3
MAX_COUNTRIES = 3

POINTERS = {
    "/diagnosis": "icd10",
    "/diagnosis/icd10": "icd10",
    "/diagnosis/text": "diagnosis_text",
    "/stage": "tnm",
    "/stage/tnm": "tnm",
    "/stage/group": "stage_group",
    "/reasons": "reasons",
    "/questions": "question_1",
    **{f"/questions/{i}": f"question_{i + 1}" for i in range(MAX_QUESTIONS)},
    "/destination": "destination",
    "/destination/countries": "country_1",
    "/patient_chooses_center": "center_choice",
    "/date_of_birth": "date_of_birth",
    "/contact": "email",
    "/contact/email": "email",
    "/contact/phone": "phone",
    "/contact/preferred_channel": "preferred_channel",
}
"""Intake's JSON pointers → the field of the page that asks for it."""

FIELD_STEP = {
    "icd10": "diagnosis",
    "diagnosis_text": "diagnosis",
    "tnm": "stage",
    "stage_group": "stage",
    "reasons": "reasons",
    **{f"question_{i + 1}": "questions" for i in range(MAX_QUESTIONS)},
    "destination": "destination",
    **{f"country_{i + 1}": "destination" for i in range(MAX_COUNTRIES)},
    "center_choice": "destination",
    "date_of_birth": "date-of-birth",
    "email": "contact",
    "phone": "contact",
    "preferred_channel": "contact",
}

FIELD_MESSAGES = {
    "icd10": N_(
        "Check the diagnosis code: it is on your pathology report or discharge summary, "
        "for example C50.9"
    ),
    "diagnosis_text": N_("The diagnosis in words can be at most 500 characters long"),
    "tnm": N_("Enter the TNM stage as it is written in your report, for example cT2N1M0"),
    "stage_group": N_("Enter the stage group in Roman numerals, for example IIB"),
    "reasons": N_("Choose at least one reason"),
    "question_1": N_("Check your questions: each can be at most 2000 characters long"),
    "destination": N_("Choose where the opinion should come from"),
    "country_1": N_("Choose at least one country"),
    "center_choice": N_("Choose how the cancer center is chosen"),
    "date_of_birth": N_("Check the date of birth: it must be a real date in the past"),
    "email": N_("Enter an e-mail address in the right format, like name@example.com"),
    "phone": N_("Enter a phone number in international format, like +380 50 123 45 67"),
    "preferred_channel": N_("Choose how we should tell you what happens"),
}
"""What to say beside a field intake refused (intake's own words are English only)."""

ANCHORS = {
    "date_of_birth": "dob_day",
    "reasons": "reasons-0",
    "destination": "destination-0",
    "center_choice": "center_choice-0",
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TNM = TypeAdapter(TnmStage)
_GROUP = TypeAdapter(StageGroup)


def form_values(posted: Any, step: Step) -> dict[str, Any]:
    """The posted answers of one page, as typed (trimmed)."""
    values: dict[str, Any] = {}
    for name in step.fields:
        if name == "reasons":
            values[name] = [v for v in posted.getlist(name) if isinstance(v, str)]
        else:
            raw = posted.get(name)
            values[name] = raw.strip()[:4000] if isinstance(raw, str) else ""
    return values


def validate(step: Step, values: dict[str, Any]) -> Form:
    form = Form(values=dict(values), anchors=dict(ANCHORS))
    check = globals()[f"_check_{step.slug.replace('-', '_')}"]
    check(form, values)
    return form


def _check_diagnosis(form: Form, v: dict[str, Any]) -> None:
    code, why = icd10.check(v.get("icd10", ""))
    if why == "empty":
        form.error("icd10", N_("Enter the diagnosis code (ICD-10), for example C50.9"))
    elif why == "unknown":
        form.error(
            "icd10",
            N_("We do not know the code %(code)s. Check it on your report: it looks like C50.9"),
            code=v["icd10"],
        )
    elif why == "not_neoplasm":
        form.error(
            "icd10",
            N_("%(code)s is not a code of a tumour (codes C00 to D48). Check it on your report"),
            code=icd10.normalise(v["icd10"]),
        )
    else:
        form.values["icd10"] = code
    if len(v.get("diagnosis_text", "")) > 500:
        form.error("diagnosis_text", FIELD_MESSAGES["diagnosis_text"])


def _check_stage(form: Form, v: dict[str, Any]) -> None:
    tnm = v.get("tnm", "")
    if tnm:
        try:
            _TNM.validate_python(tnm)
        except ValidationError:
            form.error("tnm", FIELD_MESSAGES["tnm"])
    group = v.get("stage_group", "").upper()
    if group:
        form.values["stage_group"] = group
        try:
            _GROUP.validate_python(group)
        except ValidationError:
            form.error("stage_group", FIELD_MESSAGES["stage_group"])


def _check_reasons(form: Form, v: dict[str, Any]) -> None:
    chosen = [r for r in v.get("reasons", []) if r in REASONS]
    form.values["reasons"] = list(dict.fromkeys(chosen))
    if not chosen:
        form.error("reasons", FIELD_MESSAGES["reasons"])


def _check_questions(form: Form, v: dict[str, Any]) -> None:
    for i in range(MAX_QUESTIONS):
        name = f"question_{i + 1}"
        if len(v.get(name, "")) > 2000:
            form.error(name, N_("A question can be at most 2000 characters long"))


def _check_destination(form: Form, v: dict[str, Any]) -> None:
    choice = v.get("center_choice") or "automatic"  # answers from before the question: automatic
    form.values["center_choice"] = choice
    if choice not in CENTER_CHOICES:
        form.error("center_choice", FIELD_MESSAGES["center_choice"])
    preference = v.get("destination", "")
    if preference not in DESTINATIONS:
        form.error("destination", FIELD_MESSAGES["destination"])
        return
    if preference == "countries" and not _countries(v):
        form.error("country_1", FIELD_MESSAGES["country_1"])


def _check_date_of_birth(form: Form, v: dict[str, Any]) -> None:
    parts = [v.get("dob_day", ""), v.get("dob_month", ""), v.get("dob_year", "")]
    if not any(parts):
        form.error("date_of_birth", N_("Enter the date of birth"))
        return
    if not all(p.isdigit() for p in parts):
        form.error(
            "date_of_birth", N_("The date of birth must have a day, a month and a year in numbers")
        )
        return
    try:
        born = date(int(parts[2]), int(parts[1]), int(parts[0]))
    except ValueError:
        form.error("date_of_birth", N_("The date of birth must be a real date"))
        return
    today = datetime.now(UTC).date()
    if born > today:
        form.error("date_of_birth", N_("The date of birth must be in the past"))
    elif born.year < today.year - 130 or len(parts[2]) != 4:
        form.error("date_of_birth", N_("Check the year of birth: enter it with 4 digits"))


def normalise_phone(raw: str) -> str:
    """`050 123 45 67` -> `+380501234567`; anything else as typed, without spaces and dashes."""
    digits = re.sub(r"[\s()\-.]", "", raw)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if re.fullmatch(r"0\d{9}", digits):
        digits = "+38" + digits
    elif re.fullmatch(r"380\d{9}", digits):
        digits = "+" + digits
    return digits


def _check_contact(form: Form, v: dict[str, Any]) -> None:
    email, phone = v.get("email", ""), v.get("phone", "")
    if not email and not phone:
        form.error("email", N_("Enter an e-mail address or a phone number, or both"))
    if email and not _EMAIL.match(email):
        form.error("email", FIELD_MESSAGES["email"])
    if phone and not re.fullmatch(r"\+\d{8,15}", normalise_phone(phone)):
        form.error("phone", FIELD_MESSAGES["phone"])
    channel = v.get("preferred_channel") or "email"
    if channel not in ("email", "sms"):
        form.error(
            "preferred_channel", FIELD_MESSAGES["preferred_channel"], anchor="preferred_channel-0"
        )
    elif channel == "sms" and not phone:
        form.error("phone", N_("To get text messages, enter a phone number"))
    elif channel == "email" and not email and phone:
        form.values["preferred_channel"] = "sms"


def _countries(v: dict[str, Any]) -> list[str]:
    found = [v.get(f"country_{i + 1}", "") for i in range(MAX_COUNTRIES)]
    return list(dict.fromkeys(c for c in found if re.fullmatch(r"[A-Z]{2}", c or "")))


def complete(draft: dict[str, Any]) -> Step | None:
    """The first page whose answers are missing or wrong, or None when every page is done."""
    for step in STEPS:
        if not validate(step, {name: draft.get(name, _empty(name)) for name in step.fields}).ok:
            return step
    return None


def _empty(name: str) -> Any:
    return [] if name == "reasons" else ""


# ------------------------------------------------------------------- intake's request


def part(step: Step, v: dict[str, Any]) -> dict[str, Any]:
    """The part of intake's case that one page's (checked) answers make."""
    if step.slug == "diagnosis":
        diagnosis = {"icd10": v["icd10"]}
        if v.get("diagnosis_text"):
            diagnosis["text"] = v["diagnosis_text"]
        return {"diagnosis": diagnosis}
    if step.slug == "stage":
        stage = {k: v[f] for k, f in (("tnm", "tnm"), ("group", "stage_group")) if v.get(f)}
        return {"stage": stage or None}
    if step.slug == "reasons":
        return {"reasons": list(v["reasons"])}
    if step.slug == "questions":
        return {
            "questions": [
                v[f"question_{i + 1}"] for i in range(MAX_QUESTIONS) if v.get(f"question_{i + 1}")
            ]
        }
    if step.slug == "destination":
        preference = v["destination"]
        return {
            "destination": {
                "preference": preference,
                "countries": _countries(v) if preference == "countries" else [],
            },
            "patient_chooses_center": v.get("center_choice") == "choose",
        }
    if step.slug == "date-of-birth":
        born = date(int(v["dob_year"]), int(v["dob_month"]), int(v["dob_day"]))
        return {"date_of_birth": born.isoformat()}
    contact: dict[str, Any] = {"preferred_channel": v.get("preferred_channel") or "email"}
    if v.get("email"):
        contact["email"] = v["email"]
    if v.get("phone"):
        contact["phone"] = normalise_phone(v["phone"])
    return {"contact": contact}


def case_request(draft: dict[str, Any], locale: str) -> dict[str, Any]:
    """Intake's `POST /v1/cases` body from every page's answers (`complete(draft)` is None)."""
    body: dict[str, Any] = {"locale": locale}
    for step in STEPS:
        values = validate(step, {n: draft.get(n, _empty(n)) for n in step.fields}).values
        body.update(part(step, values))
    if body.get("stage") is None:
        body.pop("stage", None)
    return body


def values_from_case(case: dict[str, Any]) -> dict[str, Any]:
    """A case's answers as the pages show them (a case opened elsewhere, or on another day)."""
    diagnosis = case.get("diagnosis") or {}
    stage = case.get("stage") or {}
    destination = case.get("destination") or {}
    contact = case.get("contact") or {}
    questions = case.get("questions") or []
    countries = destination.get("countries") or []
    born = case.get("date_of_birth") or ""
    year, month, day = [*born.split("-"), "", "", ""][:3] if born else ("", "", "")
    values = {
        "icd10": diagnosis.get("icd10", ""),
        "diagnosis_text": diagnosis.get("text") or "",
        "tnm": stage.get("tnm") or "",
        "stage_group": stage.get("group") or "",
        "reasons": list(case.get("reasons") or []),
        "destination": destination.get("preference", ""),
        "center_choice": "choose" if case.get("patient_chooses_center") else "automatic",
        "dob_day": day.lstrip("0"),
        "dob_month": month.lstrip("0"),
        "dob_year": year,
        "email": contact.get("email") or "",
        "phone": contact.get("phone") or "",
        "preferred_channel": contact.get("preferred_channel") or "email",
    }
    for i in range(MAX_QUESTIONS):
        values[f"question_{i + 1}"] = questions[i] if i < len(questions) else ""
    for i in range(MAX_COUNTRIES):
        values[f"country_{i + 1}"] = countries[i] if i < len(countries) else ""
    return values
