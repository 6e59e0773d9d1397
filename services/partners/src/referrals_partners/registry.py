"""The registry of cancer centers: what each center reviews, for whom, in which languages, how fast
and for how much, and the loader of the versioned seed file.

Routing (`routing.py`) trusts this data completely, so everything is validated on the way in:
a center that claims `C50-C40`, an unknown language or a currency without an exchange rate would
otherwise mis-route cases silently. The loader checks every entry, collects every problem and
fails with one message that names each bad entry by its position and code.

Three things are decided here (see docs):

- **What a center reviews** is a list of ICD-10 entries: a category (`C50`: every breast cancer),
  a sub-code (`C91.0`: that sub-code and codes extending it, not the bare `C91`) or an inclusive
  range of whole categories (`C00-C14`). Ranges of sub-codes are refused; only the neoplasm
  chapter C00-D49 is accepted.
- **Prices are compared in one currency.** The seed file carries a small fixed table of
  approximate exchange rates to a reference currency (EUR); they rank centers and are never used
  for billing. Every center's currency must be in the table.
- **Routing facts are compiled once per center** (`Center.routing_profile`): sets of languages,
  age groups and ICD categories, so one routing decision over 1,000 centers stays well under 2 ms.

The contact is the center's own (where partners sends offers and reminders), never a patient's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    AfterValidator,
    Field,
    HttpUrl,
    PositiveInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from referrals_common.contracts import AgeGroup
from referrals_common.contracts.intake import (
    CountryCode,
    InsurerCode,
    LanguageCode,
    Payer,
    PayerKind,
)
from referrals_common.contracts.partners import CenterCode
from referrals_common.frozen import FrozenModel

SUPPORTED_VERSIONS = frozenset({1})
"""Seed file versions this code reads."""

SAMPLE_REGISTRY_FILE = "centers.sample.yaml"
"""The sample seed shipped inside the package (invented centers for demos and tests)."""

# ---------------------------------------------------------------------------------- ICD-10


_CATEGORY = r"[A-Z][0-9]{2}"
_SUB = r"[0-9A-Z]{1,4}"
_SINGLE = re.compile(rf"^(?P<category>{_CATEGORY})(?:\.(?P<sub>{_SUB}))?$")
_RANGE = re.compile(rf"^(?P<first>{_CATEGORY})-(?P<last>{_CATEGORY})$")
_SUBCODE_RANGE = re.compile(rf"^{_CATEGORY}(\.{_SUB})?-{_CATEGORY}(\.{_SUB})?$")
_CHAPTER = ("C00", "D49")
_SYNTAX_HINT = "write a category (C50), a sub-code (C91.0) or a range of categories (C00-C14)"


def _ordinal(category: str) -> int:
    """A category's position: C00 → 200, C99 → 299, D00 → 300, so a range may cross letters."""
    return (ord(category[0]) - ord("A")) * 100 + int(category[1:3])


def _category(ordinal: int) -> str:
    return f"{chr(ord('A') + ordinal // 100)}{ordinal % 100:02d}"


def _check_chapter(text: str, category: str) -> None:
    first, last = _CHAPTER
    if not _ordinal(first) <= _ordinal(category) <= _ordinal(last):
        raise ValueError(f"{text!r} is outside the neoplasm chapter {first}-{last}")


@dataclass(frozen=True, slots=True)
class IcdSpec:
    """One parsed ICD-10 entry of a center: a category, a sub-code or a range of categories."""

    text: str
    """The entry as written: `C50`, `C91.0`, `C00-C14`."""
    first: int
    """Ordinal of the first category covered."""
    last: int
    """Ordinal of the last category covered; equal to `first` unless a range."""
    subcode: str | None = None
    """The sub-code (`C91.0`) when the entry is one; None for a category or a range."""

    @property
    def categories(self) -> tuple[str, ...]:
        """The whole categories covered; empty for a sub-code."""
        if self.subcode is not None:
            return ()
        return tuple(_category(n) for n in range(self.first, self.last + 1))

    @property
    def width(self) -> int:
        """How many categories it covers, 0 for a sub-code: the smaller, the more specific."""
        return 0 if self.subcode is not None else self.last - self.first + 1

    def covers(self, code: str) -> bool:
        """Whether a case's code (`C50.9`, `C50`) falls under this entry."""
        if self.subcode is not None:
            return code.startswith(self.subcode)
        return self.first <= _ordinal(code) <= self.last


