"""One-off set-up of a fresh platform: sample centers, their inbox topics and the demo's keys.

Run as `python -m devstack.provision` with the platform's environment (every service's settings
read their own variables from it). It prints one JSON object on stdout:

    {"front_end": "rfk_…", "ops": "ops_…", "centers": {"DE-HD-NCT": "ccr_…", …}}

Each center gets one key, issued by partners, that both partners (answers) and records
(documents, the opinion) accept, as a real center would: records learns it from partners' event
(`referrals.center.credential_issued.v1`) once partners' relay and records' consumer run. Keys
are shown once and stored hashed; the caller keeps this output in the stack's private directory
for the demo.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TypedDict

DEMO_FRONT_END = "demo-front-end"
"""The partner front end the demo plays (an intake API client)."""


class SampleKeys(TypedDict):
    """What `provision` prints: the demo front end's, the operator's and each center's key."""

    front_end: str
    ops: str
    centers: dict[str, str]


async def provision() -> SampleKeys:
    from sqlalchemy import select
    from sqlmodel import col

    from referrals_common.db import Database
    from referrals_intake.clients import register_client
    from referrals_intake.config import IntakeSettings
    from referrals_partners.centers import ensure_inbox_topics, issue_key, load_seed
    from referrals_partners.config import PartnersSettings
    from referrals_partners.models import CenterRow

    intake, partners = IntakeSettings(), PartnersSettings()
    intake_db, partners_db = Database(intake.postgres), Database(partners.postgres)
    try:
        await load_seed(partners_db, partners.seed_file or None)
        await ensure_inbox_topics(partners_db, partners.kafka)
        async with intake_db.unit_of_work() as uow:
            front_end = await register_client(
                uow, DEMO_FRONT_END, intake.api_key_pepper.get_secret_value().encode()
            )
            await uow.commit()
        pepper = partners.api_key_pepper.get_secret_value().encode()
        centers: dict[str, str] = {}
        async with partners_db.unit_of_work() as uow:
            codes = (await uow.session.execute(select(col(CenterRow.code)))).scalars().all()
            ops = await issue_key(uow, pepper, role="ops", name="local operator")
            for code in sorted(codes):
                centers[code] = await issue_key(
                    uow, pepper, role="center", name=f"{code} (sample)", center_code=code
                )
            await uow.commit()
    finally:
        for db in (intake_db, partners_db):
            await db.dispose()
    return SampleKeys(front_end=front_end, ops=ops, centers=centers)


def main() -> None:
    keys = asyncio.run(provision())
    sys.stdout.write(json.dumps(keys) + "\n")


if __name__ == "__main__":
    main()
