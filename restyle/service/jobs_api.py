"""Shared by the API and the dashboard: who may see a job, what a job looks like from outside, submitting."""
from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
import tempfile
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import HTTPException, Request
from pydantic import BaseModel
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload

from restyle.jobspec import JobSpec
from restyle.service.catalogue import Catalogue, Refused
from restyle.service.context import Context, Principal
from restyle.service.specs import Picture, door_params
from restyle.stores.jobs import Job

COOKIE = "restyle_token"


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    owner: str
    state: str
    input: str
    model: str  # what runs, in words: styles:7, style-image:painting, moderation
    spec: dict[str, Any]  # the JobSpec (its files as the service's keys)
    style: str | None
    strength: float
    deflicker: float
    attempts: int
    max_attempts: int
    created_at: float
    updated_at: float
    finished_at: float | None
    reason: str | None
    progress: dict[str, int | float | None]  # frames/chunks done and in all, and eta_s (None until a speed is seen)
    figures: dict[str, Any]
    records: dict[str, Any] | None  # records jobs: frames with detections, counts per class
    chunks_redone: int
    output_ready: bool

    @classmethod
    def of(cls, job: Job) -> JobOut:
        params = job.params if isinstance(job.params, dict) else {}
        try:  # a row written by hand (or by an older version) must not break the listing
            validated = JobSpec.model_validate(params.get("spec") or {})
            spec, label = validated.model_dump(mode="json"), params.get("label") or validated.label
        except ValueError:
            spec, label = {}, "unreadable"
        figures = job.figures or {}
        return cls(
            id=job.id, owner=job.owner, state=job.state, input=job.input_key.rsplit("/", 1)[-1],
            model=str(label), spec=spec,
            style=spec.get("style"), strength=spec.get("strength", 1.0), deflicker=spec.get("deflicker", 0.0),
            attempts=job.attempts, max_attempts=job.max_attempts,
            created_at=job.created_at, updated_at=job.updated_at, finished_at=job.finished_at, reason=job.reason,
            progress={"frames_done": job.frames_done, "frames_total": job.frames_total,
                      "chunks_done": job.chunks_done, "chunks_total": job.chunks_total, "eta_s": _speeds.eta(job)},
            figures=figures, records=figures.get("records"), chunks_redone=job.chunks_redone,
            output_ready=job.state == "succeeded",
        )


class Speedometer:
    """Each running job's recent speed, from the progress the API has seen: ETA = frames left / recent speed.

    Workers report frames done on every heartbeat; the frames seen over the last WINDOW_S
    give the speed, so a job that slows or speeds up gets a fresh estimate.
    """

    WINDOW_S = 30.0

    def __init__(self) -> None:
        self._seen: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def eta(self, job: Job) -> float | None:
        if job.state != "running" or not job.frames_total:
            with self._lock:
                self._seen.pop(job.id, None)
            return None
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(job.id, deque())
            if seen and job.frames_done < seen[-1][1]:
                seen.clear()  # a retry started over: old speeds say nothing
            if not seen or seen[-1][1] != job.frames_done:
                seen.append((now, job.frames_done))
            while len(seen) > 2 and now - seen[0][0] > self.WINDOW_S:
                seen.popleft()
            if len(self._seen) > 10_000:  # jobs the API stopped asking about
                self._seen.pop(next(iter(self._seen)))
            (t0, f0), (t1, f1) = seen[0], seen[-1]
        if f1 <= f0 or t1 <= t0:
            return None
        return round((job.frames_total - job.frames_done) / ((f1 - f0) / (t1 - t0)), 1)


_speeds = Speedometer()


def context_of(request: Request) -> Context:
    return request.app.state.context


