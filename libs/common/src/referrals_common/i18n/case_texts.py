"""What a case's timeline, next step and document checks say to the patient, rendered from codes.

Intake stores each timeline entry as a reason code, a next-step code and the parameters of both
(a center's code, a country, a date, the documents concerned); these functions turn them into a
sentence in the case's language when the API answers. A code they do not know renders as None:
the caller then shows the English text stored with the row (entries written before the codes
were kept). Every sentence is an English gettext message in this module, translated in the
`patient_texts` catalogues (`i18n.md`); names of languages and countries come from CLDR.

Parameters: `center` a center's code, `country` an ISO 3166-1 code, `due`/`at`/`by` an ISO date
and time (shown in UTC), `date` an ISO date, counts as integers; the rest is named where used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from babel.dates import format_date, format_datetime
from babel.lists import format_list
from babel.numbers import format_currency, format_decimal

from referrals_common.i18n import (
    N_,
    country_name,
    language_name,
    supported,
    translations,
)

Params = Mapping[str, Any]

# ------------------------------------------------------------------------ the vocabularies
DOCUMENT_KINDS = {
    "discharge_summary": N_("Discharge summary"),
    "pathology_report": N_("Pathology report"),
    "imaging_report": N_("Imaging report"),
    "imaging_study": N_("Imaging study"),
    "lab_results": N_("Laboratory results"),
    "medication_list": N_("Medication list"),
    "translation": N_("Translation"),
    "opinion": N_("The center's opinion"),
    "other": N_("Document"),
}
UNREADABLE_REASONS = {
    "no_text": N_("no text was found in it"),
    "ocr_failed": N_("its text could not be recognised"),
    "encrypted": N_("it is protected by a password"),
    "corrupt": N_("the file is damaged"),
    "unsupported_format": N_("its format cannot be read"),
    "language_undetermined": N_("its language could not be determined"),
}
REJECTION_REASONS = {
    "unsupported_type": N_("this type of file is not accepted"),
    "too_large": N_("the file is too large"),
    "empty": N_("the file is empty"),
    "corrupt": N_("the file is damaged"),
    "decompression_bomb": N_("the archive unpacks to far too much data"),
    "bad_name": N_("the file name is not accepted"),
}
DECLINE_REASONS = {
    "outside_expertise": N_("the case is outside its expertise"),
    "no_capacity": N_("it has no places left"),
    "insufficient_documents": N_("the documents are not enough"),
    "language": N_("it cannot read the documents' language"),
    "other": N_("another reason"),
}
UNROUTABLE_REASONS = {
    "no_eligible_center": N_("no center suits the case"),
    "all_centers_declined": N_("every suitable center was asked already"),
    "attempts_exhausted": N_("the case was offered as many times as allowed"),
    "payer_not_accepted": N_("no suitable center accepts the case's payer"),
}
REQUESTED_ITEMS = {
    "pathology_review": N_("the biopsy material (slides or blocks) for a re-review"),
    "pathology_report": N_("a pathology report"),
    "imaging": N_("imaging (a report or the images)"),
    "lab_test": N_("a laboratory test result"),
    "document": N_("a document"),
    "question": N_("an answer to a question"),
    "family_history": N_("your family history"),
    "medications": N_("your current medications with doses"),
    "allergies": N_("your allergies"),
}

NEXT_STEPS = {
    "draft": N_(
        "Upload your documents (at least a pathology report or a discharge summary), give your "
        "consent, then submit the case."
    ),
    "documents_being_checked": N_("Nothing for now: your documents are being checked."),
    "choosing_center": N_("Nothing for now: we are choosing a cancer center."),
    "upload_translation": N_(
        "Upload a translation of the document named in the timeline into one of the languages "
        "listed there."
    ),
    "upload_clearer_copy": N_(
        "Upload a clearer copy of the document named in the timeline (a PDF, or a sharp photo of "
        "every page)."
    ),
    "new_documents_being_checked": N_("Nothing for now: your new documents are being checked."),
    "wait_for_center": N_("Wait for the center's answer; we will tell you."),
    "wait_for_opinion": N_("Wait for the written opinion; we will tell you."),
    "read_opinion": N_("Read the opinion and discuss it with your doctor."),
    "answer_request": N_(
        "Answer the center's request by its due date: upload the documents it asks for, send "
        "any slides or blocks by courier and record the shipment, write your answers, then send "
        "them to the center."
    ),
    "center_goes_on": N_("Wait: the center goes on with your case."),
    "choose_center": N_(
        "Choose one of the proposed centers before the date shown; otherwise we send your case "
        "to the first one."
    ),
    "next_center": N_("Nothing: we are offering your case to the next center."),
    "other_options": N_(
        "Our team will contact you about other options, such as another destination."
    ),
    "upload_again": N_("Upload the document again in an accepted format."),
    "answer_before_due": N_(
        "Answer the center's request before it is due, or the case goes to the next center."
    ),
    "wait_for_confirmation": N_("Wait for the confirmation; it comes with a calendar file."),
    "center_may_offer_times": N_("The center may offer new times; we will tell you."),
    "choose_time": N_("Choose the time that suits you."),
    "prepare_questions": N_("Prepare your questions; we will remind you a day and an hour before."),
    "read_answer": N_("Read the answer beside your question."),
    "read_answer_and_document": N_(
        "Read the answer beside your question and download the attached document."
    ),
}
"""Every next step a timeline entry may give, by code (no parameters)."""

MISSING = {
    "contact": N_("Give an e-mail address or a phone number, so we can tell you what happens."),
    "diagnosis_evidence": N_(
        "Add a document that shows the diagnosis: a pathology or biopsy report, or a discharge "
        "summary."
    ),
    "processing_consent": N_("Give your consent to the processing of your health data."),
    "cross_border_consent": N_(
        "Give your consent to sending your case to a center outside Ukraine."
    ),
}
"""What a draft lacks to be submitted, by code, as the patient fixes it."""


# --------------------------------------------------------------------------- formatting
class _Words:
    """The catalogue of one language, and its way of writing dates, lists and names."""

    def __init__(self, locale: str) -> None:
        self.locale = supported(locale)
        self._t = translations(self.locale)
        self.cldr = "en_GB" if self.locale == "en" else self.locale

    def gettext(self, message: str, **params: Any) -> str:
        text = self._t.gettext(message)
        return text % params if params else text

    def ngettext(self, singular: str, plural: str, count: int, **params: Any) -> str:
        return self._t.ngettext(singular, plural, count) % {"count": count, **params}

    def at(self, value: str | datetime | None) -> str:
        """A moment, in UTC: `21 December 2026, 14:00 UTC` / `21 грудня 2026, 14:00 UTC`."""
        if value is None:
            return ""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        shown = format_datetime(moment, "d MMMM y, HH:mm", tzinfo=UTC, locale=self.cldr)
        return f"{shown} UTC"

    def day(self, value: str | date | None) -> str:
        if value is None:
            return ""
        day = date.fromisoformat(value[:10]) if isinstance(value, str) else value
        return format_date(day, "d MMMM y", locale=self.cldr)

    def either(self, items: list[str]) -> str:
        return format_list(items, style="or", locale=self.cldr) if items else ""

    def both(self, items: list[str]) -> str:
        return format_list(items, locale=self.cldr) if items else ""

    def language(self, code: str | None) -> str:
        return language_name(code, self.locale)

    def country(self, code: str | None) -> str:
        return country_name(code, self.locale)

    def kind(self, kind: str | None) -> str:
        return self.gettext(DOCUMENT_KINDS.get(kind or "other", DOCUMENT_KINDS["other"]))

    def label(self, table: Mapping[str, str], code: str | None) -> str:
        if code is not None and code in table:
            return self.gettext(table[code])
        return (code or "").replace("_", " ")


# ------------------------------------------------------------------------ document checks
def translation_needed(words: _Words, language: str | None, acceptable: list[str]) -> str:
    return words.gettext(
        "The document is in %(language)s. Please upload a translation into %(languages)s.",
        language=words.language(language) or _UNKNOWN,
        languages=words.either([words.language(code) for code in acceptable]),
    )


def document_detail(
    check: str,
    locale: str,
    *,
    language: str | None = None,
    acceptable_languages: list[str] | None = None,
    unreadable_reason: str | None = None,
) -> str | None:
    """What a document's language check says, in `locale`; None when there is nothing to say
    (accepted, pending) or the check's codes are not known (the stored English text stands)."""
    words = _Words(locale)
    if check == "translation_required" and acceptable_languages:
        return translation_needed(words, language, acceptable_languages)
    if check == "unreadable" and unreadable_reason:
        return words.gettext(
            "The document could not be read: %(why)s. Please upload a clearer copy.",
            why=words.label(UNREADABLE_REASONS, unreadable_reason),
        )
    return None


