"""Case access tokens: intake signs them, any service verifies them without asking intake.

When the partner front end opens a case, intake issues a short-lived token for that case; the
patient's later calls carry it (`Authorization: Bearer …`) to intake and to records. The token is
a JWT signed with Ed25519 (JWS `alg: EdDSA`), so a verifier needs only intake's public keys:

    # intake
    issuer = CaseTokenIssuer(settings.case_token_key.get_secret_value().encode())
    issued = issuer.issue(case.id, client_id=partner.client_id)
    # and it publishes public_jwks(private_key_pem) at /v1/.well-known/jwks.json

    # records, configured with that JWKS document
    verifier = CaseTokenVerifier(settings.case_token_jwks)
    claims = verifier.verify(token)  # or InvalidCaseToken(reason) -> answer 401

Claims: `iss` (intake), `aud` (the platform), `sub` (the case id), `cid` (the partner client the
case was opened through), `scope` (space-separated, `case:read case:write`), `iat`, `nbf`,
`exp`, `jti`, and optionally `loc`, the case's language when the token was issued (`uk` or
`en`), so a service that keeps no case (records) answers the patient in it. `loc` is additive:
a token without it (or naming a language this version does not speak) verifies, with no
language (the verifier falls back to `Accept-Language`, then English).

The header names the key (`kid`, by default its RFC 7638 thumbprint) and the
token type (`typ: case-access+jwt`, RFC 8725 explicit typing, so no other JWT signed with the
same key can pass for a case token). The verifier accepts EdDSA over Ed25519 and nothing else:
no `none`, and no HMAC that could be keyed with the public key.

Key rotation. A verifier accepts every key of its JWKS, chosen by `kid`:

1. generate the new key; publish and configure verifiers with both keys
   (`public_jwks(new_pem, old_pem)`) while intake still signs with the old one;
2. switch intake to sign with the new key;
3. once the old key's last token has expired (the TTL plus the leeway), drop the old key from
   the JWKS; its tokens are then refused as `unknown-key`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from uuid import UUID

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from referrals_common.i18n import LOCALES

ALGORITHM = "EdDSA"
JWT_TYPE = "case-access+jwt"
DEFAULT_ISSUER = "referrals-intake"
DEFAULT_AUDIENCE = "referrals"
DEFAULT_TTL = timedelta(minutes=15)
DEFAULT_LEEWAY = timedelta(seconds=30)
DEFAULT_SCOPES: tuple[str, ...] = ("case:read", "case:write")
# Ours are about 400 characters; anything far longer is refused before it is parsed.
MAX_TOKEN_LENGTH = 4096

REMEMBERED_TOKENS = 256
"""How many verified tokens a verifier remembers by default (`CaseTokenVerifier`)."""
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]

Reason = Literal[
    "malformed",
    "algorithm-not-allowed",
    "wrong-type",
    "unknown-key",
    "bad-signature",
    "expired",
    "not-yet-valid",
    "wrong-audience",
    "wrong-issuer",
    "missing-claim",
    "invalid-claim",
]
REASONS: frozenset[str] = frozenset(get_args(Reason))

_DESCRIPTIONS: dict[str, str] = {
    "malformed": "The access token is not a well-formed case token.",
    "algorithm-not-allowed": "The access token is not signed with an accepted algorithm.",
    "wrong-type": "The token is not a case access token.",
    "unknown-key": "The access token is signed with a key we do not know (or no longer trust).",
    "bad-signature": "The access token's signature is not valid.",
    "expired": "The access token has expired.",
    "not-yet-valid": "The access token is not valid yet.",
    "wrong-audience": "The access token is meant for another audience.",
    "wrong-issuer": "The access token was not issued by the referral platform.",
    "missing-claim": "The access token lacks a required claim.",
    "invalid-claim": "The access token has a claim with an invalid value.",
}


class InvalidCaseToken(Exception):
    """A case token that must not be accepted; `reason` says why in one word (see `Reason`),
    `str()` says it in a sentence fit for a 401 problem's detail."""

    def __init__(self, reason: Reason) -> None:
        self.reason: Reason = reason
        super().__init__(_DESCRIPTIONS[reason])


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed case token and the moment it stops being accepted."""

    # A bearer credential: kept out of reprs, and so out of logs and tracebacks.
    token: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class CaseClaims:
    """What a verified case token grants: access to `case_id`, for calls through `client_id`,
    with `scopes`, until `expires_at`."""

    case_id: UUID
    client_id: str
    scopes: tuple[str, ...]
    expires_at: datetime
    token_id: str
    locale: str | None = None
    """The case's language (`loc`: `uk` or `en`) when the token was issued; None without one."""

    def allows(self, scope: str) -> bool:
        """Whether the token was granted `scope`."""
        return scope in self.scopes


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _load_private_key(private_key_pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"case tokens are signed with Ed25519, not {type(key).__name__}")
    return key


