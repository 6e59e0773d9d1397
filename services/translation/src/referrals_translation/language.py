"""Which language a document's text is written in: the main one, its confidence, and the shares.

The detector is Lingua (`lingua-language-detector`, high-accuracy models), restricted to
`LANGUAGES`: the languages of patients from Ukraine (Ukrainian, Russian, and the minority and
neighbouring languages Belarusian, Hungarian, Romanian, Polish, Bulgarian) and of the countries
their cases go to (English, German, Polish, Hebrew and Arabic, Turkish, the large EU languages and
Catalan, the Baltic and Nordic states, Georgia, Armenia, Azerbaijan, the Balkans). The set is a
trade-off, measured on tests/fixtures/translation/sentences.tsv:

* Lingua's confidences are relative to the set, so a language outside it is attributed to a
  relative with high confidence: Catalan would pass for Spanish (so Catalan is in the set), and
  Macedonian does pass for Bulgarian, at 1.0.
* Every candidate can take text from the others. Kazakh is left out because with it 6 of 70
  Ukrainian sentences were read as Kazakh; Macedonian because Lingua 2.1.1 reads a Ukrainian
  paragraph ending in a short code ("... ступінь злоякісності G2") as Macedonian at 1.0. All 75
  languages in low-accuracy mode got 13 of 319 test sentences wrong.

The models are loaded once per process (`detector()`), eagerly: 5-10 s and about 900 MB. The
checking workers are forked from a process that loaded them (see `checking`), so they share those
pages instead of loading their own.

A document may mix languages (a Ukrainian discharge summary with an English lab report). The text
is cut into chunks of about `CHUNK_LETTERS` letters along line breaks; each chunk with a confident
language counts its letters for that language. The main language has the most letters, its
confidence is the mean confidence of its chunks, and each language's share is its letters over all
the letters of the text (so shares add up to at most 1: uncertain chunks belong to no language).

No guessing: a text with fewer than `min_letters` letters (short texts are where Lingua errs: it
reads "Биопсия от 12.03." as Bulgarian at 0.8), or whose main language is less certain than
`min_confidence`, is undetermined, with an English explanation. The default 0.6 abstains on 5 of
319 test sentences and gets none wrong; 0.75 abstains on 8 and still gets none wrong. Because
those confidences are relative, gibberish (a PDF font with a private encoding, random letters)
also gets a confident language; it is caught by checking words one by one (`word_agreement`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Final

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

LANGUAGES: Final[tuple[Language, ...]] = (
    # patients from Ukraine
    Language.UKRAINIAN,
    Language.RUSSIAN,
    Language.BELARUSIAN,
    Language.HUNGARIAN,
    Language.ROMANIAN,
    Language.BULGARIAN,
    # where cases go, and the rest of the region
    Language.ENGLISH,
    Language.GERMAN,
    Language.POLISH,
    Language.HEBREW,
    Language.ARABIC,
    Language.TURKISH,
    Language.FRENCH,
    Language.SPANISH,
    Language.CATALAN,
    Language.ITALIAN,
    Language.PORTUGUESE,
    Language.DUTCH,
    Language.CZECH,
    Language.SLOVAK,
    Language.SLOVENE,
    Language.CROATIAN,
    Language.SERBIAN,
    Language.GREEK,
    Language.LITHUANIAN,
    Language.LATVIAN,
    Language.ESTONIAN,
    Language.FINNISH,
    Language.SWEDISH,
    Language.DANISH,
    Language.BOKMAL,
    Language.GEORGIAN,
    Language.ARMENIAN,
    Language.AZERBAIJANI,
)
"""The languages a document can be identified as (34)."""

CHUNK_LETTERS: Final = 150
"""About how many letters each chunk of a mixed document has."""

MIN_CHUNK_LETTERS: Final = 20
"""A chunk with fewer letters (a line of codes and numbers) is not identified on its own."""

MIN_CHUNK_CONFIDENCE: Final = 0.5
"""A chunk counts for its best language only when Lingua gives it at least this confidence."""

MIN_SHARE: Final = 0.05
"""Languages with a smaller share of the text are left out of the shares (noise, quotes)."""

DEFAULT_MIN_LETTERS: Final = 40
DEFAULT_MIN_CONFIDENCE: Final = 0.6

MIN_WORD_AGREEMENT: Final = 0.25
"""A main language that fewer of the words agree with is a garbled text's (`word_agreement`)."""

