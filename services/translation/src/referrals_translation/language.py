"""Which language a document's text is written in: the main one, its confidence, and the shares.

Three light stages, cheapest first, measured on tests/fixtures/langid/sentences.tsv (real
sentences from Debian packages' translations, bench/translation.py prints the figures):

1. **Script.** A chunk's letters are mostly of one script. Hebrew, Arabic, Georgian, Armenian and
   Greek script each belong to one language of `LANGUAGES`, so the script is the answer.
2. **py3langid** (a naive Bayes over byte n-grams, about 70 MB, thousands of chunks a second)
   restricted to the languages of the chunk's script (`LATIN`, `CYRILLIC`): restricting keeps a
   Romanian chunk among Latin-script languages and never lets an unrelated script's language win.
3. **CLD2, for Ukrainian, Russian and Bulgarian only.** py3langid sees Cyrillic through byte
   4-grams (two letters): on a Ukrainian sentence without і, ї, є or ґ it can lean to Russian,
   and on a Russian one without ы or э to Bulgarian. When it reads a chunk as one of those three
   less surely than `EAST_SLAVIC_OR_BULGARIAN_SURE`, Chromium's Compact Language Detector 2
   (`pycld2`: quadgrams and whole words, its tables compiled into a 14 MB shared library that
   every process maps from the same file) decides among the three (`east_slavic_or_bulgarian`);
   when it names none of them (it often answers "unknown" for a short Russian chunk, and
   "Serbian" for Bulgarian), py3langid's reading stands. Belarusian (ў) and Serbian (ј, љ, њ)
   have letters of their own and are left to py3langid. Lingua's high-accuracy models of the
   three decided before (113 MB in every checking process, the same accuracy on the set);
   fastText's compressed model (`lid.176.ftz`, 1 MB) read 8 of its 200 Bulgarian sentences as
   Russian and a Ukrainian sentence without і, ї, є or ґ as Russian.

A document may mix languages (a Ukrainian discharge summary with an English lab report). The text
is cut into chunks of about `CHUNK_LETTERS` letters along line breaks (a long text is sampled:
`MAX_CHUNKS` chunks spread over it); each chunk with a language counts its letters for it. The
main language has the most letters, its confidence is the mean confidence of its chunks, and each
language's share is its letters over all the letters of the text (shares add up to at most 1).

No guessing: a text with fewer than `min_letters` letters, or whose main language is less certain
than `min_confidence`, is undetermined, with an English explanation.

**Unreadable only when it is not language.** Confidences are relative to the candidates, so
gibberish in a known script still gets a "confident" language. Two checks catch it, and neither
may reject real prose (a test runs every sentence of the set through them):

* characters that are no text (control characters, U+FFFD, unassigned or private-use code points:
  random bytes decoded), a text that is mostly symbols rather than letters (OCR noise), or words
  that mix scripts (Latin and Cyrillic letters in one word);
* letter pairs (`letter_pair_score`): real words follow the letter pairs of their language, so the
  mean pointwise mutual information of a text's adjacent letters, under letter-pair counts taken
  from the language's own CLDR locale data (Babel, already a dependency), is clearly positive for
  prose and negative for shuffled characters, random letters, a font with shifted letters or a
  text typed on the wrong keyboard layout. Texts shorter than `PAIR_CHECK_MIN_LETTERS` letters are
  too short for this to be reliable and are not checked.

What is known to get through: shuffled characters of a short text (under about 150 letters; the
benchmark's 400 noise texts let one through, Romanian at 0.49, whose letter-pair score was -0.34),
and shuffled Hebrew or Arabic, which only the character checks see. On sentences, real text and
noise overlap below about 120 letter pairs (real down to -0.46, shuffled up to -0.08), so no
threshold there would keep real prose safe.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from itertools import islice, pairwise
from typing import Any, Final

SINGLE_SCRIPT: Final[Mapping[str, str]] = {
    "HEBREW": "he",
    "ARABIC": "ar",
    "GEORGIAN": "ka",
    "ARMENIAN": "hy",
    "GREEK": "el",
}
"""Scripts that only one language of `LANGUAGES` is written in."""

LATIN: Final[tuple[str, ...]] = (
    # destinations and the region; Catalan is in so that it is not read as Spanish
    "en", "de", "pl", "tr", "fr", "es", "ca", "it", "pt", "nl", "cs", "sk", "sl", "hr", "hu",
    "ro", "lt", "lv", "et", "fi", "sv", "da", "nb", "az",
)  # fmt: skip
CYRILLIC: Final[tuple[str, ...]] = ("uk", "ru", "be", "bg", "sr")

LANGUAGES: Final[tuple[str, ...]] = (*CYRILLIC, *LATIN, *SINGLE_SCRIPT.values())
"""The languages (ISO 639-1) a document can be identified as (34)."""

_PY3LANGID_CODE: Final = {"nb": "no"}
"""py3langid's name of a language where it differs (it calls Norwegian Bokmål `no`)."""

