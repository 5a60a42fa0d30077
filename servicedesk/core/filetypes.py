"""What a file is, decided from its bytes: never from its name or the client's Content-Type.

`sniff()` accepts an allow-list and refuses everything else:

- images: PNG, JPEG, GIF, WebP; PDF;
- OOXML documents (docx, xlsx, pptx), verified by opening the zip and finding
  `[Content_Types].xml` and the document's own folder; macro-enabled ones are refused;
- plain text (CSV, logs …): valid UTF-8 without NUL or other binary control characters, and
  without markup a browser would run (HTML, SVG, script, event handlers).

Executables (PE `MZ`, ELF, Mach-O, `#!` scripts) are refused by name in the error, SVG and HTML
likewise; anything unknown is refused as unknown. `puremagic` gives the first opinion (its
signature database, pure Python); an explicit check of each allowed format must confirm it.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import puremagic

from servicedesk.core.errors import Unprocessable


class UnsupportedFileType(Unprocessable):
    code = "unsupported_file_type"


@dataclass(frozen=True)
class FileType:
    """An accepted format: the type the file is served with and the extensions that fit it."""

    label: str
    mime: str
    extensions: tuple[str, ...]
    """Lower-case, with the dot; the first one is appended to names that lack a fitting one."""


PNG = FileType("png", "image/png", (".png",))
JPEG = FileType("jpeg", "image/jpeg", (".jpg", ".jpeg", ".jpe", ".jfif"))
GIF = FileType("gif", "image/gif", (".gif",))
WEBP = FileType("webp", "image/webp", (".webp",))
PDF = FileType("pdf", "application/pdf", (".pdf",))
DOCX = FileType(
    "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", (".docx",)
)
XLSX = FileType(
    "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (".xlsx",)
)
PPTX = FileType(
    "pptx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    (".pptx",),
)
TEXT = FileType(
    "text",
    "text/plain; charset=utf-8",
    # Text kinds whose usual programs only display them. Any other name (.html, .js, .bat,
    # .sh …) gets `.txt` appended, so a download never opens in a program that runs it.
    (
        ".txt",
        ".csv",
        ".tsv",
        ".log",
        ".md",
        ".json",
        ".yaml",
        ".yml",
        ".ini",
        ".cfg",
        ".conf",
        ".diff",
        ".patch",
    ),
)

ALLOWED = (PNG, JPEG, GIF, WEBP, PDF, DOCX, XLSX, PPTX, TEXT)

_PUREMAGIC_WINDOW = 64 * 1024

# Executable formats, by their leading bytes.
_EXECUTABLES: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "an ELF executable"),
    (b"\xfe\xed\xfa\xce", "a Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "a Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O universal binary or Java class"),
    (b"#!", "a script"),
    (b"\x00asm", "a WebAssembly module"),
)

# Kinds puremagic may name that are refused outright (with a precise message).
_DANGEROUS_MIME = re.compile(
    r"html|svg|javascript|ecmascript|x-sh|x-shellscript|x-msdownload|executable|"
    r"x-mach|x-elf|x-dosexec|java-archive|x-ms-shortcut|hta",
    re.IGNORECASE,
)

# Markup a browser would treat as a document, or that carries script.
_MARKUP_START = re.compile(
    rb"^\s*<(?:!doctype\s+html|html|head|body|svg|script|iframe|\?xml-stylesheet)\b", re.IGNORECASE
)
_ACTIVE_CONTENT = re.compile(
    rb"<\s*(?:script|svg|html|iframe|frame|object|embed|applet|meta|base|form)\b"
    rb"|<[a-z][^<>]*\son[a-z]+\s*="  # an event handler attribute (onerror=, onload= …)
    rb"|<\?xml-stylesheet",
    re.IGNORECASE,
)
# C0 controls that do not occur in text (tab, LF, VT, FF, CR and ESC for coloured logs do).
_BINARY_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def _refuse(detail: str) -> UnsupportedFileType:
    return UnsupportedFileType(
        detail + " Allowed: PNG, JPEG, GIF, WebP, PDF, Word/Excel/PowerPoint (docx, xlsx, "
        "pptx) and plain UTF-8 text such as CSV or logs.",
        errors=[{"loc": ["body", "file"], "msg": "unsupported file type", "type": "file_type"}],
    )


def _puremagic_mimes(data: bytes) -> list[str]:
    """puremagic's guesses, best first (no guess is an empty list)."""
    try:
        # Header signatures sit near the start; footers are at the end of the whole file.
        head = data if len(data) <= 2 * _PUREMAGIC_WINDOW else data[:_PUREMAGIC_WINDOW]
        matches = puremagic.magic_string(head)
    except (puremagic.PureError, ValueError):
        return []
    return [m.mime_type.lower() for m in matches if m.mime_type]


