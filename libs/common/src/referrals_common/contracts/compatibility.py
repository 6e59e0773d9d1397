"""Is a new version of the event schemas compatible with the released one?

The rule (docs/event-catalogue.md, "Compatibility"): within a version (`.v1`), an event type may
only gain optional fields, accept more values of an enumeration or a type (a value consumers are
told to expect), and change its descriptions. Everything else breaks some consumer or some event
already on a topic, and is a new type (`.v2`) published beside the old one:

- an event type removed;
- a field removed, or one that was required no longer required (consumers rely on it);
- a field newly required (events already on the topics do not have it);
- a narrower type, enumeration or constant (a value that was valid is refused);
- a tighter constraint: a new or changed `pattern` or `format`, a lower maximum, a higher
  minimum, `additionalProperties` closed.

`breaking_changes(released, current)` compares two sets of JSON Schemas (event type -> schema, as
`schema.json_schemas()` makes them, `$ref`s into `$defs` included) and lists every breaking change
with the path where it is; an empty list means compatible. The committed snapshot of the released
schemas is `docs/contracts/snapshot/`, written by `python -m referrals_common.contracts snapshot`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

SNAPSHOT_DIR = "snapshot"

_UPPER_BOUNDS = ("maxLength", "maxItems", "maximum", "exclusiveMaximum", "maxProperties")
_LOWER_BOUNDS = ("minLength", "minItems", "minimum", "exclusiveMinimum", "minProperties")
_EXACT = ("pattern", "format", "multipleOf", "const")
_ANY_TYPE = frozenset({"string", "integer", "number", "boolean", "object", "array", "null"})


def breaking_changes(
    released: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Every change from `released` to `current` that could break a consumer or an event
    already published, as `<event type> <path>: <what>`; empty when `current` is compatible."""
    problems: list[str] = []
    for event_type in sorted(released):
        if event_type not in current:
            problems.append(f"{event_type}: event type removed")
            continue
        old_root, new_root = released[event_type], current[event_type]
        _compare(_Resolver(old_root), old_root, _Resolver(new_root), new_root, event_type, problems)
    return problems


