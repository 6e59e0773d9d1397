"""The platform's own FHIR CodeSystems, where their canonical URLs say they are.

A FHIR export names the platform's codes by systems under `{public_base_url}/fhir/CodeSystem/`
(`referrals_intake.fhir.code_systems`): intake serves each of them there, so a hospital system
or a validator that follows a system URL of a bundle gets its definition (every code with its
display), and the search URL answers all of them as a Bundle. Public and read-only, like the
JWKS: the code lists hold no case data.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from referrals_common.api.problems import NotFound, problem_responses
from referrals_intake.api.deps import RuntimeDep
from referrals_intake.fhir import code_systems

router = APIRouter(prefix="/fhir/CodeSystem")
FHIR_JSON = "application/fhir+json"


def _systems(runtime: Any) -> list[dict[str, Any]]:
    return code_systems(base_url=runtime.settings.public_base_url)


@router.get(
    "",
    responses={200: {"content": {FHIR_JSON: {}}, "description": "A FHIR R4 searchset Bundle"}},
    summary="Every CodeSystem of the platform's FHIR exports",
)
async def list_code_systems(runtime: RuntimeDep) -> JSONResponse:
    """All of the platform's own CodeSystems, as a FHIR R4 `searchset` Bundle."""
    systems = _systems(runtime)
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(systems),
        "entry": [{"fullUrl": s["url"], "resource": s} for s in systems],
    }
    return JSONResponse(bundle, media_type=FHIR_JSON)


@router.get(
    "/{code_system_id}",
    responses={
        200: {"content": {FHIR_JSON: {}}, "description": "A FHIR R4 CodeSystem"},
        **problem_responses(404),
    },
    summary="One CodeSystem of the platform's FHIR exports",
)
async def read_code_system(
    runtime: RuntimeDep,
    code_system_id: Annotated[
        str, Path(pattern=r"^[a-z][a-z-]{0,63}$", description="Its id: `document-kind`")
    ],
) -> JSONResponse:
    """The CodeSystem whose canonical URL this is: every code with its display."""
    found = next((s for s in _systems(runtime) if s["id"] == code_system_id), None)
    if found is None:
        raise NotFound(f"There is no CodeSystem {code_system_id}.")
    return JSONResponse(found, media_type=FHIR_JSON)