CHUNK_LETTERS: Final = 150
"""About how many letters each chunk of a mixed document has."""

MIN_CHUNK_LETTERS: Final = 20
"""A chunk with fewer letters (a line of codes and numbers) is not identified on its own."""

MAX_CHUNKS: Final = 40
"""Chunks identified per text; a longer text is sampled evenly (about 6,000 letters)."""

EAST_SLAVIC_OR_BULGARIAN: Final = frozenset({"uk", "ru", "bg"})
EAST_SLAVIC_OR_BULGARIAN_SURE: Final = 0.95
"""A chunk py3langid reads as Ukrainian, Russian or Bulgarian less surely than this goes to
CLD2 (`east_slavic_or_bulgarian`)."""

MIN_SHARE: Final = 0.05
"""Languages with a smaller share of the text are left out of the shares (noise, quotes)."""

DEFAULT_MIN_LETTERS: Final = 40
DEFAULT_MIN_CONFIDENCE: Final = 0.3
"""py3langid's probabilities are spread over up to 24 Latin-script languages: a correct answer
on a sentence can have 0.35 (Spanish next to Portuguese and Catalan)."""

MAX_JUNK: Final = 0.02
"""Share of characters that are no text (controls, U+FFFD, unassigned) above which a text is
broken: real documents have none."""

MIN_LETTER_SHARE: Final = 0.5
"""Share of letters among the characters that are neither spaces nor digits, below which a text
is mostly symbols (OCR noise)."""

MAX_MIXED_SCRIPT_WORDS: Final = 0.1
"""Share of words mixing scripts above which a text is garbled (real text: a rare homoglyph)."""
_LOOKALIKES: Final = frozenset("aceijopsxyABCEHIJKMOPSTXY" + "асеіјорѕхуАВСЕНІЈКМОРЅТХУ")
"""Latin and Cyrillic letters that look alike: typed or OCR'd in the other script, they are
common in real documents (a Latin i in Ukrainian words) and do not make a word mixed."""
_TO_CYRILLIC: Final = str.maketrans("aceijopsxyABCEHIJKMOPSTXY", "асеіјорѕхуАВСЕНІЈКМОРЅТХУ")
_TO_LATIN: Final = str.maketrans("асеіјорѕхуАВСЕНІЈКМОРЅТХУ", "aceijopsxyABCEHIJKMOPSTXY")
MIXED_SCRIPT_SAMPLE: Final = 20_000
"""Characters of the text looked at for words that mix scripts."""

PAIR_CHECK_MIN_LETTERS: Final = 120
MIN_PAIR_SCORE: Final = -0.35
"""Mean letter-pair information below which a text is not language (`letter_pair_score`)."""
PAIR_CHECK_SKIPPED: Final = frozenset({"he", "ar"})
"""Abjads: CLDR's Hebrew and Arabic (mostly transcribed names) do not tell their prose from
shuffled letters well enough, so only the other checks apply to them."""
PAIR_SAMPLE_LETTERS: Final = 3000

_LINE_BREAK = re.compile(r"\n\s*")
_CLD2_REFUSED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(chr(plane << 16 | 0xFFFE) + chr(plane << 16 | 0xFFFF) for plane in range(17))
    + "]"
)
"""Characters CLD2 refuses: controls but tab, line feed and carriage return, surrogates and
noncharacters."""
_WORD = re.compile(r"[^\W\d_]+")
_ASCII_LETTER = re.compile("[A-Za-z]")


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
    garbled: bool = False
    """True when the text was found not to be language at all (noise, broken encoding)."""


