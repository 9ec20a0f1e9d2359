"""How a video comes in through the API: uploaded with its job, or to a presigned link the job waits on.

Domain only: refusals are :class:`~restyle.errors.TooLarge` and :class:`~restyle.errors.Invalid`,
which the web face maps to statuses. Dropped files come in through the trigger instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from restyle.errors import Conflict, Invalid, Refusal
from restyle.service import keys
from restyle.service.catalogue import Catalogue
from restyle.service.context import Context, Principal
from restyle.service.specs import Picture, door_params
from restyle.service.spool import spooled
from restyle.stores.jobs import Job, JobParams, JobState
from restyle.stores.objects import local_link


def job_params(context: Context, who: Principal, fields: dict[str, Any], picture: Picture | None = None) -> JobParams:
    """Job parameters for the JobSpec fields a door received; a Refusal with the reason when they are wrong."""
    return door_params(context, Catalogue(context), who.name, fields, picture, admin=who.is_admin)


def submit_upload(context: Context, principal: Principal, stream: BinaryIO, filename: str, params: JobParams) -> Job:
    """Store an uploaded video in the inbox and make its job (idempotently, with the trigger)."""
    settings = context.settings
    key = keys.inbox(principal.name, filename)
    job, _ = context.jobs.create(
        principal.name, key, None, params, state=JobState.UPLOADING, max_attempts=settings.max_attempts
    )
    try:
        with spooled(
            stream,
            settings.max_upload_bytes,
            "upload",
            "RESTYLE_MAX_UPLOAD_BYTES",
            digest=False,
            prefix="restyle-upload-",
        ) as file:
            info = context.data.put_file(file.path, key)
    except Refusal:  # too large, or empty: the job will never have its video
        context.jobs.cancel(job.id)
        raise
    landed = context.jobs.landed(key, info.etag) or context.jobs.find(key, info.etag)
    return landed or job


@dataclass(frozen=True)
class UploadTicket:
    """Where and how to upload a video for a job that waits for it."""

    job: Job
    url: str
    method: str
    expires_at: int
    fields: dict[str, str] = field(default_factory=dict)


def presign_upload(context: Context, principal: Principal, filename: str, params: JobParams) -> UploadTicket:
    """Make a job that waits for its video, and the link to upload it to: a signed PUT to this service for a
    folder store, a presigned S3 POST form (whose policy caps the size) otherwise."""
    settings = context.settings
    key = keys.inbox(principal.name, filename)
    job, _ = context.jobs.create(
        principal.name, key, None, params, state=JobState.UPLOADING, max_attempts=settings.max_attempts
    )
    expires = settings.link_seconds
    expires_at = int(time.time()) + expires
    if context.data.is_local:
        url = local_link(settings.base_url, context.link_secret, key, expires) + "&method=PUT"
        return UploadTicket(job, url, "PUT", expires_at)
    post = s3_upload_form(context, key, expires)
    return UploadTicket(job, post["url"], "POST", expires_at, post["fields"])


def s3_upload_form(context: Context, key: str, expires: int) -> dict:
    """A presigned POST for exactly ``key``, whose policy caps the size (S3 refuses more, before storing it).

    A form can be posted again until it expires; the trigger makes no second job for a key a
    token's upload made (stores/jobs.made_by_token), so a second post makes no second job."""
    from botocore.session import get_session  # s3fs brings botocore (via aiobotocore)

    settings = context.settings
    bucket, _, prefix = settings.data.removeprefix("s3://").partition("/")
    client = get_session().create_client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region or None,
        aws_access_key_id=settings.s3_access_key or None,
        aws_secret_access_key=settings.s3_secret_key or None,
    )
    full_key = f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key
    return client.generate_presigned_post(
        bucket, full_key, ExpiresIn=expires, Conditions=[["content-length-range", 1, settings.max_upload_bytes]]
    )


def output_link(context: Context, job: Job) -> tuple[str, int]:
    """(a link to the job's output, when it expires); the job must have succeeded."""
    if job.state != JobState.SUCCEEDED or not job.output_key:
        raise Conflict(f"job {job.id} has no output yet (it is {job.state})")
    settings = context.settings
    expires = settings.link_seconds
    url = context.data.presign(job.output_key, expires) or local_link(
        settings.base_url, context.link_secret, job.output_key, expires
    )
    return url, int(time.time()) + expires


def store_dataset(
    context: Context, principal: Principal, prefix: str, files: list[tuple[str, BinaryIO]]
) -> tuple[str, list[str]]:
    """Uploaded files into the caller's space under ``prefix``, their names' folders kept (a batch's inputs):
    (the prefix's key, the names stored). An empty file is stored too: its batch item fails with the reason."""
    root = keys.dataset(principal.name, prefix)
    stored = []
    for filename, stream in files:
        name = keys.plain_path(filename, "file name")
        if not name:
            raise Invalid("every uploaded file needs a name")
        try:
            with spooled(
                stream,
                context.settings.max_upload_bytes,
                f"file {name[:80]}",
                "RESTYLE_MAX_UPLOAD_BYTES",
                digest=False,
                prefix="restyle-upload-",
            ) as file:
                context.data.put_file(file.path, root + name)
        except Invalid:  # empty (the one Invalid of a spool)
            context.data.put_bytes(b"", root + name)
        stored.append(name)
    return root, stored


def store_signed_upload(context: Context, key: str, spool: Path) -> Job | None:
    """The body of a signed PUT (spooled by the web face) goes to the inbox; the job that waited joins the queue."""
    if spool.stat().st_size == 0:
        raise Invalid("the upload is empty")
    info = context.data.put_file(spool, key)
    return context.jobs.landed(key, info.etag)
