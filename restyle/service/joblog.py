"""A job's structured log: JSON lines in the system store (logs/<job>.jsonl), out of users' reach; each line's
``at`` is ISO 8601 UTC.

The worker writes a job's life into it; the notifier (restyle.service.notifier) adds each webhook
delivery attempt after the job has ended.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime

from restyle.errors import RestyleError
from restyle.service import keys
from restyle.service.context import Context

log = logging.getLogger("restyle.worker")


class JobLog:
    """The job's log, read once and written whole on each line (object stores have no append)."""

    def __init__(self, context: Context, job_id: str, worker_id: str):
        self.context, self.key, self.worker_id = context, keys.log(job_id), worker_id
        try:
            self.lines = context.system.get_bytes(self.key).decode().splitlines()
        except RestyleError:
            self.lines = []
        self._lock = threading.Lock()

    def write(self, event: str, **fields: object) -> None:
        line = json.dumps({"at": now_iso(), "worker": self.worker_id, "event": event, **fields}, default=str)
        with self._lock:
            self.lines.append(line)
            try:
                self.context.system.put_bytes(("\n".join(self.lines) + "\n").encode(), self.key)
            except RestyleError as exc:  # a log write must never fail the job
                log.warning("job log not written: %s", exc)


def now_iso() -> str:
    """Now in ISO 8601 UTC, to the millisecond: ``2026-12-03T09:41:07.250Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
