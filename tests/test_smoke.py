from __future__ import annotations

import httpx

from tests.conftest import Session


async def test_healthz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


async def test_me(client: httpx.AsyncClient, admin: Session) -> None:
    r = await client.get("/api/v1/me", headers=admin.headers)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == admin.user.email
