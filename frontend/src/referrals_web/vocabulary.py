"""Plain words for the platform's codes, in English (the catalogs' source; `N_` marks them for
extraction, the templates translate them with `_()`). A code with no words here is shown as the
platform wrote it, never hidden.
"""

from __future__ import annotations

import re
from typing import Any

from referrals_web.i18n import N_, any_of, language_name

REASONS = {
    "confirm_diagnosis_or_stage": N_("Confirm the diagnosis or the stage"),
    "choose_treatment": N_("Help to choose between treatments"),
    "drug_options": N_("Find out about medicines and drug options"),
    "new_tactics_after_failure_or_recurrence": N_(
        "A new plan after a treatment did not work or the cancer came back"
    ),
    "other": N_("Something else (say what in your questions)"),
}

DESTINATIONS = {
    "ukraine": N_("A cancer center in Ukraine"),
    "abroad": N_("A cancer center abroad, in any country"),
    "countries": N_("A cancer center in the countries I choose"),
}

CENTER_CHOICES = {
    "automatic": N_("Choose the best-suited cancer center for me"),
    "choose": N_("Let me choose among the best-suited cancer centers"),
}

CHANNELS = {"email": N_("E-mail"), "sms": N_("Text message (SMS)")}

DOCUMENT_KINDS = {
    "discharge_summary": N_("Discharge summary or extract (Form 027/o, Form 100)"),
    "pathology_report": N_("Pathology, biopsy or immunohistochemistry report"),
    "imaging_report": N_("Imaging report (CT, MRI, PET-CT, ultrasound, X-ray)"),
    "imaging_study": N_("Imaging study: the images themselves (DICOM)"),
    "lab_results": N_("Laboratory test results"),
    "medication_list": N_("List of medicines"),
    "translation": N_("A translation of a document you uploaded"),
    "other": N_("Another medical document"),
}
UPLOAD_KINDS = tuple(DOCUMENT_KINDS)
"""What a patient may upload (a center's opinion is not among them)."""

CASE_STATUSES = {
    "draft": N_("Not sent yet"),
    "submitted": N_("Sent: your documents are being checked"),
    "action_required": N_("We need something from you"),
    "ready": N_("Ready: we are choosing a cancer center"),
    "referred": N_("With a cancer center, waiting for its answer"),
    "accepted": N_("Accepted by a cancer center: the opinion is being written"),
    "information_requested": N_("The cancer center needs more information from you"),
    "choosing_center": N_("Waiting for you to choose a cancer center"),
    "opinion_delivered": N_("The written opinion is ready"),
    "unroutable": N_("No cancer center could take the case"),
    "withdrawn": N_("Withdrawn"),
}

TIMELINE_REASONS = {
    "patient_submitted": N_("You sent the case."),
    "documents_accepted": N_("Every document was checked and can be read by the center."),
    "document_rejected": N_("A document could not be accepted."),
    "translation_required": N_("A document needs a translation."),
    "document_unreadable": N_("A document could not be read."),
    "documents_updated": N_("Your new documents solve what was missing."),
    "referral_requested": N_("The case was sent to a cancer center."),
    "referral_accepted": N_("The cancer center accepted the case."),
    "referral_declined": N_("The cancer center could not take the case; we are asking another."),
    "referral_expired": N_("The cancer center did not answer in time; we are asking another."),
    "info_requested": N_("The cancer center asked for more information."),
    "information_provided": N_("Your answer was sent to the cancer center."),
    "information_not_provided": N_(
        "The center's request was not answered in time; the case goes to the next center."
    ),
    "centers_proposed": N_("Several cancer centers can give the opinion: you choose one."),
    "center_chosen": N_("You chose the cancer center."),
    "opinion_delivered": N_("The written opinion is ready."),
    "no_eligible_center": N_("No cancer center could take the case."),
    "patient_withdrew": N_("You withdrew the case."),
    "further_opinion_requested": N_("You asked another cancer center for a further opinion."),
    "further_opinion_unavailable": N_(
        "No other cancer center can give a further opinion. Your case keeps the opinion it has."
    ),
}

NEXT_STEPS = {
    "draft": N_("Add your documents, give your consent, then send the case."),
    "patient_submitted": N_("Nothing for now: we are checking your documents."),
    "documents_accepted": N_("Nothing for now: we are choosing a cancer center."),
    "translation_required": N_(
        "Add a translation of the document marked below into one of the languages named there."
    ),
    "document_unreadable": N_(
        "Add a clearer copy of the document marked below (a PDF, or a sharp photo of every page)."
    ),
    "documents_updated": N_("Nothing for now: we are checking your new documents."),
    "referral_requested": N_("Wait for the center's answer. We will tell you."),
    "referral_declined": N_("Wait: we are asking another cancer center. We will tell you."),
    "referral_expired": N_("Wait: we are asking another cancer center. We will tell you."),
    "referral_accepted": N_("Wait for the written opinion. We will tell you."),
    "info_requested": N_("Answer the center's request before its due date."),
    "information_provided": N_("Wait: the center goes on with your case."),
    "information_not_provided": N_("Nothing: we are offering your case to the next center."),
    "centers_proposed": N_("Choose the cancer center you want, before the date shown."),
    "center_chosen": N_("Wait for the center's answer. We will tell you."),
    "opinion_delivered": N_("Read the opinion and talk it over with your doctor."),
    "further_opinion_requested": N_("Wait: we are choosing another cancer center."),
    "further_opinion_unavailable": N_(
        "Read the opinion you have and talk it over with your doctor."
    ),
    "no_eligible_center": N_(
        "Our team will contact you about other options, such as another destination."
    ),
}