@dataclass(slots=True)
class _Votes:
    """The chunks of a text each language won."""

    letters: dict[str, int] = field(default_factory=dict)
    weighted: dict[str, float] = field(default_factory=dict)
    """Letters times confidence, per language."""
    chunks: dict[str, list[str]] = field(default_factory=dict)
    counted: int = 0
    """Letters of the chunks looked at (all, or the sample)."""
    chunked: int = 0
    """Letters of all the chunks of the text."""

    @classmethod
    def of(cls, text: str) -> _Votes:
        votes = cls()
        chunks = list(_chunks(text))
        votes.chunked = sum(chunk_letters for _, chunk_letters in chunks)
        if len(chunks) > MAX_CHUNKS:
            step = len(chunks) / MAX_CHUNKS
            chunks = [chunks[int(i * step)] for i in range(MAX_CHUNKS)]
        classified = _classify_chunks([chunk for chunk, _ in chunks])
        for (chunk, chunk_letters), found in zip(chunks, classified, strict=True):
            votes.counted += chunk_letters
            if found is not None:
                votes.add(found[0], chunk, chunk_letters, found[1])
        return votes

    def add(self, language: str, chunk: str, letters: int, confidence: float) -> None:
        self.letters[language] = self.letters.get(language, 0) + letters
        self.weighted[language] = self.weighted.get(language, 0.0) + confidence * letters
        self.chunks.setdefault(language, []).append(chunk)

    def confidence(self, language: str) -> float:
        """The mean confidence of the language's chunks, weighted by their letters."""
        return self.weighted[language] / self.letters[language]


def load() -> None:
    """Load every model now (the forkserver does, so that workers share them)."""
    _identifier("LATIN")
    _identifier("CYRILLIC")
    _tokenizer_walk()
    import pycld2  # noqa: F401  (its tables are compiled in: loaded with the library)

    for language in LANGUAGES:
        _letter_pairs(language)


@cache
def _identifier(script: str) -> Any:
    """py3langid restricted to the languages of `script` (LATIN or CYRILLIC)."""
    return _identifiers()[script]


@cache
def _identifiers() -> dict[str, Any]:
    """py3langid's model read once, as one identifier per script sharing its tokenizer tables.

    Each `from_model_file` reads the whole model again: two of them held two copies of the
    tokenizer and of the 100,000 features by 97 languages (about 120 MB in every checking
    process); built from one reading, the two restricted identifiers hold about 30 MB."""
    import py3langid.langid as langid

    full = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
    identifiers = {}
    for script, languages in (("LATIN", LATIN), ("CYRILLIC", CYRILLIC)):
        identifier = _walked_identifier_class()(
            full.nb_ptc,
            full.nb_pc,
            full.nb_classes,
            full.tk_nextmove,
            full.tk_output,
            norm_probs=True,
            tk_row=full.tk_row,
        )
        identifier.set_languages([_PY3LANGID_CODE.get(code, code) for code in languages])
        # set_languages keeps the whole model to restore it later; nothing here does, so only
        # the restricted tables are kept (py3langid pinned in the package's dependencies).
        identifier._full_model = (identifier.nb_ptc, identifier.nb_pc, identifier.nb_classes)
        identifiers[script] = identifier
    return identifiers


TOKENIZER_DEPTH: Final = 6
"""The longest byte n-gram py3langid's pinned model matches (its automaton's deepest state)."""

CHUNK_BREAK: Final = 0xFF
"""A byte no UTF-8 text has: the tokenizer goes back to its start on it from every state."""

WALK_AHEAD_CHUNKS: Final = 4
"""Texts of fewer chunks (a sentence) are walked byte by byte by py3langid itself: numpy's
steps cost more than they save on a few hundred bytes."""