def requested_item(kind: str, detail: str | None, locale: str) -> str:
    """An item a center asks for, in words, with the center's own detail: `your family
    history: cancers in the family`."""
    words = _Words(locale)
    label = words.label(REQUESTED_ITEMS, kind)
    return f"{label}: {detail}" if detail else label


# ------------------------------------------------------------------------ upload refusals
UPLOAD_REFUSALS = {
    "unsupported_type": N_("This type of file is not accepted."),
    "too_large": N_("The file is too large."),
    "empty": N_("The file is empty."),
    "corrupt": N_(
        "The file is damaged or incomplete. Save or export it again, then upload the new copy."
    ),
    "decompression_bomb": N_(
        "The file unpacks to far too much data. Send a smaller file, or the pages as a PDF."
    ),
    "bad_name": N_(
        "The file name is not accepted. Rename the file with ordinary letters and digits, then "
        "upload it again."
    ),
}
"""Why records refused an upload, by `RejectionReason`, when it has no more precise words."""

FILE_TYPES = frozenset(
    {
        N_("a PDF document"),
        N_("a JPEG image"),
        N_("a PNG image"),
        N_("a TIFF image"),
        N_("a DICOM file"),
        N_("a Word document (DOCX)"),
        N_("a plain text file"),
        N_("a Windows program (EXE or DLL)"),
        N_("a Linux program (ELF executable)"),
        N_("a macOS program (Mach-O executable)"),
        N_("a macOS program or a Java class file"),
        N_("a GIF image"),
        N_("a BigTIFF image"),
        N_("a JPEG 2000 image"),
        N_("a Photoshop document"),
        N_("a camera raw photo (Canon CR2; export it as JPEG)"),
        N_("a legacy or password-protected Microsoft Office file"),
        N_("an RTF document"),
        N_("a PostScript file"),
        N_("a RAR archive"),
        N_("a 7-Zip archive"),
        N_("a gzip archive"),
        N_("an XZ archive"),
        N_("a ZIP archive"),
        N_("an audio or video file"),
        N_("a video (WebM or MKV)"),
        N_("a script"),
        N_("a WebP image"),
        N_("a HEIC/HEIF photo (as iPhones take them; export it as JPEG)"),
        N_("an AVIF image"),
        N_("a video or audio file (MP4, MOV or similar)"),
        N_("a BMP image"),
        N_("an SVG image"),
        N_("an HTML page"),
        N_("an XML document"),
        N_("a DICOM file whose preamble holds a program header"),
        N_("a DICOM file whose preamble holds a script"),
        N_("a Word document with macros (DOCM)"),
        N_("an Excel workbook (XLSX)"),
        N_("a PowerPoint presentation (PPTX)"),
        N_("an Office Open XML package that is not a Word document"),
        N_("an OpenDocument file (ODT, ODS or ODP)"),
    }
)
"""What records may find a file to be (its English words are the codes: records names them)."""

