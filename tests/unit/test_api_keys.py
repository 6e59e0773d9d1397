"""API keys: shown once as <prefix>_<key_id>_<secret>, stored as a peppered HMAC, parsed strictly
and verified in constant time."""

import pytest

from referrals_common.auth.api_keys import (
    InvalidApiKey,
    generate_api_key,
    hash_secret,
    parse_api_key,
    verify_secret,
)

pytestmark = pytest.mark.unit

PEPPER = b"a-server-side-pepper-of-32-bytes"


def test_a_new_key_round_trips_through_parse_hash_and_verify():
    new = generate_api_key("pfe")
    assert new.display == f"pfe_{new.key_id}_{new.secret}"
    stored = hash_secret(new.secret, PEPPER)

    prefix, key_id, secret = parse_api_key(new.display)

    assert (prefix, key_id, secret) == ("pfe", new.key_id, new.secret)
    assert verify_secret(secret, stored, PEPPER)


def test_a_new_key_has_a_12_character_id_and_a_256_bit_secret():
    new = generate_api_key("ops")
    assert len(new.key_id) == 12
    assert len(new.secret) == 43  # 43 characters of 62 possible: 256 bits
    assert (new.key_id + new.secret).isalnum()
    assert new.display.isascii()


def test_a_wrong_secret_is_refused():
    new = generate_api_key("pfe")
    stored = hash_secret(new.secret, PEPPER)
    assert not verify_secret(generate_api_key("pfe").secret, stored, PEPPER)
    last = "y" if new.secret.endswith("x") else "x"
    assert not verify_secret(new.secret[:-1] + last, stored, PEPPER)


def test_the_right_secret_under_another_pepper_is_refused():
    new = generate_api_key("pfe")
    stored = hash_secret(new.secret, PEPPER)
    assert not verify_secret(new.secret, stored, b"another-pepper-of-enough-bytes!!")


def test_a_malformed_stored_hash_is_no_match_rather_than_an_error():
    new = generate_api_key("pfe")
    assert not verify_secret(new.secret, "", PEPPER)
    assert not verify_secret(new.secret, "é" * 64, PEPPER)


def valid_key() -> str:
    return "pfe_4fTq9ZkLm2Xa_Vb7nR0cW3yPq8sLdE1uKj6hGf5tYz2Ma9oN4xCiB7eQ"


def test_a_well_formed_key_parses_even_if_we_did_not_just_make_it():
    assert parse_api_key(valid_key()) == ("pfe", "4fTq9ZkLm2Xa", valid_key()[17:])


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "pfe",
        "pfe__",
        valid_key().replace("pfe", "PFE", 1),  # prefix in capitals
        valid_key().replace("pfe", "p", 1),  # prefix too short
        valid_key().replace("pfe", "p-e", 1),  # prefix with a dash
        valid_key().replace("pfe", "1fe", 1),  # prefix starting with a digit
        valid_key().replace("pfe", "x" * 17, 1),  # prefix too long
        valid_key()[:-1],  # secret one character short
        valid_key() + "Q",  # secret one character long
        valid_key() + "Q" * 10_000,  # far too long
        valid_key().replace("_4fTq", "_4fT", 1),  # key id one character short
        valid_key().replace("Vb7n", "Vb7_", 1),  # underscore inside the secret
        valid_key().replace("Vb7n", "Vb7-", 1),  # url-safe but not ours
        valid_key().replace("Vb7n", "Vb7é", 1),  # non-ASCII letter
        valid_key().replace("Vb7n", "Vb7٣", 1),  # non-ASCII digit
        valid_key() + "\n",  # trailing newline
        " " + valid_key(),  # leading space
        valid_key().replace("_", ".", 1),  # another separator
    ],
)
def test_a_malformed_key_is_refused(presented):
    with pytest.raises(InvalidApiKey):
        parse_api_key(presented)


def test_the_refusal_never_repeats_the_presented_key():
    presented = valid_key() + "!"
    with pytest.raises(InvalidApiKey) as refused:
        parse_api_key(presented)
    assert "Vb7n" not in str(refused.value)


def test_a_key_of_another_kind_is_refused_when_a_kind_is_expected():
    new = generate_api_key("ops")
    assert parse_api_key(new.display, expected_prefix="ops").key_id == new.key_id
    with pytest.raises(InvalidApiKey, match="'pfe'"):
        parse_api_key(new.display, expected_prefix="pfe")


@pytest.mark.parametrize("prefix", ["", "p", "PFE", "p_e", "pfé", "x" * 17])
def test_a_key_cannot_be_made_with_a_prefix_it_could_not_be_parsed_back_with(prefix):
    with pytest.raises(ValueError, match="prefix"):
        generate_api_key(prefix)


def test_two_keys_never_collide():
    keys = [generate_api_key("pfe") for _ in range(1000)]
    assert len({key.key_id for key in keys}) == 1000
    assert len({key.secret for key in keys}) == 1000


def test_the_stored_hash_does_not_contain_the_secret():
    new = generate_api_key("pfe")
    stored = hash_secret(new.secret, PEPPER)
    assert len(stored) == 64
    assert int(stored, 16) >= 0  # hex digits only
    assert new.secret not in stored
    assert new.secret[:8] not in stored
    assert new.key_id not in stored


def test_a_short_pepper_is_refused():
    with pytest.raises(ValueError, match="pepper"):
        hash_secret(generate_api_key("pfe").secret, b"short")


def test_the_secret_stays_out_of_reprs():
    new = generate_api_key("pfe")
    parsed = parse_api_key(new.display)
    assert new.secret not in repr(new)
    assert new.secret not in repr(parsed)
    assert new.key_id in repr(parsed)


def test_a_verified_key_is_remembered_for_its_ttl_only_and_never_in_clear(monkeypatch):
    from referrals_common.auth import api_keys

    now = [1000.0]
    monkeypatch.setattr(api_keys.time, "monotonic", lambda: now[0])
    cache = api_keys.VerifiedKeys[str](b"p" * 16, ttl=60, max_entries=2)
    cache.put("rfk_key_one", "client-1")
    assert cache.get("rfk_key_one") == "client-1"
    assert cache.get("rfk_key_two") is None
    assert "rfk_key_one" not in repr(cache._entries)
    now[0] += 61
    assert cache.get("rfk_key_one") is None, "a revoked key stops working within the ttl"
    cache.put("a", "1")
    cache.put("b", "2")
    cache.put("c", "3")
    assert len(cache._entries) <= 2, "bounded"
