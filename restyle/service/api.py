"""The HTTP API (FastAPI; OpenAPI at /docs): jobs, uploads, output links, logs, events, metrics.

Bearer tokens with two roles: a submitter sees and downloads only its own jobs; an
admin sees every job, the logs and the workers. The system store (work areas, logs,
stills) is never served as files: logs and stills come through their job's checks.
"""
from __future__ import annotations

import hmac
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from restyle import __version__
from restyle.config import Settings
from restyle.errors import RestyleError
from restyle.jobspec import check_text
from restyle.service import catalogue_api, dashboard, gallery, guard, metrics
from restyle.service.catalogue import Refused
from restyle.service.context import Context, Principal, clean_scratch, scratch_dir
from restyle.service.jobs_api import (
    JobOut,
    caller,
    check_job_length,
    form_fields,
    inbox_key,
    job_params,
    submit_upload,
    submitter,
    visible_job,
)
from restyle.service.trigger import Trigger
from restyle.stores.jobs import ACTIVE, FINAL
from restyle.stores.objects import BadKey, check_key, local_link, sign_local


class UploadRequest(BaseModel):
    """The video's name and the JobSpec fields (checked as a JobSpec: see GET /api/models for the models)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    filename: str = Field(..., min_length=1, max_length=300)
    model: str | None = Field(None, description="styles, style-image, or a registered model's name")
    style: str | None = Field(None, description='styles: 0-25 or a blend "3:0.5,12:0.5"')
    style_image: str | None = Field(None, description="style-image: the name of a picture you saved (POST /api/pictures)")
    strength: float | None = None
    deflicker: float | None = Field(None, description="temporal smoothing strength; 0 off, 0.8 the usual")
    params: dict[str, Any] | None = Field(None, description="the model's other per-call parameters")
    output: dict[str, Any] | None = Field(None, description="container, codec, crf, preset")
    model_file: str | None = Field(None, description="not taken: an admin registers model files (POST /api/models)")

    @field_validator("filename")
    @classmethod
    def _filename(cls, filename: str) -> str:
        return check_text(filename, "filename")

    def spec_fields(self) -> dict[str, Any]:
        return self.model_dump(exclude={"filename"}, exclude_none=True)


class UploadLink(BaseModel):
    job: JobOut
    upload_url: str
    method: str = Field("PUT", description="PUT the video's bytes, or POST a multipart form: the fields, then the file as 'file'")
    fields: dict[str, str] = Field(default_factory=dict, description="form fields a POST upload must send before the file")
    expires_at: int


class Link(BaseModel):
    url: str
    expires_at: int


def create_app(settings: Settings, *, run_trigger: bool = False) -> FastAPI:
    """The service's app. With ``run_trigger`` it also polls the inbox in a thread while it serves."""
    context = Context(settings)
    trigger = Trigger(context)
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        clean_scratch(settings)  # upload spools of API processes that were killed
        thread = threading.Thread(target=trigger.run, args=(stop,), daemon=True) if run_trigger else None
        if thread:
            thread.start()
            threading.Thread(target=gallery.warm, args=(context,), daemon=True).start()
        yield
        stop.set()
        if thread:
            thread.join(timeout=5)

    app = FastAPI(title="restyle", version=__version__, lifespan=lifespan,
                  description="Restyle videos with neural networks: submit, watch, download.")
    app.state.context = context
    app.state.trigger = trigger
    guard.install(app, context)  # tokens, rates and sizes, decided before any body is read

    @app.exception_handler(RestyleError)
    async def restyle_error(request: Request, exc: RestyleError):
        return JSONResponse({"detail": f"service unavailable: {exc}"}, status_code=503)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True, "version": __version__}

    @app.post("/api/jobs", status_code=201, response_model=JobOut, summary="Upload a video (and a style picture) and make its job",
              openapi_extra=catalogue_api.JOB_FORM)
    async def create_job(request: Request, who: Principal = Depends(submitter)) -> JobOut:
        check_job_length(settings, request.headers.get("content-length"))
        async with request.form(max_files=2, max_fields=20) as form:
            video, fields, picture = form_fields(form)

            def submit() -> JobOut:
                params = job_params(context, who, fields, picture)  # refused before the video is stored
                return JobOut.of(submit_upload(context, who, video.file, video.filename or "video.mp4", params))

            return await run_in_threadpool(submit)

    @app.post("/api/uploads", status_code=201, response_model=UploadLink, summary="A presigned link to upload a video to")
    def create_upload(body: UploadRequest, request: Request, who: Principal = Depends(submitter)) -> UploadLink:
        params = job_params(context, who, body.spec_fields())
        key = inbox_key(who, body.filename)
        job, _ = context.jobs.create(who.name, key, None, params, state="uploading", max_attempts=settings.max_attempts)
        expires = settings.link_seconds
        if context.data.is_local:
            url = local_link(settings.base_url, context.link_secret, key, expires) + "&method=PUT"
            return UploadLink(job=JobOut.of(job), upload_url=url, expires_at=int(time.time()) + expires)
        post = _s3_upload_form(context, key, expires)
        return UploadLink(job=JobOut.of(job), upload_url=post["url"], method="POST", fields=post["fields"],
                          expires_at=int(time.time()) + expires)

    @app.get("/api/jobs", response_model=list[JobOut], summary="Jobs you may see, newest first")
    def list_jobs(state: Literal[ACTIVE + FINAL] | None = None,  # type: ignore[valid-type] - the states a job has
                  limit: int = Query(100, ge=1, le=1000), who: Principal = Depends(caller)):
        owner = None if who.is_admin else who.name
        return [JobOut.of(j) for j in context.jobs.list(owner=owner, limit=limit, states=(state,) if state else None)]

    @app.get("/api/jobs/{job_id}", response_model=JobOut)
    def get_job(job_id: str, who: Principal = Depends(caller)) -> JobOut:
        return JobOut.of(visible_job(context, who, job_id))

    @app.post("/api/jobs/{job_id}/cancel", response_model=JobOut)
    def cancel_job(job_id: str, who: Principal = Depends(caller)) -> JobOut:
        visible_job(context, who, job_id)
        return JobOut.of(context.jobs.cancel(job_id))

    @app.get("/api/jobs/{job_id}/output", response_model=Link, summary="A presigned link to the output, with an expiry")
    def output_link(job_id: str, who: Principal = Depends(caller)) -> Link:
        job = visible_job(context, who, job_id)
        if job.state != "succeeded" or not job.output_key:
            raise HTTPException(409, f"job {job_id} has no output yet (it is {job.state})")
        expires = settings.link_seconds
        url = context.data.presign(job.output_key, expires) or local_link(settings.base_url, context.link_secret, job.output_key, expires)
        return Link(url=url, expires_at=int(time.time()) + expires)

    @app.get("/api/jobs/{job_id}/log", response_class=PlainTextResponse, summary="The job's log (JSON lines); admins only")
    def job_log(job_id: str, who: Principal = Depends(caller)) -> str:
        visible_job(context, who, job_id)
        if not who.is_admin:
            raise HTTPException(403, "logs are for admins")
        try:
            return context.system.get_bytes(f"logs/{job_id}.jsonl").decode()
        except RestyleError:
            return ""

    @app.get("/api/jobs/{job_id}/stills/{which}", summary="Before/after stills of a finished job")
    def still(job_id: str, which: str, who: Principal = Depends(caller)) -> Response:
        visible_job(context, who, job_id)
        if which not in ("before", "after"):
            raise HTTPException(404, "stills are 'before' and 'after'")
        try:
            return Response(context.system.get_bytes(f"stills/{job_id}/{which}.jpg"), media_type="image/jpeg")
        except RestyleError:
            raise HTTPException(404, "no still yet") from None

    @app.get("/api/workers", summary="Workers and their last heartbeat; admins only")
    def workers(who: Principal = Depends(caller)) -> list[dict]:
        if not who.is_admin:
            raise HTTPException(403, "workers are for admins")
        return [vars(w) for w in context.jobs.workers()]

    @app.post("/api/events", summary="Object-created events: SeaweedFS filer webhook or S3 Records",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}})
    async def events(request: Request, who: Principal = Depends(caller)) -> dict:
        if not who.is_admin:
            raise HTTPException(403, "events come from the object store, with an admin token")
        try:
            payload = await request.json()
        except ValueError:
            raise HTTPException(422, "an event is a JSON object") from None
        if not isinstance(payload, dict):
            raise HTTPException(422, "an event is a JSON object")
        return {"jobs": [j.id for j in trigger.on_event(payload)]}

    @app.get("/files/{key:path}", include_in_schema=False)
    def signed_download(key: str, expires: int, signature: str):
        _check_link(context, key, expires, signature)
        if not key.startswith("outbox/"):
            raise HTTPException(403, "only outputs are downloadable")
        path = Path(context.data.path(key))
        if not path.is_file():
            raise HTTPException(404, "no such output")
        media = "application/x-ndjson" if path.suffix == ".jsonl" else "video/mp4"  # records jobs write JSON Lines
        return FileResponse(path, media_type=media, filename=path.name)

    @app.put("/files/{key:path}", include_in_schema=False)
    async def signed_upload(key: str, expires: int, signature: str, request: Request) -> dict:
        _check_link(context, key, expires, signature)
        if not key.startswith("inbox/"):
            raise HTTPException(403, "uploads go to the inbox")
        # One request holds the link (compare-and-set, before the body): a second, even a concurrent one, gets 409.
        holder = f"upload:{uuid.uuid4().hex}"
        waiting = context.jobs.claim_upload(key, holder, until=time.time() + guard.longest_body_s(settings))
        if waiting is None:
            raise HTTPException(409, "this upload link was used already, is in use, or its job was cancelled")
        try:
            # The guard caps the size and the pace; here the bytes go to a file, never all in memory.
            spool = await guard.spool_body(request, scratch_dir(settings))
            try:
                if spool.stat().st_size == 0:
                    raise HTTPException(422, "the upload is empty")
                info = await run_in_threadpool(context.data.put_file, spool, key)
            finally:
                spool.unlink(missing_ok=True)
        except BaseException:
            context.jobs.release_upload(key, holder)  # the link may be tried again
            raise
        job = context.jobs.landed(key, info.etag) or waiting
        return {"job": job.id}

    metrics.mount(app, context)
    catalogue_api.mount(app, context)
    dashboard.mount(app, context)
    return app


