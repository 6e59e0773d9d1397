"""Imported once by the forkserver that forks the checking workers (see `checking`).

Importing the parsers and loading the language identification models here, before any worker is
forked, means every worker starts in about 50 ms and shares the models copy-on-write instead of
spending seconds and memory of its own on them. Nothing else should import this module.

`gc.freeze()` then moves everything loaded so far out of the garbage collector's reach: a worker's
collections would otherwise write to every object's header and so copy the pages they share.
"""

import gc

from referrals_translation import pipeline  # noqa: F401  (pypdf, pdfium, Pillow, python-docx, pydicom)
from referrals_translation.language import load

load()
gc.collect()
gc.freeze()
