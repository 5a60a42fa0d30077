"""Web UI server time on a seeded data dir: the agent queue page and a ticket page with 50
comments, plus the JavaScript and CSS bytes each page ships.

    .venv/bin/python benchmarks/seed_tickets.py --data-dir /tmp/sd-1m          # once
    .venv/bin/python benchmarks/bench_ui.py --data-dir /tmp/sd-1m [--requests 200]

It starts `servicedesk serve` on the data dir (the same way as bench_tickets.py: embedded
PostgreSQL 18, one uvicorn process, log level WARNING), signs in an agent of the first seeded
organization through the API and sends its access token as the browser's `sd_access` cookie.
Then, with one client (the server time of a page, without queueing), it fetches each page
`--requests` times after `--warmup` untimed requests and prints p50/p99 of the server's own
`X-Response-Time` header (route, database and template rendering, not the network) and of
the client's round trip.

Pages:
  queue_mine        GET /agent                     (My open: open + in progress, assignee me)
  queue_unassigned  GET /agent?tab=unassigned      (active, nobody assigned)
  queue_all_open    GET /agent?tab=open            (every active ticket of the organization)
  queue_search      GET /agent?tab=open&q=…        (full-text search in the queue)
  ticket_50         GET /agent/tickets/{number}    (a ticket with 50 comments, 10 of them notes)
  portal_ticket_50  GET /tickets/{number}          (the same ticket as its requester sees it)

The ticket with 50 comments is made on the first run through the API (a new ticket, 40 public
replies and 10 internal notes) and found again by its subject on later runs. Bytes per page:
every `<script src>` and stylesheet `<link>` of the page, fetched once, raw and gzip-compressed
(what a browser receives from a compressing proxy; the app itself does not compress).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tickets import BENCH_ENV, DROP_ENV, Server, login, percentile, say

SUBJECT = "Benchmark ticket with fifty comments"
ASSET = re.compile(r"""<(?:script[^>]+src|link[^>]+rel="stylesheet"[^>]+href)="([^"]+)\"""")


def find_or_make_ticket(
    client: httpx.Client, agent: dict[str, str], req: dict[str, str], category_id: str
) -> str:
    found = client.get("/api/v1/tickets", params={"q": SUBJECT, "limit": 5}, headers=agent)
    found.raise_for_status()
    for item in found.json()["items"]:
        if item["subject"] == SUBJECT:
            return str(item["number"])
    body = {
        "subject": SUBJECT,
        "description": "A long conversation, for the page-time benchmark of the web UI.",
        "category_id": category_id,
    }
    created = client.post("/api/v1/tickets", json=body, headers=req)
    created.raise_for_status()
    ticket = created.json()
    for i in range(50):
        internal = i % 5 == 4
        text = (
            f"Internal note {i}: checked the **logs** on host-{i:03d}, nothing conclusive yet."
            if internal
            else f"Reply {i}: could you try restarting the VPN client and tell us what it says? "
            "Steps: 1. quit the client 2. start it again 3. copy the error text here."
        )
        r = client.post(
            f"/api/v1/tickets/{ticket['id']}/comments",
            json={"body": text, "is_internal": internal},
            headers=agent,
        )
        r.raise_for_status()
    return str(ticket["number"])


def wait_jobs_idle(pg_dir: Path, timeout: float = 300.0) -> float:
    """Wait until the jobs caused by earlier requests (the 50 comments' notifications) are
    done, so they do not compete with the timed pages; returns the seconds waited."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(
        host=str(pg_dir), user="postgres", dbname="servicedesk", autocommit=True
    ) as conn:
        while time.perf_counter() - started < timeout:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL)"
                " + (SELECT count(*) FROM procrastinate.procrastinate_jobs"
                "    WHERE status IN ('todo', 'doing'))"
            ).fetchone()
            if not row or row[0] == 0:
                break
            time.sleep(0.2)
    return time.perf_counter() - started


def time_page(
    client: httpx.Client, path: str, cookies: dict[str, str], warmup: int, count: int
) -> tuple[list[float], list[float], str]:
    server_ms: list[float] = []
    client_ms: list[float] = []
    html = ""
    for i in range(warmup + count):
        started = time.perf_counter()
        r = client.get(path, cookies=cookies)
        elapsed = (time.perf_counter() - started) * 1000
        if r.status_code != 200:
            raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
        if i >= warmup:
            server_ms.append(float(r.headers["x-response-time"].removesuffix("ms")))
            client_ms.append(elapsed)
        html = r.text
    return server_ms, client_ms, html


