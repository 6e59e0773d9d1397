"""Why this center, as the patient reads it (`GET /v1/cases/{id}/routing`), on real PostgreSQL
and Kafka: in the language the case came with (`case.ready_for_referral`'s `locale`), the center's
country by name, the other language on `Accept-Language`, English for a case from an intake that
did not send its language; routing's English rationale stays in `why`."""

from __future__ import annotations

import uuid

import pytest

from referrals_common.contracts import CaseReadyForReferral, new_event

from ..conftest import publish
from .conftest import Inbox, api_client, case_headers, document_stored, partners_running

pytestmark = pytest.mark.integration

BERLIN = "test-breast-berlin"


async def routed_case(rt, locale: str | None) -> uuid.UUID:
    """A breast cancer case with German and English documents, ready, in `locale`."""
    case_id = uuid.uuid4()
    stored = [document_stored(case_id) for _ in range(2)]
    bootstrap = rt.settings.kafka.bootstrap_servers
    await publish(bootstrap, *stored)
    await publish(
        bootstrap,
        new_event(
            CaseReadyForReferral(
                case_id=case_id,
                clinical={
                    "icd10": "C50.9",
                    "age_group": "adult",
                    "reasons": ["choose_treatment"],
                    "questions": [],
                },
                destination={"preference": "countries", "countries": ["DE"]},
                cross_border_transfer_allowed=True,
                document_ids=[s.data.document_id for s in stored],
                document_languages=["de", "en"],
                locale=locale,
            )
        ),
    )
    return case_id


async def test_the_patient_reads_why_this_center_in_the_case_s_language(make_runtime):
    rt = await make_runtime()
    async with (
        partners_running(rt),
        api_client(rt) as api,
        Inbox(rt.settings.kafka.bootstrap_servers, BERLIN) as berlin,
    ):
        ukrainian = await routed_case(rt, "uk")
        older = await routed_case(rt, None)
        await berlin.offer_for(ukrainian)
        await berlin.offer_for(older)

        r = await api.get(f"/v1/cases/{ukrainian}/routing", headers=case_headers(ukrainian))
        assert r.status_code == 200, r.text
        assert r.headers["content-language"] == "uk"
        body = r.json()
        assert body["language"] == "uk"
        assert body["center_country"] == "DE" and body["center_country_name"] == "Німеччина"
        assert "Країна центру: Німеччина." in body["explanation"]
        assert "Центр розглядає такий діагноз (C50.9)." in body["explanation"]
        assert "Центр читає мови ваших документів: німецька і англійська." in body["explanation"]
        assert any(s.startswith("Центр зазвичай надає висновок за") for s in body["explanation"])
        assert "C50" in body["why"]  # routing's own rationale, in English, as before

        english = await api.get(
            f"/v1/cases/{ukrainian}/routing",
            headers={**case_headers(ukrainian), "Accept-Language": "en-GB"},
        )
        assert english.headers["content-language"] == "en"
        assert english.json()["center_country_name"] == "Germany"
        assert "The center's country: Germany." in english.json()["explanation"]
        assert english.json()["explanation"] != body["explanation"]

        # A case whose intake did not say its language: English.
        plain = (await api.get(f"/v1/cases/{older}/routing", headers=case_headers(older))).json()
        assert plain["language"] == "en" and plain["center_country_name"] == "Germany"
        assert (
            "The center reads the languages of your documents: German and English."
            in (plain["explanation"])
        )
