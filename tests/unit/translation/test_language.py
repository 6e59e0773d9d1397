"""Language identification: Ukrainian is never Russian, mixed texts get shares, and short or
uncertain texts are undetermined rather than guessed."""

# Cyrillic letters that look Latin are meant in the Ukrainian and Russian texts.

from __future__ import annotations

import itertools
import random
import re
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from referrals_translation import language
from referrals_translation.language import LANGUAGES, identify

pytestmark = pytest.mark.unit

UKRAINIAN = (
    "Пацієнтку госпіталізовано до онкологічного відділення зі скаргами на біль у правому "
    "підребер'ї. За результатами біопсії встановлено діагноз аденокарциноми підшлункової залози."
)
RUSSIAN = (
    "Пациентка госпитализирована в онкологическое отделение с жалобами на боль в правом "
    "подреберье. По результатам биопсии установлен диагноз аденокарциномы поджелудочной железы."
)
ENGLISH = (
    "The patient was admitted to the oncology ward with pain in the right upper quadrant. A "
    "biopsy confirmed adenocarcinoma of the pancreas, and chemotherapy was recommended."
)


def test_the_language_set_covers_patients_and_destinations() -> None:
    codes = set(LANGUAGES)
    required = {"en", "uk", "ru", "de", "pl", "he", "tr", "fr", "es", "it", "be", "ro", "cs"}
    assert required <= codes
    assert len(codes) == len(LANGUAGES) >= 20
    assert all(re.fullmatch(r"[a-z]{2}", c) for c in codes)
    assert "kk" not in codes  # Kazakh and Macedonian, close to Ukrainian and Bulgarian, are no
    assert (
        "mk" not in codes
    )  # destination's language: leaving them out keeps them from taking those


@pytest.mark.parametrize(("text", "expected"), [(UKRAINIAN, "uk"), (RUSSIAN, "ru")])
def test_ukrainian_and_russian_are_told_apart(text: str, expected: str) -> None:
    result = identify(text)
    assert result.main_language == expected
    assert result.confidence >= 0.9
    assert result.shares == ((expected, 1.0),)
    assert result.undetermined is None


def test_ukrainian_without_its_own_letters_is_still_ukrainian() -> None:
    # No і, ї, є or ґ: only vocabulary and grammar tell it from Russian.
    text = (
        "Хворий скаржиться на кашель, задишку та сильну втому, апетит добрий, сон порушений, "
        "болю нема, набряку нема."
    )
    assert not set("іїєґ") & set(text.lower())
    assert identify(text).main_language == "uk"


def test_cld2_decides_a_chunk_py3langid_reads_as_russian_less_surely() -> None:
    # py3langid (and fastText's small model) read this Ukrainian sentence as Russian.
    text = (
        "Хворий скаржиться на кашель, задишку та сильну втому, апетит добрий, сон порушений, "
        "болю нема, набряку нема."
    )
    found, probability = language._identifier("CYRILLIC").classify(text)
    assert (found, probability < language.EAST_SLAVIC_OR_BULGARIAN_SURE) == ("ru", True)
    assert language.classify_chunk(text) == ("uk", pytest.approx(1.0, abs=0.02))


def test_latin_drug_names_do_not_make_cld2_less_sure_of_ukrainian() -> None:
    text = (
        "Призначено: Trastuzumab 6 mg/kg, Pertuzumab 420 mg, Docetaxel 75 mg/m2 кожні три "
        "тижні, контроль ЕхоКГ, ЕКГ, загальний аналіз крові."
    )
    chunk = text.translate(language._TO_CYRILLIC)  # as classify_chunk passes it on
    # CLD2: Ukrainian 68 %, English 10 %, Serbian 10 % (the drug names' letters made Cyrillic)
    assert language.east_slavic_or_bulgarian(chunk) == ("uk", pytest.approx(68 / 78, abs=0.01))


def test_bulgarian_that_cld2_calls_serbian_keeps_py3langids_reading() -> None:
    text = "Грешка при инициализиране на буфер за шифъра за дешифриране."
    assert language.east_slavic_or_bulgarian(text) is None  # CLD2: Serbian, not one of the three
    assert identify(text).main_language == "bg"


