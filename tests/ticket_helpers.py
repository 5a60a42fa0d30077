"""Shared helpers of the ticket-core API tests.

A `Desk` is one organization with signed-in users of every role, two departments and a
realistic set of categories (IT Support with a Hardware sub-category, Budget Request), plus a
`file()` helper that files a ticket through the API. Test modules import the fixture
explicitly: `from tests.ticket_helpers import desk_fixture  # noqa: F401` and take `desk`.
"""

from __future__ import annotations

import html.parser
import itertools
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from servicedesk.accounts import service as accounts
from servicedesk.accounts.schemas import UserCreate
from servicedesk.core.actor import SYSTEM
from servicedesk.core.runtime import Runtime
from servicedesk.models import Organization, Role, User
from servicedesk.tenancy import service as tenancy
from servicedesk.tenancy.schemas import OrganizationCreate
from tests.conftest import PASSWORD, Session, client_for

API = "/api/v1"
TICKETS = f"{API}/tickets"
CATEGORIES = f"{API}/categories"
VIEWS = f"{API}/views"

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Session]]


# The realistic category set ------------------------------------------------------------------

IT_FIELDS: list[dict[str, Any]] = [
    {"key": "asset_name", "label": "Asset name", "type": "text", "required": True, "max": 100},
    {"key": "serial_number", "label": "Serial number", "type": "text", "min": 4, "max": 40},
    {
        "key": "issue_type",
        "label": "Issue type",
        "type": "select",
        "required": True,
        "choices": ["Hardware", "Software", "Network", "Access", "Other"],
    },
    {
        "key": "other_issue",
        "label": "Other issue",
        "type": "long_text",
        "help_text": "Describe the issue if you picked Other",
    },
]

BUDGET_FIELDS: list[dict[str, Any]] = [
    {"key": "cost_items", "label": "Cost items", "type": "cost_items", "required": True},
    {"key": "requested_budget", "label": "Requested budget", "type": "money", "min": 0},
    {
        "key": "performance_start",
        "label": "Performance start",
        "type": "date",
        "min_date": "2020-01-01",
        "max_date": "2035-12-31",
    },
    {"key": "performance_end", "label": "Performance end", "type": "date"},
    {"key": "approved_by", "label": "Approved by", "type": "text"},
]

HARDWARE_FIELDS: list[dict[str, Any]] = [
    {"key": "warranty", "label": "Under warranty", "type": "boolean"},
    {"key": "units", "label": "Units affected", "type": "number", "min": 1, "max": 500},
]


def it_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "asset_name": "MBP-0042",
        "serial_number": "C02XK1Z9",
        "issue_type": "Hardware",
    }
    values.update(overrides)
    return values


def budget_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "cost_items": [
            {"description": "Laptop", "quantity": 2, "unit_cost": "1250.00"},
            {"description": "Docking station", "quantity": 1, "unit_cost": 199.9},
        ],
        "requested_budget": "2699.90",
        "performance_start": "2027-01-01",
        "performance_end": "2027-06-30",
        "approved_by": "Dana Director",
    }
    values.update(overrides)
    return values


# The desk ------------------------------------------------------------------------------------


