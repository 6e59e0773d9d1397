"""The problems records answers, shared by its audiences: a refused upload (in the patient's
language for a patient, English for a center), a resumable upload's refusals, and a referral
records has not heard of yet or that is not accepted."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar
from uuid import UUID

from fastapi import Request

from referrals_common.api.problems import (
    PROBLEM_MEDIA_TYPE,
    Conflict,
    FieldError,
    NotFound,
    ProblemError,
    Unprocessable,
    problem_responses,
    problem_type,
)
from referrals_common.i18n import SOURCE_LOCALE, case_texts
from referrals_records.api.deps import audit
from referrals_records.inspection import ACCEPTED_MEDIA_TYPES, CaseQuotaExceeded, UploadRefused
from referrals_records.resumable import (
    PartBeyondDeclaredSize,
    PartBusy,
    PartDiffers,
    PartOutOfOrder,
    PartWrongSize,
    UploadClosed,
    UploadCompleting,
    UploadGone,
    UploadIncomplete,
    UploadNotFound,
)
from referrals_records.service import BadTranslation, CaseClosed, NotOwnUpload

T = TypeVar("T")


def patient_text(code: str, locale: str | None) -> str | None:
    """Records' words `code` (`case_texts.UPLOAD_STATES`) for a patient whose language is not
    English; None for English and for a center (`locale` None): records' own sentence stands."""
    if locale is None or locale == SOURCE_LOCALE:
        return None
    return case_texts.upload_state(code, locale)


def in_language(locale: str | None) -> dict[str, Any]:
    """A patient's problem names its language (`language`, `Content-Language`); a center's
    (`locale` None) is English and says nothing."""
    if locale is None:
        return {}
    return {
        "headers": {"Content-Language": locale, "Vary": "Accept-Language"},
        "extensions": {"language": locale},
    }


def refusal_problem(refused: UploadRefused, locale: str | None = None) -> ProblemError:
    """The problem answering an upload records refused (one-shot or resumable). For a patient,
    `locale` is the case's language: `detail` says it in that language (`language` and
    `Content-Language` name it); a center's (None) is records' English."""
    # The rest of a refused body is not wanted: closing the connection after the answer
    # stops the server from reading (and the client from sending) what is left of it.
    unread = {"Connection": "close"}
    detail, language = refused.detail, {}
    if locale is not None:
        # English keeps records' own sentence, the more precise (which pixel count, which part).
        if locale != SOURCE_LOCALE:
            detail = case_texts.upload_refusal(refused.words, locale)
        unread |= {"Content-Language": locale, "Vary": "Accept-Language"}
        language = {"language": locale}
    if isinstance(refused, CaseQuotaExceeded):
        return ProblemError(
            detail,
            status=413,
            type_slug="case-quota-exceeded",
            title="The case's documents would exceed its quota",
            headers=unread,
            extensions={
                "reason": str(refused.reason),
                "quota_bytes": refused.quota_bytes,
                "used_bytes": refused.used_bytes,
                **language,
            },
        )
    return ProblemError(
        detail,
        status=refused.status,
        type_slug=f"upload-{refused.reason.replace('_', '-')}",
        title="The upload was refused",
        headers=unread,
        extensions={
            "reason": str(refused.reason),
            "accepted_media_types": sorted(ACCEPTED_MEDIA_TYPES),
            **language,
        },
    )