def caller(request: Request) -> Principal:
    """The principal behind the request's bearer token (or the dashboard's cookie); 401 without one."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
    principal = context_of(request).tokens.get(token) if token else None
    if principal is None:
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return principal


def submitter(request: Request) -> Principal:
    """The caller, if it may submit one more job now; 429 with Retry-After when it is over its rate."""
    principal = caller(request)
    if request.scope.get("restyle.submission_counted"):  # the guard counted it already, before the body was read
        return principal
    limiter = context_of(request).submissions
    wait = limiter.take(principal.name)
    if wait:
        raise HTTPException(429, f"too many submissions from {principal.name}; try again in {limiter.retry_after(wait)} s",
                            headers={"Retry-After": limiter.retry_after(wait)})
    return principal


def visible_job(context: Context, principal: Principal, job_id: str) -> Job:
    """The job if this principal may see it; 404 otherwise (whether it exists is nobody else's business)."""
    job = context.jobs.get(job_id) if re.fullmatch(r"[0-9a-f]{1,32}", job_id) else None
    if job is None or not (principal.is_admin or job.owner == principal.name):
        raise HTTPException(404, f"no job {job_id[:40]}")
    return job


def refused(exc: Refused) -> HTTPException:
    return HTTPException(exc.status, str(exc))


def job_params(context: Context, who: Principal, fields: dict[str, Any], picture: Picture | None = None) -> dict:
    """Job parameters for the JobSpec fields a door received; 4xx with the reason when they are wrong."""
    try:
        return door_params(context, Catalogue.of(context), who.name, fields, picture)
    except Refused as exc:
        raise refused(exc) from None


def check_job_length(settings, declared: str | None) -> None:
    """A job form is a video and perhaps a picture: refused from its Content-Length before it is read."""
    limit = settings.max_upload_bytes + settings.max_picture_bytes + 64 * 1024
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"upload over the limit of {settings.max_upload_bytes} bytes for the video "
                                 f"(RESTYLE_MAX_UPLOAD_BYTES) and {settings.max_picture_bytes} for a picture")


def form_fields(form: FormData, blanks_absent: bool = False) -> tuple[StarletteUpload, dict[str, Any], Picture | None]:
    """A multipart job form: the video (``file``), the JobSpec fields, and a style picture file if one came.
    ``params`` and ``output`` are JSON objects in text. An empty field is a value like any other (the JobSpec
    refuses it), except with ``blanks_absent``: the dashboard's form sends every input, the unfilled ones empty."""
    video = form.get("file")
    if not isinstance(video, StarletteUpload):
        raise HTTPException(422, "a job needs the video: a file in the form field 'file'")
    fields: dict[str, Any] = {}
    picture = None
    for name, value in form.multi_items():
        if name == "file":
            continue
        if isinstance(value, StarletteUpload):
            if name != "style_image":
                raise HTTPException(422, f"only 'file' and 'style_image' take files, not {name[:40]!r}")
            if value.filename:
                picture = Picture(value.file, value.filename)
            continue
        if value == "" and blanks_absent:
            continue
        if name in ("params", "output"):
            try:
                value = json.loads(value)
            except ValueError:
                raise HTTPException(422, f"{name} must be a JSON object, e.g. {name}={{...}}") from None
        fields[name] = value
    return video, fields, picture


def safe_name(filename: str) -> str:
    """A file name reduced to what is safe in a key: no folders, no odd characters, not too long."""
    name = Path(filename.replace("\\", "/")).name
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "video"
    stem, dot, suffix = name.rpartition(".")
    return (stem[:80] + dot + suffix[:8]) if dot else name[:80]


def inbox_key(principal: Principal, filename: str) -> str:
    return f"inbox/{safe_name(principal.name)}/{uuid.uuid4().hex[:8]}-{safe_name(filename)}"


def submit_upload(context: Context, principal: Principal, stream: BinaryIO, filename: str, params: dict) -> Job:
    """Store an uploaded video in the inbox and make its job (idempotently, with the trigger)."""
    limit = context.settings.max_upload_bytes
    key = inbox_key(principal, filename)
    job, _ = context.jobs.create(principal.name, key, None, params, state="uploading",
                                 max_attempts=context.settings.max_attempts)
    with tempfile.NamedTemporaryFile(prefix="restyle-upload-") as spool:
        copied = 0
        while chunk := stream.read(1024 * 1024):
            copied += len(chunk)
            if copied > limit:
                context.jobs.cancel(job.id)
                raise HTTPException(413, f"upload over the limit of {limit} bytes (RESTYLE_MAX_UPLOAD_BYTES)")
            spool.write(chunk)
        spool.flush()
        if copied == 0:
            context.jobs.cancel(job.id)
            raise HTTPException(422, "the upload is empty")
        info = context.data.put_file(Path(spool.name), key)
    landed = context.jobs.landed(key, info.etag) or context.jobs.find(key, info.etag)
    return landed or job

