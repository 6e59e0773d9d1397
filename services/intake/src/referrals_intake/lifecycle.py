"""The case lifecycle: which transitions exist, and what a case needs to move on. Pure: no I/O.

    draft ─submit─▶ submitted ─all documents accepted─▶ ready ─referral requested─▶ referred
                      │  ▲                                                           │
      translation     │  │ documents resolved                         accepted ◀─────┤
      required /      ▼  │                                                │          │
      unreadable    action_required                     opinion_delivered ◀┘   unroutable
    any open state ─withdraw─▶ withdrawn

    referred / accepted ─center asks─▶ information_requested ─patient answers─▶ referred / accepted
                                          │ (the state it came from: the same center goes on)
                                          └─not answered by the due date, or the center
                                            declines─▶ referred (partners offers the next center)

    opinion_delivered ─further opinion─▶ ready ─▶ … ─▶ opinion_delivered (another center's)
                                          └─no other center─▶ opinion_delivered (the one it has)

Declined and expired referrals of a `referred` case keep it `referred` while partners routes it
to the next center; they are timeline entries, not transitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from referrals_common.contracts import CaseStatus, StatusChangeReason
from referrals_common.i18n.case_texts import requested_item

S = CaseStatus

TRANSITIONS: dict[tuple[CaseStatus, StatusChangeReason], CaseStatus] = {
    (S.DRAFT, StatusChangeReason.PATIENT_SUBMITTED): S.SUBMITTED,
    (S.SUBMITTED, StatusChangeReason.DOCUMENTS_ACCEPTED): S.READY,
    (S.SUBMITTED, StatusChangeReason.TRANSLATION_REQUIRED): S.ACTION_REQUIRED,
    (S.SUBMITTED, StatusChangeReason.DOCUMENT_UNREADABLE): S.ACTION_REQUIRED,
    (S.ACTION_REQUIRED, StatusChangeReason.DOCUMENTS_UPDATED): S.SUBMITTED,
    (S.READY, StatusChangeReason.REFERRAL_REQUESTED): S.REFERRED,
    (S.REFERRED, StatusChangeReason.REFERRAL_ACCEPTED): S.ACCEPTED,
    (S.REFERRED, StatusChangeReason.NO_ELIGIBLE_CENTER): S.UNROUTABLE,
    (S.READY, StatusChangeReason.NO_ELIGIBLE_CENTER): S.UNROUTABLE,
    (S.ACCEPTED, StatusChangeReason.OPINION_DELIVERED): S.OPINION_DELIVERED,
    # The information loop (seed 000: the council asks to re-send biopsy material or for tests).
    (S.REFERRED, StatusChangeReason.INFO_REQUESTED): S.INFORMATION_REQUESTED,
    (S.ACCEPTED, StatusChangeReason.INFO_REQUESTED): S.INFORMATION_REQUESTED,
    (S.INFORMATION_REQUESTED, StatusChangeReason.INFORMATION_NOT_PROVIDED): S.REFERRED,
    (S.INFORMATION_REQUESTED, StatusChangeReason.REFERRAL_DECLINED): S.REFERRED,
    (S.INFORMATION_REQUESTED, StatusChangeReason.NO_ELIGIBLE_CENTER): S.UNROUTABLE,
    # The patient answered as the request expired: partners expired it all the same, and the
    # case goes to the next center.
    (S.ACCEPTED, StatusChangeReason.INFORMATION_NOT_PROVIDED): S.REFERRED,
    # The patient chooses the center among those proposed (or the first after the deadline).
    (S.READY, StatusChangeReason.CENTERS_PROPOSED): S.CHOOSING_CENTER,
    (S.CHOOSING_CENTER, StatusChangeReason.REFERRAL_REQUESTED): S.REFERRED,
    (S.CHOOSING_CENTER, StatusChangeReason.NO_ELIGIBLE_CENTER): S.UNROUTABLE,
    # A further opinion (seed 003): routed again, never to a center offered the case before; if
    # no center is left, the case keeps the opinion it has.
    (S.OPINION_DELIVERED, StatusChangeReason.FURTHER_OPINION_REQUESTED): S.READY,
    (S.READY, StatusChangeReason.FURTHER_OPINION_UNAVAILABLE): S.OPINION_DELIVERED,
    (S.REFERRED, StatusChangeReason.FURTHER_OPINION_UNAVAILABLE): S.OPINION_DELIVERED,
    (S.INFORMATION_REQUESTED, StatusChangeReason.FURTHER_OPINION_UNAVAILABLE): S.OPINION_DELIVERED,
}

RESUMES_TO = frozenset({S.REFERRED, S.ACCEPTED})
"""The answer to a request returns the case to the state it was asked in (the request's
`resume_status`): an offer the center had not accepted yet, or an accepted referral."""

OPEN_STATES = frozenset(
    {
        S.DRAFT,
        S.SUBMITTED,
        S.ACTION_REQUIRED,
        S.READY,
        S.REFERRED,
        S.ACCEPTED,
        S.INFORMATION_REQUESTED,
        S.CHOOSING_CENTER,
    }
)
for _state in OPEN_STATES:
    TRANSITIONS[(_state, StatusChangeReason.PATIENT_WITHDREW)] = S.WITHDRAWN

EDITABLE_STATES = frozenset({S.DRAFT})
# A patient may add documents while the case waits for them or for a referral.
UPLOAD_STATES = frozenset(
    {
        S.DRAFT,
        S.SUBMITTED,
        S.ACTION_REQUIRED,
        S.READY,
        S.REFERRED,
        S.ACCEPTED,
        S.INFORMATION_REQUESTED,
        S.CHOOSING_CENTER,
    }
)
# The preparation checklist may be completed until the center has given its opinion.
PREPARATION_STATES = OPEN_STATES

EVIDENCE_KINDS = frozenset({"pathology_report", "discharge_summary"})


class IllegalTransition(Exception):
    """The case is not in a state from which this happens; nothing is applied."""

    def __init__(self, current: CaseStatus, reason: StatusChangeReason) -> None:
        super().__init__(f"a case in {current} cannot move on {reason}")
        self.current = current
        self.reason = reason


def next_status(
    current: CaseStatus, reason: StatusChangeReason, *, resume: CaseStatus | None = None
) -> CaseStatus:
    """The state a case in `current` moves to on `reason`, or IllegalTransition. The patient's
    answer to a center's request (`information_provided`) goes back to `resume`."""
    if reason == StatusChangeReason.INFORMATION_PROVIDED:
        if current != S.INFORMATION_REQUESTED or resume not in RESUMES_TO:
            raise IllegalTransition(current, reason)
        return resume
    try:
        return TRANSITIONS[(current, reason)]
    except KeyError:
        raise IllegalTransition(current, reason) from None