class _Resolver:
    """Follows local `$ref`s (`#/$defs/...`) of one schema document."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def __call__(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"only local references are compared: {ref}")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part]
            # A `$ref` with siblings (pydantic puts a description beside it): keep both.
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
            if seen > 50:
                raise ValueError(f"reference cycle through {ref}")
        return schema


def _alternatives(schema: Mapping[str, Any], resolve: _Resolver) -> list[Mapping[str, Any]]:
    """The branches of an `anyOf`/`oneOf` (pydantic's optional fields are `anyOf [X, null]`)."""
    schema = resolve(schema)
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            branches = []
            for branch in schema[keyword]:
                branches += _alternatives(branch, resolve)
            return branches
    return [schema]


def _types(schema: Mapping[str, Any]) -> frozenset[str]:
    declared = schema.get("type")
    if declared is None:
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else list(schema["enum"])
            return frozenset(_json_type(value) for value in values)
        return _ANY_TYPE
    types = {declared} if isinstance(declared, str) else set(declared)
    if "number" in types:
        types.add("integer")
    return frozenset(types)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _values(schema: Mapping[str, Any]) -> list[Any] | None:
    """The values a schema allows when it lists them (`const`, `enum`), else None (any)."""
    if "const" in schema:
        return [schema["const"]]
    if "enum" in schema:
        return list(schema["enum"])
    return None


def _compare(
    old_resolve: _Resolver,
    old: Mapping[str, Any],
    new_resolve: _Resolver,
    new: Mapping[str, Any],
    path: str,
    problems: list[str],
) -> None:
    old_branches = _alternatives(old, old_resolve)
    new_branches = _alternatives(new, new_resolve)
    for old_branch in old_branches:
        candidates = [b for b in new_branches if _types(old_branch) & _types(b)]
        if not candidates:
            problems.append(f"{path}: type narrowed, {_describe(old_branch)} no longer allowed")
            continue
        # The new branch that keeps the most of the old one is the one it became.
        best = min(candidates, key=lambda b: len(_leaf_problems(old_branch, b, "")))
        _compare_branch(old_resolve, old_branch, new_resolve, best, path, problems)


def _describe(schema: Mapping[str, Any]) -> str:
    values = _values(schema)
    if values is not None:
        return " | ".join(json.dumps(v) for v in values)
    return "/".join(sorted(_types(schema)))


def _leaf_problems(old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> list[str]:
    problems = []
    lost_types = _types(old) - _types(new)
    if lost_types and not (_values(old) is not None and _values(new) is not None):
        problems.append(f"{path}: type narrowed, {'/'.join(sorted(lost_types))} no longer allowed")
    old_values, new_values = _values(old), _values(new)
    if new_values is not None:
        if old_values is None:
            problems.append(f"{path}: now restricted to {_describe(new)}")
        else:
            lost = [v for v in old_values if v not in new_values]
            if lost:
                what = "constant changed" if "const" in old else "enumeration narrowed"
                listed = ", ".join(json.dumps(v) for v in lost)
                problems.append(f"{path}: {what}, {listed} no longer allowed")
    for keyword in _EXACT:
        if keyword == "const":
            continue
        if keyword in new and old.get(keyword) != new[keyword]:
            was = json.dumps(old[keyword]) if keyword in old else "none"
            problems.append(f"{path}: {keyword} changed from {was} to {json.dumps(new[keyword])}")
    for keyword in _UPPER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
            problems.append(f"{path}: {keyword} lowered to {new[keyword]}")
    for keyword in _LOWER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
            problems.append(f"{path}: {keyword} raised to {new[keyword]}")
    return problems


def _compare_branch(
    old_resolve: _Resolver,
    old: Mapping[str, Any],
    new_resolve: _Resolver,
    new: Mapping[str, Any],
    path: str,
    problems: list[str],
) -> None:
    problems += _leaf_problems(old, new, path)
    if "object" in _types(old) and "object" in _types(new):
        _compare_object(old_resolve, old, new_resolve, new, path, problems)
    if "items" in old and "items" in new:
        _compare(old_resolve, old["items"], new_resolve, new["items"], f"{path}[]", problems)


def _compare_object(
    old_resolve: _Resolver,
    old: Mapping[str, Any],
    new_resolve: _Resolver,
    new: Mapping[str, Any],
    path: str,
    problems: list[str],
) -> None:
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    for name in old_props:
        where = f"{path}.{name}"
        if name not in new_props:
            problems.append(f"{where}: field removed")
            continue
        if name in old_required and name not in new_required:
            problems.append(f"{where}: no longer required (consumers rely on it)")
        if name in new_required and name not in old_required:
            problems.append(f"{where}: newly required (published events may lack it)")
        _compare(old_resolve, old_props[name], new_resolve, new_props[name], where, problems)
    for name in sorted(set(new_props) - set(old_props)):
        if name in new_required:
            problems.append(f"{path}.{name}: new field is required (only optional ones may come)")
    if old.get("additionalProperties", True) is not False and (
        new.get("additionalProperties", True) is False
    ):
        problems.append(f"{path}: additional properties no longer allowed")


def read_schemas(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Event type -> schema, from a directory of `<type>.schema.json` files."""
    suffix = ".schema.json"
    return {
        path.name.removesuffix(suffix): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(Path(directory).glob(f"*{suffix}"))
    }


def iter_schema_files(schemas: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(file name, text) of each schema, written as the export writes them."""
    for event_type, schema in sorted(schemas.items()):
        yield f"{event_type}.schema.json", json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


__all__ = ["SNAPSHOT_DIR", "breaking_changes", "iter_schema_files", "read_schemas"]
