"""The notifier: in ``restyle serve``, beside the trigger, it announces every job's end and makes the deliveries.

It reads job ends from the job store, so every end is seen whoever recorded it: a worker
(succeeded, failed, cancelled while running), the API (cancelled before it started), the trigger
(an upload link that expired), the lease's end (dead after a crashed worker's last attempt). A worker
that crashes after recording its job's end loses no announcement, and a job is never held up by one.

Each end gets its summary in the outbox (``keys.summary``, written last: it is the mark that the end
was announced, so a restart announces only what was not) and, when the job named a webhook, a
delivery in the system store (``keys.webhook_pending``) tried until it lands or its retries run out,
waiting ``webhook_backoff_seconds``, then twice that, and so on. Deliveries that other processes
recorded (a batch's, say, through :func:`~restyle.service.webhooks.notify`) are found by listing.
Each attempt goes to the job's log and to the ``restyle.webhooks`` logger. Two ``restyle serve`` processes
on one job store may both deliver the same end: with the same ``webhook-id``, which a receiver drops.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from restyle.errors import Invalid
from restyle.service import keys
from restyle.service.context import Context
from restyle.service.joblog import JobLog
from restyle.service.webhooks import Delivery, event_type, job_summary, notify, save, send, shown
from restyle.stores.jobs import Job

log = logging.getLogger("restyle.webhooks")

SETTLE_SECONDS = 1.0  # a worker writes its job's last log line just after recording the end: let it land first
SKEW_SECONDS = 5.0  # ends recorded by machines whose clocks lag this much behind are still seen
PAGE = 200
DELIVERERS = 4  # attempts made at once: one slow receiver does not hold up the others


class Notifier:
    def __init__(self, context: Context):
        self.context = context
        self.settings = context.settings
        self.name = f"notifier-{socket.gethostname()}-{os.getpid()}"
        self.cursor = time.time() - self.settings.webhook_catchup_seconds  # ends before it were announced
        self._announced: dict[str, float] = {}  # job id -> its end, for ends at the cursor or later
        self._due: dict[str, Delivery] = {}  # deliveries to make, by id
        self._busy: set[str] = set()  # being attempted now
        self._done: set[str] = set()  # made or given up on, while their record may still be listed
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(DELIVERERS, thread_name_prefix="webhook")

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: look for ends and recorded deliveries every poll_seconds, attempt what is due."""
        next_look = 0.0
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() >= next_look:
                        next_look = time.monotonic() + self.settings.poll_seconds
                        self.announce_ends()
                        self.load_pending()
                    self.deliver_due()
                except Exception as exc:  # noqa: BLE001 - the notifier must outlive a store outage
                    log.warning("announcing job ends failed, will retry: %s", exc)
                stop.wait(min(0.25, self.settings.poll_seconds))
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- job ends ------------------------------------------------------------------------------------

    def announce_ends(self) -> int:
        """Announce every job that ended since the cursor and is not announced yet; how many were."""
        settled = time.time() - SETTLE_SECONDS
        since, count = self.cursor, 0
        while True:
            page = self.context.jobs.ended_since(since, settled, PAGE)
            for job in page:
                if job.id not in self._announced:
                    if job.batch_id is None:  # a batch's unit: its batch announces its own end (service.batches)
                        count += self.announce(job)
                    self._announced[job.id] = job.finished_at or 0.0
            if len(page) < PAGE:
                break
            since = page[-1].finished_at or since
        self.cursor = max(self.cursor, settled - SKEW_SECONDS)
        self._announced = {job_id: at for job_id, at in self._announced.items() if at >= self.cursor}
        return count

    def announce(self, job: Job) -> bool:
        """Announce one end; False if it was announced before (a restart, or another service process)."""
        key = keys.summary(job.id)
        if self.context.data.exists(key):
            return False
        webhook = job.params.webhook if job.params is not None else None
        # The same webhook-id however often this end is announced: a receiver drops the replay.
        delivery = notify(
            self.context,
            job.owner,
            event_type(job.state),
            job_summary(job),
            webhook,
            log=job.id,
            key=key,
            message_id=f"msg_{job.id}",
        )
        if delivery is not None:
            self.schedule(delivery)
        return True

    # -- deliveries ----------------------------------------------------------------------------------

    def schedule(self, delivery: Delivery) -> None:
        with self._lock:
            self._done.discard(delivery.id)
            self._due[delivery.id] = delivery

    def load_pending(self) -> None:
        """Pick up the deliveries recorded in the system store that this process does not hold."""
        listed = set()
        for info in self.context.system.list(keys.WEBHOOKS_PENDING):
            message_id = info.key.rsplit("/", 1)[-1].removesuffix(".json")
            listed.add(message_id)
            with self._lock:
                known = message_id in self._due or message_id in self._busy or message_id in self._done
            if known:
                continue
            try:
                delivery = Delivery.model_validate_json(self.context.system.get_bytes(info.key))
            except Exception as exc:  # noqa: BLE001 - a record written by hand or by another version: set aside
                log.warning("webhook delivery %s cannot be read (%s); set aside", info.key, exc)
                self.context.system.delete(info.key)
                continue
            self.schedule(delivery)
        with self._lock:
            self._done &= listed  # a record no longer listed is gone for good: forget it

    def deliver_due(self) -> None:
        now = time.time()
        with self._lock:
            ready = [d for d in self._due.values() if d.next_at <= now and d.id not in self._busy]
            self._busy.update(d.id for d in ready)
        for delivery in ready:
            self._pool.submit(self.attempt, delivery)

    def attempt(self, delivery: Delivery) -> None:
        """One attempt at ``delivery``, and what follows: done, another try later, or given up."""
        try:
            self._attempt(delivery)
        except Exception as exc:  # noqa: BLE001 - a store that failed to record the attempt: tried again later
            log.warning("webhook %s: attempt not recorded (%s); will try again", delivery.id, exc)
            with self._lock:
                self._due[delivery.id] = delivery.model_copy(update={"next_at": time.time() + self._wait(1)})
        finally:
            with self._lock:
                self._busy.discard(delivery.id)

    def _attempt(self, delivery: Delivery) -> None:
        number = delivery.attempts + 1
        refused = False
        try:
            status = send(self.context, delivery)
            outcome, landed = f"status {status}", 200 <= status < 300
        except Invalid as exc:  # the host is not allowed (any more), or resolves inward now: no retry
            outcome, landed, refused = f"refused: {exc}", False, True
        except Exception as exc:  # noqa: BLE001 - down, timed out, reset, no DNS: all tried again
            outcome, landed = f"{type(exc).__name__}: {exc}", False
        fields = {"id": delivery.id, "type": delivery.type, "url": shown(delivery.url), "attempt": number}
        updated = delivery.model_copy(update={"attempts": number, "last": outcome})
        if landed:
            self._finish(updated, None)
            self._journal(delivery, "webhook delivered", status=outcome, **fields)
            log.info("webhook %s to %s delivered (%s)", delivery.id, shown(delivery.url), outcome)
        elif refused or number > self.settings.webhook_retries:
            self._finish(updated, keys.webhook_failed(delivery.id))
            self._journal(delivery, "webhook given up", error=outcome, **fields)
            log.warning("webhook %s to %s given up (attempt %d): %s", delivery.id, fields["url"], number, outcome)
        else:
            wait = self._wait(number)
            updated = updated.model_copy(update={"next_at": time.time() + wait})
            save(self.context, updated)  # a restart goes on counting
            with self._lock:
                self._due[delivery.id] = updated
            self._journal(delivery, "webhook failed", error=outcome, retry_in=wait, **fields)
            log.warning("webhook %s to %s: %s; again in %.1f s", delivery.id, fields["url"], outcome, wait)

    def _wait(self, attempts: int) -> float:
        return self.settings.webhook_backoff_seconds * 2 ** (attempts - 1)

    def _finish(self, delivery: Delivery, keep: str | None) -> None:
        """No more attempts: the record is kept at ``keep`` (given up) or dropped (delivered)."""
        if keep:
            save(self.context, delivery, keep)
        with self._lock:
            self._due.pop(delivery.id, None)
            self._done.add(delivery.id)
        self.context.system.delete(keys.webhook_pending(delivery.id))

    def _journal(self, delivery: Delivery, event: str, **fields: object) -> None:
        if delivery.log:  # read afresh: the worker may have written since
            JobLog(self.context, delivery.log, self.name).write(event, **fields)
