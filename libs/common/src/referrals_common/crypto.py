"""Encryption of personal data at rest, field by field (AES-256-GCM).

Contact details, dates of birth and insurance data are stored only as ciphertext. The row's id is
bound as associated data, so a ciphertext copied into another row does not decrypt. The key comes
from settings (a secret store in production); rotating it means re-encrypting with a new key id.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = b"\x01"


class FieldCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the field encryption key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    @classmethod
    def from_base64(cls, key_b64: str) -> FieldCipher:
        return cls(base64.b64decode(key_b64))

    @staticmethod
    def generate_key_base64() -> str:
        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()

    def encrypt_json(self, value: Any, *, bound_to: str) -> bytes:
        """Ciphertext of `value` as JSON, decryptable only with the same `bound_to` (row id)."""
        nonce = os.urandom(12)
        plain = json.dumps(value, separators=(",", ":"), default=str).encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plain, bound_to.encode())

    def decrypt_json(self, blob: bytes, *, bound_to: str) -> Any:
        if not blob or blob[:1] != _VERSION:
            raise ValueError("unknown ciphertext version")
        nonce, sealed = blob[1:13], blob[13:]
        return json.loads(self._aead.decrypt(nonce, sealed, bound_to.encode()))