@dataclass
class Desk:
    client: httpx.AsyncClient
    runtime: Runtime
    org: Organization
    admin: Session
    agent: Session
    agent2: Session
    manager: Session
    requester: Session
    requester2: Session
    it_dept: dict[str, Any]
    finance_dept: dict[str, Any]
    it: dict[str, Any]
    hardware: dict[str, Any]
    budget: dict[str, Any]
    _subjects: int = field(default=0)

    def ticket_body(
        self, category: dict[str, Any] | None = None, **overrides: Any
    ) -> dict[str, Any]:
        self._subjects += 1
        category = category or self.it
        body: dict[str, Any] = {
            "subject": f"Laptop will not start {self._subjects}",
            "description": "The laptop shows a black screen after the logo appears.",
            "category_id": category["id"],
        }
        if category["id"] in (self.it["id"], self.hardware["id"]):
            body["custom_fields"] = it_values()
        elif category["id"] == self.budget["id"]:
            body["custom_fields"] = budget_values()
        if category.get("parent_id"):
            body["category_id"] = category["parent_id"]
            body["subcategory_id"] = category["id"]
        body.update(overrides)
        return body

    async def file(
        self,
        who: Session | None = None,
        category: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """File a ticket as `who` (the requester by default); assert it was created."""
        who = who or self.requester
        r = await self.client.post(
            TICKETS,
            json=self.ticket_body(category, **overrides),
            headers={**who.headers, **(headers or {})},
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def get(self, ticket: dict[str, Any], who: Session | None = None) -> dict[str, Any]:
        r = await self.client.get(f"{TICKETS}/{ticket['id']}", headers=(who or self.admin).headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def patch(
        self, ticket: dict[str, Any], who: Session | None = None, **changes: Any
    ) -> httpx.Response:
        """PATCH with the ticket's current version (read fresh as `who`)."""
        who = who or self.agent
        current = await self.get(ticket, self.admin)
        return await self.client.patch(
            f"{TICKETS}/{ticket['id']}",
            json={"version": current["version"], **changes},
            headers=who.headers,
        )

    async def move(
        self,
        ticket: dict[str, Any],
        status: str,
        who: Session | None = None,
        *,
        reason: str | None = None,
    ) -> httpx.Response:
        """Change the status with the ticket's current version."""
        who = who or self.agent
        current = await self.get(ticket, self.admin)
        body: dict[str, Any] = {"status": status, "version": current["version"]}
        if reason is not None:
            body["reason"] = reason
        return await self.client.post(
            f"{TICKETS}/{ticket['id']}/status", json=body, headers=who.headers
        )

    async def comment(
        self,
        ticket: dict[str, Any],
        body: str,
        who: Session | None = None,
        *,
        internal: bool = False,
    ) -> dict[str, Any]:
        r = await self.client.post(
            f"{TICKETS}/{ticket['id']}/comments",
            json={"body": body, "is_internal": internal},
            headers=(who or self.agent).headers,
        )
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def history(self, ticket: dict[str, Any]) -> list[dict[str, Any]]:
        r = await self.client.get(f"{TICKETS}/{ticket['id']}/history", headers=self.admin.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def search(
        self, q: str, who: Session | None = None, **params: Any
    ) -> list[dict[str, Any]]:
        r = await self.client.get(
            TICKETS, params={"q": q, "limit": 100, **params}, headers=(who or self.admin).headers
        )
        assert r.status_code == 200, r.text
        return r.json()["items"]  # type: ignore[no-any-return]

    async def listing(self, who: Session | None = None, **params: Any) -> list[dict[str, Any]]:
        r = await self.client.get(
            TICKETS, params={"limit": 100, **params}, headers=(who or self.admin).headers
        )
        assert r.status_code == 200, r.text
        return r.json()["items"]  # type: ignore[no-any-return]

    async def set_settings(self, **settings: Any) -> None:
        r = await self.client.patch(
            f"{API}/organization", json={"settings": settings}, headers=self.admin.headers
        )
        assert r.status_code == 200, r.text
        for key, value in settings.items():
            assert r.json()["settings"][key] == value, r.text

    async def sql(self, statement: str, **params: Any) -> None:
        """Run a statement in a system session (to age rows, as a clock would)."""
        async with self.runtime.db.session() as session:
            await session.execute(text(statement), params)

    async def age_ticket(self, ticket: dict[str, Any], column: str, by: timedelta) -> None:
        assert column in ("submitted_at", "resolved_at", "updated_at")
        await self.sql(
            f"UPDATE tickets SET {column} = {column} - CAST(:by AS interval) WHERE id = :id",  # noqa: S608
            by=by,
            id=uuid.UUID(ticket["id"]),
        )


async def make_category(client: httpx.AsyncClient, admin: Session, **body: Any) -> dict[str, Any]:
    r = await client.post(CATEGORIES, json=body, headers=admin.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def make_department(client: httpx.AsyncClient, admin: Session, name: str) -> dict[str, Any]:
    r = await client.post(f"{API}/departments", json={"name": name}, headers=admin.headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def build_desk(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    admin: Session,
    make_user: MakeUser,
    login: Login,
) -> Desk:
    async def session_for(role: Role) -> Session:
        return await login(await make_user(org, role), org)

    it_dept = await make_department(client, admin, "IT Operations")
    finance_dept = await make_department(client, admin, "Finance")
    it = await make_category(
        client,
        admin,
        name="IT Support",
        description="Computers, accounts, network",
        default_priority="high",
        department_id=it_dept["id"],
        fields=IT_FIELDS,
    )
    hardware = await make_category(
        client,
        admin,
        name="Hardware",
        parent_id=it["id"],
        default_priority="critical",
        fields=HARDWARE_FIELDS,
    )
    budget = await make_category(
        client,
        admin,
        name="Budget Request",
        default_priority="low",
        department_id=finance_dept["id"],
        fields=BUDGET_FIELDS,
    )
    return Desk(
        client=client,
        runtime=runtime,
        org=org,
        admin=admin,
        agent=await session_for(Role.AGENT),
        agent2=await session_for(Role.AGENT),
        manager=await session_for(Role.MANAGER),
        requester=await session_for(Role.REQUESTER),
        requester2=await session_for(Role.REQUESTER),
        it_dept=it_dept,
        finance_dept=finance_dept,
        it=it,
        hardware=hardware,
        budget=budget,
    )


async def new_desk(app: object, runtime: Runtime, client: httpx.AsyncClient, name: str) -> Desk:
    """A desk in a new organization, without the function-scoped conftest fixtures (for
    module-scoped set-ups): the same steps as `make_org`, `make_user` and `login`."""
    async with runtime.db.session() as session:
        org = await tenancy.create_organization(
            session, OrganizationCreate(slug=f"t{secrets.token_hex(5)}", name=name), actor=SYSTEM
        )

    async def make_user(org: Organization, role: Role = Role.REQUESTER) -> User:
        async with runtime.db.tenant_session(org.id) as session:
            return await accounts.do_create_user(
                session,
                runtime.hasher,
                UserCreate(
                    email=f"{role}-{secrets.token_hex(4)}@example.com",
                    password=PASSWORD,
                    first_name="Test",
                    last_name=role.capitalize(),
                    role=role,
                    company_id=f"MA{next(_company_ids) % 10000:04d}",
                ),
                organization_id=org.id,
                actor=SYSTEM,
            )

    async def login(user: User, org: Organization) -> Session:
        async with client_for(app) as c:
            r = await c.post(
                f"{API}/auth/login",
                json={"email": user.email, "password": PASSWORD},
                headers={"X-Tenant-ID": org.slug},
            )
        assert r.status_code == 200, r.text
        return Session(user, org, r.json()["access_token"], r.json()["refresh_token"])

    admin = await login(await make_user(org, Role.ADMIN), org)
    return await build_desk(client, runtime, org, admin, make_user, login)


_company_ids = itertools.count(7000)


@pytest.fixture(name="desk")
async def desk_fixture(
    client: httpx.AsyncClient,
    runtime: Runtime,
    org: Organization,
    admin: Session,
    make_user: MakeUser,
    login: Login,
) -> Desk:
    return await build_desk(client, runtime, org, admin, make_user, login)


# Assertions ----------------------------------------------------------------------------------


def problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert an RFC 9457 problem with this status (and code); return its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    if code is not None:
        assert body["code"] == code, body
    return body


def error_keys(body: dict[str, Any]) -> set[str]:
    """The last element of every `errors[].loc`."""
    return {str(e["loc"][-1]) for e in body.get("errors", [])}


class _HtmlAudit(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag in ("script", "img", "iframe", "object", "embed", "style", "svg", "form"):
            self.bad.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.bad.append(f"{tag}[{name}]")
            if name in ("href", "src", "action", "formaction") and value is not None:
                scheme = "".join(value.split()).lower()
                if not scheme.startswith(("http:", "https:", "mailto:", "#", "/")):
                    self.bad.append(f"{tag}[{name}={value}]")


def assert_safe_html(markup: str) -> None:
    """No script, no event handler, no javascript:/data: link in any *tag* of the markup.

    Checked on the tags themselves (every literal `<…>` of sanitised output is a real tag,
    since a `<` in text is escaped) and with an HTML parser: escaped text such as
    `&lt;img onerror=…&gt;` is harmless and may remain visible as text.
    """
    tags = [t.lower() for t in _TAG.findall(markup)]
    assert not [t for t in tags if t.startswith(("<script", "<img", "<iframe", "<svg"))], markup
    assert not [t for t in tags if "onerror" in t or "onload" in t], markup
    assert not [t for t in tags if 'href="javascript' in t or "javascript:" in t], markup
    audit = _HtmlAudit()
    audit.feed(markup)
    audit.close()
    assert audit.bad == [], (audit.bad, markup)
    assert "script" not in audit.tags and "img" not in audit.tags, markup


_TAG = re.compile(r"<[^>]*>")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)
