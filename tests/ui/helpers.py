"""Helpers of the browser tests: the live server's JSON API, sign-in, DOM checks."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import PASSWORD

ONE_PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d6a4b90000000049454e44ae426082"
)

# Fields of the category the portal tests file tickets in.
LAPTOP_FIELDS: list[dict[str, Any]] = [
    {"key": "asset_tag", "label": "Asset tag", "type": "text", "required": True, "max": 40},
    {"key": "units", "label": "Units affected", "type": "number", "min": 1, "max": 50},
    {
        "key": "issue",
        "label": "Kind of problem",
        "type": "select",
        "required": True,
        "choices": ["Hardware", "Software", "Network"],
    },
    {"key": "since", "label": "Broken since", "type": "date"},
    {"key": "under_warranty", "label": "Under warranty", "type": "boolean"},
]


@dataclass
class UiApi:
    """The JSON API of the live server, in one organization, as one user."""

    base: str
    slug: str
    token: str | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"X-Tenant-ID": self.slug}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as client:
            return await client.request(method, "/api/v1" + path, headers=self._headers(), **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        r = await self.request(method, path, **kwargs)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json() if r.content else None

    async def as_user(self, email: str, password: str = PASSWORD) -> UiApi:
        r = await UiApi(self.base, self.slug).request(
            "POST", "/auth/login", json={"email": email, "password": password}
        )
        assert r.status_code == 200, r.text
        return UiApi(self.base, self.slug, r.json()["access_token"])

    async def user(
        self, role: str = "requester", *, first_name: str = "Robin", **extra: Any
    ) -> dict[str, Any]:
        body = {
            "email": f"{role}-{secrets.token_hex(4)}@example.com",
            "password": PASSWORD,
            "first_name": first_name,
            "last_name": role.capitalize(),
            "role": role,
            **extra,
        }
        created: dict[str, Any] = await self.ok("POST", "/users", json=body)
        return created

    async def category(self, name: str = "Laptop problems", **body: Any) -> dict[str, Any]:
        body.setdefault("fields", LAPTOP_FIELDS)
        created: dict[str, Any] = await self.ok("POST", "/categories", json={"name": name, **body})
        return created

    async def ticket(self, category: dict[str, Any], **body: Any) -> dict[str, Any]:
        values = {
            "subject": "Screen flickers all day",
            "description": "The screen of my laptop flickers every few seconds.",
            "category_id": category["id"],
            "custom_fields": {"asset_tag": "LT-0042", "issue": "Hardware"},
            **body,
        }
        created: dict[str, Any] = await self.ok("POST", "/tickets", json=values)
        return created


def path(live: str, slug: str, rest: str) -> str:
    return f"{live}/t/{slug}{rest}"


async def sign_in(page: Any, live: str, slug: str, email: str, password: str = PASSWORD) -> None:
    await page.goto(path(live, slug, "/login"))
    await page.fill("#f-email", email)
    await page.fill("#f-password", password)
    await page.click("button:has-text('Sign in')")
    await page.wait_for_url("**/tickets")


INJECTED = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      if (attr.name.toLowerCase().startsWith('on')) bad.push(el.tagName + '[' + attr.name + ']');
      if (['href', 'src', 'action', 'formaction'].includes(attr.name) &&
          attr.value.replace(/\\s/g, '').toLowerCase().startsWith('javascript:')) {
        bad.push(el.tagName + '[' + attr.name + ']');
      }
    }
  }
  for (const s of document.querySelectorAll('script')) {
    const src = s.getAttribute('src') || '';
    if (!src.startsWith('/static/')) bad.push('script ' + (src || s.textContent.slice(0, 40)));
  }
  for (const sel of ['iframe', 'object', 'embed', 'img[src="x"]', 'xss-tag', 'marquee', 'style']) {
    for (const el of document.querySelectorAll(sel)) bad.push(sel);
  }
  if (window.__xss) bad.push('window.__xss was set');
  return bad;
}"""


async def injected(page: Any) -> list[str]:
    """Elements or handlers that only injected markup would create (empty: none)."""
    found: list[str] = await page.evaluate(INJECTED)
    return found
