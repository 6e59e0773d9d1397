"""A case's texts in its own language, on real PostgreSQL and Kafka: a Ukrainian case and an
English case go through the same events, and each reads its next step, its timeline, its
document checks (with the languages by name) and its destination's countries in its language;
`Accept-Language` may ask for the other; an entry stored before the codes were kept reads as it
was stored; the live stream speaks the case's language too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from referrals_common.contracts import DocumentTranslationRequired, ReferralRequested, new_event
from referrals_intake.models import TimelineEntry

from ..conftest import wait_for
from .conftest import new_client_key, open_case
from .test_case_events import events, next_event, served  # noqa: F401 - `served` is a fixture
from .test_lifecycle_over_kafka import accepted, intake_running, publish_twice, stored

pytestmark = pytest.mark.integration

EXPECTED = {
    "uk": {
        "draft_step": "Завантажте свої документи (щонайменше патогістологічний висновок або "
        "виписку з медичної карти), дайте згоду, а потім подайте справу.",
        "countries": ["Німеччина", "Австрія"],
        "language_name": "румунська",
        "acceptable": [
            {"code": "en", "name": "англійська"},
            {"code": "de", "name": "німецька"},
        ],
        "explanation": "Мова документа: румунська. Завантажте, будь ласка, переклад. "
        "Мова перекладу: англійська або німецька.",
        "reason": "Патогістологічний висновок: мова документа — румунська. Потрібен переклад. "
        "Мова перекладу: англійська або німецька.",
        "next_step": "Завантажте переклад документа, названого в історії справи, однією з "
        "указаних там мов.",
        "referred": "Справу направлено до онкологічного центру charite-berlin (Німеччина), "
        "спроба 1. Центр відповість до 8 грудня 2026, 10:30 UTC.",
        "waiting": "Зачекайте на відповідь центру; ми вам повідомимо.",
    },
    "en": {
        "draft_step": "Upload your documents (at least a pathology report or a discharge "
        "summary), give your consent, then submit the case.",
        "countries": ["Germany", "Austria"],
        "language_name": "Romanian",
        "acceptable": [{"code": "en", "name": "English"}, {"code": "de", "name": "German"}],
        "explanation": "The document is in Romanian. Please upload a translation into English "
        "or German.",
        "reason": "Pathology report: the document is in Romanian; it needs a translation into "
        "English or German.",
        "next_step": "Upload a translation of the document named in the timeline into one of "
        "the languages listed there.",
        "referred": "Referred to cancer center charite-berlin (Germany), attempt 1; answer due "
        "by 8 December 2026, 10:30 UTC.",
        "waiting": "Wait for the center's answer; we will tell you.",
    },
}
DUE = datetime(2026, 12, 8, 10, 30, tzinfo=UTC)


async def submitted_case(api, api_key, locale: str):
    """A submitted case in `locale` going to Germany or Austria, with its pathology report's
    document id (stored, not yet checked)."""
    raw_id, headers = await open_case(
        api,
        api_key,
        locale=locale,
        destination={"preference": "countries", "countries": ["DE", "AT"]},
    )
    case_id = uuid.UUID(raw_id)
    report, report_stored = stored(case_id, "pathology_report")
    return case_id, headers, report, report_stored


async def test_a_ukrainian_and_an_english_case_each_read_in_their_own_language(
    api, api_key, runtime
):
    bootstrap = runtime.settings.kafka.bootstrap_servers
    cases = {}
    for locale in ("uk", "en"):
        cases[locale] = await submitted_case(api, api_key, locale)
        case_id, headers, _, _ = cases[locale]
        draft = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
        assert draft["next_step"] == EXPECTED[locale]["draft_step"]
        assert draft["destination"]["countries"] == ["DE", "AT"]
        assert draft["destination"]["country_names"] == EXPECTED[locale]["countries"]
        head = case_id.hex[:8].upper()
        assert draft["reference"] == f"{head[:4]}-{head[4:]}"

    async with intake_running(runtime):
        await publish_twice(bootstrap, *(stored_event for *_, stored_event in cases.values()))
        for case_id, headers, _, _ in cases.values():

            async def known(case_id=case_id, headers=headers):
                view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
                return bool(view["documents"]) or None

            await wait_for(known)
            for kind in ("processing", "cross_border"):
                r = await api.put(
                    f"/v1/cases/{case_id}/consents/{kind}",
                    json={"version": "2026-01"},
                    headers=headers,
                )
                assert r.status_code == 200, r.text
            r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
            assert r.status_code == 200, r.text

        # The same finding for both: the report is in Romanian; a German or Austrian center
        # reads English or German.
        await publish_twice(
            bootstrap,
            *(
                new_event(
                    DocumentTranslationRequired(
                        case_id=case_id,
                        document_id=report,
                        detected_language="ro",
                        acceptable_languages=["en", "de"],
                        confidence=0.98,
                    )
                )
                for case_id, _, report, _ in cases.values()
            ),
        )
        for locale, (case_id, headers, _, _) in cases.items():

            async def needs_action(case_id=case_id, headers=headers):
                view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
                return view if view["status"] == "action_required" else None

            view = await wait_for(needs_action)
            expected = EXPECTED[locale]
            (document,) = view["documents"]
            assert document["check"] == "translation_required"
            assert document["language"] == "ro"
            assert document["language_name"] == expected["language_name"]
            assert document["acceptable_languages"] == expected["acceptable"]
            assert document["explanation"] == expected["explanation"]
            # the English finding as recorded stays where existing clients read it
            assert document["detail"] == "written in ro; needs a translation into en or de"
            assert view["next_step"] == expected["next_step"]

            r = await api.get(f"/v1/cases/{case_id}/timeline", headers=headers)
            assert r.headers["content-language"] == locale
            last = r.json()[-1]
            assert last["reason_code"] == "translation_required"
            assert last["reason"] == expected["reason"]
            assert last["next_step"] == expected["next_step"]
            assert last["next_step_code"] == "upload_translation"
            assert last["language"] == locale

        # Translations accepted, then routing refers each case to a German center.
        for case_id, headers, report, _ in cases.values():
            translation, translation_stored = stored(case_id, "translation", translation_of=report)
            await publish_twice(bootstrap, translation_stored, accepted(case_id, translation, "de"))

            async def ready(case_id=case_id, headers=headers):
                view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
                return view["status"] == "ready" or None

            await wait_for(ready)
            await publish_twice(
                bootstrap,
                new_event(
                    ReferralRequested(
                        case_id=case_id,
                        referral_id=uuid.uuid4(),
                        center_code="charite-berlin",
                        center_country="DE",
                        attempt=1,
                        answer_due_at=DUE,
                        rationale="Chosen: the one center that suits the case.",
                    )
                ),
            )
        for locale, (case_id, headers, _, _) in cases.items():

            async def referred(case_id=case_id, headers=headers):
                view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
                return view if view["status"] == "referred" else None

            view = await wait_for(referred)
            assert view["next_step"] == EXPECTED[locale]["waiting"]
            timeline = (await api.get(f"/v1/cases/{case_id}/timeline", headers=headers)).json()
            assert timeline[-1]["reason"] == EXPECTED[locale]["referred"]
            assert all(e["language"] == locale for e in timeline)


async def test_accept_language_asks_for_the_other_language_and_the_answer_says_which(api, api_key):
    case_id, headers = await open_case(api, api_key, locale="uk")
    as_is = await api.get(f"/v1/cases/{case_id}", headers=headers)
    assert as_is.headers["content-language"] == "uk"
    assert as_is.json()["next_step"] == EXPECTED["uk"]["draft_step"]

    english = await api.get(
        f"/v1/cases/{case_id}", headers={**headers, "Accept-Language": "en-GB,en;q=0.9"}
    )
    assert english.headers["content-language"] == "en"
    assert english.headers["vary"] == "Accept-Language"
    assert english.json()["next_step"] == EXPECTED["en"]["draft_step"]
    assert english.json()["locale"] == "uk"  # the case's own language is unchanged

    timeline = await api.get(
        f"/v1/cases/{case_id}/timeline", headers={**headers, "Accept-Language": "en"}
    )
    assert timeline.json()[0]["reason"] == "The case was opened."
    assert timeline.json()[0]["language"] == "en"

    # A language the platform does not speak leaves the case's.
    german = await api.get(f"/v1/cases/{case_id}", headers={**headers, "Accept-Language": "de"})
    assert german.headers["content-language"] == "uk"
    assert german.json()["next_step"] == EXPECTED["uk"]["draft_step"]

    # A case switched to English while a draft reads in English from then on, old entries too.
    r = await api.patch(f"/v1/cases/{case_id}", headers=headers, json={"locale": "en"})
    assert r.status_code == 200, r.text
    assert r.json()["next_step"] == EXPECTED["en"]["draft_step"]
    first = (await api.get(f"/v1/cases/{case_id}/timeline", headers=headers)).json()[0]
    assert first["reason"] == "The case was opened."


async def test_an_entry_stored_before_the_codes_were_kept_reads_as_it_was_stored(
    api, api_key, runtime
):
    case_id, headers = await open_case(api, api_key, locale="uk")
    async with runtime.db.unit_of_work() as uow:
        uow.session.add(
            TimelineEntry(
                case_id=uuid.UUID(case_id),
                at=datetime.now(UTC) + timedelta(seconds=1),
                from_status="draft",
                to_status="draft",
                reason_code="referral_accepted",
                reason="Cancer center x accepted the case; opinion expected by 2026-12-30.",
                next_step="Wait for the written opinion; we will tell you.",
            )
        )
        await uow.commit()
    timeline = (await api.get(f"/v1/cases/{case_id}/timeline", headers=headers)).json()
    legacy = timeline[-1]
    assert legacy["reason"] == "Cancer center x accepted the case; opinion expected by 2026-12-30."
    assert legacy["next_step"] == "Wait for the written opinion; we will tell you."
    assert legacy["language"] == "en" and legacy["next_step_code"] is None
    view = (await api.get(f"/v1/cases/{case_id}", headers=headers)).json()
    assert view["next_step"] == "Wait for the written opinion; we will tell you."
    # the entries with codes around it still read in Ukrainian
    assert timeline[0]["reason"] == "Справу відкрито." and timeline[0]["language"] == "uk"


async def test_the_live_stream_speaks_the_case_s_language(served):  # noqa: F811
    client, rt = served
    key = await new_client_key(rt)
    for locale, opened, withdrawn in (
        ("uk", "Справу відкрито.", "Справу відкликано."),
        ("en", "The case was opened.", "The case was withdrawn."),
    ):
        case_id, headers = await open_case(client, key, locale=locale)
        url = f"/v1/cases/{case_id}/events"
        async with client.stream("GET", url, headers=headers) as response:
            assert response.headers["content-language"] == locale
            stream = events(response)
            first = (await next_event(stream)).json()
            assert (first["reason"], first["language"]) == (opened, locale)
            assert first["next_step"] == EXPECTED[locale]["draft_step"]
            r = await client.post(
                f"/v1/cases/{case_id}/withdraw", headers=headers, json={"reason": "patient_request"}
            )
            assert r.status_code == 200, r.text
            second = (await next_event(stream, timeout=5)).json()
            assert second["reason"] == withdrawn and second["next_step"] is None


async def test_what_a_draft_lacks_is_said_in_the_case_s_language_beside_the_english(api, api_key):
    case_id, headers = await open_case(api, api_key, locale="uk")
    r = await api.post(f"/v1/cases/{case_id}/submit", headers=headers)
    assert r.status_code == 422 and r.json()["type"].endswith("submission-incomplete")
    problem = r.json()
    assert [item["code"] for item in problem["missing_items"]] == [
        "diagnosis_evidence",
        "processing_consent",
        "cross_border_consent",
    ]
    assert problem["missing_items"][1]["text"] == "Дайте згоду на обробку даних про ваше здоров’я."
    # `missing` keeps its English entries, which existing front ends match
    assert problem["missing"][1] == "consent to the processing of health data"