@pytest.mark.parametrize("refused", ["\x00", "\x1f", "\x85", "\ud800", "\ufdd0", "\U0010ffff"])
def test_characters_cld2_refuses_do_not_stop_the_arbiter(refused: str) -> None:
    # not_text lets up to 2 % of such characters through; CLD2 raises on a single one.
    text = f"Хворий скаржиться на кашель{refused}, задишку та сильну втому, болю нема."
    assert language.east_slavic_or_bulgarian(text) == ("uk", pytest.approx(1.0, abs=0.02))


def test_the_checking_processes_load_no_lingua() -> None:
    code = (
        "import sys\n"
        "from referrals_translation import language\n"
        "language.load()\n"
        "print(','.join(m for m in ('lingua', 'pycld2', 'py3langid') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "pycld2,py3langid"


@pytest.mark.parametrize("code_at_the_end", [" G2", " IIB", ", HER2 1+, Ki-67 25 %.", " ПВ."])
def test_a_ukrainian_paragraph_ending_with_a_code_stays_ukrainian(code_at_the_end: str) -> None:
    text = (
        "Діагноз: рак лівої молочної залози. Інвазивна протокова карцинома, ступінь "
        "злоякісності. Рецептори естрогену 8 балів, прогестерону 6 балів" + code_at_the_end
    )
    assert identify(text).main_language == "uk"


def test_a_mixed_document_has_shares_and_its_larger_part_is_main() -> None:
    text = "\n".join([UKRAINIAN, UKRAINIAN.replace("біль", "гострий біль"), ENGLISH])
    result = identify(text)
    assert result.main_language == "uk"
    shares = dict(result.shares)
    assert set(shares) == {"uk", "en"}
    assert shares["uk"] > shares["en"] > 0.2
    assert sum(shares.values()) <= 1.0
    assert result.shares[0][0] == "uk"  # the main language comes first


def test_lines_of_codes_and_numbers_belong_to_no_language() -> None:
    text = UKRAINIAN + "\nER 8/8 PR 6/8 HER2 1+ Ki-67 25% T2N1M0 12.03.2025\n"
    result = identify(text)
    assert result.main_language == "uk"
    assert len(result.shares) == 1


@pytest.mark.parametrize(
    "text",
    [
        "Біопсія від 12.03.",
        "Биопсия от 12.03.",  # Lingua alone says Bulgarian, at 0.8
        "Діагноз: C50.4",
        "ER 8/8, PR 6/8, HER2 3+, Ki-67 25 %, T2N1M0, G2, BRCA1, PD-L1, MSI, CA-125",
        "",
    ],
)
def test_a_short_text_is_undetermined_not_guessed(text: str) -> None:
    result = identify(text)
    assert result.main_language is None
    assert result.shares == ()
    assert result.confidence == 0.0
    assert result.undetermined


def test_the_minimum_length_is_configurable() -> None:
    short = "Пацієнтка одужує, виписана додому."
    assert identify(short).main_language is None
    assert identify(short, min_letters=10).main_language == "uk"
    assert "at least 200" in (identify(UKRAINIAN, min_letters=200).undetermined or "")


@pytest.mark.parametrize(
    "text",
    [
        # words every European language borrowed: no language is likely
        "Hotel Taxi Pizza Radio Video Internet Bar Restaurant Camping Supermarket Parking Sport",
    ],
)
def test_an_uncertain_text_is_undetermined(text: str) -> None:
    result = identify(text)
    assert result.main_language is None
    assert result.undetermined


def _shifted(text: str, by: int) -> str:
    """Latin letters moved `by` places in the alphabet (a font with a private encoding)."""
    shift = {chr(base + i): chr(base + (i + by) % 26) for base in (65, 97) for i in range(26)}
    return "".join(shift.get(ch, ch) for ch in text)


def _typed_on_a_latin_layout(text: str) -> str:
    """Ukrainian typed with the keyboard left in the Latin layout ("Ghbdsn" for "Привіт")."""
    layout = dict(
        zip("йцукенгшщзхїфівапролджєячсмитьбю", "qwertyuiop[]asdfghjkl;'zxcvbnm,.", strict=True)
    )
    return "".join(layout.get(ch.lower(), ch) for ch in text)


@pytest.mark.parametrize(
    "text",
    [
        _shifted(ENGLISH * 2, 1),
        _shifted(ENGLISH * 2, 3),
        _typed_on_a_latin_layout(UKRAINIAN * 2),
        "xqzt vrkp mnbl wqxz trpl kvzq prst mlkn bvcx zqwr tplk nmzx " * 8,
        " ".join(
            f"{a}{b}{c}{d}"
            for a, b, c, d in zip(
                "qwrtzpsdfg" * 9, "kjhgfdsaqw" * 9, "mnbvcxzlkj" * 9, "trewqzxcvb" * 9, strict=True
            )
        ),
    ],
    ids=["shifted-by-1", "shifted-by-3", "wrong-keyboard-layout", "repeated-gibberish", "random"],
)
def test_garbled_text_is_undetermined_although_its_script_has_a_language(text: str) -> None:
    assert language.classify_chunk(text[:200]) is not None  # chunk by chunk it gets a language
    result = identify(text)
    assert result.main_language is None, result
    assert "garbled" in (result.undetermined or "")
    assert result.garbled


def test_real_documents_follow_their_languages_letter_pairs() -> None:
    assert (language.letter_pair_score(UKRAINIAN, "uk") or 0) > 0
    assert (language.letter_pair_score(ENGLISH, "en") or 0) > 0
    assert language.letter_pair_score("12.03 T2N1M0 HER2 Ki-67", "en") is None  # too short


def test_ukrainian_typed_with_latin_lookalikes_is_still_ukrainian() -> None:
    # A Latin i for і (and o, a, e, c, p for their Cyrillic twins) is common in typed documents.
    text = UKRAINIAN.replace("і", "i").replace("о", "o").replace("а", "a")
    result = identify(text)
    assert result.main_language == "uk", result
    assert not result.garbled


def test_the_minimum_confidence_is_configurable() -> None:
    spanish = "El estado general del paciente es bueno, está consciente y orientado."
    lenient = identify(spanish, min_confidence=0.5)
    assert lenient.main_language == "es"
    assert 0.5 <= lenient.confidence < 1.0  # Portuguese and Catalan are close
    strict = identify(spanish, min_confidence=1.0)
    assert strict.main_language is None
    assert "uncertain" in (strict.undetermined or "")


def test_a_long_paragraph_is_cut_into_chunks_between_words() -> None:
    text = " ".join([UKRAINIAN] * 6)  # one line of about 900 letters
    chunks = list(language._chunks(text))
    assert len(chunks) >= 5
    assert all(chunk_letters >= language.CHUNK_LETTERS for _, chunk_letters in chunks[:-1])
    assert sum(n for _, n in chunks) == language.count_letters(text)
    assert " ".join(chunk for chunk, _ in chunks) == text


def test_short_lines_are_gathered_and_a_paragraph_stands_alone() -> None:
    heading = "ВИПИСКА"
    table = ["Гемоглобін 118 г/л", "Лейкоцити 5,6", "Тромбоцити 212"]
    text = "\n".join([heading, *table, ENGLISH])
    chunks = [chunk for chunk, _ in language._chunks(text)]
    assert chunks[-1] == ENGLISH  # never glued to the Ukrainian lines before it
    assert chunks[0].startswith(heading)


def test_has_letters_says_what_counting_them_says() -> None:
    """It stops at the last letter it needs; the answer is counting's all the same."""
    for text in ("", "12 345 !?", "a", "1a", "ab c", "Ще 12", "x" + "1" * 1000 + "yz"):
        for at_least in (1, 2, 3, 4):
            assert language.has_letters(text, at_least) == (
                language.count_letters(text) >= at_least
            )


def test_identify_counts_the_characters_once_for_letters_and_noise() -> None:
    """`not_text` with the counts `identify` made says what it says counting them itself."""
    for text in ("Пацієнтка 1965 р.н. \x00\x01", "ab%%%%%%%%%%%", "Hello, world"):
        assert language.not_text(text, Counter(text)) == language.not_text(text)


def deepest_labels(walk: Any, depth: int) -> list[bytes]:
    """The byte n-grams of the tokenizer's states `depth` steps from its start (breadth first),
    after checking that every state is at most `depth` steps away."""
    import numpy as np

    states = walk.row_base.size
    level_of = np.full(states, -1, dtype=np.int64)
    parent = np.zeros(states, dtype=np.int64)
    byte = np.zeros(states, dtype=np.int64)
    level_of[0] = 0
    frontier = np.array([0])
    level = 0
    while frontier.size:
        level += 1
        targets = walk.next_state[walk.row_base[frontier][:, None] + np.arange(256)]
        fresh, first = np.unique(targets.astype(np.int64).ravel(), return_index=True)
        new = level_of[fresh] < 0
        fresh, first = fresh[new], first[new]
        level_of[fresh], parent[fresh], byte[fresh] = level, frontier[first // 256], first % 256
        frontier = fresh
    assert (level_of >= 0).all() and level_of.max() == depth
    labels = []
    for state in np.flatnonzero(level_of == depth).tolist():
        label = b""
        while state:
            label, state = bytes([int(byte[state])]) + label, int(parent[state])
        labels.append(label)
    return labels


def test_the_tokenizer_walked_at_once_finds_what_py3langid_finds_chunk_by_chunk() -> None:
    """Every chunk's features and their counts, in py3langid's order: the set's sentences,
    random characters of many scripts, an empty and a one-letter chunk, and the n-grams of the
    tokenizer's deepest states (Japanese), walked as one text."""
    import py3langid.langid as langid

    from tests.unit.translation.test_langid_set import sentences

    walk = language._tokenizer_walk()
    assert walk is not None  # the pinned model's tokenizer restarts on CHUNK_BREAK
    identifier = language._identifier("LATIN")
    rng = random.Random(25)
    noise = [
        "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(0, 400)))
        for _ in range(300)
    ]
    deepest = [
        label.decode(errors="ignore") for label in deepest_labels(walk, language.TOKENIZER_DEPTH)
    ]
    assert deepest  # the constant is the automaton's depth, not more
    texts = [sentence for _, _, sentence in sentences()] + noise + ["", "a"]
    texts += [*deepest, "".join(deepest), " ".join(deepest)]
    encoded = [identifier._encode(text) for text in texts]
    expected = [
        langid.visit_counts(identifier.tk_nextmove, identifier._rowbase, identifier.tk_output, data)
        for data in encoded
    ]
    walked = walk.visits(encoded)
    assert [None if v is None else list(v.items()) for v in walked] == [
        None if v is None else list(v.items()) for v in expected
    ]


def test_a_documents_chunks_classified_at_once_get_what_each_gets_alone() -> None:
    """The same language and the same probability, to the bit, for every chunk of a long
    mixed document (Ukrainian, Russian, English, German, Hebrew)."""
    from tests.fixtures.translation import texts

    text = "\n\n".join(
        "\n".join(paragraphs)
        for _, paragraphs in (
            texts.DISCHARGE_UK,
            texts.PATHOLOGY_RU,
            texts.PATHOLOGY_EN,
            texts.ARZTBRIEF_DE,
        )
    )
    text += "\n\nמטופלת בת 58 עם קרצינומה פולשנית של השד השמאלי, לאחר ביופסיה."
    chunks = [chunk for chunk, _ in language._chunks(text)]
    assert len(chunks) >= language.WALK_AHEAD_CHUNKS
    alone = [language.classify_chunk(chunk) for chunk in chunks]  # walked by py3langid
    assert language._classify_chunks(chunks) == alone
    assert {found[0] for found in alone if found} >= {"uk", "ru", "en", "de", "he"}


# --- the same answers with less work ------------------------------------------------------------


def _script_by_counting(line: str) -> str | None:
    """`_script` as it was written: every letter of the line counted for its script."""
    counts: dict[str, int] = {}
    for ch, n in Counter(line).items():
        script = language._letter_script(ch)
        if script is not None:
            counts[script] = counts.get(script, 0) + n
    return max(counts, key=lambda script: counts[script]) if counts else None


def _mixed_words(text: str) -> tuple[int, int]:
    """Words of `not_text`'s sample and how many mix scripts, as it counted them."""
    words = [w for w in language._WORD.findall(text[: language.MIXED_SCRIPT_SAMPLE]) if len(w) > 2]
    return len(words), sum(
        len({language._letter_script(ch) for ch in w if ch not in language._LOOKALIKES}) > 1
        for w in words
    )


def _random_lines(count: int) -> list[str]:
    """Lines of Latin, Cyrillic, Greek, Hebrew, look-alikes, digits, digit-like letters (², ½,
    Ⅻ), ª and º (letters of no script's name), symbols and controls, in any mixture."""
    rng = random.Random(2525)
    alphabet = (
        "abcxyzXYZäöüßéñçł" + "абвгдежзиіїєґыэАБВГ" + "αβγΩ" + "אבג" + "aceopxyасеорху"
        + "0123456789²³½Ⅻ" + "ªºµ" + " .,;:-_/%()\t\x00\ufffd\ue000"
    )  # fmt: skip
    return [
        "".join(rng.choice(alphabet[: rng.randrange(1, len(alphabet))]) for _ in range(length))
        for length in (rng.randrange(0, 90) for _ in range(count))
    ]


def test_a_lines_script_is_what_counting_its_letters_says() -> None:
    """Single-script lines are decided without counting each letter; the script is the same."""
    for line in [*_random_lines(20_000), "", "12 34", "µ", "ª mixed ºº", ENGLISH, UKRAINIAN]:
        assert language._script(line) == _script_by_counting(line), line
    counted: list[str] = []

    class CountingCounter(Counter[str]):
        def __init__(self, text: str) -> None:
            counted.append(text)
            super().__init__(text)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(language, "Counter", CountingCounter)
        assert [language._script(line) for line in (ENGLISH, "Größe", UKRAINIAN)] == [
            "LATIN",
            "LATIN",
            "CYRILLIC",
        ]
        assert language._script("Гемоглобін Hb 118 г/л") == "CYRILLIC"
    assert counted == ["Гемоглобін Hb 118 г/л"]  # only the line mixing scripts


def test_no_word_is_looked_at_for_mixed_scripts_when_the_text_has_one_script() -> None:
    """`not_text` finds mixed-script words exactly as before, and reads no word of a text whose
    word characters are all of one script (the whole text's characters, counted already)."""
    rng = random.Random(77)
    lines = _random_lines(3_000)
    for _ in range(3_000):
        text = "\n".join(rng.sample(lines, rng.randrange(1, 30)))
        words, mixed = _mixed_words(text)
        caught = language.not_text(text)
        if words and mixed > language.MAX_MIXED_SCRIPT_WORDS * words:
            assert caught is not None
        elif caught is not None:
            assert "mix scripts" not in caught

    word = language._WORD

    class Spy:
        def __init__(self) -> None:
            self.read: list[str] = []

        def findall(self, text: str) -> list[str]:
            self.read.append(text)
            return list(word.findall(text))

        def fullmatch(self, ch: str) -> object:
            return word.fullmatch(ch)

    spy = Spy()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(language, "_WORD", spy)
        assert language.not_text(ENGLISH + "\n" + "Größe 1,5 m, Ærø") is None
        assert language.not_text(UKRAINIAN) is None
        assert spy.read == []  # was every word of both texts
        assert language.not_text("Пацieнт з бiлем" + " Пацiєнт Hеmоглобін" * 20) is not None
        assert spy.read  # Latin and Cyrillic letters in the text: its words are read


def test_a_words_letter_pairs_are_looked_up_once_and_summed_as_before() -> None:
    """The letter-pair score of a text whose words repeat is the sum, pair by pair in the text's
    order, of each pair's information (to the bit); each distinct word's pairs are looked up
    once."""
    text = (ENGLISH + " ") * 40
    pairs = language._letter_pairs("en")
    assert pairs is not None
    total, n = 0.0, 0
    for word in language._WORD.findall(text.lower()):
        for a, b in itertools.pairwise(f" {word} "):
            total += pairs.information(a, b)
            n += 1
        if n * 2 > language.PAIR_SAMPLE_LETTERS:
            break
    looked_up = Counter[str]()
    information = type(pairs).information

    def counted(self: Any, a: str, b: str) -> float:
        looked_up[a + b] += 1
        result: float = information(self, a, b)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(pairs), "information", counted)
        assert language.letter_pair_score(text, "en") == total / n
    distinct_words = set(language._WORD.findall(ENGLISH.lower()))
    assert sum(looked_up.values()) == sum(len(word) + 1 for word in distinct_words)
