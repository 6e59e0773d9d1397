"""Language identification accuracy on tests/fixtures/translation/sentences.tsv: real-looking
sentences, medical and everyday, in 13 languages, most of them Ukrainian and Russian (the pair
that matters most and is easiest to confuse)."""

from __future__ import annotations

from collections import Counter

import pytest

from referrals_translation.language import identify

from .conftest import FIXTURES

pytestmark = pytest.mark.unit

MIN_CHARACTERS = 50
MIN_ACCURACY = 0.97


def sentences() -> list[tuple[str, str]]:
    rows = []
    for line in (FIXTURES / "sentences.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            language, sentence = line.split("\t")
            rows.append((language, sentence))
    return rows


def long_sentences() -> list[tuple[str, str]]:
    return [(lang, sentence) for lang, sentence in sentences() if len(sentence) >= MIN_CHARACTERS]


def test_the_set_is_large_varied_and_clean() -> None:
    rows = sentences()
    per_language = Counter(language for language, _ in rows)
    assert len(long_sentences()) >= 300
    assert len(per_language) >= 10
    assert per_language["uk"] >= 60 and per_language["ru"] >= 60
    assert len({sentence for _, sentence in rows}) == len(rows), "a sentence is repeated"
    assert all(sentence == sentence.strip() and "\t" not in sentence for _, sentence in rows)


def test_accuracy_on_sentences_of_50_characters_or_more() -> None:
    confusion: Counter[str] = Counter()
    correct = 0
    rows = long_sentences()
    for expected, sentence in rows:
        found = identify(sentence).main_language
        if found == expected:
            correct += 1
        else:
            confusion[f"{expected}→{found or 'undetermined'}"] += 1
    accuracy = correct / len(rows)
    print(f"\nlanguage identification: {correct}/{len(rows)} correct ({accuracy:.1%})")
    for pair, count in confusion.most_common():
        print(f"  {pair}: {count}")
    assert accuracy >= MIN_ACCURACY, dict(confusion)
    wrong = sum(n for pair, n in confusion.items() if not pair.endswith("undetermined"))
    assert wrong <= 0.01 * len(rows), f"confident mistakes: {dict(confusion)}"


def test_ukrainian_and_russian_are_never_confused() -> None:
    for expected, sentence in long_sentences():
        if expected in ("uk", "ru"):
            found = identify(sentence).main_language
            assert found in (expected, None), f"{expected}→{found}: {sentence}"


def test_short_sentences_are_not_guessed() -> None:
    short = [(lang, s) for lang, s in sentences() if len(s) < MIN_CHARACTERS]
    assert short
    for expected, sentence in short:
        found = identify(sentence).main_language
        assert found in (expected, None), f"{expected}→{found}: {sentence}"
