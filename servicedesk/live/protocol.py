"""The messages of the live protocol (docs/live.md), both ways, and room names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_CLIENT_MESSAGE = 4096
"""Bytes of one client message; anything longer is refused with an error message."""

SIGNALS = ("viewing", "typing", "replying")
"""Ephemeral indicators a client sends for a ticket room; each has a TTL."""

SIGNAL_MESSAGE = {"viewing": "presence", "typing": "typing", "replying": "replying"}
"""The server message that carries the current holders of each signal."""

ROOM_KINDS = ("org", "user", "ticket")


@dataclass(frozen=True)
class Room:
    """`org:{id}`, `user:{id}` or `ticket:{id}`; always within the connection's organization."""

    kind: str
    id: uuid.UUID

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, name: str) -> Room | None:
        kind, sep, raw = name.partition(":")
        if not sep or kind not in ROOM_KINDS or len(raw) > 36:
            return None
        try:
            return cls(kind, uuid.UUID(raw))
        except ValueError:
            return None


# Client → server ---------------------------------------------------------------------------


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Join(_Message):
    type: Literal["join"]
    room: str = Field(max_length=60)


class Leave(_Message):
    type: Literal["leave"]
    room: str = Field(max_length=60)


class Signal(_Message):
    type: Literal["viewing", "typing", "replying"]
    room: str = Field(max_length=60)
    active: bool = True


class Ping(_Message):
    type: Literal["ping"]
    id: str | int | None = None


class Auth(_Message):
    type: Literal["auth"]
    token: str = Field(max_length=4000)


ClientMessage = Annotated[Join | Leave | Signal | Ping | Auth, Field(discriminator="type")]
_client_message: TypeAdapter[Join | Leave | Signal | Ping | Auth] = TypeAdapter(ClientMessage)


class ProtocolError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def parse_client_message(text: str) -> Join | Leave | Signal | Ping | Auth:
    if len(text) > MAX_CLIENT_MESSAGE:
        raise ProtocolError("message_too_large", f"Messages are at most {MAX_CLIENT_MESSAGE} B.")
    try:
        return _client_message.validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"msg": "invalid"}
        raise ProtocolError("invalid_message", f"Not a valid message: {first['msg']}.") from exc


# Server → client ---------------------------------------------------------------------------


def dumps(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()


def event_message(seq: int, envelope: dict[str, Any]) -> str:
    return dumps({"type": "event", "seq": seq, "event": envelope})


def error_message(code: str, detail: str, **extra: Any) -> str:
    return dumps({"type": "error", "code": code, "detail": detail, **extra})