ACCEPTED_TYPE_NAMES = {"plain text": N_("plain text")}
"""The short names of accepted types that are words, not format names (PDF, JPEG, Word)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the words for a refused upload are made of (records' `UploadRefused.words`).

    `reason` is its `RejectionReason`; `limit_bytes` the size limit a file crossed;
    `quota_bytes` and `used_bytes` a case's quota and what its documents take; `found` what the
    file is (one of `FILE_TYPES`); `expected_extensions` the endings the name of a file of that
    content may have, when its name says otherwise ("" for none); `bare_dicom` DICOM data without
    the standard file header; `accepted` the accepted types, each a short name and its endings.
    """

    reason: str
    limit_bytes: int | None = None
    quota_bytes: int | None = None
    used_bytes: int | None = None
    found: str | None = None
    expected_extensions: tuple[str, ...] = ()
    bare_dicom: bool = False
    accepted: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _megabytes(words: _Words, size: int) -> str:
    return format_decimal(size / 2**20, "#,##0.#", locale=words.cldr)


def _endings(words: _Words, extensions: Sequence[str]) -> list[str]:
    return [extension or words.gettext("no extension") for extension in extensions]


def _accepted_types(words: _Words, refusal: Refusal) -> str:
    types = [
        f"{words.gettext(ACCEPTED_TYPE_NAMES.get(name, name))} "
        f"({', '.join(_endings(words, extensions))})"
        for name, extensions in refusal.accepted
    ]
    return words.gettext("Accepted types: %(types)s.", types=words.both(types))


