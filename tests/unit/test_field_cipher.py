"""Personal data at rest: AES-GCM, bound to its row."""

import pytest
from cryptography.exceptions import InvalidTag

from referrals_common.crypto import FieldCipher

pytestmark = pytest.mark.unit


def test_a_value_round_trips_and_the_ciphertext_does_not_contain_it():
    cipher = FieldCipher.from_base64(FieldCipher.generate_key_base64())
    blob = cipher.encrypt_json({"email": "olena@example.org"}, bound_to="case-1")
    assert b"olena" not in blob
    assert cipher.decrypt_json(blob, bound_to="case-1") == {"email": "olena@example.org"}


def test_a_ciphertext_moved_to_another_row_does_not_decrypt():
    cipher = FieldCipher.from_base64(FieldCipher.generate_key_base64())
    blob = cipher.encrypt_json({"phone": "+380501234567"}, bound_to="case-1")
    with pytest.raises(InvalidTag):
        cipher.decrypt_json(blob, bound_to="case-2")


def test_another_key_cannot_decrypt():
    blob = FieldCipher(b"k" * 32).encrypt_json("x", bound_to="c")
    with pytest.raises(InvalidTag):
        FieldCipher(b"j" * 32).decrypt_json(blob, bound_to="c")


def test_a_sealed_box_opens_only_with_the_private_key_and_for_its_case():
    from cryptography.exceptions import InvalidTag

    from referrals_common.crypto import SealedBox

    private, public = SealedBox.generate_keypair_base64()
    sender = SealedBox(public_key_b64=public)
    contact = {"email": "olena.petrenko@example.org", "phone": "+380501234567"}
    token = sender.seal_json(contact, bound_to="case-1")
    assert "olena" not in token and contact["phone"] not in token
    assert token != sender.seal_json(contact, bound_to="case-1")  # fresh ephemeral key each time
    assert SealedBox(private_key_b64=private).open_json(token, bound_to="case-1") == contact
    with pytest.raises(ValueError, match="private key"):
        sender.open_json(token, bound_to="case-1")
    with pytest.raises(InvalidTag):
        SealedBox(private_key_b64=private).open_json(token, bound_to="case-2")
    other_private, _ = SealedBox.generate_keypair_base64()
    with pytest.raises(InvalidTag):
        SealedBox(private_key_b64=other_private).open_json(token, bound_to="case-1")


def test_a_webhook_signature_verifies_only_for_its_body_secret_and_time():
    from referrals_common.webhooks import InvalidSignature, signed_headers, verify

    body = b'{"case_id": "3f0f"}'
    headers = signed_headers("whsec_one", body, now=1_763_730_000)
    stamp, sig = headers["X-Referrals-Timestamp"], headers["X-Referrals-Signature"]
    verify("whsec_one", body, stamp, sig, now=1_763_730_010)
    for args, why in [
        (("whsec_two", body, stamp, sig), "does not match"),
        (("whsec_one", body + b" ", stamp, sig), "does not match"),
        (("whsec_one", body, stamp, "sha256=\u00e9" + sig[8:]), "does not match"),
        (("whsec_one", body, stamp, None), "missing"),
    ]:
        with pytest.raises(InvalidSignature, match=why):
            verify(*args, now=1_763_730_010)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify("whsec_one", body, stamp, sig, now=1_763_730_000 + 301)
