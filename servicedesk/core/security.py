"""Password hashing (Argon2id), signed tokens (JWT), opaque tokens and secrets at rest."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from anyio import CapacityLimiter, to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import Type
from cryptography.fernet import Fernet, InvalidToken

from servicedesk.core.clock import utc_now

JWT_ALGORITHM = "HS256"


class PasswordHashing:
    """Argon2id with configurable cost; verification runs in a worker thread (CPU-bound)."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # A real hash of a random password: verifying unknown emails against it costs the same
        # time as a real check, so response timing does not reveal which emails exist.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        # Each hash holds `memory_kib` of RAM: at most one per core at a time, so a burst of
        # logins queues instead of multiplying memory (40 default threads x 64 MiB).
        self._limiter = CapacityLimiter(max(1, os.cpu_count() or 1))

    @property
    def parameters(self) -> str:
        h = self._hasher
        return f"argon2id t={h.time_cost} m={h.memory_cost}KiB p={h.parallelism}"

    async def hash(self, password: str) -> str:
        return await to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    def _verify(self, hashed: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(hashed or self._dummy, password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, hashed: str | None, password: str) -> bool:
        """True when `password` matches; with `hashed=None` burns the same time and is False."""
        return await to_thread.run_sync(self._verify, hashed, password, limiter=self._limiter)

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)


@dataclass(frozen=True)
class TokenClaims:
    subject: uuid.UUID
    organization_id: uuid.UUID
    token_type: str
    session_version: int
    expires_at: datetime
    jti: str


class InvalidTokenError(Exception):
    """The token is malformed, tampered with, expired or of the wrong type."""


VERIFIED_ACCESS_TOKENS = 4096
"""Access tokens whose signature and claims were checked, remembered per process (LRU)."""


class TokenSigner:
    """HS256 JWTs bound to a user and an organization."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"servicedesk-jwt:" + secret.encode()).digest()
        # Every API request presents its access token again: remember the claims of the
        # exact token strings already verified (signature included, so only the same bytes
        # hit) until they expire. Saves PyJWT's decode and HMAC on each request.
        self._verified: OrderedDict[str, TokenClaims] = OrderedDict()

    def issue(
        self,
        *,
        subject: uuid.UUID,
        organization_id: uuid.UUID,
        token_type: str,
        lifetime: timedelta,
        session_version: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> tuple[str, datetime]:
        now = utc_now()
        expires = now + lifetime
        claims: dict[str, Any] = {
            "sub": str(subject),
            "org": str(organization_id),
            "typ": token_type,
            "sv": session_version,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": secrets.token_hex(8),
            **(extra or {}),
        }
        return jwt.encode(claims, self._key, algorithm=JWT_ALGORITHM), expires

    def verify(self, token: str, *, token_type: str) -> TokenClaims:
        if token_type != "access":
            return self._decode(token, token_type=token_type)
        known = self._verified.get(token)
        if known is not None and known.expires_at > utc_now():
            self._verified.move_to_end(token)
            return known
        claims = self._decode(token, token_type=token_type)  # raises if expired or bad
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_ACCESS_TOKENS:
            self._verified.popitem(last=False)
        return claims

    def _decode(self, token: str, *, token_type: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[JWT_ALGORITHM],
                options={"require": ["sub", "org", "typ", "exp", "iat"]},
            )
            if claims["typ"] != token_type:
                raise InvalidTokenError("wrong token type")
            return TokenClaims(
                subject=uuid.UUID(claims["sub"]),
                organization_id=uuid.UUID(claims["org"]),
                token_type=claims["typ"],
                session_version=int(claims.get("sv", 0)),
                expires_at=datetime.fromtimestamp(claims["exp"], tz=utc_now().tzinfo),
                jti=str(claims.get("jti", "")),
            )
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            raise InvalidTokenError(str(exc)) from exc


def new_opaque_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    """SHA-256 of a high-entropy token (refresh tokens, recovery codes): fast and sufficient."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class SecretBox:
    """Encrypts small secrets at rest (TOTP seeds, channel tokens) with Fernet."""

    def __init__(self, secret: str) -> None:
        key = hashlib.sha256(b"servicedesk-secretbox:" + secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise InvalidTokenError("cannot decrypt secret") from exc
