"""The trigger: every new object in the inbox becomes exactly one job.

Three ways in, one rule: listing the inbox (always, as the fallback), SeaweedFS filer
webhooks, and standard S3 event notifications (``Records``). Whatever the path, the
job store's unique (key, etag) constraint makes a second job for the same object
version impossible. An object an API upload is waiting for completes that job instead.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import unquote_plus

from restyle.service.context import Context
from restyle.stores.jobs import Job
from restyle.stores.objects import BadKey, StoreError, check_key

log = logging.getLogger("restyle.trigger")

INBOX = "inbox/"
SETTLE_SECONDS = 1.0  # a file copied into a local inbox may still be growing; S3 objects appear whole
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mts", ".ts")


class Trigger:
    def __init__(self, context: Context):
        self.context = context
        self._seen: set[tuple[str, str]] = set()  # the cursor: versions already turned into jobs

    def default_params(self) -> dict:
        return {"spec": self.context.settings.inbox_spec.model_dump()}

    def scan(self) -> list[Job]:
        """List the inbox; make a job for every object version not seen before."""
        made = []
        settled = time.time() - SETTLE_SECONDS
        for info in self.context.data.list(INBOX):
            if self.context.data.is_local and info.modified > settled:
                continue  # looked at again on the next scan, when the copy is done
            if (info.key, info.etag) not in self._seen:
                job = self._consider(info.key, info.etag)
                self._seen.add((info.key, info.etag))
                if job:
                    made.append(job)
        return made

    def on_event(self, payload: dict[str, Any]) -> list[Job]:
        """A SeaweedFS filer webhook or an S3 ``Records`` event: consider each object it names."""
        made = []
        for key in _keys_in(payload, self.context.data.root):
            if not key.startswith(INBOX):
                continue
            try:
                info = self.context.data.info(check_key(key))
            except (BadKey, StoreError) as exc:
                log.warning("event for %r ignored: %s", key[:120], exc)
                continue
            job = self._consider(info.key, info.etag)
            self._seen.add((info.key, info.etag))
            if job:
                made.append(job)
        return made

    def _consider(self, key: str, etag: str) -> Job | None:
        jobs = self.context.jobs
        waiting = jobs.landed(key, etag)  # an API upload that was waiting for this object
        if waiting:
            return waiting
        if not key.lower().endswith(VIDEO_SUFFIXES):
            return None
        if jobs.find(key, etag):
            return None
        job, created = jobs.create("inbox", key, etag, self.default_params(), max_attempts=self.context.settings.max_attempts)
        if created:
            log.info("job %s for %s", job.id, key)
        return job if created else None

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop``; a failing store is logged and tried again, never fatal."""
        while not stop.is_set():
            try:
                self.scan()
            except Exception as exc:  # noqa: BLE001 - the trigger must outlive a store outage
                log.warning("inbox scan failed, will retry: %s", exc)
            stop.wait(self.context.settings.poll_seconds)


def _keys_in(payload: dict[str, Any], root: str) -> list[str]:
    """Object keys named by an S3 event (Records) or a SeaweedFS filer webhook (key + message)."""
    keys = []
    for record in payload.get("Records", []) or []:
        key = (((record or {}).get("s3") or {}).get("object") or {}).get("key")
        if key:
            keys.append(unquote_plus(key))
    if "key" in payload and payload.get("event_type", "create") in ("create", "update", "rename"):
        # SeaweedFS sends the filer path: /buckets/<bucket>/<key>, or the directory plus new_entry.name.
        path = str(payload["key"])
        message = payload.get("message") or payload.get("message_data") or {}
        entry = (message or {}).get("new_entry") or {}
        if entry.get("name") and not path.endswith("/" + entry["name"]):
            path = path.rstrip("/") + "/" + entry["name"]
        bucket_root = "/buckets/" + root.strip("/")
        if path.startswith(bucket_root + "/"):
            keys.append(path[len(bucket_root) + 1 :])
        elif path.startswith("/" + root.strip("/") + "/"):
            keys.append(path[len(root.strip("/")) + 2 :])
    return keys
