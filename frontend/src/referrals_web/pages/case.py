"""The draft case: its task list, documents, consent, preparation checklist, and sending it.

Every page reads the case from intake (and the documents' names from records) with the session's
case token; nothing of the case is kept here but its id and token.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from referrals_web.i18n import N_
from referrals_web.pages.common import (
    CsrfRefused,
    checked_form,
    consent_done,
    consents_given,
    crosses_border,
    current_session,
    ensure_session,
    gettext,
    locale_of,
    read_case,
    realm_sessions,
    redirect,
    render,
    runtime,
    text,
    with_case,
)
from referrals_web.platform import PlatformProblem, PlatformUnavailable, Upload
from referrals_web.rendering import Form
from referrals_web.vocabulary import (
    DOCUMENT_KINDS,
    UPLOAD_KINDS,
    case_reference,
    missing_items,
    needs_attention,
    verdict,
)

router = APIRouter()

CONSENT_VERSION = "2026-01"
EVIDENCE_KINDS = ("pathology_report", "discharge_summary")
MAX_MEDICINE_ROWS = 50
FLASH = "flash"


def flash(request: Request, message: str, **params: Any) -> None:
    """A one-time message for the next page ("Your document was uploaded")."""
    ensure_session(request).set(FLASH, [message, params])


def take_flash(request: Request) -> tuple[str, dict[str, Any]] | None:
    found = ensure_session(request).pop(FLASH)
    return (found[0], found[1]) if found else None


# ---------------------------------------------------------------------------- documents


async def documents_view(request: Request, case: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's documents with their verdicts in words and, from records, their names."""
    platform = runtime(request).platform
    try:
        stored = await with_case(request, platform.documents)
    except (PlatformProblem, PlatformUnavailable):
        stored = []  # names are a help; the verdicts come from intake
    names = {d["id"]: d for d in stored}
    _ = gettext(request)
    locale = locale_of(request)
    checked = case.get("documents") or []
    replaced = {
        d["translation_of"]
        for d in checked
        if d.get("translation_of") and d.get("check") == "accepted"
    }
    # A draft's documents are read at once but judged only when the case is sent (the language
    # a center reads is known then): "being checked" would wait until the patient sends it.
    draft = case.get("status") == "draft"
    not_yet = _("Received. We check it when you send your case.")
    rows = []
    for d in checked:
        record = names.get(d["document_id"], {})
        if d["document_id"] in replaced:
            words, tone = _("A translation of this document was accepted."), "ok"
        elif draft and d.get("check") in (None, "pending"):
            words, tone = not_yet, "wait"
        else:
            words, tone = verdict(d, locale, _)
        rows.append(
            {
                "id": d["document_id"],
                "kind": d.get("kind") or record.get("kind") or "other",
                "name": record.get("file_name") or "",
                "uploaded_at": record.get("created_at"),
                "verdict": words,
                "tone": tone,
                "attention": needs_attention(d) and d["document_id"] not in replaced,
            }
        )
    known = {d["document_id"] for d in checked}
    for record in stored:  # stored, not yet heard of by intake: being checked
        if record["id"] not in known and record.get("kind") != "opinion":
            rows.append(
                {
                    "id": record["id"],
                    "kind": record["kind"],
                    "name": record["file_name"],
                    "uploaded_at": record.get("created_at"),
                    "verdict": not_yet
                    if draft
                    else _("Being checked. This usually takes a few minutes."),
                    "tone": "wait",
                    "attention": False,
                }
            )
    return rows