def parse_icd_spec(text: str) -> IcdSpec:
    """Parse one entry; the `ValueError` quotes the entry and says what to write instead."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"{text!r} is not an ICD-10 code or range: {_SYNTAX_HINT}")
    if text != text.upper():
        try:
            parse_icd_spec(text.upper())
        except ValueError:
            raise ValueError(f"{text!r} is not an ICD-10 code or range: {_SYNTAX_HINT}") from None
        raise ValueError(f"ICD-10 codes are upper case: write {text.upper()!r}, not {text!r}")
    if single := _SINGLE.match(text):
        _check_chapter(text, single["category"])
        n = _ordinal(single["category"])
        return IcdSpec(text, n, n, text if single["sub"] else None)
    if ranged := _RANGE.match(text):
        first, last = ranged["first"], ranged["last"]
        _check_chapter(text, first)
        _check_chapter(text, last)
        if _ordinal(first) > _ordinal(last):
            raise ValueError(f"range {text!r} runs backwards: write '{last}-{first}'")
        return IcdSpec(text, _ordinal(first), _ordinal(last))
    if _SUBCODE_RANGE.match(text):
        raise ValueError(
            f"range {text!r} joins sub-codes: a range joins whole categories (C81-C85); "
            "list sub-codes one by one"
        )
    raise ValueError(f"{text!r} is not an ICD-10 code or range: {_SYNTAX_HINT}")


def _check_icd_spec(text: str) -> str:
    parse_icd_spec(text)
    return text


@dataclass(frozen=True, slots=True)
class IcdMatcher:
    """A center's ICD-10 entries compiled for matching: one set lookup, one `startswith`."""

    specs: tuple[IcdSpec, ...]
    categories: frozenset[str]
    """Every whole category covered by a category or range entry."""
    subcodes: tuple[str, ...]
    """The sub-code entries (`str.startswith` takes the tuple)."""

    @classmethod
    def compile(cls, texts: Iterable[str]) -> IcdMatcher:
        specs = tuple(parse_icd_spec(text) for text in texts)
        categories = frozenset(c for spec in specs for c in spec.categories)
        subcodes = tuple(spec.subcode for spec in specs if spec.subcode is not None)
        return cls(specs, categories, subcodes)

    def covers(self, code: str) -> bool:
        """Whether the center reviews a case with this code."""
        return code[:3] in self.categories or (
            bool(self.subcodes) and code.startswith(self.subcodes)
        )

    def best_match(self, code: str) -> IcdSpec | None:
        """The most specific entry covering the code (for explanations), or None."""
        matching = [spec for spec in self.specs if spec.covers(code)]
        return min(matching, key=lambda spec: spec.width) if matching else None


# ------------------------------------------------------------------------------- the center


def _no_duplicates(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("the list has duplicate items")
    return values


IcdEntry = Annotated[
    str,
    AfterValidator(_check_icd_spec),
    Field(
        description="ICD-10 category (C50), sub-code (C91.0) or inclusive range of categories "
        "(C00-C14), within C00-D49",
        examples=["C50", "C91.0", "C00-C14"],
    ),
]

CurrencyCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    Field(description="ISO 4217 currency code: EUR, UAH, PLN", examples=["EUR"]),
]

Email = Annotated[
    str,
    StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254),
    Field(description="E-mail address of the center's referral desk"),
]

Phone = Annotated[
    str,
    StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$"),
    Field(description="Phone number in E.164 form: +380441234567"),
]


class CenterKind(StrEnum):
    """What kind of institution a center is."""

    NATIONAL_CANCER_INSTITUTE = "national_cancer_institute"
    UNIVERSITY_HOSPITAL = "university_hospital"
    REGIONAL_CANCER_CENTER = "regional_cancer_center"
    PRIVATE_CLINIC = "private_clinic"
    CHILDREN_HOSPITAL = "children_hospital"


class CenterStatus(StrEnum):
    """Whether a center takes new referrals."""

    ACTIVE = "active"
    PAUSED = "paused"
    """In the registry but offered nothing (holidays, contract renewal, an incident)."""


class Price(FrozenModel):
    """What one opinion costs the patient or the payer, in the center's currency."""

    amount: Decimal = Field(ge=0, max_digits=12, decimal_places=2, description="0 if free")
    currency: CurrencyCode


class AcceptedPayers(FrozenModel):
    """Who may pay a center for an opinion (seeds 003, 004). A center that declares nothing
    takes self-paying patients and charities or funds, and no insurer."""

    self_pay: bool = Field(default=True, description="Patients who pay themselves")
    charity: bool = Field(default=True, description="A charity or fund paying for the patient")
    insurers: list[InsurerCode] = Field(
        default_factory=list, max_length=200, description="The insurers it has agreements with"
    )

    def accepts(self, payer: Payer) -> bool:
        if payer.kind is PayerKind.SELF_PAY:
            return self.self_pay
        if payer.kind is PayerKind.CHARITY:
            return self.charity
        return payer.insurer in self.insurers


