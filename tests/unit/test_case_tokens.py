"""Case access tokens: intake signs with Ed25519, other services verify offline from a JWKS and
refuse anything expired, forged, tampered, mistyped, meant for someone else or signed otherwise."""

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from referrals_common.auth.case_tokens import (
    JWT_TYPE,
    CaseTokenIssuer,
    CaseTokenVerifier,
    InvalidCaseToken,
    generate_private_key_pem,
    public_jwk,
    public_jwks,
)

pytestmark = pytest.mark.unit

CASE_ID = uuid.UUID("0b7d4c1e-5f1a-4d8e-9a53-2f0c6f1d9b2a")


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return generate_private_key_pem()


@pytest.fixture(scope="module")
def other_key_pem() -> bytes:
    return generate_private_key_pem()


@pytest.fixture
def issuer(key_pem) -> CaseTokenIssuer:
    return CaseTokenIssuer(key_pem)


@pytest.fixture
def verifier(key_pem) -> CaseTokenVerifier:
    return CaseTokenVerifier(public_jwks(key_pem))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload), signature


def assemble(header: dict, payload: dict, signature: str) -> str:
    encode = lambda part: b64url(json.dumps(part, separators=(",", ":")).encode())  # noqa: E731
    return f"{encode(header)}.{encode(payload)}.{signature}"