@dataclass(frozen=True, slots=True)
class _TokenizerWalk:
    """py3langid's tokenizer run over all the bytes of a document's chunks at once (numpy)
    instead of byte by byte in Python (`visit_counts`: a third of a document's reading).

    The tokenizer is an Aho-Corasick automaton over byte n-grams of at most `TOKENIZER_DEPTH`
    bytes (checked on the pinned model: every one of its 104,583 states goes, on each byte, to
    the longest suffix of its n-gram and that byte that is a state), so the state after a byte
    is the one reached from the start over the last `TOKENIZER_DEPTH` bytes alone: each
    position's state comes out of `TOKENIZER_DEPTH` vector steps, and a `CHUNK_BREAK` between
    chunks starts each one afresh. The features are counted per chunk in the order py3langid
    finds them, so its scores are the same to the bit (tests/unit/translation/test_language.py
    compares them)."""

    next_state: Any
    """numpy view of the transition table (a state's row x 256 + byte -> state)."""
    row_base: Any
    """Each state's row offset in `next_state`."""
    feature: Any
    """The feature each state completes, or -1."""

    @classmethod
    def of(cls, identifier: Any) -> _TokenizerWalk | None:
        """The walk over `identifier`'s tokenizer; None if `CHUNK_BREAK` does not restart it
        (another model): py3langid then walks each chunk itself."""
        import numpy as np

        moves = identifier.tk_nextmove  # array.array, viewed without a copy
        walk = cls(
            next_state=np.frombuffer(moves, dtype=np.dtype(moves.typecode)),
            row_base=np.asarray(identifier.tk_row, dtype=np.int64) << 8,
            feature=np.asarray(identifier.tk_output, dtype=np.int64),
        )
        restarts = walk.next_state[walk.row_base + CHUNK_BREAK]
        return walk if not restarts.any() and walk.feature[0] < 0 else None

    def visits(self, encoded: list[bytes]) -> list[Counter[int] | None]:
        """py3langid's `visit_counts` of each of the `encoded` chunks: the features found and how
        often, in the order found; None for a chunk without any."""
        import numpy as np

        data = np.frombuffer(bytes([CHUNK_BREAK]).join(encoded), dtype=np.uint8)
        n = data.size
        states = np.zeros(n, dtype=np.int64)
        # The byte `back` places before each position, oldest first: after the last step each
        # position's state is the start's over its last TOKENIZER_DEPTH bytes.
        for back in range(min(TOKENIZER_DEPTH, n) - 1, -1, -1):
            states[back:] = self.next_state[self.row_base[states[back:]] + data[: n - back]]
        found = self.feature[states].tolist()
        visits: list[Counter[int] | None] = []
        start = 0
        for chunk in encoded:
            features = [f for f in found[start : start + len(chunk)] if f >= 0]
            visits.append(Counter(features) if features else None)
            start += len(chunk) + 1
        return visits


@cache
def _tokenizer_walk() -> _TokenizerWalk | None:
    return _TokenizerWalk.of(_identifier("LATIN"))  # the scripts' identifiers share one


def _walk_ahead(chunks: list[tuple[str, str]]) -> None:
    """Walk the tokenizer over these (script, chunk) at once; each script's identifier then
    takes its chunks' features when it classifies them."""
    walk = _tokenizer_walk()
    if walk is None or not chunks:
        return
    identifiers = _identifiers()
    for identifier in identifiers.values():
        identifier.walked.clear()  # nothing left over from a text whose reading failed
    encoded = [identifiers[script]._encode(chunk) for script, chunk in chunks]
    for (script, _), data, visits in zip(chunks, encoded, walk.visits(encoded), strict=True):
        identifiers[script].walked[data] = visits


@cache
def _walked_identifier_class() -> type[Any]:
    """py3langid's identifier taking the features `_walk_ahead` found for a chunk, if it has
    them (its naive Bayes, normalisation and everything else its own)."""
    import py3langid.langid as langid

    class WalkedIdentifier(langid.LanguageIdentifier):  # type: ignore[misc]
        __slots__ = ("walked",)

        def __init__(self, *args: Any, **options: Any) -> None:
            super().__init__(*args, **options)
            self.walked: dict[bytes, Counter[int] | None] = {}

        def _raw_score(self, text: bytes) -> Any:
            visits = self.walked.pop(text, None)
            if visits is None:  # not walked ahead, or no features: py3langid's own
                return super()._raw_score(text)
            return self._sparse_score(visits, self.nb_ptc)

    return WalkedIdentifier


