"""The dashboard: server-rendered pages (Jinja2) with a little JavaScript for live progress.

The pages find the caller where the guard put it (from the session cookie); without one they
redirect to /login. The job form's refusals come back to the page: an error code in the URL, the
reason (in the form's words, :mod:`.wording`) and what was entered kept in the session (:func:`refused`).
"""

from __future__ import annotations

import json
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
from restyle.service.http import browsers, wording
from restyle.service.http.auth import session_id, signed_in, submitter, visible_job
from restyle.service.http.forms import job_form, job_parts
from restyle.service.http.multipart import limited_form
from restyle.service.http.policy import PolicyRoute
from restyle.service.http.web import Web, web
from restyle.service.specs import PICTURE, picture_kind
from restyle.service.stills import STRIP

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.globals["nonce"] = browsers.nonce  # inline scripts and styles carry the page's CSP nonce
templates.env.filters["ago"] = lambda t: "-" if not t else f"{max(0, time.time() - t):.0f} s ago"
# A moment as ISO 8601 UTC for a <time datetime>, and as words for a page read without its script.
templates.env.filters["iso"] = lambda d: d.isoformat().replace("+00:00", "Z") if d else ""
templates.env.filters["utc_words"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S UTC") if d else "-"

router = APIRouter(route_class=PolicyRoute, include_in_schema=False)


# What a page says for an error code in its URL (?error=CODE). Only codes travel in a redirect: text in a URL is
# anyone's to write (another site links to /login?error=...). A refusal's own reason waits in the session.
ERRORS = {
    "token": "That token is not known.",
    "refused": "That was refused.",  # the session's notice, when it holds one, says why
}


# The job form's fields kept after a refusal (a file input cannot be refilled: the page asks for the video again).
KEPT = ("model", "style", "blend", "saved_picture", "strength", "deflicker")
NOTICE_CHARS = 500  # what a session's notice holds (restyle.stores.sessions)


def page_notice(request: Request, app: Web, code: str) -> tuple[str, dict[str, str]]:
    """The message for ``code`` and the form's fields the session kept: a refusal's reason the session kept for this
    page, else the code's fixed text."""
    if code not in ERRORS:
        return "", {}
    session = session_id(request)
    notice = app.context.sessions.take_notice(session) if code == "refused" and session else None
    try:
        kept = json.loads(notice) if notice else {}
    except ValueError:
        kept = {"reason": notice}
    if not isinstance(kept, dict):
        kept = {}
    fields = kept.get("kept") if isinstance(kept.get("kept"), dict) else {}
    return str(kept.get("reason") or ERRORS[code]), {k: str(v) for k, v in fields.items() if k in KEPT}


def page_error(request: Request, app: Web, code: str) -> str:
    """The message for ``code`` (see :func:`page_notice`)."""
    return page_notice(request, app, code)[0]


def refused(request: Request, app: Web, page: str, reason: str, kept: dict[str, str] | None = None) -> RedirectResponse:
    """Back to ``page`` with the refusal's reason, in the form's words, and the form's ``kept`` fields in the caller's
    session (the URL carries only its code)."""
    session = session_id(request)
    if session:
        fields = {k: str(v)[:64] for k, v in (kept or {}).items() if k in KEPT and isinstance(v, str)}
        words = wording.plain(reason)
        notice = json.dumps({"reason": words, "kept": fields}, ensure_ascii=False)
        while len(notice) > NOTICE_CHARS and words:
            words = words[:-20]
            notice = json.dumps({"reason": words, "kept": fields}, ensure_ascii=False)
        app.context.sessions.put_notice(session, notice)
    return RedirectResponse(f"{page}?error=refused", status_code=303)


def token_hint(app: Web) -> str:
    """Where the sign-in page says a token is: the embedded admin token's real file, or the admin who set tokens."""
    if app.context.settings.tokens.strip():
        return "Ask the admin who runs this service for a token (they are set in RESTYLE_TOKENS)."
    return f"An admin token is in {app.context.settings.home / 'admin.token'} on the machine running restyle serve."


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str = "", app: Web = Depends(web)):
    context = {"error": page_error(request, app, error), "who": None, "hint": token_hint(app)}
    return templates.TemplateResponse(request, "login.html", context)


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
    message, kept = page_notice(request, app, error)
    return templates.TemplateResponse(
        request,
        "jobs.html",
        {
            "who": who,
            "jobs": [app.job_out(j) for j in jobs],
            "error": message,
            "kept": kept,
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
        except Refusal as exc:  # back to the page, with the reason and what was entered
            kept = {k: v for k, v in form.multi_items() if k in KEPT and isinstance(v, str)}
            return refused(request, app, "/", str(exc), kept)
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
    shown = {"who": who, "job": app.job_out(job, place=True), "log": log, "strip": range(len(STRIP))}
    shown |= {"error": page_error(request, app, error)} | actions.rerun_choices(app.context, who)  # job_actions.html
    return templates.TemplateResponse(request, "job.html", shown)


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, app: Web = Depends(web)):
    who = signed_in(request)
    if who is None:
        return RedirectResponse("/login", status_code=303)
    if not who.is_admin:
        raise HTTPException(403, "workers are for admins")
    context = {
        "who": who,
        "workers": app.context.jobs.workers(),
        "now": time.time(),
        "lease": app.context.settings.lease_seconds,
    }
    return templates.TemplateResponse(request, "workers.html", context)
