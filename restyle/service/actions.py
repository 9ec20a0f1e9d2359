"""What a person may do to a job once it is made: cancel, retry, run again with another spec, delete.

Domain only: a job in the wrong state is a :class:`~restyle.errors.Conflict` with the reason (the web face
answers 409), a visibility check is the caller's (``visible_job``). The same for the API, the dashboard's
buttons and the client's commands.

- **Cancel** stops a running job at its next frame batch (the worker's engine tells its tasks); the chunks
  that finished stay in the job's work area, so a **retry** resumes from them, as a killed run does.
- **Retry** queues a failed, dead or cancelled job again, with its attempts afresh, on its stored input.
- **Run again** makes a new job of the same stored input with another spec: no upload, the input is linked
  (a folder store) or copied server-side (S3) under a key of its own, as the job store holds one job per
  object version. Inputs are kept ``keep_inputs_hours`` after a job ends for both (see ``retention``).
- **Delete** removes an ended job with its output, summary, stills, log, chunks and input.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import PurePosixPath
from typing import Any

from restyle.errors import Conflict, RestyleError
from restyle.handlers.base import built_in_styles_handler
from restyle.service import gallery, intake, keys
from restyle.service.catalogue import Catalogue
from restyle.service.context import Context, Principal
from restyle.service.joblog import JobLog
from restyle.service.retention import input_hold
from restyle.service.specs import Picture, picture_kind
from restyle.stores.jobs import FINAL, Job, JobState

RETRYABLE = (JobState.FAILED, JobState.DEAD, JobState.CANCELLED)


def cancel(context: Context, job: Job) -> Job:
    """Cancel ``job``: at once if it has not started; at its next frame batch if it runs, its chunks kept."""
    if job.state in FINAL:
        raise Conflict(f"job {job.id} has already ended ({job.state}); there is nothing to cancel")
    return context.jobs.cancel(job.id) or job


def retry(context: Context, who: Principal, job: Job) -> Job:
    """Queue an ended job again on its stored input; the chunks it stored are reused."""
    _not_a_unit(job)
    if job.state not in RETRYABLE:
        raise Conflict(
            f"job {job.id} is {job.state}: only a failed, dead or cancelled job can be retried"
            + ("; cancel it first" if job.state in (JobState.QUEUED, JobState.RUNNING) else "")
        )
    _input_kept(context, job)
    queued = context.jobs.requeue(job.id, RETRYABLE)
    if queued is None:
        raise Conflict(f"job {job.id} changed meanwhile (it is {context.jobs.get(job.id).state}); look again")
    JobLog(context, job.id, "api").write("retried", by=who.name)
    return queued


def rerun(context: Context, who: Principal, job: Job, fields: dict[str, Any], picture: Picture | None = None) -> Job:
    """A new job (the caller's) of ``job``'s stored input with the spec ``fields`` say; no second upload."""
    _not_a_unit(job)
    if job.state == JobState.UPLOADING:
        raise Conflict(f"job {job.id} has no video yet: it is still waiting for its upload")
    params = intake.job_params(context, who, fields, picture)  # refused before anything is stored
    _input_kept(context, job)
    key = keys.inbox(who.name, upload_name(job.input_key))
    made, _ = context.jobs.create(
        who.name, key, None, params, state=JobState.UPLOADING, max_attempts=context.settings.max_attempts
    )
    # Logged while no worker can take the job: a worker's log of it, read when it claims, starts with this line.
    JobLog(context, made.id, "api").write("run again", of=job.id, input=job.input_key)
    info = context.data.copy(job.input_key, key)
    landed = context.jobs.landed(key, info.etag) or context.jobs.find(key, info.etag)
    return landed or made


def delete(context: Context, job: Job) -> None:
    """Delete an ended job: its record, output and summary, stills, log, stored chunks and input."""
    _not_a_unit(job)
    if job.state not in FINAL:
        raise Conflict(f"job {job.id} is {job.state}: cancel it first, then delete it")
    if not context.jobs.delete(job.id):
        raise Conflict(f"job {job.id} changed meanwhile; look again")
    system, data = context.system, context.data
    for remove in (
        lambda: data.delete(keys.job_outbox(job.id), recursive=True),
        lambda: system.delete(keys.stills(job.id), recursive=True),
        lambda: system.delete(keys.log(job.id)),
        lambda: system.delete(keys.work(job.id), recursive=True),
        lambda: _delete_input(context, job),
    ):
        with contextlib.suppress(RestyleError):  # already gone, or the store is away: the record is gone anyway
            remove()


def rerun_choices(context: Context, who: Principal) -> dict[str, Any]:
    """What the job page's Run again form offers (``job_actions.html``): models, saved pictures, styles."""
    books = Catalogue(context)
    return {
        "rerun_models": books.models(),
        "rerun_pictures": books.pictures(who.name),
        "rerun_styles": range(gallery.style_count()),
        "rerun_gallery_model": built_in_styles_handler(),
        "rerun_picture_model": picture_kind(),
        "keep_inputs_hours": context.settings.keep_inputs_hours,
    }


def available(job: Job) -> list[str]:
    """The actions that make sense for ``job`` now (a batch's unit: none; its batch is acted on)."""
    if job.batch_id:
        return []
    shown = ["cancel"] if job.state not in FINAL else []
    shown += ["retry"] if job.state in RETRYABLE else []
    shown += ["rerun"] if job.state != JobState.UPLOADING else []
    return shown + (["delete"] if job.state in FINAL else [])


def input_kept_until(context: Context, job: Job) -> float | None:
    """Until when an ended job's input is kept for Retry and Run again (None: the job has not ended)."""
    return job.finished_at + input_hold(context.settings) if job.finished_at else None


def upload_name(input_key: str) -> str:
    """The name a person gave the upload: the key's last part without the random prefix of ``keys.inbox``."""
    return re.sub(r"^[0-9a-f]{8}-", "", PurePosixPath(input_key).name)


def _not_a_unit(job: Job) -> None:
    if job.batch_id:
        raise Conflict(f"job {job.id} is a part of batch {job.batch_id}: act on the batch")


def _input_kept(context: Context, job: Job) -> None:
    """Conflict unless ``job``'s input is still stored, as the version the job was made for."""
    data = context.data
    hours = context.settings.keep_inputs_hours
    gone = f"job {job.id}'s video is no longer stored (inputs are kept {hours:g} hours after a job ends, "
    gone += "RESTYLE_KEEP_INPUTS_HOURS); submit it again"
    if not data.exists(job.input_key) or (job.input_etag and data.info(job.input_key).etag != job.input_etag):
        raise Conflict(gone)


def _delete_input(context: Context, job: Job) -> None:
    """The job's own input, when it is in the inbox as the version it was made for (a dataset's is its owner's)."""
    data = context.data
    ours = keys.is_inbox(job.input_key) and job.input_etag and data.exists(job.input_key)
    if ours and data.info(job.input_key).etag == job.input_etag:
        data.delete(job.input_key)


__all__ = [
    "RETRYABLE",
    "available",
    "cancel",
    "delete",
    "input_kept_until",
    "rerun",
    "rerun_choices",
    "retry",
    "upload_name",
]
