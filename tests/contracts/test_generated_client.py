"""A typed client generated from our OpenAPI documents compiles and plays a journey on the real
platform.

`openapi-python-client` (0.29.1, pinned with its own lock in deploy/local/python/openapi-client:
its typer pin excludes the services', so it lives in an environment of its own that devstack
installs with `uv sync --frozen`) generates one client package per service from the document
the service's app serves at `/openapi.json`, into a temporary directory, each run: the clients
are made from the code as it is now, never from a copy that could fall behind it. The generator
must skip nothing (it warns when it cannot type an operation or a schema), every generated file
must compile, and the packages must import. Then the journey runs through the generated
functions only, against the platform's own processes: a front end opens a case (with an
`Idempotency-Key`), records both consents, uploads a pathology report to records, submits; a
center finds the offer in its paged referral list and accepts it; the front end finds the case,
accepted, in its case list and reads it.
"""

from __future__ import annotations

import asyncio
import compileall
import importlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from rich.console import Console

from devstack import install
from devstack.demo import CASE, CONSENT_VERSION, sample
from referrals_intake.main import create_app as create_intake_app
from referrals_partners.main import create_app as create_partners_app
from referrals_records.main import create_app as create_records_app

pytestmark = pytest.mark.e2e

SERVICES: dict[str, Callable[[], FastAPI]] = {
    "intake": create_intake_app,
    "records": create_records_app,
    "partners": create_partners_app,
}


