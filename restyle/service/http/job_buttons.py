"""The job page's buttons: Cancel, Retry, Run again and Delete as same-origin POST forms (no script needed).

Each answers with a redirect: to the job (or the new job, or the list after a delete); a refusal goes back to
the job's page with its reason kept in the session (:func:`.dashboard.refused`). The work is
:mod:`restyle.service.actions`, as for the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse

from restyle.errors import Refusal
from restyle.service import actions
from restyle.service.context import Principal
from restyle.service.http.auth import caller, submitter, visible_job
from restyle.service.http.dashboard import _chosen, refused
from restyle.service.http.forms import job_parts, spec_form
from restyle.service.http.multipart import limited_form
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.web import Web, web
from restyle.stores.jobs import Job

router = APIRouter(route_class=PolicyRoute, include_in_schema=False)


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str, who: Principal = Depends(caller), app: Web = Depends(web)):
    return _act(request, app, visible_job(app.context, who, job_id), lambda job: actions.cancel(app.context, job))


@router.post("/jobs/{job_id}/retry")
def retry(request: Request, job_id: str, who: Principal = Depends(submitter), app: Web = Depends(web)):
    job = visible_job(app.context, who, job_id)
    return _act(request, app, job, lambda job: actions.retry(app.context, who, job))


@router.post("/jobs/{job_id}/delete")
def delete(request: Request, job_id: str, who: Principal = Depends(caller), app: Web = Depends(web)):
    job = visible_job(app.context, who, job_id)
    try:
        actions.delete(app.context, job)
    except Refusal as exc:
        return refused(request, app, f"/jobs/{job.id}", str(exc))
    return RedirectResponse("/", status_code=303)


@router.post("/jobs/{job_id}/rerun")
async def rerun(request: Request, job_id: str, who: Principal = Depends(submitter), app: Web = Depends(web)):
    job = await run_in_threadpool(visible_job, app.context, who, job_id)
    async with limited_form(request, job_parts(app.context.settings), max_files=1, max_fields=20) as form:
        try:
            fields, picture = _chosen(*spec_form(form, blanks_absent=True))

            def make() -> Job:
                return actions.rerun(app.context, who, job, fields, picture)

            made = await run_in_threadpool(make)
        except Refusal as exc:
            return refused(request, app, f"/jobs/{job.id}", str(exc))
    return RedirectResponse(f"/jobs/{made.id}", status_code=303)


def _act(request: Request, app: Web, job: Job, action) -> RedirectResponse:
    try:
        action(job)
    except Refusal as exc:
        return refused(request, app, f"/jobs/{job.id}", str(exc))
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)
