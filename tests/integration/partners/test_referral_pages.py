"""A center's referrals in pages (`limit`, `cursor`, the `Link` header) over real Kafka and
PostgreSQL: newest offer first, each once while new offers arrive, a cursor only for its own
center and filter."""

from __future__ import annotations

import re

import pytest

from referrals_common.contracts import ReferralOffered

from .conftest import Inbox, api_client, key_for, partners_running
from .test_routing_over_kafka import BERLIN, MUNICH, open_case

pytestmark = pytest.mark.integration


def _next(response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    found = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert found, link
    return found.group(1)


async def test_a_center_pages_through_its_referrals_while_new_offers_arrive(make_runtime):
    rt = await make_runtime()
    bootstrap = rt.settings.kafka.bootstrap_servers
    async with partners_running(rt), api_client(rt) as api, Inbox(bootstrap, BERLIN) as berlin:
        offered = []
        for _ in range(7):
            case_id, _ = await open_case(rt, documents=1)
            offered.append(
                str(
                    ReferralOffered.model_validate(
                        (await berlin.offer_for(case_id))["data"]
                    ).referral_id
                )
            )
        headers = {"X-Api-Key": await key_for(rt, "center", BERLIN)}

        whole = await api.get("/v1/partner/referrals", headers=headers)
        assert "link" not in whole.headers  # without limit, the whole list as before
        assert [r["id"] for r in whole.json()] == list(reversed(offered))

        seen, arrived = [], []
        r = await api.get("/v1/partner/referrals?limit=3&status=offered", headers=headers)
        while True:
            assert r.status_code == 200, r.text
            seen += [x["id"] for x in r.json()]
            if (after := _next(r)) is None:
                break
            case_id, _ = await open_case(rt, documents=1)
            arrived.append(
                str(
                    ReferralOffered.model_validate(
                        (await berlin.offer_for(case_id))["data"]
                    ).referral_id
                )
            )
            r = await api.get(after, headers=headers)
        assert seen == list(reversed(offered))  # each once, none skipped, newest first
        assert len(arrived) == 2 and not set(arrived) & set(seen)

        # The cursor is Berlin's, for offered referrals: refused anywhere else.
        first = await api.get("/v1/partner/referrals?limit=3&status=offered", headers=headers)
        cursor = _next(first).split("cursor=")[1]
        payload, _, signature = cursor.rpartition(".")
        # The signature's first character: every one of its bits counts (the last one's lowest
        # bits may be base64 padding, which decodes the same: a 1-in-16 false pass).
        tampered = f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
        munich = {"X-Api-Key": await key_for(rt, "center", MUNICH)}
        for path, who in [
            (f"/v1/partner/referrals?limit=3&status=offered&cursor={cursor}", munich),
            (f"/v1/partner/referrals?limit=3&cursor={cursor}", headers),
            (f"/v1/partner/referrals?limit=3&status=offered&cursor={tampered}", headers),
        ]:
            refused = await api.get(path, headers=who)
            assert refused.status_code == 422, refused.text
            assert refused.json()["errors"][0]["code"] == "invalid_cursor"
        assert (await api.get("/v1/partner/referrals", headers=munich)).json() == []
