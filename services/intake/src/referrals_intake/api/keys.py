"""The keys that verify case access tokens, for the other services (records verifies a case's
token with them, offline). Public: no credentials, no case data."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from referrals_intake.api.deps import RuntimeDep

router = APIRouter(prefix="/v1")


@router.get("/.well-known/jwks.json", summary="Keys that verify case access tokens")
async def jwks(runtime: RuntimeDep) -> dict[str, Any]:
    """Public keys only: other services (records) verify case tokens with them, offline."""
    return runtime.jwks