def _is_webp(data: bytes) -> bool:
    return len(data) >= 16 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _ooxml(data: bytes) -> FileType:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _refuse("The file is a damaged or unsupported ZIP archive.") from exc
    if "[Content_Types].xml" not in names:
        raise _refuse("ZIP archives are accepted only as Word, Excel or PowerPoint documents.")
    if any(n.lower().endswith(("vbaproject.bin", ".exe", ".dll", ".bat", ".js")) for n in names):
        raise _refuse("Documents with macros or embedded programs are not accepted.")
    present = [
        (kind, main)
        for kind, folder, main in (
            (DOCX, "word/", "word/document.xml"),
            (XLSX, "xl/", "xl/workbook.xml"),
            (PPTX, "ppt/", "ppt/presentation.xml"),
        )
        if any(n.startswith(folder) for n in names)
    ]
    # A document has one main folder; if several appear, the one with its main part decides.
    kinds = [kind for kind, main in present if main in names or len(present) == 1]
    if len(kinds) != 1:
        raise _refuse("ZIP archives are accepted only as Word, Excel or PowerPoint documents.")
    return kinds[0]


def _text(data: bytes) -> FileType:
    body = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    if _BINARY_CONTROL.search(body):
        raise _refuse("The file is binary data of an unknown type.")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse("The file is neither a known format nor UTF-8 text.") from exc
    if _MARKUP_START.search(body) or _ACTIVE_CONTENT.search(body):
        raise _refuse("HTML, SVG and text with scripts or active markup are not accepted.")
    return TEXT


_BINARY_CHECKS: tuple[tuple[Callable[[bytes], bool], FileType | None], ...] = (
    (lambda d: d.startswith(b"\x89PNG\r\n\x1a\n"), PNG),
    (lambda d: d.startswith(b"\xff\xd8\xff"), JPEG),
    (lambda d: d[:6] in (b"GIF87a", b"GIF89a"), GIF),
    (_is_webp, WEBP),
    (lambda d: d.startswith(b"%PDF-"), PDF),
    (lambda d: d.startswith(b"PK\x03\x04"), None),  # OOXML, checked by opening the archive
)


def sniff(data: bytes) -> FileType:
    """The allowed type of `data`, or `UnsupportedFileType` (422 `unsupported_file_type`)."""
    if not data:
        raise _refuse("The file is empty.")
    for magic, what in _EXECUTABLES:
        if data.startswith(magic):
            raise _refuse(f"The file is {what}; programs and scripts are not accepted.")
    guesses = _puremagic_mimes(data)
    for check, kind in _BINARY_CHECKS:
        if not check(data):
            continue
        if kind is None:
            return _ooxml(data)
        # Both opinions must agree: the explicit signature and puremagic's database.
        if kind.mime not in guesses:
            raise _refuse(f"The file starts like {kind.label.upper()} but is not a valid one.")
        return kind
    dangerous = next((g for g in guesses if _DANGEROUS_MIME.search(g)), None)
    if dangerous is not None:
        raise _refuse(f"Files of type {dangerous} are not accepted.")
    return _text(data)


def fits(filename: str, kind: FileType) -> bool:
    """Whether the name already ends in an extension of `kind`."""
    return filename.lower().endswith(kind.extensions)
