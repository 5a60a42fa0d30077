"""Reading posted forms: size limits, the CSRF check, files, and errors per field.

A form is read (and its CSRF token checked) before the request's database transaction opens:
the dependencies here come first in a route's signature, so a slow client holds no
connection while it sends. Forms that carry files need a session cookie before a byte of the
body is read, and the body is cut off past the limits, whatever Content-Length says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicedesk.accounts.auth import ACCESS_COOKIE, REFRESH_COOKIE
from servicedesk.core.csrf import check_csrf
from servicedesk.core.errors import AppError, BadRequest
from servicedesk.core.filetypes import ALLOWED
from servicedesk.core.runtime import get_runtime
from servicedesk.tickets import attachments
from servicedesk.web.session import LoginRequired

FieldErrors = dict[str, str]
"""Field name → the message shown next to it (`__all__` for the form as a whole)."""

MAX_FILES = 5
"""Files one form may carry."""
TEXT_BUDGET = 512 * 1024
"""Bytes of a form beyond its files: the fields (a description is up to 50,000 characters)."""
FORM_ERROR = "__all__"
M = TypeVar("M", bound=BaseModel)


@dataclass
class PostedForm:
    """A form's fields (every value of a name, as text) and its files."""

    data: FormData
    files: list[attachments.Upload] = field(default_factory=list)
    oversized: list[str] = field(default_factory=list)
    """Names of files that were larger than the limit (their bytes were not kept)."""

    def get(self, name: str, default: str = "") -> str:
        value = self.data.get(name)
        return value if isinstance(value, str) else default

    def getlist(self, name: str) -> list[str]:
        return [v for v in self.data.getlist(name) if isinstance(v, str)]

    def values(self, *names: str) -> dict[str, str]:
        return {name: self.get(name) for name in names}


async def _read(request: Request, *, max_files: int, budget: int, file_limit: int) -> PostedForm:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > budget:
        raise attachments.payload_too_large(file_limit)
    limited = Request(
        request.scope,
        attachments.limited_receive(request.receive, budget=budget, limit=file_limit),
    )
    try:
        form = await limited.form(max_files=max_files, max_fields=400, max_part_size=TEXT_BUDGET)
    except StarletteHTTPException as exc:
        raise BadRequest(
            f"The form could not be read: {exc.detail}", code="malformed_body"
        ) from exc
    try:
        token = form.get("csrf_token")
        check_csrf(request, form_token=token if isinstance(token, str) else None)
        posted = PostedForm(data=form)
        for part in form.getlist("files"):
            if not isinstance(part, UploadFile) or not part.filename:
                continue  # an empty file input sends a nameless, empty part
            data = await part.read(file_limit + 1)
            if len(data) > file_limit:
                posted.oversized.append(part.filename)
                continue
            posted.files.append(attachments.Upload(filename=part.filename, data=data))
    finally:
        await form.close()
    return posted


async def read_public_form(request: Request) -> PostedForm:
    """A small form without files (sign-in, registration), CSRF-checked."""
    return await _read(request, max_files=0, budget=TEXT_BUDGET, file_limit=TEXT_BUDGET)


async def read_user_form(request: Request) -> PostedForm:
    """A signed-in user's form, up to `MAX_FILES` files, CSRF-checked.

    Only a request with a session cookie gets its body read; the session itself is checked
    afterwards by `PageUser`, in the request's transaction.
    """
    if not (request.cookies.get(ACCESS_COOKIE) or request.cookies.get(REFRESH_COOKIE)):
        raise LoginRequired("Sign in to continue.")
    limit = get_runtime(request).settings.max_upload_bytes
    return await _read(
        request, max_files=MAX_FILES, budget=MAX_FILES * limit + TEXT_BUDGET, file_limit=limit
    )


PublicForm = Annotated[PostedForm, Depends(read_public_form)]
UserForm = Annotated[PostedForm, Depends(read_user_form)]


# Errors ------------------------------------------------------------------------------------


def _field_name(loc: list[Any] | tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    if not parts:
        return FORM_ERROR
    if parts[0] == "custom_fields" and len(parts) > 1:
        return "cf." + parts[1]
    return parts[0]


def _message(msg: str) -> str:
    msg = msg.removeprefix("Value error, ")
    if msg == "Field required":
        return "This field is required."
    return msg[:1].upper() + msg[1:] if msg else "Check this field."


def validation_errors(exc: ValidationError, *, rename: dict[str, str] | None = None) -> FieldErrors:
    """Pydantic's errors by field: the first message of each."""
    errors: FieldErrors = {}
    for err in exc.errors():
        name = _field_name(err.get("loc", ()))
        name = (rename or {}).get(name, name)
        errors.setdefault(name, _message(str(err.get("msg", ""))))
    return errors


def app_errors(exc: AppError, *, rename: dict[str, str] | None = None) -> FieldErrors:
    """A service's error by field (`errors[].loc`), else as a message for the whole form."""
    errors: FieldErrors = {}
    for err in exc.errors or []:
        name = _field_name(err.get("loc", ()))
        name = (rename or {}).get(name, name)
        errors.setdefault(name, _message(str(err.get("msg", ""))))
    if not errors or FORM_ERROR in errors:
        errors[FORM_ERROR] = exc.detail
    return errors


def parse(model: type[M], data: dict[str, Any]) -> tuple[M | None, FieldErrors]:
    """The model, or None with the errors by field."""
    try:
        return model.model_validate(data), {}
    except ValidationError as exc:
        return None, validation_errors(exc)


# Uploads shared by the portal and the agent workspace -------------------------------------

ACCEPT = ",".join(ext for kind in ALLOWED for ext in kind.extensions)
ACCEPT_LABEL = "Images, PDF, Word, Excel, PowerPoint or text files"


def upload_rules(request: Request) -> dict[str, Any]:
    limit = get_runtime(request).settings.max_upload_bytes
    return {"accept": ACCEPT, "accept_label": ACCEPT_LABEL, "max_bytes": limit}


async def inspect_files(
    request: Request, form: PostedForm, errors: FieldErrors
) -> list[tuple[attachments.Upload, attachments.Inspected]]:
    """Size and type of each posted file (by content); problems go to `errors["files"]`."""
    limit = get_runtime(request).settings.max_upload_bytes
    problems = [f"{name} is larger than {limit / 1048576:.0f} MB." for name in form.oversized]
    checked = []
    for upload in form.files:
        try:
            checked.append((upload, await attachments.inspect_upload(upload, max_bytes=limit)))
        except AppError as exc:
            problems.append(f"{attachments.sanitize_filename(upload.filename)}: {exc.detail}")
    if problems:
        errors["files"] = " ".join(problems)
    return checked
