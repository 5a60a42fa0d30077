"""Who is acting: recorded on audit entries and (later) domain events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    type: str
    """`user`, `system`, `anonymous` or `api_token`."""
    id: uuid.UUID | None = None

    @classmethod
    def user(cls, user_id: uuid.UUID) -> Actor:
        return cls("user", user_id)


SYSTEM = Actor("system")
ANONYMOUS = Actor("anonymous")