def documents_status(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "not_started"
    if any(r["attention"] for r in rows) or not any(r["kind"] in EVIDENCE_KINDS for r in rows):
        return "attention"
    return "done"


# ---------------------------------------------------------------------------- task list


@router.get("/case")
async def task_list(request: Request) -> Response:
    case = await read_case(request)
    if case["status"] != "draft":
        return redirect("/case/status")
    rows = await documents_view(request, case)
    docs = documents_status(rows)
    consent = "done" if consent_done(case) else "not_started"
    preparation = "done" if _has_preparation(case) else "not_started"
    ready = docs == "done" and consent == "done"
    return render(
        request,
        "case/task_list.html",
        case=case,
        reference=case_reference(case["id"]),
        documents=rows,
        tasks={
            "details": "done",
            "documents": docs,
            "consent": consent,
            "preparation": preparation,
            "submit": "not_started" if ready else "cannot_start",
        },
        flash=take_flash(request),
    )


def _has_preparation(case: dict[str, Any]) -> bool:
    p = case.get("preparation") or {}
    return bool(p.get("family_history") or p.get("medications") or p.get("allergies"))


# ---------------------------------------------------------------------------- documents


def _back_to(request: Request) -> str:
    return "/case/information" if request.query_params.get("for") == "information" else "/case"


async def _documents_page(
    request: Request, form: Form | None = None, *, status_code: int = 200
) -> HTMLResponse:
    case = await read_case(request)
    rows = await documents_view(request, case)
    return render(
        request,
        "case/documents.html",
        status_code=status_code,
        case=case,
        documents=rows,
        form=form or Form(values={"kind": "", "translation_of": ""}),
        kinds=[(k, DOCUMENT_KINDS[k]) for k in UPLOAD_KINDS],
        back=_back_to(request),
        action=request.url.path + ("?for=information" if _back_to(request) != "/case" else ""),
        flash=take_flash(request),
        resumable_from=RESUMABLE_FROM,
    )


@router.get("/case/documents")
async def documents(request: Request) -> Response:
    return await _documents_page(request)


UPLOAD_MESSAGES = {
    "upload-too-large": N_(
        "The file is too large. A PDF can be up to 100 MB, a photo or Word file up to 50 MB, "
        "a text file up to 5 MB, a DICOM study up to 2 GB"
    ),
    "case-quota-exceeded": N_("The case's documents together can be at most 5 GB"),
    "upload-unsupported-type": N_(
        "The file must be a PDF, a photo (JPG, PNG, TIFF), a Word file (DOCX), a text file or a "
        "DICOM study"
    ),
    "upload-bad-name": N_("The file's name does not match what is inside it: check the file"),
    "upload-empty": N_("The file is empty"),
    "upload-corrupt": N_("The file is damaged and cannot be opened: save it again and upload it"),
    "upload-decompression-bomb": N_(
        "The file is damaged and cannot be opened: save it again and upload it"
    ),
}


@router.post("/case/documents")
async def upload(request: Request) -> Response:
    """The patient's file, passed on to records with the case's token (never kept here: it is
    spooled to a temporary file while the form is read, then streamed to records)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > runtime(request).settings.upload_max_bytes:
        form = Form(values={"kind": "", "translation_of": ""})
        form.error("file", UPLOAD_MESSAGES["upload-too-large"])
        response = await _documents_page(request, form, status_code=413)
        response.headers["Connection"] = "close"
        return response
    posted = await checked_form(request)
    form = Form(
        values={
            "kind": text(posted, "kind", 40),
            "translation_of": text(posted, "translation_of", 40),
        }
    )
    file = posted.get("file")
    kind = form.values["kind"]
    translation_of: UUID | None = None
    if form.values["translation_of"]:
        try:
            translation_of = UUID(form.values["translation_of"])
            kind = "translation"
        except ValueError:
            form.error("translation_of", N_("Choose the document this file translates"))
    if kind not in UPLOAD_KINDS:
        form.error("kind", N_("Choose what the document is"))
    elif kind == "translation" and translation_of is None:
        form.error("translation_of", N_("Choose the document this file translates"))
    if not isinstance(file, UploadFile) or not file.filename:
        form.error("file", N_("Choose a file to upload"))
    elif file.size == 0:
        form.error("file", N_("The file is empty"))
    if not form.ok:
        return await _documents_page(request, form, status_code=422)
    assert isinstance(file, UploadFile)
    platform = runtime(request).platform
    document = Upload(
        kind=kind,
        file_name=file.filename or "document",
        content_type=file.content_type or "application/octet-stream",
        file=file.file,
        translation_of=translation_of,
    )
    try:
        await with_case(request, lambda case_id, token: platform.upload(case_id, token, document))
    except PlatformProblem as problem:
        _upload_refused(form, problem)
        return await _documents_page(request, form, status_code=422)
    finally:
        await file.close()
    draft = (await read_case(request))["status"] == "draft"
    flash(
        request,
        N_("Your document %(name)s was uploaded. We check it when you send your case.")
        if draft
        else N_("Your document %(name)s was uploaded. We are checking it."),
        name=document.file_name,
    )
    return redirect(
        "/case/documents" + ("?for=information" if _back_to(request) != "/case" else "")
    )


def _upload_refused(form: Form, problem: PlatformProblem) -> None:
    found = problem.fields({"/kind": "kind", "/translation_of": "translation_of"})
    if "kind" in found:
        form.error("kind", N_("Choose what the document is"))
    if "translation_of" in found:
        form.error("translation_of", N_("Choose the document this file translates"))
    if found:
        return
    message = UPLOAD_MESSAGES.get(problem.slug)
    if message:
        form.error("file", message)
    elif problem.status == 409:
        form.error("file", N_("Documents can no longer be added to this case"))
    else:
        form.platform_error("file", problem.detail or problem.title)


# ------------------------------------------------------------------- resumable uploads
#
# The page's script (static/upload.js) sends a file of RESUMABLE_FROM bytes or more in parts:
# it asks the app to open an upload, sends each part to the app, which streams it on to records
# with the case's token (kept in the session, never in the browser), asks where to resume after
# a dropped connection, then completes. The app proxies rather than handing the browser a URL
# of records: records takes the case's token only, which stays on the server, and the browser
# talks to one origin (the app), as on a clinic's LAN without other routes.

RESUMABLE_FROM = 8 * 1024 * 1024
"""Files from this size go in parts (the plain form sends smaller ones, and any without JS)."""


def json_refused(request: Request, problem: PlatformProblem | None, status: int) -> JSONResponse:
    """A refusal the script shows as it is: the message in the page's language."""
    _ = gettext(request)
    form = Form(values={})
    if problem is not None:
        _upload_refused(form, problem)
    message, params = next(iter(form.errors.values()), (None, {}))
    if problem is not None and problem.slug in ("upload-expired", "upload-closed"):
        message, params = N_("The upload was interrupted for too long: choose the file again"), {}
    said = _(message or N_("The file could not be uploaded: try again"))
    said = said % params if params else said.replace("%%", "%")
    return JSONResponse({"message": said}, status_code=status)


def script_checked(request: Request) -> None:
    """The script's request carries this session's CSRF token (header `X-CSRF-Token`)."""
    token = request.headers.get("x-csrf-token")
    if not realm_sessions(request).csrf_valid(current_session(request), token):
        raise CsrfRefused


def _progress(view: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "part_size", "parts_total", "received_bytes", "next_part", "state", "size_bytes")
    return {k: view.get(k) for k in keys}


async def relay_upload(request: Request, work: Awaitable[dict[str, Any]]) -> Response:
    """One step of an upload in parts, for the page's script: records' view of the upload (where
    to resume), or its refusal as a sentence in the page's language. The patient's documents
    and the console's opinion both go this way."""
    try:
        view = await work
    except PlatformProblem as problem:
        return json_refused(request, problem, problem.status)
    except PlatformUnavailable:
        return json_refused(request, None, 503)
    return JSONResponse(_progress(view), headers={"Cache-Control": "no-store"})


async def _relay(request: Request, call: Any) -> Response:
    return await relay_upload(request, with_case(request, call))


@router.post("/case/uploads")
async def start_upload(request: Request) -> Response:
    """Open a resumable upload for the file the page's script is about to send."""
    script_checked(request)
    try:
        posted = await request.json()
        size = int(posted.get("size_bytes"))
        name = str(posted.get("file_name") or "")[:255]
        kind = str(posted.get("kind") or "")
        original = posted.get("translation_of") or None
        translation_of = UUID(str(original)) if original else None
    except (ValueError, TypeError, AttributeError):
        return json_refused(request, None, 422)
    if translation_of is not None:
        kind = "translation"
    if kind not in UPLOAD_KINDS:
        return JSONResponse({"message": gettext(request)(N_("Choose what the document is"))}, 422)
    key = request.headers.get("idempotency-key", "")
    if not 8 <= len(key) <= 128:
        return json_refused(request, None, 422)
    body = {"kind": kind, "file_name": name, "size_bytes": size}
    if translation_of is not None:
        body["translation_of"] = str(translation_of)
    platform = runtime(request).platform
    return await _relay(
        request, lambda case_id, token: platform.start_upload(case_id, token, body, key)
    )


@router.get("/case/uploads/{upload_id}")
async def upload_progress(request: Request, upload_id: UUID) -> Response:
    """Where to resume: the parts records received."""
    platform = runtime(request).platform
    return await _relay(
        request, lambda case_id, token: platform.upload_progress(case_id, token, upload_id)
    )


@router.put("/case/uploads/{upload_id}/parts/{number}")
async def upload_part(request: Request, upload_id: UUID, number: int) -> Response:
    """One part, streamed on to records as it arrives."""
    script_checked(request)
    declared = request.headers.get("content-length", "")
    if not declared.isdigit() or not 1 <= number <= 10000:
        return json_refused(request, None, 422)
    platform = runtime(request).platform
    try:
        return await _relay(
            request,
            lambda case_id, token: platform.upload_part(
                case_id, token, upload_id, number, request.stream(), int(declared)
            ),
        )
    except ClientDisconnect:
        return Response(status_code=499)  # the browser is gone: it resumes from records' offset


@router.post("/case/uploads/{upload_id}/complete")
async def complete_upload(request: Request, upload_id: UUID) -> Response:
    """Assemble the document; the script then opens the documents page with its notice."""
    script_checked(request)
    platform = runtime(request).platform
    try:
        document = await with_case(
            request, lambda case_id, token: platform.complete_upload(case_id, token, upload_id)
        )
    except PlatformProblem as problem:
        return json_refused(request, problem, problem.status)
    except PlatformUnavailable:
        return json_refused(request, None, 503)
    draft = (await read_case(request))["status"] == "draft"
    flash(
        request,
        N_("Your document %(name)s was uploaded. We check it when you send your case.")
        if draft
        else N_("Your document %(name)s was uploaded. We are checking it."),
        name=document.get("file_name", ""),
    )
    back = "?for=information" if request.query_params.get("for") == "information" else ""
    return JSONResponse({"redirect": "/case/documents" + back})


@router.get("/case/documents/{document_id}/download")
async def download(request: Request, document_id: UUID) -> Response:
    platform = runtime(request).platform
    link, body, upstream = await with_case(
        request, lambda case_id, token: platform.download(case_id, token, document_id)
    )
    name = str(link.get("file_name") or "document").replace('"', "")
    from urllib.parse import quote

    return StreamingResponse(
        body,
        media_type=link.get("media_type") or "application/octet-stream",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
        background=_closing(upstream),
    )


def _closing(upstream: Any) -> Any:
    from starlette.background import BackgroundTask

    return BackgroundTask(upstream.aclose)


# ---------------------------------------------------------------------------- consent


@router.get("/case/consent")
async def consent(request: Request) -> Response:
    case = await read_case(request)
    return await _consent_page(request, case, Form())


async def _consent_page(
    request: Request, case: dict[str, Any], form: Form, *, status_code: int = 200
) -> HTMLResponse:
    # The words are intake's published text of this version (the one a FHIR export's
    # Consent.policy names), in the patient's language: what they read is what is recorded.
    platform = runtime(request).platform
    locale = locale_of(request)
    kinds = ["processing"] + (["cross_border"] if crosses_border(case) else [])
    words = {
        kind: (await platform.consent_text(kind, CONSENT_VERSION))["texts"][locale]
        for kind in kinds
    }
    return render(
        request,
        "case/consent.html",
        status_code=status_code,
        case=case,
        form=form,
        given=consents_given(case),
        abroad=crosses_border(case),
        version=CONSENT_VERSION,
        words=words,
    )


@router.post("/case/consent")
async def give_consent(request: Request) -> Response:
    posted = await checked_form(request)
    case = await read_case(request)
    given = consents_given(case)
    wanted = ["processing"] + (["cross_border"] if crosses_border(case) else [])
    form = Form(values={k: posted.get(k) == "yes" for k in wanted})
    if "processing" not in given and not form.values["processing"]:
        form.error(
            "processing",
            N_("To send your case, tick the box to agree to the processing of your health data"),
        )
    if "cross_border" in wanted and "cross_border" not in given and not form.values["cross_border"]:
        form.error(
            "cross_border",
            N_(
                "To send your case abroad, tick the box to agree to the transfer of your case "
                "outside Ukraine"
            ),
        )
    if not form.ok:
        return await _consent_page(request, case, form, status_code=422)
    platform = runtime(request).platform
    for kind in wanted:
        if kind not in given:
            await with_case(
                request, partial(platform.give_consent, kind=kind, version=CONSENT_VERSION)
            )
    return redirect("/case" if case["status"] == "draft" else "/case/status")


# ------------------------------------------------------------------------ preparation


def _preparation_form(case: dict[str, Any]) -> Form:
    p = case.get("preparation") or {}
    meds = p.get("medications") or []
    values: dict[str, Any] = {
        "family_history": p.get("family_history") or "",
        "allergies": "\n".join(p.get("allergies") or []),
        "rows": max(len(meds) + 1, 3),
    }
    for i, med in enumerate(meds):
        values[f"medicine_{i}"] = med.get("medicine", "")
        values[f"dose_{i}"] = med.get("dose", "")
    return Form(values=values)


def _preparation_page(
    request: Request, case: dict[str, Any], form: Form, *, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "case/preparation.html",
        status_code=status_code,
        case=case,
        form=form,
        back=_back_to(request),
        action=request.url.path + ("?for=information" if _back_to(request) != "/case" else ""),
    )


@router.get("/case/preparation")
async def preparation(request: Request) -> Response:
    case = await read_case(request)
    return _preparation_page(request, case, _preparation_form(case))


@router.post("/case/preparation")
async def save_preparation(request: Request) -> Response:
    posted = await checked_form(request)
    rows_raw = text(posted, "rows", 4)
    rows = min(int(rows_raw) if rows_raw.isdigit() else 3, MAX_MEDICINE_ROWS)
    form = Form(
        values={
            "family_history": text(posted, "family_history"),
            "allergies": text(posted, "allergies"),
            "rows": rows,
        }
    )
    medications = []
    for i in range(rows):
        medicine, dose = text(posted, f"medicine_{i}", 400), text(posted, f"dose_{i}", 400)
        form.values[f"medicine_{i}"], form.values[f"dose_{i}"] = medicine, dose
        if medicine and not dose:
            form.error(
                f"dose_{i}",
                N_("Enter the dose of %(medicine)s and how often you take it"),
                medicine=medicine,
            )
        elif dose and not medicine:
            form.error(f"medicine_{i}", N_("Enter the name of the medicine for this dose"))
        elif medicine and (len(medicine) > 200 or len(dose) > 200):
            form.error(
                f"medicine_{i}", N_("A medicine and its dose can be at most 200 characters each")
            )
        elif medicine:
            medications.append({"medicine": medicine, "dose": dose})
    if len(form.values["family_history"]) > 2000:
        form.error("family_history", N_("The family history can be at most 2000 characters long"))
    allergies = [line.strip() for line in form.values["allergies"].splitlines() if line.strip()]
    if any(len(a) > 200 for a in allergies) or len(allergies) > 50:
        form.error(
            "allergies", N_("Write each allergy on its own line, at most 200 characters each")
        )
    case = await read_case(request)
    if posted.get("action") == "add":
        form.values["rows"] = min(rows + 1, MAX_MEDICINE_ROWS)
        form.errors.clear()
        return _preparation_page(request, case, form)
    if not form.ok:
        return _preparation_page(request, case, form, status_code=422)
    body = {
        "family_history": form.values["family_history"] or None,
        "medications": medications,
        "allergies": allergies,
    }
    platform = runtime(request).platform
    try:
        await with_case(
            request, lambda case_id, token: platform.set_preparation(case_id, token, body)
        )
    except PlatformProblem as problem:
        if problem.status != 422:
            raise
        found = problem.fields(
            {
                "/family_history": "family_history",
                "/allergies": "allergies",
                "/medications": "medicine_0",
            }
        )
        for name, error in found.items():
            form.platform_error(name, error.message)
        if not found:
            form.platform_error("family_history", problem.detail)
        return _preparation_page(request, case, form, status_code=422)
    back = _back_to(request)
    return redirect(back if back != "/case" or case["status"] == "draft" else "/case/status")


# ---------------------------------------------------------------------------- submit


SUBMIT_KEY = "submit_key"


@router.get("/case/submit")
async def check_case(request: Request) -> Response:
    case = await read_case(request)
    if case["status"] != "draft":
        return redirect("/case/submitted")
    return await _submit_page(request, case, Form())


async def _submit_page(
    request: Request, case: dict[str, Any], form: Form, *, status_code: int = 200
) -> HTMLResponse:
    rows = await documents_view(request, case)
    return render(
        request,
        "case/submit.html",
        status_code=status_code,
        case=case,
        answers=case,
        change=lambda slug: f"/new/{slug}",
        form=form,
        documents=rows,
        given=consents_given(case),
        abroad=crosses_border(case),
    )


@router.post("/case/submit")
async def submit(request: Request) -> Response:
    """Send the case (Idempotency-Key per case: a double click sends it once)."""
    await checked_form(request)
    session = ensure_session(request)
    key = session.data.get(SUBMIT_KEY) or str(uuid4())
    session.set(SUBMIT_KEY, key)
    platform = runtime(request).platform
    try:
        await with_case(request, lambda case_id, token: platform.submit(case_id, token, key))
    except PlatformProblem as problem:
        if problem.status == 409:
            return redirect("/case/submitted")
        if problem.status != 422:
            raise
        case = await read_case(request)
        form = Form()
        for i, (words, link, original) in enumerate(
            missing_items(problem.extensions.get("missing") or [])
        ):
            form.error(
                f"missing_{i}",
                words if link else original.replace("%", "%%"),
                anchor=link or "main",
            )
        if not form.errors:
            form.platform_error("missing_0", problem.detail or problem.title, anchor="main")
        return await _submit_page(request, case, form, status_code=422)
    return redirect("/case/submitted")


@router.get("/case/submitted")
async def submitted(request: Request) -> Response:
    case = await read_case(request)
    if case["status"] == "draft":
        return redirect("/case/submit")
    return render(request, "case/submitted.html", case=case, reference=case_reference(case["id"]))