def public_pem(private_pem: bytes) -> bytes:
    return (
        serialization.load_pem_private_key(private_pem, None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def refusal(verifier: CaseTokenVerifier, token: str) -> str:
    with pytest.raises(InvalidCaseToken) as refused:
        verifier.verify(token)
    return refused.value.reason


def test_an_issued_token_verifies_to_its_claims(issuer, verifier):
    before = datetime.now(UTC).replace(microsecond=0)
    issued = issuer.issue(CASE_ID, "partner-es")
    claims = verifier.verify(issued.token)
    assert claims.case_id == CASE_ID
    assert claims.client_id == "partner-es"
    assert claims.scopes == ("case:read", "case:write")
    assert claims.allows("case:write")
    assert claims.expires_at == issued.expires_at
    assert before + timedelta(minutes=15) <= claims.expires_at <= before + timedelta(minutes=16)
    assert claims.token_id


def test_a_token_carries_the_agreed_header_and_claims(issuer, key_pem):
    header, payload, _ = segments(issuer.issue(CASE_ID, "partner-es", ("case:read",)).token)
    assert header == {"alg": "EdDSA", "typ": JWT_TYPE, "kid": public_jwk(key_pem)["kid"]}
    assert payload["iss"] == "referrals-intake"
    assert payload["aud"] == "referrals"
    assert payload["sub"] == str(CASE_ID)
    assert payload["cid"] == "partner-es"
    assert payload["scope"] == "case:read"
    assert payload["iat"] == payload["nbf"] == payload["exp"] - 15 * 60
    assert uuid.UUID(payload["jti"])


def test_two_tokens_for_the_same_case_have_different_ids(issuer, verifier):
    first, second = (verifier.verify(issuer.issue(CASE_ID, "p").token) for _ in range(2))
    assert first.token_id != second.token_id


def test_expired_token_is_refused(key_pem, verifier):
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    issued = CaseTokenIssuer(key_pem, clock=lambda: an_hour_ago).issue(CASE_ID, "partner-es")
    assert refusal(verifier, issued.token) == "expired"


def test_a_token_just_past_its_expiry_is_accepted_within_the_leeway(key_pem, verifier):
    started = datetime.now(UTC) - timedelta(minutes=15, seconds=10)
    issued = CaseTokenIssuer(key_pem, clock=lambda: started).issue(CASE_ID, "partner-es")
    assert verifier.verify(issued.token).case_id == CASE_ID


def test_a_token_from_the_future_is_refused(key_pem, verifier):
    later = datetime.now(UTC) + timedelta(hours=1)
    issued = CaseTokenIssuer(key_pem, clock=lambda: later).issue(CASE_ID, "partner-es")
    assert refusal(verifier, issued.token) == "not-yet-valid"


def test_a_token_signed_by_another_key_under_our_kid_is_refused(key_pem, other_key_pem, verifier):
    forger = CaseTokenIssuer(other_key_pem, key_id=public_jwk(key_pem)["kid"])
    assert refusal(verifier, forger.issue(CASE_ID, "partner-es").token) == "bad-signature"


def test_a_token_signed_by_an_unknown_key_is_refused(other_key_pem, verifier):
    stranger = CaseTokenIssuer(other_key_pem)
    assert refusal(verifier, stranger.issue(CASE_ID, "partner-es").token) == "unknown-key"


def test_a_tampered_payload_is_refused(issuer, verifier):
    header, payload, signature = segments(issuer.issue(CASE_ID, "partner-es").token)
    payload["sub"] = str(uuid.uuid4())
    assert refusal(verifier, assemble(header, payload, signature)) == "bad-signature"


def test_a_widened_scope_is_refused(issuer, verifier):
    header, payload, signature = segments(issuer.issue(CASE_ID, "p", ("case:read",)).token)
    payload["scope"] = "case:read case:write"
    assert refusal(verifier, assemble(header, payload, signature)) == "bad-signature"


def test_an_unsigned_alg_none_token_is_refused(issuer, verifier):
    header, payload, _ = segments(issuer.issue(CASE_ID, "partner-es").token)
    header["alg"] = "none"
    assert refusal(verifier, assemble(header, payload, "")) == "algorithm-not-allowed"
    header["alg"] = "None"
    assert refusal(verifier, assemble(header, payload, "")) == "algorithm-not-allowed"


@pytest.mark.parametrize("secret_form", ["pem", "raw"])
def test_hs256_keyed_with_the_public_key_is_refused(issuer, verifier, key_pem, secret_form):
    # The classic confusion: the public key, which everyone has, used as an HMAC secret.
    public = serialization.load_pem_private_key(key_pem, None).public_key()
    secret = public_pem(key_pem) if secret_form == "pem" else public.public_bytes_raw()
    header, payload, _ = segments(issuer.issue(CASE_ID, "partner-es").token)
    header["alg"] = "HS256"
    unsigned = assemble(header, payload, "").rstrip(".")
    mac = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
    assert refusal(verifier, f"{unsigned}.{b64url(mac)}") == "algorithm-not-allowed"


def test_a_token_for_another_audience_is_refused(key_pem, verifier):
    issued = CaseTokenIssuer(key_pem, audience="referrals-billing").issue(CASE_ID, "partner-es")
    assert refusal(verifier, issued.token) == "wrong-audience"


def test_a_token_from_another_issuer_is_refused(key_pem, verifier):
    issued = CaseTokenIssuer(key_pem, issuer="someone-else").issue(CASE_ID, "partner-es")
    assert refusal(verifier, issued.token) == "wrong-issuer"


def test_another_kind_of_jwt_signed_with_the_same_key_is_refused(key_pem, verifier):
    private_key = serialization.load_pem_private_key(key_pem, None)
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "referrals-intake", "aud": "referrals", "sub": str(CASE_ID), "cid": "p"}
    claims |= {"scope": "case:read", "iat": now, "nbf": now, "exp": now + 60, "jti": "j"}
    token = jwt.encode(
        claims, private_key, algorithm="EdDSA", headers={"kid": public_jwk(key_pem)["kid"]}
    )
    assert refusal(verifier, token) == "wrong-type"


def test_a_token_without_the_client_claim_is_refused(key_pem, verifier):
    private_key = serialization.load_pem_private_key(key_pem, None)
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "referrals-intake", "aud": "referrals", "sub": str(CASE_ID)}
    claims |= {"scope": "case:read", "iat": now, "nbf": now, "exp": now + 60, "jti": "j"}
    headers = {"kid": public_jwk(key_pem)["kid"], "typ": JWT_TYPE}
    token = jwt.encode(claims, private_key, algorithm="EdDSA", headers=headers)
    assert refusal(verifier, token) == "missing-claim"