def _unsupported_type(words: _Words, refusal: Refusal) -> str:
    what = words.gettext(refusal.found) if refusal.found in FILE_TYPES else None
    if refusal.bare_dicom:
        opening = words.gettext(
            "The file looks like DICOM data without the standard DICOM file header. Please "
            "export the images again as standard DICOM files."
        )
    elif refusal.expected_extensions and what:
        opening = words.gettext(
            "The file's name does not match its content, which is %(what)s. Endings its name "
            "may have: %(endings)s.",
            what=what,
            endings=words.either(_endings(words, refusal.expected_extensions)),
        )
    elif what:
        opening = words.gettext("This type of file is not accepted: %(what)s.", what=what)
    elif refusal.found is None:
        opening = words.gettext("The file's type could not be recognised.")
    else:
        opening = words.label(UPLOAD_REFUSALS, refusal.reason)
    return f"{opening} {_accepted_types(words, refusal)}" if refusal.accepted else opening


UPLOAD_STATES = {
    "case_closed": N_("The case is closed: it takes no more documents."),
    "upload_gone": N_(
        "This upload expired or was cancelled, and the parts sent are gone. Start a new upload."
    ),
}
"""What records says to the patient about an upload it cannot go on with, by code."""


def upload_state(code: str, locale: str) -> str | None:
    """`UPLOAD_STATES[code]` in `locale`; None for a code without words here."""
    return _Words(locale).gettext(UPLOAD_STATES[code]) if code in UPLOAD_STATES else None


def upload_refusal(refusal: Refusal, locale: str) -> str:
    """Why records refused an upload, for the patient in `locale`: the size limit or the case's
    quota in MB, what the file is and which types are accepted, where the refusal tells them;
    otherwise a sentence for its reason (`UPLOAD_REFUSALS`)."""
    words = _Words(locale)
    if refusal.reason == "too_large" and refusal.quota_bytes is not None:
        return words.gettext(
            "The case's documents may take %(quota)s MB in all; %(used)s MB are used, and this "
            "file does not fit in the rest. Delete a document the case does not need, or send "
            "a smaller file.",
            quota=_megabytes(words, refusal.quota_bytes),
            used=_megabytes(words, refusal.used_bytes or 0),
        )
    if refusal.reason == "too_large" and refusal.limit_bytes is not None:
        return words.gettext(
            "The file is larger than the limit of %(limit)s MB.",
            limit=_megabytes(words, refusal.limit_bytes),
        )
    if refusal.reason == "unsupported_type":
        return _unsupported_type(words, refusal)
    # A reason this version does not know: the file could not be kept as it is.
    known = refusal.reason if refusal.reason in UPLOAD_REFUSALS else "corrupt"
    return words.label(UPLOAD_REFUSALS, known)


