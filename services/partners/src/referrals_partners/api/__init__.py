"""Partners' HTTP API, `/v1`, one module per audience; every error is an RFC 9457 problem.

- `centers`: `/v1/partner/...`, a cancer center with its own API key.
- `operators`: `/v1/ops/...`, the platform's operators with their keys.
- `front_end`: `/v1/cases/{case_id}/routing`, a patient's front end with the case access token.

`deps` binds the edge's dependencies (`referrals_common.edge.deps`) to partners' runtime and key
table.
"""

from __future__ import annotations

from fastapi import APIRouter

from referrals_common.service_app import ApiTag
from referrals_partners.api import centers, front_end, operators

router = APIRouter()
"""Every audience's routes, the route objects as they are (the app documents and tags the
router's own routes), in the order the OpenAPI document has always listed them."""
router.routes.extend([*centers.router.routes, *operators.router.routes, *front_end.router.routes])

TAGS = (
    ApiTag(
        "centers",
        "A cancer center answers the referrals offered to it, with its own API key.",
        ("/v1/partner/",),
    ),
    ApiTag(
        "operators",
        "The platform's operators manage the center registry and follow routing.",
        ("/v1/ops/",),
    ),
    ApiTag(
        "front-end",
        "A patient's front end, with the case access token, reads where the case went.",
        ("/v1/cases/",),
    ),
)

__all__ = ["TAGS", "router"]