@pytest.mark.parametrize(
    "token",
    ["", "not-a-token", "a.b.c", "bm90IGpzb24.e30.c2ln", "x" * 10_000],
    ids=["empty", "one-part", "garbage-parts", "header-not-json", "huge"],
)
def test_a_malformed_token_is_refused(verifier, token):
    assert refusal(verifier, token) == "malformed"


@pytest.mark.parametrize(
    "header",
    [b"[1, 2]", b'"EdDSA"', b"{not json", b"\xff\xfe"],
    ids=["json-list", "json-string", "not-json", "not-utf8"],
)
def test_a_header_that_is_not_a_json_object_is_malformed(issuer, verifier, header):
    _, payload, signature = issuer.issue(CASE_ID, "p").token.split(".")
    assert refusal(verifier, f"{b64url(header)}.{payload}.{signature}") == "malformed"


def test_a_header_outside_base64url_is_malformed_even_when_a_lenient_decoder_reads_it(
    issuer, verifier
):
    # A decoder that skips what is not base64 would read this header as the token's own.
    header, payload, signature = issuer.issue(CASE_ID, "p").token.split(".")
    assert refusal(verifier, f"{header[:8]}!{header[8:]}.{payload}.{signature}") == "malformed"
    assert refusal(verifier, f"{header}=.{payload}.{signature}") == "malformed"


def test_a_key_id_that_is_not_a_string_is_an_unknown_key(key_pem, verifier):
    # PyJWT's get_unverified_header raised a bare InvalidTokenError for it (not a refusal).
    private_key = serialization.load_pem_private_key(key_pem, None)
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "referrals-intake", "aud": "referrals", "sub": str(CASE_ID), "cid": "p"}
    claims |= {"scope": "case:read", "iat": now, "nbf": now, "exp": now + 60, "jti": "j"}
    header = b64url(json.dumps({"alg": "EdDSA", "typ": JWT_TYPE, "kid": 7}).encode())
    payload = b64url(json.dumps(claims).encode())
    signature = b64url(private_key.sign(f"{header}.{payload}".encode()))
    assert refusal(verifier, f"{header}.{payload}.{signature}") == "unknown-key"


def test_a_token_is_parsed_once(issuer, verifier, monkeypatch):
    # The key is chosen from the header's segment alone; PyJWT parses the token once, when it
    # verifies it (its get_unverified_header parsed it all a first time: ~30 µs a request).
    parsed = parses(monkeypatch)
    token = issuer.issue(CASE_ID, "p").token
    assert verifier.verify(token).case_id == CASE_ID
    assert len(parsed) == 1


def parses(monkeypatch) -> list[object]:
    """The tokens PyJWT parses from now on (each verification parses its token once)."""
    parsed: list[object] = []
    real = jwt.api_jws.PyJWS._load

    def load(self, token):
        parsed.append(token)
        return real(self, token)

    monkeypatch.setattr(jwt.api_jws.PyJWS, "_load", load)
    return parsed


def test_a_token_verified_before_is_not_verified_again_but_its_time_is(
    issuer, verifier, monkeypatch
):
    # The front end sends the same token with each call: its signature, over the same bytes,
    # checks out the same every time (~190 µs of CPU); only the time can change the answer.
    from referrals_common.auth import case_tokens

    parsed = parses(monkeypatch)
    issued = issuer.issue(CASE_ID, "p")
    first = verifier.verify(issued.token)
    assert verifier.verify(issued.token) == first
    assert len(parsed) == 1

    expiry = issued.expires_at.timestamp()
    leeway = verifier.leeway.total_seconds()
    monkeypatch.setattr(case_tokens, "_now", lambda: expiry + leeway - 1)
    assert verifier.verify(issued.token) == first  # within the leeway, as PyJWT allows
    monkeypatch.setattr(case_tokens, "_now", lambda: expiry + leeway)
    assert refusal(verifier, issued.token) == "expired"
    assert verifier._verified == {}, "an expired token is forgotten"
    assert len(parsed) == 1