# ---------------------------------------------------------------------- timeline reasons
# No string literal inside a gettext call but its message: the extractor would take it for one.
_UNKNOWN = "?"


def _center(p: Params) -> str:
    return str(p.get("center") or "")


def _joined(values: Any) -> str:
    return ", ".join(str(v) for v in values or [])


def _sentence(text: str) -> str:
    return text + "."


def _documents(words: _Words, p: Params) -> str:
    sentences = []
    for doc in p.get("documents") or []:
        kind = words.kind(doc.get("kind"))
        acceptable = [words.language(c) for c in doc.get("acceptable_languages") or []]
        if doc.get("check") == "translation_required" and acceptable:
            sentences.append(
                words.gettext(
                    "%(kind)s: the document is in %(language)s; it needs a translation into "
                    "%(languages)s.",
                    kind=kind,
                    language=words.language(doc.get("language")) or _UNKNOWN,
                    languages=words.either(acceptable),
                )
            )
        elif doc.get("check") == "translation_required":
            sentences.append(
                words.gettext("%(kind)s: the document needs a translation.", kind=kind)
            )
        elif doc.get("unreadable_reason"):
            sentences.append(
                words.gettext(
                    "%(kind)s: the document could not be read (%(why)s).",
                    kind=kind,
                    why=words.label(UNREADABLE_REASONS, doc.get("unreadable_reason")),
                )
            )
        else:
            sentences.append(words.gettext("%(kind)s: the document could not be read.", kind=kind))
    return " ".join(sentences)


def _translation_required(words: _Words, p: Params) -> str:
    return _documents(words, p) or words.gettext("A document needs a translation.")


def _unreadable(words: _Words, p: Params) -> str:
    return _documents(words, p) or words.gettext("A document could not be read.")


def _referral_requested(words: _Words, p: Params) -> str:
    if not p.get("center"):
        return words.gettext("The case was referred to a cancer center.")
    return words.gettext(
        "Referred to cancer center %(center)s (%(country)s), attempt %(attempt)s; answer due by "
        "%(due)s.",
        center=p["center"],
        country=words.country(p.get("country")),
        attempt=p.get("attempt", 1),
        due=words.at(p.get("due")),
    )


def _referral_accepted(words: _Words, p: Params) -> str:
    if not p.get("center"):
        return words.gettext("The cancer center accepted the case.")
    return words.gettext(
        "Cancer center %(center)s accepted the case; opinion expected by %(date)s.",
        center=p["center"],
        date=words.day(p.get("date")),
    )


def _referral_declined(words: _Words, p: Params) -> str:
    if not p.get("center"):
        return words.gettext("The cancer center declined the case.")
    return words.gettext(
        "Cancer center %(center)s declined the case: %(why)s.",
        center=p["center"],
        why=words.label(DECLINE_REASONS, p.get("reason")),
    )


def _unroutable(words: _Words, p: Params) -> str:
    why = words.label(UNROUTABLE_REASONS, p.get("reason") or "no_eligible_center")
    tried = _joined(p.get("tried"))
    if not tried:
        return words.gettext("No cancer center could take the case: %(why)s.", why=why)
    return words.gettext(
        "No cancer center could take the case: %(why)s. Centers asked: %(tried)s.",
        why=why,
        tried=tried,
    )


def _centers_proposed(words: _Words, p: Params) -> str:
    names = list(p.get("names") or [])
    return words.ngettext(
        "%(count)d cancer center can give the opinion: %(names)s. Choose by %(by)s.",
        "%(count)d cancer centers can give the opinion: %(names)s. Choose by %(by)s.",
        len(names),
        names=_joined(names),
        by=words.at(p.get("by")),
    )


def _info_requested(words: _Words, p: Params) -> str:
    if not p.get("center"):
        return words.gettext("The cancer center needs more information.")
    what = "; ".join(
        f"{words.label(REQUESTED_ITEMS, item.get('kind'))} ({item.get('detail', '')})"
        for item in p.get("items") or []
    )
    message = p.get("message") or ""
    text = words.gettext(
        "Cancer center %(center)s needs more information: %(what)s. Why: %(why)s.",
        center=p["center"],
        what=what,
        why=message,
    )
    if p.get("due"):
        text += " " + words.gettext("Due by %(due)s.", due=words.at(p["due"]))
    return text