def _check_link(context: Context, key: str, expires: int, signature: str) -> None:
    try:
        check_key(key)
    except BadKey:
        raise HTTPException(404, "no such object") from None
    if expires < time.time():
        raise HTTPException(403, "this link has expired")
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a signature is anything a stranger sends.
    if not hmac.compare_digest(sign_local(context.link_secret, key, expires).encode(), signature.encode("utf-8", "replace")):
        raise HTTPException(403, "this link's signature is wrong")


def _s3_upload_form(context: Context, key: str, expires: int) -> dict:
    """A presigned POST for exactly ``key``, whose policy caps the size (S3 refuses more, before storing it).

    A form can be posted again until it expires; the trigger makes no second job for a key a
    token's upload made (stores/jobs.made_by_token), so a second post makes no second job."""
    from botocore.session import get_session  # s3fs brings botocore (via aiobotocore)

    settings = context.settings
    bucket, _, prefix = context.settings.data.removeprefix("s3://").partition("/")
    client = get_session().create_client(
        "s3", endpoint_url=settings.s3_endpoint_url or None, region_name=settings.s3_region or None,
        aws_access_key_id=settings.s3_access_key or None, aws_secret_access_key=settings.s3_secret_key or None,
    )
    full_key = f"{prefix.strip('/')}/{key}" if prefix.strip("/") else key
    return client.generate_presigned_post(bucket, full_key, ExpiresIn=expires,
                                          Conditions=[["content-length-range", 1, settings.max_upload_bytes]])