def test_a_remembered_token_is_not_valid_before_its_time_if_the_clock_went_back(
    issuer, verifier, monkeypatch
):
    from referrals_common.auth import case_tokens

    issued = issuer.issue(CASE_ID, "p")
    verifier.verify(issued.token)
    issued_at = issued.expires_at.timestamp() - issuer.ttl.total_seconds()
    leeway = verifier.leeway.total_seconds()
    monkeypatch.setattr(case_tokens, "_now", lambda: issued_at - leeway - 1)
    assert refusal(verifier, issued.token) == "not-yet-valid"


def test_a_refused_token_is_checked_again_each_time(issuer, verifier, monkeypatch):
    header, payload, signature = issuer.issue(CASE_ID, "p").token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    parsed = parses(monkeypatch)
    assert refusal(verifier, forged) == "bad-signature"
    assert refusal(verifier, forged) == "bad-signature"
    assert len(parsed) == 2


def test_a_verifier_remembers_a_bounded_number_of_tokens_the_oldest_forgotten_first(
    issuer, key_pem, monkeypatch
):
    verifier = CaseTokenVerifier(public_jwks(key_pem), remember=2)
    first, second, third = (issuer.issue(CASE_ID, f"p{i}").token for i in range(3))
    parsed = parses(monkeypatch)
    for token in (first, second, third, third, second, first):
        verifier.verify(token)
    assert parsed == [first, second, third, first]
    assert len(verifier._verified) == 2
    assert all(token not in repr(verifier.__dict__) for token in (first, second, third))


def test_expired_tokens_are_forgotten_as_new_ones_come(issuer, key_pem, monkeypatch):
    from referrals_common.auth import case_tokens

    verifier = CaseTokenVerifier(public_jwks(key_pem))
    old, new = issuer.issue(CASE_ID, "p"), issuer.issue(CASE_ID, "q")
    verifier.verify(old.token)
    # An hour on for the memory (PyJWT still verifies `new` by the real clock): `old` expired.
    monkeypatch.setattr(case_tokens, "_now", lambda: old.expires_at.timestamp() + 3600)
    verifier.verify(new.token)
    assert [kept.claims.client_id for kept in verifier._verified.values()] == ["q"]


def test_a_verifier_told_to_remember_none_verifies_each_time(issuer, key_pem, monkeypatch):
    verifier = CaseTokenVerifier(public_jwks(key_pem), remember=0)
    token = issuer.issue(CASE_ID, "p").token
    parsed = parses(monkeypatch)
    verifier.verify(token)
    verifier.verify(token)
    assert len(parsed) == 2


def test_old_and_new_keys_both_verify_during_a_rotation(key_pem, other_key_pem):
    old, new = CaseTokenIssuer(key_pem), CaseTokenIssuer(other_key_pem)
    verifier = CaseTokenVerifier(public_jwks(other_key_pem, key_pem))
    assert verifier.verify(old.issue(CASE_ID, "p").token).case_id == CASE_ID
    assert verifier.verify(new.issue(CASE_ID, "p").token).case_id == CASE_ID


def test_a_key_removed_from_the_jwks_no_longer_verifies(key_pem, other_key_pem):
    old_token = CaseTokenIssuer(key_pem).issue(CASE_ID, "p").token
    verifier = CaseTokenVerifier(public_jwks(other_key_pem))
    assert refusal(verifier, old_token) == "unknown-key"


