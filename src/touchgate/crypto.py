"""Encryption of secrets at rest (auth tokens, signing secrets, plugin secrets).

Fernet (AES-128-CBC + HMAC-SHA256) keyed from ``TOUCHGATE_SECRET_KEY``. When the
variable is unset the key is generated once and kept in ``touchgate.secret``
beside the SQLite file, readable by its owner only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from .config import Settings

KEY_FILE_NAME = "touchgate.secret"


class SecretBox:
    def __init__(self, key_material: str) -> None:
        digest = hashlib.sha256(key_material.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:  # wrong key: say so instead of a stack trace
            raise RuntimeError(
                "A stored secret cannot be decrypted: TOUCHGATE_SECRET_KEY differs from the "
                "key it was encrypted with."
            ) from exc


def load_key_material(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / KEY_FILE_NAME
    return _read_or_create_key_file(path)


def _read_or_create_key_file(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its key
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def new_signing_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes (Standard Webhooks)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