@dataclass(frozen=True)
class DocumentState:
    document_id: str
    kind: str | None
    stored: bool
    check: str  # pending | accepted | translation_required | unreadable
    translation_of: str | None
    language: str | None = None
    acceptable_languages: list[str] | None = None
    """For `translation_required`: the languages a translation may be in."""
    unreadable_reason: str | None = None


def current_documents(docs: Iterable[DocumentState]) -> list[DocumentState]:
    """The documents that count: an original whose accepted translation exists is replaced by it;
    the center's opinion is not part of what the patient sends."""
    docs = [d for d in docs if d.kind != "opinion"]
    replaced = {d.translation_of for d in docs if d.translation_of and d.check == "accepted"}
    return [d for d in docs if d.document_id not in replaced]


def documents_verdict(docs: Iterable[DocumentState]) -> StatusChangeReason | None:
    """What the documents say about a submitted case: all accepted, one needs action, or wait.

    Returns DOCUMENTS_ACCEPTED, TRANSLATION_REQUIRED, DOCUMENT_UNREADABLE, or None (still being
    stored or checked, or no documents at all).
    """
    current = current_documents(docs)
    if not current:
        return None
    # A translation that is still being checked keeps its original pending, not failed.
    pending_translations = {d.translation_of for d in current if d.translation_of}
    checks = {d.check for d in current if d.document_id not in pending_translations}
    if "unreadable" in checks:
        return StatusChangeReason.DOCUMENT_UNREADABLE
    if "translation_required" in checks:
        return StatusChangeReason.TRANSLATION_REQUIRED
    if all(d.stored and d.check == "accepted" for d in current):
        return StatusChangeReason.DOCUMENTS_ACCEPTED
    return None


