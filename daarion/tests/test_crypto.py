"""AES-256-GCM secrets: round trip, tamper detection, key ring parsing, production refusal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from daarion.infra import crypto
from daarion.infra.crypto import DecryptionError, KeyRing, decrypt, encrypt, generate_key_spec


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.parse(generate_key_spec("new") + "," + generate_key_spec("old"))


def test_round_trip(ring):
    sealed = encrypt("sk-live-123 ünïcode", ring=ring)
    assert sealed.startswith("enc:v1:new:")
    assert "sk-live" not in sealed
    assert decrypt(sealed, ring=ring) == "sk-live-123 ünïcode"


def test_same_plaintext_seals_differently(ring):
    assert encrypt("same", ring=ring) != encrypt("same", ring=ring)


def test_tampered_ciphertext_is_refused(ring):
    sealed = encrypt("secret", ring=ring)
    body = sealed.rsplit(":", 1)[1]
    flipped = body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB")
    with pytest.raises(DecryptionError):
        decrypt(sealed.rsplit(":", 1)[0] + ":" + flipped, ring=ring)


def test_key_id_is_authenticated(ring):
    # Relabelling a value with another key id must not open it.
    sealed = encrypt("secret", ring=ring)
    with pytest.raises(DecryptionError):
        decrypt(sealed.replace(":new:", ":old:", 1), ring=ring)


def test_old_keys_still_decrypt_after_rotation(ring):
    old_only = KeyRing.parse(
        ",".join(f"{kid}:{__import__('base64').b64encode(k).decode()}" for kid, k in reversed(ring.keys.items()))
    )
    sealed_with_old = encrypt("legacy", ring=old_only)
    assert crypto.key_id_of(sealed_with_old) == "old"
    assert decrypt(sealed_with_old, ring=ring) == "legacy"


def test_unknown_key_is_a_clear_error(ring):
    other = KeyRing.parse(generate_key_spec("elsewhere"))
    with pytest.raises(DecryptionError, match="elsewhere"):
        decrypt(encrypt("x", ring=other), ring=ring)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "empty"),
        ("nokey", "kid:base64key"),
        ("k1:not-base64!!", "base64"),
        ("k1:YWJj", "32 bytes"),
    ],
)
def test_bad_key_rings_are_refused(text, problem):
    with pytest.raises(ImproperlyConfigured, match=problem):
        KeyRing.parse(text)


def test_duplicate_key_ids_are_refused():
    spec = generate_key_spec("dup")
    with pytest.raises(ImproperlyConfigured, match="twice"):
        KeyRing.parse(spec + "," + spec)


def test_mask_never_shows_the_secret():
    assert crypto.mask("") == "not set"
    masked = crypto.mask("sk-abcdefghijklmnop")
    assert "abcdefgh" not in masked and masked.startswith("set")


def test_production_refuses_to_start_without_a_key():
    env = {k: v for k, v in os.environ.items() if k != "DAARION_ENCRYPTION_KEYS"}
    env.update(DAARION_ENV="production", DJANGO_SECRET_KEY="x" * 50, DJANGO_ALLOWED_HOSTS="example.org")
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "DAARION_ENCRYPTION_KEYS" in result.stderr


def test_development_generates_a_key_ring_once(tmp_path, settings):
    settings.DATA_DIR = tmp_path
    settings.ENCRYPTION_KEYS = ""
    crypto.reset_key_ring()
    try:
        first = crypto.key_ring()
        crypto.reset_key_ring()
        second = crypto.key_ring()
        assert (tmp_path / "encryption.keys").exists()
        assert first == second
        assert oct((tmp_path / "encryption.keys").stat().st_mode & 0o777) == "0o600"
    finally:
        crypto.reset_key_ring()
