"""Builders for routing tests: a center, a request and exchange rates with plain defaults that
each test overrides where it matters."""

from __future__ import annotations

from typing import Any

from referrals_common.contracts.intake import Destination
from referrals_partners.registry import Center, ExchangeRates
from referrals_partners.routing import CenterState, RoutingRequest

RATES = ExchangeRates(
    reference="EUR",
    rates={"EUR": 1, "UAH": "0.02", "PLN": "0.25", "USD": "0.9"},
)


def center(code: str = "center-a", **fields: Any) -> Center:
    """An active adult breast center in Germany reading German and English, unless overridden."""
    entry: dict[str, Any] = {
        "code": code,
        "name": f"Test Center {code}",
        "country": "DE",
        "city": "Berlin",
        "kind": "university_hospital",
        "languages": ["de", "en"],
        "cancers": ["C50"],
        "age_groups": ["adult"],
        "weekly_capacity": 10,
        "answer_deadline_hours": 48,
        "opinion_turnaround_days": 7,
        "price": {"amount": 1000, "currency": "EUR"},
        "contact": {"email": f"desk@{code}.test.example", "phone": "+49300000000"},
        "status": "active",
    }
    entry.update(fields)
    return Center.model_validate(entry)


def state(code: str = "center-a", load: int = 0, **fields: Any) -> CenterState:
    return CenterState(center(code, **fields), load)


def destination(preference: str, *countries: str) -> Destination:
    return Destination(preference=preference, countries=list(countries))


def request(**fields: Any) -> RoutingRequest:
    """A C50.9 adult case for abroad, documents in English, consent given, unless overridden."""
    values: dict[str, Any] = {
        "icd10": "C50.9",
        "age_group": "adult",
        "destination": destination("abroad"),
        "cross_border_transfer_allowed": True,
        "document_languages": ["en"],
    }
    values.update(fields)
    return RoutingRequest.model_validate(values)