def _load_public_key(key_pem: bytes) -> Ed25519PublicKey:
    # Intake holds private keys; a verifier or an old key kept for the JWKS may be public only.
    if b"PRIVATE KEY" in key_pem:
        return _load_private_key(key_pem).public_key()
    key = serialization.load_pem_public_key(key_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"case tokens are signed with Ed25519, not {type(key).__name__}")
    return key


def jwk_thumbprint(public_key: Ed25519PublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key."""
    # RFC 7638 section 3 and RFC 8037 appendix A.3: the required members in lexicographic
    # order, no whitespace.
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(_raw_public_bytes(public_key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def generate_private_key_pem() -> bytes:
    """A new Ed25519 signing key as unencrypted PKCS#8 PEM (keep it in a secret store)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_jwk(key_pem: bytes, *, key_id: str | None = None) -> dict[str, str]:
    """The public JWK of an Ed25519 key given as private or public PEM, with `kid` = `key_id`
    or the key's thumbprint; never any private member."""
    public_key = _load_public_key(key_pem)
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(_raw_public_bytes(public_key)),
        "kid": key_id or jwk_thumbprint(public_key),
        "alg": ALGORITHM,
        "use": "sig",
    }


def public_jwks(*key_pems: bytes) -> dict[str, list[dict[str, str]]]:
    """The JWKS document (`{"keys": [...]}`) of the public halves of `key_pems`, current key
    first: what intake publishes at `/v1/.well-known/jwks.json` and verifiers are configured
    with. Keys signed with a custom `key_id` need `public_jwk(pem, key_id=...)` instead."""
    if not key_pems:
        raise ValueError("a JWKS needs at least one key")
    return {"keys": [public_jwk(pem) for pem in key_pems]}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CaseTokenIssuer:
    """Signs case tokens with one Ed25519 private key (intake's side)."""

    def __init__(
        self,
        private_key_pem: bytes,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        ttl: timedelta = DEFAULT_TTL,
        key_id: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if ttl <= timedelta(0):
            raise ValueError("a case token's ttl must be positive")
        self._key = _load_private_key(private_key_pem)
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.key_id = key_id or jwk_thumbprint(self._key.public_key())
        self._clock = clock

    def issue(
        self,
        case_id: UUID,
        client_id: str,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        *,
        locale: str | None = None,
    ) -> IssuedToken:
        """A token granting `scopes` on case `case_id` to calls through `client_id`, valid from
        now for the issuer's ttl; `locale`, the case's language (`uk`, `en`), goes in `loc`."""
        if locale is not None and locale not in LOCALES:
            raise ValueError(f"a case's language is one of {LOCALES}, not {locale!r}")
        if not client_id:
            raise ValueError("a case token names the client it was issued through")
        if not scopes or any(
            not scope or scope != scope.strip() or " " in scope for scope in scopes
        ):
            raise ValueError(f"scopes must be non-empty words without spaces: {scopes!r}")
        issued_at = int(self._clock().timestamp())
        expires = issued_at + int(self.ttl.total_seconds())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(case_id),
            "cid": client_id,
            "scope": " ".join(scopes),
            "iat": issued_at,
            "nbf": issued_at,
            "exp": expires,
            "jti": str(uuid.uuid4()),
        }
        if locale is not None:
            claims["loc"] = locale
        token = jwt.encode(
            claims,
            self._key,
            algorithm=ALGORITHM,
            headers={"kid": self.key_id, "typ": JWT_TYPE},
        )
        return IssuedToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC))