class CenterContact(FrozenModel):
    """How partners reaches the center's referral desk (the center's contact, not a patient's)."""

    email: Email
    phone: Phone
    webhook_url: HttpUrl | None = Field(
        default=None, description="HTTPS endpoint for offer notifications, if the center has one"
    )

    @field_validator("webhook_url")
    @classmethod
    def _https_only(cls, url: HttpUrl | None) -> HttpUrl | None:
        if url is not None and url.scheme != "https":
            raise ValueError("a webhook URL must use https")
        return url


@dataclass(frozen=True, slots=True)
class RoutingProfile:
    """A center's routing facts, compiled once: what `routing.decide` reads in its hot loop."""

    code: str
    country: str
    active: bool
    languages: frozenset[str]
    age_groups: frozenset[str]
    """`AgeGroup` values as plain strings."""
    icd: IcdMatcher
    categories: frozenset[str]
    """`icd.categories`, one attribute closer."""
    subcodes: tuple[str, ...]
    """`icd.subcodes`, one attribute closer."""
    capacity: int
    turnaround_days: int
    payers: AcceptedPayers


class _CompiledModel(FrozenModel):
    """A frozen model whose `cached_property` values are derived from its fields.

    `model_copy(update=...)` copies the instance dict, cached values included, without
    re-validating: dropping them makes a copy recompute from its own fields.
    """

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copied = super().model_copy(update=update, deep=deep)
        for klass in type(self).__mro__:
            for name, member in vars(klass).items():
                if isinstance(member, cached_property):
                    copied.__dict__.pop(name, None)
        return copied


class Center(_CompiledModel):
    """A cancer center of the registry."""

    code: CenterCode
    name: str = Field(min_length=1, max_length=200, description="Display name, in English")
    country: CountryCode
    city: str = Field(min_length=1, max_length=100, description="City, in English")
    kind: CenterKind
    languages: Annotated[list[LanguageCode], AfterValidator(_no_duplicates)] = Field(
        min_length=1, description="Languages the center's reviewers read, most used first"
    )
    cancers: Annotated[list[IcdEntry], AfterValidator(_no_duplicates)] = Field(
        min_length=1, description="What the center reviews: ICD-10 categories, sub-codes, ranges"
    )
    age_groups: Annotated[list[AgeGroup], AfterValidator(_no_duplicates)] = Field(
        min_length=1, description="Adult and/or pediatric patients"
    )
    weekly_capacity: PositiveInt = Field(le=10_000, description="Referrals it takes per week")
    answer_deadline_hours: PositiveInt = Field(
        le=14 * 24, description="Hours the center has to accept or decline an offer"
    )
    opinion_turnaround_days: PositiveInt = Field(
        le=90, description="Days from acceptance to the written opinion"
    )
    price: Price
    payers: AcceptedPayers = Field(
        default_factory=AcceptedPayers, description="Who may pay it for an opinion"
    )
    contact: CenterContact
    status: CenterStatus

    @model_validator(mode="after")
    def _children_hospital_sees_children(self) -> Self:
        if self.kind is CenterKind.CHILDREN_HOSPITAL and AgeGroup.PEDIATRIC not in self.age_groups:
            raise ValueError("a children_hospital must list the pediatric age group")
        return self

    @cached_property
    def routing_profile(self) -> RoutingProfile:
        """The compiled routing facts (computed on first use, then kept with the center)."""
        icd = IcdMatcher.compile(self.cancers)
        return RoutingProfile(
            code=self.code,
            country=self.country,
            active=self.status is CenterStatus.ACTIVE,
            languages=frozenset(self.languages),
            age_groups=frozenset(str(group.value) for group in self.age_groups),
            icd=icd,
            categories=icd.categories,
            subcodes=icd.subcodes,
            capacity=self.weekly_capacity,
            turnaround_days=self.opinion_turnaround_days,
            payers=self.payers,
        )


# ----------------------------------------------------------------------------- the registry


