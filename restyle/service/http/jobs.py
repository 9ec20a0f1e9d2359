"""/api/jobs*, /api/uploads, /api/events, /api/workers: making jobs, watching them, fetching what they made.

Bearer tokens with two roles: a submitter sees and downloads only its own jobs; an admin sees
every job, the logs and the workers. Logs and stills come through their job's checks.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from restyle.errors import Invalid, NotFound, RestyleError
from restyle.jobspec import load_json
from restyle.service import intake, keys
from restyle.service.context import Principal
from restyle.service.http import media
from restyle.service.http.auth import admin, caller, submitter, visible_job
from restyle.service.http.forms import JOB_FORM, job_form, job_parts
from restyle.service.http.multipart import limited_form
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.schemas import JobOut, Link, UploadLink, UploadRequest
from restyle.service.http.web import Web, web
from restyle.service.stills import STILL_NAMES, STRIP
from restyle.stores.jobs import ACTIVE, FINAL, JobState

router = APIRouter(route_class=PolicyRoute)


@router.post(
    "/api/jobs",
    status_code=201,
    response_model=JobOut,
    openapi_extra=JOB_FORM,
    summary="Upload a video (and a style picture) and make its job",
)
async def create_job(request: Request, who: Principal = Depends(submitter), app: Web = Depends(web)) -> JobOut:
    async with limited_form(request, job_parts(app.context.settings), max_files=2, max_fields=20) as form:
        video, fields, picture = job_form(form)

        def submit() -> JobOut:
            params = intake.job_params(app.context, who, fields, picture)  # refused before the video is stored
            filename = video.filename or "video.mp4"
            return app.job_out(intake.submit_upload(app.context, who, video.file, filename, params))

        return await run_in_threadpool(submit)


@router.post(
    "/api/uploads", status_code=201, response_model=UploadLink, summary="A presigned link to upload a video to"
)
def create_upload(body: UploadRequest, who: Principal = Depends(submitter), app: Web = Depends(web)) -> UploadLink:
    params = intake.job_params(app.context, who, body.spec_fields())
    ticket = intake.presign_upload(app.context, who, body.filename, params)
    return UploadLink(
        job=app.job_out(ticket.job),
        upload_url=ticket.url,
        method=ticket.method,
        fields=ticket.fields,
        expires_at=ticket.expires_at,
    )


@router.get("/api/jobs", response_model=list[JobOut], summary="Jobs you may see, newest first")
def list_jobs(
    state: Literal[ACTIVE + FINAL] | None = None,  # type: ignore[valid-type] - the states a job has
    limit: int = Query(100, ge=1, le=1000),
    who: Principal = Depends(caller),
    app: Web = Depends(web),
) -> list[JobOut]:
    owner = None if who.is_admin else who.name
    jobs = app.context.jobs.list(owner=owner, limit=limit, states=(state,) if state else None)
    return [app.job_out(job) for job in jobs]


@router.get("/api/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, who: Principal = Depends(caller), app: Web = Depends(web)) -> JobOut:
    return app.job_out(visible_job(app.context, who, job_id), place=True)


@router.get("/api/jobs/{job_id}/output", response_model=Link, summary="A presigned link to the output, with an expiry")
def output_link(job_id: str, who: Principal = Depends(caller), app: Web = Depends(web)) -> Link:
    url, expires_at = intake.output_link(app.context, visible_job(app.context, who, job_id))
    return Link(url=url, expires_at=expires_at)


@router.get(
    "/api/jobs/{job_id}/output/media",
    summary="The output itself, to play in a page: Content-Disposition inline, HTTP Range requests (206)",
    response_class=Response,
)
def output_media(job_id: str, request: Request, who: Principal = Depends(caller), app: Web = Depends(web)) -> Response:
    job = visible_job(app.context, who, job_id)
    if job.state != JobState.SUCCEEDED or not job.output_key:
        raise NotFound(f"job {job.id} has no output yet (it is {job.state})")
    return media.serve(app.context.data, job.output_key, request.headers.get("range"), "inline")


@router.get("/api/jobs/{job_id}/painting", summary="The style picture a job was given", response_class=Response)
def painting(job_id: str, who: Principal = Depends(caller), app: Web = Depends(web)) -> Response:
    job = visible_job(app.context, who, job_id)
    key = job.params.spec.style_image if job.params is not None else None
    if not key:
        raise NotFound(f"job {job.id} was given no style picture")
    try:
        data = app.context.system.get_bytes(key)
    except RestyleError:
        raise NotFound("its style picture was deleted since") from None
    return Response(data, media_type=picture_type(data), headers={"Cache-Control": "private, max-age=3600"})


@router.get(
    "/api/jobs/{job_id}/log", response_class=PlainTextResponse, summary="The job's log (JSON lines); admins only"
)
def job_log(job_id: str, who: Principal = Depends(caller), app: Web = Depends(web)) -> str:
    visible_job(app.context, who, job_id)  # first: a stranger's job is 404, as everywhere
    if not who.is_admin:
        raise HTTPException(403, "logs are for admins")
    try:
        return app.context.system.get_bytes(keys.log(job_id)).decode()
    except RestyleError:
        return ""


@router.get(
    "/api/jobs/{job_id}/stills/{which}",
    summary="Before/after stills of a finished job: 'before' and 'after' (the middle), 'before-N'/'after-N' a strip",
)
def still(job_id: str, which: str, who: Principal = Depends(caller), app: Web = Depends(web)) -> Response:
    visible_job(app.context, who, job_id)
    if which not in STILL_NAMES:
        raise NotFound(f"stills are 'before' and 'after', and 'before-N', 'after-N' for N from 0 to {len(STRIP) - 1}")
    try:
        return Response(app.context.system.get_bytes(keys.still(job_id, which)), media_type="image/jpeg")
    except RestyleError:
        raise NotFound("no still yet") from None


@router.get("/api/workers", summary="Workers and their last heartbeat; admins only")
def workers(who: Principal = Depends(admin), app: Web = Depends(web)) -> list[dict]:
    return [vars(w) for w in app.context.jobs.workers()]


@router.post(
    "/api/events",
    summary="Object-created events: SeaweedFS filer webhook or S3 Records",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def events(request: Request, who: Principal = Depends(admin), app: Web = Depends(web)) -> dict:
    payload = load_json(await request.body(), "an event")
    if not isinstance(payload, dict):
        raise Invalid("an event is a JSON object")
    return {"jobs": [job.id for job in app.trigger.on_event(payload)]}


def picture_type(data: bytes) -> str:
    """A stored picture's media type, from its bytes (it was checked as a picture when it came in)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "", "application/octet-stream")
    except Exception:  # noqa: BLE001 - Pillow's errors for bytes that are no picture
        return "application/octet-stream"
