"""Password policy: length, not a common password, not the email."""

from __future__ import annotations

from functools import cache
from importlib import resources

from servicedesk.core.errors import Unprocessable

MIN_LENGTH = 8


@cache
def _common() -> frozenset[str]:
    text = resources.files("servicedesk.accounts").joinpath("common_passwords.txt").read_text()
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def password_problems(password: str, *, email: str) -> list[str]:
    problems = []
    lowered = password.lower()
    if len(password) < MIN_LENGTH:
        problems.append(f"must be at least {MIN_LENGTH} characters")
    if lowered in _common():
        problems.append("is too common; choose one that is not on lists of leaked passwords")
    local = email.split("@", 1)[0].lower()
    if lowered == email.lower() or (len(local) >= 4 and lowered == local):
        problems.append("must not be your email address")
    if len(set(password)) <= 2:
        problems.append("must not repeat one or two characters")
    return problems


def check_password(password: str, *, email: str, field: str = "password") -> None:
    """Raise 422 naming the field when the password breaks the policy."""
    problems = password_problems(password, email=email)
    if problems:
        raise Unprocessable(
            f"The password {'; '.join(problems)}.",
            code="weak_password",
            errors=[{"loc": ["body", field], "msg": p, "type": "weak_password"} for p in problems],
        )
