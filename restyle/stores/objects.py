"""Object stores through fsspec: a local folder by default, any S3-compatible server at scale.

restyle uses two: the **data** store (``inbox/`` where videos land, ``outbox/`` where
results go; users may reach it) and the **system** store (work areas, logs; users never
reach it through the API). Keys are checked before they touch a path: nothing escapes
the store's root.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlencode

import fsspec
from fsspec.core import url_to_fs

from restyle.errors import BadKey, RestyleError, StoreError  # noqa: F401 - re-exported for callers of this module
from restyle.files import partial_path
from restyle.stores.retry import wait_out

MAX_KEY_LENGTH = 512

# Exceptions that say "the server is not there right now" (builtin, botocore, aiohttp): worth waiting out.
_TRANSIENT = {
    "ConnectionError",
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "TimeoutError",
}


def _transient(exc: BaseException) -> bool:
    return any(cls.__name__ in _TRANSIENT for cls in type(exc).__mro__)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # changes whenever the object's content may have: the idempotency key of a job
    modified: float = 0.0  # seconds since the epoch; 0 when the store does not say


def check_key(key: str) -> str:
    """Return ``key`` if it is a plain relative key; raise BadKey otherwise."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadKey(f"object key must be 1 to {MAX_KEY_LENGTH} characters")
    if "\x00" in key or any(ord(c) < 32 for c in key) or "\\" in key:
        raise BadKey("object key holds control characters or backslashes")
    parts = key.split("/")
    if PurePosixPath(key).is_absolute() or any(part in ("", ".", "..") for part in parts):
        raise BadKey(f"object key {key[:80]!r} is not a plain relative name")
    return key