CONTACT_MISSING = (
    "a way to tell the patient what happens: an e-mail address (contact.email) or a phone "
    "number (contact.phone)"
)
EVIDENCE_MISSING = (
    "a document that shows the diagnosis: a pathology or biopsy report, or a discharge summary "
    "(Form 100)"
)
PROCESSING_CONSENT_MISSING = "consent to the processing of health data"
CROSS_BORDER_CONSENT_MISSING = "consent to the transfer of the case to a center outside Ukraine"
MISSING_CODES = {
    CONTACT_MISSING: "contact",
    EVIDENCE_MISSING: "diagnosis_evidence",
    PROCESSING_CONSENT_MISSING: "processing_consent",
    CROSS_BORDER_CONSENT_MISSING: "cross_border_consent",
}
"""Each English entry of `missing` and its code (`referrals_common.i18n.case_texts.MISSING`)."""


def missing_for_submission(
    docs: Iterable[DocumentState],
    *,
    has_processing_consent: bool,
    needs_cross_border_consent: bool,
    has_cross_border_consent: bool,
    can_reach_patient: bool = True,
) -> list[str]:
    """Everything a draft still lacks to be submitted, in words the patient can act on."""
    missing = []
    if not can_reach_patient:
        missing.append(CONTACT_MISSING)
    if not any(d.stored and d.kind in EVIDENCE_KINDS for d in docs):
        missing.append(EVIDENCE_MISSING)
    if not has_processing_consent:
        missing.append(PROCESSING_CONSENT_MISSING)
    if needs_cross_border_consent and not has_cross_border_consent:
        missing.append(CROSS_BORDER_CONSENT_MISSING)
    return missing


NEXT_STEPS: dict[StatusChangeReason, str | None] = {
    StatusChangeReason.PATIENT_SUBMITTED: "documents_being_checked",
    StatusChangeReason.DOCUMENTS_ACCEPTED: "choosing_center",
    StatusChangeReason.TRANSLATION_REQUIRED: "upload_translation",
    StatusChangeReason.DOCUMENT_UNREADABLE: "upload_clearer_copy",
    StatusChangeReason.DOCUMENTS_UPDATED: "new_documents_being_checked",
    StatusChangeReason.REFERRAL_REQUESTED: "wait_for_center",
    StatusChangeReason.REFERRAL_ACCEPTED: "wait_for_opinion",
    StatusChangeReason.OPINION_DELIVERED: "read_opinion",
    StatusChangeReason.INFO_REQUESTED: "answer_request",
    StatusChangeReason.INFORMATION_PROVIDED: "center_goes_on",
    StatusChangeReason.CENTERS_PROPOSED: "choose_center",
    StatusChangeReason.INFORMATION_NOT_PROVIDED: "next_center",
    StatusChangeReason.NO_ELIGIBLE_CENTER: "other_options",
    StatusChangeReason.PATIENT_WITHDREW: None,
}
"""The next step after each transition, as a code of `referrals_common.i18n.case_texts`
(its words are rendered in the case's language when read)."""


def still_missing(
    items: Iterable[dict[str, str]], preparation: dict[str, object] | None, locale: str = "en"
) -> list[str]:
    """What the preparation checklist still lacks of what an open request asks for, in words
    the patient can act on, in `locale` (`your family history: cancers in the family`)."""
    have = preparation or {}
    return [
        requested_item(kind, item.get("detail"), locale)
        for item in items
        if (kind := item.get("kind", "")) in ("family_history", "medications", "allergies")
        and not have.get(kind)
    ]
