"""The retention sweep: in ``restyle serve``, beside the trigger and the notifier, every
``retention_sweep_seconds`` it deletes what no one needs any more.

- **Inputs, ``keep_inputs_hours`` after a job ends.** A job that succeeded, failed or was cancelled has
  its input deleted from the inbox (an inbox drop's sidecar with it) once that time has passed: until
  then a person may Retry it or Run it again with another spec without uploading it again. A **dead**
  job (its attempts used up by lost workers or store outages, not by its input) keeps its input until
  its outputs go, for an admin to look at or submit again. A batch's inputs are its owner's dataset
  and are never deleted here.
- **Outputs, stills, logs and work**, ``retention_days`` after the job ended (0 keeps them): the
  job's ``outbox/<job>/`` (output and summary), its stills, log and chunk segments. A batch's outputs
  stay (a batch run again reuses them); its units' stills, logs and work go.
- **Pictures no one uses**: a file under ``pictures/`` in the system store that no saved picture and
  no job or batch not ended names, once it is an hour old (a job whose picture was just stored may
  not be in the job store yet).

The job store marks how far each job was swept (:mod:`restyle.stores.retention`), so a restart
redoes nothing and a sweep cut short finishes next time.
"""

from __future__ import annotations

import logging
import threading
import time

from restyle.errors import StoreError
from restyle.service import keys
from restyle.service.context import DROPPED_OWNER, Context
from restyle.stores.jobs import Job, JobState
from restyle.stores.retention import ALL, INPUT, RetentionStore

log = logging.getLogger("restyle.retention")

SETTLE_SECONDS = 60.0  # an end just recorded: its worker may still be letting go of the files
PICTURE_GRACE_SECONDS = 3600.0
DAY = 86400.0


def input_hold(settings) -> float:
    """Seconds an ended job's input is kept: ``keep_inputs_hours``, and at least the settling minute."""
    return max(SETTLE_SECONDS, settings.keep_inputs_hours * 3600)


class Retention:
    def __init__(self, context: Context):
        self.context = context
        self.settings = context.settings
        self._store: RetentionStore | None = None

    @property
    def store(self) -> RetentionStore:
        if self._store is None:
            self._store = RetentionStore(self.context.jobs.engine)
        return self._store

    def run(self, stop: threading.Event) -> None:
        """Sweep every ``retention_sweep_seconds`` until ``stop``; a failing store is logged, never fatal."""
        while not stop.wait(self.settings.retention_sweep_seconds):
            try:
                swept = self.sweep()
                if any(swept.values()):
                    log.info("retention: deleted %s", ", ".join(f"{n} {what}" for what, n in swept.items()))
            except Exception as exc:  # noqa: BLE001 - the sweep must outlive a store outage
                log.warning("retention sweep failed, will retry: %s", exc)

    def sweep(self, now: float | None = None) -> dict[str, int]:
        """One sweep as of ``now``: how many inputs, jobs' outputs and pictures were deleted."""
        now = time.time() if now is None else now
        # Kept a while for Retry and Run again (the dashboard says until when: input_kept_until).
        inputs = self._pages(None, now - input_hold(self.settings), INPUT, self._end_of_input)
        outputs = 0
        if self.settings.retention_days > 0:
            # Never before the notifier's catch-up window: a summary gone would be announced again after a restart.
            kept = max(self.settings.retention_days * DAY, self.settings.webhook_catchup_seconds + SETTLE_SECONDS)
            outputs = self._pages(INPUT, now - kept, ALL, self._end_of_outputs)
        return {"inputs": inputs, "outputs": outputs, "pictures": self.collect_pictures(now)}

    def _pages(self, swept: str | None, before: float, to: str, step) -> int:
        """``step`` on every job ended before ``before`` and swept as far as ``swept``; each marked ``to`` once its
        step is done. A job whose store fails is left for the next sweep; so is every other, when no job got done."""
        count = 0
        while page := self.store.ended(swept, before):
            done = []
            for job in page:
                try:
                    count += step(job)
                    done.append(job.id)
                except StoreError as exc:
                    log.warning("retention: job %s left for the next sweep: %s", job.id, exc)
            self.store.mark(done, to)
            if not done:
                break
        return count

    def _end_of_input(self, job: Job) -> int:
        if job.batch_id is not None or job.state == JobState.DEAD:
            return 0
        return self._delete_input(job)

    def _end_of_outputs(self, job: Job) -> int:
        system = self.context.system
        system.delete(keys.stills(job.id), recursive=True)
        system.delete(keys.log(job.id))
        system.delete(keys.work(job.id), recursive=True)
        if job.batch_id is None:
            self.context.data.delete(keys.job_outbox(job.id), recursive=True)  # its output and summary
            self._delete_input(job)  # a dead job's, kept until now
        return 1

    def _delete_input(self, job: Job) -> int:
        """The job's input, if it is the version the job was made for; an inbox drop's sidecar with it."""
        data = self.context.data
        if not keys.is_inbox(job.input_key) or job.input_etag is None or not data.exists(job.input_key):
            return 0
        if data.info(job.input_key).etag != job.input_etag:
            return 0  # a newer version landed under the same name: its own job deletes it
        data.delete(job.input_key)
        if job.owner == DROPPED_OWNER:
            for sidecar in (f"{job.input_key}.json", f"{job.input_key.rsplit('.', 1)[0]}.json"):
                if data.exists(sidecar) and data.is_file(sidecar) and data.info(sidecar).modified <= job.created_at:
                    data.delete(sidecar)  # the sidecar it was made with (a newer one is for a newer drop)
        return 1

    def collect_pictures(self, now: float) -> int:
        """Delete the style pictures no saved picture and no job or batch not ended names, an hour old or more."""
        system = self.context.system
        old = [info.key for info in system.list(keys.PICTURES) if info.modified < now - PICTURE_GRACE_SECONDS]
        if not old:
            return 0
        unused = set(old) - self.store.pictures_in_use()
        unused -= self.store.pictures_in_use()  # read again just before: a job made meanwhile keeps its picture
        for key in sorted(unused):
            system.delete(key)
        return len(unused)
