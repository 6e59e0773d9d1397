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


class SealedBox:
    """Encryption to one service's public key (X25519 + HKDF-SHA256 + AES-256-GCM).

    Contact details travel from intake to notifications sealed this way: any producer may seal
    with the public key, only the holder of the private key opens, so the broker, the dead-letter
    topic, replays and every other consumer see only ciphertext. Each message has its own
    ephemeral key; `bound_to` (the case id) is authenticated, so a sealed value moved to another
    case does not open.
    """

    _INFO = b"referrals-sealed-box-v1"

    def __init__(self, private_key_b64: str | None = None, public_key_b64: str | None = None):
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )

        self._private = (
            X25519PrivateKey.from_private_bytes(base64.b64decode(private_key_b64))
            if private_key_b64
            else None
        )
        if public_key_b64:
            self._public = X25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64))
        elif self._private is not None:
            self._public = self._private.public_key()
        else:
            raise ValueError("a sealed box needs a public or a private key")

    @staticmethod
    def generate_keypair_base64() -> tuple[str, str]:
        """(private, public) raw X25519 keys, base64."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        private = X25519PrivateKey.generate()
        return (
            base64.b64encode(private.private_bytes_raw()).decode(),
            base64.b64encode(private.public_key().public_bytes_raw()).decode(),
        )

    @classmethod
    def _key(cls, shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=ephemeral_public + recipient_public,
            info=cls._INFO,
        ).derive(shared)

    def seal_json(self, value: Any, *, bound_to: str) -> str:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        ephemeral = X25519PrivateKey.generate()
        eph_public = ephemeral.public_key().public_bytes_raw()
        key = self._key(
            ephemeral.exchange(self._public), eph_public, self._public.public_bytes_raw()
        )
        nonce = os.urandom(12)
        plain = json.dumps(value, separators=(",", ":"), default=str).encode()
        sealed = AESGCM(key).encrypt(nonce, plain, bound_to.encode())
        return base64.b64encode(_VERSION + eph_public + nonce + sealed).decode()

    def open_json(self, token: str, *, bound_to: str) -> Any:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

        if self._private is None:
            raise ValueError("only the holder of the private key can open a sealed box")
        blob = base64.b64decode(token)
        if blob[:1] != _VERSION:
            raise ValueError("unknown sealed box version")
        eph_public, nonce, sealed = blob[1:33], blob[33:45], blob[45:]
        shared = self._private.exchange(X25519PublicKey.from_public_bytes(eph_public))
        key = self._key(shared, eph_public, self._public.public_bytes_raw())
        return json.loads(AESGCM(key).decrypt(nonce, sealed, bound_to.encode()))
