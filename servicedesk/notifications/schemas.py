"""API shapes of notifications, preferences, push subscriptions and the email log."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime, time
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from servicedesk.notifications.rules import TYPES

Channel = Literal["in_app", "email", "push"]
EmailStatusName = Literal["queued", "sent", "failed", "batched", "digested"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    event_type: str
    ticket_id: uuid.UUID | None
    actor_id: uuid.UUID | None
    title: str
    body: str
    url: str
    """The recipient's web page within the organization, e.g. `/tickets/{number}`."""
    occurrences: int
    """How many times this happened within the de-dup window (folded into this one)."""
    created_at: datetime
    updated_at: datetime
    read_at: datetime | None


class UnreadCount(BaseModel):
    count: int


class ReadAllResult(BaseModel):
    updated: int


# Preferences ---------------------------------------------------------------------------------


class QuietHours(Strict):
    """Local times in the user's time zone; a start after the end spans midnight."""

    start: time
    end: time

    @field_validator("start", "end")
    @classmethod
    def _naive_minutes(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("give a local time without a zone (the profile's zone applies)")
        return value.replace(second=0, microsecond=0)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("the end must differ from the start")
        return self


class PreferenceItem(Strict):
    event_type: str
    channel: Channel
    enabled: bool

    @field_validator("event_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in TYPES:
            raise ValueError(f"unknown notification type; one of: {', '.join(TYPES)}")
        return value


class PreferenceRead(PreferenceItem):
    label: str


class PreferencesRead(BaseModel):
    timezone: str
    """Quiet hours are in this zone (the user's profile time zone)."""
    quiet_hours: QuietHours | None
    channels: list[str]
    preferences: list[PreferenceRead]


class PreferencesUpdate(Strict):
    preferences: list[PreferenceItem] = Field(default_factory=list, max_length=100)
    """Only the listed (type, channel) pairs change."""
    quiet_hours: QuietHours | None = None
    """Send `null` to switch quiet hours off; leave it out to keep them."""


# Web push ------------------------------------------------------------------------------------


def _b64url(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


class PushKeys(Strict):
    p256dh: Annotated[str, StringConstraints(min_length=80, max_length=200)]
    auth: Annotated[str, StringConstraints(min_length=16, max_length=100)]

    @field_validator("p256dh")
    @classmethod
    def _point(cls, value: str) -> str:
        raw = _b64url(value)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("not an uncompressed P-256 public key")
        return value

    @field_validator("auth")
    @classmethod
    def _secret(cls, value: str) -> str:
        if len(_b64url(value)) != 16:
            raise ValueError("the auth secret must be 16 bytes")
        return value


class PushSubscriptionCreate(Strict):
    """The JSON of a browser's `PushSubscription` (`subscription.toJSON()`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    endpoint: Annotated[str, StringConstraints(min_length=12, max_length=2048)]
    keys: PushKeys
    expiration_time: int | None = Field(None, alias="expirationTime")


class PushSubscriptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    endpoint: str
    user_agent: str | None
    created_at: datetime
    last_success_at: datetime | None


class PushSubscriptionsRead(BaseModel):
    vapid_public_key: str | None
    """The application server key to subscribe with; null when web push is not configured."""
    subscriptions: list[PushSubscriptionRead]


# The email log -------------------------------------------------------------------------------


class EmailRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID | None
    to_address: str
    subject: str
    summary: str
    template: str
    status: str
    attempts: int
    last_error: str | None
    send_after: datetime
    sent_at: datetime | None
    ticket_id: uuid.UUID | None
    event_id: uuid.UUID | None
    actor_type: str | None
    actor_id: uuid.UUID | None
    message_id: str
    in_reply_to: str | None
    references: str | None
    digest_id: uuid.UUID | None
    created_at: datetime
