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
