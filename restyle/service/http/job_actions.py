"""/api/jobs/{id}/cancel, /retry, /rerun and DELETE /api/jobs/{id}: acting on a job (restyle.service.actions).

A job in the wrong state for the action is 409 with the reason (``Conflict``); a stranger's job is 404, as
everywhere. Only the job's owner or an admin acts on it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.concurrency import run_in_threadpool

from restyle.service import actions
from restyle.service.context import Principal
from restyle.service.http.auth import caller, submitter, visible_job
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.schemas import JobOut, SpecRequest
from restyle.service.http.web import Web, web

router = APIRouter(route_class=PolicyRoute)


@router.post("/api/jobs/{job_id}/cancel", response_model=JobOut, summary="Cancel a job; its finished chunks are kept")
def cancel_job(job_id: str, who: Principal = Depends(caller), app: Web = Depends(web)) -> JobOut:
    return app.job_out(actions.cancel(app.context, visible_job(app.context, who, job_id)))


@router.post(
    "/api/jobs/{job_id}/retry",
    response_model=JobOut,
    summary="Queue a failed, dead or cancelled job again; the chunks it stored are reused",
)
def retry_job(job_id: str, who: Principal = Depends(submitter), app: Web = Depends(web)) -> JobOut:
    return app.job_out(actions.retry(app.context, who, visible_job(app.context, who, job_id)))


@router.post(
    "/api/jobs/{job_id}/rerun",
    status_code=201,
    response_model=JobOut,
    summary="A new job of this job's stored video with another spec; nothing is uploaded again",
)
async def rerun_job(
    job_id: str, body: SpecRequest, who: Principal = Depends(submitter), app: Web = Depends(web)
) -> JobOut:
    def make() -> JobOut:
        job = visible_job(app.context, who, job_id)
        return app.job_out(actions.rerun(app.context, who, job, body.spec_fields()))

    return await run_in_threadpool(make)


@router.delete(
    "/api/jobs/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Delete an ended job with its output, stills, log and stored chunks",
)
def delete_job(job_id: str, who: Principal = Depends(caller), app: Web = Depends(web)) -> Response:
    actions.delete(app.context, visible_job(app.context, who, job_id))
    return Response(status_code=204)
