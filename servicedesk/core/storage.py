"""Blob storage for uploaded files: a local directory by default, an S3-compatible bucket when set.

Keys are random (`new_key()`), never derived from a file name, and checked against one pattern
before any use, so a key can never name a path outside the storage root. Every blocking call
(file system, boto3) runs in a worker thread.
"""

from __future__ import annotations

import abc
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from anyio import to_thread

if TYPE_CHECKING:
    from servicedesk.config import Settings

CHUNK_SIZE = 64 * 1024
_SEGMENT = r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
_KEY = re.compile(rf"^{_SEGMENT}(?:/{_SEGMENT}){{0,7}}$")
KEY_MAX = 255


class StorageError(Exception):
    """The storage backend failed or was given an invalid key."""


class StorageKeyNotFound(StorageError):
    """No object is stored under the key."""


def new_key(prefix: str) -> str:
    """A fresh random key under `prefix` (e.g. an organization id): 128 random bits, sharded."""
    token = secrets.token_hex(16)
    return check_key(f"{prefix}/{token[:2]}/{token}")


def check_key(key: str) -> str:
    """Refuse anything but lower-case `segment/segment/...` keys (no dots, no leading slash)."""
    if len(key) > KEY_MAX or not _KEY.fullmatch(key):
        raise StorageError(f"invalid storage key {key!r}")
    return key


class StoredFile(abc.ABC):
    """An object opened for reading: its size, its bytes in chunks, and a close."""

    size: int

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...


class Storage(abc.ABC):
    """Where file bodies live. Implementations are safe to share across requests."""

    name: str

    @abc.abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` (replacing nothing: keys are random and new)."""

    @abc.abstractmethod
    async def open(self, key: str) -> StoredFile:
        """Open `key` for streaming; raises `StorageKeyNotFound` before any byte is read."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""

    async def get(self, key: str) -> bytes:
        """The whole object (for small files and tests)."""
        stored = await self.open(key)
        try:
            return b"".join([chunk async for chunk in stored])
        finally:
            await stored.aclose()


# Local directory ---------------------------------------------------------------------------


class _LocalFile(StoredFile):
    def __init__(self, handle: BinaryIO, size: int) -> None:
        self._handle = handle
        self.size = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await to_thread.run_sync(self._handle.read, CHUNK_SIZE):
                yield chunk
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._handle.closed:
            await to_thread.run_sync(self._handle.close)


class LocalStorage(Storage):
    """Files under one directory, one file per key; written atomically (temp file + rename)."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def path_of(self, key: str) -> Path:
        """The file of `key`, guaranteed to lie inside the root (symlinks resolved too)."""
        check_key(key)
        root = self.root.resolve()
        path = (root / key).resolve()
        if not path.is_relative_to(root) or path == root:
            raise StorageError(f"storage key {key!r} escapes the storage directory")
        return path

    def _put(self, key: str, data: bytes) -> None:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes) -> None:
        await to_thread.run_sync(self._put, key, data)

    def _open(self, key: str) -> _LocalFile:
        path = self.path_of(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise StorageKeyNotFound(key) from exc
        return _LocalFile(handle, os.fstat(handle.fileno()).st_size)

    async def open(self, key: str) -> StoredFile:
        return await to_thread.run_sync(self._open, key)

    def _delete(self, key: str) -> None:
        self.path_of(key).unlink(missing_ok=True)

    async def delete(self, key: str) -> None:
        await to_thread.run_sync(self._delete, key)


# S3-compatible bucket ----------------------------------------------------------------------


class _S3File(StoredFile):
    def __init__(self, body: Any, size: int) -> None:
        self._body = body
        self.size = size
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while chunk := await to_thread.run_sync(self._body.read, CHUNK_SIZE):
                yield bytes(chunk)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await to_thread.run_sync(self._body.close)


class S3Storage(Storage):
    """Objects in one bucket (AWS S3, MinIO, Ceph, R2 …) through boto3, under an optional prefix.

    Credentials: the explicit keys when given, else boto3's usual chain (environment, profile,
    instance role). A custom endpoint gets path-style addressing, which every S3-compatible
    server understands without wildcard DNS.
    """

    name = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = client or self._make_client(
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )

    @staticmethod
    def _make_client(
        *,
        endpoint_url: str | None,
        region: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
    ) -> Any:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        config = Config(
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Send checksums only where S3 requires them: several S3-compatible servers reject
            # the CRC trailers that recent boto3 versions add by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=5,
            read_timeout=30,
        )
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    def _object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )

        try:
            return await to_thread.run_sync(lambda: method(Bucket=self.bucket, **kwargs))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise StorageKeyNotFound(kwargs.get("Key", "")) from exc
            raise StorageError(f"S3 {code or 'error'}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 unreachable: {exc}") from exc

    async def put(self, key: str, data: bytes) -> None:
        await self._call(
            self._client.put_object,
            Key=self._object_key(key),
            Body=data,
            ContentType="application/octet-stream",
        )

    async def open(self, key: str) -> StoredFile:
        response = await self._call(self._client.get_object, Key=self._object_key(key))
        return _S3File(response["Body"], int(response["ContentLength"]))

    async def delete(self, key: str) -> None:
        await self._call(self._client.delete_object, Key=self._object_key(key))


def build_storage(settings: Settings) -> Storage:
    """The backend the settings select (`SERVICEDESK_STORAGE_BACKEND`)."""
    if settings.storage_backend == "s3":
        if not settings.s3_bucket:
            raise ValueError("SERVICEDESK_STORAGE_BACKEND=s3 needs SERVICEDESK_S3_BUCKET")
        return S3Storage(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    return LocalStorage(settings.files_dir or settings.data_dir / "files")
