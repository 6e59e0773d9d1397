"""The center registry: the shipped sample seed, the loader's errors, and ICD-10 entries."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from referrals_partners.registry import (
    SAMPLE_REGISTRY_FILE,
    CenterStatus,
    IcdMatcher,
    RegistryError,
    load_registry,
    parse_icd_spec,
    parse_registry,
    registry_from_document,
)

from .helpers import center

pytestmark = pytest.mark.unit

SAMPLE_TEXT = resources.files("referrals_partners").joinpath(SAMPLE_REGISTRY_FILE).read_text()


# --------------------------------------------------------------------------- the sample seed


def test_sample_seed_loads_and_is_marked_sample() -> None:
    registry = load_registry()
    assert registry.version == 1
    assert registry.sample_data is True
    assert "SAMPLE DATA - NOT REAL PARTNERS" in SAMPLE_TEXT
    assert "INVENTED for demos and tests" in SAMPLE_TEXT
    assert 14 <= len(registry.centers) <= 18
    for c in registry.centers:
        assert c.code.startswith("sample-"), c.code
        assert c.name.startswith("Sample "), c.name
        assert c.contact.email.endswith(".example"), c.contact.email


def test_sample_seed_covers_the_countries_and_kinds() -> None:
    centers = load_registry().centers
    assert {c.country for c in centers} >= {"UA", "PL", "DE", "AT", "IL", "TR", "US"}
    ukrainian_cities = {c.city for c in centers if c.country == "UA"}
    assert ukrainian_cities >= {"Kyiv", "Lviv", "Kharkiv", "Dnipro"}
    assert any(c.country == "UA" and c.age_groups == ["pediatric"] for c in centers)
    assert any(c.status is CenterStatus.PAUSED for c in centers)
    assert len({c.price.currency for c in centers}) >= 5
    assert len({tuple(c.languages) for c in centers}) >= 8


def test_sample_seed_every_price_converts() -> None:
    registry = load_registry()
    for c in registry.centers:
        assert registry.currency.to_reference(c.price) >= 0


def test_sample_seed_round_trips_through_json() -> None:
    registry = load_registry()
    for c in registry.centers:
        assert type(c).model_validate(c.model_dump(mode="json")) == c


def test_registry_by_code() -> None:
    registry = load_registry()
    assert registry.center("sample-breast-center-berlin").city == "Berlin"
    with pytest.raises(KeyError):
        registry.center("nope")


def test_load_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "centers.yaml"
    path.write_text(SAMPLE_TEXT.replace("sample_data: true", "sample_data: false"))
    assert load_registry(path).sample_data is False
    with pytest.raises(RegistryError, match="cannot read the file"):
        load_registry(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------ the loader's errors


def document() -> dict[str, Any]:
    """The sample seed as data, to break one piece at a time."""
    return yaml.safe_load(SAMPLE_TEXT)


def problems_of(doc: object) -> str:
    with pytest.raises(RegistryError) as caught:
        registry_from_document(doc, "test.yaml")
    return str(caught.value)


def test_bad_icd_entry_names_the_center() -> None:
    doc = document()
    doc["centers"][2]["cancers"] = ["C50", "C50-C40"]
    message = problems_of(doc)
    assert message.startswith("test.yaml: invalid center registry:")
    assert (
        "centers[2] 'sample-private-oncology-kyiv' (Sample Private Oncology Clinic Kyiv): "
        "cancers.1: range 'C50-C40' runs backwards: write 'C40-C50'"
    ) in message


def test_every_bad_entry_is_reported() -> None:
    doc = document()
    del doc["centers"][0]["weekly_capacity"]
    doc["centers"][5]["languages"] = ["UK"]
    doc["centers"][7]["contact"]["webhook_url"] = "http://insecure.example/hook"
    with pytest.raises(RegistryError) as caught:
        registry_from_document(doc, "test.yaml")
    problems = caught.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("centers[0] 'sample-national-cancer-kyiv'")
    assert "weekly_capacity: Field required" in problems[0]
    assert problems[1].startswith("centers[5] 'sample-oncology-dnipro'")
    assert "languages.0" in problems[1]
    assert problems[2].startswith("centers[7] 'sample-university-hospital-krakow'")
    assert "a webhook URL must use https" in problems[2]


def test_entry_without_code_is_named_by_position() -> None:
    doc = document()
    del doc["centers"][3]["code"]
    assert "centers[3] (Sample Regional Oncology Center Lviv): code: Field required" in (
        problems_of(doc)
    )


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        pytest.param(
            lambda d: d["centers"].append(dict(d["centers"][0])),
            "center 'sample-national-cancer-kyiv' appears more than once",
            id="duplicate-code",
        ),
        pytest.param(
            lambda d: d["currency"]["rates"].pop("ILS"),
            "center 'sample-oncology-tel-aviv' is priced in ILS, which has no exchange rate",
            id="currency-without-rate",
        ),
        pytest.param(
            lambda d: d.update(version=2), "version: 2 is not supported", id="unknown-version"
        ),
        pytest.param(lambda d: d.pop("version"), "version: required", id="no-version"),
        pytest.param(lambda d: d.pop("sample_data"), "sample_data: required", id="no-sample-flag"),
        pytest.param(
            lambda d: d.update(sample_data="yes"), "sample_data: required", id="sample-flag-text"
        ),
        pytest.param(lambda d: d.update(centers=[]), "centers: required", id="no-centers"),
        pytest.param(lambda d: d.update(extra=1), "unknown top-level keys: extra", id="extra-key"),
        pytest.param(
            lambda d: d["currency"]["rates"].update(EUR=2),
            "reference currency EUR must have the rate 1",
            id="reference-rate-not-one",
        ),
        pytest.param(
            lambda d: d["centers"][1].update(age_groups=["adult"]),
            "centers[1] 'sample-childrens-oncology-kyiv'",
            id="children-hospital-without-children",
        ),
        pytest.param(
            lambda d: d["centers"][1].update(status="closed"),
            "status: Input should be 'active' or 'paused'",
            id="unknown-status",
        ),
        pytest.param(
            lambda d: d["centers"][1]["price"].update(currency="euro"),
            "price.currency",
            id="bad-currency-code",
        ),
    ],
)
def test_registry_problems(breaks: Any, expected: str) -> None:
    doc = document()
    breaks(doc)
    assert expected in problems_of(doc)


def test_not_a_mapping() -> None:
    assert "must be a mapping" in problems_of(["a", "list"])


def test_duplicate_yaml_key_refused() -> None:
    text = SAMPLE_TEXT.replace("    status: paused\n", "    status: paused\n    status: active\n")
    with pytest.raises(RegistryError, match="duplicate key 'status'"):
        parse_registry(text, "test.yaml")


def test_invalid_yaml() -> None:
    with pytest.raises(RegistryError, match="not valid YAML"):
        parse_registry("centers: [", "test.yaml")


def test_children_hospital_must_see_children() -> None:
    with pytest.raises(ValueError, match="children_hospital must list the pediatric"):
        center(kind="children_hospital", age_groups=["adult"])


# -------------------------------------------------------------------------- ICD-10 entries


@pytest.mark.parametrize(
    ("text", "categories", "subcode"),
    [
        pytest.param("C50", ("C50",), None, id="category"),
        pytest.param("C91.0", (), "C91.0", id="subcode"),
        pytest.param("C81.10", (), "C81.10", id="long-subcode"),
        pytest.param("C00-C03", ("C00", "C01", "C02", "C03"), None, id="range"),
        pytest.param("C98-D01", ("C98", "C99", "D00", "D01"), None, id="range-across-letters"),
        pytest.param("D49", ("D49",), None, id="chapter-end"),
        pytest.param("C50-C50", ("C50",), None, id="one-category-range"),
    ],
)
def test_valid_icd_entries(text: str, categories: tuple[str, ...], subcode: str | None) -> None:
    spec = parse_icd_spec(text)
    assert spec.text == text
    assert spec.categories == categories
    assert spec.subcode == subcode


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("c50", "upper case: write 'C50', not 'c50'", id="lower-case"),
        pytest.param("C14-C00", "runs backwards: write 'C00-C14'", id="backwards"),
        pytest.param("C81.0-C81.4", "joins sub-codes", id="subcode-range"),
        pytest.param("C50.9-C51", "joins sub-codes", id="half-subcode-range"),
        pytest.param("E11", "outside the neoplasm chapter C00-D49", id="diabetes"),
        pytest.param("D50", "outside the neoplasm chapter", id="after-chapter"),
        pytest.param("B99-C02", "outside the neoplasm chapter", id="range-starts-outside"),
        pytest.param("C5", "not an ICD-10 code or range", id="short"),
        pytest.param("C50.", "not an ICD-10 code or range", id="dangling-dot"),
        pytest.param("C50.12345", "not an ICD-10 code or range", id="long-subcode"),
        pytest.param("C00 - C14", "not an ICD-10 code or range", id="spaces"),
        pytest.param("C00-C14-C20", "not an ICD-10 code or range", id="three-parts"),
        pytest.param("", "not an ICD-10 code or range", id="empty"),
        pytest.param("breast", "'breast' is not an ICD-10 code or range", id="words"),
        pytest.param("e11", "'e11' is not an ICD-10 code or range", id="lower-outside"),
    ],
)
def test_invalid_icd_entries(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"ICD-10|neoplasm|backwards|sub-codes") as caught:
        parse_icd_spec(text)
    assert message in str(caught.value)


def test_invalid_icd_entry_in_a_center() -> None:
    with pytest.raises(ValueError, match=r"cancers\.1"):
        center(cancers=["C50", "C81.0-C81.4"])


def test_duplicate_icd_entries_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        center(cancers=["C50", "C50"])


@pytest.mark.parametrize(
    ("entries", "code", "best"),
    [
        pytest.param(["C00-C80", "C50", "C50.9"], "C50.9", "C50.9", id="subcode-over-category"),
        pytest.param(["C00-C80", "C50"], "C50.1", "C50", id="category-over-range"),
        pytest.param(["C00-C80", "C45-C55"], "C50.1", "C45-C55", id="narrower-range"),
        pytest.param(["C34"], "C50.1", None, id="none"),
    ],
)
def test_best_match(entries: list[str], code: str, best: str | None) -> None:
    spec = IcdMatcher.compile(entries).best_match(code)
    assert (spec.text if spec else None) == best
    assert IcdMatcher.compile(entries).covers(code) == (best is not None)