def _information_provided(words: _Words, p: Params) -> str:
    parts = []
    if p.get("documents"):
        parts.append(
            words.ngettext("%(count)d document", "%(count)d documents", int(p["documents"]))
        )
    if p.get("shipments"):
        parts.append(
            words.ngettext("%(count)d shipment", "%(count)d shipments", int(p["shipments"]))
        )
    if p.get("answer"):
        parts.append(words.gettext("a written answer"))
    if p.get("checklist"):
        parts.append(words.gettext("the checklist"))
    if not p.get("center"):
        return words.gettext("The answer was sent to the cancer center.")
    return words.gettext(
        "The answer (%(parts)s) was sent to cancer center %(center)s.",
        parts=words.both(parts),
        center=p["center"],
    )


def _further_opinion(words: _Words, p: Params) -> str:
    if p.get("shared"):
        return words.gettext(
            "The patient asked for a further opinion from another cancer center, sharing the "
            "earlier opinion."
        )
    return words.gettext(
        "The patient asked for a further opinion from another cancer center, without the "
        "earlier opinion."
    )


def _document_rejected(words: _Words, p: Params) -> str:
    # Records' own sentence is English and more precise (the limit in MB): English keeps it.
    if words.locale == "en" and p.get("detail"):
        return words.gettext("An upload was refused: %(why)s", why=p["detail"])
    return words.gettext(
        "An upload was refused: %(why)s",
        why=_sentence(words.label(REJECTION_REASONS, p.get("reason"))),
    )


def _referral_resumed(words: _Words, p: Params) -> str:
    if p.get("due"):
        return words.gettext(
            "Cancer center %(center)s has the answer and goes on with the case; it answers the "
            "offer by %(due)s.",
            center=_center(p),
            due=words.at(p["due"]),
        )
    if p.get("date"):
        return words.gettext(
            "Cancer center %(center)s has the answer and goes on with the case; opinion "
            "expected by %(date)s.",
            center=_center(p),
            date=words.day(p["date"]),
        )
    return words.gettext(
        "Cancer center %(center)s has the answer and goes on with the case.",
        center=_center(p),
    )


def _follow_up_answered(words: _Words, p: Params) -> str:
    attached = int(p.get("attached") or 0)
    if not attached:
        return words.gettext(
            "Cancer center %(center)s answered a follow-up question.", center=_center(p)
        )
    return words.ngettext(
        "Cancer center %(center)s answered a follow-up question, with %(count)d document.",
        "Cancer center %(center)s answered a follow-up question, with %(count)d documents.",
        attached,
        center=_center(p),
    )


def _meeting_offered(words: _Words, p: Params) -> str:
    if p.get("rescheduled"):
        return words.gettext(
            "Cancer center %(center)s offered new times for a consultation meeting to explain "
            "its opinion.",
            center=_center(p),
        )
    return words.gettext(
        "Cancer center %(center)s offered times for a consultation meeting to explain its opinion.",
        center=_center(p),
    )


def _meeting_cancelled(words: _Words, p: Params) -> str:
    if p.get("by") == "center":
        return words.gettext(
            "Cancer center %(center)s cancelled the consultation meeting.",
            center=_center(p),
        )
    return words.gettext(
        "The consultation meeting with cancer center %(center)s was cancelled.",
        center=_center(p),
    )


def _fixed(message: str) -> Callable[[_Words, Params], str]:
    return lambda words, _p: words.gettext(message)


def _with(message: str, **formats: Callable[[_Words, Any], str]) -> Callable[[_Words, Params], str]:
    """A sentence whose parameters are shown as they are, or through `formats` (dates)."""

    def render(words: _Words, p: Params) -> str:
        values = {k: (formats[k](words, v) if k in formats else v) for k, v in p.items()}
        return words.gettext(message, **values)

    return render


