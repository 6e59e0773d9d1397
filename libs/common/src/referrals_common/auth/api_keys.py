"""API keys for partner front ends, operators and cancer centers, stored only as a peppered hash.

A key is shown once, when it is made, and looks like

    pfe_4fTq9ZkLm2Xa_Vb7nR0cW3yPq8sLdE1uKj6hGf5tYz2Ma9oN4xCiB7eQ

`<prefix>_<key_id>_<secret>`: the prefix says what the key is for (`pfe` partner front end, `ops`,
`ccr` cancer center; 2 to 16 lowercase letters or digits, starting with a letter), so a key
pasted in the wrong place is recognised at a glance and by secret scanners; the key id (12
characters) finds the row; the secret (43 characters, 256 bits) proves possession. Key id and
secret are letters and digits only: the parts split unambiguously at the underscores, and a
double click selects the whole key.

The row stores the key id in clear and `hash_secret(secret, pepper)`: HMAC-SHA256 under a
server-side pepper. A random 256-bit secret cannot be guessed, so it needs no slow password hash;
the pepper, kept in the services' settings and not in the database, means a leaked table alone
cannot even be used to test a guess.

    new = generate_api_key("pfe")  # show new.display once, then store new.key_id and
    secret_hash = hash_secret(new.secret, pepper)

    _, key_id, secret = parse_api_key(presented, expected_prefix="pfe")  # or InvalidApiKey
    row = await find_api_key(key_id)
    authenticated = row is not None and verify_secret(secret, row.secret_hash, pepper)

The key id is an identifier, not a secret: learning that one exists gives nothing without the
256-bit secret, so an unknown key id may be refused faster than a wrong secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

ALPHABET = string.ascii_letters + string.digits
KEY_ID_LENGTH = 12
# 43 characters of 62 carry 256 bits (43 * log2(62) = 256.03).
SECRET_LENGTH = 43
MIN_PEPPER_BYTES = 16
PREFIX_PATTERN = r"[a-z][a-z0-9]{1,15}"
MAX_KEY_LENGTH = 16 + 1 + KEY_ID_LENGTH + 1 + SECRET_LENGTH

_PREFIX = re.compile(PREFIX_PATTERN)
_KEY = re.compile(
    rf"({PREFIX_PATTERN})_([A-Za-z0-9]{{{KEY_ID_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})"
)


class InvalidApiKey(ValueError):
    """A presented API key that is not of our shape (or not of the expected kind); the message
    never repeats the key."""


@dataclass(frozen=True)
class NewApiKey:
    """A key just made: `display` is shown to its owner once; store `key_id` and the hash of
    `secret`, never the secret itself."""

    prefix: str
    key_id: str
    # Kept out of reprs, and so out of logs and tracebacks.
    secret: str = field(repr=False)
    display: str = field(repr=False)


class ParsedApiKey(NamedTuple):
    """The parts of a presented key, unpackable as `prefix, key_id, secret = ...`."""

    prefix: str
    key_id: str
    secret: str

    def __repr__(self) -> str:
        return f"ParsedApiKey(prefix={self.prefix!r}, key_id={self.key_id!r}, secret=<hidden>)"


def _random_text(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def generate_api_key(prefix: str) -> NewApiKey:
    """A new key of kind `prefix`, from the operating system's CSPRNG: a 12-character key id and
    a 256-bit secret, both letters and digits."""
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"an API key prefix is {PREFIX_PATTERN}, not {prefix!r}")
    key_id = _random_text(KEY_ID_LENGTH)
    secret = _random_text(SECRET_LENGTH)
    return NewApiKey(
        prefix=prefix, key_id=key_id, secret=secret, display=f"{prefix}_{key_id}_{secret}"
    )


def parse_api_key(presented: str, *, expected_prefix: str | None = None) -> ParsedApiKey:
    """The prefix, key id and secret of a presented key of exactly our shape (and of kind
    `expected_prefix`, if given); anything else raises `InvalidApiKey`."""
    # The length check first, so an attacker's megabyte is never scanned.
    if not isinstance(presented, str) or not presented or len(presented) > MAX_KEY_LENGTH:
        raise InvalidApiKey("not an API key")
    # fullmatch, not match with `$`: `$` would accept a trailing newline.
    match = _KEY.fullmatch(presented)
    if match is None:
        raise InvalidApiKey("not an API key")
    parsed = ParsedApiKey(*match.groups())
    if expected_prefix is not None and parsed.prefix != expected_prefix:
        raise InvalidApiKey(f"not a {expected_prefix!r} API key")
    return parsed


def _pepper(pepper: bytes) -> bytes:
    if len(pepper) < MIN_PEPPER_BYTES:
        raise ValueError(f"the API key pepper must be at least {MIN_PEPPER_BYTES} bytes")
    return pepper


def hash_secret(secret: str, pepper: bytes) -> str:
    """What to store for `secret`: HMAC-SHA256 under `pepper`, as 64 lowercase hex digits."""
    return hmac.new(_pepper(pepper), secret.encode("utf-8"), hashlib.sha256).hexdigest()


def key_digest(secret: str) -> str:
    """SHA-256 of a key's secret, as 64 lowercase hex digits: what the key's issuer tells another
    service that must check the key (partners tells records about a center's key) without
    sharing its pepper. The secret is 256 random bits, so the digest gives no way back to it;
    the receiver stores `hash_secret(digest, its own pepper)` and checks
    `verify_secret(key_digest(presented secret), stored, its own pepper)`."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_secret(secret: str, stored_hash: str, pepper: bytes) -> bool:
    """Whether `secret` hashes to `stored_hash` under `pepper`, compared in constant time; a
    malformed stored hash is simply no match."""
    expected = hash_secret(secret, pepper).encode("ascii")
    return hmac.compare_digest(expected, stored_hash.encode("utf-8"))


T = TypeVar("T")


class VerifiedKeys(Generic[T]):
    """API keys verified recently, remembered by a peppered digest of the presented key (never
    the key itself) for `ttl` seconds: a busy client costs no database read per request, and a
    revoked key stops working within `ttl`. Bounded: past `max_entries` it starts afresh."""

    def __init__(self, pepper: bytes, *, ttl: float = 60.0, max_entries: int = 10_000) -> None:
        self._pepper = pepper
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[str, tuple[T, float]] = {}

    def _digest(self, presented: str) -> str:
        return hashlib.sha256(presented.encode() + self._pepper).hexdigest()

    def get(self, presented: str) -> T | None:
        entry = self._entries.get(self._digest(presented))
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def put(self, presented: str, value: T) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[self._digest(presented)] = (value, time.monotonic() + self._ttl)
