"""The vocabulary of a center's request for more information and of the patient's answer.

Seed 000: a center's council may ask to re-send the biopsy material for a re-review, or to do
further tests, before it can give its opinion. A request lists what the center needs (each item a
kind and the center's words), why, and by when; the patient answers with documents (checked by
records and translation like any other), written answers, the preparation checklist, and, for
physical material (slides, blocks), a shipment the center confirms receiving.

Partners' `referral.info_requested` carries a request; intake's `case.information_provided`
carries the answer. Both travel on platform topics only: a center reads the answer's free text
and the shipments through the authenticated partner API, never from its inbox topic.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from referrals_common.text import NoControlCharacters


class RequestedItemKind(StrEnum):
    """What a center asks for."""

    PATHOLOGY_REVIEW = "pathology_review"
    """The biopsy material itself (stained slides, paraffin blocks) for a re-review: physical
    material, sent by courier and recorded as a shipment; a report may come with it."""
    PATHOLOGY_REPORT = "pathology_report"
    """A (further) pathology, biopsy or immunohistochemistry report."""
    IMAGING = "imaging"
    """Imaging: a radiologist's report or the images (DICOM)."""
    LAB_TEST = "lab_test"
    """A laboratory test result (blood tests, tumour markers, genetic tests)."""
    DOCUMENT = "document"
    """Another document the center names in `detail`."""
    QUESTION = "question"
    """A question the patient answers in words."""
    FAMILY_HISTORY = "family_history"
    """The preparation checklist's family history."""
    MEDICATIONS = "medications"
    """The preparation checklist's current medications with doses."""
    ALLERGIES = "allergies"
    """The preparation checklist's allergies and intolerances."""


PREPARATION_ITEMS = frozenset(
    {RequestedItemKind.FAMILY_HISTORY, RequestedItemKind.MEDICATIONS, RequestedItemKind.ALLERGIES}
)
"""Items the patient answers by completing the preparation checklist."""
DOCUMENT_ITEMS = frozenset(
    {
        RequestedItemKind.PATHOLOGY_REVIEW,
        RequestedItemKind.PATHOLOGY_REPORT,
        RequestedItemKind.IMAGING,
        RequestedItemKind.LAB_TEST,
        RequestedItemKind.DOCUMENT,
    }
)
"""Items the patient answers with documents (or, for a pathology review, a shipment)."""

CenterText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    NoControlCharacters,
]


class RequestedItem(BaseModel):
    """One thing a center needs: its kind and, in the center's words, what exactly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: RequestedItemKind = Field(description="What kind of information")
    detail: CenterText = Field(
        description="What exactly, in the center's words (clinical content only, no personal "
        "data): `HER2 re-testing on the original block`, `Ki-67 index`"
    )


class ShipmentMaterial(StrEnum):
    """Physical material sent to a center."""

    SLIDES = "slides"
    BLOCKS = "blocks"
    SLIDES_AND_BLOCKS = "slides_and_blocks"
    OTHER = "other"


class Shipment(BaseModel):
    """Physical material sent to the center by courier, as the patient or clinic recorded it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shipment_id: UUID = Field(description="The shipment; the center confirms receipt by this id")
    material: ShipmentMaterial = Field(description="What was sent")
    carrier: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=2, max_length=80),
        NoControlCharacters,
    ] = Field(description="The courier: `DHL Express`, `Nova Poshta`", examples=["DHL Express"])
    tracking_number: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{3,39}$")
    ] = Field(description="The courier's tracking number", examples=["1234567890"])
    sent_on: date = Field(description="The day the material was handed to the courier")


__all__ = [
    "DOCUMENT_ITEMS",
    "PREPARATION_ITEMS",
    "CenterText",
    "RequestedItem",
    "RequestedItemKind",
    "Shipment",
    "ShipmentMaterial",
]
