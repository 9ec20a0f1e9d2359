"""The trigger: every new object in the inbox becomes exactly one job.

Three ways in, one rule: listing the inbox (always, as the fallback), SeaweedFS filer
webhooks, and standard S3 event notifications (``Records``). Whatever the path, the
job store's unique (key, etag) constraint makes a second job for the same object
version impossible. An object an API upload is waiting for completes that job instead.

What a dropped video's job does comes from its **sidecar**: a JSON JobSpec beside it,
named after the video with ``.json`` added (``clip.mp4.json``) or in its place
(``clip.json``), e.g. ``{"model": "moderation"}`` or ``{"style_image": "painting.jpg",
"strength": 0.8}`` (a picture named in a sidecar is a file in the same inbox folder; a ``"webhook"`` URL
beside the fields is told when the job ends, as at every door). A
video younger than ``sidecar_wait_seconds`` without one is looked at again later, so the
sidecar may land just after the video; after that the video gets the settings' default
(``inbox_spec``). A bad sidecar (not JSON, an unknown model or field, an unreadable
picture) makes a job that fails with the reason.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from enum import Enum
from typing import Any, Literal
from urllib.parse import unquote_plus

from sqlalchemy.exc import DBAPIError

from restyle.errors import Invalid, JobStoreError, Refusal, TooLarge
from restyle.service import keys
from restyle.service.catalogue import Catalogue
from restyle.service.context import DROPPED_OWNER, Context
from restyle.service.inbox_batches import take_request
from restyle.service.specs import MAX_SIDECAR_BYTES, door_params, refused_params, sidecar_params
from restyle.stores.changes import Changes
from restyle.stores.jobs import Job, JobParams
from restyle.stores.objects import BadKey, StoreError, check_key

log = logging.getLogger("restyle.trigger")

SETTLE_SECONDS = 1.0  # a file copied into a local inbox may still be growing; S3 objects appear whole
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mts", ".ts")


class Wait(Enum):
    LATER = "later"  # a video whose sidecar may still be on its way: looked at again


LATER: Literal[Wait.LATER] = Wait.LATER


class Trigger:
    def __init__(self, context: Context):
        self.context = context
        self._seen: set[tuple[str, str]] = set()  # the cursor: versions already turned into jobs
        self._pending: set[str] = (
            set()
        )  # keys an event named while their sidecar could still come: looked at again soon
        self._changes: Changes | None = None  # the inbox's folders as last seen (made when first scanned)
        self._rescan_at = 0.0  # when the whole inbox is listed next
        self._event_at = float("-inf")  # when the store last named an inbox object in an event (monotonic)
        self._troubled: set[tuple[str, str]] = set()  # versions the store failed on, warned about once
        self._lock = threading.Lock()

    def params_for(self, video_key: str, modified: float) -> JobParams | Literal[Wait.LATER]:
        """The job params for a dropped video: from its sidecar, or the default; LATER while one may still come."""
        context, catalogue = self.context, Catalogue(self.context)
        sidecar = self._sidecar(video_key)
        if sidecar is None:
            if time.time() - modified < context.settings.sidecar_wait_seconds:
                return LATER
            try:
                return door_params(context, catalogue, DROPPED_OWNER, _explicit(context.settings.inbox_spec))
            except Refusal as exc:
                return refused_params(f"the default job for inbox files (RESTYLE_INBOX_SPEC) is refused: {exc}")
        name = sidecar.rsplit("/", 1)[-1]
        folder = video_key.rsplit("/", 1)[0]

        def picture_beside(picture: str) -> io.BytesIO:
            if "/" in picture or picture in ("", ".", ".."):
                raise Invalid(f"style_image {picture[:80]!r} must name a picture in the same inbox folder")
            try:
                if context.data.info(f"{folder}/{picture}").size > context.settings.max_picture_bytes:
                    raise TooLarge(f"style picture {picture} is over {context.settings.max_picture_bytes} bytes")
                return io.BytesIO(context.data.get_bytes(f"{folder}/{picture}"))
            except StoreError:
                raise Invalid(f"style picture {picture[:80]!r} is not in the inbox folder beside the video") from None

        try:
            if not context.data.is_file(sidecar):
                raise Invalid(f"sidecar {name} is a folder, not a file: put the JobSpec in a file of that name")
            info = context.data.info(sidecar)
            if context.data.is_local and info.modified > time.time() - SETTLE_SECONDS:
                return LATER  # still being written, perhaps: read it whole on the next scan
            if info.size > MAX_SIDECAR_BYTES:
                raise Invalid(f"sidecar {name} is over {MAX_SIDECAR_BYTES} bytes")
            return sidecar_params(
                context, catalogue, DROPPED_OWNER, name, context.data.get_bytes(sidecar), picture_beside
            )
        except Refusal as exc:
            log.warning("%s: %s", video_key, exc)
            return refused_params(str(exc))

    def _sidecar(self, video_key: str) -> str | None:
        """``clip.mp4.json`` or ``clip.json`` beside the video, if either is there."""
        stem = video_key.rsplit(".", 1)[0]
        for key in (f"{video_key}.json", f"{stem}.json"):
            try:
                if self.context.data.exists(key):
                    return key
            except (BadKey, StoreError):
                continue
        return None

    def scan(self) -> list[Job]:
        """Look at the inbox; make a job for every object version not seen before.

        A local inbox's folders that did not change since the last scan are not listed again (see
        :mod:`restyle.stores.changes`); every ``inbox_rescan_seconds`` the whole inbox is. An S3 inbox
        has no folder times: it is listed whole at each scan until its store sends events, then only
        every ``inbox_rescan_seconds`` (the events name each new object; the listing catches one lost)."""
        made: list[Job] = []
        settings = self.context.settings
        self.context.jobs.expire_uploads(time.time() - settings.link_seconds - settings.upload_expiry_seconds)
        changes = self._inbox_changes()
        whole = time.monotonic() >= self._rescan_at
        if not whole and self.events_flow():
            return made
        if whole:
            self._rescan_at = time.monotonic() + settings.inbox_rescan_seconds
            changes.everything()
        listed: set[tuple[str, str]] = set()
        settled = time.time() - SETTLE_SECONDS
        for info in changes.look():
            listed.add((info.key, info.etag))
            if self.context.data.is_local and info.modified > settled:
                changes.again(info.key)  # looked at again on the next scan, when the copy is done
                continue
            if (info.key, info.etag) not in self._seen:
                job = self._consider_alone(info.key, info.etag, info.modified)
                if job is LATER:
                    changes.again(info.key)
                    continue
                self._seen.add((info.key, info.etag))
                if job:
                    made.append(job)
        if whole:
            self._seen &= listed  # versions gone from the inbox are forgotten (the job store still knows them)
        return made

    def _inbox_changes(self) -> Changes:
        if self._changes is None:
            self._changes = Changes(self.context.data, keys.INBOX, recent_s=SETTLE_SECONDS + 1.0)
        return self._changes

    def events_flow(self) -> bool:
        """Whether an S3 inbox's store named an inbox object in an event within ``inbox_rescan_seconds``."""
        recent = time.monotonic() - self._event_at < self.context.settings.inbox_rescan_seconds
        return recent and not self.context.data.is_local

    def on_event(self, payload: dict[str, Any]) -> list[Job]:
        """A SeaweedFS filer webhook or an S3 ``Records`` event: consider each object it names."""
        named = _keys_in(payload, self.context.data.root)
        if any(keys.is_inbox(key) for key in named):
            self._event_at = time.monotonic()
        return self._consider_keys(named)

    def _consider_keys(self, named: list[str]) -> list[Job]:
        made = []
        for key in named:
            if not keys.is_inbox(key):
                continue
            try:
                info = self.context.data.info(check_key(key))
            except (BadKey, StoreError) as exc:
                log.warning("event for %r ignored: %s", key[:120], exc)
                continue
            job = self._consider_alone(info.key, info.etag, info.modified)
            if job is LATER:  # looked at again within a second or so, without waiting for the next listing
                with self._lock:
                    self._pending.add(info.key)
                continue
            self._seen.add((info.key, info.etag))
            if job:
                made.append(job)
        return made

    def _consider_alone(self, key: str, etag: str, modified: float) -> Job | None | Literal[Wait.LATER]:
        """:meth:`_consider`, with whatever one object does kept to that object: no object stops the others.

        The object store failing on it: it is looked at again on the next scan (warned once). Anything
        else it causes: it is refused alone, once; a video's job fails with the reason, as for a bad
        sidecar. A job store that is down still stops the scan (every object would meet it)."""
        try:
            job = self._consider(key, etag, modified)
        except StoreError as exc:
            if (key, etag) not in self._troubled:
                self._troubled.add((key, etag))
                log.warning("%s is looked at again on the next scan: %s", key, exc)
            return LATER
        except (JobStoreError, DBAPIError):
            raise
        except Exception as exc:  # noqa: BLE001 - a hostile object may raise anything: it is refused alone
            reason = f"{key.rsplit('/', 1)[-1]} could not be read as an inbox drop ({type(exc).__name__}: {exc})"
            log.warning("%s refused: %s", key, reason)
            job = self._refuse(key, etag, reason[:500])
        self._troubled.discard((key, etag))
        return job

    def _refuse(self, key: str, etag: str, reason: str) -> Job | None:
        """A video's job that fails with ``reason``; nothing for another object (its refusal is the log line)."""
        if not key.lower().endswith(VIDEO_SUFFIXES) or keys.is_inbox_batch(key):
            return None
        job, created = self.context.jobs.create(
            DROPPED_OWNER, key, etag, refused_params(reason), max_attempts=self.context.settings.max_attempts
        )
        return job if created else None

    def _consider(self, key: str, etag: str, modified: float = 0.0) -> Job | None | Literal[Wait.LATER]:
        jobs = self.context.jobs
        waiting = jobs.landed(key, etag)  # an API upload that was waiting for this object
        if waiting:
            return waiting
        if jobs.made_by_token(key):  # a token's upload link, used again (an S3 form can be posted twice): no second job
            return None
        if keys.is_inbox_batch(key):  # a dropped batch: its request starts it; its files are its items, not jobs
            if key.endswith(keys.BATCH_REQUEST):
                take_request(self.context, key, etag)
            return None
        if not key.lower().endswith(VIDEO_SUFFIXES):
            return None
        if jobs.find(key, etag):
            return None
        params = self.params_for(key, modified)
        if params is LATER:
            return LATER
        job, created = jobs.create(DROPPED_OWNER, key, etag, params, max_attempts=self.context.settings.max_attempts)
        if created:
            log.info("job %s for %s", job.id, key)
        return job if created else None

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop``; a failing store is logged and tried again, never fatal.

        The inbox is listed every ``poll_seconds``; videos that an event named while their
        sidecar could still come are looked at again every second.
        """
        next_scan = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + self.context.settings.poll_seconds
                    self.scan()
                with self._lock:
                    pending, self._pending = sorted(self._pending), set()
                if pending:
                    self._consider_keys(pending)
            except Exception as exc:  # noqa: BLE001 - the trigger must outlive a store outage
                log.warning("inbox scan failed, will retry: %s", exc)
            stop.wait(min(1.0, self.context.settings.poll_seconds))


def _explicit(spec) -> dict:
    """A JobSpec as the fields a door would have received (what differs from the defaults)."""
    return spec.model_dump(mode="json", exclude_defaults=True)


def _keys_in(payload: dict[str, Any], root: str) -> list[str]:
    """Object keys named by an S3 event (Records) or a SeaweedFS filer webhook (key + message)."""
    keys = []
    records = payload.get("Records")
    for record in records if isinstance(records, list) else []:  # any other shape names nothing
        key = _dig(record, "s3", "object", "key")
        if isinstance(key, str) and key:
            keys.append(unquote_plus(key))
    if isinstance(payload.get("key"), str) and payload.get("event_type", "create") in ("create", "update", "rename"):
        # SeaweedFS sends the filer path: /buckets/<bucket>/<key>, or the directory plus new_entry.name.
        path = payload["key"]
        message = payload.get("message") or payload.get("message_data")
        name = _dig(message, "new_entry", "name")
        if isinstance(name, str) and name and not path.endswith("/" + name):
            path = path.rstrip("/") + "/" + name
        bucket_root = "/buckets/" + root.strip("/")
        if path.startswith(bucket_root + "/"):
            keys.append(path[len(bucket_root) + 1 :])
        elif path.startswith("/" + root.strip("/") + "/"):
            keys.append(path[len(root.strip("/")) + 2 :])
    return keys


def _dig(value: Any, *names: str) -> Any:
    """value[names[0]][names[1]]...; None where a level is missing or is not an object (events are hostile input)."""
    for name in names:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value