def _at(words: _Words, value: Any) -> str:
    return words.at(value)


REASONS: dict[str, Callable[[_Words, Params], str]] = {
    "case_opened": _fixed(N_("The case was opened.")),
    "patient_submitted": _fixed(N_("The case was submitted.")),
    "documents_accepted": _fixed(N_("Every document is stored and readable by the center.")),
    "document_rejected": _document_rejected,
    "translation_required": _translation_required,
    "document_unreadable": _unreadable,
    "documents_updated": _fixed(N_("New documents resolve what was missing.")),
    "referral_requested": _referral_requested,
    "referral_accepted": _referral_accepted,
    "referral_declined": _referral_declined,
    "referral_expired": _with(N_("Cancer center %(center)s did not answer in time.")),
    "opinion_delivered": _with(N_("Cancer center %(center)s delivered its written opinion.")),
    "info_requested": _info_requested,
    "information_provided": _information_provided,
    "information_not_provided": _with(
        N_(
            "The request of cancer center %(center)s was not answered by its due date; the case "
            "goes to the next center."
        )
    ),
    "centers_proposed": _centers_proposed,
    "no_eligible_center": _unroutable,
    "patient_withdrew": _fixed(N_("The case was withdrawn.")),
    "further_opinion_requested": _further_opinion,
    "further_opinion_unavailable": _fixed(
        N_("No other cancer center can give a further opinion on this case.")
    ),
    "info_reminder": _with(
        N_("Reminder: the request of cancer center %(center)s is due by %(due)s."), due=_at
    ),
    "referral_resumed": _referral_resumed,
    "shipment_received": _with(
        N_("Cancer center %(center)s received the material sent on the shipment %(shipment)s.")
    ),
    "center_chosen": _with(N_("The patient chose %(name)s.")),
    "follow_up_asked": _with(N_("A follow-up question was sent to cancer center %(center)s.")),
    "follow_up_answered": _follow_up_answered,
    "meeting_time_chosen": _with(
        N_("A time was chosen for the consultation meeting with cancer center %(center)s: %(at)s."),
        at=_at,
    ),
    "meeting_cancelled": _meeting_cancelled,
    "meeting_offered": _meeting_offered,
    "meeting_booked": _with(
        N_("The consultation meeting with cancer center %(center)s is booked for %(at)s."),
        at=_at,
    ),
    "meeting_held": _fixed(N_("The consultation meeting took place.")),
    "meeting_missed": _fixed(N_("The consultation meeting was missed.")),
}
"""Every timeline reason code and how its sentence is made from its parameters."""


def reason(code: str, params: Params | None, locale: str) -> str | None:
    """A timeline entry's reason in `locale`; None for a code without a sentence here, or an
    entry stored without parameters (the stored English text stands)."""
    render = REASONS.get(code)
    if render is None or params is None:
        return None
    try:
        return render(_Words(locale), params)
    except (KeyError, TypeError, ValueError):  # parameters it cannot use: the stored text
        return None


def missing(code: str, locale: str) -> str | None:
    """What a draft lacks (`MISSING`), in `locale`; None for a code without words here."""
    return _Words(locale).gettext(MISSING[code]) if code in MISSING else None


def next_step(code: str | None, locale: str) -> str | None:
    """A next step in `locale` (None for none, or a code without a sentence here)."""
    if code is None or code not in NEXT_STEPS:
        return None
    return _Words(locale).gettext(NEXT_STEPS[code])