class ExchangeRates(FrozenModel):
    """Fixed, approximate rates to one reference currency: for ranking prices, never billing."""

    reference: CurrencyCode = Field(description="The currency prices are compared in")
    rates: dict[CurrencyCode, Decimal] = Field(
        min_length=1, description="Units of the reference currency for one unit of each currency"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.rates.get(self.reference) != 1:
            raise ValueError(f"the reference currency {self.reference} must have the rate 1")
        bad = sorted(code for code, rate in self.rates.items() if rate <= 0)
        if bad:
            raise ValueError(f"rates must be positive: {', '.join(bad)}")
        return self

    def to_reference(self, price: Price) -> Decimal:
        """The price in the reference currency, rounded to cents."""
        if price.currency not in self.rates:
            raise ValueError(f"no exchange rate for {price.currency}")
        return (price.amount * self.rates[price.currency]).quantize(Decimal("0.01"))


class Registry(_CompiledModel):
    """A validated registry: the seed's version, whether it is sample data, rates and centers."""

    version: int = Field(description="Version of the seed file format")
    sample_data: bool = Field(description="True for invented centers (demos and tests only)")
    currency: ExchangeRates
    centers: list[Center]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = _registry_problems(self.centers, self.currency)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @cached_property
    def by_code(self) -> dict[str, Center]:
        """The centers by code."""
        return {center.code: center for center in self.centers}

    def center(self, code: str) -> Center:
        """One center; `KeyError` if the registry has no such code."""
        return self.by_code[code]


def _registry_problems(centers: list[Center], currency: ExchangeRates) -> list[str]:
    problems = []
    seen: set[str] = set()
    for center in centers:
        if center.code in seen:
            problems.append(f"center {center.code!r} appears more than once")
        seen.add(center.code)
        if center.price.currency not in currency.rates:
            problems.append(
                f"center {center.code!r} is priced in {center.price.currency}, which has no "
                "exchange rate in currency.rates"
            )
    return problems


# ------------------------------------------------------------------------------- the loader


class RegistryError(ValueError):
    """The seed file is unreadable or invalid; `problems` lists each bad entry."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid center registry:\n  " + "\n  ".join(problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def _describe_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _entry_label(index: int, raw: object) -> str:
    label = f"centers[{index}]"
    if isinstance(raw, dict):
        if isinstance(raw.get("code"), str):
            label += f" {raw['code']!r}"
        if isinstance(raw.get("name"), str):
            label += f" ({raw['name']})"
    return label


def _header_problems(document: dict[str, Any]) -> list[str]:
    problems = []
    unknown = sorted(set(document) - {"version", "sample_data", "currency", "centers"})
    if unknown:
        problems.append(f"unknown top-level keys: {', '.join(map(str, unknown))}")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        problems.append("version: required, an integer")
    elif version not in SUPPORTED_VERSIONS:
        problems.append(
            f"version: {version} is not supported (this code reads "
            f"{', '.join(map(str, sorted(SUPPORTED_VERSIONS)))})"
        )
    if not isinstance(document.get("sample_data"), bool):
        problems.append("sample_data: required, true or false")
    if not isinstance(document.get("centers"), list) or not document["centers"]:
        problems.append("centers: required, a non-empty list")
    return problems


def _validate_centers(raw_centers: list[Any]) -> tuple[list[Center], list[str]]:
    centers, problems = [], []
    for index, raw in enumerate(raw_centers):
        try:
            centers.append(Center.model_validate(raw))
        except ValidationError as error:
            problems.append(f"{_entry_label(index, raw)}: {_describe_errors(error)}")
    return centers, problems


def registry_from_document(document: object, source: str = "<registry>") -> Registry:
    """Validate a parsed seed document; `RegistryError` names every bad entry."""
    if not isinstance(document, dict):
        raise RegistryError(source, ["the file must be a mapping with version, centers, ..."])
    problems = _header_problems(document)
    try:
        currency = ExchangeRates.model_validate(document.get("currency"))
    except ValidationError as error:
        problems.append(f"currency: {_describe_errors(error)}")
        currency = None
    raw_centers = document.get("centers")
    centers, center_problems = _validate_centers(
        raw_centers if isinstance(raw_centers, list) else []
    )
    problems += center_problems
    if not problems and currency is not None:
        problems += _registry_problems(centers, currency)
    if problems or currency is None:
        raise RegistryError(source, problems)
    return Registry(
        version=document["version"],
        sample_data=document["sample_data"],
        currency=currency,
        centers=centers,
    )


def parse_registry(text: str, source: str = "<registry>") -> Registry:
    """Parse and validate seed YAML text."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise RegistryError(source, [f"not valid YAML: {error}"]) from error
    return registry_from_document(document, source)


def load_registry(path: Path | str | None = None) -> Registry:
    """Load and validate a seed file; without a path, the sample seed shipped with the package."""
    if path is None:
        resource = resources.files(__package__).joinpath(SAMPLE_REGISTRY_FILE)
        return parse_registry(resource.read_text(encoding="utf-8"), SAMPLE_REGISTRY_FILE)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RegistryError(str(path), [f"cannot read the file: {error}"]) from error
    return parse_registry(text, str(path))


__all__ = [
    "SAMPLE_REGISTRY_FILE",
    "SUPPORTED_VERSIONS",
    "Center",
    "CenterContact",
    "CenterKind",
    "CenterStatus",
    "CurrencyCode",
    "ExchangeRates",
    "IcdEntry",
    "IcdMatcher",
    "IcdSpec",
    "Price",
    "Registry",
    "RegistryError",
    "RoutingProfile",
    "load_registry",
    "parse_icd_spec",
    "parse_registry",
    "registry_from_document",
]
