"""The dashboard: server-rendered pages (Jinja2) with a little JavaScript for live progress.

The pages find the caller where the guard put it (from the session cookie); without one they
redirect to /login. The job form's refusals come back to the page: an error code in the URL, the
reason kept in the session (:func:`refused`).
"""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from restyle.errors import Refusal
from restyle.handlers.base import built_in_styles_handler, get_handler, registered
from restyle.service import actions, gallery, intake, keys
from restyle.service.catalogue import Catalogue
from restyle.service.context import Principal
from restyle.service.http import browsers
from restyle.service.http.auth import session_id, signed_in, submitter, visible_job
from restyle.service.http.forms import job_form, job_parts
from restyle.service.http.multipart import limited_form
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.web import Web, web
from restyle.service.specs import PICTURE, picture_kind

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["nonce"] = browsers.nonce  # inline scripts and styles carry the page's CSP nonce
templates.env.filters["ago"] = lambda t: "-" if not t else f"{max(0, time.time() - t):.0f} s ago"

router = APIRouter(route_class=PolicyRoute, include_in_schema=False)


# What a page says for an error code in its URL (?error=CODE). Only codes travel in a redirect: text in a URL is
# anyone's to write (another site links to /login?error=...). A refusal's own reason waits in the session.
ERRORS = {
    "token": "That token is not known.",
    "refused": "That was refused.",  # the session's notice, when it holds one, says why
}


def page_error(request: Request, app: Web, code: str) -> str:
    """The message for ``code``: a refusal's reason the session kept for this page, else the code's fixed text."""
    if code not in ERRORS:
        return ""
    session = session_id(request)
    notice = app.context.sessions.take_notice(session) if code == "refused" and session else None
    return notice or ERRORS[code]


def refused(request: Request, app: Web, page: str, reason: str) -> RedirectResponse:
    """Back to ``page`` with the refusal's reason kept in the caller's session (the URL carries only its code)."""
    session = session_id(request)
    if session:
        app.context.sessions.put_notice(session, reason)
    return RedirectResponse(f"{page}?error=refused", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str = "", app: Web = Depends(web)):
    return templates.TemplateResponse(request, "login.html", {"error": page_error(request, app, error), "who": None})


@router.post("/login")
def login(request: Request, token: str = Form(...), app: Web = Depends(web)):
    """A known token opens a session: the cookie holds its random id, never the token (see :mod:`.browsers`)."""
    if token not in app.context.tokens:
        return RedirectResponse("/login?error=token", status_code=303)
    session = app.context.sessions.open(token, app.context.settings.session_seconds)
    response = RedirectResponse("/", status_code=303)
    browsers.set_session(response, request.scope, app.context.settings, session)
    return response


@router.post("/logout")
def logout(request: Request, app: Web = Depends(web)):
    """Sign out: the session is deleted in the store, so its cookie opens nothing any more."""
    app.context.sessions.close(session_id(request))
    response = RedirectResponse("/login", status_code=303)
    browsers.end_session(response, request.scope, app.context.settings)
    return response


@router.get("/", response_class=HTMLResponse)
def jobs_page(request: Request, error: str = "", app: Web = Depends(web)):
    who = signed_in(request)
    if who is None:
        return RedirectResponse("/login", status_code=303)
    jobs = app.context.jobs.list(owner=None if who.is_admin else who.name, limit=200)
    books = Catalogue(app.context)
    return templates.TemplateResponse(
        request,
        "jobs.html",
        {
            "who": who,
            "jobs": [app.job_out(j) for j in jobs],
            "error": page_error(request, app, error),
            "style_indexes": range(gallery.style_count()),
            "models": books.models(),
            "pictures": books.pictures(who.name),
            # the form's two built-in choices, by the handlers that declare them (built-in styles; a picture field)
            "gallery_model": built_in_styles_handler(),
            "picture_model": picture_kind(),
        },
    )


@router.post("/submit")
async def submit(request: Request, who: Principal = Depends(submitter), app: Web = Depends(web)):
    async with limited_form(request, job_parts(app.context.settings), max_files=2, max_fields=20) as form:
        try:
            video, fields, picture = job_form(form, blanks_absent=True)
            fields, picture = _chosen(fields, picture)

            def make():
                params = intake.job_params(app.context, who, fields, picture)
                return intake.submit_upload(app.context, who, video.file, video.filename or "video.mp4", params)

            job = await run_in_threadpool(make)
        except Refusal as exc:  # back to the page, with the reason
            return refused(request, app, "/", str(exc))
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def _chosen(fields: dict, picture):
    """Only what the chosen model takes: the form holds the gallery, the picture inputs and the models at once.
    The gallery's blend is for the gallery's handler; a picture for a handler that declares a picture field."""
    styles = built_in_styles_handler()
    model = fields.get("model", styles)
    blend = fields.pop("blend", None)
    saved = fields.pop("saved_picture", None)
    if model == styles:
        if blend:
            fields["style"] = blend
        return {k: v for k, v in fields.items() if k != PICTURE}, None
    fields.pop("style", None)
    if model in registered() and PICTURE in get_handler(model).file_fields:
        if picture is None and saved:
            fields[PICTURE] = saved
        return fields, picture
    fields.pop(PICTURE, None)
    return fields, None


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, error: str = "", app: Web = Depends(web)):
    who = signed_in(request)
    if who is None:
        return RedirectResponse("/login", status_code=303)
    job = visible_job(app.context, who, job_id)
    log = ""
    if who.is_admin:
        try:
            log = app.context.system.get_bytes(keys.log(job.id)).decode()
        except Exception:  # noqa: BLE001 - no log yet
            log = ""
    shown = {"who": who, "job": app.job_out(job), "log": log, "error": page_error(request, app, error)}
    shown |= actions.rerun_choices(app.context, who)  # the job's actions (job_actions.html)
    return templates.TemplateResponse(request, "job.html", shown)


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, app: Web = Depends(web)):
    who = signed_in(request)
    if who is None:
        return RedirectResponse("/login", status_code=303)
    if not who.is_admin:
        raise HTTPException(403, "workers are for admins")
    return templates.TemplateResponse(request, "workers.html", {"who": who, "workers": app.context.jobs.workers()})