# ------------------------------------------------------------- why this center (routing)
def _routing_rule(words: _Words, match: Mapping[str, Any]) -> str | None:
    rule, codes = match.get("rule"), list(match.get("codes") or [])
    if rule == "diagnosis":
        return words.gettext(
            "The center reviews this diagnosis (%(code)s).", code=codes[-1] if codes else _UNKNOWN
        )
    if rule == "age_group":
        if codes[:1] == ["pediatric"]:
            return words.gettext("The center sees children.")
        return words.gettext("The center sees adult patients.")
    if rule == "destination":
        return words.gettext(
            "The center's country: %(country)s.",
            country=words.both([words.country(c) for c in codes]),
        )
    if rule == "languages":
        return words.gettext(
            "The center reads the languages of your documents: %(languages)s.",
            languages=words.both([words.language(c) for c in codes]),
        )
    if rule == "capacity" and match.get("weekly_capacity"):
        return words.gettext(
            "The center has places this week: %(taken)s of %(capacity)s are taken.",
            taken=match.get("places_taken") or 0,
            capacity=match["weekly_capacity"],
        )
    if rule == "turnaround" and match.get("turnaround_days"):
        return words.ngettext(
            "The center usually gives its opinion in %(count)d day.",
            "The center usually gives its opinion in %(count)d days.",
            int(match["turnaround_days"]),
        )
    return None


def _routing_reason(words: _Words, reason: Mapping[str, Any], eligible: int) -> str | None:
    code, count = reason.get("code"), int(reason.get("count") or 0)
    if code == "ranked_first":
        return words.gettext(
            "Suitable centers: %(eligible)s. This one came first.", eligible=eligible
        )
    if code == "only_eligible":
        return words.gettext("It is the only center that suits the case.")
    if code == "chosen_by_patient":
        return words.gettext("You chose this center.")
    if code == "no_choice_by_deadline":
        return words.gettext(
            "No center was chosen in time, so the case went to the first one proposed."
        )
    if code == "rerouted_after_decline":
        return words.gettext("Centers that declined the case before: %(count)s.", count=count or 1)
    if code == "rerouted_after_expiry":
        return words.gettext(
            "Centers that did not answer in time before: %(count)s.", count=count or 1
        )
    if code == "further_opinion":
        return words.gettext("You asked for a further opinion (opinion %(count)s).", count=count)
    return None


def routing_explanation(explanation: Mapping[str, Any] | None, locale: str) -> list[str]:
    """Why routing offered the case to its center (partners' `RoutingExplanation`), as short
    sentences for the patient in `locale`: the reasons first, then the rules the center met.
    Empty for no explanation; a code this version does not know is left out."""
    if not explanation:
        return []
    words = _Words(locale)
    eligible = int(explanation.get("eligible_count") or 1)
    sentences = [
        _routing_reason(words, reason, eligible) for reason in explanation.get("reasons") or []
    ] + [_routing_rule(words, match) for match in explanation.get("matched") or []]
    return [sentence for sentence in sentences if sentence]


def proposal_explanation(proposal: Mapping[str, Any], locale: str) -> list[str]:
    """What a proposed center (partners' `ProposedCenter`) offers, in short sentences in
    `locale`: its country, its usual time to the opinion and its price, where it publishes one."""
    words = _Words(locale)
    sentences = []
    if proposal.get("center_country"):
        sentences.append(
            words.gettext(
                "The center's country: %(country)s.",
                country=words.country(proposal["center_country"]),
            )
        )
    if proposal.get("turnaround_days"):
        sentences.append(
            words.ngettext(
                "The center usually gives its opinion in %(count)d day.",
                "The center usually gives its opinion in %(count)d days.",
                int(proposal["turnaround_days"]),
            )
        )
    price = proposal.get("price") or {}
    if price.get("amount") and price.get("currency"):
        shown = format_currency(price["amount"], price["currency"], locale=words.cldr)
        sentences.append(words.gettext("Price: %(price)s.", price=shown))
    return sentences


__all__ = [
    "ACCEPTED_TYPE_NAMES",
    "DOCUMENT_KINDS",
    "FILE_TYPES",
    "MISSING",
    "NEXT_STEPS",
    "REASONS",
    "REQUESTED_ITEMS",
    "UPLOAD_REFUSALS",
    "UPLOAD_STATES",
    "Refusal",
    "document_detail",
    "missing",
    "next_step",
    "proposal_explanation",
    "reason",
    "requested_item",
    "routing_explanation",
    "upload_refusal",
    "upload_state",
]