def _jwk_to_key(jwk: Mapping[str, Any]) -> tuple[str, Ed25519PublicKey]:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError(f"only Ed25519 keys verify case tokens, not {jwk.get('kty')}")
    if "d" in jwk:
        # A private key in a verifier's configuration is a leak waiting to happen.
        raise ValueError("the JWKS holds a private key; give verifiers the public JWKS only")
    if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
        raise ValueError(f"key {jwk.get('kid')!r} is not an {ALGORITHM} signing key")
    try:
        raw = _b64url_decode(str(jwk["x"]))
        key = Ed25519PublicKey.from_public_bytes(raw)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"key {jwk.get('kid')!r} has no valid Ed25519 'x'") from exc
    kid = jwk.get("kid") or jwk_thumbprint(key)
    return str(kid), key


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of `token` (its first segment: base64url of a JSON object), read only to
    choose the key and refuse what is not ours before anything is verified; `malformed` if it
    is not one. PyJWT reads the same segment again when it verifies the token (its strict
    base64url reading refuses any segment this one would read differently), so the token
    itself is parsed once, by PyJWT: its `get_unverified_header` parsed all of it a first
    time (every segment decoded and checked character by character, ~30 µs a request)."""
    segment, dot, _ = token.partition(".")
    if not dot or not _BASE64URL.fullmatch(segment):
        raise InvalidCaseToken("malformed")
    try:
        header = json.loads(_b64url_decode(segment))
    except (ValueError, RecursionError):  # binascii.Error and bad JSON or UTF-8 are ValueErrors
        raise InvalidCaseToken("malformed") from None
    if not isinstance(header, dict):
        raise InvalidCaseToken("malformed")
    return header


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: CaseClaims
    valid_from: int
    """The later of the token's `iat` and `nbf`."""
    expires: int
    """Its `exp`."""


def _now() -> float:
    """Seconds since the epoch, as PyJWT reads the time."""
    return time.time()


