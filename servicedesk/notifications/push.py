"""Web push (RFC 8030) with VAPID (RFC 8292) and aes128gcm payload encryption (RFC 8291).

pywebpush encrypts the payload for the browser's keys and signs a VAPID JWT with our key;
the push service (FCM, Mozilla, Apple, WNS) receives the POST and wakes the browser.
"""

from __future__ import annotations

import enum
from typing import Any

import aiohttp
from py_vapid import Vapid
from pywebpush import WebPushException, webpush_async

from servicedesk.config import Settings
from servicedesk.models import PushSubscription

TTL_SECONDS = 24 * 3600
TIMEOUT_SECONDS = 15.0


class PushResult(enum.StrEnum):
    SENT = "sent"
    GONE = "gone"
    """The subscription expired or was revoked (404/410): forget it."""
    FAILED = "failed"


def vapid_key(settings: Settings) -> Vapid:
    """The signing key from settings: PEM, or base64url (raw 32-byte scalar or DER)."""
    key = (settings.vapid_private_key or "").strip()
    if "BEGIN" in key:
        return Vapid.from_pem(key.encode())
    return Vapid.from_string(key)


async def send(
    http: aiohttp.ClientSession,
    subscription: PushSubscription,
    payload: str,
    *,
    key: Vapid,
    subject: str,
) -> tuple[PushResult, str | None]:
    """POST one encrypted message to one subscription's push service."""
    info: dict[str, Any] = {
        "endpoint": subscription.endpoint,
        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
    }
    try:
        await webpush_async(
            subscription_info=info,
            data=payload,
            vapid_private_key=key,
            vapid_claims={"sub": subject},  # a fresh dict: pywebpush adds aud and exp to it
            ttl=TTL_SECONDS,
            timeout=TIMEOUT_SECONDS,
            aiohttp_session=http,
        )
    except WebPushException as exc:
        status = exc.status_code
        if status in (404, 410):
            return PushResult.GONE, f"HTTP {status}"
        return PushResult.FAILED, f"HTTP {status}: {exc.message}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return PushResult.FAILED, f"{type(exc).__name__}: {exc}"
    return PushResult.SENT, None
