"""`referrals-translation consumer|relay|migrate`: one process per role (no HTTP API)."""

from __future__ import annotations

from referrals_common.service_cli import ServiceCli
from referrals_translation.config import TranslationSettings

cli = ServiceCli(
    "translation",
    TranslationSettings,
    package="referrals_translation",
    default_port=None,
    consumer_help="Read every stored document and give its language verdict.",
    doc=__doc__,
)
app = cli.app

if __name__ == "__main__":
    app()