class ObjectStore:
    """One bucket (or folder) with keys under it. ``url`` is ``/a/folder``, ``file:///a/folder`` or ``s3://bucket/prefix``."""

    def __init__(self, url: str, retry_seconds: float = 60.0, **options: object):
        self.url = url
        self.retry_seconds = retry_seconds  # how long an unreachable server is waited for, with backoff
        try:
            self.fs, root = url_to_fs(url, **options)
        except (ImportError, ValueError) as exc:
            raise StoreError(
                f"cannot use object store {url}: {exc} (for s3:// URLs: pip install 'restyle[s3]')"
            ) from None
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, fsspec.implementations.local.LocalFileSystem)
        if self.is_local:
            self.fs.makedirs(self.root, exist_ok=True)

    def path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def put_file(self, local: Path, key: str) -> ObjectInfo:
        with self._landing(key) as path:
            self._call(self.fs.put_file, str(local), path)
        return self.info(key)

    def put_bytes(self, data: bytes, key: str) -> None:
        with self._landing(key) as path:
            self._call(self.fs.pipe_file, path, data)

    @contextmanager
    def _landing(self, key: str) -> Iterator[str]:
        """Where to write ``key`` so that it appears whole or not at all. S3 puts are atomic; in a folder it is
        a temporary name renamed at the end, so a full disk or a crash never leaves a truncated object."""
        target = self._writable(key)
        if not self.is_local:
            yield target
            return
        partial = str(partial_path(Path(target)))  # its own: two puts of one key at once both land whole
        try:
            yield partial
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise

    def _writable(self, key: str) -> str:
        """The path for ``key``, its folder made first where folders are real (S3 has none)."""
        target = self.path(key)
        if self.is_local:
            self._call(self.fs.makedirs, target.rsplit("/", 1)[0], exist_ok=True)
        return target

    def copy(self, key: str, to: str) -> ObjectInfo:
        """``key``'s bytes under ``to`` too, without their passing through here: a hard link in a folder (the same
        file on disk), a server-side copy on S3."""
        source, target = self.path(key), self._writable(to)
        if self.is_local:
            try:
                os.link(source, target)
            except FileNotFoundError:
                raise StoreError(f"no object {key} in {self.url}") from None
            except OSError:  # a file system without hard links
                self._call(self.fs.copy, source, target)
        else:
            self._call(self.fs.copy, source, target)
        return self.info(to)

    def get_file(self, key: str, local: Path) -> None:
        self._call(self.fs.get_file, self.path(key), str(local))

    def get_bytes(self, key: str) -> bytes:
        return self._call(self.fs.cat_file, self.path(key))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of ``key``: a ranged GET on S3, a seek in a folder."""
        return self._call(self.fs.cat_file, self.path(key), start=start, end=end)

    def exists(self, key: str) -> bool:
        self.fs.invalidate_cache()
        return bool(self._call(self.fs.exists, self.path(key)))

    def is_file(self, key: str) -> bool:
        """Whether ``key`` is an object (not a folder, or a prefix other objects are under)."""
        self.fs.invalidate_cache()
        return bool(self._call(self.fs.isfile, self.path(key)))

    def info(self, key: str) -> ObjectInfo:
        self.fs.invalidate_cache()
        return self._info(self._call(self.fs.info, self.path(key)))

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (a folder-like key ending in /), depth first."""
        base = f"{self.root}/{prefix.strip('/')}"
        self.fs.invalidate_cache()
        try:
            found = self._call(self.fs.find, base, detail=True)
        except StoreError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return []
            raise
        return sorted(
            (self._info(entry) for entry in found.values() if entry.get("type") != "directory"), key=lambda o: o.key
        )

    def walk(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, in key order, as it is listed: a folder at a time, or a page of 1,000
        keys from S3; the listing of 100,000 objects is never held whole. Links and partial writes are left out."""
        base = f"{self.root}/{prefix.strip('/')}".rstrip("/")
        if self.is_local:
            yield from self._walk_folder(base)
            return
        from botocore.session import get_session  # s3fs brings botocore (via aiobotocore)

        bucket, _, key_prefix = base.partition("/")
        client = get_session().create_client(
            "s3", aws_access_key_id=self.fs.key, aws_secret_access_key=self.fs.secret, **self.fs.client_kwargs
        )
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{key_prefix}/".lstrip("/"))
        try:
            for page in pages:
                for entry in page.get("Contents", []):
                    if entry["Key"].endswith("/"):
                        continue  # a folder marker
                    key = f"{bucket}/{entry['Key']}"[len(self.root) + 1 :]
                    modified = entry["LastModified"].timestamp()
                    yield ObjectInfo(key, int(entry["Size"]), str(entry["ETag"]).strip('"'), modified)
        except Exception as exc:  # noqa: BLE001 - botocore's errors, as the store's own
            raise StoreError(f"cannot list {prefix} in {self.url}: {exc}") from None

    def _walk_folder(self, folder: str) -> Iterator[ObjectInfo]:
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StoreError(f"cannot list {folder}: {exc}") from None
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk_folder(entry.path)
            elif entry.is_file(follow_symlinks=False) and not entry.name.endswith(".partial"):
                stat = entry.stat(follow_symlinks=False)
                etag = f"{stat.st_size}-{int(stat.st_mtime * 1e6)}"  # as _info makes a local file's
                yield ObjectInfo(entry.path[len(self.root) + 1 :], stat.st_size, etag, stat.st_mtime)

    def delete(self, key_or_prefix: str, recursive: bool = False) -> None:
        target = f"{self.root}/{key_or_prefix.strip('/')}" if recursive else self.path(key_or_prefix)
        try:
            self._call(self.fs.rm, target, recursive=recursive)
        except StoreError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError):
                raise

    def presign(self, key: str, expires_s: int) -> str | None:
        """A URL that fetches ``key`` without a token until it expires; None for a local folder
        (the API signs those)."""
        if self.is_local:
            return None
        return self._call(self.fs.sign, self.path(key), expiration=expires_s)

    def _info(self, entry: dict) -> ObjectInfo:
        name = entry["name"]
        key = name[len(self.root) + 1 :] if name.startswith(self.root + "/") else name
        etag = entry.get("ETag") or entry.get("etag") or entry.get("VersionId")
        if not etag:  # a local file: its size and modification time stand for its content
            etag = f"{entry.get('size', 0)}-{int(float(entry.get('mtime', 0) or 0) * 1e6)}"
        modified = entry.get("mtime") or entry.get("LastModified") or 0
        modified = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
        return ObjectInfo(key=key, size=int(entry.get("size") or 0), etag=str(etag).strip('"'), modified=modified)

    def _call(self, fn, *args, **kwargs):
        """``fn`` with the store's errors as StoreError, waiting out a server that is briefly away."""
        try:
            return wait_out(
                lambda: fn(*args, **kwargs),
                transient=_transient,
                seconds=self.retry_seconds,
                what=f"object store {self.url}",
            )
        except FileNotFoundError as exc:
            raise StoreError(f"no object {args[0] if args else ''} in {self.url}") from exc
        except Exception as exc:
            if _transient(exc):
                raise StoreError(f"object store {self.url} unreachable for {self.retry_seconds:.0f} s: {exc}") from None
            if isinstance(exc, OSError):
                raise StoreError(f"object store {self.url} failed: {exc}") from None
            raise


def open_store(url: str, settings) -> ObjectStore:
    """A store for ``url`` with the S3 endpoint and credentials from settings when it is s3://."""
    if url.startswith("s3://"):
        options: dict = {"client_kwargs": {}, "config_kwargs": {"signature_version": "s3v4"}}
        if settings.s3_endpoint_url:
            options["client_kwargs"]["endpoint_url"] = settings.s3_endpoint_url
        if settings.s3_region:
            options["client_kwargs"]["region_name"] = settings.s3_region
        if settings.s3_access_key:
            options["key"], options["secret"] = settings.s3_access_key, settings.s3_secret_key
        return ObjectStore(url, retry_seconds=settings.store_retry_seconds, **options)
    return ObjectStore(url, retry_seconds=settings.store_retry_seconds)


def sign_local(secret: str, key: str, expires_at: int) -> str:
    """The signature of a local-store download link (the API's stand-in for S3 presigning)."""
    return hmac.new(secret.encode(), f"{key}\n{expires_at}".encode(), hashlib.sha256).hexdigest()


def local_link(base_url: str, secret: str, key: str, expires_s: int) -> str:
    """A signed link to ``key`` on this service (/files/...): the key is quoted in the path, so a name holding '#',
    '%', '?' or a space makes a link that reaches that object (the signature is over the key itself)."""
    expires_at = int(time.time()) + expires_s
    return f"{base_url}/files/{quote(key, safe='/')}?" + urlencode(
        {"expires": expires_at, "signature": sign_local(secret, key, expires_at)}
    )