def asset_bytes(
    client: httpx.Client, html: str, cache: dict[str, tuple[int, int]]
) -> dict[str, int]:
    totals = {"js": 0, "js_gz": 0, "css": 0, "css_gz": 0}
    for url in ASSET.findall(html):
        if url not in cache:
            body = client.get(url).content
            cache[url] = (len(body), len(gzip.compress(body, 6)))
        raw, packed = cache[url]
        kind = "css" if url.split("?")[0].endswith(".css") else "js"
        totals[kind] += raw
        totals[f"{kind}_gz"] += packed
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if not 1 <= args.requests <= 5000 or not 0 <= args.warmup <= 1000:
        parser.error("--requests must be 1..5000 and --warmup 0..1000")
    data_dir = Path(args.data_dir).resolve()
    manifest = json.loads((data_dir / "bench_seed.json").read_text())
    org = manifest["organizations"][0]
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    env.update(BENCH_ENV)
    env["SERVICEDESK_DATA_DIR"] = str(data_dir)
    server = Server(data_dir, env, workers=args.workers)
    say(f"servicedesk UI benchmark: data dir {data_dir}, {os.cpu_count()} CPUs")
    ready = server.start()
    say(f"server ready in {ready:.1f} s on {server.base_url} ({args.workers} process(es))")
    summary: dict[str, str] = {}
    try:
        with httpx.Client(base_url=server.base_url, timeout=60.0) as client:
            slug = org["slug"]
            agent_email = org["agents"][0][0]
            token = login(client, server.base_url, slug, agent_email, manifest["password"])
            # The seed names requesters user0001@… (benchmarks/seed_tickets.py).
            requester_email = f"user0001@{slug}.example.com"
            agent = {"Authorization": f"Bearer {token}", "X-Tenant-ID": slug}
            req_token = login(client, server.base_url, slug, requester_email, manifest["password"])
            req = {"Authorization": f"Bearer {req_token}", "X-Tenant-ID": slug}
            number = find_or_make_ticket(client, agent, req, org["categories"][0]["id"])
            say(f"organization {slug}, agent {agent_email}, ticket {number} (50 comments)")
            waited = wait_jobs_idle(data_dir / "pg")
            if waited > 0.5:
                say(f"(background jobs of the setup drained in {waited:.1f} s)")
            pages = {
                "queue_mine": "/agent",
                "queue_unassigned": "/agent?tab=unassigned",
                "queue_all_open": "/agent?tab=open",
                "queue_search": "/agent?tab=open&q=printer",
                "ticket_50": f"/agent/tickets/{number}",
                "portal_ticket_50": f"/tickets/{number}",
            }
            cache: dict[str, tuple[int, int]] = {}
            prefix = f"/t/{slug}"
            for name, page in pages.items():
                cookie_token = req_token if name.startswith("portal") else token
                cookies = {"sd_access": cookie_token}
                server_ms, client_ms, html = time_page(
                    client, prefix + page, cookies, args.warmup, args.requests
                )
                sizes = asset_bytes(client, html, cache)
                p50, p99 = percentile(server_ms, 50), percentile(server_ms, 99)
                say(
                    f"  {name:17s} server p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  | client p50 "
                    f"{percentile(client_ms, 50):6.1f} ms  p99 {percentile(client_ms, 99):6.1f} ms"
                    f"  | html {len(html.encode()) / 1024:5.1f} KiB, js {sizes['js'] / 1024:5.1f}"
                    f" KiB ({sizes['js_gz'] / 1024:4.1f} gz), css {sizes['css'] / 1024:5.1f} KiB"
                    f" ({sizes['css_gz'] / 1024:4.1f} gz)"
                )
                summary[f"{name}_server_p50_ms"] = f"{p50:.1f}"
                summary[f"{name}_server_p99_ms"] = f"{p99:.1f}"
                summary[f"{name}_js_bytes"] = str(sizes["js"])
                summary[f"{name}_css_bytes"] = str(sizes["css"])
    finally:
        server.stop()
    say("\nsummary")
    for key, value in summary.items():
        say(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