WORDS_SAMPLED: Final = 200
"""Words of the main language's chunks checked one by one, spread over the text."""

WORDS_FIRST: Final = 50
"""Words checked first; all `WORDS_SAMPLED` only when these do not agree clearly."""

CLEAR_AGREEMENT: Final = 0.45
"""Agreement of the first words that ends the check: for a garbled text (under 15 % of its words
agree) to reach it by chance among 50 words is about two in ten million."""

_LINE_BREAK = re.compile(r"\n\s*")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Identification:
    """The languages of a text; `main_language` is None when it is undetermined."""

    main_language: str | None
    """ISO 639-1 code of the language most of the text is in, or None."""
    confidence: float
    """Mean confidence (0-1) of the chunks in the main language; 0 when undetermined."""
    shares: tuple[tuple[str, float], ...]
    """(ISO 639-1 code, share of the letters), largest first; the main language comes first."""
    letters: int
    """How many letters the text has."""
    undetermined: str | None = None
    """Why the language is undetermined, in English without text from the document."""


@dataclass(slots=True)
class _Votes:
    """The chunks of a text each language won with enough confidence."""

    letters: dict[str, int] = field(default_factory=dict)
    weighted: dict[str, float] = field(default_factory=dict)
    """Letters times confidence, per language."""
    chunks: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, text: str) -> _Votes:
        votes = cls()
        for chunk, chunk_letters in _chunks(text):
            best = detector().compute_language_confidence_values(chunk)[0]
            if best.value >= MIN_CHUNK_CONFIDENCE:
                votes.add(code(best.language), chunk, chunk_letters, best.value)
        return votes

    def add(self, language: str, chunk: str, letters: int, confidence: float) -> None:
        self.letters[language] = self.letters.get(language, 0) + letters
        self.weighted[language] = self.weighted.get(language, 0.0) + confidence * letters
        self.chunks.setdefault(language, []).append(chunk)

    def confidence(self, language: str) -> float:
        """The mean confidence of the language's chunks, weighted by their letters."""
        return self.weighted[language] / self.letters[language]


@cache
def detector() -> LanguageDetector:
    """The process's Lingua detector over `LANGUAGES`, its models loaded on first use."""
    return (
        LanguageDetectorBuilder.from_languages(*LANGUAGES).with_preloaded_language_models().build()
    )


def code(language: Language) -> str:
    """The ISO 639-1 code of a Lingua language: `uk`, `en`, `he`."""
    return language.iso_code_639_1.name.lower()


def count_letters(text: str) -> int:
    """How many letters (in any script) `text` has."""
    return sum(map(str.isalpha, text))