class CaseTokenVerifier:
    """Checks case tokens against a JWKS of intake's public keys, offline (any service's side).

    Accepts only `EdDSA` over Ed25519 keys of the JWKS, chosen by the token's `kid`, and checks
    type, signature, issuer, audience, `exp`, `nbf` and `iat` (with `leeway` for clock skew).

    A token verified is remembered, by the SHA-256 of its text (not the bearer token itself),
    with its claims: the front end sends the same token with each call for its quarter of an
    hour, and its signature, over the same bytes, checks out the same every time (PyJWT and
    Ed25519: ~190 µs of CPU a call). Only the time is checked again, as PyJWT checks it (`exp`,
    `nbf`, `iat`, with the leeway): a remembered token expires as any other. Nothing refused is
    remembered (a flood of forged tokens is checked, and refused, every time, and fills
    nothing); at most `remember` tokens are (0: none), ~0.8 kB each, the oldest forgotten first
    and any expired one as a new one comes. The keys are the verifier's for its life, as
    before: a key dropped from the JWKS takes a new verifier (a restart), and its tokens'
    memory goes with the old one.
    """

    def __init__(
        self,
        jwks: Mapping[str, Any],
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        leeway: timedelta = DEFAULT_LEEWAY,
        remember: int = REMEMBERED_TOKENS,
    ) -> None:
        keys: dict[str, Ed25519PublicKey] = {}
        for jwk in jwks.get("keys") or []:
            kid, key = _jwk_to_key(jwk)
            if kid in keys:
                raise ValueError(f"the JWKS has two keys with kid {kid!r}")
            keys[kid] = key
        if not keys:
            raise ValueError("the JWKS has no keys")
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self._remember = max(0, remember)
        self._verified: dict[bytes, _Verified] = {}

    @classmethod
    def from_public_pem(
        cls, public_key_pem: bytes, *, key_id: str | None = None, **kwargs: Any
    ) -> CaseTokenVerifier:
        """A verifier trusting the one key `public_key_pem` (its thumbprint as `kid`, unless
        `key_id` is given); `kwargs` as for the constructor."""
        return cls({"keys": [public_jwk(public_key_pem, key_id=key_id)]}, **kwargs)

    @property
    def key_ids(self) -> frozenset[str]:
        """The `kid`s of the keys this verifier trusts."""
        return frozenset(self._keys)

    def verify(self, token: str) -> CaseClaims:
        """The claims of `token` if it is a valid, current case token signed by a trusted key;
        otherwise `InvalidCaseToken` with the reason."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidCaseToken("malformed")
        digest = hashlib.sha256(token.encode()).digest()
        remembered = self._verified.get(digest)
        if remembered is not None:
            return self._still_valid(digest, remembered)
        header = _unverified_header(token)
        # Decided from our own list before any key is touched: `none` and HS256 never get near
        # a verification routine.
        if header.get("alg") != ALGORITHM:
            raise InvalidCaseToken("algorithm-not-allowed")
        if header.get("typ") != JWT_TYPE:
            raise InvalidCaseToken("wrong-type")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidCaseToken("unknown-key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.InvalidSignatureError:
            raise InvalidCaseToken("bad-signature") from None
        except jwt.ExpiredSignatureError:
            raise InvalidCaseToken("expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidCaseToken("not-yet-valid") from None
        except jwt.InvalidAudienceError:
            raise InvalidCaseToken("wrong-audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidCaseToken("wrong-issuer") from None
        except jwt.MissingRequiredClaimError:
            raise InvalidCaseToken("missing-claim") from None
        except jwt.DecodeError:
            raise InvalidCaseToken("malformed") from None
        except jwt.InvalidTokenError:
            raise InvalidCaseToken("invalid-claim") from None
        verified = _case_claims(claims)
        if self._remember:
            self._keep(
                digest,
                _Verified(
                    verified, max(int(claims["iat"]), int(claims["nbf"])), int(claims["exp"])
                ),
            )
        return verified

    def _keep(self, digest: bytes, verified: _Verified) -> None:
        """Remember a token just verified; forget the oldest while they expired or are too
        many (dicts keep insertion order: first verified, first forgotten)."""
        remembered = self._verified
        expired_by = _now() - self.leeway.total_seconds()
        while remembered:
            oldest = next(iter(remembered))
            if len(remembered) < self._remember and remembered[oldest].expires > expired_by:
                break
            del remembered[oldest]
        remembered[digest] = verified

    def _still_valid(self, digest: bytes, remembered: _Verified) -> CaseClaims:
        """A remembered token's claims, if it is current (PyJWT's tests of the time)."""
        now, leeway = _now(), self.leeway.total_seconds()
        if remembered.expires <= now - leeway:
            self._verified.pop(digest, None)
            raise InvalidCaseToken("expired")
        if remembered.valid_from > now + leeway:
            raise InvalidCaseToken("not-yet-valid")
        return remembered.claims


def _case_claims(claims: Mapping[str, Any]) -> CaseClaims:
    if "cid" not in claims or "scope" not in claims:
        raise InvalidCaseToken("missing-claim")
    client_id, scope = claims["cid"], claims["scope"]
    if not isinstance(client_id, str) or not client_id or not isinstance(scope, str):
        raise InvalidCaseToken("invalid-claim")
    try:
        case_id = UUID(claims["sub"])
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (TypeError, ValueError, OverflowError):
        raise InvalidCaseToken("invalid-claim") from None
    locale = claims.get("loc")
    if locale is not None and not isinstance(locale, str):
        raise InvalidCaseToken("invalid-claim")
    return CaseClaims(
        case_id=case_id,
        client_id=client_id,
        scopes=tuple(scope.split()),
        expires_at=expires_at,
        token_id=claims["jti"],
        # A language this version does not speak (a newer intake's) is no language.
        locale=locale if locale in LOCALES else None,
    )
