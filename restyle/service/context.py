"""What every part of the service shares: settings, the two object stores, the job store, the tokens."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from restyle.config import Settings
from restyle.errors import RestyleError
from restyle.service import keys
from restyle.service.limits import Quotas, RateLimiter, Usage
from restyle.stores.batches import BatchStore
from restyle.stores.catalogue import CatalogueStore
from restyle.stores.jobs import JobStore
from restyle.stores.objects import ObjectStore, open_store
from restyle.stores.sessions import SessionStore, digest

log = logging.getLogger("restyle")

ROLES = ("admin", "submitter")
# The owner of jobs made from files dropped in the inbox: "@" is in no token's name, so no token owns them.
DROPPED_OWNER = "@inbox"
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# "inbox": the dropped files' owner before it was DROPPED_OWNER (old job stores still hold it); "batches": the
# inbox folder where batches are dropped (a tenant of that name would upload into it).
RESERVED_NAMES = {"inbox", "batches"}


@dataclass(frozen=True)
class Principal:
    """Who a bearer token stands for."""

    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Context:
    """Opened lazily, once per process; the API, trigger and workers each hold one."""

    def __init__(self, settings: Settings):
        self.settings = settings
        private_folder(settings.home)

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(self.settings.database)

    @cached_property
    def catalogue_store(self) -> CatalogueStore:
        """The catalogue's records, on the job store's database (whose tables the job store made)."""
        return CatalogueStore(self.jobs.engine)

    @cached_property
    def batches(self) -> BatchStore:
        """Batches and their items, on the job store's database."""
        return BatchStore(self.jobs.engine)

    @cached_property
    def sessions(self) -> SessionStore:
        """The dashboard's sessions, on the job store's database."""
        return SessionStore(self.jobs.engine)

    @cached_property
    def token_digests(self) -> dict[str, Principal]:
        """SHA-256 of each token -> its principal: what a session's row names."""
        return {digest(token): who for token, who in self.tokens.items()}

    @cached_property
    def data(self) -> ObjectStore:
        return _private(open_store(self.settings.data, self.settings))

    @cached_property
    def system(self) -> ObjectStore:
        return _private(open_store(self.settings.system, self.settings))

    @cached_property
    def tokens(self) -> dict[str, Principal]:
        return load_tokens(self.settings)

    @cached_property
    def submissions(self) -> RateLimiter:
        return RateLimiter(self.settings.submit_rate_per_minute, self.settings.submit_burst)

    @cached_property
    def stores(self) -> RateLimiter:
        """The rate of requests that store bytes without making a job: pictures, datasets, models."""
        return RateLimiter(self.settings.store_rate_per_minute, self.settings.store_burst)

    @cached_property
    def quotas(self) -> Quotas:
        settings = self.settings
        limits = Usage(settings.quota_jobs, settings.quota_bytes, settings.quota_pictures)
        return Quotas(limits, self.usage, settings.quota_bytes_seconds)

    def usage(self, owner: str, with_bytes: bool) -> Usage:
        """What ``owner`` holds, as its quotas count it; its stored bytes (by listing its folders) if asked, else -1."""
        stored = -1
        if with_bytes:
            spaces = ((self.data, keys.inbox_of(owner)), (self.data, keys.dataset(owner, "")))
            spaces += ((self.system, keys.pictures_of(owner)),)
            stored = sum(found.size for store, prefix in spaces for found in store.list(prefix))
        return Usage(self.jobs.active(owner), stored, self.catalogue_store.picture_count(owner))

    @cached_property
    def link_secret(self) -> str:
        """Signs local download/upload links; kept in home so links survive a restart."""
        return _secret_file(self.settings.home / "link.secret")


def load_tokens(settings: Settings) -> dict[str, Principal]:
    """secret -> Principal, from RESTYLE_TOKENS, or the admin token kept in home (made on first use)."""
    found: dict[str, Principal] = {}
    for entry in filter(None, (e.strip() for e in settings.tokens.split(","))):
        try:
            name, role, secret = entry.split(":", 2)
        except ValueError:
            raise RestyleError(f"RESTYLE_TOKENS entries are NAME:ROLE:SECRET, got {entry.split(':')[0]}:...") from None
        if not TOKEN_NAME.fullmatch(name) or name.lower() in RESERVED_NAMES:
            raise RestyleError(
                f"token name {name[:40]!r} is not allowed: use letters, digits, '.', '_' or '-' "
                f"(at most 64), and not {', '.join(sorted(RESERVED_NAMES))}"
            )
        if role not in ROLES:
            raise RestyleError(f"token role must be one of {', '.join(ROLES)}, got {role!r} for {name}")
        if len(secret) < 16:
            raise RestyleError(f"the token for {name} is too short; use at least 16 characters")
        found[secret] = Principal(name, role)
    if not found:
        found[admin_token(settings)] = Principal("admin", "admin")
    return found


def admin_token(settings: Settings) -> str:
    """The embedded admin token (home/admin.token), for a service started with no tokens configured."""
    return _secret_file(settings.home / "admin.token")


def _secret_file(path: Path) -> str:
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    while secret.startswith("-"):  # a token read as an option: `restyle submit --token -x...` would refuse it
        secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of the service made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


def private_folder(path: Path) -> Path:
    """Make ``path`` (and its parents) and keep it to this user: 0700. Tenants' videos and the job store live here."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(path, 0o700)
    except PermissionError:  # a folder someone else owns: the service still runs, and says so
        log.warning("cannot make %s private (0700): it belongs to another user", path)
    return path


def _private(store: ObjectStore) -> ObjectStore:
    if store.is_local:
        private_folder(Path(store.root))
    return store


# -- scratch: a process's temporary files, under the service's own folder -----------------------


def scratch_dir(settings: Settings) -> Path:
    """This process's scratch folder, home/tmp/<host>.<pid>: a killed process's leftovers are found by name."""
    return private_folder(private_folder(settings.home / "tmp") / f"{socket.gethostname()}.{os.getpid()}")


def clean_scratch(settings: Settings) -> list[Path]:
    """Remove the scratch folders of processes of this host that are gone (killed, say); return them."""
    root, host, removed = settings.home / "tmp", socket.gethostname(), []
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        name, _, pid = folder.name.rpartition(".")
        if name != host or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def public_reason(reason: str, settings: Settings) -> str:
    """A failure reason fit for a tenant: no worker's temporary paths, no service folders."""
    reason = re.sub(r"\S*?restyle-job-[^/\s]*/", "", reason)  # a job's scratch copy: only its file name is kept
    return reason.replace(str(settings.home), "<home>")