REQUESTED_ITEMS = {
    "pathology_review": N_("The biopsy material itself (slides or blocks), sent by courier"),
    "pathology_report": N_("A pathology report"),
    "imaging": N_("Imaging: a report or the images"),
    "lab_test": N_("A laboratory test result"),
    "document": N_("A document"),
    "question": N_("An answer to a question"),
    "family_history": N_("Your family history"),
    "medications": N_("Your current medicines with doses"),
    "allergies": N_("Your allergies"),
}

SHIPMENT_MATERIALS = {
    "slides": N_("Slides"),
    "blocks": N_("Paraffin blocks"),
    "slides_and_blocks": N_("Slides and paraffin blocks"),
}

WITHDRAWAL_REASONS = {
    "patient_request": N_("I no longer want a second opinion"),
    "consent_revoked": N_("I take back my consent"),
    "duplicate": N_("I opened this case twice"),
    "other": N_("Another reason"),
}

ROUTING_STATUSES = {
    "awaiting_documents": N_("Waiting for the documents to reach the center's system"),
    "offered": N_("Offered to the center, waiting for its answer"),
    "accepted": N_("Accepted by the center"),
    "info_requested": N_("The center asked for more information"),
    "completed": N_("The opinion was delivered"),
    "unroutable": N_("No center could take the case"),
    "withdrawn": N_("Withdrawn"),
}

# What intake's `missing` (422 submission-incomplete) says, and where the patient fixes it.
MISSING = (
    (
        "a way to tell the patient",
        N_("Give an e-mail address or a phone number, so we can tell you what happens."),
        "/new/contact",
    ),
    (
        "a document that shows the diagnosis",
        N_("Add a pathology or biopsy report, or a discharge summary (Form 100)."),
        "/case/documents",
    ),
    (
        "consent to the processing",
        N_("Give your consent to the processing of your health data."),
        "/case/consent",
    ),
    (
        "consent to the transfer",
        N_("Give your consent to sending your case to a center outside Ukraine."),
        "/case/consent",
    ),
)

_TRANSLATION_INTO = re.compile(r"needs a translation into (?P<langs>[a-z]{2}(?: or [a-z]{2})*)")


def missing_items(missing: list[str]) -> list[tuple[str, str | None, str]]:
    """Intake's `missing` entries as (words to translate, their link, the original text)."""
    out: list[tuple[str, str | None, str]] = []
    for entry in missing:
        for start, words, link in MISSING:
            if entry.startswith(start):
                out.append((words, link, entry))
                break
        else:
            out.append((entry, None, entry))
    return out


def verdict(document: dict[str, Any], locale: str, gettext: Any) -> tuple[str, str]:
    """A document's check in words, and its tone (`ok`, `wait`, `act`)."""
    check = document.get("check")
    language = language_name(document.get("language"), locale)
    if check == "accepted":
        if language:
            return gettext("Accepted. Language of the document: %(language)s.") % {
                "language": language
            }, "ok"
        return gettext("Accepted."), "ok"
    if check == "translation_required":
        match = _TRANSLATION_INTO.search(document.get("detail") or "")
        wanted = (
            any_of([language_name(c, locale) for c in match["langs"].split(" or ")], locale)
            if match
            else ""
        )
        if wanted:
            return gettext(
                "Language of the document: %(language)s. The center reads %(wanted)s: "
                "please add a translation."
            ) % {"language": language or "?", "wanted": wanted}, "act"
        return gettext("This document needs a translation: please add one."), "act"
    if check == "unreadable":
        return gettext(
            "We could not read this document. Please add a clearer copy: a PDF, or a sharp "
            "photo of every page."
        ), "act"
    if check == "rejected":
        return gettext("This document was not accepted. Please add it again."), "act"
    return gettext("Being checked. This usually takes a few minutes."), "wait"


def needs_attention(document: dict[str, Any]) -> bool:
    return document.get("check") in ("translation_required", "unreadable", "rejected")


def case_reference(case_id: Any) -> str:
    """The short reference the patient sees: the first 8 hex digits, `3F0F-6C7D` (the same rule
    as notifications' `case_reference`, so the pages and the e-mails say the same)."""
    head = str(case_id).replace("-", "")[:8].upper()
    return f"{head[:4]}-{head[4:]}"


# --------------------------------------------------------------------- the center console
# A center's staff read the same codes in a doctor's words.

REFERRAL_STATUSES = {
    "offered": N_("Offered to your center: waiting for your answer"),
    "accepted": N_("Accepted: the opinion is being written"),
    "info_requested": N_("Waiting for the patient's information"),
    "declined": N_("Declined"),
    "expired": N_("Expired"),
    "completed": N_("Opinion delivered"),
    "withdrawn": N_("Withdrawn by the patient"),
}

