"""The dashboard: server-rendered pages (Jinja2) with a little JavaScript for live progress."""
from __future__ import annotations

import time
from pathlib import Path

from urllib.parse import quote

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from restyle.service import gallery
from restyle.service.catalogue import Catalogue
from restyle.service.context import Context
from restyle.service.jobs_api import (
    COOKIE,
    JobOut,
    caller,
    check_job_length,
    form_fields,
    job_params,
    submit_upload,
    submitter,
    visible_job,
)

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["ago"] = lambda t: "-" if not t else f"{max(0, time.time() - t):.0f} s ago"


def mount(app: FastAPI, context: Context) -> None:
    def signed_in(request: Request):
        try:
            return caller(request)
        except HTTPException:
            return None

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, error: str = ""):
        return templates.TemplateResponse(request, "login.html", {"error": error, "who": None})

    @app.post("/login", include_in_schema=False)
    def login(token: str = Form(...)):
        if token not in context.tokens:
            return RedirectResponse("/login?error=That+token+is+not+known", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=7 * 24 * 3600)
        return response

    @app.get("/logout", include_in_schema=False)
    def logout():
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def jobs_page(request: Request, error: str = ""):
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/login", status_code=303)
        jobs = context.jobs.list(owner=None if who.is_admin else who.name, limit=200)
        catalogue = Catalogue.of(context)
        return templates.TemplateResponse(request, "jobs.html", {
            "who": who, "jobs": [JobOut.of(j) for j in jobs], "error": error[:500], "styles": range(gallery.NUM_STYLES),
            "models": catalogue.models(), "pictures": catalogue.pictures(who.name),
        })

    @app.post("/submit", include_in_schema=False)
    async def submit(request: Request):
        who = submitter(request)
        check_job_length(context.settings, request.headers.get("content-length"))
        async with request.form(max_files=2, max_fields=20) as form:
            try:
                video, fields, picture = form_fields(form, blanks_absent=True)
                fields, picture = _chosen(fields, picture)

                def make():
                    return submit_upload(context, who, video.file, video.filename or "video.mp4", job_params(context, who, fields, picture))

                job = await run_in_threadpool(make)
            except HTTPException as exc:
                if exc.status_code in (401, 403, 429):
                    raise
                return RedirectResponse(f"/?error={quote(str(exc.detail))}", status_code=303)
        return RedirectResponse(f"/jobs/{job.id}", status_code=303)

    def _chosen(fields: dict, picture):
        """Only what the chosen model takes: the form holds the gallery, the picture inputs and the models at once."""
        model = fields.get("model", "styles")
        blend = fields.pop("blend", None)
        saved = fields.pop("saved_picture", None)
        if model == "styles":
            if blend:
                fields["style"] = blend
            return {k: v for k, v in fields.items() if k != "style_image"}, None
        fields.pop("style", None)
        if model == "style-image":
            if picture is None and saved:
                fields["style_image"] = saved
            return fields, picture
        fields.pop("style_image", None)
        return fields, None

    @app.get("/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
    def job_page(request: Request, job_id: str):
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/login", status_code=303)
        job = visible_job(context, who, job_id)
        log = ""
        if who.is_admin:
            try:
                log = context.system.get_bytes(f"logs/{job.id}.jsonl").decode()
            except Exception:  # noqa: BLE001 - no log yet
                log = ""
        return templates.TemplateResponse(request, "job.html", {"who": who, "job": JobOut.of(job), "log": log})

    @app.get("/workers", response_class=HTMLResponse, include_in_schema=False)
    def workers_page(request: Request):
        who = signed_in(request)
        if who is None:
            return RedirectResponse("/login", status_code=303)
        if not who.is_admin:
            raise HTTPException(403, "workers are for admins")
        return templates.TemplateResponse(request, "workers.html", {"who": who, "workers": context.jobs.workers()})
