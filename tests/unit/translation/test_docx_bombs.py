"""DOCX zip bombs: the checking worker refuses them as unreadable, quickly, without inflating them.

The bombs are real files (tests/fixtures/zip_bombs.py): a part inflating to 1 GiB (the main part,
or the styles every Word document loads), 300,000 entries, an archive nested in the document.
Each is read in a real checking worker (`DocumentChecker`, as the consumer reads documents), and
the worker itself reports its resident memory just before reading and its peak while reading
(VmHWM, reset first: `targets.read_and_measure`). A worker starts at about 160 MB resident
because it shares the parsers and language models with the forkserver it was forked from; what
the document costs is the peak above that. Not marked `unit`: it runs worker processes.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from referrals_common.contracts.translation import UnreadableReason
from referrals_translation import extraction
from referrals_translation.checking import DocumentChecker
from referrals_translation.extraction import DOCX, Unreadable
from referrals_translation.outcome import Limits
from tests.fixtures import zip_bombs

from . import targets

MIB = 2**20
MAX_GROWTH = 64 * MIB
"""What reading a bomb may add to the worker's resident memory (a plain DOCX adds about 8 MiB;
before the screening, the 1 GiB part added 1 GiB and 300,000 entries 280 MiB)."""


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return {
        "styles-inflating-to-1-GiB": zip_bombs.inflating_part(folder / "styles.docx"),
        "main-part-inflating-to-1-GiB": zip_bombs.inflating_part(
            folder / "document.docx", "word/document.xml"
        ),
        "300000-entries": zip_bombs.many_entries(folder / "entries.docx"),
    }


@pytest.fixture(scope="module")
def measuring() -> Iterator[DocumentChecker]:
    with DocumentChecker(workers=1, target=targets.read_and_measure) as checker:
        yield checker


def measured(detail: str) -> tuple[int, int]:
    """The resident memory before reading and at the peak while reading, in bytes."""
    match = re.search(r"rss_kb=(\d+) peak_kb=(\d+)$", detail)
    assert match, detail
    return int(match[1]) * 1024, int(match[2]) * 1024


@pytest.mark.parametrize(
    "bomb", ["styles-inflating-to-1-GiB", "main-part-inflating-to-1-GiB", "300000-entries"]
)
def test_a_docx_bomb_is_unreadable_quickly_and_the_worker_never_inflates_it(
    bombs: dict[str, Path], measuring: DocumentChecker, bomb: str
) -> None:
    outcome = measuring.check(bombs[bomb], DOCX)

    assert outcome.kind == "unreadable", outcome
    assert outcome.reason is UnreadableReason.CORRUPT
    assert outcome.detail is not None and "zip bomb" in outcome.detail
    before, peak = measured(outcome.detail)
    assert peak - before < MAX_GROWTH, f"{(peak - before) / MIB:.0f} MiB more while reading"
    assert outcome.seconds < 2


def test_an_archive_nested_in_a_docx_is_never_opened(
    tmp_path: Path, measuring: DocumentChecker
) -> None:
    nested = zip_bombs.nested(tmp_path / "nested.docx")

    outcome = measuring.check(nested, DOCX)

    assert outcome.kind == "text", outcome
    assert outcome.main_language == "uk"
    before, peak = measured(outcome.detail or "")
    assert peak - before < MAX_GROWTH


def test_a_plain_docx_still_reads_in_a_measuring_worker(
    tmp_path: Path, measuring: DocumentChecker
) -> None:
    path = tmp_path / "letter.docx"
    path.write_bytes(zip_bombs.word_document())

    outcome = measuring.check(path, DOCX)

    assert outcome.kind == "text" and outcome.main_language == "uk"


# --- the screening itself, in-process, on small files ---------------------------------------------


def docx_with(tmp_path: Path, name: str, data: bytes, *, stored: bool = False) -> Path:
    path = tmp_path / "extra.docx"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        zipfile.ZipFile(tmp_path.joinpath("src.docx")) as source,
    ):
        for entry in source.infolist():
            archive.writestr(entry, source.read(entry))
        archive.writestr(name, data, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "src.docx"
    path.write_bytes(zip_bombs.word_document())
    return path


@pytest.mark.unit
def test_parts_inflating_past_the_total_are_refused_whatever_their_ratio(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(extraction, "MAX_DOCX_INFLATED_BYTES", 2 * MIB)
    path = docx_with(tmp_path, "word/media/image1.bin", os.urandom(3 * MIB), stored=True)

    with pytest.raises(Unreadable, match="more than 2 MiB in all") as refused:
        extraction.extract(path, DOCX, Limits())

    assert refused.value.reason is UnreadableReason.CORRUPT


@pytest.mark.unit
def test_a_highly_compressed_part_is_refused_even_if_nothing_loads_it(
    tmp_path: Path, source: Path
) -> None:
    path = docx_with(tmp_path, "customXml/item9.xml", b" " * (4 * MIB))

    with pytest.raises(Unreadable, match="times accepted"):
        extraction.extract(path, DOCX, Limits())


@pytest.mark.unit
def test_entries_just_under_the_limit_are_read(tmp_path: Path, source: Path) -> None:
    path = tmp_path / "many.docx"
    with (
        zipfile.ZipFile(path, "w") as archive,
        zipfile.ZipFile(source) as original,
    ):
        for entry in original.infolist():
            archive.writestr(entry, original.read(entry))
        for number in range(extraction.MAX_DOCX_ENTRIES - len(original.infolist())):
            archive.writestr(f"x/{number}", b"")

    assert extraction.extract(path, DOCX, Limits()).text.startswith("Виписка")


@pytest.mark.unit
def test_a_zip64_directory_of_too_many_entries_is_refused_before_zipfile_reads_it(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More than 65,535 entries: the count is only in the ZIP64 end record.
    path = zip_bombs.many_entries(tmp_path / "zip64.docx", entries=70_000)
    monkeypatch.setattr(
        zipfile, "ZipFile", lambda *a, **k: pytest.fail("zipfile read the directory")
    )

    with pytest.raises(Unreadable, match=r"70,0\d\d entries"):
        extraction.extract(path, DOCX, Limits())


@pytest.mark.unit
def test_xml_parts_inflating_past_their_total_are_refused(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(extraction, "MAX_DOCX_MARKUP_BYTES", 1 * MIB)
    markup = b"<w:p>" + os.urandom(MIB).hex().encode() + b"</w:p>"  # not highly compressible
    path = docx_with(tmp_path, "word/styles2.xml", markup)

    with pytest.raises(Unreadable, match="XML parts inflate to more than 1 MiB"):
        extraction.extract(path, DOCX, Limits())