DECLINE_REASONS = {
    "outside_expertise": N_("The case is outside our expertise"),
    "no_capacity": N_("We have no capacity now"),
    "insufficient_documents": N_("The documents are not enough to give an opinion"),
    "language": N_("We cannot read the documents' language"),
    "other": N_("Another reason (say which below)"),
}

CENTER_REQUESTED_ITEMS = {
    "pathology_review": N_("Slides or paraffin blocks for a re-review (sent by courier)"),
    "pathology_report": N_("A pathology, biopsy or immunohistochemistry report"),
    "imaging": N_("Imaging: the radiologist's report or the images (DICOM)"),
    "lab_test": N_("A laboratory test result"),
    "document": N_("Another document (say which)"),
    "question": N_("A question the patient answers in words"),
    "family_history": N_("Family history (the patient's checklist)"),
    "medications": N_("Current medications with doses (the patient's checklist)"),
    "allergies": N_("Allergies and intolerances (the patient's checklist)"),
}

REQUEST_STATUSES = {
    "open": N_("Waiting for the patient's answer"),
    "answered": N_("Answered"),
    "expired": N_("Not answered in time"),
    "cancelled": N_("Cancelled"),
}

AGE_GROUPS = {"adult": N_("Adult"), "pediatric": N_("Child (paediatric oncology)")}

DIAGNOSIS_VERDICTS = {
    "confirmed": N_("Confirmed"),
    "refined": N_("Refined: the same disease, described more precisely"),
    "changed": N_("Changed: a different diagnosis"),
}

STAGE_VERDICTS = {
    "confirmed": N_("Confirmed"),
    "changed": N_("Changed"),
    "not_assessed": N_("Not assessed"),
}

TREATMENT_VERDICTS = {
    "agreed": N_("We agree with the treatment plan"),
    "alternative_proposed": N_("We propose another treatment"),
    "not_assessed": N_("Not assessed"),
}

CONSOLE_ACTIONS = {
    "accept": N_("Accepted the referral"),
    "decline": N_("Declined the referral"),
    "request_information": N_("Asked the patient for information"),
    "confirm_shipment": N_("Confirmed a shipment's receipt"),
    "upload_opinion": N_("Uploaded the written opinion"),
    "deliver_opinion": N_("Delivered the opinion"),
    "answer_follow_up": N_("Answered a follow-up question"),
    "upload_follow_up_document": N_("Uploaded a document for a follow-up answer"),
    "download": N_("Opened a document"),
    "offer_meeting": N_("Offered times for the consultation meeting"),
    "reschedule_meeting": N_("Offered new times for the consultation meeting"),
    "cancel_meeting": N_("Cancelled the consultation meeting"),
    "record_meeting": N_("Recorded whether the consultation meeting took place"),
}

MEETING_STATUSES = {
    "offered": N_("Times offered: waiting for the patient to choose"),
    "booked": N_("Booked"),
    "held": N_("Held"),
    "missed": N_("The patient did not come"),
    "cancelled": N_("Cancelled"),
}

MEETING_MODES = {"video": N_("By video call"), "in_person": N_("In person at your center")}


# ------------------------------------------------------------- after the opinion (patient)

PATIENT_DIAGNOSIS_VERDICTS = {
    "confirmed": N_("The center agrees with your diagnosis."),
    "refined": N_("The center describes your diagnosis more precisely."),
    "changed": N_("The center comes to a different diagnosis."),
}

PATIENT_STAGE_VERDICTS = {
    "confirmed": N_("The center agrees with the stage."),
    "changed": N_("The center finds a different stage."),
    "not_assessed": N_("The center did not assess the stage."),
}

PATIENT_TREATMENT_VERDICTS = {
    "agreed": N_("The center agrees with the treatment plan you were given."),
    "alternative_proposed": N_("The center proposes a different treatment."),
    "not_assessed": N_("The center did not assess the treatment plan."),
}

FURTHER_OPINION_REASONS = {
    "conflicting_opinions": N_(
        "The opinion differs from what my doctors say, or from another opinion"
    ),
    "another_view": N_("I would like one more doctor's view"),
    "other": N_("Another reason"),
}

PATIENT_MEETING_STATUSES = {
    "offered": N_("The center offers times: choose one"),
    "booking": N_("Your time is being confirmed"),
    "booked": N_("Booked"),
    "held": N_("The meeting took place"),
    "missed": N_("The center recorded that you did not come"),
    "cancelled": N_("Cancelled"),
}

PATIENT_MEETING_MODES = {
    "video": N_("A video call"),
    "in_person": N_("In person at the center"),
}

MEETING_CANCEL_REASONS = {
    "cannot_attend": N_("I cannot come at the time I booked"),
    "none_of_the_times": N_("None of the times suits me"),
    "no_longer_needed": N_("I no longer need the meeting"),
    "other": N_("Another reason"),
}

MEETING_OUTCOMES = {
    "held": N_("The meeting took place"),
    "missed": N_("The patient did not come"),
}