def test_a_verifier_can_trust_a_single_public_pem(issuer, key_pem):
    verifier = CaseTokenVerifier.from_public_pem(public_pem(key_pem))
    assert verifier.verify(issuer.issue(CASE_ID, "p").token).case_id == CASE_ID


def test_a_custom_key_id_is_used_in_the_header_and_the_jwk(key_pem):
    issuer = CaseTokenIssuer(key_pem, key_id="intake-2026-05")
    verifier = CaseTokenVerifier({"keys": [public_jwk(key_pem, key_id="intake-2026-05")]})
    assert verifier.key_ids == {"intake-2026-05"}
    assert verifier.verify(issuer.issue(CASE_ID, "p").token).client_id == "p"


def test_the_published_jwks_holds_no_private_member(key_pem):
    [jwk] = public_jwks(key_pem)["keys"]
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}


def test_the_key_id_is_the_rfc_7638_thumbprint():
    # RFC 8037 appendix A.1 and A.3: the example key and its thumbprint.
    d = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    pem = Ed25519PrivateKey.from_private_bytes(d).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwk = public_jwk(pem)
    assert jwk["x"] == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert jwk["kid"] == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_a_jwks_with_a_private_key_is_refused_as_configuration(key_pem):
    jwk = public_jwk(key_pem) | {"d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}
    with pytest.raises(ValueError, match="private key"):
        CaseTokenVerifier({"keys": [jwk]})


def test_a_jwks_with_a_non_ed25519_key_is_refused_as_configuration():
    rsa = jwt.algorithms.RSAAlgorithm.to_jwk(
        generate_private_key(65537, 2048).public_key(), as_dict=True
    )
    with pytest.raises(ValueError, match="only Ed25519"):
        CaseTokenVerifier({"keys": [rsa]})


def test_an_issuer_refuses_a_non_ed25519_key():
    rsa_pem = generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="Ed25519"):
        CaseTokenIssuer(rsa_pem)


def test_the_issued_token_stays_out_of_reprs(issuer):
    issued = issuer.issue(CASE_ID, "p")
    assert issued.token not in repr(issued)


def _signed(key_pem: bytes, **extra: object) -> str:
    """A well-formed case token for CASE_ID with `extra` claims, signed with `key_pem`."""
    private_key = serialization.load_pem_private_key(key_pem, None)
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "referrals-intake", "aud": "referrals", "sub": str(CASE_ID), "cid": "p"}
    claims |= {"scope": "case:read", "iat": now, "nbf": now, "exp": now + 60, "jti": "j"}
    headers = {"kid": public_jwk(key_pem)["kid"], "typ": JWT_TYPE}
    return jwt.encode(claims | extra, private_key, algorithm="EdDSA", headers=headers)


@pytest.mark.parametrize("locale", ["uk", "en"])
def test_a_token_carries_the_case_s_language(issuer, verifier, locale):
    issued = issuer.issue(CASE_ID, "partner-es", locale=locale)
    assert segments(issued.token)[1]["loc"] == locale
    assert verifier.verify(issued.token).locale == locale


def test_a_token_without_a_language_still_verifies_with_none(issuer, verifier, key_pem):
    issued = issuer.issue(CASE_ID, "partner-es")
    assert "loc" not in segments(issued.token)[1]
    assert verifier.verify(issued.token).locale is None
    assert verifier.verify(_signed(key_pem)).locale is None


def test_a_language_this_version_does_not_speak_is_no_language(verifier, key_pem):
    assert verifier.verify(_signed(key_pem, loc="pl")).locale is None


def test_a_language_claim_that_is_not_text_is_refused(verifier, key_pem):
    assert refusal(verifier, _signed(key_pem, loc=["uk"])) == "invalid-claim"


def test_an_issuer_refuses_a_language_the_platform_does_not_speak(issuer):
    with pytest.raises(ValueError, match="language"):
        issuer.issue(CASE_ID, "partner-es", locale="uk-UA")
