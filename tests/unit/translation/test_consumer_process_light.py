"""The translation service's own process imports no document parser: they are the checking
workers' (preloaded by their forkserver), and some 90 MB in every process that imports them."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PARSERS = ("numpy", "PIL", "pypdfium2", "pypdf", "docx", "pydicom", "lxml")
LANGUAGE_MODELS = ("py3langid", "pycld2", "lingua")


def test_the_service_process_imports_no_parser_or_language_model() -> None:
    code = (
        "import sys\n"
        "import referrals_translation.main, referrals_translation.consumers\n"
        "import referrals_translation.service, referrals_translation.cli\n"
        "from referrals_translation.checking import DocumentChecker\n"
        "DocumentChecker(2)\n"
        f"print(','.join(m for m in {PARSERS + LANGUAGE_MODELS!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == ""