def identify(
    text: str,
    *,
    min_letters: int = DEFAULT_MIN_LETTERS,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> Identification:
    """The main language of `text`, its confidence and each language's share."""
    letters = count_letters(text)
    if letters < min_letters:
        return _undetermined(
            letters, f"The text has {letters} letters; at least {min_letters} are needed."
        )
    votes = _Votes.of(text)
    if not votes.letters:
        return _undetermined(letters, "No part of the text is in a recognisable language.")
    main = max(votes.letters, key=lambda language: votes.letters[language])
    confidence = votes.confidence(main)
    if votes.letters[main] < min_letters or confidence < min_confidence:
        return _undetermined(
            letters,
            f"The language is uncertain (confidence {confidence:.2f}, at least "
            f"{min_confidence:.2f} needed).",
        )
    agreement = word_agreement(" ".join(votes.chunks[main]), main)
    if agreement < MIN_WORD_AGREEMENT:
        return _undetermined(
            letters,
            f"Only {agreement:.0%} of the words read as {main}: the text looks garbled.",
        )
    return Identification(
        main_language=main,
        confidence=round(confidence, 4),
        shares=_shares(votes.letters, letters, main),
        letters=letters,
    )


def word_agreement(text: str, language: str) -> float:
    """The share of the text's words (of 4 letters or more) that, alone, read as `language`.

    Lingua's confidences are relative, so a text in no language at all (a broken font encoding,
    random letters) still gets a "confident" language. Its words do not: about half the words of
    a real English document read as English on their own (the lowest of the languages here; 0.8
    for Ukrainian or Polish), but under 15 % of the words of gibberish or of a text whose letters
    are shifted agree with the language Lingua picked for the whole.
    """
    words = [word for word in _WORD.findall(text) if count_letters(word) >= 4]
    sample = words[:: max(1, len(words) // WORDS_SAMPLED)][:WORDS_SAMPLED]
    if not sample:
        return 1.0  # nothing to contradict the chunk-level answer
    # The first words checked are spread over the whole text too (every k-th of the sample):
    # when they already agree far above the threshold, the rest could not bring it down.
    first = sample[:: max(1, len(sample) // WORDS_FIRST)][:WORDS_FIRST]
    hits = sum(_best(word) == language for word in first)
    if len(first) == len(sample) or hits / len(first) >= CLEAR_AGREEMENT:
        return hits / len(first)
    return sum(_best(word) == language for word in sample) / len(sample)


def _best(word: str) -> str | None:
    values = detector().compute_language_confidence_values(word)
    return code(values[0].language) if values and values[0].value > 0 else None


def _undetermined(letters: int, why: str) -> Identification:
    return Identification(
        main_language=None, confidence=0.0, shares=(), letters=letters, undetermined=why
    )


def _shares(counted: dict[str, int], letters: int, main: str) -> tuple[tuple[str, float], ...]:
    shares = {language: round(n / letters, 4) for language, n in counted.items()}
    kept = [(lang, share) for lang, share in shares.items() if share >= MIN_SHARE or lang == main]
    kept.sort(key=lambda item: (item[0] != main, -item[1]))
    return tuple(kept)


def _chunks(text: str) -> Iterator[tuple[str, int]]:
    """Pieces of about `CHUNK_LETTERS` letters that do not mix scripts or cut through paragraphs.

    Short lines (headings, table rows, the lines of a PDF's text layer) are gathered until they
    make a chunk, and a line in another script (English after Ukrainian) starts a new one; a long
    line (a paragraph) is a chunk of its own, or several of about equal size. Yields each chunk
    and its letter count; a last bit shorter than `MIN_CHUNK_LETTERS` is left out.
    """
    pending: list[str] = []
    pending_letters = 0
    pending_script: str | None = None
    for line in _LINE_BREAK.split(text):
        letters = count_letters(line)
        script = _script(line)
        switch = script is not None and pending_script not in (None, script)
        if pending_letters >= MIN_CHUNK_LETTERS and (switch or letters >= CHUNK_LETTERS):
            yield " ".join(pending), pending_letters
            pending, pending_letters, pending_script = [], 0, None
        if letters >= CHUNK_LETTERS:
            if pending:  # too little to stand alone: it goes with this paragraph
                line, letters = " ".join([*pending, line]), letters + pending_letters
                pending, pending_letters, pending_script = [], 0, None
            yield from _split_evenly(line, letters)
            continue
        pending.append(line)
        pending_letters += letters
        pending_script = pending_script or script
        if pending_letters >= CHUNK_LETTERS:
            yield " ".join(pending), pending_letters
            pending, pending_letters, pending_script = [], 0, None
    if pending_letters >= MIN_CHUNK_LETTERS:
        yield " ".join(pending), pending_letters


def _script(line: str) -> str | None:
    """The script most letters of `line` are in: LATIN, CYRILLIC, HEBREW... (None: no letters)."""
    counts: dict[str, int] = {}
    for ch in line:
        if ch.isalpha():
            script = unicodedata.name(ch, "OTHER").partition(" ")[0]
            counts[script] = counts.get(script, 0) + 1
    return max(counts, key=lambda script: counts[script]) if counts else None


def _split_evenly(line: str, letters: int) -> Iterator[tuple[str, int]]:
    """A long line cut between words into runs of about equal letters, none below a chunk."""
    parts = max(1, letters // CHUNK_LETTERS)
    target = letters / parts
    words: list[str] = []
    run = 0
    for word in line.split():
        words.append(word)
        run += count_letters(word)
        if run >= target and parts > 1:
            yield " ".join(words), run
            words, run, parts = [], 0, parts - 1
    if words:
        yield " ".join(words), run
