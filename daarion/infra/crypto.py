"""Secrets at rest: AES-256-GCM under a key ring with key ids, so keys can rotate.

Key ring: DAARION_ENCRYPTION_KEYS = "kid1:<base64 32 bytes>,kid2:<...>". The first key
encrypts; every key decrypts. A stored value reads `enc:v1:<kid>:<base64(nonce+ciphertext)>`,
so a row names the key that sealed it and `rotate_encryption_key` can re-seal under the new
one. In development, when the variable is unset, a key ring is generated once into
DATA_DIR/encryption.keys (production refuses to start without the variable).
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

PREFIX = "enc:v1:"
_NONCE_BYTES = 12


class DecryptionError(Exception):
    """A stored value cannot be opened: unknown key id, or the bytes were tampered with."""


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, bytes]  # kid -> 32-byte key, in order; the first is primary
    primary_kid: str

    @classmethod
    def parse(cls, text: str) -> "KeyRing":
        keys: dict[str, bytes] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            kid, sep, encoded = item.partition(":")
            if not sep or not kid or not kid.isascii() or not kid.replace("-", "").replace("_", "").isalnum():
                raise ImproperlyConfigured(f"encryption key {item[:12]!r}...: expected 'kid:base64key'")
            try:
                raw = base64.b64decode(encoded, validate=True)
            except ValueError as exc:
                raise ImproperlyConfigured(f"encryption key {kid!r}: not valid base64") from exc
            if len(raw) != 32:
                raise ImproperlyConfigured(f"encryption key {kid!r}: must be 32 bytes, got {len(raw)}")
            if kid in keys:
                raise ImproperlyConfigured(f"encryption key id {kid!r} appears twice")
            keys[kid] = raw
        if not keys:
            raise ImproperlyConfigured("the encryption key ring is empty")
        return cls(keys=keys, primary_kid=next(iter(keys)))


def generate_key_spec(kid: str | None = None) -> str:
    """A new `kid:base64key` item for DAARION_ENCRYPTION_KEYS."""
    kid = kid or f"k{secrets.token_hex(4)}"
    return f"{kid}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


_ring: KeyRing | None = None
_ring_lock = threading.Lock()


def _dev_key_file() -> Path:
    return Path(settings.DATA_DIR) / "encryption.keys"


def _load_ring_text() -> str:
    if settings.ENCRYPTION_KEYS:
        return settings.ENCRYPTION_KEYS
    if settings.PRODUCTION:
        raise ImproperlyConfigured("DAARION_ENCRYPTION_KEYS must be set in production")
    path = _dev_key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once must not write two different keys.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(generate_key_spec("dev1") + "\n")
    return path.read_text().strip()


def key_ring() -> KeyRing:
    global _ring
    if _ring is None:
        with _ring_lock:
            if _ring is None:
                _ring = KeyRing.parse(_load_ring_text())
    return _ring


def reset_key_ring() -> None:
    """Forget the cached ring (after the environment or the dev key file changed)."""
    global _ring
    with _ring_lock:
        _ring = None


def encrypt(plaintext: str, *, ring: KeyRing | None = None) -> str:
    ring = ring or key_ring()
    nonce = os.urandom(_NONCE_BYTES)
    kid = ring.primary_kid
    sealed = AESGCM(ring.keys[kid]).encrypt(nonce, plaintext.encode("utf-8"), kid.encode())
    return f"{PREFIX}{kid}:{base64.b64encode(nonce + sealed).decode()}"


def decrypt(token: str, *, ring: KeyRing | None = None) -> str:
    ring = ring or key_ring()
    kid = key_id_of(token)
    if kid not in ring.keys:
        raise DecryptionError(f"value was sealed with key {kid!r}, which is not in the key ring")
    try:
        raw = base64.b64decode(token.rsplit(":", 1)[1], validate=True)
        opened = AESGCM(ring.keys[kid]).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], kid.encode())
    except (InvalidTag, ValueError, IndexError) as exc:
        raise DecryptionError("stored secret is corrupt or was tampered with") from exc
    return opened.decode("utf-8")


def is_encrypted(value: str) -> bool:
    return value.startswith(PREFIX)


def key_id_of(token: str) -> str:
    if not is_encrypted(token):
        raise DecryptionError("value is not an encrypted secret")
    return token[len(PREFIX) :].split(":", 1)[0]


def mask(value: str | None) -> str:
    """What admin and APIs show instead of a secret."""
    if not value:
        return "not set"
    return "set (••••" + (value[-4:] if len(value) >= 12 else "") + ")"


class EncryptedTextField(models.TextField):
    """A text column stored encrypted; Python code sees the plaintext.

    Empty strings stay empty (an unset secret); everything else is sealed on save.
    """

    description = "Text encrypted at rest with AES-256-GCM"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
