from __future__ import annotations

import httpx

from servicedesk.models import Role
from tests.conftest import Session


async def test_ticket_lifecycle(
    client: httpx.AsyncClient, admin: Session, org, make_user, login
) -> None:
    r = await client.post(
        "/api/v1/categories",
        json={
            "name": "IT Support",
            "default_priority": "high",
            "fields": [
                {"key": "asset_name", "label": "Asset name", "type": "text", "required": True},
                {"key": "cost", "label": "Cost", "type": "cost_items"},
            ],
        },
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    cat = r.json()
    req = await login(await make_user(org, Role.REQUESTER), org)
    body = {
        "subject": "Laptop broken",
        "description": "My laptop does not boot <script>alert(1)</script> [x](javascript:alert(1))",
        "category_id": cat["id"],
        "custom_fields": {
            "asset_name": "MBP-1",
            "cost": [{"description": "Part", "quantity": 2, "unit_cost": "10.50"}],
        },
    }
    r = await client.post(
        "/api/v1/tickets", json=body, headers={**req.headers, "Idempotency-Key": "k1"}
    )
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["number"].startswith("TKT") and t["priority"] == "high"
    assert (
        "<script>" not in t["description_html"] and 'href="javascript' not in t["description_html"]
    )
    r2 = await client.post(
        "/api/v1/tickets", json=body, headers={**req.headers, "Idempotency-Key": "k1"}
    )
    assert r2.status_code == 201 and r2.json()["id"] == t["id"]
    r = await client.get("/api/v1/tickets", headers=admin.headers, params={"q": "laptop"})
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["id"] == t["id"], r.text
    print(r.json()["items"][0]["headline"])
    r = await client.get("/api/v1/tickets", headers=admin.headers, params={"sort": "priority"})
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/api/v1/tickets/{t['id']}",
        json={"assignee_id": str(admin.user.id)},
        headers={**admin.headers, "If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/api/v1/tickets/{t['id']}",
        json={"priority": "low"},
        headers={**admin.headers, "If-Match": '"1"'},
    )
    assert r.status_code == 409, r.text
    r = await client.post(
        f"/api/v1/tickets/{t['id']}/comments",
        json={"body": "internal note", "is_internal": True},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/tickets/{t['id']}/comments", json={"body": "public reply"}, headers=admin.headers
    )
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/tickets/{t['id']}/comments", headers=req.headers)
    assert [c["body"] for c in r.json()] == ["public reply"]
    r = await client.post(
        f"/api/v1/tickets/{t['id']}/status",
        json={"status": "resolved", "version": 2},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/api/v1/tickets/{t['id']}/status",
        json={"status": "open", "version": 3},
        headers=req.headers,
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"/api/v1/tickets/{t['id']}/history", headers=admin.headers)
    assert r.status_code == 200, r.text
    print([e["action"] for e in r.json()])
    r = await client.get(f"/api/v1/tickets/by-number/{t['number']}", headers=req.headers)
    assert r.status_code == 200, r.text