def east_slavic_or_bulgarian(chunk: str) -> tuple[str, float] | None:
    """CLD2's reading of `chunk` among Ukrainian, Russian and Bulgarian: the first of the three
    among its (up to three) languages, and its share of the chunk's text CLD2 put in one of the
    `CYRILLIC` languages (English drug names in a Ukrainian chunk do not make it less sure);
    None when CLD2 names none of the three."""
    import pycld2

    # CLD2 refuses text with control characters, surrogates or noncharacters (which not_text
    # lets through below 2 %); they say nothing about the language.
    _, _, found = pycld2.detect(_CLD2_REFUSED.sub(" ", chunk), bestEffort=True)
    cyrillic = sum(percent for _, code, percent, _ in found if code in CYRILLIC)
    for _, code, percent, _ in found:
        if code in EAST_SLAVIC_OR_BULGARIAN and percent > 0:
            return code, percent / cyrillic
    return None


def classify_chunk(chunk: str) -> tuple[str, float] | None:
    """The language of one chunk and its confidence (0-1); None for a script no language has."""
    return _classify_chunks([chunk])[0]


def _classify_chunks(chunks: list[str]) -> list[tuple[str, float] | None]:
    """`classify_chunk` of each chunk; py3langid's tokenizer walks a document's chunks at once
    (`_TokenizerWalk`) before each chunk is classified."""
    scripts = [_script(chunk) for chunk in chunks]
    prepared = [
        chunk.translate(_TO_CYRILLIC if script == "CYRILLIC" else _TO_LATIN)
        if script in ("LATIN", "CYRILLIC")
        else None
        for chunk, script in zip(chunks, scripts, strict=True)
    ]
    if len(chunks) >= WALK_AHEAD_CHUNKS:
        _walk_ahead(
            [
                (script, chunk)
                for script, chunk in zip(scripts, prepared, strict=True)
                if chunk is not None and script is not None
            ]
        )
    found: list[tuple[str, float] | None] = []
    for script, chunk in zip(scripts, prepared, strict=True):
        if script is not None and script in SINGLE_SCRIPT:
            found.append((SINGLE_SCRIPT[script], 1.0))
        elif script is None or chunk is None:
            found.append(None)
        else:
            found.append(_classify_in_script(script, chunk))
    return found


def _classify_in_script(script: str, chunk: str) -> tuple[str, float]:
    """py3langid among the script's languages (CLD2 deciding among Ukrainian, Russian and
    Bulgarian when py3langid is unsure); `chunk` with its look-alike letters in `script`."""
    found, probability = _identifier(script).classify(chunk)
    language = "nb" if found == "no" else found
    if language in EAST_SLAVIC_OR_BULGARIAN and probability < EAST_SLAVIC_OR_BULGARIAN_SURE:
        arbiter = east_slavic_or_bulgarian(chunk)
        if arbiter is not None:
            found, share = arbiter
            # when both read the same language, the surer of the two says how sure
            probability = max(share, probability) if found == language else share
            language = found
    return language, float(probability)


def count_letters(text: str) -> int:
    """How many letters (in any script) `text` has."""
    return sum(map(str.isalpha, text))


def has_letters(text: str, at_least: int = 1) -> bool:
    """Whether `text` has at least `at_least` letters: counting stops at the last one needed
    (the first, by default), not at the end of a long text."""
    return next(islice(filter(str.isalpha, text), at_least - 1, None), None) is not None


