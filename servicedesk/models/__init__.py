"""All ORM models, one module per aggregate, importable from one root (Alembic looks here)."""

from servicedesk.models.audit import AuditLog
from servicedesk.models.auth import LoginAttempt, RecoveryCode, RefreshToken
from servicedesk.models.base import Base
from servicedesk.models.organization import Organization
from servicedesk.models.user import Department, Role, User, UserStatus

__all__ = [
    "AuditLog",
    "Base",
    "Department",
    "LoginAttempt",
    "Organization",
    "RecoveryCode",
    "RefreshToken",
    "Role",
    "User",
    "UserStatus",
]
