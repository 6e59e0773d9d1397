"""`python -m referrals_web migrate | serve --host H --port P`."""

from referrals_web.cli import app

app()
