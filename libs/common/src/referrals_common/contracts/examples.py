"""One example of every event type, for the AsyncAPI document's messages and for tests.

Each example is a valid payload a consumer could receive (built fresh by calling its factory), with
made-up ids and no personal data: the case of a breast cancer patient from Kyiv offered to a
German center.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

from .credentials import CenterCredentialIssued, CenterCredentialRevoked, credential_key
from .envelope import EventData
from .front_ends import FrontEndWebhookChanged, FrontEndWebhookPingRequested, front_end_key
from .information import RequestedItem, RequestedItemKind, Shipment, ShipmentMaterial
from .intake import (
    AgeGroup,
    CaseCenterChosen,
    CaseContactShared,
    CaseFollowUpAsked,
    CaseFurtherOpinionRequested,
    CaseInformationProvided,
    CaseMeetingCancelled,
    CaseMeetingSlotChosen,
    CasePolicyShared,
    CaseReadyForReferral,
    CaseStatus,
    CaseStatusChanged,
    CaseSubmitted,
    CaseWithdrawn,
    ClinicalSummary,
    Destination,
    DestinationPreference,
    Medication,
    Preparation,
    ReferralReason,
    Stage,
)
from .meetings import MeetingMode, MeetingPlace, MeetingSlot, PatientCancelReason, ReminderBefore
from .notifications import NotificationFailed, NotificationSent, WebhookAttempted
from .partners import (
    CaseUnroutable,
    CentersProposed,
    DiagnosisVerdict,
    ExpiryReason,
    MeetingChange,
    MeetingEnd,
    OfferedDocument,
    OpinionOutcome,
    Price,
    ProposedCenter,
    RankCriterion,
    ReferralAccepted,
    ReferralDeclined,
    ReferralExpired,
    ReferralFollowUpAnswered,
    ReferralFollowUpAsked,
    ReferralInfoReminder,
    ReferralInfoRequested,
    ReferralInformationReceived,
    ReferralMeetingBooked,
    ReferralMeetingCancelled,
    ReferralMeetingChanged,
    ReferralMeetingEnded,
    ReferralMeetingOffered,
    ReferralMeetingReminder,
    ReferralOffered,
    ReferralOpinionDelivered,
    ReferralRequested,
    ReferralResumed,
    ReferralShipmentReceived,
    ReminderKind,
    RoutingExplanation,
    RoutingMatch,
    RoutingReason,
    RoutingReasonCode,
    RoutingRule,
    StageVerdict,
    TreatmentVerdict,
    document_fetch_path,
)
from .records import DocumentKind, DocumentRejected, DocumentStored
from .translation import (
    DocumentLanguageAccepted,
    DocumentTranslationRequired,
    DocumentUnreadable,
    LanguageShare,
)

ROUTING_EXPLANATION = RoutingExplanation(
    rank=1,
    eligible_count=2,
    considered_count=41,
    chosen_by_patient=False,
    matched=[
        RoutingMatch(
            rule=RoutingRule.DIAGNOSIS,
            codes=["C50", "C50.9"],
            text="Your center reviews C50, which covers the case's C50.9.",
        ),
        RoutingMatch(
            rule=RoutingRule.AGE_GROUP, codes=["adult"], text="Your center sees adult patients."
        ),
        RoutingMatch(
            rule=RoutingRule.DESTINATION,
            codes=["DE"],
            text="Your center is in Germany, a country the patient named and consented to "
            "cross-border transfer.",
        ),
        RoutingMatch(
            rule=RoutingRule.LANGUAGES,
            codes=["de", "en"],
            text="Your reviewers read every language the documents are in: German and English.",
        ),
        RoutingMatch(
            rule=RoutingRule.CAPACITY,
            places_taken=3,
            weekly_capacity=20,
            text="Your center had places left this week (3 of 20 taken).",
        ),
        RoutingMatch(
            rule=RoutingRule.TURNAROUND,
            turnaround_days=7,
            text="Your center's usual opinion turnaround is 7 days.",
        ),
    ],
    reasons=[
        RoutingReason(
            code=RoutingReasonCode.RANKED_FIRST,
            criterion=RankCriterion.TURNAROUND,
            text="Ranked first of 2 eligible centers (41 considered): the shortest opinion "
            "turnaround.",
        ),
        RoutingReason(
            code=RoutingReasonCode.REROUTED_AFTER_DECLINE,
            count=1,
            text="Offered after 1 other center declined it.",
        ),
    ],
)
"""Why `charite-berlin` was offered the sample case (the sample `referral.offered` carries it)."""

CASE = UUID("3f1d2c4b-8a9e-4b7f-9c61-2d5e8f0a1b23")
REFERRAL = UUID("9b2e7c15-4d3a-4f68-a1b0-c7d8e9f01234")
DOC_A = UUID("5a6b7c8d-1e2f-4a3b-8c4d-5e6f7a8b9c0d")
DOC_B = UUID("6b7c8d9e-2f3a-4b4c-9d5e-6f7a8b9c0d1e")
NOTIFICATION = UUID("7c8d9e0f-3a4b-4c5d-8e6f-7a8b9c0d1e2f")
TRIGGER_EVENT = UUID("8d9e0f1a-4b5c-4d6e-9f7a-8b9c0d1e2f3a")
REQUEST = UUID("1e2f3a4b-5c6d-4e7f-8a9b-0c1d2e3f4a5b")
SHIPMENT = UUID("2f3a4b5c-6d7e-4f8a-9b0c-1d2e3f4a5b6c")
QUESTION = UUID("3a4b5c6d-7e8f-4a9b-8c0d-2e3f4a5b6c7d")
NOW = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
MEETING = UUID("4b5c6d7e-8f9a-4b0c-9d1e-3f4a5b6c7d8e")
SLOT_1 = UUID("5c6d7e8f-9a0b-4c1d-8e2f-4a5b6c7d8e9f")
SLOT_2 = UUID("6d7e8f9a-0b1c-4d2e-9f3a-5b6c7d8e9f0a")
KYIV = timezone(timedelta(hours=2))

CLINICAL = ClinicalSummary(
    icd10="C50.9",
    morphology="8500/3",
    stage=Stage(tnm="cT2N1M0", group="IIB"),
    age_group=AgeGroup.ADULT,
    reasons=[ReferralReason.CHOOSE_TREATMENT, ReferralReason.DRUG_OPTIONS],
    questions=[
        "Is breast-conserving surgery possible after neoadjuvant chemotherapy?",
        "Should the tumour be tested for HER2-low status?",
    ],
)
DESTINATION = Destination(preference=DestinationPreference.COUNTRIES, countries=["DE", "PL"])


MEETING_PLACE = MeetingPlace(
    mode=MeetingMode.VIDEO,
    join_url="https://video.charite.example/room/tumor-board-7",
    time_zone="Europe/Berlin",
    language="en",
)
SLOT_A = MeetingSlot(
    slot_id=SLOT_1,
    starts_at=NOW + timedelta(days=25, hours=4),
    ends_at=NOW + timedelta(days=25, hours=5),
)
SLOT_B = MeetingSlot(
    slot_id=SLOT_2,
    starts_at=NOW + timedelta(days=26, hours=5),
    ends_at=NOW + timedelta(days=26, hours=6),
)

EXAMPLES: dict[type[EventData], Callable[[], EventData]] = {
    CaseSubmitted: lambda: CaseSubmitted(
        case_id=CASE,
        clinical=CLINICAL,
        destination=DESTINATION,
        locale="uk",
        processing_consent_version="2026-01",
        cross_border_consent_version="2026-01",
        submitted_at=NOW,
    ),
    CaseStatusChanged: lambda: CaseStatusChanged(
        case_id=CASE,
        from_status=CaseStatus.SUBMITTED,
        to_status=CaseStatus.ACTION_REQUIRED,
        reason_code="translation_required",
        reason="The pathology report is in Ukrainian; a German or English translation is needed.",
    ),
    CaseReadyForReferral: lambda: CaseReadyForReferral(
        case_id=CASE,
        clinical=CLINICAL,
        destination=DESTINATION,
        cross_border_transfer_allowed=True,
        document_ids=[DOC_A, DOC_B],
        document_languages=["en", "de"],
        preparation=Preparation(
            family_history="mother: breast cancer at 52",
            medications=[Medication(medicine="Letrozole", dose="2.5 mg once a day")],
            allergies=["penicillin"],
        ),
    ),
    CaseWithdrawn: lambda: CaseWithdrawn(case_id=CASE, reason="patient_request"),
    CaseContactShared: lambda: CaseContactShared(
        case_id=CASE,
        sealed_contact="AQ" + "x" * 120,
        locale="uk",
        front_end="kyiv-clinic",
    ),
    CasePolicyShared: lambda: CasePolicyShared(
        case_id=CASE, referral_id=REFERRAL, sealed_policy="AQ" + "p" * 120
    ),
    DocumentStored: lambda: DocumentStored(
        case_id=CASE,
        document_id=DOC_B,
        kind=DocumentKind.TRANSLATION,
        media_type="application/pdf",
        size_bytes=482_113,
        sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        object_key=f"cases/{CASE}/documents/{DOC_B}",
        translation_of=DOC_A,
        stored_at=NOW,
    ),
    DocumentRejected: lambda: DocumentRejected(
        case_id=CASE,
        document_id=DOC_A,
        reason="decompression_bomb",
        detail="The ZIP archive expands to more than 2 GiB.",
    ),
    DocumentLanguageAccepted: lambda: DocumentLanguageAccepted(
        case_id=CASE,
        document_id=DOC_B,
        languages=[
            LanguageShare(language="de", share=0.93),
            LanguageShare(language="la", share=0.05),
        ],
        main_language="de",
        confidence=0.97,
        pages=4,
        method="ocr",
    ),
    DocumentTranslationRequired: lambda: DocumentTranslationRequired(
        case_id=CASE,
        document_id=DOC_A,
        detected_language="uk",
        acceptable_languages=["en", "de", "pl"],
        confidence=0.99,
    ),
    DocumentUnreadable: lambda: DocumentUnreadable(
        case_id=CASE,
        document_id=DOC_A,
        reason="no_text",
        detail="OCR found no text on any of the 3 pages.",
    ),
    ReferralRequested: lambda: ReferralRequested(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        center_country="DE",
        attempt=1,
        answer_due_at=NOW + timedelta(days=3),
        rationale="Breast cancer board with German and English reports; HER2-low trials open.",
    ),
    ReferralAccepted: lambda: ReferralAccepted(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        expected_opinion_at=datetime(2026, 3, 28, 12, 0, tzinfo=KYIV),
    ),
    ReferralDeclined: lambda: ReferralDeclined(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        reason="no_capacity",
        detail="The tumour board is fully booked until May.",
    ),
    ReferralExpired: lambda: ReferralExpired(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        reason=ExpiryReason.INFORMATION_NOT_PROVIDED,
        request_id=REQUEST,
    ),
    ReferralInfoRequested: lambda: ReferralInfoRequested(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        message="The tumour board wants to re-review the biopsy before it gives its opinion.",
        request_id=REQUEST,
        items=[
            RequestedItem(
                kind=RequestedItemKind.PATHOLOGY_REVIEW,
                detail="The stained slides and one paraffin block of the core biopsy",
            ),
            RequestedItem(kind=RequestedItemKind.LAB_TEST, detail="Ki-67 index"),
        ],
        due_at=NOW + timedelta(days=14),
        resumes_as="accepted",
    ),
    ReferralInfoReminder: lambda: ReferralInfoReminder(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        request_id=REQUEST,
        reminder=ReminderKind.DAYS_BEFORE,
        due_at=NOW + timedelta(days=14),
    ),
    ReferralResumed: lambda: ReferralResumed(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        request_id=REQUEST,
        status="accepted",
        expected_opinion_at=datetime(2026, 4, 4, 12, 0, tzinfo=KYIV),
    ),
    ReferralShipmentReceived: lambda: ReferralShipmentReceived(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        request_id=REQUEST,
        shipment_id=SHIPMENT,
        received_at=NOW + timedelta(days=5),
    ),
    ReferralInformationReceived: lambda: ReferralInformationReceived(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        request_id=REQUEST,
        documents=[
            OfferedDocument(
                document_id=DOC_B,
                kind=DocumentKind.LAB_RESULTS,
                media_type="application/pdf",
                fetch_via=document_fetch_path(REFERRAL, DOC_B),
            )
        ],
        shipments=1,
        written_answer=True,
        expected_opinion_at=datetime(2026, 4, 4, 12, 0, tzinfo=KYIV),
    ),
    CentersProposed: lambda: CentersProposed(
        case_id=CASE,
        proposals=[
            ProposedCenter(
                rank=1,
                center_code="charite-berlin",
                center_name="Charité Comprehensive Cancer Center",
                center_country="DE",
                turnaround_days=7,
                price=Price(amount=900, currency="EUR"),
                why="Breast cancer board; reads English and German; opinion in 7 days.",
            ),
            ProposedCenter(
                rank=2,
                center_code="nio-warszawa",
                center_name="National Institute of Oncology, Warsaw",
                center_country="PL",
                turnaround_days=10,
                why="Ranked 2 of 2: opinion in 10 days, the first center's in 7.",
            ),
        ],
        choose_by=NOW + timedelta(days=3),
    ),
    CaseFurtherOpinionRequested: lambda: CaseFurtherOpinionRequested(
        case_id=CASE,
        opinion_round=2,
        reason="conflicting_opinions",
        share_earlier_opinions=True,
        shared_document_ids=[DOC_B],
    ),
    CaseCenterChosen: lambda: CaseCenterChosen(case_id=CASE, center_code="nio-warszawa"),
    CaseFollowUpAsked: lambda: CaseFollowUpAsked(
        case_id=CASE,
        question_id=QUESTION,
        referral_id=REFERRAL,
        question="Can the trial you mention be joined from Ukraine?",
        asked_at=NOW + timedelta(days=20),
    ),
    ReferralFollowUpAsked: lambda: ReferralFollowUpAsked(
        case_id=CASE, referral_id=REFERRAL, center_code="charite-berlin", question_id=QUESTION
    ),
    ReferralFollowUpAnswered: lambda: ReferralFollowUpAnswered(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        question_id=QUESTION,
        answer="Yes: the trial has a site in Warsaw; your oncologist can refer you.",
        answered_at=NOW + timedelta(days=22),
        document_ids=[DOC_B],
    ),
    CaseInformationProvided: lambda: CaseInformationProvided(
        case_id=CASE,
        request_id=REQUEST,
        referral_id=REFERRAL,
        answer="The block is at the regional oncology centre; the slides were sent today.",
        new_document_ids=[DOC_B],
        document_ids=[DOC_A, DOC_B],
        shipments=[
            Shipment(
                shipment_id=SHIPMENT,
                material=ShipmentMaterial.SLIDES_AND_BLOCKS,
                carrier="DHL Express",
                tracking_number="1234567890",
                sent_on=NOW.date(),
            )
        ],
    ),
    ReferralOpinionDelivered: lambda: ReferralOpinionDelivered(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        opinion_document_id=UUID("0f1a2b3c-5d6e-4f7a-8b9c-0d1e2f3a4b5c"),
        outcome=OpinionOutcome(
            diagnosis=DiagnosisVerdict.REFINED,
            icd10="C50.4",
            stage=StageVerdict.CONFIRMED,
            treatment=TreatmentVerdict.ALTERNATIVE_PROPOSED,
            additional_tests=["HER2 in situ hybridisation on block A2"],
            clinical_trials=True,
            clinical_trials_detail="A HER2-low antibody-drug conjugate trial is recruiting.",
        ),
    ),
    CaseUnroutable: lambda: CaseUnroutable(
        case_id=CASE,
        reason="attempts_exhausted",
        centers_tried=["charite-berlin", "nio-warszawa"],
    ),
    ReferralOffered: lambda: ReferralOffered(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        clinical=CLINICAL.model_copy(update={"questions": []}),
        documents=[
            OfferedDocument(
                document_id=doc,
                kind=kind,
                media_type="application/pdf",
                fetch_via=document_fetch_path(REFERRAL, doc),
            )
            for doc, kind in ((DOC_A, "pathology_report"), (DOC_B, "translation"))
        ],
        answer_due_at=(NOW + timedelta(days=3)).astimezone(KYIV),
        routing=ROUTING_EXPLANATION,
    ),
    ReferralMeetingOffered: lambda: ReferralMeetingOffered(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        meeting_id=MEETING,
        place=MEETING_PLACE,
        slots=[SLOT_A, SLOT_B],
        note="Please bring your questions; an interpreter can join if you ask us.",
    ),
    CaseMeetingSlotChosen: lambda: CaseMeetingSlotChosen(
        case_id=CASE,
        referral_id=REFERRAL,
        meeting_id=MEETING,
        slot_id=SLOT_2,
        time_zone="Europe/Kyiv",
    ),
    ReferralMeetingBooked: lambda: ReferralMeetingBooked(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        meeting_id=MEETING,
        slot=SLOT_B,
        place=MEETING_PLACE,
        patient_time_zone="Europe/Kyiv",
        sequence=0,
    ),
    ReferralMeetingChanged: lambda: ReferralMeetingChanged(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        meeting_id=MEETING,
        change=MeetingChange.BOOKED,
        slot=SLOT_B,
    ),
    ReferralMeetingReminder: lambda: ReferralMeetingReminder(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        meeting_id=MEETING,
        before=ReminderBefore.DAY_BEFORE,
        slot=SLOT_B,
        place=MEETING_PLACE,
        patient_time_zone="Europe/Kyiv",
    ),
    CaseMeetingCancelled: lambda: CaseMeetingCancelled(
        case_id=CASE,
        referral_id=REFERRAL,
        meeting_id=MEETING,
        reason=PatientCancelReason.CANNOT_ATTEND,
    ),
    ReferralMeetingCancelled: lambda: ReferralMeetingCancelled(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        meeting_id=MEETING,
        cancelled_by="patient",
        patient_reason=PatientCancelReason.CANNOT_ATTEND,
        slot=SLOT_B,
        patient_time_zone="Europe/Kyiv",
        sequence=1,
    ),
    ReferralMeetingEnded: lambda: ReferralMeetingEnded(
        case_id=CASE,
        referral_id=REFERRAL,
        center_code="charite-berlin",
        meeting_id=MEETING,
        outcome=MeetingEnd.HELD,
        slot=SLOT_B,
    ),
    NotificationSent: lambda: NotificationSent(
        case_id=CASE,
        notification_id=NOTIFICATION,
        trigger="translation_required",
        trigger_event_id=TRIGGER_EVENT,
        channel="email",
        sent_at=NOW,
    ),
    NotificationFailed: lambda: NotificationFailed(
        case_id=CASE,
        notification_id=NOTIFICATION,
        trigger="referral_accepted",
        trigger_event_id=TRIGGER_EVENT,
        channel="sms",
        attempts=5,
        error_code="provider_unavailable",
        failed_at=NOW,
    ),
    FrontEndWebhookChanged: lambda: FrontEndWebhookChanged(
        case_id=front_end_key("Qx7fK2mP9aZt"),
        front_end="Qx7fK2mP9aZt",
        url="https://clinic.example.org/hooks/referrals",
        sealed_secret="AQ" + "s" * 120,  # the shape of a sealed box, not a real one
        version=1,
    ),
    FrontEndWebhookPingRequested: lambda: FrontEndWebhookPingRequested(
        case_id=front_end_key("Qx7fK2mP9aZt"),
        front_end="Qx7fK2mP9aZt",
        ping_id=UUID("5f0c8a1e-2b7d-4c3e-9f61-0d2a4b6c8e10"),
    ),
    CenterCredentialIssued: lambda: CenterCredentialIssued(
        case_id=credential_key("Vb7nR0cW3yPq"),
        center_code="charite-berlin",
        key_id="Vb7nR0cW3yPq",
        key_sha256="9f2c" + "0" * 56 + "7a1e",  # the shape of a digest, not a real key's
        issued_at=NOW,
    ),
    CenterCredentialRevoked: lambda: CenterCredentialRevoked(
        case_id=credential_key("Vb7nR0cW3yPq"),
        center_code="charite-berlin",
        key_id="Vb7nR0cW3yPq",
        revoked_at=NOW + timedelta(days=90),
    ),
    WebhookAttempted: lambda: WebhookAttempted(
        case_id=CASE,
        front_end="Qx7fK2mP9aZt",
        delivery_id=NOTIFICATION,
        event="referral_accepted",
        attempt=1,
        attempted_at=NOW,
        status_code=503,
        outcome="retrying",
        error_code="webhook_http_error",
        next_attempt_at=NOW + timedelta(seconds=30),
    ),
}


def example(event_type: str) -> EventData:
    """A fresh example payload of `event_type` (KeyError for an unknown type)."""
    by_type = {model.event_type: factory for model, factory in EXAMPLES.items()}
    return by_type[event_type]()
