"""`referrals-records api|consumer|relay|migrate`: one process per role.

Records issues no keys: a cancer center's key is issued (and revoked) in partners
(`referrals-partners create-center-key`, `POST /v1/ops/centers/<code>/keys`), and records learns
it from partners' events."""

from __future__ import annotations

from referrals_common.service_cli import ServiceCli
from referrals_records.config import RecordsSettings

cli = ServiceCli(
    "records",
    RecordsSettings,
    package="referrals_records",
    default_port=8002,
    consumer_help="Follow case states (intake), referrals offered to centers and the centers' "
    "keys (partners).",
    doc=__doc__,
)
app = cli.app


if __name__ == "__main__":
    app()