def _generate(tool: Path, spec: Path, package: Path) -> str:
    """Run the generator on `spec` into `package`; its output (warnings included)."""
    done = subprocess.run(
        [
            str(tool / "bin" / "openapi-python-client"),
            *("generate", "--path", str(spec), "--meta", "none", "--output-path", str(package)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        # The generator formats its output with the ruff of its own environment.
        env={**os.environ, "PATH": f"{tool / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The generated packages' names (`intake_client`, ...), importable for the module's tests."""
    tool = install.ensure_python_tool(Console(stderr=True), "openapi-client")
    where = tmp_path_factory.mktemp("generated")
    names = {}
    for service, factory in SERVICES.items():
        spec = where / f"{service}.openapi.json"
        spec.write_text(json.dumps(factory().openapi()), encoding="utf-8")
        output = _generate(tool, spec, where / f"{service}_client")
        assert "WARNING" not in output.upper(), f"{service}: the generator skipped:\n{output}"
        names[service] = f"{service}_client"
    assert compileall.compile_dir(where, quiet=1, force=True), "a generated file does not compile"
    sys.path.insert(0, str(where))
    try:
        yield names
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m.split(".")[0] in names.values()]:
            del sys.modules[name]


def _module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def test_every_generated_client_imports_with_its_operations(clients: dict[str, str]) -> None:
    for service, factory in SERVICES.items():
        document = factory().openapi()
        operations = {
            op["operationId"]
            for methods in document["paths"].values()
            for op in methods.values()
            if isinstance(op, dict) and "operationId" in op
        }
        package = importlib.import_module(clients[service])
        assert hasattr(package, "AuthenticatedClient")
        generated = {
            path.stem
            for path in Path(package.__file__).parent.joinpath("api").rglob("*.py")
            if path.stem != "__init__"
        }
        # One module per operation, named for its operationId in snake case.
        expected = {"".join(f"_{c.lower()}" if c.isupper() else c for c in op) for op in operations}
        assert generated == expected, service


async def _until(read: Callable[[], Any], ok: Callable[[Any], bool], what: str, timeout=180.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {value}"
        await asyncio.sleep(0.5)


async def test_a_journey_through_the_generated_clients(
    clients: dict[str, str], running_platform: tuple[Any, Any]
) -> None:
    _stack, platform = running_platform
    keys = platform.keys()
    intake, records, partners = (clients[s] for s in ("intake", "records", "partners"))
    intake_models = _module(intake, "models")
    records_models = _module(records, "models")
    partners_models = _module(partners, "models")
    types = _module(records, "types")
    create_case = _module(intake, "api.front_end.create_case")
    give_consent = _module(intake, "api.front_end.give_consent")
    read_case = _module(intake, "api.front_end.read_case")
    submit_case = _module(intake, "api.front_end.submit_case")
    list_cases = _module(intake, "api.front_end.list_cases")
    upload_document = _module(records, "api.front_end.upload_document")
    list_referrals = _module(partners, "api.centers.list_referrals")
    accept = _module(partners, "api.centers.accept")

    def api_key_client(package: str, base_url: str, key: str) -> Any:
        return importlib.import_module(package).AuthenticatedClient(
            base_url=base_url, token=key, prefix="", auth_header_name="X-Api-Key", timeout=60
        )

    front_end = api_key_client(intake, platform.apis["intake"], str(keys["front_end"]))
    created = await create_case.asyncio_detailed(
        client=front_end,
        body=intake_models.CaseCreate.from_dict(CASE),
        idempotency_key=str(uuid.uuid4()),
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, intake_models.CaseCreated)
    case_id = created.parsed.case.id
    token = created.parsed.access_token
    patient = importlib.import_module(intake).AuthenticatedClient(
        base_url=platform.apis["intake"], token=token, timeout=60
    )
    for kind in (
        intake_models.GiveConsentKind.PROCESSING,
        intake_models.GiveConsentKind.CROSS_BORDER,
    ):
        consented = await give_consent.asyncio(
            case_id, kind, client=patient, body=intake_models.ConsentIn(version=CONSENT_VERSION)
        )
        assert isinstance(consented, intake_models.CasePublic), consented

    documents = importlib.import_module(records).AuthenticatedClient(
        base_url=platform.apis["records"], token=token, timeout=60
    )
    stored = await upload_document.asyncio(
        case_id,
        client=documents,
        body=records_models.UploadDocumentBody(
            kind=records_models.UploadDocumentBodyKind.PATHOLOGY_REPORT,
            file=types.File(
                payload=io.BytesIO(sample("pathology_report_en.pdf")),
                file_name="pathology_report_en.pdf",
                mime_type="application/pdf",
            ),
        ),
    )
    assert isinstance(stored, records_models.DocumentPublic), stored
    assert stored.media_type == "application/pdf"

    async def the_case() -> Any:
        case = await read_case.asyncio(case_id, client=patient)
        assert isinstance(case, intake_models.CasePublic), case
        return case

    await _until(the_case, lambda c: len(c.documents) == 1, "intake to list the document")
    submitted = await submit_case.asyncio_detailed(
        case_id, client=patient, idempotency_key=str(uuid.uuid4())
    )
    assert submitted.status_code == 200, submitted.content
    await _until(the_case, lambda c: c.status.value == "referred", "the case to be referred")

    async def offer() -> tuple[Any, Any] | None:
        for key in keys["centers"].values():
            center = api_key_client(partners, platform.apis["partners"], str(key))
            page = await list_referrals.asyncio(
                client=center, status=partners_models.ReferralStatus.OFFERED, limit=10
            )
            assert isinstance(page, list), page
            for referral in page:
                if referral.case_id == case_id:
                    return center, referral
        return None

    center, referral = await _until(offer, lambda found: found is not None, "the offer")
    accepted = await accept.asyncio_detailed(
        referral.id,
        client=center,
        body=partners_models.AcceptBody(expected_opinion_at=datetime.now(UTC) + timedelta(days=7)),
        idempotency_key=str(uuid.uuid4()),
    )
    assert accepted.status_code == 200, accepted.content
    assert accepted.parsed.status.value == "accepted"

    case = await _until(the_case, lambda c: c.status.value == "accepted", "intake to hear it")
    assert case.id == case_id
    reference = f"{case_id.hex[:4]}-{case_id.hex[4:8]}".upper()
    listed = await list_cases.asyncio(client=front_end, reference=reference)
    assert isinstance(listed, intake_models.CasePage), listed
    assert [(c.id, c.status.value) for c in listed.items] == [(case_id, "accepted")]
    assert listed.next_ is None