async def recording_problem(
    request: Request,
    actor: str,
    action: str,
    case_id: UUID,
    exc: UploadRefused | CaseClosed | NotOwnUpload | BadTranslation,
    locale: str | None = None,
) -> ProblemError:
    """The problem (audited) for a file records refused to keep as a document: the one mapping
    for every way a document is recorded (one request, or completed from parts); a refused
    file is explained in `locale`, the patient's language (None: a center's, English)."""
    if isinstance(exc, UploadRefused):
        await audit(request, actor, "upload_refused", case_id=case_id, outcome="denied")
        return refusal_problem(exc, locale)
    if isinstance(exc, CaseClosed):
        await audit(request, actor, action, case_id=case_id, outcome="conflict")
        return Conflict(
            patient_text("case_closed", locale) or str(exc).capitalize() + ".",
            **in_language(locale),
        )
    if isinstance(exc, NotOwnUpload):
        await audit(
            request, actor, action, case_id=case_id, document_id=exc.document_id, outcome="denied"
        )
        return Conflict(
            "This file is already a document of the case that this referral did not upload: "
            "a center uploads its own opinion, it cannot adopt another document as one."
        )
    return Unprocessable(
        str(exc).capitalize() + ".",
        errors=[
            FieldError(
                pointer="/translation_of", location="body", code="translation", message=str(exc)
            )
        ],
    )


async def upload_step(
    request: Request,
    actor: str,
    case_id: UUID,
    action: str,
    work: Awaitable[T],
    locale: str | None = None,
) -> T:
    """Run a resumable upload's step, turning each refusal into its problem (audited); a
    refused file is explained in `locale`, the patient's language (None: a center's, English)."""
    try:
        return await work
    except UploadNotFound:
        await audit(request, actor, action, case_id=case_id, outcome="denied")
        raise NotFound("There is no such upload for this case.") from None
    except UploadRefused as refused:
        raise await recording_problem(
            request, actor, action, case_id, refused, locale=locale
        ) from None
    except UploadGone as exc:
        said = in_language(locale)
        raise ProblemError(
            patient_text("upload_gone", locale)
            or f"This upload was {exc.state} and its parts are gone: start a new upload.",
            status=410,
            type_slug="upload-expired",
            title="The upload has expired",
            headers=said.get("headers"),
            extensions={"state": exc.state, **said.get("extensions", {})},
        ) from None
    except UploadClosed as exc:
        raise ProblemError(
            f"This upload is {exc.session.state} and takes no more parts"
            + (f" ({exc.session.refusal})." if exc.session.refusal else "."),
            status=409,
            type_slug="upload-closed",
            title="The upload is closed",
            extensions={"state": exc.session.state, "refusal": exc.session.refusal},
        ) from None
    except PartBeyondDeclaredSize as exc:
        await audit(request, actor, action, case_id=case_id, outcome="denied")
        raise ProblemError(
            f"The declared size makes {exc.parts} parts: there is no part beyond it.",
            status=413,
            type_slug="upload-beyond-declared-size",
            title="Beyond the declared size",
            extensions={"parts_total": exc.parts},
        ) from None
    except PartWrongSize as exc:
        raise Unprocessable(
            f"Part {exc.number} must be exactly {exc.expected} bytes (Content-Length).",
            errors=[
                FieldError(
                    pointer="#/header/Content-Length",
                    location="header",
                    code="part_size",
                    message=f"part {exc.number} is {exc.expected} bytes",
                )
            ],
        ) from None
    except PartOutOfOrder as exc:
        raise ProblemError(
            f"Parts are sent in order: send part {exc.expected} next.",
            status=409,
            type_slug="upload-part-out-of-order",
            title="The part is out of order",
            extensions={"next_part": exc.expected},
        ) from None
    except PartBusy:
        raise ProblemError(
            "This part is being received by another request: wait for it, then ask the "
            "upload where to resume.",
            status=409,
            type_slug="upload-part-busy",
            title="The part is being received",
            headers={"Retry-After": "5"},
        ) from None
    except PartDiffers:
        await audit(request, actor, action, case_id=case_id, outcome="conflict")
        raise ProblemError(
            "This part was already received with other bytes: nothing was changed. A file "
            "that changed is a new upload.",
            status=409,
            type_slug="upload-part-differs",
            title="The part differs from the one received",
        ) from None
    except UploadIncomplete as exc:
        raise ProblemError(
            f"{len(exc.missing)} part(s) have not arrived: send them, then complete.",
            status=409,
            type_slug="upload-incomplete",
            title="The upload is incomplete",
            extensions={"missing_parts": exc.missing[:100]},
        ) from None
    except UploadCompleting:
        raise ProblemError(
            "Another request is completing this upload: ask for it again in a moment.",
            status=409,
            type_slug="upload-completing",
            title="The upload is being completed",
            headers={"Retry-After": "2"},
        ) from None
    except (CaseClosed, NotOwnUpload, BadTranslation) as exc:
        raise await recording_problem(request, actor, action, case_id, exc, locale=locale) from None