def identify(
    text: str,
    *,
    min_letters: int = DEFAULT_MIN_LETTERS,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> Identification:
    """The main language of `text`, its confidence and each language's share."""
    # One count of each character for the letters and for `not_text` (each read the whole text)
    characters = Counter(text)
    letters = sum(n for ch, n in characters.items() if ch.isalpha())
    if letters < min_letters:
        return _undetermined(
            letters, f"The text has {letters} letters; at least {min_letters} are needed."
        )
    broken = not_text(text, characters)
    if broken is not None:
        return _undetermined(letters, broken, garbled=True)
    votes = _Votes.of(text)
    if not votes.letters:
        return _undetermined(letters, "No part of the text is in a recognisable language.")
    main = max(votes.letters, key=lambda language: votes.letters[language])
    confidence = votes.confidence(main)
    main_text = " ".join(votes.chunks[main])
    score = letter_pair_score(main_text, main)
    if score is not None and score < MIN_PAIR_SCORE:
        return _undetermined(
            letters,
            f"The letters do not follow each other as in {main} (score {score:.2f}): the text "
            "looks garbled.",
            garbled=True,
        )
    if votes.letters[main] < min_letters or confidence < min_confidence:
        return _undetermined(
            letters,
            f"The language is uncertain (confidence {confidence:.2f}, at least "
            f"{min_confidence:.2f} needed).",
        )
    return Identification(
        main_language=main,
        confidence=round(confidence, 4),
        shares=_shares(votes.letters, votes.chunked / (votes.counted * letters), main),
        letters=letters,
    )


def not_text(text: str, characters: Mapping[str, int] | None = None) -> str | None:
    """Why `text` is no text at all (binary data decoded, symbols), or None when it may be.
    `characters`: how often each character occurs in `text`, when the caller has counted."""
    junk = letters = symbols = 0
    if characters is None:
        characters = Counter(text)
    for ch, n in characters.items():
        kind = _kind(ch)
        if kind == "junk":
            junk += n
        elif kind == "letter":
            letters += n
        elif kind == "symbol":
            symbols += n
    if junk > MAX_JUNK * len(text):
        return (
            f"{junk / len(text):.0%} of the characters are no text (a broken encoding or "
            "binary data): the text looks garbled."
        )
    if letters < MIN_LETTER_SHARE * (letters + symbols):
        return (
            f"Only {letters / (letters + symbols):.0%} of the characters (besides spaces and "
            "digits) are letters: the text looks garbled."
        )
    if len({_word_script(ch) for ch in characters} - {_NOT_IN_WORDS}) < 2:
        return None  # every word's letters are of one script: none can mix scripts
    words = [word for word in _WORD.findall(text[:MIXED_SCRIPT_SAMPLE]) if len(word) >= 3]
    mixed = sum(
        len({_letter_script(ch) for ch in word if ch not in _LOOKALIKES}) > 1 for word in words
    )
    if words and mixed > MAX_MIXED_SCRIPT_WORDS * len(words):
        return (
            f"{mixed / len(words):.0%} of the words mix scripts (Latin and Cyrillic letters in "
            "one word): the text looks garbled."
        )
    return None


def letter_pair_score(text: str, language: str) -> float | None:
    """The mean pointwise mutual information of adjacent letters of `text`'s words under
    `language`'s letter-pair counts (word edges included); None when not checked.

    About +0.2 for prose in its language and -0.5 to -1.5 for shuffled or random letters, over
    sentences and paragraphs of 120 letters or more (tests/unit/translation/test_langid_set.py).
    """
    if language in PAIR_CHECK_SKIPPED or not has_letters(text, PAIR_CHECK_MIN_LETTERS):
        return None  # (and when fewer letter pairs are in the language's script)
    pairs = _letter_pairs(language)
    if pairs is None:
        return None
    script = _script_of(language)
    to_script = _TO_CYRILLIC if script == "CYRILLIC" else _TO_LATIN
    total = 0.0
    n = 0
    # A word's pairs are looked up once per text (its words repeat), then added in the same
    # order as ever, so the sum is the same to the bit.
    known: dict[str, tuple[float, ...]] = {}
    for word in _WORD.findall(text.lower()):
        informations = known.get(word)
        if informations is None:
            informations = known[word] = _pair_informations(word, script, to_script, pairs)
        if not informations:
            continue  # a word in another script (an English term in Ukrainian) says nothing
        for information in informations:
            total += information
        n += len(informations)
        if n * 2 > PAIR_SAMPLE_LETTERS:
            break
    return total / n if n >= PAIR_CHECK_MIN_LETTERS else None


def _pair_informations(
    word: str, script: str, to_script: dict[int, int], pairs: _LetterPairs
) -> tuple[float, ...]:
    """The information of each letter pair of `word` (edges included), in order; none for a
    word with a letter of another script than `script`."""
    if any(_letter_script(ch) not in (script, None) for ch in word if ch not in _LOOKALIKES):
        return ()
    padded = f" {word.translate(to_script)} "
    return tuple(pairs.information(a, b) for a, b in pairwise(padded))


def _script_of(language: str) -> str:
    if language in CYRILLIC:
        return "CYRILLIC"
    if language in LATIN:
        return "LATIN"
    return next(script for script, code in SINGLE_SCRIPT.items() if code == language)


@dataclass(frozen=True, slots=True)
class _LetterPairs:
    """Pointwise mutual information of letter pairs in a language's words (space marks a word's
    edges): log P(b | a) / P(b), smoothed so that unseen letters and pairs stay finite."""

    single: Mapping[str, int]
    total: int
    seen: Mapping[str, float]
    """The information of every pair the counts have, precomputed."""

    @classmethod
    def of(cls, single: Mapping[str, int], pairs: Mapping[str, int]) -> _LetterPairs:
        total = sum(single.values())
        counts = cls(single=single, total=total, seen={})
        seen = {pair: counts._information(pair[0], pair[1], n) for pair, n in pairs.items()}
        return cls(single=single, total=total, seen=seen)

    def information(self, a: str, b: str) -> float:
        found = self.seen.get(a + b)
        return self._information(a, b, 0) if found is None else found

    def _information(self, a: str, b: str, pair_count: int) -> float:
        alphabet = len(self.single) + 1
        p_b = (self.single.get(b, 0) + 0.5) / (self.total + 0.5 * alphabet)
        p_b_after_a = (pair_count + 5 * p_b) / (self.single.get(a, 0) + 5)
        return math.log(p_b_after_a / p_b)


@cache
def _letter_pairs(language: str) -> _LetterPairs | None:
    """Counts from every string of the language's CLDR locale data (names, units, dates...)."""
    from babel import localedata

    if not localedata.exists(language):
        return None
    strings: list[str] = []
    cached = language in localedata._cache  # pinned Babel 2.18.0
    _strings(localedata.load(language), strings)
    if not cached:  # 34 locales' whole data (about 1 MB each) are not kept for this
        localedata._cache.pop(language, None)
    single: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    for word in _WORD.findall(" ".join(strings).lower()):
        padded = f" {word} "
        single.update(padded[:-1])
        pairs.update(a + b for a, b in pairwise(padded))
    return _LetterPairs.of(dict(single), dict(pairs))


def _strings(value: object, into: list[str]) -> None:
    if isinstance(value, str):
        into.append(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _strings(item, into)
    elif isinstance(value, list | tuple):
        for item in value:
            _strings(item, into)


@cache
def _kind(ch: str) -> str:
    """letter, junk (controls, U+FFFD, unassigned, private use, surrogates), symbol or other."""
    if ch.isalpha():
        return "letter"
    if ch.isspace() or ch.isdigit():
        return "other"
    if ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Cn", "Co", "Cs"):
        return "junk"
    return "symbol"


def _undetermined(letters: int, why: str, *, garbled: bool = False) -> Identification:
    return Identification(
        main_language=None,
        confidence=0.0,
        shares=(),
        letters=letters,
        undetermined=why,
        garbled=garbled,
    )


def _shares(counted: dict[str, int], per_letter: float, main: str) -> tuple[tuple[str, float], ...]:
    """Each language's share of the text: its letters (in the sample) times `per_letter`."""
    shares = {language: round(min(1.0, n * per_letter), 4) for language, n in counted.items()}
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
    # Most lines are in one script: their distinct characters say which, without counting
    # each character (a tenth of identifying a text PDF's language when every line was counted).
    if line.isascii():
        return "LATIN" if _ASCII_LETTER.search(line) else None
    scripts = {_letter_script(ch) for ch in set(line)}
    scripts.discard(None)
    if len(scripts) < 2:
        return scripts.pop() if scripts else None
    counts: dict[str, int] = {}
    for ch, n in Counter(line).items():
        script = _letter_script(ch)
        if script is not None:
            counts[script] = counts.get(script, 0) + n
    return max(counts, key=lambda script: counts[script]) if counts else None


@cache
def _letter_script(ch: str) -> str | None:
    """The script of a letter (the first word of its Unicode name); None for a non-letter."""
    return unicodedata.name(ch, "OTHER").partition(" ")[0] if ch.isalpha() else None


_NOT_IN_WORDS: Final = "not in words"


@cache
def _word_script(ch: str) -> str | None:
    """What `ch` adds to the scripts of a word it is in, as `not_text` counts them: its
    `_letter_script` (None for a digit-like character inside a word), or `_NOT_IN_WORDS` for a
    Latin-Cyrillic look-alike (not counted) or a character no word has."""
    if ch in _LOOKALIKES or not _WORD.fullmatch(ch):
        return _NOT_IN_WORDS
    return _letter_script(ch)


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