# Records learns which center may read which case only from partners' `referral.requested`
# (routing topic), while the center learns of its offer from `referral.offered` (its inbox
# topic): a center that reacts at once may ask before records' consumer has read the grant. A
# referral id records has never heard of is then a retryable 409 `referral-not-known-yet`, not
# a 404 the center would take as final. It reveals nothing to another center: the answer depends
# only on whether records has any row for that id, not on who asks nor on any case, and referral
# ids are random UUIDs that only the offered center receives, so an id a center made up is
# answered exactly like one still on its way. A referral records knows, but of another center,
# or closed (declined, expired, withdrawn), stays a 404, as if it did not exist.

RETRY_AFTER_SECONDS = 2
NOT_KNOWN_YET_SLUG = "referral-not-known-yet"
NOT_KNOWN_YET_TITLE = "The referral has not reached records yet"
NOT_ACCEPTED_SLUG = "referral-not-accepted"


class ReferralNotKnownYet(ProblemError):
    """409 with `Retry-After`: records has not yet received the referral from partners."""

    status = 409
    type_slug = NOT_KNOWN_YET_SLUG
    title = NOT_KNOWN_YET_TITLE

    def __init__(self, referral_id: UUID) -> None:
        super().__init__(
            f"Records has not yet received referral {referral_id} from partners: the offer "
            "reaches a center a moment before it reaches records. If it was offered to this "
            f"center, retry in {RETRY_AFTER_SECONDS} seconds (Retry-After); if this persists "
            "for minutes, check the referral id.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def not_known_yet_response(
    example_path: str, also: str | None = None
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entry of the 409 `referral-not-known-yet` (and of `also`, another 409 the
    route answers), with its `Retry-After` header and an example at `/v1/referrals/<id>/…`."""
    entry = problem_responses(409)[409]
    entry["description"] = (
        f"`{NOT_KNOWN_YET_SLUG}`: records has not yet received this referral from partners "
        "(it follows the center's offer by a moment); retry after `Retry-After` seconds"
        + (f". Or {also}" if also else "")
    )
    entry["headers"] = {
        "Retry-After": {
            "description": "Seconds to wait before trying again (for `referral-not-known-yet`).",
            "schema": {"type": "integer"},
        }
    }
    entry["content"][PROBLEM_MEDIA_TYPE]["example"] = {
        "type": problem_type(NOT_KNOWN_YET_SLUG),
        "title": NOT_KNOWN_YET_TITLE,
        "status": 409,
        "detail": str(ReferralNotKnownYet(UUID(int=0)).detail),
        "instance": f"/v1/referrals/{UUID(int=0)}/{example_path}",
    }
    return {409: entry}


class ReferralNotAccepted(ProblemError):
    """409 with `Retry-After`: the center may upload only once it accepted the referral."""

    status = 409
    type_slug = NOT_ACCEPTED_SLUG
    title = "The referral is not accepted"

    def __init__(self, referral_id: UUID) -> None:
        super().__init__(
            f"Referral {referral_id} is offered to this center but not accepted: a center "
            "uploads to a case only after it accepted the referral through partners (POST "
            f"/v1/partner/referrals/{referral_id}/accept). If it has just accepted, records "
            f"hears of it within seconds: retry in {RETRY_AFTER_SECONDS} seconds (Retry-After).",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
